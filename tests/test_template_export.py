"""What the IPFIX and NetFlow v9 encoders share (export/template_export.py), checked for both: every
common element decoded back, MTU packing, template refresh, and the UDP output's loss counting.
The protocols' own parts (headers, times, sequence numbers): tests/test_ipfix.py, tests/test_netflow9.py."""
import ipaddress
import socket
from dataclasses import dataclass

import numpy as np
import pytest

from flowcollect.export.ipfix import IpfixEncoder
from flowcollect.export.netflow9 import NetflowV9Encoder
from flowcollect.export.template_export import template_kinds
from flowcollect.export.udp_sink import UdpSink
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import FLOW_EXPORT
from tests.fakes import FakeClock
from tests.flowrows import flow_row
from tests.ipfix_decode import decode_messages, decode_v9_messages, number

T0_NS = 1_700_000_000_123_456_789
NOW_NS = 1_700_000_004_250_000_000


@dataclass(frozen=True)
class Protocol:
    name: str
    encoder: type
    decode: object
    header_size: int
    template_set_id: int
    alignment: int
    sampling: int  # the sampling element's id
    icmp_v6: int
    smallest_mtu: int
    extra: tuple = ()

    def make(self, **kwargs):
        return self.encoder(**{"clock": FakeClock(NOW_NS).seconds, **dict(self.extra), **kwargs})

    def records(self, messages):
        return [record for _, records in self.decode(messages) for record in records]


IPFIX = Protocol("ipfix", IpfixEncoder, decode_messages, 16, 2, 1, 305, 139, 118)
NETFLOW9 = Protocol("netflow9", NetflowV9Encoder, decode_v9_messages, 20, 0, 4, 34, 32, 116,
                    (("boot_ms", 1_699_990_000_000),))
both = pytest.mark.parametrize("protocol", [IPFIX, NETFLOW9], ids=lambda p: p.name)


def flow(**fields):
    return flow_row(**{"time_flow_start_ns": T0_NS, "time_flow_end_ns": T0_NS + 2_000_000_000, **fields})


def batch(*rows):
    return FlowBatch(np.concatenate(rows), {}, "10.0.0.1")


@both
def test_every_common_element_of_ipv4_ipv6_icmp_and_non_ip_flows(protocol):
    # GIVEN one flow of each kind
    tcp4 = flow(eth_protocol=0x0800, src_ip="10.1.2.3", dst_ip="192.0.2.200", src_port=43210, dst_port=443,
                protocol=6, tcp_flags=0x1B | 0x100, dscp=46, packets=12, bytes=3456, if_index=7, direction=1,
                src_mac="02:00:00:00:00:01", dst_mac="0a:bb:cc:dd:ee:ff", vlan_id=100, sampling=0)
    icmp4 = flow(eth_protocol=0x0800, src_ip="10.0.0.1", dst_ip="10.0.0.2", protocol=1, icmp_type=8, icmp_code=3,
                 packets=1, bytes=98, if_index=3, direction=0, sampling=50)
    udp6 = flow(eth_protocol=0x86DD, src_ip="2001:db8::1", dst_ip="fe80::2", src_port=5353, dst_port=53,
                protocol=17, packets=2, bytes=200, if_index=4)
    icmp6 = flow(eth_protocol=0x86DD, src_ip="::1", dst_ip="::2", protocol=58, icmp_type=128, icmp_code=1,
                 packets=1, bytes=118)
    arp = flow(eth_protocol=0x0806, src_mac="02:00:00:00:00:09", packets=3, bytes=180, if_index=2)

    # WHEN they are encoded
    records = protocol.records(protocol.make().encode(batch(tcp4, icmp4, udp6, icmp6, arp)))

    # THEN each comes back under its template, with the elements set as documented (docs/records.md)
    by_template = dict(records)
    assert sorted(by_template) == [256, 257, 258, 259, 260]
    r = by_template[256]
    assert ipaddress.IPv4Address(r[8]) == ipaddress.IPv4Address("10.1.2.3")
    assert ipaddress.IPv4Address(r[12]) == ipaddress.IPv4Address("192.0.2.200")
    assert (number(r[7]), number(r[11]), number(r[4])) == (43210, 443, 6)
    assert (number(r[1]), number(r[2])) == (3456, 12)
    assert (number(r[61]), number(r[10]), number(r[14])) == (1, 0, 7)  # egress: egressInterface
    assert (r[56].hex(":"), r[80].hex(":"), number(r[58])) == ("02:00:00:00:00:01", "0a:bb:cc:dd:ee:ff", 100)
    assert r[6] == b"\x1b"  # one byte (IPFIX: reduced size), without flowcollect's synthetic bits
    assert number(r[5]) == 46 << 2
    assert number(r[protocol.sampling]) == 1  # sampling 0: every packet
    r = by_template[257]
    assert number(r[32]) == (8 << 8) | 3 and 7 not in r and 11 not in r
    assert (number(r[10]), number(r[14]), number(r[61]), number(r[protocol.sampling])) == (3, 0, 0, 50)
    r = by_template[258]
    assert ipaddress.IPv6Address(r[27]) == ipaddress.IPv6Address("2001:db8::1")
    assert ipaddress.IPv6Address(r[28]) == ipaddress.IPv6Address("fe80::2")
    assert (number(r[7]), number(r[11]), number(r[4])) == (5353, 53, 17)
    r = by_template[259]
    assert number(r[protocol.icmp_v6]) == (128 << 8) | 1 and number(r[4]) == 58
    r = by_template[260]
    assert number(r[256]) == 0x0806 and r[56].hex(":") == "02:00:00:00:00:09" and 8 not in r and 27 not in r
    assert (number(r[1]), number(r[2])) == (180, 3)


@both
def test_messages_stay_within_the_mtu_and_lose_no_record(protocol):
    rng = np.random.default_rng(1)
    rows = np.zeros(5000, dtype=FLOW_EXPORT)
    rows["eth_protocol"] = rng.choice([0x0800, 0x86DD, 0x0806], 5000)
    rows["protocol"] = rng.choice([6, 17, 1, 58], 5000)
    rows["packets"] = np.arange(5000)
    per_kind = np.bincount(template_kinds(rows), minlength=5)
    for mtu in (protocol.smallest_mtu, 203, 576, 1400, 9000):
        encoder = protocol.make(mtu=mtu)
        messages = encoder.encode(FlowBatch(rows))
        assert max(len(m) for m in messages) <= mtu
        records = protocol.records(messages)  # the reader checks every set's length and padding
        assert sorted(number(fields[2]) for _, fields in records) == list(range(5000))
        # Full use of the space: only the last message of each template may be short.
        room = (mtu - protocol.header_size) // protocol.alignment * protocol.alignment - 4
        data = sum(-(-int(n) // (room // t.record_length)) for t, n in zip(encoder.templates, per_kind, strict=True))
        assert len(messages) == len(encoder._template_sets) + data


@both
def test_an_mtu_too_small_for_one_record_is_refused_and_the_smallest_works(protocol):
    with pytest.raises(ValueError, match=f"message size 100: must be from {protocol.smallest_mtu} to 65535"):
        protocol.make(mtu=100)
    messages = protocol.make(mtu=protocol.smallest_mtu).encode(batch(flow(eth_protocol=0x86DD, protocol=6)))
    assert max(len(m) for m in messages) <= protocol.smallest_mtu and len(protocol.records(messages)) == 1


@both
def test_templates_first_then_refreshed_by_time_and_by_message_count(protocol):
    clock = FakeClock(NOW_NS)
    encoder = protocol.make(template_refresh_seconds=60, template_refresh_messages=3, clock=clock.seconds)
    one = batch(flow(eth_protocol=0x0800, protocol=6))

    def starts_with_templates(messages):
        first_set = messages[0][protocol.header_size:protocol.header_size + 2]
        return int.from_bytes(first_set, "big") == protocol.template_set_id

    assert starts_with_templates(encoder.encode(one))           # templates first, then 1 data message
    assert not starts_with_templates(encoder.encode(one))       # 2 data messages since the templates
    assert not starts_with_templates(encoder.encode(one))       # 3
    assert starts_with_templates(encoder.encode(one))           # 3 messages since: refresh
    clock.advance(59)
    assert not starts_with_templates(encoder.encode(one))
    clock.advance(1)
    assert starts_with_templates(encoder.encode(one))           # 60 s since: refresh


@both
def test_udp_output_sends_every_message_and_counts_refused_sends(protocol):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    port = receiver.getsockname()[1]
    out = UdpSink(f"127.0.0.1:{port}", protocol.make())
    assert out.name == f"{protocol.name}:127.0.0.1:{port}"
    rows = [flow(eth_protocol=0x0800, src_ip="127.0.0.1", dst_ip="127.0.0.2", dst_port=p, protocol=6, packets=p + 1)
            for p in range(40)]
    assert out.write(batch(*rows))
    datagrams = [receiver.recv(65535) for _ in range(out.messages)]
    assert sorted(number(f[11]) for _, f in protocol.records(datagrams)) == list(range(40))
    assert (out.tally.exported.flows, out.tally.exported.packets, out.errors) == (40, 820, 0)  # 1 + ... + 40
    # GIVEN the collector is gone: the kernel answers "port unreachable" to a connected socket
    receiver.close()
    written = 0
    for _ in range(5):  # the first send may go out before the ICMP error comes back
        written += 1
        if not out.write(batch(*rows[:1])):
            break
    assert out.errors == 1 and out.tally.lost["send_failed"].flows == 1  # the flow of the datagram refused
    assert out.tally.lost["send_failed"].packets == 1
    assert out.tally.exported.flows + out.tally.lost_total().flows == 40 + written
    assert out.tally.exported.packets + out.tally.lost_total().packets == 820 + written
    out.close()
