"""Kernel monotonic times to wall-clock times, for every stage that evicts flows.

The kernel stamps packets with bpf_ktime_get_ns() (CLOCK_MONOTONIC). An
eviction reads one (wall, monotonic) pair and converts every row with it, so
all flows of a batch share one offset. The arithmetic is signed: a packet
stamped after the pair was read (it raced the swap, or a test's fake clock
says so) lands after "now", not 584 years in the future.
"""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flowcollect.pipeline import rows
from flowcollect.records.layout import FLOW_EXPORT, FLOW_RECORD, Rows

Clock = Callable[[], int]
"""A clock in nanoseconds: wall-clock (time.time_ns) or monotonic (time.monotonic_ns)."""
PeriodClock = Callable[[], float]
"""The monotonic clock in seconds that eviction periods run on (time.monotonic; tests pass a fake one)."""


@dataclass(frozen=True)
class Timebase:
    """One reading of the wall and monotonic clocks, both in nanoseconds."""

    wall_ns: int
    mono_ns: int

    @classmethod
    def read(cls, clock: Clock, mono_clock: Clock) -> "Timebase":
        # Monotonic first, as the seed does: the pair brackets the drain that follows.
        mono_ns = mono_clock()
        return cls(wall_ns=clock(), mono_ns=mono_ns)

    def wall(self, mono_ns: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Epoch nanoseconds (int64) of an array of monotonic nanoseconds."""
        # Kernel monotonic times are far below 2**63, so the cast keeps them.
        return mono_ns.astype(np.int64) - np.int64(self.mono_ns) + np.int64(self.wall_ns)


def evicted(flows: Rows, timebase: Timebase, sampling: int) -> Rows:
    """FLOW_EXPORT rows for FLOW_RECORD rows evicted at `timebase`, with the sampling rate."""
    flows = np.ascontiguousarray(flows, dtype=FLOW_RECORD)
    out = np.zeros(len(flows), dtype=FLOW_EXPORT)
    # struct fc_flow_export starts with the record: copy the bytes as they are.
    size = flows.dtype.itemsize
    out.view(np.uint8).reshape(len(out), out.dtype.itemsize)[:, :size] = (
        rows.raw(flows).view(np.uint8).reshape(len(flows), size))
    out["time_flow_start_ns"] = timebase.wall(flows["first_seen_ns"])
    out["time_flow_end_ns"] = timebase.wall(flows["last_seen_ns"])
    out["sampling"] = sampling
    return out
