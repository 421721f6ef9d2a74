"""When to log a count of repeated losses: once per window, the window growing while they go on.

The window doubles after every window with losses, from one minute to one
hour, and falls back to one minute after a quiet one, so a persistent
overload is reported without flooding the log. With `at_once`, the first
loss after a quiet window is reported at once rather than at the window's end.
The capacity limiter (flowcollect/pipeline/limiter.py), the publishing proxy
(flowcollect/transport/publish_proxy.py) and every place that loses flows
(LossLog) log through this.
"""
import logging
import time
from collections.abc import Callable
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


class LossLog:
    """One kind of loss, logged as a warning at once, then once per window while it goes on.

    The line reads "<packets> packets (<flows> flows) <what> <when>"; kernel
    losses know no flows (flows=None). tick() logs what is due: call it now
    and then (a loop's idle turn), so that a window's count is not left unsaid.
    """

    def __init__(self, logger: logging.Logger, what: str, *, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._log = logger
        self._what = what
        self._clock = clock
        self._packets = LogBackoff(clock(), at_once=True)
        self._flows = 0
        self.packets = 0  # in all, since start
        self.flows = 0

    def lost(self, packets: int, flows: int | None = None) -> None:
        if not packets and not flows:
            return
        self._packets.add(packets)
        self.packets += packets
        if flows is not None:
            self._flows += flows
            self.flows += flows
        self.tick()

    def tick(self) -> None:
        report = self._packets.due(self._clock())
        if report is None:
            return
        when = "just now" if report.period_s is None else f"in the last {report.period_s:.0f} s"
        flows = f" ({self._flows} flows)" if self._flows else ""
        self._log.warning("%d packets%s %s %s (%d in all)", report.count, flows, self._what, when, self.packets)
        self._flows = 0
