"""Logging: one line per event that matters, on stderr (stdout may carry flows).

JSON objects when stdout is not a terminal (a service, a pipe, a file: the
agent is being run by another program), readable text when a person runs it.
When stderr is the journal's stream (systemd sets JOURNAL_STREAM to its
device:inode, and workers inherit both), each line starts with the sd-daemon
priority prefix `<N>`, so `journalctl -p warning` finds the agent's warnings.
"""
import logging
import os
import sys
import time
from typing import Any, TextIO

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


# syslog priorities (sd-daemon.h SD_ERR ... SD_DEBUG) of Python's levels.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalFormatter(logging.Formatter):
    """Another formatter's line behind the `<N>` priority prefix that journald reads."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        return f"<{priority}>{self._inner.format(record)}"


def writes_to_journal(stream: TextIO) -> bool:
    """Is stream the journal's stream that systemd gave this service (JOURNAL_STREAM=dev:inode)?"""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError):  # not set, or a stream with no descriptor (a test's StringIO)
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def setup(level: str = "info", stream: TextIO | None = None, interactive: bool | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter
    if sys.stdout.isatty() if interactive is None else interactive:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        formatter = JsonFormatter()
    handler.setFormatter(JournalFormatter(formatter) if writes_to_journal(stream) else formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """Structured fields for a log call: log.info("msg", extra=fields(flows=3))."""
    return {"fields": values}
