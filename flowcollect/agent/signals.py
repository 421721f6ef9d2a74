"""Signal flags: the handlers set a flag and do nothing else; the process's loop acts on it."""
import signal
from collections.abc import Iterable
from types import FrameType


class SignalFlags:
    def __init__(self) -> None:
        self.stop = False    # SIGTERM (and, in the collector, SIGINT): drain, deliver, exit
        self.reopen = False  # SIGHUP: reopen the JSON-lines files

    def install(self, stop_on: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        for signum in stop_on:
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._reopen)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True

    def _reopen(self, signum: int, frame: FrameType | None) -> None:
        self.reopen = True
