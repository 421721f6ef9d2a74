"""Capacity limiter: back-pressure that drops instead of blocking.

Upstream of the limiter sit the kernel drains, which must never wait: a
stalled map tracer lets the kernel map fill up. So when the downstream queue
is full the batch is dropped, its flows are counted, and the count is logged
once per window. The window doubles after every window with drops, from one
minute to one hour, and falls back to one minute after a quiet one, so a
persistent overload is reported without flooding the log.
"""
import logging
import time

from flowcollect.channel import Closed

log = logging.getLogger(__name__)

INITIAL_LOG_PERIOD_S = 60.0
MAX_LOG_PERIOD_S = 3600.0
# How often the channel loop looks at the log window when nothing arrives.
_IDLE_TICK_S = 1.0


class CapacityLimiter:
    """Forwards batches to a bounded output while it has room; drops and counts the rest.

    dropped_flows: flows dropped since start (never reset: a counter for metrics).
    mono_clock: monotonic nanoseconds (injected by tests).
    """

    def __init__(self, *, mono_clock=time.monotonic_ns, logger=log):
        self._mono_clock = mono_clock
        self._log = logger
        self.dropped_flows = 0
        self._unreported = 0
        self._period_s = INITIAL_LOG_PERIOD_S
        self._window_start_ns = mono_clock()

    def offer(self, batch, out):
        """Pass batch to `out` (anything with try_put) if it has room now; True if passed on."""
        passed = out.try_put(batch)
        if not passed:
            self.dropped_flows += len(batch)
            self._unreported += len(batch)
        self.tick()
        return passed

    def tick(self):
        """Close the log window if it is over: log its drops, if any, and size the next one."""
        now = self._mono_clock()
        if now - self._window_start_ns < self._period_s * 1e9:
            return
        if self._unreported:
            self._log.warning(
                "limiter dropped %d flows in the last %s: the stages after the limiter cannot keep up. "
                "Give them more room (longer queue lengths, more --workers) or send fewer, larger "
                "evictions (a longer cache_active_timeout)",
                self._unreported, _duration(self._period_s))
            self._unreported = 0
            self._period_s = min(2 * self._period_s, MAX_LOG_PERIOD_S)
        else:
            self._period_s = INITIAL_LOG_PERIOD_S
        self._window_start_ns = now

    def limit(self, in_ch, out_ch):
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


def _duration(seconds):
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
