"""Split evicted flows between workers by their dedup key.

Every flow goes to the worker that owns the hash of its dedup key (the flow
key without interface, MACs and direction), so a flow and its duplicates from
other interfaces always meet in the same worker's deduper.
"""
import dataclasses

import numpy as np

from flowcollect.pipeline import rows
from flowcollect.pipeline.flow_key import DEDUP_KEY, hash_words
from flowcollect.pipeline.flow_table import Slots
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import Rows


def shard_of(flows: Rows, shards: int) -> Slots:
    """The worker index (0..shards-1) of every row."""
    if shards == 1:
        return np.zeros(len(flows), dtype=np.intp)
    return (hash_words(DEDUP_KEY.words(flows)) % np.uint64(shards)).astype(np.intp)


def split(batch: FlowBatch, shards: int) -> list[tuple[int, FlowBatch]]:
    """[(worker index, FlowBatch)] for the workers that get at least one row; row order kept."""
    if shards == 1:
        return [(0, batch)] if len(batch) else []
    owner = shard_of(batch.flows, shards)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(shards + 1))
    parts = []
    for index in range(shards):
        picked = order[bounds[index]:bounds[index + 1]]
        if len(picked):
            parts.append((index, dataclasses.replace(batch, flows=rows.take(batch.flows, picked))))
    return parts
