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
    n = len(flows)
    # Rows as 8-byte words, one pass each: every byte of `out` is written (np.empty, no zeroing pass),
    # and no padded-struct field assignment (numpy's is several times slower, pipeline/rows.py).
    out = np.empty(n, dtype=FLOW_EXPORT)
    words = out.view(np.int64).reshape(n, _EXPORT_WORDS)
    record = rows.raw(flows).view(np.int64).reshape(n, _RECORD_WORDS)
    words[:, :_RECORD_WORDS] = record
    # Kernel monotonic times are far below 2**63, so int64 words keep them; the sum is signed.
    offset = np.int64(timebase.wall_ns) - np.int64(timebase.mono_ns)
    np.add(record[:, _FIRST_SEEN], offset, out=words[:, _START])
    np.add(record[:, _LAST_SEEN], offset, out=words[:, _END])
    # The word after the times: sampling (u32), duplicate (0) and padding (0), little-endian as the struct is.
    words[:, _SAMPLING] = sampling
    # The feature fields after it (struct fc_flow_features) start at zero: the joins fill them.
    words[:, _SAMPLING + 1:] = 0
    return out


def _word(dtype: np.dtype, name: str) -> int:
    offset: int = dtype.fields[name][1]  # type: ignore[index]
    if offset % 8:
        raise TypeError(f"{name} is not 8-byte aligned")
    return offset // 8


_RECORD_WORDS = FLOW_RECORD.itemsize // 8
_EXPORT_WORDS = FLOW_EXPORT.itemsize // 8
_FIRST_SEEN, _LAST_SEEN = _word(FLOW_RECORD, "first_seen_ns"), _word(FLOW_RECORD, "last_seen_ns")
_START, _END, _SAMPLING = (_word(FLOW_EXPORT, name) for name in ("time_flow_start_ns", "time_flow_end_ns", "sampling"))
# The word arithmetic above relies on the layout of bpf/flow.h: the record first, then the two times,
# then sampling in the low half of the next word, then the feature fields, in whole words.
assert FLOW_RECORD.itemsize % 8 == 0 and _START == _RECORD_WORDS and _END == _START + 1
assert _SAMPLING == _END + 1 and FLOW_EXPORT.itemsize % 8 == 0
