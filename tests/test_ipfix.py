"""IPFIX encoder: messages decoded back field by field; sequence numbers, MTU, template refresh; UDP."""
import ipaddress
import socket

import numpy as np
import pytest

from flowcollect.export.ipfix import TEMPLATES, IpfixEncoder, IpfixSink
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import FLOW_EXPORT
from tests.flowrows import flow_row
from tests.ipfix_decode import decode_messages, number

T0_NS = 1_700_000_000_123_456_789


class FakeClock:
    def __init__(self, now=1_700_000_000.5):
        self.now = now

    def __call__(self):
        return self.now


def flow(**fields):
    return flow_row(time_flow_start_ns=T0_NS, time_flow_end_ns=T0_NS + 2_000_000_000, **fields)


def batch(*rows):
    return FlowBatch(np.concatenate(rows), {}, "10.0.0.1")


def all_records(messages):
    return [record for _, records in decode_messages(messages) for record in records]


def test_every_element_of_ipv4_ipv6_icmp_and_non_ip_flows():
    # GIVEN one flow of each kind
    tcp4 = flow(eth_protocol=0x0800, src_ip="10.1.2.3", dst_ip="192.0.2.200", src_port=43210, dst_port=443,
                protocol=6, tcp_flags=0x1B | 0x100, dscp=46, packets=12, bytes=3456, if_index=7, direction=1,
                src_mac="02:00:00:00:00:01", dst_mac="0a:bb:cc:dd:ee:ff", vlan_id=100, sampling=0)
    icmp4 = flow(eth_protocol=0x0800, src_ip="10.0.0.1", dst_ip="10.0.0.2", protocol=1, icmp_type=8, icmp_code=3,
                 packets=1, bytes=98, if_index=3, direction=0, sampling=50)
    udp6 = flow(eth_protocol=0x86DD, src_ip="2001:db8::1", dst_ip="fe80::2", src_port=5353, dst_port=53,
                protocol=17, packets=2, bytes=200, if_index=4)
    icmp6 = flow(eth_protocol=0x86DD, src_ip="::1", dst_ip="::2", protocol=58, icmp_type=128, packets=1, bytes=118)
    arp = flow(eth_protocol=0x0806, src_mac="02:00:00:00:00:09", packets=3, bytes=180, if_index=2)

    # WHEN they are encoded
    records = all_records(IpfixEncoder(clock=FakeClock()).encode(batch(tcp4, icmp4, udp6, icmp6, arp)))

    # THEN each comes back under its template, with the standard elements set as documented
    by_template = dict(records)
    assert sorted(by_template) == [256, 257, 258, 259, 260]
    r = by_template[256]
    assert ipaddress.IPv4Address(r[8]) == ipaddress.IPv4Address("10.1.2.3")
    assert ipaddress.IPv4Address(r[12]) == ipaddress.IPv4Address("192.0.2.200")
    assert (number(r[7]), number(r[11]), number(r[4])) == (43210, 443, 6)
    assert (number(r[1]), number(r[2])) == (3456, 12)
    assert (number(r[152]), number(r[153])) == (1_700_000_000_123, 1_700_000_002_123)
    assert (number(r[61]), number(r[10]), number(r[14])) == (1, 0, 7)  # egress: egressInterface
    assert (r[56].hex(":"), r[80].hex(":"), number(r[58])) == ("02:00:00:00:00:01", "0a:bb:cc:dd:ee:ff", 100)
    assert number(r[6]) == 0x1B  # synthetic flowcollect bits stay out of tcpControlBits
    assert number(r[5]) == 46 << 2
    assert number(r[305]) == 1  # sampling 0: every packet
    r = by_template[257]
    assert number(r[32]) == (8 << 8) | 3 and 7 not in r and 11 not in r
    assert (number(r[10]), number(r[14]), number(r[61]), number(r[305])) == (3, 0, 0, 50)
    r = by_template[258]
    assert ipaddress.IPv6Address(r[27]) == ipaddress.IPv6Address("2001:db8::1")
    assert ipaddress.IPv6Address(r[28]) == ipaddress.IPv6Address("fe80::2")
    assert (number(r[7]), number(r[11]), number(r[4])) == (5353, 53, 17)
    r = by_template[259]
    assert number(r[139]) == 128 << 8 and number(r[4]) == 58
    r = by_template[260]
    assert number(r[256]) == 0x0806 and r[56].hex(":") == "02:00:00:00:00:09" and 8 not in r and 27 not in r
    assert (number(r[1]), number(r[2])) == (180, 3)


def test_sequence_numbers_count_data_records_of_the_domain():
    encoder = IpfixEncoder(observation_domain=7, clock=FakeClock())
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


def test_messages_stay_within_the_mtu_and_lose_no_record():
    rng = np.random.default_rng(1)
    rows = np.zeros(5000, dtype=FLOW_EXPORT)
    rows["eth_protocol"] = rng.choice([0x0800, 0x86DD, 0x0806], 5000)
    rows["protocol"] = rng.choice([6, 17, 1, 58], 5000)
    rows["packets"] = np.arange(5000)
    for mtu in (200, 576, 1400, 9000):
        messages = IpfixEncoder(mtu=mtu, clock=FakeClock()).encode(FlowBatch(rows))
        assert max(len(m) for m in messages) <= mtu
        records = all_records(messages)
        assert sorted(number(fields[2]) for _, fields in records) == list(range(5000))
        # Full use of the space: only the last message of each template may be short.
        assert len(messages) <= len(encoder_templates(mtu)) + sum(-(-int(n) // ((mtu - 20) // t.record_length))
                                        for t, n in zip(TEMPLATES, np.bincount(_kinds(rows), minlength=5),
                                                        strict=True))


def encoder_templates(mtu):
    return IpfixEncoder(mtu=mtu)._template_sets


def _kinds(rows):
    from flowcollect.export.ipfix import template_kinds
    return template_kinds(rows)


def test_templates_first_then_refreshed_by_time_and_by_message_count():
    clock = FakeClock()
    encoder = IpfixEncoder(template_refresh_seconds=60, template_refresh_messages=3, clock=clock)
    one = batch(flow(eth_protocol=0x0800, protocol=6))

    def has_templates(messages):
        return any(struct_id == 2 for struct_id in _set_ids(messages[0]))

    assert has_templates(encoder.encode(one))           # templates first, then 1 data message
    assert not has_templates(encoder.encode(one))       # 2 data messages since the templates
    assert not has_templates(encoder.encode(one))       # 3
    assert has_templates(encoder.encode(one))           # 3 messages since: refresh
    clock.now += 59
    assert not has_templates(encoder.encode(one))
    clock.now += 1
    assert has_templates(encoder.encode(one))           # 60 s since: refresh


def _set_ids(message):
    offset, ids = 16, []
    while offset < len(message):
        set_id = int.from_bytes(message[offset:offset + 2], "big")
        length = int.from_bytes(message[offset + 2:offset + 4], "big")
        ids.append(set_id)
        offset += length
    return ids


def test_an_mtu_too_small_for_one_record_is_refused():
    with pytest.raises(ValueError, match="IPFIX message size"):
        IpfixEncoder(mtu=60)


def test_udp_output_sends_every_message_and_counts_refused_sends():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    port = receiver.getsockname()[1]
    out = IpfixSink(f"127.0.0.1:{port}", encoder=IpfixEncoder(clock=FakeClock()))
    rows = [flow(eth_protocol=0x0800, src_ip="127.0.0.1", dst_ip="127.0.0.2", dst_port=p, protocol=6)
            for p in range(40)]
    assert out.write(batch(*rows))
    datagrams = [receiver.recv(65535) for _ in range(out.messages)]
    assert sorted(number(f[11]) for _, f in all_records(datagrams)) == list(range(40))
    assert (out.tally.exported.flows, out.errors) == (40, 0)
    # GIVEN the collector is gone: the kernel answers "port unreachable" to a connected socket
    receiver.close()
    sent = 0
    for _ in range(5):  # the first send may go out before the ICMP error comes back
        if not out.write(batch(*rows[:1])):
            break
        sent += 1
    assert out.errors >= 1 and out.tally.exported.flows == 40 + sent
    assert out.tally.lost["send_failed"].flows == 1  # the flow of the datagram refused
    out.close()
