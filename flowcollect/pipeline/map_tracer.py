"""Map tracer: evicts the kernel's flow map every eviction_timeout, or at once on flush().

Each eviction swaps the kernel's flow maps and drains the retired one (the
fetcher: FlowKernel.swap_and_drain, which also folds the per-CPU values),
then converts the monotonic first/last-seen times to wall-clock time with one
(wall, monotonic) pair read just before the swap. A flush() that arrives while
an eviction runs is not lost, as it is in the seed: it runs another eviction
right after. On stop, one last eviction runs and the output is closed.
"""
import logging
import threading
import time
from collections.abc import Callable

from flowcollect.pipeline.channel import Channel
from flowcollect.pipeline.sources import DrainStats, MapFetcher
from flowcollect.pipeline.timebase import Clock, PeriodClock, Timebase, evicted
from flowcollect.records.batch import FlowBatch

log = logging.getLogger(__name__)

# The loop waits on the flush event, so it notices stop_event (a plain Event
# it cannot wait on at the same time) within this many seconds.
STOP_POLL_S = 0.25


EvictionListener = Callable[[str, int, DrainStats], None]
"""on_eviction(reason, flows, stats): reason is "timer", "map_full" (a flush) or "shutdown"."""


class MapTracer:
    """Evicts `fetcher` (the kernel's flow maps) into FlowBatches.

    eviction_timeout: seconds. sampling: the kernel's 1-in-N rate, carried into
    every row. clock: wall-clock epoch ns; mono_clock: monotonic ns, the clock
    of bpf_ktime_get_ns(). These two date the flows; the period runs on
    period_clock (monotonic seconds).
    """

    def __init__(self, fetcher: MapFetcher, eviction_timeout: float, *, sampling: int = 0, clock: Clock = time.time_ns,
                 mono_clock: Clock = time.monotonic_ns, period_clock: PeriodClock = time.monotonic,
                 on_eviction: EvictionListener | None = None) -> None:
        self._fetcher = fetcher
        self._eviction_timeout = eviction_timeout
        self._sampling = sampling
        self._clock = clock
        self._mono_clock = mono_clock
        self._period_clock = period_clock
        self._flush_requested = threading.Event()
        self._on_eviction = on_eviction or (lambda reason, flows, stats: None)

    def flush(self) -> None:
        """Ask for an eviction now (e.g. the kernel map is full). Never blocks."""
        self._flush_requested.set()

    def evict(self, reason: str = "timer") -> FlowBatch | None:
        """Swap and drain the kernel map: a FlowBatch of FLOW_EXPORT rows, or None if it was empty."""
        timebase = Timebase.read(self._clock, self._mono_clock)
        drained, stats = self._fetcher.swap_and_drain()
        log.debug("evicted %d flows from the kernel map (%s)", len(drained), stats)
        self._on_eviction(reason, len(drained), stats)
        if not len(drained):
            return None
        # evicted() copies: the drained rows are the fetcher's buffer, reused next time.
        return FlowBatch(flows=evicted(drained, timebase, self._sampling))

    def trace_loop(self, stop_event: threading.Event) -> Callable[[Channel[FlowBatch]], None]:
        """The start function of the stage: call it with the output channel; returns after stop_event."""

        def trace(out_ch: Channel[FlowBatch]) -> None:
            try:
                next_eviction = self._period_clock() + self._eviction_timeout
                while not stop_event.is_set():
                    wait = min(next_eviction - self._period_clock(), STOP_POLL_S)
                    flushing = self._flush_requested.wait(max(wait, 0))
                    if stop_event.is_set():
                        break
                    now = self._period_clock()
                    if flushing or now >= next_eviction:
                        # Cleared before the eviction, so that a flush() asked
                        # while it runs finds the event set and runs another.
                        self._flush_requested.clear()
                        next_eviction = now + self._eviction_timeout
                        self._send(out_ch, "map_full" if flushing else "timer")
                self._send(out_ch, "shutdown")
            finally:
                out_ch.close()

        return trace

    def _send(self, out_ch: Channel[FlowBatch], reason: str) -> None:
        batch = self.evict(reason)
        if batch is not None:
            out_ch.put(batch)
