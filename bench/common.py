"""What every benchmark shares: repeated timing, median/min/max, a markdown row."""
import statistics
import sys
import time
from dataclasses import dataclass


@dataclass
class Figure:
    """A rate measured over several runs (higher is better)."""

    name: str
    unit: str
    runs: list

    @property
    def median(self):
        return statistics.median(self.runs)

    def ratio_to(self, baseline):
        return self.median / baseline.median

    def cells(self):
        return [f"{self.median:,.0f}", f"{min(self.runs):,.0f}", f"{max(self.runs):,.0f}"]


def rate(work, seconds):
    return work / seconds if seconds > 0 else float("inf")


def timed(fn):
    """(result, seconds) of one call, on the monotonic clock."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def progress(message):
    print(f"  .. {message}", file=sys.stderr, flush=True)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
