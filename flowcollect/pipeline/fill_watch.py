"""When to swap the kernel's flow table early: before a CPU's region of the active half reaches its cap.

A region at its cap sends every further new flow through the ring buffer,
and a flood of new flows (a scan, a SYN flood) overruns that too. Each CPU
counts the flows it starts in its region of the active half, and user space
reads the counts through the table's mapping (FlowKernel.table_fill, no
syscall). Once one region holds `share` of its cap the map tracer swaps at
once, and the next half is laid out larger (kernel/table_sizing.py). The
watch looks again when, at the rate seen since its last look, the fill would
be halfway to the mark: every few milliseconds during a flood, every
STOP_POLL_S when idle, so it costs nothing on a quiet host.
"""
from collections.abc import Callable

from flowcollect.kernel.table_sizing import FILL_SHARE
from flowcollect.pipeline.timebase import PeriodClock

MIN_CHECK_S = 0.001


class FillWatch:
    """fill(): the largest share of its cap a CPU's region of the active half holds."""

    def __init__(self, fill: Callable[[], float], clock: PeriodClock, *, share: float = FILL_SHARE,
                 idle_check_s: float = 0.25) -> None:
        self._fill = fill
        self._share = share
        self._clock = clock
        self._idle_check_s = idle_check_s
        self._last_fill = 0.0
        self._last_seen = clock()
        self._next_check_s = idle_check_s

    def swapping(self) -> None:
        """Called just before a swap: the next half starts empty."""
        self._last_fill = 0.0
        self._last_seen = self._clock()

    def full(self) -> bool:
        """Has a region of the active half reached the mark? Also plans when to look next."""
        fill = self._fill()
        now = self._clock()
        elapsed = now - self._last_seen
        rate = (fill - self._last_fill) / elapsed if elapsed > 0 else 0.0
        self._last_fill, self._last_seen = fill, now
        if fill >= self._share:
            self._next_check_s = MIN_CHECK_S  # the next half may fill as fast
            return True
        if rate <= 0:
            self._next_check_s = self._idle_check_s
        else:
            self._next_check_s = min(max((self._share - fill) / rate / 2, MIN_CHECK_S), self._idle_check_s)
        return False

    def next_check(self) -> float:
        """Seconds until the watch should look again."""
        return self._next_check_s
