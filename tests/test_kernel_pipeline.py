"""The collector's stages on the real kernel objects: map full -> ring buffer ->
accounter, and the ring-buffer tracer's early flush of the map."""
import socket
import threading
import time

import numpy as np
import pytest

from bench.harness.traffic import UDP_FRAME
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.pipeline.accounter import Accounter
from flowcollect.pipeline.channel import Channel, Closed
from flowcollect.pipeline.map_tracer import MapTracer
from flowcollect.pipeline.ringbuf_tracer import RingBufTracer

pytestmark = pytest.mark.kernel


def collect(channel, into):
    while True:
        try:
            into.append(channel.get())
        except Closed:
            return


def test_map_full_triggers_an_early_flush_and_nothing_is_lost(two_hosts):
    a, b = two_hosts
    flows = 2000
    with FlowKernel(64) as kernel:
        with a.ns.entered():
            kernel.attach(a.ifindex)
        stop = threading.Event()
        # A timer that never fires during the test: every eviction before stop is a flush.
        map_tracer = MapTracer(kernel, eviction_timeout=3600)
        ring_tracer = RingBufTracer(kernel, map_tracer, log_timeout=3600, min_flush_interval=0.01)
        accounter = Accounter(max_entries=100_000, evict_timeout=3600)
        map_out, ring_out, acc_out = Channel(1000), Channel(1000), Channel(1000)
        evicted_by_map, evicted_by_accounter = [], []
        threads = [
            threading.Thread(target=map_tracer.trace_loop(stop), args=(map_out,)),
            threading.Thread(target=ring_tracer.trace_loop(stop), args=(ring_out,)),
            threading.Thread(target=accounter.account, args=(ring_out, acc_out)),
            threading.Thread(target=collect, args=(map_out, evicted_by_map)),
            threading.Thread(target=collect, args=(acc_out, evicted_by_accounter)),
        ]
        for t in threads:
            t.start()
        sock = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((a.ipv4, 9100))
        for port in range(20000, 20000 + flows):
            sock.sendto(b"p" * 20, (b.ipv4, port))
        deadline = time.monotonic() + 10
        while not evicted_by_map and time.monotonic() < deadline:
            time.sleep(0.01)
        early_evictions = len(evicted_by_map)
        stop.set()
        for t in threads:
            t.join(timeout=30)

    assert early_evictions >= 1, "a full map must be flushed before the eviction timer"
    assert ring_tracer.flushes >= 1
    assert evicted_by_accounter, "the packets the full map refused came through the ring buffer"
    rows = np.concatenate([batch.flows for batch in evicted_by_map + evicted_by_accounter])
    ours = rows[(rows["src_port"] == 9100) & (rows["if_index"] == a.ifindex)]
    assert int(ours["packets"].sum()) == flows
    assert int(ours["bytes"].sum()) == flows * (UDP_FRAME + 20)
    assert sorted(ours["dst_port"].tolist()) == list(range(20000, 20000 + flows))  # each flow once
    times = ours["time_flow_start_ns"]
    assert (abs(times - time.time_ns()) < 60e9).all()  # wall-clock times, converted
