"""Flows by addresses, ports and protocol (struct fc_flow_tuple): how the features' rows meet the flows.

The features' kernel maps are keyed by this tuple, without the interface,
MACs or direction of struct fc_flow_key (bpf/flow.h), so that user space
joins them onto the flows by value, never by the byte layout of the flow key.
"""
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from flowcollect.pipeline import rows as row_ops
from flowcollect.records.layout import FLOW_TUPLE, Rows

_SIDES = (("src_ip", "dst_ip"), ("src_port", "dst_port"))

Matches = list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]
"""both_directions(): (flow rows, their record rows), once per direction that matched."""


def tuple_keys(rows: Rows, reverse: bool = False) -> npt.NDArray[np.void]:
    """The struct fc_flow_tuple of each row (of any dtype with its fields), as opaque bytes that compare
    and sort; reverse: of the other direction (source and destination swapped)."""
    keys = np.zeros(len(rows), dtype=FLOW_TUPLE)
    for source, destination in _SIDES:
        keys[source], keys[destination] = (rows[destination], rows[source]) if reverse else \
            (rows[source], rows[destination])
    keys["protocol"] = rows["protocol"]
    return keys.view(np.dtype((np.void, FLOW_TUPLE.itemsize)))


def both_directions(flows: Rows, records: Rows) -> Matches:
    """(flow rows, their record rows) for the flows whose tuple, or whose reversed tuple, is a record's:
    what a fact about a connection (its DNS exchange, its RTT) goes onto. Record tuples are distinct."""
    if not len(records) or not len(flows):
        return []
    record_keys = tuple_keys(records)
    order = np.argsort(record_keys)
    sorted_keys = record_keys[order]
    found = []
    for reverse in (False, True):
        keys = tuple_keys(flows, reverse=reverse)
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        rows = np.flatnonzero(sorted_keys[at] == keys)
        if len(rows):
            found.append((rows, order[at[rows]]))
    return found


class FactJoin:
    """Joins a feature's per-connection records (DNS, RTT) onto both directions of their flows, each eviction.

    Records no flow of their eviction matched are offered once more to the
    next eviction's flows: the feature maps are swapped just after the flow
    maps, and that swap waits for an RCU grace period, so a packet that
    arrives in between is counted in the new flow map and recorded in the old
    feature map (drop_join.py holds drops for the same reason). A record no
    flow matches twice, or on the last eviction, is dropped.
    """

    def __init__(self, dtype: np.dtype, apply: Callable[[Rows, Rows, Matches], None]) -> None:
        self._held = np.zeros(0, dtype=dtype)
        self._apply = apply  # writes the records' fields onto the matched flows (a copy of them)

    def join(self, flows: Rows, records: Rows, *, last: bool = False) -> Rows:
        """FLOW_EXPORT rows `flows` with `records` (and those held) joined onto both directions of each."""
        records, n_held = self._offer(records)
        matches = both_directions(flows, records)
        found = np.zeros(len(records), dtype=bool)
        for _, record in matches:
            found[record] = True
        late = np.flatnonzero(~found)
        # Held records had their second chance; new ones get theirs, unless this is the last eviction.
        self._held = records[:0] if last else row_ops.take(records, late[late >= n_held])
        if not matches:
            return flows
        flows = flows.copy()
        self._apply(flows, records, matches)
        return flows

    def _offer(self, records: Rows) -> tuple[Rows, int]:
        """The held records of tuples `records` has none of, then `records`; and how many come first."""
        held = self._held
        records = np.ascontiguousarray(records, dtype=held.dtype)
        if len(held) and len(records):
            # A newer record of the same tuple supersedes the held one: record tuples stay distinct.
            held = row_ops.take(held, np.flatnonzero(~np.isin(tuple_keys(held), tuple_keys(records))))
        return row_ops.concatenate([held, records]), len(held)
