"""Deduper: one copy of a flow seen on several interfaces (the seed's `firstCome`).

A packet crossing a host is often seen twice or more: on a veth and on the
bridge, on a VLAN device and its parent. The dedup key is the flow key without
the interface, the MACs and the direction. The first interface that reports a
key owns it until the key has gone unseen for `expire_time`; rows with that key
from any other interface are dropped, or kept with duplicate=1 in just-mark
mode (in place, when the rows are writable). Every sighting, from any
interface, keeps the key alive. Order is kept, and a batch with nothing left
is not passed on.

The seed walks records one by one through a map and an LRU list; here a whole
batch is deduplicated with a few numpy passes (see flowtable), with the same
results, record for record.
"""
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flowcollect.pipeline import rows
from flowcollect.pipeline.channel import Stage, channel_stage
from flowcollect.pipeline.flow_key import DEDUP_KEY, hash_words
from flowcollect.pipeline.flow_table import FlowTable, group_keys
from flowcollect.pipeline.timebase import Clock
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import Rows
from flowcollect.settings.model import check

DEDUPER_NONE = "none"
DEDUPER_FIRST_COME = "firstCome"
BatchFilter = Callable[[FlowBatch], FlowBatch | None]
"""The deduper's per-batch core: the batch with duplicates dropped or marked, or None when none is left."""

# Expired keys are left in the table, where they count as absent, until they
# are this share of it: then one compaction removes them all.
_COMPACT_SHARE = 0.5

_OWNER = np.dtype([("if_index", np.uint32), ("expiry_ns", np.int64)])


@dataclass(frozen=True)
class Deduper:
    """The deduper's settings. expire_time is in seconds (the agent's default,
    set by its configuration, is twice cache_active_timeout, as in the seed)."""

    type: str = DEDUPER_NONE
    expire_time: float = 60.0
    just_mark: bool = False

    def __post_init__(self) -> None:
        check("deduper", self.type)

    def enabled(self) -> bool:
        return self.type == DEDUPER_FIRST_COME

    def batch_filter(self, clock: Clock = time.monotonic_ns) -> BatchFilter:
        """The per-batch core: FlowBatch -> FlowBatch or None (nothing left).

        clock: monotonic nanoseconds, read once per batch.
        """
        if not self.enabled():
            return _keep_all
        return FirstComeCache(self.expire_time, self.just_mark, clock)


def deduper_provider(deduper: Deduper, clock: Clock = time.monotonic_ns) -> Stage[FlowBatch]:
    """The deduper as a channel stage: a function (in_ch, out_ch) that runs until in_ch closes.

    When the deduper is off, it passes every batch on unchanged.
    """
    return channel_stage(deduper.batch_filter(clock))


def _keep_all(batch: FlowBatch) -> FlowBatch:
    return batch


class FirstComeCache:
    """The firstCome cache and its per-batch filter (not thread-safe: one per dedup shard)."""

    def __init__(self, expire_time: float, just_mark: bool, clock: Clock) -> None:
        self._expire_ns = int(expire_time * 1e9)
        self._just_mark = just_mark
        self._clock = clock
        self._owners = FlowTable(DEDUP_KEY.width, _OWNER)
        # Reused for every batch: fresh pages cost more than the work on them here.
        self._words = np.empty((0, DEDUP_KEY.width), dtype=np.uint64)

    def __len__(self) -> int:
        """Keys in the cache, expired ones not yet compacted included."""
        return len(self._owners)

    def __call__(self, batch: FlowBatch) -> FlowBatch | None:
        return self.process(batch)

    def process(self, batch: FlowBatch) -> FlowBatch | None:
        flows = batch.flows
        if not len(flows):
            return None
        now = self._clock()
        self._compact_if_mostly_expired(now)
        duplicate = self._duplicates(flows, now)
        if not duplicate.any():
            return batch
        if self._just_mark:
            if not flows.flags.writeable:  # e.g. rows straight from a received message
                flows = rows.copy(flows)
            flows["duplicate"][duplicate] = 1
            return dataclasses.replace(batch, flows=flows)
        kept = rows.take(flows, ~duplicate)
        if not len(kept):
            return None
        return dataclasses.replace(batch, flows=kept)

    def _duplicates(self, flows: Rows, now: int) -> npt.NDArray[np.bool_]:
        """Which rows come from an interface that does not own their key; updates the cache."""
        if len(self._words) < len(flows):
            self._words = np.empty((len(flows), DEDUP_KEY.width), dtype=np.uint64)
        words = DEDUP_KEY.words(flows, out=self._words)
        hashes = hash_words(words)
        if_index = flows["if_index"]
        slots = self._owners.lookup(words, hashes)
        owners = self._owners.values

        # Most rows belong to keys the cache holds: their owner is known.
        owner = np.empty(len(flows), dtype=if_index.dtype)
        held = np.flatnonzero(slots >= 0)
        held = held[owners["expiry_ns"][slots[held]] >= now]
        owner[held] = owners["if_index"][slots[held]]

        # The others belong to keys that are new, or idle for longer than
        # expire_time (the seed removed those at the start of the batch; here
        # they are overwritten): the first row of each in the batch owns it.
        unowned = np.ones(len(flows), dtype=bool)
        unowned[held] = False
        unowned = np.flatnonzero(unowned)
        if len(unowned):
            first, inverse = group_keys(words[unowned], hashes[unowned])
            claimers = unowned[first]
            owner[unowned] = if_index[claimers][inverse]
            claimed = slots[claimers]
            new = claimed < 0
            claimed[new] = self._owners.add(words[claimers[new]], hashes[claimers[new]])
            slots[unowned] = claimed[inverse]
            owners = self._owners.values
            owners["if_index"][claimed] = if_index[claimers]

        # Every sighting, from any interface, keeps the key alive.
        owners["expiry_ns"][slots] = now + self._expire_ns
        duplicate: npt.NDArray[np.bool_] = if_index != owner
        return duplicate

    def _compact_if_mostly_expired(self, now: int) -> None:
        owners = self._owners.values
        if not len(owners):
            return
        alive = owners["expiry_ns"] >= now
        if len(owners) - np.count_nonzero(alive) > _COMPACT_SHARE * len(owners):
            self._owners.retain(alive)
