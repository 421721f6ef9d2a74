"""IPFIX encoder, what is IPFIX's own: the header, epoch-millisecond times, sequence numbers counting records.
What it shares with NetFlow v9 (every other element, MTU, template refresh, UDP): tests/test_template_export.py."""
import numpy as np

from flowcollect.export.ipfix import IpfixEncoder
from flowcollect.records.batch import FlowBatch
from tests.fakes import FakeClock
from tests.flowrows import flow_row
from tests.ipfix_decode import decode_messages, number

T0_NS = 1_700_000_000_123_456_789
NOW_NS = 1_700_000_004_750_000_000


def flow(**fields):
    return flow_row(time_flow_start_ns=T0_NS, time_flow_end_ns=T0_NS + 2_000_000_000, **fields)


def batch(*rows):
    return FlowBatch(np.concatenate(rows), {}, "10.0.0.1")


def test_times_are_epoch_milliseconds_and_the_export_time_seconds():
    encoder = IpfixEncoder(domain=3, clock=FakeClock(NOW_NS).seconds)
    messages = encoder.encode(batch(flow(eth_protocol=0x0800, protocol=6), flow(eth_protocol=0x0806)))
    decoded = decode_messages(messages)
    assert {header["export_time"] for header, _ in decoded} == {1_700_000_004}
    assert {header["domain"] for header, _ in decoded} == {3}
    records = [fields for _, records in decoded for _, fields in records]
    assert [(number(r[152]), number(r[153])) for r in records] == [(1_700_000_000_123, 1_700_000_002_123)] * 2
    assert all(22 not in r and 21 not in r for r in records)


def test_sequence_numbers_count_data_records_of_the_domain():
    encoder = IpfixEncoder(domain=7, clock=FakeClock(NOW_NS).seconds)
    rows = [flow(eth_protocol=0x0800, src_ip="10.0.0.1", dst_ip="10.0.0.2", dst_port=p, protocol=17)
            for p in range(100)]
    templates = {}
    first = decode_messages(encoder.encode(batch(*rows)), templates)
    second = decode_messages(encoder.encode(batch(*rows[:3])), templates)
    # Each message carries the count of data records sent before it in its domain.
    expected = 0
    for header, records in first + second:
        assert header["domain"] == 7
        assert header["sequence"] == expected
        expected += len(records)
    assert expected == 103 and encoder.sequence == 103
