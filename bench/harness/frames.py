"""Hand-built Ethernet frames for kernel tests, sent through AF_PACKET.

Only what the tests need: Ethernet with optional 802.1Q/802.1ad tags, IPv4
with options and fragments, IPv6 with extension headers, TCP/UDP/SCTP/ICMP/
ICMPv6. Checksums are filled in so the receiving stack does not care.
"""
import ipaddress
import socket
import struct

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_ALL = 0x0003

TCP, UDP, SCTP, ICMP, ICMPV6 = 6, 17, 132, 1, 58
IPV6_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_DSTOPTS = 0, 43, 44, 60


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(dst_mac, src_mac, ethertype, payload, vlans=()):
    """vlans: outermost first, each (tpid, vlan_id)."""
    frame = dst_mac + src_mac
    for tpid, vid in vlans:
        frame += struct.pack("!HH", tpid, vid & 0x0FFF)
    return frame + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload, tos=0, options=b"", ident=1, frag_offset=0, more_fragments=False, total_len=None):
    if len(options) % 4:
        raise ValueError("IPv4 options must be padded to 4 bytes")
    ihl = 5 + len(options) // 4
    flags_frag = (0x2000 if more_fragments else 0) | (frag_offset // 8)
    length = total_len if total_len is not None else ihl * 4 + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, length, ident, flags_frag, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst)) + options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def ipv6(src, dst, next_header, payload, traffic_class=0):
    first = (6 << 28) | (traffic_class << 20)
    return struct.pack("!IHBB16s16s", first, len(payload), next_header, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + payload


def ipv6_ext(next_header, body_len=6):
    """A hop-by-hop / destination options / routing header of 8 bytes (PadN inside)."""
    assert (body_len + 2) % 8 == 0
    pad = b"\x01" + bytes([body_len - 2]) + b"\0" * (body_len - 2)
    return struct.pack("!BB", next_header, (body_len + 2) // 8 - 1) + pad


def ipv6_fragment(next_header, offset, more, ident=7):
    return struct.pack("!BBHI", next_header, 0, (offset & 0xFFF8) | int(more), ident)


def _pseudo_v4(src, dst, proto, length):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)


def _pseudo_v6(src, dst, proto, length):
    return ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + struct.pack("!IxxxB", length, proto)


def _pseudo(src, dst, proto, length):
    return (_pseudo_v6 if ":" in src else _pseudo_v4)(src, dst, proto, length)


def udp(src, dst, sport, dport, payload):
    length = 8 + len(payload)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = checksum(_pseudo(src, dst, UDP, length) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", csum) + seg[8:]


def tcp(src, dst, sport, dport, flags, payload=b"", seq=1, ack=0):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    csum = checksum(_pseudo(src, dst, TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def sctp(sport, dport, payload=b""):
    return struct.pack("!HHII", sport, dport, 1, 0) + payload  # CRC32c left 0: the receiver drops it, TC still counts


def icmp(type_, code, payload=b""):
    msg = struct.pack("!BBHHH", type_, code, 0, 1, 1) + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def icmpv6(src, dst, type_, code, payload=b""):
    msg = struct.pack("!BBHHH", type_, code, 0, 1, 1) + payload
    csum = checksum(_pseudo_v6(src, dst, ICMPV6, len(msg)) + msg)
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


class FrameSender:
    """An AF_PACKET socket bound to one interface of a test namespace."""

    def __init__(self, link):
        self.link = link
        self.sock = link.ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((link.name, 0))

    def send(self, frame, count=1):
        for _ in range(count):
            sent = self.sock.send(frame)
            assert sent == len(frame)

    def close(self):
        self.sock.close()


# new_flow_frame(): where its IPv4 source address starts (an untagged Ethernet header, then 12 bytes of IPv4).
NEW_FLOW_SRC_IP_OFFSET = 14 + 12


def new_flow_frame(payload=bytes(32)):
    """A 74-byte Ethernet/IPv4/UDP frame (a small DNS query's size) whose source address a bench rewrites at
    NEW_FLOW_SRC_IP_OFFSET to make a new flow of each (bench/baselines.c fcb_test_run_new_flows)."""
    src, dst = "10.0.0.1", "10.0.0.2"
    packet = ipv4(src, dst, UDP, udp(src, dst, 40000, 53, payload))
    return ethernet(bytes.fromhex("020000000002"), bytes.fromhex("020000000001"), ETH_P_IP, packet)
