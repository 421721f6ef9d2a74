"""The kernel programs on real traffic: every packet counted into the right flow.

Each test sends a known number of packets between two namespaces joined by a
veth pair, with the programs attached on both ends, and asserts the exact
packet and byte totals of the flows it sent, both directions, with their keys.
Byte counts are whole frames as the TC hook sees them (skb->len): on receive,
an 802.1Q/802.1ad outer tag has already been moved out of the frame.
"""
import os
import socket

import pytest

from bench.harness import frames
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.flow_kernel import FlowKernel
from tests.flowtools import attach, delivered, matching, only_flow, totals

INGRESS, EGRESS = lib.FC_DIRECTION_INGRESS, lib.FC_DIRECTION_EGRESS
IP_MTU_DISCOVER, IP_PMTUDISC_DONT = 10, 0  # <linux/in.h>; not exported by the socket module
ETH_HDR, IPV4_HDR, IPV6_HDR, UDP_HDR, TCP_HDR = 14, 20, 40, 8, 20

pytestmark = pytest.mark.kernel


@pytest.fixture(autouse=True)
def pin_to_one_cpu():
    """Frames sent by this thread, and by trafgen --cpus 1, queue on CPU 0 (see flowtools.delivered)."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, allowed)


@pytest.fixture
def kernel():
    with FlowKernel(4096) as k:
        yield k


def drain(kernel, a, b):
    delivered(a, b)
    batch, _ = kernel.swap_and_drain()
    return batch.copy()


def assert_seen_both_ends(batch, sender, receiver, packets, tx_bytes, rx_bytes=None, **key):
    """The flow appears once as egress on the sender and once as ingress on the receiver."""
    rx_bytes = tx_bytes if rx_bytes is None else rx_bytes
    out = only_flow(batch, if_index=sender.ifindex, direction=EGRESS, **key)
    into = only_flow(batch, if_index=receiver.ifindex, direction=INGRESS, **key)
    assert (int(out["packets"]), int(out["bytes"])) == (packets, tx_bytes)
    assert (int(into["packets"]), int(into["bytes"])) == (packets, rx_bytes)
    assert 0 < out["first_seen_ns"] <= out["last_seen_ns"]
    return out, into


def test_udp_both_directions_exact_with_full_key(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a, b)
    server = b.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((b.ipv4, 5001))
    client = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((a.ipv4, 4001))
    for _ in range(25):
        client.sendto(b"q" * 100, (b.ipv4, 5001))
    for _ in range(7):
        server.sendto(b"r" * 300, (a.ipv4, 4001))
    batch = drain(kernel, a, b)

    request = dict(src_ip=a.ipv4, dst_ip=b.ipv4, src_port=4001, dst_port=5001, protocol=17)
    out, into = assert_seen_both_ends(batch, a, b, 25, 25 * (ETH_HDR + IPV4_HDR + UDP_HDR + 100), **request)
    for row in (out, into):
        assert bytes(row["src_mac"]) == a.mac_bytes and bytes(row["dst_mac"]) == b.mac_bytes
        assert row["eth_protocol"] == 0x0800 and row["vlan_id"] == 0 and row["tcp_flags"] == 0
    reply = dict(src_ip=b.ipv4, dst_ip=a.ipv4, src_port=5001, dst_port=4001, protocol=17)
    assert_seen_both_ends(batch, b, a, 7, 7 * (ETH_HDR + IPV4_HDR + UDP_HDR + 300), **reply)


def test_tcp_flags_or_ed_including_ack_and_synthetic_bits(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a, b)
    sender = frames.FrameSender(a)
    segments = [
        (0x02, b""),  # SYN
        (0x12, b""),  # SYN|ACK
        (0x10, b""),  # ACK
        (0x18, b"hello"),  # PSH|ACK
        (0x11, b""),  # FIN|ACK
    ]
    sent_bytes = 0
    for flags, payload in segments:
        seg = frames.tcp(a.ipv4, b.ipv4, 40000, 80, flags, payload)
        frame = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP, frames.ipv4(a.ipv4, b.ipv4, frames.TCP, seg))
        sender.send(frame)
        sent_bytes += len(frame)
    batch = drain(kernel, a, b)
    key = dict(src_ip=a.ipv4, dst_ip=b.ipv4, src_port=40000, dst_port=80, protocol=6)
    out, into = assert_seen_both_ends(batch, a, b, len(segments), sent_bytes, **key)
    expected = (lib.FC_TCP_SYN | lib.FC_TCP_ACK | lib.FC_TCP_PSH | lib.FC_TCP_FIN
                | lib.FC_TCP_SYN_ACK | lib.FC_TCP_FIN_ACK)
    assert int(out["tcp_flags"]) == expected and int(into["tcp_flags"]) == expected
    assert sent_bytes == 5 * (ETH_HDR + IPV4_HDR + TCP_HDR) + 5


def test_rst_ack_and_other_flags(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a)
    sender = frames.FrameSender(a)
    for flags in (0x14, 0x20 | 0x40 | 0x80):  # RST|ACK, then URG|ECE|CWR
        seg = frames.tcp(a.ipv4, b.ipv4, 40001, 81, flags)
        sender.send(frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP,
                                    frames.ipv4(a.ipv4, b.ipv4, frames.TCP, seg)))
    row = only_flow(drain(kernel, a, b), if_index=a.ifindex, src_port=40001, dst_port=81)
    assert int(row["tcp_flags"]) == (lib.FC_TCP_RST | lib.FC_TCP_ACK | lib.FC_TCP_RST_ACK
                                     | lib.FC_TCP_URG | lib.FC_TCP_ECE | lib.FC_TCP_CWR)
    assert int(row["packets"]) == 2


def test_real_tcp_connection_counts_every_segment(kernel, two_hosts):
    """A real connection over veth: TSO hands the hook super-packets; each counts as
    the frames it stands for. Without TCP timestamps every client segment but the
    SYN has a 20-byte header, so bytes - headers = payload, exactly."""
    a, b = two_hosts
    for link in (a, b):
        link.ns.exec("sysctl", "-qw", "net.ipv4.tcp_timestamps=0")
    attach(kernel, a, b)
    server = b.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((b.ipv4, 7000))
    server.listen(1)
    client = a.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.bind((a.ipv4, 47000))
    client.connect((b.ipv4, 7000))
    conn, _ = server.accept()
    payload = b"x" * 200_000
    client.sendall(payload)
    client.shutdown(socket.SHUT_WR)
    received = 0
    while chunk := conn.recv(65536):
        received += len(chunk)
    conn.close()
    client.close()
    server.close()
    assert received == len(payload)
    batch = drain(kernel, a, b)

    key = dict(src_ip=a.ipv4, dst_ip=b.ipv4, src_port=47000, dst_port=7000, protocol=6)
    syn_options = 12  # MSS, SACK-permitted, window scale
    for row in (only_flow(batch, if_index=a.ifindex, direction=EGRESS, **key),
                only_flow(batch, if_index=b.ifindex, direction=INGRESS, **key)):
        packets, nbytes = int(row["packets"]), int(row["bytes"])
        assert nbytes - packets * (ETH_HDR + IPV4_HDR + TCP_HDR) - syn_options == len(payload)
        assert packets >= len(payload) // 1460
        flags = int(row["tcp_flags"])
        assert flags & lib.FC_TCP_SYN and flags & lib.FC_TCP_ACK and flags & lib.FC_TCP_FIN
    back = only_flow(batch, if_index=a.ifindex, direction=INGRESS, src_port=7000, dst_port=47000)
    assert int(back["tcp_flags"]) & lib.FC_TCP_SYN_ACK


def test_icmp_echo_request_and_kernel_reply(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a, b)
    sock = a.ns.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    count = 9
    for _ in range(count):
        sock.sendto(frames.icmp(8, 0, b"p" * 56), (b.ipv4, 0))
    size = ETH_HDR + IPV4_HDR + 8 + 56
    batch = drain(kernel, a, b)
    request = dict(src_ip=a.ipv4, dst_ip=b.ipv4, protocol=1, icmp_type=8, icmp_code=0, src_port=0, dst_port=0)
    assert_seen_both_ends(batch, a, b, count, count * size, **request)
    reply = dict(src_ip=b.ipv4, dst_ip=a.ipv4, protocol=1, icmp_type=0, icmp_code=0)
    assert_seen_both_ends(batch, b, a, count, count * size, **reply)


def test_icmpv6_echo_request_and_kernel_reply(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a, b)
    sock = a.ns.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    count = 6
    for _ in range(count):
        sock.sendto(frames.icmpv6(a.ipv6, b.ipv6, 128, 0, b"p" * 32), (b.ipv6, 0))
    size = ETH_HDR + IPV6_HDR + 8 + 32
    batch = drain(kernel, a, b)
    request = dict(src_ip=a.ipv6, dst_ip=b.ipv6, protocol=58, icmp_type=128, icmp_code=0, eth_protocol=0x86DD)
    assert_seen_both_ends(batch, a, b, count, count * size, **request)
    reply = dict(src_ip=b.ipv6, dst_ip=a.ipv6, protocol=58, icmp_type=129, icmp_code=0)
    assert_seen_both_ends(batch, b, a, count, count * size, **reply)


def test_ipv6_extension_headers_are_walked_to_the_transport(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a, b)
    sender = frames.FrameSender(a)
    datagram = frames.udp(a.ipv6, b.ipv6, 6000, 6001, b"e" * 64)
    chain = frames.ipv6_ext(frames.IPV6_DSTOPTS) + frames.ipv6_ext(frames.UDP)
    frame = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IPV6,
                            frames.ipv6(a.ipv6, b.ipv6, frames.IPV6_HOP, chain + datagram, traffic_class=0x28 << 2))
    sender.send(frame, count=11)
    batch = drain(kernel, a, b)
    key = dict(src_ip=a.ipv6, dst_ip=b.ipv6, src_port=6000, dst_port=6001, protocol=17)
    out, _ = assert_seen_both_ends(batch, a, b, 11, 11 * len(frame), **key)
    assert int(out["dscp"]) == 0x28
    assert len(frame) == ETH_HDR + IPV6_HDR + 16 + UDP_HDR + 64


def test_ipv6_fragments_only_first_carries_ports(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a)
    sender = frames.FrameSender(a)
    datagram = frames.udp(a.ipv6, b.ipv6, 6100, 6101, b"f" * 120)
    first = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IPV6, frames.ipv6(
        a.ipv6, b.ipv6, frames.IPV6_FRAGMENT, frames.ipv6_fragment(frames.UDP, 0, True) + datagram[:64]))
    rest = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IPV6, frames.ipv6(
        a.ipv6, b.ipv6, frames.IPV6_FRAGMENT, frames.ipv6_fragment(frames.UDP, 64, False) + datagram[64:]))
    sender.send(first, 3)
    sender.send(rest, 3)
    batch = drain(kernel, a, b)
    head = only_flow(batch, if_index=a.ifindex, src_ip=a.ipv6, src_port=6100, dst_port=6101, protocol=17)
    tail = only_flow(batch, if_index=a.ifindex, src_ip=a.ipv6, src_port=0, dst_port=0, protocol=17)
    assert totals(head[None]) == (3, 3 * len(first))
    assert totals(tail[None]) == (3, 3 * len(rest))


@pytest.mark.parametrize("tags", [
    [(frames.ETH_P_8021Q, 42)],
    [(frames.ETH_P_8021AD, 100), (frames.ETH_P_8021Q, 200)],
], ids=["802.1Q", "802.1ad-QinQ"])
def test_vlan_tagged_frames(kernel, two_hosts, tags):
    a, b = two_hosts
    attach(kernel, a, b)
    sender = frames.FrameSender(a)
    datagram = frames.udp(a.ipv4, b.ipv4, 5100, 5101, b"v" * 80)
    frame = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP,
                            frames.ipv4(a.ipv4, b.ipv4, frames.UDP, datagram), vlans=tags)
    sender.send(frame, count=13)
    batch = drain(kernel, a, b)
    key = dict(src_ip=a.ipv4, dst_ip=b.ipv4, src_port=5100, dst_port=5101, protocol=17,
               eth_protocol=0x0800, vlan_id=tags[0][1])
    # The receiving device moves the outer tag out of the frame (skb->vlan_tci) before TC.
    assert_seen_both_ends(batch, a, b, 13, 13 * len(frame), rx_bytes=13 * (len(frame) - 4), **key)


def test_ipv4_options_honour_ihl(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a, b)
    sender = frames.FrameSender(a)
    options = bytes([7, 11, 4]) + b"\0" * 8 + b"\0"  # record route with two slots, EOL-padded to 12
    datagram = frames.udp(a.ipv4, b.ipv4, 5200, 5201, b"o" * 40)
    frame = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP,
                            frames.ipv4(a.ipv4, b.ipv4, frames.UDP, datagram, options=options, tos=0xB8))
    sender.send(frame, count=17)
    batch = drain(kernel, a, b)
    key = dict(src_ip=a.ipv4, dst_ip=b.ipv4, src_port=5200, dst_port=5201, protocol=17)
    out, into = assert_seen_both_ends(batch, a, b, 17, 17 * len(frame), **key)
    assert int(out["dscp"]) == 46 and int(into["dscp"]) == 46  # EF
    assert len(frame) == ETH_HDR + IPV4_HDR + 12 + UDP_HDR + 40


def test_fragmented_udp_ports_only_from_first_fragment(kernel, two_hosts):
    """The sending kernel fragments 3000-byte datagrams at MTU 1500: 1480 + 1480 + 48 bytes of IP payload."""
    a, b = two_hosts
    attach(kernel, a, b)
    client = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    client.bind((a.ipv4, 4300))
    datagrams = 5
    for _ in range(datagrams):
        client.sendto(b"F" * 3000, (b.ipv4, 4301))
    batch = drain(kernel, a, b)
    first = dict(src_ip=a.ipv4, dst_ip=b.ipv4, protocol=17, src_port=4300, dst_port=4301)
    later = dict(src_ip=a.ipv4, dst_ip=b.ipv4, protocol=17, src_port=0, dst_port=0)
    full = ETH_HDR + IPV4_HDR + 1480
    assert_seen_both_ends(batch, a, b, datagrams, datagrams * full, **first)
    assert_seen_both_ends(batch, a, b, 2 * datagrams, datagrams * (full + ETH_HDR + IPV4_HDR + 48), **later)


def test_sctp_ports(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a)
    sender = frames.FrameSender(a)
    frame = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP,
                            frames.ipv4(a.ipv4, b.ipv4, frames.SCTP, frames.sctp(3868, 3869, b"s" * 20)))
    sender.send(frame, count=4)
    row = only_flow(drain(kernel, a, b), if_index=a.ifindex, protocol=132, src_port=3868, dst_port=3869)
    assert totals(row[None]) == (4, 4 * len(frame))


def test_non_ip_frames_counted_by_ethertype(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a, b)
    sender = frames.FrameSender(a)
    arp = frames.ethernet(b.mac_bytes, a.mac_bytes, 0x0806, bytes(28))
    sender.send(arp, count=3)
    batch = drain(kernel, a, b)
    key = dict(eth_protocol=0x0806, src_mac=a.mac, dst_mac=b.mac, protocol=0)
    assert_seen_both_ends(batch, a, b, 3, 3 * len(arp), **key)


def test_truncated_header_is_counted_and_reported(kernel, two_hosts):
    a, b = two_hosts
    attach(kernel, a)
    sender = frames.FrameSender(a)
    runt = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP, b"\x45\x00\x00")
    sender.send(runt, count=2)
    batch = drain(kernel, a, b)
    row = only_flow(batch, if_index=a.ifindex, eth_protocol=0x0800, src_mac=a.mac, protocol=0)
    assert totals(row[None]) == (2, 2 * len(runt))
    assert kernel.counters()["parse_failed"] == 2


def test_direction_setting_selects_the_hook(two_hosts):
    a, b = two_hosts
    with FlowKernel(1024, direction="ingress") as kernel:
        attach(kernel, a, b)
        client = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(5):
            client.sendto(b"d", (b.ipv4, 9))
        batch = drain(kernel, a, b)
        key = dict(src_ip=a.ipv4, dst_ip=b.ipv4, dst_port=9)
        assert len(matching(batch, direction=EGRESS, **key)) == 0
        assert totals(matching(batch, direction=INGRESS, **key)) == (5, 5 * (ETH_HDR + IPV4_HDR + UDP_HDR + 1))
        assert b.ns.exec("tc", "filter", "show", "dev", b.name, "egress").stdout.strip() == ""


def test_sampling_reconciles_with_the_counters(two_hosts):
    a, b = two_hosts
    sent = 2000
    with FlowKernel(1024, sampling=10) as kernel:
        attach(kernel, a)
        client = a.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind((a.ipv4, 4400))
        for _ in range(sent):
            client.sendto(b"s", (b.ipv4, 4401))
        batch = drain(kernel, a, b)
        counted = matching(batch, if_index=a.ifindex, src_port=4400, dst_port=4401)
        counters = kernel.counters()
        packets, _ = totals(counted)
        assert counters["packets_seen"] == counters["sampled_out"] + int(batch["packets"].sum())
        assert 0 < packets < sent  # 1 in 10, give or take: about 200
        assert counters["packets_seen"] >= sent


def _udp4_frame(a, b):
    datagram = frames.udp(a.ipv4, b.ipv4, 5300, 5301, b"t" * 200)
    packet = frames.ipv4(a.ipv4, b.ipv4, frames.UDP, datagram)
    frame = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IP, packet)
    return (frame, dict(src_ip=a.ipv4, dst_ip=b.ipv4, src_port=5300, dst_port=5301, protocol=17))


def _ipv6_frame(options_len):
    """IPv6 with hop-by-hop and destination options (options_len bytes) before TCP."""
    def build(a, b):
        segment = frames.tcp(a.ipv6, b.ipv6, 5310, 5311, 0x18, b"x" * 100)
        chain = frames.ipv6_ext(frames.IPV6_DSTOPTS) + frames.ipv6_ext(frames.TCP, body_len=options_len - 2)
        frame = frames.ethernet(b.mac_bytes, a.mac_bytes, frames.ETH_P_IPV6,
                                frames.ipv6(a.ipv6, b.ipv6, frames.IPV6_HOP, chain + segment))
        return frame, dict(src_ip=a.ipv6, dst_ip=b.ipv6, src_port=5310, dst_port=5311, protocol=6)
    return build


@pytest.mark.parametrize("build", [_udp4_frame, _ipv6_frame(8), _ipv6_frame(96)],
                         ids=["ipv4-udp", "ipv6-ext-tcp-in-window", "ipv6-ext-tcp-past-window"])
def test_trafgen_frames_with_headers_outside_the_linear_area(kernel, two_hosts, tmp_path, build):
    """trafgen's TX ring puts all but the Ethernet header in page fragments: the
    programs copy the first 128 bytes once (bpf/flows.bpf.c frame_open) and read
    any header that ends past them with bpf_skb_load_bytes (the 96-byte options)."""
    a, b = two_hosts
    attach(kernel, a, b)
    frame, key = build(a, b)
    conf = tmp_path / "frame.cfg"
    conf.write_text("{ " + ", ".join(f"0x{byte:02x}" for byte in frame) + " }\n")
    count = 300
    # -q: through the qdisc path, so that the sender's egress hook runs too.
    a.ns.exec("trafgen", "--dev", a.name, "--conf", str(conf), "--num", str(count), "--cpus", "1",
              "-q", "--no-sock-mem", "--no-cpu-stats")
    batch = drain(kernel, a, b)
    out, _ = assert_seen_both_ends(batch, a, b, count, count * len(frame), **key)
    if key["protocol"] == 6:
        assert int(out["tcp_flags"]) & 0xFF == 0x18  # read from the TCP header, wherever it lay
