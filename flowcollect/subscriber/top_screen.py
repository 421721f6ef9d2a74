"""`sub --top`'s screen: a View (top_talkers.py) drawn with rich, as many rows as the terminal has lines.

The screen is rebuilt for the console's size at every refresh, so a resized
terminal gets a table of its new size at the next one. Log records (a gap in
the sequence numbers, why nothing arrives) go to the status line instead of
stderr, which would tear the table.
"""
import logging

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from flowcollect.subscriber.top_talkers import SORT_KEYS, Row, SortKey, View

TITLE_LINES, HEADER_LINES, FOOTER_LINES = 1, 2, 2
COLUMNS = (("iface", "left"), ("dir", "left"), ("proto", "left"), ("source", "left"),
           ("destination", "left"), ("bit/s", "right"), ("pkt/s", "right"), ("bytes", "right"),
           ("packets", "right"), ("flows", "right"))
# After them, when the stream carries them (View.features): drops in the window, the largest RTT and
# DNS latency. Shown last, so that a narrow terminal leaves them out first.
FEATURE_HEADINGS = {"drops": ("drops", "right"), "rtt": ("rtt", "right"), "dns": ("dns", "right")}
SHRINKING = frozenset(("proto", "source", "destination"))
SHRUNK_MIN = 8
ALWAYS_SHOWN = 6  # columns: the talker and its bit rate
COLUMN_GAP = 3  # a space between columns, and a space of padding on either side of it
_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def rows_that_fit(height: int) -> int:
    return max(0, height - TITLE_LINES - HEADER_LINES - FOOTER_LINES)


def si(value: float) -> str:
    """Three significant digits and an SI prefix: 0, 2.50, 950, 2.27k, 1.50M."""
    scaled, prefix = value, ""
    for factor, name in _PREFIXES:
        if value >= factor * 0.9995:  # what rounds up to 1.00 of this prefix takes it
            scaled, prefix = value / factor, name
            break
    if scaled == 0:
        return "0"
    digits = 2 if scaled < 9.995 else 1 if scaled < 99.95 else 0
    return f"{scaled:.{digits}f}{prefix}"


def _rate(value: float | None) -> str:
    return "…" if value is None else si(value)


def _duration(ns: int | None) -> str:
    """0.11ms, 61.2ms, 1.2s (three significant digits); "-" when none of the talker's flows had one."""
    if ns is None:
        return "-"
    return f"{si(ns / 1e9)}s" if ns >= 999_500_000 else f"{ns / 1e6:.3g}ms"


def _cells(row: Row, features: tuple[str, ...] = ()) -> list[Text]:
    """The row's cells as Text: a str cell would be read as rich markup ([fd00::1]:443 a tag, :100: an emoji)."""
    t = row.talker
    extra = {"drops": f"{row.drops:,}", "rtt": _duration(row.rtt_ns), "dns": _duration(row.dns_latency_ns)}
    return [Text(cell) for cell in (t.interface, t.direction, t.protocol, t.source, t.destination,
                                    _rate(row.bits_per_s), _rate(row.packets_per_s), f"{row.bytes:,}",
                                    f"{row.packets:,}", f"{row.flows:,}", *(extra[f] for f in features))]


def title(view: View, endpoint: str) -> Text:
    """Totals first: on a narrow terminal the end of the line is cut."""
    if view.window_s is None or view.period_s is None:
        window = "measuring the eviction period (rates after the second eviction)"
    else:
        window = f"window {view.window_s:.1f} s = {view.evictions} evictions of {view.period_s:.2f} s"
    total = view.total
    return Text(f"flowcollect sub --top  total {_rate(total.bits_per_s)} bit/s {_rate(total.packets_per_s)} pkt/s "
                f"{total.flows:,} flows  {view.talkers} talkers  {window}  {endpoint}",
                no_wrap=True, overflow="ellipsis")


def footer(sort: SortKey, status: str) -> list[Text]:
    """The keys, and the status line (the last warning)."""
    keys = Text("sort: ", no_wrap=True, overflow="ellipsis")
    for key in SORT_KEYS:
        keys.append(f"[{key[0]}]{key[1:]}", style="reverse" if key == sort else "")
        keys.append("  ")
    keys.append(f"[q] quit    sorted by {sort}")
    return [keys, Text(status, no_wrap=True, overflow="ellipsis")]


def _widths(rows: list[list[Text]], width: int, columns: tuple[tuple[str, str], ...] = COLUMNS) -> list[int]:
    """The widths of the columns that fit a screen `width` wide, the first ones of `columns`.

    Each column as wide as its widest cell; while the table is too wide, the
    widest of the protocol and address columns one character narrower (down to
    SHRUNK_MIN); then, if it still is, the last columns left out. rich would
    shrink every column alike, numbers too, and a number cut short is a wrong number.
    """
    natural = [max([len(name), *(len(cells[i]) for cells in rows)]) for i, (name, _) in enumerate(columns)]
    widths = natural[:]
    shrinking = [i for i, (name, _) in enumerate(columns) if name in SHRINKING]
    excess = sum(widths) + COLUMN_GAP * (len(widths) - 1) - width
    while excess > 0:
        widest = max(shrinking, key=lambda i: widths[i])
        if widths[widest] <= SHRUNK_MIN:
            break
        widths[widest] -= 1
        excess -= 1
    while excess > 0 and len(widths) > ALWAYS_SHOWN:
        excess -= widths.pop() + COLUMN_GAP
    while excess < 0:  # what a column left out leaves goes back to the shrunk ones, narrowest first
        shrunk = [i for i in shrinking if widths[i] < natural[i]]
        if not shrunk:
            break
        widths[min(shrunk, key=lambda i: widths[i])] += 1
        excess += 1
    return widths


def screen(view: View, endpoint: str, sort: SortKey, status: str, width: int, height: int) -> RenderableType:
    """The whole screen; `view` holds at least rows_that_fit(height) rows when there are that many."""
    rows = [_cells(row, view.features) for row in view.rows[:rows_that_fit(height)]]
    columns = COLUMNS + tuple(FEATURE_HEADINGS[f] for f in view.features)
    widths = _widths(rows, width, columns)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for (name, justify), column_width in zip(columns, widths, strict=False):
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis",  # type: ignore[arg-type]
                         width=column_width, style="bold" if name == sort else None)
    for cells in rows:
        table.add_row(*cells[:len(widths)])
    return Group(title(view, endpoint), table, *footer(sort, status))


class StatusLine(logging.Handler):
    """A logging handler that keeps the last warning for the status line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage()
