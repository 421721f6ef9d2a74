"""Ring-buffer tracer: forwards one-packet records, flushes the map when it is full."""
import errno
import logging
import threading

import numpy as np

from flowcollect.flow import Accounter, MapTracer, RingBufTracer
from flowcollect.pipeline.channel import Channel, Closed
from tests.channels import receive_timeout, require_closed, start
from tests.fakes import FakeClock, FakeFetcher, FakeFlusher, FakeRingBuf, flows


def map_full(*ports):
    return flows(*({"src_port": p, "packets": 1, "errno_code": errno.E2BIG} for p in ports))


def forwarded(out):
    """Every record the tracer forwarded until it closed its output, in order (batches joined)."""
    batches = []
    while True:
        try:
            batches.append(out.get(timeout=5))
        except Closed:
            return np.concatenate(batches) if batches else np.zeros(0)


def test_forwards_every_record_as_a_copy_a_burst_as_one_batch():
    # GIVEN a ring buffer that reuses its read buffer, as FlowKernel does, with two reads waiting
    ring = FakeRingBuf()
    ring.put(flows({"src_port": 1}, {"src_port": 2}))
    ring.put(flows({"src_port": 3}))
    out, stop = Channel(10), threading.Event()
    start(RingBufTracer(ring, FakeFlusher(), 60).trace_loop(stop), out)
    # WHEN they are forwarded
    batch = receive_timeout(out)
    # THEN as one batch (the accounter's cost is per batch), the first read not overwritten by the second
    assert batch["src_port"].tolist() == [1, 2, 3]
    # AND a read that comes later is a batch of its own
    ring.put(flows({"src_port": 4}))
    assert receive_timeout(out)["src_port"].tolist() == [4]
    stop.set()
    require_closed(out)


def test_map_full_records_ask_for_a_flush_at_most_once_per_interval():
    # GIVEN a tracer allowing one flush per second, with a fake clock
    clock, flusher = FakeClock(), FakeFlusher()
    tracer = RingBufTracer(FakeRingBuf(), flusher, 60, min_flush_interval=1.0, mono_clock=clock)
    # WHEN map-full records keep coming
    tracer.handle(map_full(1, 2))
    assert flusher.flushes == 1
    clock.advance(0.5)
    tracer.handle(map_full(3))
    # THEN no second flush within the interval
    assert flusher.flushes == 1
    # AND one more once it is over
    clock.advance(0.5)
    tracer.handle(map_full(4))
    assert flusher.flushes == 2


def test_other_errors_do_not_flush():
    flusher = FakeFlusher()
    tracer = RingBufTracer(FakeRingBuf(), flusher, 60, mono_clock=FakeClock())
    tracer.handle(flows({"errno_code": errno.EBUSY}, {"errno_code": 0}))
    assert flusher.flushes == 0


def test_logs_received_and_map_full_counts_once_per_window(caplog):
    # GIVEN a tracer with a 10 s log window
    clock = FakeClock()
    tracer = RingBufTracer(FakeRingBuf(), FakeFlusher(), 10, mono_clock=clock)
    caplog.set_level(logging.DEBUG, logger="flowcollect.pipeline.ringbuf_tracer")
    # WHEN 3 records, 2 of them map-full, come within the window
    tracer.handle(map_full(1, 2))
    clock.advance(5)
    tracer.handle(flows({"errno_code": errno.EBUSY}))
    clock.advance(4.9)
    tracer.tick()
    assert caplog.records == []
    # THEN one line sums the window up when it ends, naming the map size knob
    clock.advance(0.1)
    tracer.tick()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "3 flows came through the ring buffer in the last 10 s, 2 of them" in record.getMessage()
    assert "cache_max_flows" in record.getMessage()
    # AND a window without records logs nothing
    caplog.clear()
    clock.advance(20)
    tracer.tick()
    assert caplog.records == []


def test_stop_forwards_what_is_left_then_closes():
    ring = FakeRingBuf()
    for port in (1, 2, 3):
        ring.put(flows({"src_port": port}))
    out, stop = Channel(10), threading.Event()
    stop.set()
    start(RingBufTracer(ring, FakeFlusher(), 60).trace_loop(stop), out)
    assert forwarded(out)["src_port"].tolist() == [1, 2, 3]


def test_a_full_map_triggers_an_early_eviction_and_nothing_is_lost():
    # GIVEN the map tracer (hour-long period), the ring-buffer tracer and the accounter, wired
    fetcher, ring = FakeFetcher(), FakeRingBuf()
    map_tracer = MapTracer(fetcher, 3600)
    stop = threading.Event()
    map_out, ring_out, acc_out = Channel(10), Channel(10), Channel(10)
    start(map_tracer.trace_loop(stop), map_out)
    start(RingBufTracer(ring, map_tracer, 60).trace_loop(stop), ring_out)
    start(Accounter(100, 3600).account, ring_out, acc_out)

    # WHEN the kernel map is full (100 flows) and packets of two more flows overflow
    fetcher.put(flows(*({"src_port": p, "packets": 1} for p in range(100))))
    ring.put(map_full(100, 101, 100))

    # THEN the map is evicted at once, not in an hour
    assert len(receive_timeout(map_out, 2)) == 100
    # AND at the end the accounter has the overflow, aggregated
    stop.set()
    require_closed(map_out)
    overflow = receive_timeout(acc_out).flows
    require_closed(acc_out)
    assert sorted(zip(overflow["src_port"].tolist(), overflow["packets"].tolist(), strict=True)) == [(100, 2), (101, 1)]
