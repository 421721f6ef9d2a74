"""Signal flags: the handlers set a flag and do nothing else; the process's loop acts on it."""
import signal


class SignalFlags:
    def __init__(self):
        self.stop = False    # SIGTERM (and, in the collector, SIGINT): drain, deliver, exit
        self.reopen = False  # SIGHUP: reopen the JSON-lines files

    def install(self, stop_on=(signal.SIGTERM, signal.SIGINT)):
        for signum in stop_on:
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._reopen)

    def _stop(self, *_):
        self.stop = True

    def _reopen(self, *_):
        self.reopen = True
