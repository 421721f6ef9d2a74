"""JSON lines of flow batches: every §7.2 field of known flows, and byte-for-byte equality with
orjson.dumps of one dict per flow (the obvious, slow encoder, kept here as the reference) over
random batches full of edge cases."""
import datetime
import ipaddress

import numpy as np
import orjson
import pytest

from flowcollect.records.batch import Enrichment, FlowBatch
from flowcollect.records.json_lines import FIELDS, JsonLinesEncoder, encode_lines, fields_of
from flowcollect.records.layout import DNS_ANSWERED, DNS_RCODE_NAMES, FLOW_EXPORT, TCP_STATE_NAMES
from tests.flowrows import flow_row as flow
from tests.flowtools import ip16

T0_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z


def reference_record(row, names, agent_ip, enrichment=None):
    """The §7.2 object of one row, built the obvious way."""
    def address(raw):
        if int(row["eth_protocol"]) not in (0x0800, 0x86DD):
            return None
        addr = ipaddress.IPv6Address(bytes(raw))
        return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)

    def iso(ms):
        return str(np.datetime64(ms, "ms")) + "Z"

    start_ms, end_ms = int(row["time_flow_start_ns"]) // 10**6, int(row["time_flow_end_ns"]) // 10**6
    direction = int(row["direction"])
    return {
        "time_flow_start_ms": start_ms, "time_flow_end_ms": end_ms,
        "time_flow_start": iso(start_ms), "time_flow_end": iso(end_ms),
        "interface": names.get(int(row["if_index"]), ""), "if_index": int(row["if_index"]),
        "direction": {0: "ingress", 1: "egress"}.get(direction, str(direction)),
        "src_mac": bytes(row["src_mac"]).hex(":"), "dst_mac": bytes(row["dst_mac"]).hex(":"),
        "eth_protocol": int(row["eth_protocol"]),
        "src_addr": address(row["src_ip"]), "dst_addr": address(row["dst_ip"]),
        **{name: int(row[name]) for name in ("src_port", "dst_port", "protocol", "icmp_type", "icmp_code",
                                             "vlan_id", "packets", "bytes", "tcp_flags", "dscp", "sampling")},
        "agent_ip": agent_ip, "duplicate": bool(row["duplicate"]),
        **(drop_fields(row, enrichment.drop_reasons) if enrichment and "drops" in enrichment.features else {}),
        **({name: int(row[name]) or None for name in ("rtt_ns", "handshake_rtt_ns")}
           if enrichment and "rtt" in enrichment.features else {}),
        **(dns_fields(row) if enrichment and "dns" in enrichment.features else {}),
    }


def dns_fields(row):
    flags = int(row["dns_flags"])
    answered = bool(flags & DNS_ANSWERED)
    name = bytes(row["dns_name"]).rstrip(b"\0").decode("ascii", "backslashreplace")
    rcode = int(row["dns_rcode"])
    return {"dns_id": int(row["dns_id"]) if flags else None, "dns_name": name if flags and name else None,
            "dns_rcode": DNS_RCODE_NAMES.get(rcode, f"RCODE{rcode}") if answered else None,
            "dns_latency_ns": int(row["dns_latency_ns"]) if answered else None,
            "dns_unanswered": int(row["dns_unanswered"])}


def drop_fields(row, reasons):
    dropped, state = int(row["drop_packets"]) > 0, int(row["drop_tcp_state"])
    return {"drop_packets": int(row["drop_packets"]), "drop_bytes": int(row["drop_bytes"]),
            "drop_cause": reasons.get(int(row["drop_reason"])) if dropped else None,
            "drop_tcp_state": TCP_STATE_NAMES.get(state, str(state)) if state else None}


def reference_lines(batch):
    return b"".join(orjson.dumps(reference_record(row, batch.interface_names, batch.agent_ip, batch.enrichment),
                                 option=orjson.OPT_APPEND_NEWLINE) for row in batch.flows)


def test_every_field_of_known_ipv4_and_ipv6_flows():
    # GIVEN an IPv4 TCP flow, an IPv6 ICMPv6 flow and an ARP frame, decorated
    flows = np.concatenate([
        flow(time_flow_start_ns=T0_NS, time_flow_end_ns=T0_NS + 2_500_000_000, if_index=2, direction=1,
             src_mac="02:00:00:00:00:01", dst_mac="0a:bb:cc:dd:ee:ff", eth_protocol=0x0800,
             src_ip="10.1.2.3", dst_ip="192.168.100.200", src_port=43210, dst_port=443, protocol=6,
             vlan_id=100, packets=12, bytes=3456, tcp_flags=0x1b | 0x100, dscp=46, sampling=0),
        flow(time_flow_start_ns=T0_NS, time_flow_end_ns=T0_NS, if_index=7, direction=0,
             eth_protocol=0x86DD, src_ip="2001:db8::1", dst_ip="fe80::1:0:0:2", protocol=58,
             icmp_type=128, icmp_code=0, packets=1, bytes=118, sampling=50, duplicate=1),
        flow(time_flow_start_ns=T0_NS, time_flow_end_ns=T0_NS, if_index=9, eth_protocol=0x0806,
             packets=3, bytes=180),
    ])
    batch = FlowBatch(flows, {2: "eth0", 7: "veth-ü\"x"}, "10.0.0.5")

    # WHEN it is encoded
    lines = bytes(encode_lines(batch)).splitlines(keepends=True)

    # THEN each line is one object with the §7.2 fields in contract order and the right values
    assert len(lines) == 3 and all(line.endswith(b"}\n") for line in lines)
    tcp, icmp6, arp = (orjson.loads(line) for line in lines)
    assert list(tcp) == list(FIELDS)
    assert tcp == {
        "time_flow_start_ms": 1_700_000_000_123, "time_flow_end_ms": 1_700_000_002_623,
        "time_flow_start": "2023-11-14T22:13:20.123Z", "time_flow_end": "2023-11-14T22:13:22.623Z",
        "interface": "eth0", "if_index": 2, "direction": "egress",
        "src_mac": "02:00:00:00:00:01", "dst_mac": "0a:bb:cc:dd:ee:ff", "eth_protocol": 2048,
        "src_addr": "10.1.2.3", "dst_addr": "192.168.100.200", "src_port": 43210, "dst_port": 443,
        "protocol": 6, "icmp_type": 0, "icmp_code": 0, "vlan_id": 100, "packets": 12, "bytes": 3456,
        "tcp_flags": 0x11b, "dscp": 46, "sampling": 0, "agent_ip": "10.0.0.5", "duplicate": False,
    }
    assert (icmp6["src_addr"], icmp6["dst_addr"]) == ("2001:db8::1", "fe80::1:0:0:2")
    assert (icmp6["interface"], icmp6["direction"], icmp6["duplicate"]) == ('veth-ü"x', "ingress", True)
    assert (icmp6["protocol"], icmp6["icmp_type"], icmp6["sampling"]) == (58, 128, 50)
    assert (arp["src_addr"], arp["dst_addr"], arp["eth_protocol"], arp["interface"]) == (None, None, 0x0806, "")


IPV6_SHAPES = [
    "::", "::1", "1::", "1::2", "0:1::", "::1:0", "1:0:0:2::", "1::2:0:0:3", "1:0:1:0:1:0:1:0",
    "1:0:0:2:0:0:0:3", "0:0:1:0:0:1:0:0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8:0:0:1:0:0:1",
    "::ffff:0:1", "::1.2.3.4", "64:ff9b::a00:1", "fe80::abcd:ef01:2345:6789", "0:0:0:0:0:0:0:1", "1:2:3:4:5:6:7:0",
]


def random_batch(rng, n, names=None, agent_ip="192.0.2.1"):
    """n rows of random values, with the extremes every field can take."""
    flows = np.zeros(n, dtype=FLOW_EXPORT)
    for name in FLOW_EXPORT.names:
        column = flows[name]
        info = np.iinfo(column.dtype)
        values = rng.integers(0, int(info.max), column.shape, dtype=column.dtype, endpoint=True)
        # Small values and the extremes are the interesting ones for text widths.
        small = rng.integers(0, 10 ** rng.integers(1, 6, column.shape), dtype=np.int64)
        pick = rng.integers(0, 4, column.shape)
        column[...] = np.where(pick == 1, small.astype(column.dtype), values)
        column[pick == 3] = info.max
        column[(pick == 2) & (rng.random(column.shape) < 0.3)] = 0
    kinds = rng.integers(0, 4, n)
    flows["eth_protocol"] = np.where(kinds == 0, 0x0800,
                                     np.where(kinds == 1, 0x86DD, np.where(kinds == 2, 0x0806, flows["eth_protocol"])))
    mapped = rng.random(n) < 0.5
    for side in ("src_ip", "dst_ip"):
        flows[side][mapped, :10] = 0
        flows[side][mapped, 10:12] = 0xFF
        shaped = rng.random(n) < 0.4
        for i in np.flatnonzero(shaped & ~mapped):
            flows[side][i] = ip16(IPV6_SHAPES[rng.integers(len(IPV6_SHAPES))])
    # Times: realistic, pre-1970, the int64 extremes.
    ns = rng.integers(-(2 ** 63), 2 ** 63 - 1, n, dtype=np.int64)
    ns = np.where(rng.random(n) < 0.6, T0_NS + rng.integers(0, 10**12, n), ns)
    flows["time_flow_start_ns"] = ns
    flows["time_flow_end_ns"] = np.where(rng.random(n) < 0.5, ns, -ns - 1)
    flows["time_flow_start_ns"][:2] = [-(2 ** 63), 2 ** 63 - 1][:n]
    flows["if_index"] = np.where(rng.random(n) < 0.8, rng.integers(0, 12, n), flows["if_index"])
    return FlowBatch(flows, names if names is not None else {1: "lo", 2: "eth0", 3: "br-ü", 11: 'q"\\\n'}, agent_ip)


@pytest.mark.parametrize("seed", range(6))
def test_random_batches_equal_one_orjson_dict_per_flow(seed):
    rng = np.random.default_rng(seed)
    batch = random_batch(rng, int(rng.integers(1, 3000)), agent_ip=["192.0.2.1", "2001:db8::9", ""][seed % 3])
    assert bytes(encode_lines(batch)) == reference_lines(batch)


@pytest.mark.parametrize("seed", range(3))
def test_feature_fields_equal_one_orjson_dict_per_flow(seed):
    # GIVEN random rows, some dropped with reasons the batch names, some with reasons it does not know
    rng = np.random.default_rng(100 + seed)
    batch = random_batch(rng, int(rng.integers(1, 2000)))
    flows = batch.flows
    flows["drop_reason"] = rng.integers(0, 8, len(flows))
    flows["drop_tcp_state"] = np.where(rng.random(len(flows)) < 0.5, rng.integers(0, 14, len(flows)), 255)
    flows["drop_packets"][rng.random(len(flows)) < 0.4] = 0
    # and DNS: names of every length with bytes JSON escapes, a few flows without DNS, some unanswered
    flows["dns_flags"] = np.where(rng.random(len(flows)) < 0.2, 0, flows["dns_flags"] & 3)
    names = [b"", b"a.test", b"x" * 64, b'q"\\\x01.test', b"www.example.test"]
    for i, pick in enumerate(rng.integers(0, len(names), len(flows))):
        flows["dns_name"][i] = np.frombuffer(names[pick].ljust(64, b"\0"), np.uint8)
    flows["rtt_ns"][rng.random(len(flows)) < 0.3] = 0
    features = ("drops", "rtt", "dns")[seed % 3:] if seed % 3 else ("drops", "rtt", "dns")
    batch.enrichment = Enrichment(features, {2: "NOT_SPECIFIED", 3: "NO_SOCKET", 12: "NETFILTER_DROP"})
    # THEN the lines carry the features' fields after the others, as the reference builds them
    assert bytes(encode_lines(batch)) == reference_lines(batch)
    assert list(orjson.loads(bytes(encode_lines(batch)).splitlines()[0])) == list(fields_of(features))


def test_a_reused_encoder_follows_changes_of_layout_and_size():
    # The encoder keeps chunk buffers with their constant text between calls: a batch with other
    # widths, fewer or more rows, or another agent IP must not see the previous one's bytes.
    rng = np.random.default_rng(99)
    encoder = JsonLinesEncoder()
    for n, agent_ip in ((500, "10.0.0.1"), (50, "10.0.0.1"), (2000, "2001:db8::77"), (1, "x"), (500, "10.0.0.1")):
        batch = random_batch(rng, n, agent_ip=agent_ip)
        assert bytes(encoder.encode(batch)) == reference_lines(batch)


@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_rows_in_blocks_of_any_size(block_rows):
    # Rows are filled and scattered block by block; IPv6 pieces exist on some rows only, so a
    # block may hold none, some or all of them.
    batch = random_batch(np.random.default_rng(block_rows), 1000)
    assert bytes(JsonLinesEncoder(block_rows=block_rows).encode(batch)) == reference_lines(batch)


def test_uniform_batches_where_every_part_has_one_width():
    # One width per column is the case where parts fuse into few wide chunks.
    rows = np.concatenate([flow(time_flow_start_ns=T0_NS, time_flow_end_ns=T0_NS + 1, if_index=3,
                                eth_protocol=0x0800, src_ip="10.10.10.10", dst_ip="10.10.10.11",
                                src_port=1000 + i, dst_port=2000, protocol=17, packets=9, bytes=900)
                           for i in range(10)])
    batch = FlowBatch(rows, {3: "eth3"}, "10.0.0.1")
    assert bytes(encode_lines(batch)) == reference_lines(batch)


def test_empty_batch_encodes_to_nothing():
    assert bytes(encode_lines(FlowBatch(np.zeros(0, dtype=FLOW_EXPORT)))) == b""


def test_iso_times_across_many_days_and_the_calendar_edges():
    days = [datetime.datetime(y, m, d, tzinfo=datetime.UTC) for y, m, d in
            ((1677, 9, 22), (1900, 2, 28), (1969, 12, 31), (1970, 1, 1), (2000, 2, 29), (2100, 3, 1), (2262, 4, 11))]
    ns = [int(d.timestamp()) * 10**9 + 999_000_000 for d in days]
    rows = np.concatenate([flow(time_flow_start_ns=t, time_flow_end_ns=t) for t in ns])
    batch = FlowBatch(rows)
    assert bytes(encode_lines(batch)) == reference_lines(batch)
    assert orjson.loads(bytes(encode_lines(batch)).splitlines()[4])["time_flow_start"] == "2000-02-29T00:00:00.999Z"
