"""Logging: one line per event that matters, on stderr (stdout may carry flows).

JSON objects when stdout is not a terminal (a service, a pipe, a file: the
agent is being run by another program), readable text when a person runs it.
"""
import logging
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


def setup(level: str = "info", stream: TextIO | None = None, interactive: bool | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if sys.stdout.isatty() if interactive is None else interactive:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """Structured fields for a log call: log.info("msg", extra=fields(flows=3))."""
    return {"fields": values}
