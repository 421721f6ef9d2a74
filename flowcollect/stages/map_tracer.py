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

from flowcollect.records import FlowBatch
from flowcollect.stages.timebase import Timebase, evicted

log = logging.getLogger(__name__)

# The loop waits on the flush event, so it notices stop_event (a plain Event
# it cannot wait on at the same time) within this many seconds.
STOP_POLL_S = 0.25


class MapTracer:
    """fetcher: anything with swap_and_drain() -> (FLOW_RECORD rows, stats), like FlowKernel.

    eviction_timeout: seconds. sampling: the kernel's 1-in-N rate, carried into
    every row. clock: wall-clock epoch ns; mono_clock: monotonic ns, the clock
    of bpf_ktime_get_ns(). These two date the flows; the period itself runs on
    the real monotonic clock.
    """

    def __init__(self, fetcher, eviction_timeout, *, sampling=0, clock=time.time_ns,
                 mono_clock=time.monotonic_ns, on_eviction=None):
        self._fetcher = fetcher
        self._eviction_timeout = eviction_timeout
        self._sampling = sampling
        self._clock = clock
        self._mono_clock = mono_clock
        self._flush_requested = threading.Event()
        # on_eviction(reason, flows, stats): "timer", "map_full" (a flush) or "shutdown".
        self._on_eviction = on_eviction or (lambda reason, flows, stats: None)

    def flush(self):
        """Ask for an eviction now (e.g. the kernel map is full). Never blocks."""
        self._flush_requested.set()

    def evict(self, reason="timer"):
        """Swap and drain the kernel map: a FlowBatch of FLOW_EXPORT rows, or None if it was empty."""
        timebase = Timebase.read(self._clock, self._mono_clock)
        drained, stats = self._fetcher.swap_and_drain()
        log.debug("evicted %d flows from the kernel map (%s)", len(drained), stats)
        self._on_eviction(reason, len(drained), stats)
        if not len(drained):
            return None
        # evicted() copies: the drained rows are the fetcher's buffer, reused next time.
        return FlowBatch(flows=evicted(drained, timebase, self._sampling))

    def trace_loop(self, stop_event):
        """The start function of the stage: call it with the output channel; returns after stop_event."""

        def trace(out_ch):
            try:
                next_eviction = time.monotonic() + self._eviction_timeout
                while not stop_event.is_set():
                    wait = min(next_eviction - time.monotonic(), STOP_POLL_S)
                    flushing = self._flush_requested.wait(max(wait, 0))
                    if stop_event.is_set():
                        break
                    if flushing or time.monotonic() >= next_eviction:
                        # Cleared before the eviction, so that a flush() asked
                        # while it runs finds the event set and runs another.
                        self._flush_requested.clear()
                        next_eviction = time.monotonic() + self._eviction_timeout
                        self._send(out_ch, "map_full" if flushing else "timer")
                self._send(out_ch, "shutdown")
            finally:
                out_ch.close()

        return trace

    def _send(self, out_ch, reason):
        batch = self.evict(reason)
        if batch is not None:
            out_ch.put(batch)
