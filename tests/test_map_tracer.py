"""Map tracer: periodic and flushed evictions of the kernel map (the seed's per-CPU aggregation case)."""
import threading
import time

import numpy as np

from flowcollect.flow import MapTracer
from flowcollect.kernel.flow_kernel import fold_percpu
from flowcollect.pipeline.channel import Channel
from flowcollect.records import layout
from tests.channels import receive_timeout, require_closed, require_nothing, start
from tests.fakes import FakeClock, FakeFetcher, flows

T = 1_661_272_402 * 10**9
HOUR = 3600


def percpu(*cpus):
    """A FLOW_METRICS array, one row per CPU: (packets, bytes, first_seen_ns, last_seen_ns, tcp_flags)."""
    out = np.zeros(len(cpus), dtype=layout.FLOW_METRICS)
    for row, values in zip(out, cpus, strict=True):
        row["packets"], row["bytes"], row["first_seen_ns"], row["last_seen_ns"], row["tcp_flags"] = values
    return out


def folded(metrics):
    return tuple(int(metrics[name]) for name in ("packets", "bytes", "first_seen_ns", "last_seen_ns", "tcp_flags"))


def test_per_cpu_values_fold_into_one_flow():
    # GIVEN a flow seen on one CPU of four, THEN the empty CPUs do not count
    assert folded(fold_percpu(percpu(
        (0, 0, 0, 0, 0),
        (7, 0x22D, 0x176A790B240B, 0x176A792A755B, 1),
        (0, 0, 0, 0, 0),
        (0, 0, 0, 0, 0),
    ))) == (7, 0x22D, 0x176A790B240B, 0x176A792A755B, 1)
    # GIVEN a flow seen on two CPUs, THEN sums, earliest start, latest end, OR-ed flags
    assert folded(fold_percpu(percpu(
        (3, 0x5C4, 0x17F3E9613A7F, 0x17F3E979816E, 1),
        (2, 0x8C, 0x17F3E9633A7F, 0x17F3E96F164E, 1),
        (0, 0, 0, 0, 0),
        (0, 0, 0, 0, 0),
    ))) == (5, 0x5C4 + 0x8C, 0x17F3E9613A7F, 0x17F3E979816E, 1)


class CountingClock:
    def __init__(self, value):
        self.value, self.reads = value, 0

    def __call__(self):
        self.reads += 1
        return self.value


def test_an_eviction_converts_times_with_one_clock_pair_in_signed_arithmetic():
    # GIVEN a map holding a flow that ended after the monotonic "now" read by the eviction
    fetcher = FakeFetcher()
    drained = flows({"src_port": 1, "packets": 3, "first_seen_ns": 123, "last_seen_ns": 1123, "tcp_flags": 0x12},
                    {"src_port": 2, "packets": 1, "first_seen_ns": 999, "last_seen_ns": 999, "dscp": 46})
    fetcher.put(drained.copy())
    wall, mono = CountingClock(T), CountingClock(1000)
    tracer = MapTracer(fetcher, HOUR, sampling=100, clock=wall, mono_clock=mono)

    # WHEN it is evicted
    batch = tracer.evict()

    # THEN the rows are export rows with wall-clock times, before and after T, and the rate
    assert batch.flows.dtype == layout.FLOW_EXPORT
    assert (batch.flows["time_flow_start_ns"] - T).tolist() == [-877, -1]
    assert (batch.flows["time_flow_end_ns"] - T).tolist() == [123, -1]
    assert batch.flows["sampling"].tolist() == [100, 100]
    assert batch.flows["packets"].tolist() == [3, 1]
    # AND the record's bytes are carried as they are; the duplicate mark, the padding and the
    # feature fields (filled by the joins, later) are zero
    row_bytes = batch.flows.view(np.uint8).reshape(2, layout.FLOW_EXPORT.itemsize)
    assert row_bytes[:, :layout.FLOW_RECORD.itemsize].tobytes() == drained.view(np.uint8).tobytes()
    sampling_at = layout.FLOW_EXPORT.fields["sampling"][1]
    assert row_bytes[:, sampling_at:sampling_at + 8].tolist() == [[100, 0, 0, 0, 0, 0, 0, 0]] * 2  # u32 LE, dup, pad
    assert not row_bytes[:, sampling_at + 8:].any()
    # AND each clock was read once for the whole eviction
    assert (wall.reads, mono.reads) == (1, 1)


def test_default_clocks_put_kernel_times_at_the_current_wall_time():
    fetcher = FakeFetcher()
    fetcher.put(flows({"first_seen_ns": time.monotonic_ns(), "last_seen_ns": time.monotonic_ns()}))
    row = MapTracer(fetcher, HOUR).evict().flows[0]
    assert abs(row["time_flow_end_ns"] - time.time_ns()) < 10**9


def test_evicted_rows_are_copies_of_the_fetchers_buffer():
    # GIVEN a fetcher that reuses its buffer, as FlowKernel does
    fetcher = FakeFetcher()
    tracer = MapTracer(fetcher, HOUR)
    fetcher.put(flows({"src_port": 1}))
    first = tracer.evict()
    # WHEN the next eviction overwrites the buffer
    fetcher.put(flows({"src_port": 2}))
    tracer.evict()
    # THEN the first batch is unchanged
    assert first.flows["src_port"].tolist() == [1]


def test_evicts_every_period_and_never_sends_an_empty_batch():
    # GIVEN a tracer evicting every 50 ms of its period clock (a fake one, moved by the test)
    fetcher, period = FakeFetcher(), FakeClock()
    out, stop = Channel(10), threading.Event()
    start(MapTracer(fetcher, 0.05, period_clock=period.seconds).trace_loop(stop), out)
    # WHEN the map has flows and a period passes (60 ms: more than one, whatever the rounding), THEN they come out
    fetcher.put(flows({"src_port": 1}))
    period.advance(0.06)
    assert receive_timeout(out, 1).flows["src_port"].tolist() == [1]
    # AND periods with an empty map send nothing, though they do evict
    calls = fetcher.calls
    for passed in (1, 2, 3):
        period.advance(0.06)
        assert fetcher.wait_calls(calls + passed)
    require_nothing(out, wait=0.1)
    assert fetcher.calls >= calls + 3
    stop.set()
    require_closed(out)


def test_flush_evicts_at_once():
    # GIVEN a tracer with an hour-long period, that has started
    fetcher = FakeFetcher()
    tracer = MapTracer(fetcher, HOUR)
    out, stop = Channel(10), threading.Event()
    start(tracer.trace_loop(stop), out)
    require_nothing(out, wait=0.1)
    # WHEN flows are in the map and a flush is asked
    fetcher.put(flows({"src_port": 7}))
    tracer.flush()
    # THEN they come out now, not in an hour
    assert receive_timeout(out, 1).flows["src_port"].tolist() == [7]
    stop.set()
    require_closed(out)


def test_a_flush_asked_during_an_eviction_runs_another_one():
    # GIVEN a tracer whose first eviction takes a while
    fetcher = FakeFetcher()
    fetcher.hold = True
    tracer = MapTracer(fetcher, HOUR)
    out, stop = Channel(10), threading.Event()
    start(tracer.trace_loop(stop), out)
    fetcher.put(flows({"src_port": 1}))
    tracer.flush()
    assert fetcher.entered.wait(5)

    # WHEN new flows land in the fresh map and a flush is asked before the eviction ends
    fetcher.put(flows({"src_port": 2}))
    tracer.flush()
    fetcher.hold = False
    fetcher.release.set()

    # THEN a second eviction follows at once and delivers them (the seed lost that flush)
    assert receive_timeout(out, 1).flows["src_port"].tolist() == [1]
    assert receive_timeout(out, 1).flows["src_port"].tolist() == [2]
    assert fetcher.calls == 2
    stop.set()
    require_closed(out)


def test_stop_evicts_one_last_time_then_closes_the_output():
    # GIVEN a running tracer with an hour-long period and flows in the map
    fetcher = FakeFetcher()
    out, stop = Channel(10), threading.Event()
    worker = start(MapTracer(fetcher, HOUR).trace_loop(stop), out)
    require_nothing(out, wait=0.1)
    fetcher.put(flows({"src_port": 9}, {"src_port": 10}))
    # WHEN it is stopped
    stop.set()
    # THEN the flows come out, then the end of the output
    assert receive_timeout(out).flows["src_port"].tolist() == [9, 10]
    require_closed(out)
    worker.join(5)
    assert not worker.is_alive()


def test_every_eviction_reports_its_reason_and_cost():
    # GIVEN a tracer with a short timer on a fake period clock, observed
    fetcher, period = FakeFetcher(), FakeClock()
    seen = []
    tracer = MapTracer(fetcher, 0.2, period_clock=period.seconds,
                       on_eviction=lambda reason, n, stats: seen.append((reason, n)))
    stop, out = threading.Event(), Channel(10)
    thread = start(tracer.trace_loop(stop), out)
    # WHEN a flow waits for the timer, one is flushed early, and one is left at stop
    fetcher.put(flows({"src_port": 1, "packets": 1}))
    period.advance(0.25)
    receive_timeout(out, 2)
    fetcher.put(flows({"src_port": 2, "packets": 1}, {"src_port": 3, "packets": 1}))
    tracer.flush()
    receive_timeout(out, 2)
    fetcher.put(flows({"src_port": 4, "packets": 1}))
    stop.set()
    thread.join(5)
    # THEN each eviction says why it ran and how many flows it found
    reasons = [(r, n) for r, n in seen if n]
    assert reasons == [("timer", 1), ("map_full", 2), ("shutdown", 1)]
