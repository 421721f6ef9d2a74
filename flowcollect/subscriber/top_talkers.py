"""`flowcollect sub --top`: bytes and packets per (source, destination, protocol) over a sliding window."""
import time
from typing import Any

from rich.table import Table

from flowcollect.records.batch import FlowBatch
from flowcollect.records.json_lines import records

Talker = tuple[Any, Any, Any, Any, Any]
"""(src_addr, src_port, dst_addr, dst_port, protocol), as the JSON records carry them."""


class TopTalkers:
    """Bytes and packets per (src, dst, protocol) over the last window."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.samples: list[tuple[float, list[dict[str, Any]]]] = []  # (arrival time, records)

    def add(self, batch: FlowBatch) -> None:
        self.samples.append((time.monotonic(), records(batch)))

    def top(self, n: int = 20) -> list[tuple[Talker, list[int]]]:
        cutoff = time.monotonic() - self.window_s
        self.samples = [s for s in self.samples if s[0] >= cutoff]
        totals: dict[Talker, list[int]] = {}
        for _, recs in self.samples:
            for r in recs:
                key = (r["src_addr"], r["src_port"], r["dst_addr"], r["dst_port"], r["protocol"])
                entry = totals.setdefault(key, [0, 0])
                entry[0] += r["bytes"]
                entry[1] += r["packets"]
        return sorted(totals.items(), key=lambda kv: kv[1][0], reverse=True)[:n]


def table(talkers: TopTalkers) -> Table:
    view = Table(title=f"flowcollect: top talkers, last {talkers.window_s:.0f} s")
    for column in ("source", "destination", "proto", "bytes", "packets"):
        view.add_column(column, justify="right" if column in ("bytes", "packets") else "left")
    for (src, sport, dst, dport, proto), (nbytes, packets) in talkers.top():
        view.add_row(f"{src}:{sport}", f"{dst}:{dport}", str(proto), f"{nbytes:,}", f"{packets:,}")
    return view
