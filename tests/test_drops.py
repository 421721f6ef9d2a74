"""--features drops: packets the kernel dropped, with the drop reason, joined onto their flows.

The join on its own (flowcollect/pipeline/drop_join.py), then the real agent
on real traffic: namespaces `a` (sender) and `b` (receiver, where the agent
runs) joined by one veth pair; an nftables rule in `b` drops UDP to one port,
another port has no socket, a third has one that reads everything.
"""
import shutil
import socket

import numpy as np
import pytest

from bench.harness.agent import Agent, flows_of, send_udp
from bench.harness.traffic import UDP_FRAME
from flowcollect.pipeline.drop_join import DropJoin
from flowcollect.pipeline.timebase import Timebase
from flowcollect.records.layout import DROP_RECORD, FLOW_EXPORT
from tests.jsonl_records import WAIT_S, read_records, wait_for_records


def _ip(last):
    return [0] * 10 + [0xFF, 0xFF, 10, 0, 0, last]


def flow_rows(*specs):
    rows = np.zeros(len(specs), dtype=FLOW_EXPORT)
    for row, (src, dport, direction, if_index) in zip(rows, specs, strict=True):
        row["src_ip"], row["dst_ip"], row["src_port"], row["dst_port"] = _ip(src), _ip(9), 1000, dport
        row["protocol"], row["eth_protocol"], row["direction"], row["if_index"] = 17, 0x0800, direction, if_index
        row["packets"], row["bytes"] = 10, 1000
    return rows


def drop_rows(*specs):
    rows = np.zeros(len(specs), dtype=DROP_RECORD)
    for row, (src, dport, packets, reason) in zip(rows, specs, strict=True):
        row["src_ip"], row["dst_ip"], row["src_port"], row["dst_port"], row["protocol"] = _ip(src), _ip(9), 1000, \
            dport, 17
        row["packets"], row["bytes"], row["reason"], row["if_index"] = packets, packets * 100, reason, 7
        row["first_seen_ns"], row["last_seen_ns"] = 5_000, 6_000
    return rows


TIMEBASE = Timebase(wall_ns=10_000, mono_ns=1_000)


def test_each_drop_goes_to_one_flow_of_its_key_the_ingress_one():
    # GIVEN the same flow seen egress on interface 3 and ingress on interface 4, and another flow
    flows = flow_rows((1, 53, 1, 3), (1, 53, 0, 4), (2, 80, 1, 3))
    # WHEN drops of the first key and of a key no flow has are joined
    join = DropJoin()
    joined = join.join(flows, drop_rows((1, 53, 4, 12), (5, 99, 2, 3)), TIMEBASE, sampling=0)
    # THEN the ingress row of the key takes the drops, the others show none
    assert joined["drop_packets"].tolist() == [0, 4, 0]
    assert joined["drop_bytes"].tolist() == [0, 400, 0]
    assert joined["drop_reason"].tolist() == [0, 12, 0]
    # AND the unmatched drop waits one eviction for its flow: none comes, so it is a flow of its own,
    # no packets, its interface, wall-clock times
    (alone,) = join.join(flow_rows(), drop_rows(), TIMEBASE, sampling=0)
    assert (int(alone["packets"]), int(alone["bytes"]), int(alone["if_index"])) == (0, 0, 7)
    assert (int(alone["dst_port"]), int(alone["eth_protocol"]), int(alone["protocol"])) == (99, 0x0800, 17)
    assert (int(alone["time_flow_start_ns"]), int(alone["time_flow_end_ns"])) == (14_000, 15_000)
    assert (int(alone["drop_packets"]), int(alone["drop_reason"])) == (2, 3)
    assert joined["packets"].tolist() == [10, 10, 10]


def test_a_drop_counted_before_its_flow_joins_the_next_eviction_s_flow():
    # GIVEN drops of a key whose flow the next eviction brings (it raced the swap of the maps)
    join = DropJoin()
    assert len(join.join(flow_rows(), drop_rows((1, 53, 4, 12)), TIMEBASE, sampling=0)) == 0
    # WHEN that eviction has the flow and more drops of it THEN the flow has them all
    joined = join.join(flow_rows((1, 53, 0, 4)), drop_rows((1, 53, 3, 12)), TIMEBASE, sampling=0)
    assert (joined["packets"].tolist(), joined["drop_packets"].tolist()) == ([10], [7])


def test_the_last_eviction_keeps_nothing_back():
    join = DropJoin()
    joined = join.join(flow_rows(), drop_rows((5, 99, 2, 3)), TIMEBASE, sampling=0, last=True)
    assert (joined["packets"].tolist(), joined["drop_packets"].tolist()) == ([0], [2])
    assert len(join.join(flow_rows(), drop_rows(), TIMEBASE, sampling=0)) == 0


def test_no_drops_leave_the_flows_as_they_are():
    flows = flow_rows((1, 53, 0, 4))
    assert DropJoin().join(flows, drop_rows(), TIMEBASE, 0) is flows


# --- the real agent ---

DROPPED_PORT, CLOSED_PORT, OPEN_PORT = 7001, 7002, 7003
SENT = {DROPPED_PORT: 23, CLOSED_PORT: 17, OPEN_PORT: 11}
SIZE = 200


def drop_udp_port(ns, port):
    ns.exec("nft", "add", "table", "inet", "fctest")
    ns.exec("nft", "add", "chain", "inet", "fctest", "input", "{ type filter hook input priority 0 ; }")
    ns.exec("nft", "add", "rule", "inet", "fctest", "input", "udp", "dport", str(port), "drop")


def drops_to(records, port):
    rows = flows_of(records, dst_port=port, protocol=17)
    return sum(r["drop_packets"] for r in rows), {r["drop_cause"] for r in rows if r["drop_packets"]}


def run_traffic(a, b):
    reader = b.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reader.bind((b.ipv4, OPEN_PORT))
    try:
        for port, count in SENT.items():
            send_udp(a, b.ipv4, port, port, count, SIZE)
        for _ in range(SENT[OPEN_PORT]):  # read them all: none is dropped by a full receive queue
            reader.settimeout(WAIT_S)
            reader.recv(SIZE)
    finally:
        reader.close()


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables (Makefile APT_PACKAGES)")
def test_dropped_flows_carry_their_packets_and_the_kernel_s_reason(two_hosts, tmp_path):
    a, b = two_hosts
    drop_udp_port(b.ns, DROPPED_PORT)
    jsonl = tmp_path / "flows.jsonl"
    agent = Agent(b.ns, tmp_path, "--features", "drops", "--workers", "1", "--cache-active-timeout", "300ms",
                  "--output", f"jsonl:{jsonl}")
    try:
        run_traffic(a, b)
        wait_for_records(jsonl, lambda rs: all(drops_to(rs, p)[0] >= SENT[p] for p in (DROPPED_PORT, CLOSED_PORT)))
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    records = read_records(jsonl)
    # THEN the netfilter drop and the closed port: every packet sent, with the kernel's reason
    assert drops_to(records, DROPPED_PORT) == (SENT[DROPPED_PORT], {"NETFILTER_DROP"})
    assert drops_to(records, CLOSED_PORT) == (SENT[CLOSED_PORT], {"NO_SOCKET"})
    for port in (DROPPED_PORT, CLOSED_PORT):
        dropped = [r for r in flows_of(records, dst_port=port, protocol=17) if r["drop_packets"]]
        assert sum(r["drop_bytes"] for r in dropped) == SENT[port] * (UDP_FRAME + SIZE)
        # on the flow TC counted: ingress on b's interface
        assert {(r["direction"], r["interface"], r["src_addr"]) for r in dropped} == {("ingress", b.name, a.ipv4)}
        ingress = flows_of(records, dst_port=port, protocol=17, direction="ingress")
        assert sum(r["packets"] for r in ingress) == SENT[port]
        assert {r["drop_tcp_state"] for r in dropped} == {None}
    # AND the flow read by its socket shows none, as do the others
    delivered = flows_of(records, dst_port=OPEN_PORT, protocol=17, direction="ingress")
    assert sum(r["packets"] for r in delivered) == SENT[OPEN_PORT]
    assert all(r["drop_packets"] == 0 and r["drop_cause"] is None for r in delivered)
    assert all("drop_packets" in r for r in records)


@pytest.mark.kernel
def test_drops_of_packets_tc_never_counted_are_flows_of_their_own(two_hosts, tmp_path):
    """GIVEN an agent that counts egress only WHEN UDP arrives for a port with no socket THEN the
    drop is a flow of its own: zero packets, the drop counters set, the interface it arrived on."""
    a, b = two_hosts
    jsonl = tmp_path / "flows.jsonl"
    agent = Agent(b.ns, tmp_path, "--features", "drops", "--direction", "egress", "--workers", "1",
                  "--cache-active-timeout", "300ms", "--output", f"jsonl:{jsonl}")
    try:
        send_udp(a, b.ipv4, CLOSED_PORT, CLOSED_PORT, SENT[CLOSED_PORT], SIZE)
        wait_for_records(jsonl, lambda rs: drops_to(rs, CLOSED_PORT)[0] >= SENT[CLOSED_PORT])
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    rows = flows_of(read_records(jsonl), dst_port=CLOSED_PORT, protocol=17)
    assert drops_to(rows, CLOSED_PORT) == (SENT[CLOSED_PORT], {"NO_SOCKET"})
    assert {(r["packets"], r["bytes"], r["interface"], r["src_addr"], r["dst_addr"]) for r in rows} == {
        (0, 0, b.name, a.ipv4, b.ipv4)}
