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

Features (--features, FlowBatch.enrichment): flowcollect_drop_packets_total
by the same attributes and the kernel's drop cause, flowcollect_flow_rtt_seconds
(a histogram of each connection's rtt_ns per period) and
flowcollect_dns_latency_seconds (of each answered DNS exchange), by the same
attributes. They share the flow counters' label sets and their cap: a flow
in the overflow series is counted in their overflow series too.

Processes. These are ordinary prometheus_client counters: in the agent they
live in multiprocess mode (see health.py), so the collector's
/metrics shows the sum over all workers. Duplicates marked by the deduper
(just-mark mode) are not counted: they are the same traffic seen twice.
"""
import ipaddress
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import prometheus_client

from flowcollect.export.prometheus import health
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import DIRECTION_NAMES, DNS_ANSWERED, ETH_P_IP, ETH_P_IPV6, Rows
from flowcollect.records.tally import OutputTally
from flowcollect.settings.model import check
from flowcollect.settings.values import FLOW_ATTRIBUTES

DEFAULT_ATTRIBUTES = ("interface", "direction", "protocol")
# Buckets in seconds: a LAN's tens of microseconds to a congested or intercontinental path's seconds.
RTT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DNS_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
DEFAULT_MAX_SERIES = 2000
OVERFLOW = "__overflow__"

# attribute (settings/values.py FLOW_ATTRIBUTES) -> the FLOW_EXPORT column it is grouped by
ATTRIBUTE_COLUMNS: dict[str, str | None] = {
    "interface": "if_index", "if_index": "if_index", "direction": "direction", "protocol": "protocol",
    "eth_protocol": "eth_protocol", "src_addr": "src_ip", "dst_addr": "dst_ip",
    "src_port": "src_port", "dst_port": "dst_port", "vlan_id": "vlan_id", "agent_ip": None,
}
assert tuple(ATTRIBUTE_COLUMNS) == FLOW_ATTRIBUTES, "one column per attribute the setting accepts"
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def _column(attribute: str) -> str:
    column = ATTRIBUTE_COLUMNS[attribute]
    if column is None:
        raise ValueError(f"attribute {attribute} is not a column of the flows")
    return column


def _address(raw: bytes) -> str:
    if raw[:12] == _V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


class FlowMetrics:
    """A sink that counts the flows of each batch into the labelled byte and packet counters."""

    name = "prometheus"

    def __init__(self, attributes: Sequence[str] = DEFAULT_ATTRIBUTES, max_series: int = DEFAULT_MAX_SERIES,
                 registry: prometheus_client.CollectorRegistry = prometheus_client.REGISTRY) -> None:
        self.attributes: tuple[str, ...] = check("metrics_flow_attributes", tuple(attributes))
        self.max_series = max_series
        health.metrics()  # flow counters are metrics: this process counts the agent's own too
        self._columns = [column for a in self.attributes if (column := ATTRIBUTE_COLUMNS[a])]
        if {"src_addr", "dst_addr"} & set(self.attributes):
            self._columns.append("eth_protocol")  # an address is text only for IP frames
        self.bytes = prometheus_client.Counter("flowcollect_flow_bytes_total",
                                               "Bytes of flows (whole frames, as the TC hook sees them)",
                                               self.attributes, registry=registry)
        self.packets = prometheus_client.Counter("flowcollect_flow_packets_total", "Packets of flows", self.attributes,
                                                 registry=registry)
        self.drop_packets = prometheus_client.Counter(
            "flowcollect_drop_packets_total", "Packets of flows the kernel dropped (--features drops), by its cause",
            ("cause", *self.attributes), registry=registry)
        self.rtt = prometheus_client.Histogram(
            "flowcollect_flow_rtt_seconds", "Largest smoothed RTT of each TCP connection per eviction (--features rtt)",
            self.attributes, buckets=RTT_BUCKETS, registry=registry)
        self.dns_latency = prometheus_client.Histogram(
            "flowcollect_dns_latency_seconds", "DNS query to response at the TC hook (--features dns)",
            self.attributes, buckets=DNS_BUCKETS, registry=registry)
        self._series: set[tuple[str, ...]] = set()  # label sets counted in this process
        self.tally = OutputTally()  # every flow handed over is counted: in its series or in the overflow one
        self.capped_flows = 0

    def wants_json(self) -> bool:
        return False

    def write(self, batch: FlowBatch, lines: memoryview | None = None) -> bool:
        self.tally.exported.add(batch.flows)
        flows = batch.flows[batch.flows["duplicate"] == 0]
        if not len(flows):
            return True
        groups, inverse = self._groups(flows)
        packets = np.bincount(inverse, weights=flows["packets"], minlength=len(groups))
        nbytes = np.bincount(inverse, weights=flows["bytes"], minlength=len(groups))
        counts = np.bincount(inverse, minlength=len(groups))
        capped = 0
        group_labels = []
        for group, group_packets, group_bytes, group_flows in zip(groups, packets.tolist(), nbytes.tolist(),
                                                                    counts.tolist(), strict=True):
            labels = self._labels(group, batch)
            if labels not in self._series:
                if len(self._series) >= self.max_series:
                    labels = (OVERFLOW,) * len(self.attributes)
                    capped += group_flows
                else:
                    self._series.add(labels)
            group_labels.append(labels)
            self.bytes.labels(*labels).inc(group_bytes)
            self.packets.labels(*labels).inc(group_packets)
        if capped:
            self.capped_flows += capped
            health.flows_capped(capped)
        features = batch.enrichment.features
        if "drops" in features:
            self._count_drops(flows, inverse, group_labels, batch.enrichment.drop_reasons)
        if "rtt" in features:
            self._observe(self.rtt, flows["rtt_ns"], flows["rtt_ns"] > 0, inverse, group_labels)
        if "dns" in features:
            answered = (flows["dns_flags"] & DNS_ANSWERED) != 0
            self._observe(self.dns_latency, flows["dns_latency_ns"], answered, inverse, group_labels)
        return True

    def _count_drops(self, flows: Rows, inverse: npt.NDArray[np.intp], group_labels: list[tuple[str, ...]],
                     reasons: Mapping[int, str]) -> None:
        dropped = np.flatnonzero(flows["drop_packets"] > 0)
        if not len(dropped):
            return
        pairs = np.stack([inverse[dropped], flows["drop_reason"][dropped].astype(np.intp)], axis=1)
        distinct, at = np.unique(pairs, axis=0, return_inverse=True)
        packets = np.bincount(at.ravel(), weights=flows["drop_packets"][dropped], minlength=len(distinct))
        for (group, reason), count in zip(distinct.tolist(), packets.tolist(), strict=True):
            self.drop_packets.labels(reasons.get(reason, str(reason)), *group_labels[group]).inc(count)

    @staticmethod
    def _observe(histogram: prometheus_client.Histogram, ns: npt.NDArray[np.uint64], present: npt.NDArray[np.bool_],
                 inverse: npt.NDArray[np.intp], group_labels: list[tuple[str, ...]]) -> None:
        """One observation, in seconds, per flow that has the value: connections and exchanges, not packets."""
        for group, value in zip(inverse[present].tolist(), (ns[present] / 1e9).tolist(), strict=True):
            histogram.labels(*group_labels[group]).observe(value)

    def idle(self) -> None:
        """Nothing to keep alive between batches."""

    def reopen(self) -> None:
        """Nothing to reopen: the counters live in memory."""

    def counters(self) -> dict[str, OutputTally]:
        return {self.name: self.tally}

    def close(self) -> None:
        """The counters stay registered: the collector's /metrics still reports them."""

    def _groups(self, flows: Rows) -> tuple[Rows, npt.NDArray[np.intp]]:
        """(one row per distinct combination of the attribute columns, each flow's group index)."""
        if not self._columns:
            return flows[:1], np.zeros(len(flows), dtype=np.intp)
        keys = np.zeros(len(flows), dtype=[(c, flows.dtype[c].base, flows.dtype[c].shape) for c in self._columns])
        for column in self._columns:
            keys[column] = flows[column]
        _, first, inverse = np.unique(keys.view(f"V{keys.dtype.itemsize}"), return_index=True, return_inverse=True)
        return flows[first], inverse.ravel()

    def _labels(self, row: np.void, batch: FlowBatch) -> tuple[str, ...]:
        values = []
        for attribute in self.attributes:
            if attribute == "interface":
                values.append(batch.interface_names.get(int(row["if_index"]), ""))
            elif attribute == "direction":
                values.append(DIRECTION_NAMES.get(int(row["direction"]), str(int(row["direction"]))))
            elif attribute in ("src_addr", "dst_addr"):
                is_ip = int(row["eth_protocol"]) in (ETH_P_IP, ETH_P_IPV6)
                values.append(_address(bytes(row[_column(attribute)])) if is_ip else "")
            elif attribute == "agent_ip":
                values.append(batch.agent_ip)
            else:
                values.append(str(int(row[_column(attribute)])))
        return tuple(values)
