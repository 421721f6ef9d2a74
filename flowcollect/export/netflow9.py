"""NetFlow v9 over UDP (RFC 3954), the templates and fields of the IPFIX output where v9 has them.

NetflowV9Encoder turns a FlowBatch into v9 export packets (pure: no socket,
injected clocks); export/udp_sink.py sends them. Templates, records and
message sizes: export/template_export.py, shared with IPFIX.

What is v9's own:
- the 20-byte header: version 9, count (the template and data records in
  the packet), sysUptime (ms), unix secs, sequence number, source id. The
  sequence counts export packets sent before this one by the source id
  (RFC 3954 §5.1), templates included: a collector sees a lost packet as a gap;
- template FlowSet id 0, and every FlowSet padded to 4 bytes (RFC 3954 §5.3);
- times: v9 has no epoch-ms elements. FIRST_SWITCHED / LAST_SWITCHED (22, 21)
  are ms of sysUptime, the time since the host booted: the origin of
  CLOCK_MONOTONIC, from which the kernel stamps packets (flow times are
  never before it). They wrap modulo 2**32 ms (49.7 days), as a router's do.
  The header's unix secs is the export instant rounded up to the second, and
  its sysUptime the same instant: no flow of the packet ends after the
  header's instant (nfacctd subtracts sysUptime - LAST_SWITCHED unsigned),
  and a collector adding FIRST_SWITCHED to the boot time (unix secs x 1000 -
  sysUptime, as nfcapd does) gets the flow's millisecond exactly;
- sampling as SAMPLING_INTERVAL (34), ICMPv6 type/code in ICMP_TYPE (32), as
  for IPv4: v9 has no ICMPv6 field. ethernetType (256, of the not-IP
  template) is IANA's, which v9 collectors (nfacctd) read as v9 fields too.
"""
import math
import struct
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from flowcollect.export.template_export import (
    DEFAULT_MTU,
    DEFAULT_TEMPLATE_REFRESH_MESSAGES,
    DEFAULT_TEMPLATE_REFRESH_SECONDS,
    ICMP_V4,
    Element,
    Template,
    TemplateEncoder,
    column,
    flow_templates,
)
from flowcollect.records.layout import Rows

NETFLOW_VERSION = 9
TEMPLATE_FLOWSET_ID = 0
HEADER = struct.Struct("!HHIIII")  # version, count, sysUptime, unix secs, sequence number, source id

FIRST_SWITCHED = Element("FIRST_SWITCHED", 22, 4, "first_switched")
LAST_SWITCHED = Element("LAST_SWITCHED", 21, 4, "last_switched")
SAMPLING_INTERVAL = Element("SAMPLING_INTERVAL", 34, 4, "sampling_interval")

TEMPLATES = flow_templates((FIRST_SWITCHED, LAST_SWITCHED), SAMPLING_INTERVAL, ICMP_V4)


def host_boot_ms() -> int:
    """Unix ms of the host's boot, as CLOCK_MONOTONIC counts it (its origin)."""
    return (time.time_ns() - time.monotonic_ns()) // 1_000_000


class NetflowV9Encoder(TemplateEncoder):
    """FlowBatch -> NetFlow v9 export packets for one source id (`domain`).

    boot_ms: the Unix ms at which sysUptime is 0 (default: the host's boot).
    """

    kind: ClassVar[str] = "netflow9"
    protocol: ClassVar[str] = "NetFlow v9"
    header_size: ClassVar[int] = HEADER.size
    template_set_id: ClassVar[int] = TEMPLATE_FLOWSET_ID
    base_templates: ClassVar[tuple[Template, ...]] = TEMPLATES
    set_alignment: ClassVar[int] = 4

    def __init__(self, domain: int = 0, mtu: int = DEFAULT_MTU,
                 template_refresh_seconds: float = DEFAULT_TEMPLATE_REFRESH_SECONDS,
                 template_refresh_messages: int = DEFAULT_TEMPLATE_REFRESH_MESSAGES,
                 clock: Callable[[], float] = time.time, boot_ms: int | None = None,
                 features: tuple[str, ...] = ()) -> None:
        # v9 has no enterprise elements: the features' fields are not in its records (template_export.py).
        super().__init__(domain, mtu, template_refresh_seconds, template_refresh_messages, clock, features)
        self.boot_ms = host_boot_ms() if boot_ms is None else boot_ms

    def _header(self, length: int, records: int, data_records: int, now: float) -> bytes:
        unix_secs = math.ceil(now)
        uptime = (unix_secs * 1000 - self.boot_ms) & 0xFFFFFFFF
        header = HEADER.pack(NETFLOW_VERSION, records, uptime, unix_secs & 0xFFFFFFFF, self.sequence, self.domain)
        # The sequence counts the export packets this source id sent before this one.
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return header

    def _values(self, flows: Rows, name: str) -> Any:
        if name in ("first_switched", "last_switched"):
            times_ns = flows["time_flow_start_ns" if name == "first_switched" else "time_flow_end_ns"]
            return (times_ns.astype(np.int64) // 1_000_000 - self.boot_ms) & 0xFFFFFFFF
        return column(flows, name)
