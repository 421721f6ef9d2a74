"""Swap-and-drain, map-full fallback and TC co-existence, on real traffic."""
import os
import socket
import threading
import time

import pytest

from bench.harness.programs import ours, programs_on
from bench.harness.traffic import UDP_FRAME
from flowcollect.kernel.flow_kernel import FlowKernel, tcx_programs
from native import build_bpf  # the same compile step setup.py uses
from tests.flowtools import attach, matching, only_flow, totals

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

E2BIG = 7


def udp_sender(link, dst, sport, dport, count, payload=b"x" * 18):
    sock = link.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((link.ipv4, sport))

    def send():
        for _ in range(count):
            sock.sendto(payload, (dst, dport))
        sock.close()

    return threading.Thread(target=send, daemon=True)


def test_drain_while_traffic_flows_loses_nothing(two_hosts):
    """Two senders on the two CPUs' worth of sockets; drains run back to back meanwhile."""
    a, b = two_hosts
    per_sender = 60_000
    with FlowKernel(4096) as kernel:
        attach(kernel, a)
        senders = [udp_sender(a, b.ipv4, 30000 + i, 31000, per_sender) for i in range(2)]
        drained, everything = [], []
        drains_during_traffic = 0
        for s in senders:
            s.start()
        deadline = time.monotonic() + 60
        while any(s.is_alive() for s in senders) and time.monotonic() < deadline:
            batch, _ = kernel.swap_and_drain()
            drained.append(matching(batch, if_index=a.ifindex, dst_port=31000).copy())
            everything.append(batch.copy())
            drains_during_traffic += 1
        for s in senders:
            s.join(timeout=10)
        with a.ns.entered():
            kernel.detach(a.ifindex)  # no packet counted after the final drain
        batch, _ = kernel.swap_and_drain()
        drained.append(matching(batch, if_index=a.ifindex, dst_port=31000).copy())
        everything.append(batch.copy())
        counters = kernel.counters()

    assert drains_during_traffic >= 20, "traffic ended before 20 drains: raise per_sender"
    # Nothing the programs counted went missing between the count and the drains.
    assert counters["packets_seen"] == sum(int(d["packets"].sum()) for d in everything)
    for i in range(2):
        rows = [matching(d, src_port=30000 + i) for d in drained]
        packets = sum(totals(r)[0] for r in rows)
        nbytes = sum(totals(r)[1] for r in rows)
        assert (packets, nbytes) == (per_sender, per_sender * (UDP_FRAME + 18))
    flows_per_drain = [len(d) for d in drained]
    assert sum(1 for n in flows_per_drain if n) >= 20  # the flows really were split across drains


def test_a_flow_counted_on_two_cpus_is_drained_whole(two_hosts):
    """The flow is created on one CPU; the other CPU's slot starts empty and must be started."""
    a, b = two_hosts
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.fail("this test needs two CPUs")
    home = os.sched_getaffinity(0)
    with FlowKernel(1024) as kernel:
        attach(kernel, a)
        sock = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((a.ipv4, 32000))
        try:
            for cpu, count in ((cpus[0], 5), (cpus[1], 7)):
                os.sched_setaffinity(0, {cpu})  # this thread: its sends run the program on that CPU
                for _ in range(count):
                    sock.sendto(b"c", (b.ipv4, 32001))
        finally:
            os.sched_setaffinity(0, home)
        row = only_flow(kernel.swap_and_drain()[0], if_index=a.ifindex, src_port=32000, dst_port=32001)
    assert int(row["packets"]) == 12
    assert int(row["bytes"]) == 12 * (UDP_FRAME + 1)
    assert 0 < row["first_seen_ns"] < row["last_seen_ns"]


def test_full_map_falls_back_to_the_ring_buffer_without_loss(two_hosts):
    a, b = two_hosts
    flows, per_flow = 2000, 2
    with FlowKernel(64) as kernel:
        attach(kernel, a)
        sock = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ring = []
        for _round in range(per_flow):
            for i in range(flows):
                sock.sendto(b"m" * 10, (b.ipv4, 20000 + i))
                if i % 500 == 0:  # drain the ring buffer as the agent would, while it fills
                    ring.append(kernel.read_ringbuf().copy())
        while len(chunk := kernel.read_ringbuf()):
            ring.append(chunk.copy())
        batch, _ = kernel.swap_and_drain()
        counters = kernel.counters()

    in_map = matching(batch, if_index=a.ifindex, dst_ip=b.ipv4, protocol=17)
    import numpy as np
    ring = np.concatenate(ring)
    in_ring = matching(ring, if_index=a.ifindex, dst_ip=b.ipv4, protocol=17)
    assert len(batch) <= 64
    assert len(in_ring) > 0 and set(in_ring["errno_code"]) == {E2BIG}
    assert (in_ring["packets"] == 1).all()  # one packet per ring-buffer record
    total_packets = totals(in_map)[0] + totals(in_ring)[0]
    total_bytes = totals(in_map)[1] + totals(in_ring)[1]
    assert (total_packets, total_bytes) == (flows * per_flow, flows * per_flow * (UDP_FRAME + 10))
    ports = set(in_map["dst_port"].tolist()) | set(in_ring["dst_port"].tolist())
    assert ports == set(range(20000, 20000 + flows))
    assert counters["map_insert_failed"] == counters["ringbuf_submitted"] == len(ring)
    assert counters["ringbuf_reserve_failed"] == 0 and counters["lost_bytes"] == 0


def test_ring_buffer_overflow_is_counted_never_silent(two_hosts):
    """A one-page ring buffer that nobody reads: the packets it cannot take are counted."""
    a, b = two_hosts
    sent = 600
    with FlowKernel(1, ringbuf_bytes=4096) as kernel:
        attach(kernel, a)
        sock = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(sent):
            sock.sendto(b"o", (b.ipv4, 40000 + i))
        counters = kernel.counters()
        ring = kernel.read_ringbuf()
        batch, _ = kernel.swap_and_drain()
    assert counters["ringbuf_reserve_failed"] > 0
    assert counters["lost_bytes"] == counters["ringbuf_reserve_failed"] * (UDP_FRAME + 1)
    seen = counters["packets_seen"]
    assert seen == int(batch["packets"].sum()) + len(ring) + counters["ringbuf_reserve_failed"]
    assert seen >= sent


def tc_filters(link, hook):
    return link.ns.exec("tc", "filter", "show", "dev", link.name, hook).stdout


@pytest.fixture(scope="module")
def foreign_object(tmp_path_factory):
    obj = str(tmp_path_factory.mktemp("bpf") / "foreign_drop.bpf.o")
    build_bpf.compile_object(os.path.join(ROOT, "tests", "bpf", "foreign_drop.bpf.c"), obj)
    return obj


@pytest.mark.parametrize("mode", ["tc", "tcx"])
def test_foreign_filters_survive_attach_and_detach_and_keep_working(two_hosts, foreign_object, mode):
    a, b = two_hosts
    a.ns.exec("tc", "qdisc", "add", "dev", a.name, "clsact")
    a.ns.exec("tc", "filter", "add", "dev", a.name, "ingress", "prio", "5", "u32",
              "match", "u32", "0", "0", "classid", "1:1")
    a.ns.exec("tc", "filter", "add", "dev", a.name, "egress", "prio", "7", "bpf", "da",
              "obj", foreign_object, "sec", "tc")
    before = {hook: tc_filters(a, hook) for hook in ("ingress", "egress")}
    assert "u32" in before["ingress"] and "foreign_drop" in before["egress"]

    rx = b.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((b.ipv4, 9999))
    rx_ok = b.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_ok.bind((b.ipv4, 9998))
    for sock in (rx, rx_ok):
        sock.settimeout(0.5)
    tx = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)

    with FlowKernel(1024, attach_mode=mode) as kernel:
        attach(kernel, a)
        assert kernel.attach_mode == mode
        during = {hook: tc_filters(a, hook) for hook in ("ingress", "egress")}
        assert "u32" in during["ingress"] and "foreign_drop" in during["egress"]
        on = programs_on(a.ns, a.name)
        assert f"{mode}:fc_ingress" in on["ingress"] and f"{mode}:fc_egress" in on["egress"]
        for _ in range(3):
            tx.sendto(b"dropme", (b.ipv4, 9999))
            tx.sendto(b"passme", (b.ipv4, 9998))
        # Our program runs first and hands on: the foreign filter still drops its port.
        assert rx_ok.recv(100) == b"passme"
        with pytest.raises(socket.timeout):
            rx.recv(100)
        batch, _ = kernel.swap_and_drain()
        assert int(only_flow(batch, if_index=a.ifindex, dst_port=9999)["packets"]) == 3
        with a.ns.entered():
            kernel.detach(a.ifindex)
        after = {hook: tc_filters(a, hook) for hook in ("ingress", "egress")}
    for hook in ("ingress", "egress"):
        assert "fc_" not in after[hook]
        assert after[hook] == before[hook]
    assert not ours(a.ns, a.name)
    assert "clsact" in a.ns.exec("tc", "qdisc", "show", "dev", a.name).stdout


def test_two_agents_with_tcx_links_on_one_interface_each_count_every_packet(two_hosts):
    """TCX links of two agents (or any other TCX user) stack: each program runs and hands on."""
    a, b = two_hosts
    tx = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = b.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((b.ipv4, 9997))
    rx.settimeout(5)
    with FlowKernel(1024, attach_mode="tcx") as first, FlowKernel(1024, attach_mode="tcx") as second:
        attach(first, a)
        attach(second, a)
        with a.ns.entered():
            assert len(tcx_programs(a.ifindex, ingress=False)) == 2
        for _ in range(4):
            tx.sendto(b"both", (b.ipv4, 9997))
        assert [rx.recv(10) for _ in range(4)] == [b"both"] * 4
        for kernel in (first, second):
            batch, _ = kernel.swap_and_drain()
            assert int(only_flow(batch, if_index=a.ifindex, direction=1, dst_port=9997)["packets"]) == 4
        first.close()  # one agent goes: the other stays attached, counting
        tx.sendto(b"more", (b.ipv4, 9997))
        assert rx.recv(10) == b"more"
        batch, _ = second.swap_and_drain()
        assert int(only_flow(batch, if_index=a.ifindex, direction=1, dst_port=9997)["packets"]) == 1
        assert programs_on(a.ns, a.name)["egress"] == {"tcx:fc_egress"}


def test_attach_beside_a_foreign_filter_at_our_priority_and_close_removes_only_ours(two_hosts):
    a, _ = two_hosts
    a.ns.exec("tc", "qdisc", "add", "dev", a.name, "clsact")
    a.ns.exec("tc", "filter", "add", "dev", a.name, "ingress", "prio", "1", "u32",
              "match", "u32", "0", "0", "classid", "1:2")
    with FlowKernel(1024, attach_mode="tc") as kernel:
        attach(kernel, a)
        assert "fc_ingress" in tc_filters(a, "ingress")
        a.ns.exec("tc", "filter", "add", "dev", a.name, "egress", "prio", "9", "u32",
                  "match", "u32", "0", "0", "classid", "1:3")
        with a.ns.entered():
            kernel.close()  # closes in the interface's namespace: detaches there
    ingress, egress = tc_filters(a, "ingress"), tc_filters(a, "egress")
    assert "fc_ingress" not in ingress and "1:2" in ingress
    assert "fc_egress" not in egress and "1:3" in egress


def test_close_in_another_namespace_never_touches_filters_there(two_hosts, foreign_object):
    """Our filters are identified by program id, not only by (ifindex, handle, priority):
    a foreign filter with the same numbers in another namespace is left alone."""
    a, b = two_hosts
    with FlowKernel(1024, attach_mode="tc") as kernel:
        attach(kernel, a)
        ours_there = tc_filters(a, "ingress")
        assert "pref 1 bpf" in ours_there and "handle 0x1 fc_ingress" in ours_there
        # The same ifindex, priority and handle in namespace b, held by a foreign program.
        b.ns.exec("ip", "link", "add", "name", "twin0", "index", str(a.ifindex), "type", "veth",
                  "peer", "name", "twin1")
        b.ns.exec("tc", "qdisc", "add", "dev", "twin0", "clsact")
        b.ns.exec("tc", "filter", "add", "dev", "twin0", "ingress", "prio", "1", "handle", "1", "bpf", "da",
                  "obj", foreign_object, "sec", "tc")
        with b.ns.entered():
            kernel.close()
    twin = b.ns.exec("tc", "filter", "show", "dev", "twin0", "ingress").stdout
    assert "handle 0x1 foreign_drop" in twin
