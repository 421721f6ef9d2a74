"""--features dns: DNS over UDP and TCP port 53 parsed at the TC hook, joined onto the flows.

The join and the names on their own (flowcollect/pipeline/dns_join.py), then
the real agent on real traffic: dnsmasq serves one name in namespace `b`
(where the agent and a tshark capture run), `dig` asks from namespace `a`
for that name (NOERROR) and for one it does not have (NXDOMAIN), over UDP
and over TCP. Every query's records carry its id, name and response code,
and a latency within 1 ms of what tshark measures on the capture.
"""
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest

from bench.harness.agent import Agent, flows_of
from bench.harness.netns import wait_udp
from flowcollect.pipeline.dns_join import dns_join, dotted_name
from flowcollect.records.layout import DNS_ANSWERED, DNS_RECORD, DNS_SEEN_QUERY, FLOW_EXPORT
from tests.jsonl_records import WAIT_S, read_records, wait_for_records


def test_wire_names_become_dotted_text():
    assert dotted_name(b"\x03www\x07example\x04test\x00\x00\x01") == b"www.example.test"
    assert dotted_name(b"\x03www\x07exam") == b"www.exam"  # cut where the capture ends
    assert dotted_name(b"\x00") == b""
    assert dotted_name(b"\x03abc\xc0\x0c") == b"abc"  # a compression pointer ends the name


def _ip(last):
    return [0] * 10 + [0xFF, 0xFF, 10, 0, 0, last]


def test_a_dns_record_goes_onto_both_directions_of_its_flow():
    # GIVEN a query flow 10.0.0.1:4000 -> 10.0.0.9:53 on two interfaces, its response flow, and another flow
    flows = np.zeros(4, dtype=FLOW_EXPORT)
    for row, (src, dst, sport, dport) in zip(flows, [(1, 9, 4000, 53), (1, 9, 4000, 53), (9, 1, 53, 4000),
                                                     (1, 9, 4001, 53)], strict=True):
        row["src_ip"], row["dst_ip"], row["src_port"], row["dst_port"], row["protocol"] = _ip(src), _ip(dst), \
            sport, dport, 17
    dns = np.zeros(1, dtype=DNS_RECORD)
    dns["src_ip"], dns["dst_ip"], dns["src_port"], dns["dst_port"], dns["protocol"] = _ip(1), _ip(9), 4000, 53, 17
    dns["id"], dns["rcode"], dns["latency_ns"], dns["flags"] = 0x1234, 3, 250_000, DNS_SEEN_QUERY | DNS_ANSWERED
    name = b"\x07missing\x04test\x00"
    dns["name"][0, :len(name)], dns["name_len"] = np.frombuffer(name, np.uint8), len(name)
    # WHEN it is joined
    joined = dns_join().join(flows, dns)
    # THEN the three flows of the exchange carry it, the fourth none
    assert joined["dns_id"].tolist() == [0x1234, 0x1234, 0x1234, 0]
    assert joined["dns_rcode"].tolist() == [3, 3, 3, 0]
    assert joined["dns_latency_ns"].tolist() == [250_000, 250_000, 250_000, 0]
    assert [bytes(n).rstrip(b"\0") for n in joined["dns_name"]] == [b"missing.test"] * 3 + [b""]
    assert joined["dns_flags"].tolist() == [3, 3, 3, 0]


def test_a_held_dns_record_gives_way_to_a_newer_one_of_its_exchange():
    # GIVEN a DNS record no flow of its eviction took
    flow = np.zeros(1, dtype=FLOW_EXPORT)
    flow["src_ip"], flow["dst_ip"], flow["src_port"], flow["dst_port"], flow["protocol"] = _ip(1), _ip(9), 4000, 53, 17
    dns = np.zeros(1, dtype=DNS_RECORD)
    dns["src_ip"], dns["dst_ip"], dns["src_port"], dns["dst_port"], dns["protocol"] = _ip(1), _ip(9), 4000, 53, 17
    dns["id"], dns["flags"] = 1, DNS_SEEN_QUERY
    join = dns_join()
    join.join(np.zeros(0, dtype=FLOW_EXPORT), dns)
    # WHEN the next eviction brings its flow and a newer record of the same exchange
    newer = dns.copy()
    newer["id"], newer["flags"], newer["latency_ns"] = 2, DNS_SEEN_QUERY | DNS_ANSWERED, 90_000
    joined = join.join(flow.copy(), newer)
    # THEN the flow carries the newer one
    assert (joined["dns_id"].tolist(), joined["dns_latency_ns"].tolist()) == ([2], [90_000])
    # AND a held record with no newer one is joined as it was
    join.join(np.zeros(0, dtype=FLOW_EXPORT), dns)
    assert join.join(flow.copy(), dns[:0])["dns_id"].tolist() == [1]


# --- the real agent ---

FOUND, MISSING, ADDRESS = "found.test", "missing.test", "10.99.0.7"


def start_dnsmasq(ns, address, tmp_path):
    """dnsmasq on address:53 in ns: FOUND resolves, anything else under .test is NXDOMAIN, no upstream."""
    process = ns.popen("dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                       f"--listen-address={address}", "--except-interface=lo", f"--address=/{FOUND}/{ADDRESS}",
                       "--local=/test/", f"--pid-file={tmp_path}/dnsmasq.pid", "--port=53",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_udp(53, ns)
    return process


def start_capture(ns, interface, path):
    """tshark on interface in ns, writing path; returns once it says it captures."""
    process = ns.popen("tshark", "-q", "-i", interface, "-f", "port 53", "-w", str(path),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    said = []
    for line in process.stderr:  # a few lines, then "Capturing on"; it ends if tshark exits
        said.append(line)
        if b"Capturing on" in line:
            return process
    raise AssertionError(b"".join(said).decode())


def dig(ns, server, name, *extra):
    """(id, status) of one query, as dig reports them."""
    out = ns.exec("dig", f"@{server}", name, "A", "+tries=1", "+time=5", *extra).stdout
    header = re.search(r"opcode: QUERY, status: (\w+), id: (\d+)", out)
    assert header, out
    return int(header.group(2)), header.group(1)


def tshark_exchanges(path):
    """{(id, tcp): (name, rcode name, response time in ns)} of the responses in a capture."""
    fields = subprocess.run(["tshark", "-r", str(path), "-Y", "dns.flags.response == 1", "-T", "fields",
                             "-e", "dns.id", "-e", "tcp.port", "-e", "dns.qry.name", "-e", "dns.flags.rcode",
                             "-e", "dns.time"], check=True, capture_output=True, text=True).stdout
    rcodes = {"0": "NOERROR", "3": "NXDOMAIN"}
    found = {}
    for line in fields.splitlines():
        dns_id, tcp_port, name, rcode, latency = line.split("\t")
        found[(int(dns_id, 16), bool(tcp_port))] = (name, rcodes.get(rcode, rcode), round(float(latency) * 1e9))
    return found


@pytest.mark.kernel
@pytest.mark.skipif(not (shutil.which("dnsmasq") and shutil.which("dig") and shutil.which("tshark")),
                    reason="needs dnsmasq, dig and tshark (Makefile APT_PACKAGES)")
def test_every_query_carries_its_id_name_rcode_and_the_latency_tshark_measures(two_hosts, tmp_path):
    a, b = two_hosts
    jsonl, capture = tmp_path / "flows.jsonl", tmp_path / "dns.pcapng"
    server = start_dnsmasq(b.ns, b.ipv4, tmp_path)
    tshark = start_capture(b.ns, b.name, capture)
    agent = None
    try:
        agent = Agent(b.ns, tmp_path, "--features", "dns", "--workers", "1", "--cache-active-timeout", "300ms",
                      "--output", f"jsonl:{jsonl}")
        asked = {}
        for name, extra in ((FOUND, ()), (MISSING, ()), (FOUND, ("+tcp",)), (MISSING, ("+tcp",))):
            dns_id, status = dig(a.ns, b.ipv4, name, *extra)
            asked[(dns_id, bool(extra))] = (name, status)
        assert sorted(status for _, status in asked.values()) == ["NOERROR", "NOERROR", "NXDOMAIN", "NXDOMAIN"]
        # and one query to an address where no server listens: never answered (a is refusing it)
        unanswered = b.ns.exec("dig", f"@{a.ipv4}", FOUND, "A", "+tries=1", "+time=1", check=False)
        assert unanswered.returncode != 0

        def answered(records):
            return all(flows_of(records, dns_id=i, dst_port=53, protocol=6 if tcp else 17, dns_rcode=status)
                       for (i, tcp), (_, status) in asked.items()) and flows_of(records, dst_addr=a.ipv4, dst_port=53)

        wait_for_records(jsonl, answered)
        code, _ = agent.stop()
        assert code == 0
    finally:
        if agent is not None:
            agent.close()
        tshark.send_signal(signal.SIGINT)
        tshark.wait(timeout=WAIT_S)
        tshark.stderr.close()
        server.terminate()
        server.wait(timeout=WAIT_S)
    measured = tshark_exchanges(capture)
    records = read_records(jsonl)
    for (dns_id, tcp), (name, status) in asked.items():
        tshark_name, tshark_rcode, tshark_ns = measured[(dns_id, tcp)]
        assert (tshark_name, tshark_rcode) == (name, status)
        # the query's flow and the response's: both carry the exchange
        query = flows_of(records, dns_id=dns_id, dst_port=53, protocol=6 if tcp else 17, direction="ingress")
        response = flows_of(records, dns_id=dns_id, src_port=53, protocol=6 if tcp else 17, direction="egress")
        assert query and response, (dns_id, tcp)
        for record in query + response:
            assert (record["dns_name"], record["dns_rcode"]) == (name, status)
            assert abs(record["dns_latency_ns"] - tshark_ns) < 1_000_000, (record, tshark_ns)
            assert record["dns_unanswered"] == 0
    (lost,) = flows_of(records, dst_addr=a.ipv4, dst_port=53, protocol=17)
    assert (lost["dns_name"], lost["dns_unanswered"]) == (FOUND, 1)
    assert (lost["dns_rcode"], lost["dns_latency_ns"]) == (None, None)
    assert (lost["direction"], lost["packets"]) == ("egress", 1)
    others = [r for r in records if r["src_port"] != 53 and r["dst_port"] != 53]
    assert all(r["dns_id"] is None and r["dns_name"] is None and r["dns_latency_ns"] is None for r in others)
