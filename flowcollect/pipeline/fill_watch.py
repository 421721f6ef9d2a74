"""When to swap the kernel's flow maps early: before the active one fills and new flows spill.

A full map sends every further new flow through the ring buffer, and a flood
of new flows (a scan, a SYN flood) overruns that too. The kernel programs
count the flows they insert (bpf/flows.bpf.c fc_flows_inserted, read without
a syscall); the flows inserted since the last swap are about what the active
map holds. Once they reach `share` of its capacity the map tracer swaps at
once. The watch looks again when, at the rate seen since its last look, the
map would be halfway to that mark: every few milliseconds during a flood,
every STOP_POLL_S when idle, so it costs nothing on a quiet host.
"""
from collections.abc import Callable

from flowcollect.pipeline.timebase import PeriodClock

# Swapping takes an RCU grace period (~10 ms) during which new flows still land
# in the retiring map: the mark leaves room for them.
DEFAULT_SHARE = 0.5
MIN_CHECK_S = 0.001


class FillWatch:
    """inserted(): flows inserted since load; capacity: flows the active map holds."""

    def __init__(self, inserted: Callable[[], int], capacity: int, clock: PeriodClock, *,
                 share: float = DEFAULT_SHARE, idle_check_s: float = 0.25) -> None:
        self._inserted = inserted
        self._mark = max(1, int(capacity * share))
        self._clock = clock
        self._idle_check_s = idle_check_s
        self._at_swap = inserted()
        self._last_count = 0
        self._last_seen = clock()
        self._next_check_s = idle_check_s

    def swapping(self) -> None:
        """Called just before a swap: what is inserted from here on lands in the next map."""
        self._at_swap = self._inserted()
        self._last_count = 0
        self._last_seen = self._clock()

    def full(self) -> bool:
        """Has the active map reached the mark? Also plans when to look next."""
        count = self._inserted() - self._at_swap
        now = self._clock()
        elapsed = now - self._last_seen
        rate = (count - self._last_count) / elapsed if elapsed > 0 else 0.0
        self._last_count, self._last_seen = count, now
        if count >= self._mark:
            self._next_check_s = MIN_CHECK_S  # the next map may fill as fast
            return True
        if rate <= 0:
            self._next_check_s = self._idle_check_s
        else:
            self._next_check_s = min(max((self._mark - count) / rate / 2, MIN_CHECK_S), self._idle_check_s)
        return False

    def next_check(self) -> float:
        """Seconds until the watch should look again."""
        return self._next_check_s
