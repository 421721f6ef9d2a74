"""IPFIX and NetFlow v9 as standard collectors read them: nfdump's nfcapd and pmacct's nfacctd on
loopback receive our messages for known IPv4 and IPv6 flows, and must show the flows, packets,
bytes, addresses, ports, protocol and TCP flags that were encoded, and their times."""
import ipaddress

import pytest

from flowcollect.export.ipfix import IpfixEncoder
from flowcollect.export.netflow9 import NetflowV9Encoder
from flowcollect.export.udp_sink import UdpSink
from tests.collectors import (
    KNOWN_DURATION_MS,
    KNOWN_FLOWS,
    KNOWN_START_NS,
    Nfacctd,
    Nfcapd,
    free_udp_port,
    known_batch,
    nfdump_flags,
    nfdump_ms,
)

PROTOCOLS = {"ipfix": IpfixEncoder, "netflow9": NetflowV9Encoder}


def send_known_flows(protocol, port):
    out = UdpSink(f"127.0.0.1:{port}", PROTOCOLS[protocol](domain=1))
    assert out.write(known_batch())
    out.close()


def text(address):
    return str(ipaddress.ip_address(address))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nfcapd_reads_the_flows_we_encode(protocol, tmp_path):
    # GIVEN our UDP output pointed at nfcapd on loopback
    with Nfcapd(tmp_path, free_udp_port()) as nfcapd:
        # WHEN a batch of known IPv4 and IPv6 flows is exported
        send_known_flows(protocol, nfcapd.port)
        rows = nfcapd.stop_and_read()
        info = nfcapd.nfdump("-I")
    # THEN nfdump lists exactly those flows with their counters, addresses, ports, protocol and flags
    got = sorted((text(r.get("src4_addr") or r["src6_addr"]), text(r.get("dst4_addr") or r["dst6_addr"]),
                  r.get("src_port", 0), r.get("dst_port", 0), r["proto"], r["in_packets"], r["in_bytes"],
                  r.get("tcp_flags", "")) for r in rows)
    expected = sorted((text(src), text(dst), sport, dport, proto, packets, nbytes,
                       nfdump_flags(flags) if proto != 58 else "")
                      for src, dst, sport, dport, proto, packets, nbytes, flags in KNOWN_FLOWS)
    assert got == expected
    # and what else a collector shows: ICMP type, egress interface, direction, MACs, times to the ms
    icmp = next(r for r in rows if r["proto"] == 58)
    assert (icmp["icmp_type"], icmp["icmp_code"]) == (128, 0)
    assert {(r["output_snmp"], r["input_snmp"], r["direction"]) for r in rows} == {(2, 0, 1)}
    assert {r["in_src_mac"] for r in rows} == {"02:00:00:00:00:01"}
    assert {r["in_dst_mac"] for r in rows} == {"0a:bb:cc:dd:ee:ff"}
    start_ms = KNOWN_START_NS // 1_000_000
    assert {(nfdump_ms(r["first"]), nfdump_ms(r["last"])) for r in rows} == {(start_ms, start_ms + KNOWN_DURATION_MS)}
    assert "Sequence failures: 0" in info


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nfacctd_reads_the_flows_we_encode_tcp_flags_included(protocol, tmp_path):
    # GIVEN our UDP output pointed at nfacctd on loopback
    with Nfacctd(tmp_path, free_udp_port()) as nfacctd:
        # WHEN a batch of known IPv4 and IPv6 flows is exported
        send_known_flows(protocol, nfacctd.port)
        rows = nfacctd.stop_and_read()
    # THEN nfacctd shows each with its counters and the TCP header's flags (flowcollect's own bits left out)
    got = sorted((text(r["ip_src"]), text(r["ip_dst"]), r["port_src"], r["port_dst"], r["ip_proto"],
                  r["packets"], r["bytes"], int(r["tcp_flags"])) for r in rows)
    names = {6: "tcp", 17: "udp", 58: "ipv6-icmp"}
    expected = sorted((text(src), text(dst), sport, dport, names[proto], packets, nbytes, flags & 0xFF)
                      for src, dst, sport, dport, proto, packets, nbytes, flags in KNOWN_FLOWS)
    assert got == expected
    assert {(r["iface_in"], r["iface_out"], r["mac_src"], r["mac_dst"]) for r in rows} == {
        (0, 2, "02:00:00:00:00:01", "0a:bb:cc:dd:ee:ff")}
    # nfacctd keeps v9 times to the second
    start_s = KNOWN_START_NS / 1e9
    assert all(abs(float(r["timestamp_start"]) - start_s) < 1 for r in rows), rows
    assert all(abs(float(r["timestamp_end"]) - start_s - KNOWN_DURATION_MS / 1000) < 1 for r in rows), rows
