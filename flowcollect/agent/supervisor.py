"""Worker processes: start, watch, restart, stop.

Workers are separate interpreters (`python -m flowcollect.agent.worker`), started
with their addresses and settings as JSON, never with sockets or a forked
ZeroMQ context. They leave the terminal's session, so a Ctrl-C reaches only
the collector, which then drains and tells them to stop; and they ask the
kernel to signal them when the collector dies (PR_SET_PDEATHSIG).
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

RESTART_BACKOFF_S = (0.2, 1.0, 5.0, 30.0)


class WorkerProcess:
    def __init__(self, index: int, spec: WorkerSpec) -> None:
        self.index = index
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._next_start = 0.0

    def start(self) -> None:
        # systemd hears from the collector only (NotifyAccess=main).
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowcollect.agent.worker", "--spec", self.spec.to_json()],
            start_new_session=True, stdin=subprocess.DEVNULL, env=env)
        log.info("worker %d started (pid %d)", self.index, self.process.pid)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def restart_due(self, now: float) -> bool:
        return now >= self._next_start

    def schedule_restart(self, now: float) -> float:
        delay = RESTART_BACKOFF_S[min(self.restarts, len(RESTART_BACKOFF_S) - 1)]
        self._next_start = now + delay
        self.restarts += 1
        return delay

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited since poll()
                self.process.send_signal(signum)


class Supervisor:
    """Keeps N workers alive; `on_exit(worker, returncode)` hears about every death."""

    def __init__(self, specs: Sequence[WorkerSpec], on_exit: Callable[[WorkerProcess, int | None], None] | None = None,
                 on_restart: Callable[[WorkerProcess], None] | None = None) -> None:
        self.workers = [WorkerProcess(i, spec) for i, spec in enumerate(specs)]
        self._on_exit = on_exit or (lambda worker, code: None)
        self._on_restart = on_restart or (lambda worker: None)
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
