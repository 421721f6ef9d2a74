"""Drops joined onto evicted flows (--features drops): numpy, once per eviction, in the collector.

The kernel counts dropped packets in a map of its own keyed by addresses,
ports and protocol (struct fc_flow_tuple, bpf/drops.bpf.h), swapped and drained
right after the flow table, so both cover the same period. Each drop row goes
to exactly one flow of the same key, the ingress one where there are both (a
packet is dropped once, whichever hooks saw it), so drop counts are never
doubled across interfaces. A drop row no flow matches (the kernel dropped the
packets before TC saw them, or after the eviction of their flow) becomes a
flow of its own, one eviction later (DropJoin says why): zero packets and
bytes, the drop counters set, the interface the packet was dropped on, ingress.
"""
import numpy as np
import numpy.typing as npt

from flowcollect.pipeline import rows
from flowcollect.pipeline.flow_tuples import tuple_keys
from flowcollect.pipeline.timebase import Timebase
from flowcollect.records.layout import DIRECTION_INGRESS, DROP_RECORD, ETH_P_IP, ETH_P_IPV6, FLOW_EXPORT, Rows

_KEY_FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
_IPV4_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


class DropJoin:
    """Joins each eviction's drop rows onto its flows; keeps unmatched drops for one more eviction.

    The drop maps are swapped just after the flow table, and that swap waits
    for an RCU grace period: a packet that arrives in between is counted by
    TC in the new flow map and dropped into the old drop map, so its drop
    comes one eviction before its flow. A drop row no flow of its eviction
    matches is therefore tried once more against the next eviction's flows,
    and only then becomes a flow of its own (at once on the last eviction).
    """

    def __init__(self) -> None:
        self._held = np.zeros(0, dtype=DROP_RECORD)

    def join(self, flows: Rows, drops: Rows, timebase: Timebase, sampling: int, *, last: bool = False) -> Rows:
        """FLOW_EXPORT rows `flows` with the DROP_RECORD rows `drops` (and those held) joined on."""
        held, self._held = self._held, np.zeros(0, dtype=DROP_RECORD)
        drops = rows.concatenate([held, np.ascontiguousarray(drops, dtype=DROP_RECORD)])
        if not len(drops):
            return flows
        owners = _owners(flows, drops)
        matched = owners >= 0
        if matched.any():
            flows = rows.copy(flows)
            _add_drops(flows, owners[matched], drops[matched])
        unmatched = np.flatnonzero(~matched)
        # Rows kept from the last eviction had their second chance; new ones get theirs, unless this is the last.
        alone = unmatched if last else unmatched[unmatched < len(held)]
        self._held = rows.take(drops, unmatched[unmatched >= len(held)]) if not last else self._held
        if not len(alone):
            return flows
        return rows.concatenate([flows, _drop_flows(rows.take(drops, alone), timebase, sampling)])


def _owners(flows: Rows, drops: Rows) -> npt.NDArray[np.intp]:
    """For each drop row, the index of the one flow of its key that takes it (ingress first), or -1."""
    is_ip = np.flatnonzero((flows["eth_protocol"] == ETH_P_IP) | (flows["eth_protocol"] == ETH_P_IPV6))
    owners = np.full(len(drops), -1, dtype=np.intp)
    if not len(is_ip):
        return owners
    flow_keys = tuple_keys(flows[is_ip])
    drop_keys = tuple_keys(drops)
    # One flow per key, ingress first: sorted by (key, direction), the first row of each key run.
    order = np.lexsort((flows["direction"][is_ip] != DIRECTION_INGRESS, flow_keys))
    unique_keys, first = np.unique(flow_keys[order], return_index=True)
    at = np.minimum(np.searchsorted(unique_keys, drop_keys), len(unique_keys) - 1)
    matched = unique_keys[at] == drop_keys
    owners[matched] = is_ip[order[first[at[matched]]]]
    return owners


def _add_drops(flows: Rows, at: npt.NDArray[np.intp], drops: Rows) -> None:
    """Add the drops to the flows at `at` (an index may repeat: a held row and a new one of one key)."""
    np.add.at(flows["drop_packets"], at, drops["packets"])
    np.add.at(flows["drop_bytes"], at, drops["bytes"])
    flows["drop_reason"][at] = drops["reason"]
    flows["drop_tcp_state"][at] = drops["tcp_state"]


def _drop_flows(drops: Rows, timebase: Timebase, sampling: int) -> Rows:
    """Flows of their own for drops of packets no evicted flow counted: zero packets, the drop counters set."""
    out = np.zeros(len(drops), dtype=FLOW_EXPORT)
    for name in _KEY_FIELDS:
        out[name] = drops[name]
    v4 = (drops["src_ip"][:, :12] == _IPV4_MAPPED).all(axis=1)
    out["eth_protocol"] = np.where(v4, ETH_P_IP, ETH_P_IPV6)
    out["if_index"] = drops["if_index"]
    out["direction"] = DIRECTION_INGRESS
    out["first_seen_ns"] = drops["first_seen_ns"]
    out["last_seen_ns"] = drops["last_seen_ns"]
    out["time_flow_start_ns"] = timebase.wall(drops["first_seen_ns"])
    out["time_flow_end_ns"] = timebase.wall(drops["last_seen_ns"])
    out["sampling"] = sampling
    _add_drops(out, np.arange(len(drops)), drops)
    return out
