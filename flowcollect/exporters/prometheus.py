"""Flow byte and packet counters for Prometheus, by attributes the operator selects.

flowcollect_flow_bytes_total and flowcollect_flow_packets_total carry one
label per selected attribute (default: interface, direction, protocol; also
src_addr, dst_addr, src_port, dst_port, eth_protocol, if_index, vlan_id,
agent_ip). Workers count each batch with numpy, grouped by the attribute
columns, so the Python work is per label set, not per flow; label text
(addresses) is made once per label set.

Series cap. Every label set is a time series for Prometheus to store, and
addresses or ports make them unbounded. A process counts at most
`max_series` label sets; flows of any further label set go to one overflow
series (every label "__overflow__") and are counted in
flowcollect_flow_series_capped_flows_total. The cap holds per process: the
agent can give each of its N workers cap / N.

Processes. These are ordinary prometheus_client counters: in the agent they
live in multiprocess mode (see flowcollect.health), so the collector's
/metrics shows the sum over all workers. Duplicates marked by the deduper
(just-mark mode) are not counted: they are the same traffic seen twice.
"""
import ipaddress

import numpy as np
import prometheus_client

from flowcollect import health
from flowcollect.records import DIRECTION_NAMES

DEFAULT_ATTRIBUTES = ("interface", "direction", "protocol")
DEFAULT_MAX_SERIES = 2000
OVERFLOW = "__overflow__"

# attribute -> the FLOW_EXPORT column it is grouped by
ATTRIBUTE_COLUMNS = {
    "interface": "if_index", "if_index": "if_index", "direction": "direction", "protocol": "protocol",
    "eth_protocol": "eth_protocol", "src_addr": "src_ip", "dst_addr": "dst_ip",
    "src_port": "src_port", "dst_port": "dst_port", "vlan_id": "vlan_id", "agent_ip": None,
}
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def parse_attributes(text):
    """Attributes from a comma-separated list; ValueError naming the accepted ones."""
    names = tuple(a.strip() for a in str(text).split(",") if a.strip())
    unknown = [a for a in names if a not in ATTRIBUTE_COLUMNS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError("a comma-separated list of distinct attributes from: " + ", ".join(ATTRIBUTE_COLUMNS))
    return names


def _address(raw):
    if raw[:12] == _V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


class FlowMetrics:
    """Counts the flows of each batch into the labelled byte and packet counters."""

    kind = "prometheus"

    def __init__(self, attributes=DEFAULT_ATTRIBUTES, max_series=DEFAULT_MAX_SERIES, registry=prometheus_client.REGISTRY):
        self.attributes = parse_attributes(",".join(attributes))
        self.max_series = max_series
        self._columns = [ATTRIBUTE_COLUMNS[a] for a in self.attributes if ATTRIBUTE_COLUMNS[a]]
        if {"src_addr", "dst_addr"} & set(self.attributes):
            self._columns.append("eth_protocol")  # an address is text only for IP frames
        self.bytes = prometheus_client.Counter("flowcollect_flow_bytes_total", "Bytes of flows (whole frames, as the TC hook sees them)",
                                               self.attributes, registry=registry)
        self.packets = prometheus_client.Counter("flowcollect_flow_packets_total", "Packets of flows", self.attributes,
                                                 registry=registry)
        self._series = set()  # label sets counted in this process

    def export(self, batch):
        flows = batch.flows[batch.flows["duplicate"] == 0]
        if not len(flows):
            return True
        groups, inverse = self._groups(flows)
        packets = np.bincount(inverse, weights=flows["packets"], minlength=len(groups))
        nbytes = np.bincount(inverse, weights=flows["bytes"], minlength=len(groups))
        counts = np.bincount(inverse, minlength=len(groups))
        capped = 0
        for group, group_packets, group_bytes, group_flows in zip(groups, packets.tolist(), nbytes.tolist(),
                                                                    counts.tolist()):
            labels = self._labels(group, batch)
            if labels not in self._series:
                if len(self._series) >= self.max_series:
                    labels = (OVERFLOW,) * len(self.attributes)
                    capped += group_flows
                else:
                    self._series.add(labels)
            self.bytes.labels(*labels).inc(group_bytes)
            self.packets.labels(*labels).inc(group_packets)
        if capped:
            health.flows_capped(capped)
        return True

    def _groups(self, flows):
        """(one row per distinct combination of the attribute columns, each flow's group index)."""
        if not self._columns:
            return flows[:1], np.zeros(len(flows), dtype=np.intp)
        keys = np.zeros(len(flows), dtype=[(c, flows.dtype[c].base, flows.dtype[c].shape) for c in self._columns])
        for column in self._columns:
            keys[column] = flows[column]
        distinct, first, inverse = np.unique(keys.view(f"V{keys.dtype.itemsize}"), return_index=True, return_inverse=True)
        return flows[first], inverse.ravel()

    def _labels(self, row, batch):
        values = []
        for attribute in self.attributes:
            if attribute == "interface":
                values.append(batch.interface_names.get(int(row["if_index"]), ""))
            elif attribute == "direction":
                values.append(DIRECTION_NAMES.get(int(row["direction"]), str(int(row["direction"]))))
            elif attribute in ("src_addr", "dst_addr"):
                values.append(_address(bytes(row[ATTRIBUTE_COLUMNS[attribute]])) if int(row["eth_protocol"]) in (0x0800, 0x86DD) else "")
            elif attribute == "agent_ip":
                values.append(batch.agent_ip)
            else:
                values.append(str(int(row[ATTRIBUTE_COLUMNS[attribute]])))
        return tuple(values)
