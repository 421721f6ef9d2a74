"""Flows by addresses, ports and protocol (struct fc_flow_tuple): how the features' rows meet the flows.

The features' kernel maps are keyed by this tuple, without the interface,
MACs or direction of struct fc_flow_key (bpf/flow.h), so that user space
joins them onto the flows by value, never by the byte layout of the flow key.
"""
import numpy as np
import numpy.typing as npt

from flowcollect.records.layout import FLOW_TUPLE, Rows

_SIDES = (("src_ip", "dst_ip"), ("src_port", "dst_port"))


def tuple_keys(rows: Rows, reverse: bool = False) -> npt.NDArray[np.void]:
    """The struct fc_flow_tuple of each row (of any dtype with its fields), as opaque bytes that compare
    and sort; reverse: of the other direction (source and destination swapped)."""
    keys = np.zeros(len(rows), dtype=FLOW_TUPLE)
    for source, destination in _SIDES:
        keys[source], keys[destination] = (rows[destination], rows[source]) if reverse else \
            (rows[source], rows[destination])
    keys["protocol"] = rows["protocol"]
    return keys.view(np.dtype((np.void, FLOW_TUPLE.itemsize)))


def both_directions(flows: Rows, records: Rows) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
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
