"""Flow keys of a whole batch as uint64 words, and a 64-bit hash of them.

Every row of FLOW_RECORD and FLOW_EXPORT starts with struct fc_flow_key (64
bytes, 8-byte aligned), so a batch's keys are an (n, 8) uint64 view of its
bytes. A key shape keeps the words that hold its fields and zeroes the bytes
of the fields it leaves out, so that two rows have the same key exactly when
their masked words are equal: comparing, hashing and sorting then run as a
few numpy passes over the batch, never as a Python loop over its rows.
"""
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from flowcollect.records.layout import FLOW_EXPORT, FLOW_KEY, FLOW_RECORD, KEY_SIZE, Rows

_WORD = np.dtype(np.uint64)
# 2**64 / golden ratio: odd, so multiplying by it is a bijection on uint64.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(29)
# Row types that start with struct fc_flow_key, at a multiple of 8 bytes each.
_KEYED = (FLOW_RECORD, FLOW_EXPORT)

Words = npt.NDArray[np.uint64]
"""(rows, width) masked key words, one row per flow."""
Hashes = npt.NDArray[np.uint64]
"""One 64-bit hash per row."""


class KeyShape:
    """Which fields of struct fc_flow_key identify a flow for one stage."""

    def __init__(self, *, excluded: Iterable[str] = ()) -> None:
        excluded = set(excluded)
        unknown = excluded - set(FLOW_KEY.names or ())
        if unknown:
            raise ValueError(f"not fields of fc_flow_key: {sorted(unknown)}")
        mask = np.zeros(KEY_SIZE, dtype=np.uint8)
        # Padding is not in the dtype, so it never takes part either.
        for name in FLOW_KEY.names or ():
            if name not in excluded:
                ftype, offset = FLOW_KEY.fields[name][:2]  # type: ignore[index]
                mask[offset:offset + ftype.itemsize] = 0xFF
        word_masks = mask.view(_WORD)
        # The words from the first to the last one with a key byte: a slice
        # copies 4x faster than picking columns, and for the shapes in use
        # there is no word without a key byte in between.
        used = np.flatnonzero(word_masks)
        self._span = slice(used[0], used[-1] + 1)
        self._masks = word_masks[self._span]

    @property
    def width(self) -> int:
        """How many uint64 words a key of this shape has."""
        return len(self._masks)

    def words(self, flows: Rows, out: Words | None = None) -> Words:
        """The (len(flows), width) masked key words of a FLOW_RECORD or FLOW_EXPORT batch.

        out: an optional uint64 buffer of at least that many rows to write them
        into (a stage that reuses one skips touching fresh memory every batch).
        """
        if flows.dtype not in _KEYED:
            raise TypeError(f"expected rows of layout.FLOW_RECORD or FLOW_EXPORT, not {flows.dtype}")
        flows = np.ascontiguousarray(flows)
        row_words = flows.view(_WORD).reshape(len(flows), flows.dtype.itemsize // _WORD.itemsize)
        if out is None:
            out = np.empty((len(flows), self.width), dtype=_WORD)
        return np.bitwise_and(row_words[:, self._span], self._masks, out=out[:len(flows)])


# The kernel's flow identity: every field of the key.
FULL_KEY = KeyShape()
# The seed's deduper key: the same flow seen on another interface (or in the
# other direction there) has another if_index, other MACs and direction.
DEDUP_KEY = KeyShape(excluded=("if_index", "src_mac", "dst_mac", "direction"))


def hash_words(words: Words) -> Hashes:
    """A 64-bit hash per row of key words.

    Each round is a bijection of the running hash for a given word, so keys
    that differ in a single word never collide; callers still compare the
    words where hashes are equal, because keys that differ in several can.
    """
    n = len(words)
    h = np.zeros(n, dtype=_WORD)
    scratch = np.empty(n, dtype=_WORD)
    for column in words.T:
        np.bitwise_xor(h, column, out=h)
        np.multiply(h, _GOLDEN, out=h)
        np.right_shift(h, _SHIFT, out=scratch)
        np.bitwise_xor(h, scratch, out=h)
    return h
