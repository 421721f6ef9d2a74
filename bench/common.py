"""What every benchmark shares: repeated timing, median/min/max, a markdown row."""
import os
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


@dataclass
class Result:
    """One row of the suite's table: a figure and the baseline it is judged against, both from the same run.

    `better` says which way is good ("higher" for rates, "lower" for costs);
    `aim` is the issue's target for the ratio, if it has one: ">= 0.90", "<= 0.25", "== 1";
    with `aim_of="median"` it is a target for the figure's own median, in its unit ("<= 150"); with
    `aim_of="difference"`, for the figure's median less the baseline's ("<= 45": at most 45 above it).
    """

    part: str
    case: str
    figure: Figure
    baseline: Figure = None
    aim: str = ""
    better: str = "higher"
    aim_of: str = "ratio"

    @property
    def ratio(self):
        if self.baseline is None or not self.baseline.runs or self.baseline.median == 0:
            return None
        return self.figure.ratio_to(self.baseline)

    def judged(self):
        """What the aim is about: the ratio, the figure's median, or its difference from the baseline's."""
        return {"median": self.figure.median, "ratio": self.ratio,
                "difference": self.figure.median - self.baseline.median if self.baseline else None}[self.aim_of]

    def met(self):
        """True/False against the aim, None when there is none."""
        judged = self.judged()
        if not self.aim or judged is None:
            return None
        op, value = self.aim.split()
        return {">=": judged >= float(value), "<=": judged <= float(value), "==": judged == float(value)}[op]


def number(x):
    """Three significant digits, thousands separated: 0.123, 12.3, 1,234, 1,234,567."""
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


RESULT_HEADER = ["part", "case", "figure", "unit", "median", "min", "max", "runs",
                 "baseline", "baseline median", "ratio", "aim"]


def result_rows(results):
    rows = []
    for r in results:
        f, b = r.figure, r.baseline
        met = r.met()
        judged = {"median": "median ", "difference": "median - baseline's ", "ratio": ""}[r.aim_of]
        aim = "" if not r.aim else f"{judged}{r.aim} {'met' if met else 'MISSED'}"
        rows.append([r.part, r.case, f.name, f.unit, number(f.median), number(min(f.runs)), number(max(f.runs)),
                     len(f.runs), b.name if b else "-", number(b.median) if b else "-",
                     ratio_cell(r.ratio), aim])
    return rows


def ratio_cell(ratio):
    if ratio is None:
        return "-"
    if ratio != 1 and f"{ratio:.3g}" == "1":
        return f"{ratio:.6f}"  # near 1 but not 1: show how near
    return f"{ratio:.3g}"


def results_table(results):
    return markdown_table(RESULT_HEADER, result_rows(results))


def cpu_seconds(pid):
    """CPU seconds (user + system) one process has used so far, all its threads (0 once it is gone).

    Read from the process's own CPU-time clock (clock_getcpuclockid(3): the
    scheduler's ns accounting), not from utime + stime in /proc/<pid>/stat,
    which this kernel samples by tick (4 ms): too coarse for the short windows
    the benchmarks time.
    """
    try:
        return time.clock_gettime((~pid << 3) | 2)  # CPUCLOCK_SCHED of the whole process: clock_getcpuclockid()
    except OSError:
        return 0.0


def descendants(pid):
    """pid and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out
