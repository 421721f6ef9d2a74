"""The agent's eviction period, read from the stream: rates are taken over whole evictions.

Every flow record counts what its flow carried during one eviction period
(`cache_active_timeout`), and each eviction reaches a subscriber as a burst
of messages, one or more per worker, a few milliseconds apart. The period is
the spacing of those bursts. The wire format does not carry it, and the
records' times do not either (a flow's last packet may come long before the
eviction), so it is measured here: the median of the last few gaps between
bursts, which an eviction that found no flow (it sends nothing: a gap of two
periods) or an early swap of a filling map (a short gap) does not move.
"""
import math
import statistics
from collections import deque

BURST_GAP_S = 0.025
"""A message that arrives within this time of the previous one's handling belongs to the same eviction."""
GAPS_KEPT = 7
GRACE_S = 0.1
"""A predicted eviction counts as past only this long after its time: its messages take a moment to come."""


class EvictionClock:
    """When the agent evicts: the time of each burst of messages, and the period between them."""

    def __init__(self) -> None:
        self._burst: float | None = None  # start of the latest burst
        self._idle_since: float | None = None  # when the previous message was handled
        self._gaps: deque[float] = deque(maxlen=GAPS_KEPT)

    def arrived(self, now: float) -> float:
        """A message arrived at `now`: the time of the eviction it belongs to (the start of its burst).

        Gaps are measured from the end of the previous message's handling, so that
        messages that queued while this subscriber was busy stay in one burst.
        """
        if self._burst is None or self._idle_since is None or now - self._idle_since > BURST_GAP_S:
            if self._burst is not None:
                self._gaps.append(now - self._burst)
            self._burst = now
        return self._burst

    def handled(self, now: float) -> None:
        """The message that arrived last has been handled at `now`."""
        self._idle_since = now

    @property
    def period(self) -> float | None:
        """Seconds between evictions, None until two bursts were seen."""
        return statistics.median(self._gaps) if self._gaps else None

    def latest_eviction(self, now: float) -> float | None:
        """The time of the last eviction at `now`: the latest burst, or an eviction after it that
        sent nothing (it found no flow), predicted from the period. None before the first burst."""
        if self._burst is None:
            return None
        period = self.period
        if period is None:
            return self._burst
        return self._burst + max(0, math.floor((now - GRACE_S - self._burst) / period)) * period
