"""--features rtt: the smoothed RTT of TCP connections (tcp_rcv_established) and their handshake RTT.

The join on its own (flowcollect/pipeline/rtt_join.py), then the real agent
in the sending namespace `a` of an iperf3 transfer to `b`, once through a
TBF qdisc on a's veth that queues tens of milliseconds (this kernel has no
netem), once unshaped; `ss -ti` is sampled during the transfer for the
kernel's own view of the sending socket's srtt.
"""
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from bench.harness.agent import Agent, flows_of
from flowcollect.pipeline.rtt_join import rtt_join
from flowcollect.records.layout import FLOW_EXPORT, RTT_RECORD
from tests.jsonl_records import WAIT_S, read_records, wait_for_records

IPERF_PORT = 5201


def _ip(last):
    return [0] * 10 + [0xFF, 0xFF, 10, 0, 0, last]


def test_a_connection_s_rtt_goes_onto_both_directions_the_larger_of_its_records():
    # GIVEN both directions of a connection 10.0.0.1:4000 <-> 10.0.0.9:80, and an unrelated flow
    flows = np.zeros(3, dtype=FLOW_EXPORT)
    for row, (src, dst, sport, dport) in zip(flows, [(1, 9, 4000, 80), (9, 1, 80, 4000), (1, 9, 4001, 80)],
                                             strict=True):
        row["src_ip"], row["dst_ip"], row["src_port"], row["dst_port"], row["protocol"] = _ip(src), _ip(dst), \
            sport, dport, 6
    # AND its socket's record (local to remote) and its handshake's (client to server, here the same tuple
    # seen from the server's side: reversed)
    rtt = np.zeros(2, dtype=RTT_RECORD)
    for row, (src, dst, sport, dport, srtt, handshake) in zip(rtt, [(1, 9, 4000, 80, 30_000_000, 0),
                                                                   (9, 1, 80, 4000, 0, 1_500_000)], strict=True):
        row["src_ip"], row["dst_ip"], row["src_port"], row["dst_port"], row["protocol"] = _ip(src), _ip(dst), \
            sport, dport, 6
        row["srtt_max_ns"], row["handshake_ns"] = srtt, handshake
    # WHEN joined THEN both directions carry both, the other flow none
    joined = rtt_join().join(flows, rtt)
    assert joined["rtt_ns"].tolist() == [30_000_000, 30_000_000, 0]
    assert joined["handshake_rtt_ns"].tolist() == [1_500_000, 1_500_000, 0]


def test_an_rtt_record_before_its_flow_joins_the_next_eviction_then_is_dropped():
    # GIVEN a connection's RTT record in an eviction with no flow of it (its packets raced the swap)
    flow = np.zeros(1, dtype=FLOW_EXPORT)
    flow["src_ip"], flow["dst_ip"], flow["src_port"], flow["dst_port"], flow["protocol"] = _ip(1), _ip(9), 4000, 80, 6
    rtt = np.zeros(1, dtype=RTT_RECORD)
    rtt["src_ip"], rtt["dst_ip"], rtt["src_port"], rtt["dst_port"], rtt["protocol"] = _ip(1), _ip(9), 4000, 80, 6
    rtt["srtt_max_ns"] = 7_000_000
    join = rtt_join()
    assert len(join.join(np.zeros(0, dtype=FLOW_EXPORT), rtt)) == 0
    # WHEN the next eviction has its flow THEN the held record goes onto it
    assert join.join(flow.copy(), rtt[:0])["rtt_ns"].tolist() == [7_000_000]
    # AND a record no flow takes twice is gone: the eviction after has nothing to join
    join.join(np.zeros(0, dtype=FLOW_EXPORT), rtt)
    join.join(np.zeros(0, dtype=FLOW_EXPORT), rtt[:0])
    assert join.join(flow.copy(), rtt[:0])["rtt_ns"].tolist() == [0]
    # AND on the last eviction nothing is held
    join.join(np.zeros(0, dtype=FLOW_EXPORT), rtt, last=True)
    assert join.join(flow.copy(), rtt[:0])["rtt_ns"].tolist() == [0]


# --- the real agent ---

def wait_listening(ns, port):
    deadline = time.monotonic() + WAIT_S
    while f":{port} " not in ns.exec("ss", "-Htln").stdout:
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def ss_srtt_ms(ns, dst):
    """{local port: srtt in ms} of the established TCP sockets of ns to dst:IPERF_PORT, from `ss -ti`."""
    out = ns.exec("ss", "-Htin", "state", "established", "dst", f"{dst}:{IPERF_PORT}").stdout
    found = {}
    port = None
    for line in out.splitlines():
        header = re.match(r"\s*\S+\s+\S+\s+\S+:(\d+)\s+\S+", line)
        if header and not line.startswith((" ", "\t")):
            port = int(header.group(1))
        rtt = re.search(r"\brtt:([\d.]+)/", line)
        if rtt and port is not None:
            found[port] = float(rtt.group(1))
    return found


def transfer(a, b, tmp_path, seconds, *client_args):
    """An iperf3 transfer from a to b with the agent in a: (records, {local port: largest srtt ms by ss})."""
    jsonl = tmp_path / "flows.jsonl"
    server = b.ns.popen("iperf3", "-s", "-1", "-B", b.ipv4, "-p", str(IPERF_PORT), stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    agent = Agent(a.ns, tmp_path, "--features", "rtt", "--workers", "1", "--cache-active-timeout", "500ms",
                  "--output", f"jsonl:{jsonl}")
    largest: dict[int, float] = {}
    try:
        wait_listening(b.ns, IPERF_PORT)
        client = a.ns.popen("iperf3", "-c", b.ipv4, "-p", str(IPERF_PORT), "-t", str(seconds), *client_args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds + WAIT_S
        while client.poll() is None:  # sample the kernel's view while the transfer runs
            assert time.monotonic() < deadline
            for port, srtt in ss_srtt_ms(a.ns, b.ipv4).items():
                largest[port] = max(largest.get(port, 0.0), srtt)
            time.sleep(0.05)
        assert client.returncode == 0
        data_port = max(largest, key=largest.get)

        def timed(records):
            return any(r["rtt_ns"] for r in flows_of(records, src_port=data_port, dst_port=IPERF_PORT))

        wait_for_records(jsonl, timed)
        code, _ = agent.stop()
        assert code == 0
    finally:
        agent.close()
        server.kill()
        server.wait(timeout=WAIT_S)
    return read_records(jsonl), largest


def connection(records, port):
    """The records of both directions of the connection from local port `port` to the iperf3 server."""
    return flows_of(records, src_port=port, dst_port=IPERF_PORT) + flows_of(records, src_port=IPERF_PORT,
                                                                           dst_port=port)


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3")
def test_rtt_under_a_tbf_queue_agrees_with_ss(two_hosts, tmp_path):
    a, b = two_hosts
    a.ns.exec("tc", "qdisc", "add", "dev", a.name, "root", "tbf", "rate", "20mbit", "burst", "32kbit",
              "latency", "60ms")
    records, largest = transfer(a, b, tmp_path, 3)
    data_port = max(largest, key=largest.get)
    ss_ns = largest[data_port] * 1e6
    assert ss_ns > 10e6, largest  # the queue is there: tens of ms
    # the periods in which the socket took segments on the fast path (not its closing handshake's)
    rows = [r for r in connection(records, data_port) if r["rtt_ns"] is not None]
    rtt_ns = max(r["rtt_ns"] for r in rows)
    print(f"rtt_ns {rtt_ns}, largest srtt of ss -ti {ss_ns:.0f} ns")
    assert ss_ns / 2 <= rtt_ns <= ss_ns * 2, (rtt_ns, largest)
    assert {r["direction"] for r in rows} == {"ingress", "egress"}


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3")
def test_rtt_on_an_unshaped_veth_is_under_2_ms_with_the_handshake(two_hosts, tmp_path):
    a, b = two_hosts
    # at 200 Mbit/s, so that the sender's own queues (not the path) do not set the RTT on a busy host
    records, largest = transfer(a, b, tmp_path, 1, "-b", "200M")
    data_port = max(largest, key=largest.get)
    rows = connection(records, data_port)
    rtts = [r["rtt_ns"] for r in rows if r["rtt_ns"] is not None]
    print(f"rtt_ns {max(rtts)}, largest srtt of ss -ti {largest[data_port] * 1e6:.0f} ns")
    assert rtts and 0 < max(rtts) < 2_000_000, rows
    handshakes = {r["handshake_rtt_ns"] for r in rows if r["handshake_rtt_ns"]}
    assert handshakes and all(0 < h < 2_000_000 for h in handshakes), rows
    others = [r for r in records if r["protocol"] != 6]
    assert all(r["rtt_ns"] is None and r["handshake_rtt_ns"] is None for r in others)
