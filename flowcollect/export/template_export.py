"""What IPFIX (export/ipfix.py) and NetFlow v9 (export/netflow9.py) share: templates, records, messages.

Both describe their records with templates: a template record is the
template id, a field count, then (field type, length) per field, the same
bytes in both protocols, and a set (v9: FlowSet) of data records carries the
id of its template. Field types 1-127 mean the same in both (IPFIX's
registry began as v9's list), so both use one element table, below.

Templates. One template per kind of flow, so that every field of a record
means something and collectors need no special cases:

  256 IPv4, 257 IPv4 ICMP, 258 IPv6, 259 IPv6 ICMP (protocol 58), 260 not IP.

ICMP flows carry the ICMP type/code instead of the two ports: nfdump (and
others) store the ICMP type/code in the destination-port slot, and a
template with both would let a zero port overwrite it. Non-IP frames (ARP,
LLDP, ...) are flows too (bpf/flows.bpf.c counts them), keyed by ethertype: their template has
MACs and ethernetType and no addresses. Every template carries both
ingressInterface and egressInterface: the flow's interface in the one its
direction names, 0 ("unknown", as in SNMP) in the other. The protocols
differ only in their time and sampling elements and the ICMPv6 one.

Counting. octetDeltaCount is what the TC hook saw (skb->len: whole frames,
Ethernet header included), the same number as `bytes` in JSON; packets and
octets are those counted, not scaled by the sampling rate, which travels in
its own element (1 when every packet is counted). tcpControlBits is the TCP
header's flag byte OR-ed over the flow, in one byte: v9's TCP_FLAGS is one
byte, and in IPFIX the reduced-size encoding of RFC 7011 §6.2, the only one
nfacctd reads (tests/test_ipfix_nfdump.py, tests/test_collectors_e2e.py: with
two bytes it shows no flags at all). flowcollect's synthetic
SYN_ACK/FIN_ACK/RST_ACK bits (0x100-0x400) are left out, as the standard
gives those bit positions to other header flags. ipClassOfService is
DSCP << 2 (the ECN bits are not kept).

Features (--features). IANA has no elements for a flow's kernel drops, its
RTT or its DNS exchange, so IPFIX carries them as enterprise-specific elements
(RFC 7011 §3.2: the id with its top bit set, then a 4-byte Private
Enterprise Number) of enterprise FLOWCOLLECT_PEN, appended to the four IP
templates when the agent has the feature; the ids are in FEATURE_ELEMENTS.
NetFlow v9 has no enterprise elements: its templates stay as they are.

Messages. At most `mtu` bytes each, header included (default 1400, safe on
any Ethernet path with IPv6 and tunnels), as many records of one template as
fit. Templates are sent in a message of their own before the first data,
then again every `template_refresh_seconds` and every
`template_refresh_messages` data messages: over UDP a collector forgets
templates after a while, and a restarted one knows none. Each encoder is one
exporting domain (IPFIX observation domain, v9 source id) with its own
sequence: give every worker process its own.
"""
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from flowcollect.pipeline import rows
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import ETH_P_IP, ETH_P_IPV6, Rows

DEFAULT_MTU = 1400
DEFAULT_TEMPLATE_REFRESH_SECONDS = 60.0
DEFAULT_TEMPLATE_REFRESH_MESSAGES = 256
SET_HEADER_SIZE = 4  # set (FlowSet) id, length
IPPROTO_ICMP, IPPROTO_ICMPV6 = 1, 58
NOT_IP = 4  # the index of the template of frames that are not IP (template_kinds)


@dataclass(frozen=True)
class Element:
    """A template field: its name (IPFIX's), type id, length in bytes, and where its value comes from."""

    name: str
    id: int
    length: int
    value: str  # a FLOW_EXPORT column, or a derived value (see column())
    octets: bool = False  # an address: bytes in network order, not a number
    enterprise: int = 0  # the Private Enterprise Number of an enterprise-specific element; 0: IANA's


# The element table: ids of IANA's "IPFIX Information Elements" registry, which are v9's field types up to 127.
OCTETS = Element("octetDeltaCount", 1, 8, "bytes")
PACKETS = Element("packetDeltaCount", 2, 8, "packets")
INGRESS = Element("ingressInterface", 10, 4, "ingress_interface")
EGRESS = Element("egressInterface", 14, 4, "egress_interface")
DIRECTION = Element("flowDirection", 61, 1, "direction")  # 0 ingress, 1 egress: the kernel's values
SRC_MAC = Element("sourceMacAddress", 56, 6, "src_mac", octets=True)
DST_MAC = Element("destinationMacAddress", 80, 6, "dst_mac", octets=True)
VLAN = Element("vlanId", 58, 2, "vlan_id")
ETHERTYPE = Element("ethernetType", 256, 2, "eth_protocol")
PROTOCOL = Element("protocolIdentifier", 4, 1, "protocol")
TOS = Element("ipClassOfService", 5, 1, "class_of_service")
TCP_FLAGS = Element("tcpControlBits", 6, 1, "tcp_control_bits")
SRC_PORT = Element("sourceTransportPort", 7, 2, "src_port")
DST_PORT = Element("destinationTransportPort", 11, 2, "dst_port")
SRC_IPV4 = Element("sourceIPv4Address", 8, 4, "src_ipv4", octets=True)
DST_IPV4 = Element("destinationIPv4Address", 12, 4, "dst_ipv4", octets=True)
SRC_IPV6 = Element("sourceIPv6Address", 27, 16, "src_ip", octets=True)
DST_IPV6 = Element("destinationIPv6Address", 28, 16, "dst_ip", octets=True)
ICMP_V4 = Element("icmpTypeCodeIPv4", 32, 2, "icmp_type_code")  # v9: ICMP_TYPE, for ICMPv6 too

# The Private Enterprise Number of flowcollect's own elements: 32473, which IANA reserves for
# documentation and examples (RFC 5612). flowcollect has no number of its own: a deployment whose
# collectors keep these fields apart from another vendor's should register one and put it here.
FLOWCOLLECT_PEN = 32473
FEATURE_ELEMENTS = {
    "drops": (Element("dropPacketDeltaCount", 1, 8, "drop_packets", enterprise=FLOWCOLLECT_PEN),
              Element("dropOctetDeltaCount", 2, 8, "drop_bytes", enterprise=FLOWCOLLECT_PEN),
              Element("dropReason", 3, 4, "drop_reason", enterprise=FLOWCOLLECT_PEN),
              Element("dropTcpState", 4, 1, "drop_tcp_state", enterprise=FLOWCOLLECT_PEN)),
    "rtt": (Element("rttNanoseconds", 5, 8, "rtt_ns", enterprise=FLOWCOLLECT_PEN),
            Element("handshakeRttNanoseconds", 6, 8, "handshake_rtt_ns", enterprise=FLOWCOLLECT_PEN)),
    "dns": (Element("dnsId", 7, 2, "dns_id", enterprise=FLOWCOLLECT_PEN),
            Element("dnsResponseCode", 8, 1, "dns_rcode", enterprise=FLOWCOLLECT_PEN),
            Element("dnsFlags", 9, 1, "dns_flags", enterprise=FLOWCOLLECT_PEN),
            Element("dnsLatencyNanoseconds", 10, 8, "dns_latency_ns", enterprise=FLOWCOLLECT_PEN),
            Element("dnsUnanswered", 11, 4, "dns_unanswered", enterprise=FLOWCOLLECT_PEN),
            Element("dnsQueryName", 12, 64, "dns_name", octets=True, enterprise=FLOWCOLLECT_PEN)),
}


@dataclass(frozen=True)
class Template:
    id: int
    name: str
    elements: tuple[Element, ...]

    @property
    def record_length(self) -> int:
        return sum(e.length for e in self.elements)

    @property
    def dtype(self) -> np.dtype:
        """Big-endian, packed: one numpy row is one data record on the wire."""
        formats = [("u1", (e.length,)) if e.octets else f">u{e.length}" for e in self.elements]
        return np.dtype({"names": [e.name for e in self.elements], "formats": formats})

    def record(self) -> bytes:
        """The template record: id, field count, then (element id, length) per field, an enterprise
        element's id with its top bit set and followed by its enterprise number."""
        fields = b"".join(struct.pack(">HHI", e.id | 0x8000, e.length, e.enterprise) if e.enterprise
                          else struct.pack(">HH", e.id, e.length) for e in self.elements)
        return struct.pack(">HH", self.id, len(self.elements)) + fields

    def with_elements(self, extra: tuple[Element, ...]) -> "Template":
        return Template(self.id, self.name, self.elements + extra)


def flow_templates(times: tuple[Element, ...], sampling: Element, icmp_v6: Element) -> tuple[Template, ...]:
    """The five templates (in the order of template_kinds), from a protocol's time, sampling and ICMPv6 elements."""
    common = (*times, OCTETS, PACKETS, INGRESS, EGRESS, DIRECTION, SRC_MAC, DST_MAC, VLAN, sampling)
    ip = (*common, PROTOCOL, TOS, TCP_FLAGS)
    return (Template(256, "IPv4", (*ip, SRC_IPV4, DST_IPV4, SRC_PORT, DST_PORT)),
            Template(257, "IPv4 ICMP", (*ip, SRC_IPV4, DST_IPV4, ICMP_V4)),
            Template(258, "IPv6", (*ip, SRC_IPV6, DST_IPV6, SRC_PORT, DST_PORT)),
            Template(259, "IPv6 ICMP", (*ip, SRC_IPV6, DST_IPV6, icmp_v6)),
            Template(260, "not IP", (*common, ETHERTYPE)))


def template_kinds(flows: Rows) -> npt.NDArray[np.intp]:
    """The index in flow_templates() of each flow's template."""
    eth = flows["eth_protocol"]
    proto = flows["protocol"]
    kind = np.full(len(flows), NOT_IP, dtype=np.intp)
    v4, v6 = eth == ETH_P_IP, eth == ETH_P_IPV6
    kind[v4] = np.where(proto[v4] == IPPROTO_ICMP, 1, 0)
    kind[v6] = np.where(proto[v6] == IPPROTO_ICMPV6, 3, 2)
    return kind


def column(flows: Rows, name: str) -> Any:  # numpy types a structured array's fields as Any
    """The values of an element for these flows: a FLOW_EXPORT column, or one derived from them."""
    if name == "ingress_interface":
        return np.where(flows["direction"] == 0, flows["if_index"], 0)
    if name == "egress_interface":
        return np.where(flows["direction"] == 1, flows["if_index"], 0)
    if name == "sampling_interval":
        return np.maximum(flows["sampling"], 1)  # 0 means "every packet": an interval of 1
    if name == "class_of_service":
        return flows["dscp"].astype(np.uint16) << 2
    if name == "tcp_control_bits":
        return flows["tcp_flags"] & 0xFF
    if name in ("src_ipv4", "dst_ipv4"):
        return flows[name[:3] + "_ip"][:, 12:16]  # IPv4-mapped IPv6: the last four bytes
    if name == "icmp_type_code":
        return flows["icmp_type"].astype(np.uint16) << 8 | flows["icmp_code"]
    return flows[name]


class TemplateEncoder(ABC):
    """FlowBatch -> messages for one exporting domain, keeping its sequence and template timers.

    A protocol says its header (size, and how to pack it), its template set id,
    its templates and whether sets are padded; this class does the rest.
    """

    kind: ClassVar[str]             # the output's kind, as in --output KIND:HOST:PORT
    protocol: ClassVar[str]         # for messages: "IPFIX", "NetFlow v9"
    header_size: ClassVar[int]
    template_set_id: ClassVar[int]
    base_templates: ClassVar[tuple[Template, ...]]
    set_alignment: ClassVar[int] = 1  # sets padded to a multiple of this many bytes
    enterprise_elements: ClassVar[bool] = False  # the protocol has them: the features' elements are added

    def __init__(self, domain: int = 0, mtu: int = DEFAULT_MTU,
                 template_refresh_seconds: float = DEFAULT_TEMPLATE_REFRESH_SECONDS,
                 template_refresh_messages: int = DEFAULT_TEMPLATE_REFRESH_MESSAGES,
                 clock: Callable[[], float] = time.time, features: tuple[str, ...] = ()) -> None:
        extra = tuple(e for f in FEATURE_ELEMENTS if f in features for e in FEATURE_ELEMENTS[f]) \
            if self.enterprise_elements else ()
        # The four IP templates get the features' elements; frames that are not IP have none of them.
        self.templates = tuple(t.with_elements(extra) if i < NOT_IP else t for i, t in enumerate(self.base_templates))
        self.domain = domain  # the IPFIX observation domain, the v9 source id
        self.mtu = mtu
        self.sequence = 0  # mod 2**32; what it counts is the protocol's (_header)
        # The records one set can hold: the room after the header, padding aside, less the set header.
        self._set_room = (mtu - self.header_size) // self.set_alignment * self.set_alignment - SET_HEADER_SIZE
        longest = max(max(t.record_length, len(t.record())) for t in self.templates)
        padded_set = -(-(SET_HEADER_SIZE + longest) // self.set_alignment) * self.set_alignment
        smallest = self.header_size + padded_set
        if mtu < smallest or mtu > 65535:
            raise ValueError(f"{self.protocol} message size {mtu}: must be from {smallest} to 65535")
        self.template_refresh_seconds = template_refresh_seconds
        self.template_refresh_messages = template_refresh_messages
        self.clock = clock
        self._templates_sent_at: float | None = None
        self._messages_since_templates = 0
        self._template_sets = self._template_set_bodies()

    @abstractmethod
    def _header(self, length: int, records: int, data_records: int, now: float) -> bytes:
        """The header of the next message (`length` bytes in all, header included); advances the sequence."""

    def _values(self, flows: Rows, name: str) -> npt.NDArray[Any]:
        """The column of a template element for these flows."""
        return np.asarray(column(flows, name))

    def _template_set_bodies(self) -> list[tuple[bytes, int]]:
        """Template sets and how many templates each holds: as many per message as the MTU allows."""
        sets: list[tuple[bytes, int]] = []
        current, count = b"", 0
        for template in self.templates:
            record = template.record()
            if current and len(current) + len(record) > self._set_room:
                sets.append((self._set(self.template_set_id, current), count))
                current, count = b"", 0
            current += record
            count += 1
        sets.append((self._set(self.template_set_id, current), count))
        return sets

    def _set(self, set_id: int, body: bytes) -> bytes:
        padding = -(SET_HEADER_SIZE + len(body)) % self.set_alignment
        length = SET_HEADER_SIZE + len(body) + padding
        return set_id.to_bytes(2, "big") + length.to_bytes(2, "big") + body + bytes(padding)

    def _message(self, now: float, body: bytes, records: int, data_records: int) -> bytes:
        return self._header(self.header_size + len(body), records, data_records, now) + body

    def templates_due(self, now: float) -> bool:
        if self._templates_sent_at is None:
            return True
        by_time = self.template_refresh_seconds and now - self._templates_sent_at >= self.template_refresh_seconds
        by_count = self.template_refresh_messages and self._messages_since_templates >= self.template_refresh_messages
        return bool(by_time or by_count)

    def encode(self, batch: FlowBatch) -> list[bytes]:
        """The messages (bytes) for a batch, templates first when they are due."""
        return [message for message, _ in self.encode_messages(batch)]

    def encode_messages(self, batch: FlowBatch) -> list[tuple[bytes, Rows | None]]:
        """The messages for a batch, each with the flows it carries (None: a template message)."""
        now = self.clock()
        messages: list[tuple[bytes, Rows | None]] = []
        if self.templates_due(now):
            messages += [(self._message(now, body, count, 0), None) for body, count in self._template_sets]
            self._templates_sent_at = now
            self._messages_since_templates = 0
        flows = batch.flows
        if len(flows):
            kinds = template_kinds(flows)
            for kind, template in enumerate(self.templates):
                picked = np.flatnonzero(kinds == kind)
                if len(picked):
                    self._data_messages(template, rows.take(flows, picked), now, messages)
        return messages

    def data_records(self, template: Template, flows: Rows) -> bytes:
        """The data records of flows (all of this template) as one bytes object, record after record."""
        records = np.zeros(len(flows), dtype=template.dtype)
        for element in template.elements:
            records[element.name] = self._values(flows, element.value)
        return records.tobytes()

    def _data_messages(self, template: Template, flows: Rows, now: float,
                       messages: list[tuple[bytes, Rows | None]]) -> None:
        size = template.record_length
        per_message = self._set_room // size
        data = self.data_records(template, flows)
        for first in range(0, len(flows), per_message):
            count = min(per_message, len(flows) - first)
            records = data[first * size:(first + count) * size]
            messages.append((self._message(now, self._set(template.id, records), count, count),
                             flows[first:first + count]))
            self._messages_since_templates += 1
