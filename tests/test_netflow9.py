"""NetFlow v9 encoder, what is v9's own: the header, sysUptime times, sequence numbers counting packets,
its field types. What it shares with IPFIX (elements, MTU, template refresh, UDP): tests/test_template_export.py."""
import os
import re
import time

import numpy as np
import pytest

from flowcollect.export import ipfix
from flowcollect.export.netflow9 import TEMPLATES, NetflowV9Encoder, host_boot_ms
from flowcollect.records.batch import FlowBatch
from tests.fakes import FakeClock
from tests.flowrows import flow_row
from tests.ipfix_decode import decode_v9_messages, number

BOOT_MS = 1_699_990_000_000                # the host booted 10,000 s before
T0_NS = 1_700_000_000_123_456_789           # a flow's first packet
NOW_NS = 1_700_000_004_250_000_000          # the export


def encoder(**kwargs):
    return NetflowV9Encoder(**{"clock": FakeClock(NOW_NS).seconds, "boot_ms": BOOT_MS, **kwargs})


def flow(**fields):
    return flow_row(**{"time_flow_start_ns": T0_NS, "time_flow_end_ns": T0_NS + 2_000_000_000, **fields})


def batch(*rows):
    return FlowBatch(np.concatenate(rows), {}, "10.0.0.1")


def test_the_templates_are_ipfix_s_but_for_times_sampling_and_icmpv6():
    in_v9 = {152: 22, 153: 21, 305: 34, 139: 32}  # flowStart/EndMilliseconds, samplingPacketInterval, ICMPv6
    for v9, ipfix_template in zip(TEMPLATES, ipfix.TEMPLATES, strict=True):
        v9_ids = [e.id for e in v9.elements]
        assert v9.id == ipfix_template.id
        assert v9_ids == [in_v9.get(e.id, e.id) for e in ipfix_template.elements]
        assert max(set(v9_ids) - {256}) <= 80  # field types of v9 (ethernetType aside: IANA's, read by nfacctd)
    assert [t.record_length for t in TEMPLATES] == [66, 64, 90, 88, 53]


def test_header_times_give_each_flow_its_millisecond_back():
    # GIVEN flows that end within the second of the export
    rows = [flow(eth_protocol=0x0800, protocol=17, dst_port=p, time_flow_start_ns=T0_NS + p * 1_000_000,
                 time_flow_end_ns=NOW_NS - p * 1_000_000) for p in range(3)]
    # WHEN encoded at NOW_NS (a quarter past the second)
    (header, _), (data_header, records) = decode_v9_messages(encoder().encode(batch(*rows)))
    # THEN unix secs is the export instant rounded up, and sysUptime the same instant since the boot
    assert header["unix_secs"] == data_header["unix_secs"] == 1_700_000_005
    assert data_header["uptime"] == 1_700_000_005_000 - BOOT_MS
    boot = data_header["unix_secs"] * 1000 - data_header["uptime"]
    for p, (_, r) in enumerate(records):
        assert boot + number(r[22]) == T0_NS // 1_000_000 + p           # first packet, to the ms
        assert boot + number(r[21]) == NOW_NS // 1_000_000 - p          # last packet
        assert number(r[21]) <= data_header["uptime"]                   # never after the header's instant


def test_uptime_wraps_modulo_2_32_ms_like_a_router_s():
    # GIVEN a host up for 50 days (more than 2**32 ms)
    boot_ms = NOW_NS // 1_000_000 - 50 * 86_400_000
    messages = encoder(boot_ms=boot_ms).encode(batch(flow(eth_protocol=0x0800, protocol=17)))
    header, ((_, r),) = decode_v9_messages(messages)[-1]
    # THEN the flow's age (sysUptime - FIRST_SWITCHED, unsigned 32 bits) is still right
    age_ms = 1_700_000_005_000 - T0_NS // 1_000_000
    assert (header["uptime"] - number(r[22])) % 2**32 == age_ms
    assert header["uptime"] == (1_700_000_005_000 - boot_ms) % 2**32


def test_the_default_boot_is_the_origin_of_the_monotonic_clock():
    before = time.time_ns() // 1_000_000 - time.monotonic_ns() // 1_000_000
    assert abs(host_boot_ms() - before) <= 2
    assert NetflowV9Encoder().boot_ms == pytest.approx(before, abs=2)


def test_sequence_counts_export_packets_of_the_source_id_templates_included():
    one, two = encoder(domain=1), encoder(domain=2)
    rows = [flow(eth_protocol=0x0800, src_ip="10.0.0.1", dst_ip="10.0.0.2", dst_port=p, protocol=17)
            for p in range(30)]
    templates = {}
    first = decode_v9_messages(one.encode(batch(*rows)), templates)   # templates, 2 data packets (20 flows a packet)
    other = decode_v9_messages(two.encode(batch(*rows[:3])), templates)
    second = decode_v9_messages(one.encode(batch(*rows[:3])), templates)
    assert [h["sequence"] for h, _ in first + second] == [0, 1, 2, 3]
    assert [h["sequence"] for h, _ in other] == [0, 1]
    assert {h["source_id"] for h, _ in first + second} == {1} and {h["source_id"] for h, _ in other} == {2}
    assert [len(records) for _, records in first + second] == [0, 20, 10, 3]
    assert [h["count"] for h, _ in first] == [5, 20, 10]  # 5 template records, then data records
    assert one.sequence == 4


def test_sequence_wraps_at_2_32():
    v9 = encoder()
    v9.sequence = 2**32 - 1
    headers = [h for h, _ in decode_v9_messages(v9.encode(batch(flow(eth_protocol=0x0800, protocol=6))))]
    assert [h["sequence"] for h in headers] == [2**32 - 1, 0]


def test_docs_list_the_record_lengths_of_both_protocols():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "records.md")
    with open(path) as f:
        rows = [line.split("|")[1:-1] for line in f if re.match(r"^\| 2(5[6-9]|60) \| [^|]+ \| \d+ \| \d+ \|$", line)]
    documented = {int(cells[0]): (int(cells[2]), int(cells[3])) for cells in rows}
    assert documented == {v9.id: (ipfix_template.record_length, v9.record_length)
                          for ipfix_template, v9 in zip(ipfix.TEMPLATES, TEMPLATES, strict=True)}
