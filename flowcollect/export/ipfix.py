"""IPFIX over UDP (RFC 7011) with standard information elements (RFC 7012 / IANA), and enterprise ones
for the --features fields (export/template_export.py).

IpfixEncoder turns a FlowBatch into IPFIX messages (pure: no socket, an
injected clock); export/udp_sink.py sends them. Templates, records and
message sizes: export/template_export.py, shared with NetFlow v9.

What is IPFIX's own: the 16-byte header (version 10, length, export time in
seconds, sequence number, observation domain), template set id 2, the
flow's times as flowStartMilliseconds / flowEndMilliseconds (Unix epoch ms),
sampling as samplingPacketInterval and ICMPv6 as icmpTypeCodeIPv6. Sequence
numbers count the data records sent before the message, per observation
domain (RFC 7011 §3.1).
"""
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from flowcollect.export.template_export import (
    DEFAULT_MTU,
    DEFAULT_TEMPLATE_REFRESH_MESSAGES,
    DEFAULT_TEMPLATE_REFRESH_SECONDS,
    Element,
    Template,
    TemplateEncoder,
    column,
    flow_templates,
)
from flowcollect.records.layout import Rows

IPFIX_VERSION = 10
TEMPLATE_SET_ID = 2
HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence number, observation domain

FLOW_START_MS = Element("flowStartMilliseconds", 152, 8, "start_ms")
FLOW_END_MS = Element("flowEndMilliseconds", 153, 8, "end_ms")
SAMPLING = Element("samplingPacketInterval", 305, 4, "sampling_interval")
ICMP_V6 = Element("icmpTypeCodeIPv6", 139, 2, "icmp_type_code")

TEMPLATES = flow_templates((FLOW_START_MS, FLOW_END_MS), SAMPLING, ICMP_V6)


@dataclass(frozen=True)
class IpfixOptions:
    """The ipfix_* settings: message size and template refresh, of the IPFIX and NetFlow v9 outputs alike."""

    mtu: int = DEFAULT_MTU
    template_refresh_seconds: float = DEFAULT_TEMPLATE_REFRESH_SECONDS
    template_refresh_messages: int = DEFAULT_TEMPLATE_REFRESH_MESSAGES
    features: tuple[str, ...] = ()  # the agent's --features: IPFIX records carry their elements


class IpfixEncoder(TemplateEncoder):
    """FlowBatch -> IPFIX messages for one observation domain (`domain`)."""

    kind: ClassVar[str] = "ipfix"
    protocol: ClassVar[str] = "IPFIX"
    header_size: ClassVar[int] = HEADER.size
    template_set_id: ClassVar[int] = TEMPLATE_SET_ID
    base_templates: ClassVar[tuple[Template, ...]] = TEMPLATES
    enterprise_elements: ClassVar[bool] = True

    def _header(self, length: int, records: int, data_records: int, now: float) -> bytes:
        header = HEADER.pack(IPFIX_VERSION, length, int(now) & 0xFFFFFFFF, self.sequence, self.domain)
        # The sequence counts the data records sent in this domain before the message.
        self.sequence = (self.sequence + data_records) & 0xFFFFFFFF
        return header

    def _values(self, flows: Rows, name: str) -> Any:
        if name in ("start_ms", "end_ms"):
            return flows[f"time_flow_{name[:-3]}_ns"] // 1_000_000
        return column(flows, name)
