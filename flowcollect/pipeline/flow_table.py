"""Exact, vectorised grouping and lookup of flow keys.

The deduper and the accounter both need "which keys of this batch are already
known" and "which rows of this batch share a key", for 100k-row batches,
faster than a Python dict can answer row by row. Keys are hashed to 64 bits
(flow_key.hash_words); FlowTable is an open-addressing hash table probed for a
whole batch per numpy pass, group_keys sorts the hashes. A hash match alone
never decides: the key words are compared too, and on a 64-bit collision the
exact path runs, so two flows are never merged by accident.
"""
import numpy as np
import numpy.typing as npt

from flowcollect.pipeline import rows
from flowcollect.pipeline.flow_key import Hashes, Words
from flowcollect.records.layout import Rows

Slots = npt.NDArray[np.intp]
"""Table slots (or row numbers) of a batch's keys; -1 where absent."""

_HASH = np.uint64
_EMPTY = -1
# Buckets at least twice the keys: linear probes stay short (~1.5 on a hit).
_MAX_LOAD = 0.5
_MIN_BUCKETS = 1 << 12


def group_keys(words: Words, hashes: Hashes) -> tuple[Slots, Slots]:
    """Group the rows of a batch by key.

    Returns (first, inverse): first[g] is the earliest row of group g,
    inverse[i] the group of row i. Groups are numbered in ascending hash order.
    """
    n = len(hashes)
    if n == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    order = np.argsort(hashes)
    sorted_hashes = hashes[order]
    starts_group = np.empty(n, dtype=bool)
    starts_group[0] = True
    np.not_equal(sorted_hashes[1:], sorted_hashes[:-1], out=starts_group[1:])
    same_hash = np.flatnonzero(~starts_group[1:]) + 1
    if len(same_hash) and (words[order[same_hash]] != words[order[same_hash - 1]]).any():
        # Two keys share a 64-bit hash: order by the words too (np.lexsort's
        # last key is the primary one), then split groups on any difference.
        order = np.lexsort((*words.T[::-1], hashes))
        sorted_hashes, sorted_words = hashes[order], words[order]
        starts_group[1:] = (sorted_hashes[1:] != sorted_hashes[:-1]) | (
            sorted_words[1:] != sorted_words[:-1]).any(axis=1)
    starts = np.flatnonzero(starts_group)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(starts_group) - 1
    # argsort is not stable: the earliest row of a group is its smallest index.
    first = np.minimum.reduceat(order, starts)
    return first, inverse


class FlowTable:
    """An exact map from flow key to one row of `value_dtype`, for whole batches.

    Keys get dense slots 0..len-1 in the order they were added; `values` holds
    their rows in that order, and their hashes and key words (one array per
    word: the verification reads a word of many keys at a time) are kept by
    slot. The buckets, a power of two of them, hold slots and hashes, found by
    linear probing from the bucket that the hash's top bits name.
    """

    def __init__(self, key_width: int, value_dtype: np.dtype) -> None:
        self._bucket_slots = np.full(_MIN_BUCKETS, _EMPTY, dtype=np.intp)
        self._bucket_hashes = np.zeros(_MIN_BUCKETS, dtype=_HASH)
        self._hashes = np.empty(0, dtype=_HASH)
        self._words = np.empty((key_width, 0), dtype=np.uint64)
        self._values: Rows = np.zeros(0, dtype=value_dtype)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def values(self) -> Rows:
        """The rows of the keys present, by slot (a view: writes go to the table)."""
        return self._values[:self._count]

    def lookup(self, words: Words, hashes: Hashes) -> Slots:
        """The slot of each key ((n, width) words, n hashes), or -1 where the key is absent."""
        slots, buckets = self._probe(hashes, self._home(hashes))
        # Probing compares hashes only; the words are compared once, at the end.
        matched = np.flatnonzero(slots >= 0)
        wrong = matched[~self._same_words(slots[matched], words[matched])]
        while len(wrong):
            # A 64-bit collision: probe on past the key that only shares the hash.
            found, at = self._probe(hashes[wrong], (buckets[wrong] + 1) & self._mask)
            slots[wrong], buckets[wrong] = found, at
            wrong = wrong[found >= 0]
            wrong = wrong[~self._same_words(slots[wrong], words[wrong])]
        return slots

    def add(self, words: Words, hashes: Hashes) -> Slots:
        """Add keys that are absent and distinct; returns their new slots.

        Their rows in `values` hold whatever the slot held before: set them.
        """
        added = len(hashes)
        slots = np.arange(self._count, self._count + added)
        self._reserve(self._count + added)
        self._words[:, slots] = words.T
        self._hashes[slots] = hashes
        self._count += added
        buckets = len(self._bucket_slots)
        while self._count > _MAX_LOAD * buckets:
            buckets *= 2
        if buckets > len(self._bucket_slots):
            self._rehash(buckets)
        else:
            self._place(slots)
        return slots

    def clear(self) -> None:
        """Forget every key (storage is kept for reuse)."""
        self._bucket_slots.fill(_EMPTY)
        self._count = 0

    def retain(self, keep: npt.NDArray[np.bool_]) -> None:
        """Keep only the slots where `keep` (bool per slot) is true, renumbered in order."""
        self._words = self._words[:, :self._count][:, keep]
        self._hashes = self._hashes[:self._count][keep]
        self._values = rows.take(self._values[:self._count], keep)
        self._count = len(self._values)
        self._rehash(len(self._bucket_slots))

    @property
    def _mask(self) -> int:
        return len(self._bucket_slots) - 1

    def _home(self, hashes: Hashes) -> Slots:
        # The top bits: flowcollect/pipeline/sharding.py splits flows between workers by the low
        # bits (hash % workers), so within one worker's table those are alike.
        shift = _HASH(64 - (len(self._bucket_slots).bit_length() - 1))
        return (hashes >> shift).astype(np.intp)

    def _probe(self, hashes: Hashes, buckets: Slots) -> tuple[Slots, Slots]:
        """For each hash, from its bucket on: the first bucket that is empty or has
        that hash. Returns (slot there or -1, that bucket)."""
        slots = np.full(len(hashes), _EMPTY, dtype=np.intp)
        stops = buckets.copy()
        pending = np.arange(len(hashes))
        while len(pending):
            found = self._bucket_slots[buckets]
            hit = self._bucket_hashes[buckets] == hashes[pending]
            stop = hit | (found == _EMPTY)
            slots[pending[hit]] = found[hit]
            stops[pending[stop]] = buckets[stop]
            going = ~stop
            pending, buckets = pending[going], (buckets[going] + 1) & self._mask
        return slots, stops

    def _same_words(self, slots: Slots, words: Words) -> npt.NDArray[np.bool_]:
        same: npt.NDArray[np.bool_] = self._words[0][slots] == words[:, 0]
        for column in range(1, len(self._words)):
            same &= self._words[column][slots] == words[:, column]
        return same

    def _place(self, slots: Slots) -> None:
        """Put slots (their keys absent from the buckets) into free buckets."""
        hashes = self._hashes[slots]
        buckets = self._home(hashes)
        while len(slots):
            free = np.flatnonzero(self._bucket_slots[buckets] == _EMPTY)
            # Several keys may probe the same free bucket: one write wins,
            # reading back says which; the others probe on.
            self._bucket_slots[buckets[free]] = slots[free]
            won = free[self._bucket_slots[buckets[free]] == slots[free]]
            self._bucket_hashes[buckets[won]] = hashes[won]
            waiting = np.ones(len(slots), dtype=bool)
            waiting[won] = False
            slots, hashes = slots[waiting], hashes[waiting]
            buckets = (buckets[waiting] + 1) & self._mask

    def _rehash(self, buckets: int) -> None:
        self._bucket_slots = np.full(buckets, _EMPTY, dtype=np.intp)
        self._bucket_hashes = np.zeros(buckets, dtype=_HASH)
        self._place(np.arange(self._count))

    def _reserve(self, needed: int) -> None:
        capacity = len(self._values)
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 1024)
        words = np.empty((len(self._words), capacity), dtype=self._words.dtype)
        words[:, :self._count] = self._words[:, :self._count]
        hashes = np.empty(capacity, dtype=_HASH)
        hashes[:self._count] = self._hashes[:self._count]
        values = np.zeros(capacity, dtype=self._values.dtype)
        rows.put(values, slice(0, self._count), self._values[:self._count])
        self._words, self._hashes, self._values = words, hashes, values
