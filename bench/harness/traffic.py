"""Floods of new flows with trafgen, between two test namespaces, and what an output made of them.

Every frame of a flood is a UDP datagram from its own source address
(11.0.0.0 + i, i < flows) to the receiver's discard port, repeated `repeat`
times in order: `flows` distinct flows of `repeat` packets each, at trafgen's
full speed from one CPU. The receiver has no route back to 11/8, so nothing
answers; quiet() turns IPv6 off on both ends, so that no MLD report lands in
the count either: the kernel sees exactly the frames sent.
"""
import json
import subprocess

FLOOD_SPORT, FLOOD_DPORT = 4000, 9
FLOOD_BASE = 0x0B000000  # 11.0.0.0
UDP_FRAME = 14 + 20 + 8
PAYLOAD = 18  # 60-byte frames: the smallest Ethernet frame without padding


def quiet(*links):
    """IPv6 off on the links: no MLD reports or neighbour discovery beside the traffic under test."""
    for link in links:
        link.ns.exec("sysctl", "-qw", f"net.ipv6.conf.{link.name}.disable_ipv6=1")


def flood_config(sender, receiver, flows):
    """trafgen's packet: one new flow per frame, cycling over `flows` source addresses."""
    return (f"{{ eth(da={receiver.mac}, sa={sender.mac}), "
            f"ipv4(saddr=dinc({FLOOD_BASE}, {FLOOD_BASE + flows - 1}), daddr={receiver.ipv4}, ttl=64), "
            f"udp(sport={FLOOD_SPORT}, dport={FLOOD_DPORT}), fill(0x00, {PAYLOAD}) }}\n")


def start_flood(sender, receiver, conf_path, flows, repeat=1):
    """trafgen sending flows x repeat frames from sender to receiver at full speed: (its process, the count)."""
    conf_path.write_text(flood_config(sender, receiver, flows))
    count = flows * repeat
    process = sender.ns.popen("trafgen", "--dev", sender.name, "--conf", str(conf_path), "--num", str(count),
                              "--cpus", "1", "-q", "--no-sock-mem", "--no-cpu-stats",
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, count


def flood(sender, receiver, conf_path, flows, repeat=1, timeout=120):
    """Send flows x repeat frames from sender to receiver at full speed; returns how many were sent."""
    process, count = start_flood(sender, receiver, conf_path, flows, repeat)
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return count


def flood_totals(records):
    """(packets, distinct flows) of a flood in JSON records (the receiver's ingress)."""
    packets, sources = 0, set()
    for r in records:
        if (r["src_port"], r["dst_port"], r["direction"]) == (FLOOD_SPORT, FLOOD_DPORT, "ingress"):
            packets += r["packets"]
            sources.add(r["src_addr"])
    return packets, len(sources)


def jsonl_records(path):
    """The records of a JSON-lines file; a line torn by a failed write is not a record."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
