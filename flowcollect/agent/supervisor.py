"""Worker processes: start, watch, restart, stop; runs in the collector's main thread.

Workers are separate interpreters (`python -P -m flowcollect.agent.worker`),
started with their addresses and settings as JSON, never with sockets or a
forked ZeroMQ context, in `/` and with -P, so neither the folder the agent
was started from nor its unbuilt source tree can shadow the installed
package. They leave the terminal's session, so a Ctrl-C reaches only the
collector, which then drains and tells them to stop; and they ask the kernel
to signal them when the collector dies (PR_SET_PDEATHSIG).

A worker sends STATUS every second (flowcollect/agent/worker.py). One that
is silent for HEARTBEAT_TIMEOUT_S (stopped, hung, swapping to death) is
killed and restarted like one that died. Restarts back off the way a crash
loop needs and a single crash does not (RestartBackoff): a worker that dies
as it starts waits twice as long each time, up to RESTART_MAX_S; one that
had been running for QUIET_S is restarted after RESTART_BASE_S, however
often it died before.
"""
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from flowcollect.agent.worker_spec import WorkerSpec

log = logging.getLogger(__name__)

RESTART_BASE_S = 0.2
RESTART_MAX_S = 30.0
QUIET_S = 2.0  # a worker that runs this long has started: its death is no crash loop
HEARTBEAT_TIMEOUT_S = 3.0  # three missed STATUS messages
START_TIMEOUT_S = 15.0  # a new interpreter's imports, on a loaded host


class RestartBackoff:
    """The delay before a worker's next start (supervisord's startsecs rule): each instance that dies
    within QUIET_S of its start doubles it, from RESTART_BASE_S to at most RESTART_MAX_S; an instance
    that ran longer than that was not crash-looping, and its death starts the ladder again."""

    def __init__(self) -> None:
        self._quick_deaths = 0

    def died(self, uptime_s: float) -> float:
        """Count one death after uptime_s seconds of running; return the delay before the restart."""
        self._quick_deaths = self._quick_deaths + 1 if uptime_s < QUIET_S else 0
        return float(min(RESTART_MAX_S, RESTART_BASE_S * 2 ** self._quick_deaths))


class WorkerProcess:
    def __init__(self, index: int, spec: WorkerSpec) -> None:
        self.index = index
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.silenced = False  # this instance was killed for its silence
        self.backoff = RestartBackoff()
        self._next_start = 0.0

    def start(self) -> None:
        # systemd hears from the collector only (NotifyAccess=main).
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "flowcollect.agent.worker", "--spec", self.spec.to_json()],
            start_new_session=True, stdin=subprocess.DEVNULL, env=env, cwd="/")
        self.started_at = time.monotonic()
        self.silenced = False
        log.info("worker %d started (pid %d)", self.index, self.process.pid)

    def silent_for(self, now: float, last_heard: float) -> float:
        """How long past its deadline this instance is without a STATUS (0 while it is in time)."""
        if last_heard >= self.started_at:
            return max(0.0, now - last_heard - HEARTBEAT_TIMEOUT_S)
        return max(0.0, now - self.started_at - START_TIMEOUT_S)  # not heard from since it started

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def restart_due(self, now: float) -> bool:
        return now >= self._next_start

    def schedule_restart(self, now: float) -> float:
        delay = self.backoff.died(now - self.started_at)
        self._next_start = now + delay
        self.restarts += 1
        return delay

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited since poll()
                self.process.send_signal(signum)


class Supervisor:
    """Keeps N workers alive; `on_exit(worker, returncode)` hears about every death, `on_hung(worker)`
    about every worker killed for its silence; `last_heard(index)` is the monotonic time of worker
    index's last STATUS (the collector reads them)."""

    def __init__(self, specs: Sequence[WorkerSpec], on_exit: Callable[[WorkerProcess, int | None], None] | None = None,
                 on_restart: Callable[[WorkerProcess], None] | None = None,
                 last_heard: Callable[[int], float] | None = None,
                 on_hung: Callable[[WorkerProcess], None] | None = None) -> None:
        self.workers = [WorkerProcess(i, spec) for i, spec in enumerate(specs)]
        self._on_exit = on_exit or (lambda worker, code: None)
        self._on_restart = on_restart or (lambda worker: None)
        self._last_heard = last_heard
        self._on_hung = on_hung or (lambda worker: None)
        self._stopping = False
        self._dead: dict[int, WorkerProcess] = {}

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def check(self, now: float | None = None) -> None:
        """Notice dead workers and restart those whose back-off is over."""
        if self._stopping:
            return
        now = time.monotonic() if now is None else now
        for worker in self.workers:
            self._kill_if_silent(worker, now)
            if worker.index not in self._dead and worker.exited() and worker.process is not None:
                code = worker.process.returncode
                delay = worker.schedule_restart(now)
                self._dead[worker.index] = worker
                log.error("worker %d (pid %d) exited with %s; restarting in %.1f s",
                          worker.index, worker.pid, _exit_text(code), delay)
                self._on_exit(worker, code)
            if worker.index in self._dead and worker.restart_due(now):
                del self._dead[worker.index]
                worker.start()
                self._on_restart(worker)

    def _kill_if_silent(self, worker: WorkerProcess, now: float) -> None:
        pid = worker.pid
        if self._last_heard is None or pid is None or worker.silenced or worker.exited():
            return
        late = worker.silent_for(now, self._last_heard(worker.index))
        if late > 0:
            silent = now - max(worker.started_at, self._last_heard(worker.index))
            log.error("worker %d (pid %d) sent no status for %.1f s (stopped or hung): killing it", worker.index,
                      pid, silent)
            worker.silenced = True
            worker.signal(signal.SIGKILL)  # SIGKILL, unlike SIGTERM, also ends a stopped process
            self._on_hung(worker)

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process is not None and not w.exited()]

    def stop(self, grace_s: float = 3.0, term_s: float = 1.0) -> None:
        """Wait for workers told to stop; then SIGTERM, then SIGKILL (the stop ladder)."""
        self._stopping = True
        ladder: tuple[tuple[signal.Signals | None, float], ...] = (
            (None, grace_s), (signal.SIGTERM, term_s), (signal.SIGKILL, 1.0))
        for signum, wait_s in ladder:
            if signum is not None:
                for worker in self.alive():
                    log.warning("worker %d did not stop in time: %s", worker.index, signum.name)
                    worker.signal(signum)
            deadline = time.monotonic() + wait_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not self.alive():
                return


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def die_with_parent(parent_pid: int) -> None:
    """In a worker: get SIGTERM when the collector dies (Linux prctl PR_SET_PDEATHSIG).

    If it died before this call (while the worker was starting), exit now.
    """
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        sys.exit("flowcollect worker: the collector is gone")
