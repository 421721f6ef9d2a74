"""JSON-lines output: every flow as one line (json_records.encode_lines) on stdout or in a file.

A file is opened for appending, never truncated, and reopened on request: the
agent calls reopen() after SIGHUP so that logrotate can move the file away
(the lines already written stay in the moved file; the next batch goes to a
new file at the configured path). The reopen happens in the exporting thread,
before its next write, so a signal handler only has to call reopen().

A write that fails (disk full, closed pipe) is counted and its batch dropped;
the agent keeps running. A batch is written with as few system calls as the
kernel allows, so a failure can leave at most one partial line: it is ended
with a newline before the next batch, so readers lose that line only.
"""
import logging
import os
import sys
import threading

from flowcollect.exporters.json_records import encode_lines

log = logging.getLogger(__name__)

STDOUT = "-"


class JsonLinesOutput:
    """Writes FlowBatch objects as JSON lines to `target` ("-" for stdout, else a path)."""

    kind = "jsonl"

    def __init__(self, target, encode=encode_lines, stdout_fd=None):
        self.target = target
        self.encode = encode
        self.records = 0        # flows written
        self.errors = 0         # failed writes (their batches were dropped)
        self._stdout_fd = sys.stdout.fileno() if stdout_fd is None and target == STDOUT else stdout_fd
        self._fd = None
        self._reopen = threading.Event()
        self._torn = False      # the last failed write may have left a partial line
        self._open()

    def __repr__(self):
        return f"JsonLinesOutput({self.target!r})"

    def _open(self):
        if self.target == STDOUT:
            self._fd = self._stdout_fd
            return
        # O_APPEND: every write lands at the end, even if another process appends too.
        self._fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def reopen(self):
        """Ask for the file to be reopened before the next write (safe from a signal handler)."""
        self._reopen.set()

    def export(self, batch):
        """Encode and write one batch; returns True when all of it was written."""
        if not len(batch):
            return True
        return self.write(self.encode(batch), len(batch))

    def write(self, data, records):
        """Write encoded lines; a failure is counted and logged, never raised."""
        try:
            if self._reopen.is_set():
                self._reopen.clear()
                self._close_file()
                self._open()
            if self._torn:
                self._write_all(b"\n")
                self._torn = False
            self._write_all(data)
        except OSError as exc:
            self.errors += 1
            self._torn = True
            log.error("jsonl output %s: write failed, %d flows dropped: %s", self.target, records, exc.strerror or exc)
            return False
        self.records += records
        return True

    def _write_all(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _close_file(self):
        if self._fd is not None and self.target != STDOUT:
            os.close(self._fd)
        self._fd = None

    def close(self):
        self._close_file()
