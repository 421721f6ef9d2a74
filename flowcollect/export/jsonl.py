"""JSON-lines output: every flow as one line (flowcollect/records/json_lines.py) on stdout or in a file.

A file is opened for appending, never truncated, and reopened on request: the
agent calls reopen() after SIGHUP so that logrotate can move the file away
(the lines already written stay in the moved file; the next batch goes to a
new file at the configured path). The reopen happens in the exporting thread,
before its next write, so a signal handler only has to call reopen().

Several workers may write to the same file or stdout. Appends of a whole
batch to a regular file do not interleave, but a pipe only keeps writes of up
to 4 KiB whole: with `lock_path`, each batch is written under an exclusive
flock of that file, so lines from different workers never mix.

A write that fails (disk full, closed pipe) is counted (lost: write_failed,
and in the flowcollect_export_errors_total metric), logged at once and then
with back-off, and its batch dropped; the agent keeps running. A failure can
leave at most one partial line: it is ended with a newline before the next
batch, so readers lose that line only.
"""
import fcntl
import logging
import os
import sys
import threading

import numpy as np

from flowcollect.export.prometheus import health
from flowcollect.pipeline.log_backoff import LossLog
from flowcollect.records.batch import FlowBatch
from flowcollect.records.json_lines import encode_lines
from flowcollect.records.layout import Rows
from flowcollect.records.tally import OutputTally

log = logging.getLogger(__name__)

STDOUT = "-"


class JsonLinesSink:
    """Writes FlowBatch objects as JSON lines to `target` ("-" for stdout, else a path)."""

    kind = "jsonl"

    def __init__(self, target: str, lock_path: str | None = None, stdout_fd: int | None = None) -> None:
        self.target = target
        self.name = f"jsonl:{target}"
        self.tally = OutputTally()
        self.errors = 0         # failed writes (their batches were dropped)
        self._losses = LossLog(log, f"not written to {self.name}: the write failed")
        self._last_error = ""
        self._stdout_fd = sys.stdout.fileno() if stdout_fd is None and target == STDOUT else stdout_fd
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) if lock_path else None
        self._fd: int | None = None
        self._reopen = threading.Event()
        self._torn = False      # the last failed write may have left a partial line
        self._open()

    def __repr__(self) -> str:
        return f"JsonLinesSink({self.target!r})"

    def _open(self) -> None:
        if self.target == STDOUT:
            self._fd = self._stdout_fd
            return
        # A folder of its own (/var/log/flowcollect/...) is made if missing, as systemd's LogsDirectory= would.
        os.makedirs(os.path.dirname(self.target) or ".", mode=0o750, exist_ok=True)
        # O_APPEND: every write lands at the end, even with other writers on the file.
        self._fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def wants_json(self) -> bool:
        return True  # takes the batch's encoded lines when the worker has them

    def idle(self) -> None:
        self._losses.tick()

    def reopen(self) -> None:
        """Ask for the file to be reopened before the next write (safe from a signal handler)."""
        self._reopen.set()

    def write(self, batch: FlowBatch, lines: memoryview | None = None) -> bool:
        """Write one batch (`lines`: its encode_lines output, if already made); True when all of it was written.

        When a write fails part way, the lines written whole are exported and the rest of the batch is lost.
        """
        if not len(batch):
            return True
        data = encode_lines(batch) if lines is None else lines
        done = 0
        try:
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._write_locked(data)
            finally:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except _PartialWrite as partial:
            done = int(np.count_nonzero(np.frombuffer(data[:partial.written], dtype=np.uint8) == ord("\n")))
            self._failed(batch, partial.error, done)
            return False
        except OSError as exc:
            self._failed(batch, exc, done)
            return False
        self._exported(batch.flows)
        return True

    def _exported(self, flows: Rows) -> None:
        if len(flows):
            self.tally.exported.add(flows)
            health.exported(self.kind, len(flows), int(flows["packets"].sum()))

    def _failed(self, batch: FlowBatch, exc: OSError, whole_lines: int) -> None:
        self.errors += 1
        self._torn = True
        self._exported(batch.flows[:whole_lines])
        lost = batch.flows[whole_lines:]
        packets = int(lost["packets"].sum())
        self.tally.lose("write_failed", lost)
        health.export_error(self.kind)
        health.lost("write_failed", len(lost), packets)
        error = str(exc.strerror or exc)
        if error != self._last_error:  # a new reason: say it once
            log.error("jsonl output %s: write failed: %s", self.target, error)
            self._last_error = error
        self._losses.lost(packets, len(lost))

    def _write_locked(self, data: memoryview) -> None:
        if self._reopen.is_set():
            self._reopen.clear()
            self._close_file()
            self._open()
        if self._torn:
            try:
                self._write_all(b"\n")
            except _PartialWrite as partial:
                raise partial.error from None  # nothing of the batch went out
            self._torn = False
        self._write_all(data)

    def _write_all(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "written after close()"
        view = memoryview(data)
        written = 0
        while written < len(view):
            try:
                written += os.write(self._fd, view[written:])
            except OSError as exc:
                raise _PartialWrite(written, exc) from exc

    def counters(self) -> dict[str, OutputTally]:
        return {self.name: self.tally}

    def _close_file(self) -> None:
        if self._fd is not None and self.target != STDOUT:
            os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        self._close_file()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class _PartialWrite(Exception):
    """A write that failed after `written` bytes."""

    def __init__(self, written: int, error: OSError) -> None:
        super().__init__(str(error))
        self.written = written
        self.error = error
