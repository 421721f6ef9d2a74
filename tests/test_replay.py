"""`flowcollect replay` on a tcpdump capture of mixed traffic, against tshark's count of the same file and
against the live agent that saw the same traffic.

Namespace `a` sends to `b` (conftest.two_hosts, offloads off so that every segment is a frame); in
`b` the agent traces ingress and tcpdump captures ingress (-Q in). Traffic: UDP over IPv4 and IPv6,
a TCP connection with data, ICMP echo, IPv4 fragments and 802.1Q frames.
"""
import collections
import json
import signal
import socket
import subprocess
import time

import pytest

from bench.harness import frames
from bench.harness.agent import FLOWCOLLECT, Agent, send_udp

pytestmark = pytest.mark.kernel
VLAN = 42
KEY = ("src_addr", "dst_addr", "src_port", "dst_port", "protocol", "icmp_type", "icmp_code", "vlan_id",
       "eth_protocol", "direction")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def per_key(records, fields=KEY):
    totals = collections.defaultdict(lambda: [0, 0])
    for record in records:
        entry = totals[tuple(record[f] for f in fields)]
        entry[0] += record["packets"]
        entry[1] += record["bytes"]
    return {key: tuple(value) for key, value in totals.items()}


def send_mixed(a, b):
    """The traffic of the test, all from a to b; returns once b has received every UDP datagram."""
    send_udp(a, b.ipv4, 4001, 5001, 30, 100)
    send_udp(a, b.ipv6, 4002, 5002, 20, 300)
    send_udp(a, b.ipv4, 4003, 5003, 4, 3000)  # > MTU: IPv4 fragments
    with b.ns.entered():
        server = socket.create_server((b.ipv4, 5004))
    with a.ns.entered():
        client = socket.create_connection((b.ipv4, 5004), timeout=5)
    conn, _ = server.accept()
    client.sendall(b"t" * 20000)
    client.shutdown(socket.SHUT_WR)
    received = 0
    while chunk := conn.recv(65536):
        received += len(chunk)
    assert received == 20000
    for sock in (client, conn, server):
        sock.close()
    a.ns.exec("ping", "-c", "5", "-i", "0.01", "-q", b.ipv4)
    sender = frames.FrameSender(a)
    datagram = frames.udp(a.ipv4, b.ipv4, 4005, 5005, b"v" * 80)
    sender.send(frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP,
                                frames.ipv4(a.ipv4, b.ipv4, frames.UDP, datagram),
                                vlans=[(frames.ETH_P_8021Q, VLAN)]), count=13)
    sender.close()


def start_tcpdump(ns, path, *args):
    """tcpdump writing every frame at once (--immediate-mode, -U), once it says it is listening."""
    process = ns.popen("tcpdump", "--immediate-mode", "-U", "-n", "-B", "65536", "-w", str(path), *args,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # "tcpdump: data link type ..." may come first
        if "listening on" in line:
            return process
    raise AssertionError(f"tcpdump did not start: {process.communicate()}")


def stop_tcpdump(process, path, a, b):
    """Send a marker datagram, wait until the capture holds it (so it holds everything before), stop."""
    marker = b"end-of-capture-marker"
    with a.ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(marker, (b.ipv4, 9))
    sock.close()
    deadline = time.monotonic() + 10
    while marker not in path.read_bytes():
        assert time.monotonic() < deadline, "the capture never got the marker"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    assert "\n0 packets dropped by kernel" in "\n" + err, err


def tshark_per_address_pair(path, sources):
    """{(src, dst, ip protocol, vlan id): (frames, bytes)} from tshark's dissection of the capture."""
    fields = ["frame.len", "vlan.id", "ip.src", "ip.dst", "ip.proto", "ipv6.src", "ipv6.dst", "ipv6.nxt"]
    out = subprocess.run(["tshark", "-r", str(path), "-n", "-T", "fields", "-E", "separator=|",
                          *[arg for f in fields for arg in ("-e", f)]], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    totals = collections.defaultdict(lambda: [0, 0])
    for line in out.splitlines():
        length, vlan, src4, dst4, proto4, src6, dst6, next6 = line.split("|")
        src, dst, proto = (src4, dst4, proto4) if src4 else (src6, dst6, next6)
        if src not in sources:
            continue
        entry = totals[(src, dst, int(proto), int(vlan or 0))]
        entry[0] += 1
        entry[1] += int(length)
    return {key: tuple(value) for key, value in totals.items()}


def replay(path, out, *args):
    result = subprocess.run([FLOWCOLLECT, "replay", str(path), "--output", f"jsonl:{out}", *args],
                            capture_output=True, text=True, timeout=120)
    return result, read_jsonl(out) if out.exists() else []


def test_replay_of_a_capture_counts_what_tshark_and_the_live_agent_count(two_hosts, tmp_path):
    a, b = two_hosts
    a.ns.exec("ethtool", "-K", a.name, "tso", "off", "gso", "off")
    live_out, capture = tmp_path / "live.jsonl", tmp_path / "b.pcap"
    agent = Agent(b.ns, tmp_path, "--direction", "ingress", "--output", f"jsonl:{live_out}", "--workers", "1",
                  "--cache-active-timeout", "1s")
    try:
        tcpdump = start_tcpdump(b.ns, capture, "-i", b.name, "-Q", "in")
        try:
            send_mixed(a, b)
        finally:
            stop_tcpdump(tcpdump, capture, a, b)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    sources = {a.ipv4, a.ipv6}
    live = per_key(r for r in read_jsonl(live_out) if r["src_addr"] in sources)

    result, replayed = replay(capture, tmp_path / "replay.jsonl", "--cache-active-timeout", "1s")
    assert result.returncode == 0, result.stderr
    mine = [r for r in replayed if r["src_addr"] in sources]
    assert {r["interface"] for r in replayed} == {"b"}  # named after the capture file (pcap has no names)

    # tshark, by address pair, protocol and VLAN (its fragments carry no ports): exactly the same.
    by_pair = per_key(mine, ("src_addr", "dst_addr", "protocol", "vlan_id"))
    assert by_pair == tshark_per_address_pair(capture, sources)
    assert by_pair[(a.ipv4, b.ipv4, 6, 0)][0] >= 20000 // 1448  # every TCP segment a frame of its own
    assert by_pair[(a.ipv4, b.ipv4, 1, 0)] == (5, 5 * (14 + 20 + 8 + 56))  # ping's echo requests

    # The live agent, per flow key: the same, but for the VLAN tag. The receiving veth moves it out of
    # the frame before the TC hook (skb->len has 4 bytes less); the capture holds it, as tshark counts.
    replay_keys = per_key(mine)
    assert replay_keys.keys() == live.keys()
    for key, (packets, size) in live.items():
        tag = 4 * packets if key[KEY.index("vlan_id")] == VLAN else 0
        assert replay_keys[key] == (packets, size + tag), key

    # pcapng: the same file converted by editcap gives the same flows
    converted = tmp_path / "b.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(capture), str(converted)], check=True, timeout=60)
    result, again = replay(converted, tmp_path / "again.jsonl", "--cache-active-timeout", "1s")
    assert result.returncode == 0, result.stderr
    assert per_key(r for r in again if r["src_addr"] in sources) == replay_keys


def test_a_capture_cut_short_exports_what_it_holds_then_one_line_exit_2(two_hosts, tmp_path):
    a, b = two_hosts
    capture = tmp_path / "cut.pcap"
    tcpdump = start_tcpdump(b.ns, capture, "-i", b.name, "-Q", "in")
    try:
        send_udp(a, b.ipv4, 4010, 5010, 50, 200)
    finally:
        stop_tcpdump(tcpdump, capture, a, b)
    whole = capture.read_bytes()
    capture.write_bytes(whole[:-40])  # the marker frame (63 bytes after its 16-byte record header) is cut
    result, replayed = replay(capture, tmp_path / "cut.jsonl")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"flowcollect: replay {capture}: cut short in a frame")
    assert "Traceback" not in result.stderr
    flows = [r for r in replayed if r["src_port"] == 4010]
    assert sum(r["packets"] for r in flows) == 50 and sum(r["bytes"] for r in flows) == 50 * (14 + 20 + 8 + 200)


def capture_on_any(path, ns):
    """A real `tcpdump -i any` capture (Linux cooked v2 link type) of one ping on loopback."""
    process = start_tcpdump(ns, path, "-i", "any", "-c", "1")
    ns.exec("ping", "-c", "1", "127.0.0.1")
    process.communicate(timeout=10)


@pytest.mark.parametrize("make, problem", [
    (capture_on_any, "link type 276 (Linux cooked v2 (tcpdump -i any)): only Ethernet captures can be replayed "
                     "(the TC programs parse Ethernet frames)"),
    (lambda path, ns: path.write_text("not a capture at all\n"), "not a pcap or pcapng capture"),
])
def test_captures_that_cannot_be_replayed_are_one_line_exit_2(netns_factory, tmp_path, make, problem):
    path = tmp_path / "bad.pcap"
    make(path, netns_factory("cap"))
    result = subprocess.run([FLOWCOLLECT, "replay", str(path)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"flowcollect: replay {path}: {problem}\n")
