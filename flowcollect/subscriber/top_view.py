"""`sub --top` on a terminal: the model, the screen and the keys, driven by the subscriber's loop (stream.py).

While entered, the view owns the terminal: the alternate screen (left on
exit, so the shell's screen comes back as it was), stdin in cbreak mode
(restored on exit, keys.py), and the log records (shown on the status line).
"""
import logging
import os
import time
from types import TracebackType

from rich.console import Console
from rich.live import Live

from flowcollect.records.batch import FlowBatch
from flowcollect.records.json_lines import records
from flowcollect.subscriber.keys import Keys
from flowcollect.subscriber.top_screen import StatusLine, rows_that_fit, screen
from flowcollect.subscriber.top_talkers import SORT_KEYS, SortKey, TopTalkers


class TopView:
    def __init__(self, endpoint: str, console: Console | None = None, keys: Keys | None = None) -> None:
        self.endpoint = endpoint
        self.talkers = TopTalkers()
        self.sort: SortKey = "bytes"
        self.quit = False
        self.keys = keys or Keys()
        self.console = console or Console()
        self.status = StatusLine()
        self._live = Live(console=self.console, screen=True, auto_refresh=False,
                          redirect_stdout=False, redirect_stderr=False)
        self._log_handlers: list[logging.Handler] = []

    def __enter__(self) -> "TopView":
        root = logging.getLogger()
        self._log_handlers, root.handlers[:] = root.handlers[:], [self.status]
        self.keys.__enter__()
        self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self._live.stop()
        finally:
            self.keys.__exit__(kind, error, trace)
            logging.getLogger().handlers[:] = self._log_handlers

    def flows(self, batch: FlowBatch, arrived: float) -> None:
        """The flows of one message, received at `arrived` (monotonic seconds)."""
        clock = self.talkers.clock
        self.talkers.add(records(batch), clock.arrived(arrived))
        clock.handled(time.monotonic())

    def pressed(self) -> None:
        """Act on the keys waiting on stdin: q quits, b/p/f sort by bytes, packets, flows."""
        for key in self.keys.read().lower():
            if key == "q":
                self.quit = True
            self.sort = next((s for s in SORT_KEYS if s[0] == key), self.sort)

    def refresh(self, now: float) -> None:
        self._follow_terminal_size()
        width, height = self.console.size
        view = self.talkers.view(now, self.sort, rows_that_fit(height))
        self._live.update(screen(view, self.endpoint, self.sort, self.status.text, width, height), refresh=True)

    def _follow_terminal_size(self) -> None:
        """The console takes the terminal's size now: it may have been resized since the last refresh.

        rich prefers COLUMNS and LINES from the environment when they are set, but
        those are the size when a shell last looked, not after a resize.
        """
        try:
            size = os.get_terminal_size(self.console.file.fileno())
        except (OSError, ValueError):  # not a terminal (a test's StringIO): the console's own size stands
            return
        self.console.size = (size.columns, size.lines)
