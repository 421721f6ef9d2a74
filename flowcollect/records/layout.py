"""numpy dtypes of the structs and constants of bpf/flow.h, declared here without the native extension.

A subscriber decodes the binary stream with these and must not need libbpf,
so the layout is written out rather than read from the compiled extension;
tests/test_layout.py pins it to bpf/flow.h, field by field, through the C
compiler's view (cffi) and the kernel object's BTF. Nested structs are
flattened (`rec["packets"]`, `rec["src_port"]`); padding fields are left out
of the dtype but kept in its offsets and itemsize, so a numpy row is the C
struct byte for byte.
"""
import numpy as np
import numpy.typing as npt

FC_MAC_LEN = 6
FC_IP_LEN = 16
FC_DNS_NAME_LEN = 64

Member = tuple[str, str | tuple[str, tuple[int]]] | np.dtype


def _struct(*members: Member) -> np.dtype:
    """The flattened dtype of a C struct whose members are laid out in order with natural alignment.

    flow.h spells every hole out as a named `pad` field, so an offset that is
    not aligned to its member's size means this declaration has drifted.
    """
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    offset = 0
    for member in members:
        if isinstance(member, np.dtype):  # a nested struct
            for name in member.names or ():
                ftype, at = member.fields[name][:2]  # type: ignore[index]
                names.append(name)
                formats.append(ftype)
                offsets.append(offset + at)
            offset += member.itemsize
            continue
        name, fmt = member
        ftype = np.dtype(fmt)
        if offset % ftype.base.itemsize:
            raise TypeError(f"{name} at offset {offset} is not naturally aligned")
        if not name.startswith("pad"):
            names.append(name)
            formats.append(ftype)
            offsets.append(offset)
        offset += ftype.itemsize
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


# struct fc_flow_key: the hash-map key (64 bytes).
FLOW_KEY = _struct(
    ("src_mac", ("u1", (FC_MAC_LEN,))), ("dst_mac", ("u1", (FC_MAC_LEN,))), ("eth_protocol", "u2"),
    ("src_ip", ("u1", (FC_IP_LEN,))), ("dst_ip", ("u1", (FC_IP_LEN,))),
    ("src_port", "u2"), ("dst_port", "u2"), ("vlan_id", "u2"), ("if_index", "u4"),
    ("protocol", "u1"), ("direction", "u1"), ("icmp_type", "u1"), ("icmp_code", "u1"), ("pad", ("u1", (4,))),
)
# struct fc_flow_metrics: the per-CPU value (40 bytes).
FLOW_METRICS = _struct(
    ("packets", "u8"), ("bytes", "u8"), ("first_seen_ns", "u8"), ("last_seen_ns", "u8"),
    ("tcp_flags", "u2"), ("dscp", "u1"), ("errno_code", "u1"), ("pad", "u4"),
)
# struct fc_flow_record: a ring-buffer record, and a row of a drained batch (104 bytes).
FLOW_RECORD = _struct(FLOW_KEY, FLOW_METRICS)
# struct fc_flow_features: what --features adds to an evicted flow (120 bytes).
FLOW_FEATURES = _struct(
    ("drop_packets", "u8"), ("drop_bytes", "u8"), ("drop_reason", "u4"), ("drop_tcp_state", "u1"),
    ("pad_features", ("u1", (3,))), ("dns_latency_ns", "u8"), ("dns_unanswered", "u4"), ("dns_id", "u2"),
    ("dns_rcode", "u1"), ("dns_flags", "u1"), ("dns_name", ("u1", (FC_DNS_NAME_LEN,))), ("rtt_ns", "u8"),
    ("handshake_rtt_ns", "u8"),
)
# struct fc_flow_export: an evicted flow with wall-clock times, as stages and the wire carry it (248 bytes).
FLOW_EXPORT = _struct(
    FLOW_RECORD, ("time_flow_start_ns", "i8"), ("time_flow_end_ns", "i8"),
    ("sampling", "u4"), ("duplicate", "u1"), ("pad_export", ("u1", (3,))), FLOW_FEATURES,
)

# struct fc_flow_tuple (the key of every feature map: drops, DNS, RTT, handshakes), fc_drop_metrics,
# fc_drop_record: the drop map (bpf/drops.bpf.h) and its drained rows.
FLOW_TUPLE = _struct(
    ("src_ip", ("u1", (FC_IP_LEN,))), ("dst_ip", ("u1", (FC_IP_LEN,))), ("src_port", "u2"), ("dst_port", "u2"),
    ("protocol", "u1"), ("pad_tuple", ("u1", (3,))),
)
DROP_METRICS = _struct(
    ("packets", "u8"), ("bytes", "u8"), ("first_seen_ns", "u8"), ("last_seen_ns", "u8"),
    ("reason", "u4"), ("if_index", "u4"), ("tcp_state", "u1"), ("pad_drop", ("u1", (7,))),
)
DROP_RECORD = _struct(FLOW_TUPLE, DROP_METRICS)
# struct fc_dns_query_key, fc_dns_metrics, fc_dns_record: the DNS maps (bpf/dns.bpf.h) and their drained rows.
DNS_QUERY_KEY = _struct(FLOW_TUPLE, ("id", "u2"), ("pad_query", ("u1", (2,))))
DNS_METRICS = _struct(
    ("latency_ns", "u8"), ("queries", "u4"), ("answers", "u4"), ("unanswered", "u4"), ("id", "u2"), ("rcode", "u1"),
    ("flags", "u1"), ("name_len", "u1"), ("name", ("u1", (FC_DNS_NAME_LEN,))), ("pad_dns", ("u1", (7,))),
)
DNS_RECORD = _struct(FLOW_TUPLE, DNS_METRICS)
# struct fc_rtt_metrics, fc_rtt_record: the RTT maps (bpf/rtt.bpf.h) and their drained rows.
RTT_METRICS = _struct(("srtt_max_ns", "u8"), ("handshake_ns", "u8"), ("first_seen_ns", "u8"), ("last_seen_ns", "u8"))
RTT_RECORD = _struct(FLOW_TUPLE, RTT_METRICS)
# enum fc_dns_flag
DNS_SEEN_QUERY = 1
DNS_ANSWERED = 2

KEY_SIZE = FLOW_KEY.itemsize
METRICS_OFFSET = FLOW_KEY.itemsize  # of struct fc_flow_record's metrics

# The ethertypes of IP flows (eth_protocol, host byte order as in struct fc_flow_key).
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD

# enum fc_direction: numbered as IPFIX flowDirection.
DIRECTION_INGRESS = 0
DIRECTION_EGRESS = 1
DIRECTION_NAMES = {DIRECTION_INGRESS: "ingress", DIRECTION_EGRESS: "egress"}

# The kernel's TCP states, as they number /proc/net/tcp's `st` column (stable for that reason):
# drop_tcp_state. 0 is no socket.
TCP_STATE_NAMES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
                   7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
                   13: "BOUND_INACTIVE"}

# DNS response codes (the 4 RCODE bits of the message header): dns_rcode. Others print as RCODE<n>.
DNS_RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
                   6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}

# enum fc_counter, in slot order, as lower-case names.
COUNTER_NAMES = ("packets_seen", "sampled_out", "parse_failed", "map_insert_failed", "ringbuf_submitted",
                 "ringbuf_reserve_failed", "lost_bytes", "no_flow_map", "overflow_packets",
                 "program_runs")

Rows = npt.NDArray[np.void]
"""A batch: an array of rows of one of the structs above."""
