"""Capacity limiter: back-pressure that drops instead of blocking.

Upstream of the limiter sit the kernel drains, which must never wait: a
stalled map tracer lets the kernel map fill up. So when the downstream queue
is full the batch is dropped, its flows and packets are counted, and the
drop is logged at once, then once per window (flowcollect/pipeline/log_backoff.py,
from one minute to one hour) while drops go on, naming the knobs to change.
"""
import logging
import time
from collections.abc import Callable
from typing import Protocol

from flowcollect.pipeline.channel import Channel, Closed
from flowcollect.pipeline.log_backoff import LogBackoff
from flowcollect.records.batch import FlowBatch
from flowcollect.records.tally import Tally

log = logging.getLogger(__name__)

# How often the channel loop looks at the log window when nothing arrives.
_IDLE_TICK_S = 1.0


class Room(Protocol):
    """A bounded downstream: a Channel, or the collector's link to a worker."""

    def try_put(self, item: FlowBatch) -> bool: ...


class CapacityLimiter:
    """Forwards batches to a bounded output while it has room; drops and counts the rest.

    dropped: flows and packets dropped since start (never reset: a counter for metrics).
    mono_clock: monotonic nanoseconds (injected by tests).
    """

    def __init__(self, *, mono_clock: Callable[[], int] = time.monotonic_ns, logger: logging.Logger = log) -> None:
        self._mono_clock = mono_clock
        self._log = logger
        self.dropped = Tally()
        self._backoff = LogBackoff(mono_clock(), at_once=True)

    @property
    def dropped_flows(self) -> int:
        return self.dropped.flows

    def offer(self, batch: FlowBatch, out: Room) -> bool:
        """Pass batch to `out` if it has room now; True if passed on."""
        passed = out.try_put(batch)
        if not passed:
            self.dropped.add(batch.flows)
            self._backoff.add(len(batch))
        self.tick()
        return passed

    def tick(self) -> None:
        """Log the drops that are due: the first at once, then the window's, once it is over."""
        report = self._backoff.due(self._mono_clock())
        if report is not None:
            when = "just now" if report.period_s is None else f"in the last {_duration(report.period_s)}"
            self._log.warning(
                "limiter dropped %d flows %s: the stages after the limiter cannot keep up. "
                "Give them more room (a larger queue_max_flows, more --workers) or send fewer, larger "
                "evictions (a longer cache_active_timeout)", report.count, when)

    def limit(self, in_ch: Channel[FlowBatch], out_ch: Channel[FlowBatch]) -> None:
        """The channel stage: runs until in_ch closes, then closes out_ch."""
        try:
            while True:
                try:
                    batch = in_ch.get(timeout=_IDLE_TICK_S)
                except TimeoutError:
                    self.tick()
                    continue
                except Closed:
                    return
                self.offer(batch, out_ch)
        finally:
            out_ch.close()


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
