"""Whether the agent traces, as /healthz says it (server.py serves it): the collector's view of itself.

Runs in the collector: the main thread and the map tracer tell it what happens, the HTTP thread asks. Apart
from server.py so that an agent without --metrics-address never imports prometheus_client.
"""
import time
from collections.abc import Callable
from typing import Protocol

# /healthz: the map tracer is stuck when it has not evicted for this many eviction periods, plus a
# long drain's time (a swap waits for running programs, a full map takes a while to read).
HEALTHY_EVICTIONS = 3
EVICTION_SLACK_S = 1.0


class Thread(Protocol):
    def is_alive(self) -> bool: ...


class Tracing:
    """Whether the agent traces, for /healthz: the collector says when it has started, when the map tracer
    evicts (every eviction, empty ones too) and when it stops; `workers_working()` counts the workers that
    run and answer."""

    def __init__(self, eviction_period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.eviction_period_s = eviction_period_s
        self._clock = clock
        self._last_eviction, self._since_what = clock(), "started"
        self._workers_working: Callable[[], int] = lambda: 0
        self._map_tracer: Thread | None = None
        self._stopping = False

    def started(self, map_tracer: Thread, workers_working: Callable[[], int]) -> None:
        """The programs are loaded and attached, the workers up, the tracers running."""
        self._last_eviction, self._since_what = self._clock(), "started"  # the first eviction is a period away
        self._workers_working = workers_working
        self._map_tracer = map_tracer  # last: the HTTP thread reads it first

    def evicted(self) -> None:
        self._last_eviction, self._since_what = self._clock(), "last eviction"

    def stopping(self) -> None:
        self._stopping = True

    def check(self) -> tuple[bool, str]:
        """(tracing, one line saying why or why not)."""
        if self._stopping:
            return False, "stopping: our programs are detached"
        if self._map_tracer is None:
            return False, "starting: the kernel programs, the workers or the tracers are not up yet"
        if not self._map_tracer.is_alive():
            return False, "the map-tracer thread has died: nothing is evicted from the kernel"
        since = self._clock() - self._last_eviction
        if since > HEALTHY_EVICTIONS * self.eviction_period_s + EVICTION_SLACK_S:
            return False, (f"no eviction of the kernel map for {since:.1f} s (eviction period "
                           f"{self.eviction_period_s:g} s): the map tracer is stuck")
        working = self._workers_working()
        if not working:
            return False, "no worker is running: each one is starting, restarting or not answering"
        return True, f"tracing: {working} workers running, {self._since_what} {since:.1f} s ago"
