"""When to log a count of repeated losses: once per window, the window growing while they go on.

The window doubles after every window with losses, from one minute to one
hour, and falls back to one minute after a quiet one, so a persistent
overload is reported without flooding the log. With `at_once`, the first
loss after a quiet window is reported at once rather than at the window's end.
The capacity limiter (flowcollect/pipeline/limiter.py) and the publishing
proxy (flowcollect/transport/publish_proxy.py) log their drops through this.
"""
from dataclasses import dataclass

INITIAL_PERIOD_S = 60.0
MAX_PERIOD_S = 3600.0


@dataclass(frozen=True)
class Report:
    """What to log now: `count` losses over the last `period_s` seconds (None: just now)."""

    count: int
    period_s: float | None


class LogBackoff:
    """Counts losses (add) and says when they are due to be logged (due). Not thread-safe."""

    def __init__(self, now_ns: int, *, at_once: bool = False) -> None:
        self._at_once = at_once
        self._quiet = at_once
        self._period_s = INITIAL_PERIOD_S
        self._window_start_ns = now_ns
        self.pending = 0

    def add(self, count: int) -> None:
        self.pending += count

    def due(self, now_ns: int) -> Report | None:
        """The report to log now, if one is due; it resets the pending count."""
        if self._quiet and self.pending:
            self._quiet = False
            self._window_start_ns = now_ns
            return self._take(None)
        if now_ns - self._window_start_ns < self._period_s * 1e9:
            return None
        period = self._period_s
        self._window_start_ns = now_ns
        if self.pending:
            self._period_s = min(2 * period, MAX_PERIOD_S)
            return self._take(period)
        self._period_s = INITIAL_PERIOD_S
        self._quiet = self._at_once
        return None

    def _take(self, period_s: float | None) -> Report:
        report = Report(self.pending, period_s)
        self.pending = 0
        return report
