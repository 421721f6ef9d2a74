"""The kernel flow table on real traffic: a crowded bucket spills into the overflow map, the table grows and
shrinks between swaps, and a table with live writers is never replayed into (bpf/table.bpf.h, native/fc_table.c)."""
import os
import socket

import numpy as np
import pytest

from bench.harness.traffic import UDP_FRAME, quiet
from flowcollect.kernel.bindings import ffi, lib
from flowcollect.kernel.errors import NativeError
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.kernel.table_sizing import SMALLEST_CAP
from flowcollect.pipeline.timebase import Timebase, evicted
from flowcollect.records.layout import DIRECTION_EGRESS, ETH_P_IP, FLOW_EXPORT, FLOW_KEY, FLOW_RECORD
from tests.flowtools import attach, ip16, mac6, matching, totals

pytestmark = pytest.mark.kernel
IPPROTO_UDP = 17


def udp_key(a, b, sport, dport):
    """The key fc_egress builds for a UDP packet a -> b leaving a's interface."""
    key = np.zeros(1, dtype=FLOW_KEY)
    key["src_mac"], key["dst_mac"] = mac6(a.mac), mac6(b.mac)
    key["eth_protocol"] = ETH_P_IP
    key["src_ip"], key["dst_ip"] = ip16(a.ipv4), ip16(b.ipv4)
    key["src_port"], key["dst_port"] = sport, dport
    key["if_index"], key["protocol"], key["direction"] = a.ifindex, IPPROTO_UDP, DIRECTION_EGRESS
    return key


def key_hash(key):
    return int(lib.fc_key_hash(ffi.cast("struct fc_flow_key *", ffi.from_buffer(key))))


def ports_in_one_bucket(a, b, dport, buckets, count):
    """count source ports whose flows to dport share one bucket of a region of `buckets` buckets."""
    by_bucket = {}
    for sport in range(20000, 60000):
        bucket = key_hash(udp_key(a, b, sport, dport)) & (buckets - 1)
        by_bucket.setdefault(bucket, []).append(sport)
        if len(by_bucket[bucket]) == count:
            return by_bucket[bucket]
    raise AssertionError("no bucket took enough ports")


def send_on_one_cpu(a, b, sports, dport, per_flow):
    """Send per_flow datagrams of each flow from this thread pinned to one CPU: one region counts them.
    Nothing else crosses the link: no IPv6 chatter, and b takes the datagrams (no ICMP back)."""
    quiet(a, b)
    sink = b.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((b.ipv4, dport))
    home = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(home)})
    try:
        for sport in sports:
            sock = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((a.ipv4, sport))
            for _ in range(per_flow):
                sock.sendto(b"t" * 10, (b.ipv4, dport))
            sock.close()
    finally:
        os.sched_setaffinity(0, home)
        sink.close()


def test_flows_past_a_full_bucket_are_counted_exactly_in_the_overflow_map(two_hosts):
    # GIVEN 40 flows whose keys all pick one bucket of a region (16 pairs each)
    a, b = two_hosts
    dport, per_flow, flows = 7000, 3, 40
    buckets = 2 * SMALLEST_CAP // lib.FC_BUCKET_PAIRS
    sports = ports_in_one_bucket(a, b, dport, buckets, flows)
    with FlowKernel(1_000_000) as kernel:
        assert kernel.sizer.caps[0] == SMALLEST_CAP
        attach(kernel, a)
        # WHEN each sends a few datagrams
        send_on_one_cpu(a, b, sports, dport, per_flow)
        batch, stats = kernel.swap_and_drain()
        counters = kernel.counters()
    # THEN the first 16 took the bucket's pairs and the rest the overflow map, and every packet is in its flow
    ours = matching(batch, if_index=a.ifindex, dst_port=dport, protocol=IPPROTO_UDP)
    assert sorted(ours["src_port"].tolist()) == sorted(sports)  # one row per flow
    assert (ours["packets"] == per_flow).all()
    assert totals(ours) == (flows * per_flow, flows * per_flow * (UDP_FRAME + 10))
    assert stats.overflow_rows == flows - lib.FC_BUCKET_PAIRS
    assert counters["overflow_packets"] == (flows - lib.FC_BUCKET_PAIRS) * per_flow
    assert counters["map_insert_failed"] == 0 and counters["ringbuf_submitted"] == 0


def test_a_half_that_reached_its_mark_makes_the_next_larger_and_quiet_halves_shrink_it_back(two_hosts):
    # GIVEN the table at its smallest size
    a, b = two_hosts
    with FlowKernel(1_000_000) as kernel:
        attach(kernel, a)
        first_bytes = kernel.swap_and_drain()[1].table_bytes
        # WHEN one CPU starts as many flows as half its cap (the swap mark)
        send_on_one_cpu(a, b, range(20000, 20000 + SMALLEST_CAP // 2), 7001, 1)
        batch, stats = kernel.swap_and_drain()
        grown = kernel.sizer.caps
        # THEN every flow was drained, and the next half was laid out twice as large for that CPU
        assert len(matching(batch, if_index=a.ifindex, dst_port=7001)) == SMALLEST_CAP // 2
        assert stats.grown == 1 and max(grown) == 2 * SMALLEST_CAP
        assert stats.next_flow_cap == sum(grown)
        assert stats.table_bytes > first_bytes
        # AND quiet swaps bring it back to the smallest size
        for _ in range(12):
            stats = kernel.swap_and_drain()[1]
        assert kernel.sizer.caps == [SMALLEST_CAP] * kernel.ncpus
        assert stats.table_bytes == first_bytes


def test_frames_are_never_replayed_into_a_table_live_programs_write(two_hosts):
    frame = np.frombuffer(b"\x00" * 64, dtype=np.uint8)
    with FlowKernel(1024) as kernel, pytest.raises(NativeError, match="not opened for replay"):
        kernel.replay(bytearray(frame.tobytes()), np.array([0]), np.array([64]), np.array([1]), np.array([0]))


def test_drained_rows_are_made_export_rows_byte_for_byte_as_the_pipeline_makes_them():
    # GIVEN rows of every byte value (times kept below 2**63, as the kernel's monotonic ones are)
    rows = np.random.default_rng(7).integers(0, 256, (1000, FLOW_RECORD.itemsize), dtype=np.uint8)
    rows = rows.view(FLOW_RECORD).reshape(1000)
    rows["first_seen_ns"] >>= 2
    rows["last_seen_ns"] >>= 2
    timebase = Timebase(wall_ns=1_765_000_000_000_000_000, mono_ns=987_654_321_000)
    # WHEN the native drain's conversion and the pipeline's own make them export rows
    native = np.empty(len(rows), dtype=FLOW_EXPORT)
    lib.fc_export_rows(ffi.cast("struct fc_flow_record *", ffi.from_buffer(rows)), len(rows),
                       timebase.wall_ns - timebase.mono_ns, 25,
                       ffi.cast("struct fc_flow_export *", ffi.from_buffer(native, require_writable=True)))
    # THEN both give the same bytes
    assert native.tobytes() == evicted(rows, timebase, 25).tobytes()
