"""Map tracer: evicts the kernel's flow table every eviction_timeout, at once on flush(), and early when it fills.

Each eviction swaps the halves of the kernel's flow table and drains the
retired one (the fetcher: FlowKernel.drain_flows, which also folds each
flow's counts from every CPU and converts the monotonic first/last-seen
times to wall-clock time with one (wall, monotonic) pair read just before the
swap). A flush() that arrives while an eviction runs is not lost, as it is in
the seed: it runs another eviction right after. With watch_fill, it also
swaps as soon as a CPU's region of the active half nears its cap
(fill_watch.py), so a flood of new flows is drained in time instead of
spilling into the ring buffer. With a drop fetcher
(--features drops), the drop maps are swapped and drained right after the
flow table and joined onto the flows (drop_join.py); so are the DNS maps with
a DNS fetcher (--features dns, dns_join.py) and the RTT maps with an RTT
fetcher (--features rtt, rtt_join.py). On stop, two last
evictions run and the output is closed.
"""
import logging
import threading
import time
from collections.abc import Callable

from flowcollect.pipeline.channel import Channel
from flowcollect.pipeline.dns_join import dns_join
from flowcollect.pipeline.drop_join import DropJoin
from flowcollect.pipeline.fill_watch import FillWatch
from flowcollect.pipeline.rtt_join import rtt_join
from flowcollect.pipeline.sources import DnsFetcher, DrainStats, DropFetcher, MapFetcher, RttFetcher
from flowcollect.pipeline.timebase import Clock, PeriodClock, Timebase
from flowcollect.records.batch import FlowBatch

log = logging.getLogger(__name__)

# The loop waits on the flush event, so it notices stop_event (a plain Event
# it cannot wait on at the same time) within this many seconds.
STOP_POLL_S = 0.25


EvictionListener = Callable[[str, int, DrainStats], None]
"""on_eviction(reason, flows, stats): reason is "timer", "map_full" (a flush), "map_filling" (swapped
before the map filled) or "shutdown"."""


class MapTracer:
    """Evicts `fetcher` (the kernel's flow table) into FlowBatches.

    eviction_timeout: seconds. sampling: the kernel's 1-in-N rate, carried into
    every row. clock: wall-clock epoch ns; mono_clock: monotonic ns, the clock
    of bpf_ktime_get_ns(). These two date the flows; the period runs on
    period_clock (monotonic seconds). watch_fill: swap early when a CPU's region
    of the active half nears its cap (else only by time and flush).
    drops, dns, rtt: the kernel's drop, DNS and RTT maps (--features), or None.
    """

    def __init__(self, fetcher: MapFetcher, eviction_timeout: float, *, sampling: int = 0, clock: Clock = time.time_ns,
                 mono_clock: Clock = time.monotonic_ns, period_clock: PeriodClock = time.monotonic,
                 watch_fill: bool = False, on_eviction: EvictionListener | None = None,
                 drops: DropFetcher | None = None, dns: DnsFetcher | None = None,
                 rtt: RttFetcher | None = None) -> None:
        self._fetcher = fetcher
        self._drops = drops
        self._drop_join = DropJoin()
        self._dns_join = dns_join()
        self._rtt_join = rtt_join()
        self._dns = dns
        self._rtt = rtt
        self._eviction_timeout = eviction_timeout
        self._sampling = sampling
        self._clock = clock
        self._mono_clock = mono_clock
        self._period_clock = period_clock
        self._flush_requested = threading.Event()
        # Set once the tracer has made its last evictions: after it, no program writes the maps,
        # so the ring-buffer tracer (which stops on this) reads the last of the ring buffer then.
        self.finished = threading.Event()
        self._fill = FillWatch(fetcher.table_fill, period_clock, idle_check_s=STOP_POLL_S) if watch_fill else None
        self._on_eviction = on_eviction or (lambda reason, flows, stats: None)

    def flush(self) -> None:
        """Ask for an eviction now (e.g. the kernel map is full). Never blocks."""
        self._flush_requested.set()

    def evict(self, reason: str = "timer", last: bool = False) -> FlowBatch | None:
        """Swap and drain the kernel map: a FlowBatch of FLOW_EXPORT rows, or None if it was empty.

        last: the agent's last eviction, after which no feature row is kept for the next one."""
        if self._fill is not None:
            self._fill.swapping()
        timebase = Timebase.read(self._clock, self._mono_clock)
        flows, stats = self._fetcher.drain_flows(timebase.wall_ns - timebase.mono_ns, self._sampling)
        dropped = self._drops.swap_and_drain_drops() if self._drops is not None else None
        dns = self._dns.swap_and_drain_dns() if self._dns is not None else None
        rtt = self._rtt.swap_and_drain_rtt() if self._rtt is not None else None
        log.debug("evicted %d flows from the kernel table (%s)", len(flows), stats)
        self._on_eviction(reason, len(flows), stats)
        if dropped is not None:
            flows = self._drop_join.join(flows, dropped, timebase, self._sampling, last=last)
        if dns is not None:
            flows = self._dns_join.join(flows, dns, last=last)
        if rtt is not None:
            flows = self._rtt_join.join(flows, rtt, last=last)
        return FlowBatch(flows=flows) if len(flows) else None

    def trace_loop(self, stop_event: threading.Event) -> Callable[[Channel[FlowBatch]], None]:
        """The start function of the stage: call it with the output channel; returns after stop_event."""

        def trace(out_ch: Channel[FlowBatch]) -> None:
            try:
                next_eviction = self._period_clock() + self._eviction_timeout
                while not stop_event.is_set():
                    check = STOP_POLL_S if self._fill is None else self._fill.next_check()
                    wait = min(next_eviction - self._period_clock(), check)
                    flushing = self._flush_requested.wait(max(wait, 0))
                    if stop_event.is_set():
                        break
                    now = self._period_clock()
                    filling = self._fill is not None and self._fill.full()
                    if flushing or filling or now >= next_eviction:
                        # Cleared before the eviction, so that a flush() asked
                        # while it runs finds the event set and runs another.
                        self._flush_requested.clear()
                        next_eviction = now + self._eviction_timeout
                        self._send(out_ch, "map_full" if flushing else "map_filling" if filling else "timer")
                # Two last evictions: the first swap waits for every program still running
                # (the agent detached them before stopping us), the second drains what those
                # wrote into the map the first swap put in. Nothing written before stop is left.
                self._send(out_ch, "shutdown")
                self._send(out_ch, "shutdown", last=True)
            finally:
                self.finished.set()
                out_ch.close()

        return trace

    def _send(self, out_ch: Channel[FlowBatch], reason: str, last: bool = False) -> None:
        batch = self.evict(reason, last)
        if batch is not None:
            out_ch.put(batch)
