"""Key presses for `sub --top`: the terminal in cbreak mode while the view runs, restored after.

cbreak (tty.setcbreak) rather than full raw mode: keys arrive one at a time
without echo, and Ctrl-C stays a signal, so it stops the view through the
same path as SIGTERM (stream.py), and the terminal is restored on the way
out like on `q`. When stdin is not a terminal there are no keys to read and
the terminal is left alone.
"""
import os
import sys
import termios
import tty
from types import TracebackType
from typing import Any, TextIO


class Keys:
    """While entered: `fd` to poll (None when stdin is not a terminal) and read() for the keys pressed."""

    def __init__(self, stdin: TextIO | None = None) -> None:
        stream = stdin or sys.stdin
        self.fd: int | None = stream.fileno() if stream.isatty() else None
        self._saved: list[Any] | None = None

    def __enter__(self) -> "Keys":
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.fd is not None and self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def read(self) -> str:
        """The keys waiting on stdin (call when `fd` is readable)."""
        if self.fd is None:
            return ""
        return os.read(self.fd, 64).decode(errors="ignore")
