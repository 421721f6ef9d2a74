"""IPFIX over UDP (RFC 7011) with standard information elements (RFC 7012 / IANA).

IpfixEncoder turns a FlowBatch into IPFIX messages (pure: no socket, an
injected clock); IpfixSink sends them over UDP and counts what fails.

Templates. One template per kind of flow, so that every field of a record
means something and collectors need no special cases:

  256 IPv4, 257 IPv4 ICMP, 258 IPv6, 259 IPv6 ICMP (protocol 58), 260 not IP.

ICMP flows carry icmpTypeCodeIPv4/IPv6 instead of the two ports: nfdump (and
others) store the ICMP type/code in the destination-port slot, and a
template with both would let a zero port overwrite it. Non-IP frames (ARP,
LLDP, ...) are flows too (bpf/flows.bpf.c counts them), keyed by ethertype: their template has
MACs and ethernetType and no addresses. Every template carries both
ingressInterface and egressInterface: the flow's interface in the one its
direction names, 0 ("unknown", as in SNMP) in the other.

Counting. octetDeltaCount is what the TC hook saw (skb->len: whole frames,
Ethernet header included), the same number as `bytes` in JSON; packets and
octets are those counted, not scaled by the sampling rate, which travels in
samplingPacketInterval (1 when every packet is counted). tcpControlBits is
the TCP header's flag byte OR-ed over the flow; flowcollect's synthetic
SYN_ACK/FIN_ACK/RST_ACK bits (0x100-0x400) are left out, as the standard
gives those bit positions to other header flags. ipClassOfService is DSCP << 2
(the ECN bits are not kept).

Messages. At most `mtu` bytes each (IPFIX header included; default 1400, safe
on any Ethernet path with IPv6 and tunnels). Sequence numbers count the data
records sent before the message, per observation domain (RFC 7011 §3.1);
give every worker process its own observation domain so that each keeps its
own sequence. Templates are sent in a message of their own before the first
data, then again every `template_refresh_seconds` and every
`template_refresh_messages` messages (RFC 7011 §8.4: over UDP templates
expire at the collector, and a restarted collector knows none).
"""
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flowcollect.export.prometheus import health
from flowcollect.pipeline.log_backoff import LossLog
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import Rows
from flowcollect.records.tally import OutputTally
from flowcollect.settings.addresses import host_port

log = logging.getLogger(__name__)

IPFIX_VERSION = 10
TEMPLATE_SET_ID = 2
HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence number, observation domain
SET_HEADER = struct.Struct("!HH")  # set id, length
DEFAULT_MTU = 1400
DEFAULT_TEMPLATE_REFRESH_SECONDS = 60.0
DEFAULT_TEMPLATE_REFRESH_MESSAGES = 256
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_ICMP, IPPROTO_ICMPV6 = 1, 58


@dataclass(frozen=True)
class IpfixOptions:
    """The ipfix_* settings: message size and template refresh (see the module's docstring)."""

    mtu: int = DEFAULT_MTU
    template_refresh_seconds: float = DEFAULT_TEMPLATE_REFRESH_SECONDS
    template_refresh_messages: int = DEFAULT_TEMPLATE_REFRESH_MESSAGES


@dataclass(frozen=True)
class Element:
    """An IANA information element as a template field: id, length in bytes, where its value comes from."""

    name: str
    id: int
    length: int
    value: str  # a FLOW_EXPORT column, or a derived value (see _values)
    octets: bool = False  # an address: bytes in network order, not a number


# IANA "IPFIX Information Elements" registry ids.
FLOW_START_MS = Element("flowStartMilliseconds", 152, 8, "start_ms")
FLOW_END_MS = Element("flowEndMilliseconds", 153, 8, "end_ms")
OCTETS = Element("octetDeltaCount", 1, 8, "bytes")
PACKETS = Element("packetDeltaCount", 2, 8, "packets")
INGRESS = Element("ingressInterface", 10, 4, "ingress_interface")
EGRESS = Element("egressInterface", 14, 4, "egress_interface")
DIRECTION = Element("flowDirection", 61, 1, "direction")  # 0 ingress, 1 egress: the kernel's values
SRC_MAC = Element("sourceMacAddress", 56, 6, "src_mac", octets=True)
DST_MAC = Element("destinationMacAddress", 80, 6, "dst_mac", octets=True)
VLAN = Element("vlanId", 58, 2, "vlan_id")
ETHERTYPE = Element("ethernetType", 256, 2, "eth_protocol")
SAMPLING = Element("samplingPacketInterval", 305, 4, "sampling_interval")
PROTOCOL = Element("protocolIdentifier", 4, 1, "protocol")
TOS = Element("ipClassOfService", 5, 1, "class_of_service")
TCP_FLAGS = Element("tcpControlBits", 6, 2, "tcp_control_bits")
SRC_PORT = Element("sourceTransportPort", 7, 2, "src_port")
DST_PORT = Element("destinationTransportPort", 11, 2, "dst_port")
SRC_IPV4 = Element("sourceIPv4Address", 8, 4, "src_ipv4", octets=True)
DST_IPV4 = Element("destinationIPv4Address", 12, 4, "dst_ipv4", octets=True)
SRC_IPV6 = Element("sourceIPv6Address", 27, 16, "src_ip", octets=True)
DST_IPV6 = Element("destinationIPv6Address", 28, 16, "dst_ip", octets=True)
ICMP_V4 = Element("icmpTypeCodeIPv4", 32, 2, "icmp_type_code")
ICMP_V6 = Element("icmpTypeCodeIPv6", 139, 2, "icmp_type_code")

_COMMON = (FLOW_START_MS, FLOW_END_MS, OCTETS, PACKETS, INGRESS, EGRESS, DIRECTION, SRC_MAC, DST_MAC, VLAN, SAMPLING)
_IP = (PROTOCOL, TOS, TCP_FLAGS)


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
        """The template record: id, field count, then (element id, length) per field."""
        fields = b"".join(struct.pack("!HH", e.id, e.length) for e in self.elements)
        return struct.pack("!HH", self.id, len(self.elements)) + fields


IPV4 = Template(256, "IPv4", _COMMON + _IP + (SRC_IPV4, DST_IPV4, SRC_PORT, DST_PORT))
IPV4_ICMP = Template(257, "IPv4 ICMP", _COMMON + _IP + (SRC_IPV4, DST_IPV4, ICMP_V4))
IPV6 = Template(258, "IPv6", _COMMON + _IP + (SRC_IPV6, DST_IPV6, SRC_PORT, DST_PORT))
IPV6_ICMP = Template(259, "IPv6 ICMP", _COMMON + _IP + (SRC_IPV6, DST_IPV6, ICMP_V6))
NOT_IP = Template(260, "not IP", (*_COMMON, ETHERTYPE))
TEMPLATES = (IPV4, IPV4_ICMP, IPV6, IPV6_ICMP, NOT_IP)


def template_kinds(flows: Rows) -> npt.NDArray[np.intp]:
    """The index in TEMPLATES of each flow's template."""
    eth = flows["eth_protocol"]
    proto = flows["protocol"]
    kind = np.full(len(flows), 4, dtype=np.intp)
    v4, v6 = eth == ETH_P_IP, eth == ETH_P_IPV6
    kind[v4] = np.where(proto[v4] == IPPROTO_ICMP, 1, 0)
    kind[v6] = np.where(proto[v6] == IPPROTO_ICMPV6, 3, 2)
    return kind


def _values(flows: Rows, name: str) -> npt.NDArray[Any]:
    """The column of a template element for these flows."""
    return np.asarray(_column(flows, name))


def _column(flows: Rows, name: str) -> Any:  # numpy types a structured array's fields as Any
    if name in ("start_ms", "end_ms"):
        return flows[f"time_flow_{name[:-3]}_ns"] // 1_000_000
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


def data_records(template: Template, flows: Rows) -> bytes:
    """The data records of flows (all of this template) as one bytes object, record after record."""
    records = np.zeros(len(flows), dtype=template.dtype)
    for element in template.elements:
        records[element.name] = _values(flows, element.value)
    return records.tobytes()


class IpfixEncoder:
    """FlowBatch -> IPFIX messages for one observation domain, keeping its sequence and template timers."""

    def __init__(self, observation_domain: int = 0, mtu: int = DEFAULT_MTU,
                 template_refresh_seconds: float = DEFAULT_TEMPLATE_REFRESH_SECONDS,
                 template_refresh_messages: int = DEFAULT_TEMPLATE_REFRESH_MESSAGES,
                 clock: Callable[[], float] = time.time) -> None:
        longest = max(max(t.record_length, len(t.record())) for t in TEMPLATES)
        if mtu < HEADER.size + SET_HEADER.size + longest or mtu > 65535:
            smallest = HEADER.size + SET_HEADER.size + longest
            raise ValueError(f"IPFIX message size {mtu}: must be from {smallest} to 65535")
        self.observation_domain = observation_domain
        self.mtu = mtu
        self.template_refresh_seconds = template_refresh_seconds
        self.template_refresh_messages = template_refresh_messages
        self.clock = clock
        self.sequence = 0  # data records sent in this domain, mod 2**32
        self._templates_sent_at: float | None = None
        self._messages_since_templates = 0
        self._template_sets = self._template_messages_bodies()

    def _template_messages_bodies(self) -> list[bytes]:
        """Template sets, as many templates per message as the MTU allows."""
        room = self.mtu - HEADER.size - SET_HEADER.size
        bodies, current = [], b""
        for template in TEMPLATES:
            record = template.record()
            if current and len(current) + len(record) > room:
                bodies.append(self._set(TEMPLATE_SET_ID, current))
                current = b""
            current += record
        bodies.append(self._set(TEMPLATE_SET_ID, current))
        return bodies

    @staticmethod
    def _set(set_id: int, body: bytes) -> bytes:
        return SET_HEADER.pack(set_id, SET_HEADER.size + len(body)) + body

    def _message(self, export_time: int, sets: list[bytes]) -> bytes:
        body = b"".join(sets)
        return HEADER.pack(IPFIX_VERSION, HEADER.size + len(body), export_time, self.sequence,
                           self.observation_domain) + body

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
        export_time = int(now) & 0xFFFFFFFF
        messages: list[tuple[bytes, Rows | None]] = []
        if self.templates_due(now):
            messages += [(self._message(export_time, [body]), None) for body in self._template_sets]
            self._templates_sent_at = now
            self._messages_since_templates = 0
        flows = batch.flows
        if len(flows):
            kinds = template_kinds(flows)
            for kind, template in enumerate(TEMPLATES):
                rows = np.flatnonzero(kinds == kind)
                if len(rows):
                    self._data_messages(template, flows[rows], export_time, messages)
        return messages

    def _data_messages(self, template: Template, flows: Rows, export_time: int,
                       messages: list[tuple[bytes, Rows | None]]) -> None:
        size = template.record_length
        per_message = (self.mtu - HEADER.size - SET_HEADER.size) // size
        data = data_records(template, flows)
        for first in range(0, len(flows), per_message):
            count = min(per_message, len(flows) - first)
            records = data[first * size:(first + count) * size]
            messages.append((self._message(export_time, [self._set(template.id, records)]),
                             flows[first:first + count]))
            self.sequence = (self.sequence + count) & 0xFFFFFFFF
            self._messages_since_templates += 1


class IpfixSink:
    """Sends IPFIX messages over UDP to HOST:PORT; failed sends are counted, never raised."""

    kind = "ipfix"

    def __init__(self, target: str, observation_domain: int = 0, encoder: IpfixEncoder | None = None) -> None:
        self.target = target
        self.name = f"ipfix:{target}"
        host, port = host_port(target)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.encoder = encoder or IpfixEncoder(observation_domain=observation_domain)
        self.tally = OutputTally()
        self.messages = 0    # datagrams sent
        self.errors = 0      # datagrams that could not be sent
        self._losses = LossLog(log, f"not sent to {self.name}: the send failed")
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        # connect(): the kernel then reports "port unreachable" from the collector as ECONNREFUSED.
        self._socket.connect(address)

    def __repr__(self) -> str:
        return f"IpfixSink({self.target!r})"

    def wants_json(self) -> bool:
        return False

    def write(self, batch: FlowBatch, lines: memoryview | None = None) -> bool:
        """Encode and send one batch (`lines` is not used); True when every datagram went out.

        The flows of a datagram that could not be sent are lost (send_failed); the others are exported.
        """
        failed = 0
        for message, flows in self.encoder.encode_messages(batch):
            try:
                self._socket.send(message)
                self.messages += 1
                if flows is not None:
                    self.tally.exported.add(flows)
                    health.exported(self.kind, len(flows), int(flows["packets"].sum()))
            except OSError as exc:
                failed += 1
                if failed == 1 and not self.errors:
                    log.error("ipfix output %s: send failed: %s", self.target, exc.strerror or exc)
                if flows is not None:
                    self.tally.lose("send_failed", flows)
                    packets = int(flows["packets"].sum())
                    health.lost("send_failed", len(flows), packets)
                    self._losses.lost(packets, len(flows))
        self.errors += failed
        if failed:
            health.export_error(self.kind, failed)
        return not failed

    def idle(self) -> None:
        self._losses.tick()

    def reopen(self) -> None:
        """Nothing to reopen: UDP has no file."""

    def counters(self) -> dict[str, OutputTally]:
        return {self.name: self.tally}

    def close(self) -> None:
        self._socket.close()
