"""The real agent's IPFIX and NetFlow v9 on namespace traffic, read by nfcapd and nfacctd.

The collectors run on the loopback of the agent's namespace. TCP flags come
from a real connection (SYN, ACK, PSH and FIN, each way); packet and byte
counts from datagrams of known number and size, IPv4 and IPv6.
"""
import socket

import pytest

from bench.harness.agent import Agent, send_udp
from bench.harness.traffic import jsonl_records
from tests.collectors import Nfacctd, Nfcapd, nfdump_ms

pytestmark = pytest.mark.kernel
UDP4, UDP6 = 14 + 20 + 8, 14 + 40 + 8
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10
CLIENT_PORT, SERVER_PORT = 47100, 7100


def tcp_connection(client_end, server_end):
    """One TCP connection from client_end to server_end: data each way, closed by both (FIN each way)."""
    server = server_end.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((server_end.ipv4, SERVER_PORT))
    server.listen(1)
    client = client_end.ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.bind((client_end.ipv4, CLIENT_PORT))
    client.connect((server_end.ipv4, SERVER_PORT))
    conn, _ = server.accept()
    client.sendall(b"q" * 1000)
    client.shutdown(socket.SHUT_WR)
    assert read_all(conn) == 1000  # everything read: the close is a FIN, not a RST
    conn.sendall(b"r" * 500)
    conn.close()
    assert read_all(client) == 500
    client.close()
    server.close()


def read_all(sock):
    received = 0
    while chunk := sock.recv(65536):
        received += len(chunk)
    return received


def nfdump_flag_bits(text):
    return sum(0x80 >> i for i, char in enumerate(text) if char != ".")


def jsonl_totals(path, **key):
    """(packets, bytes, records) of the agent's own JSON records of a flow: what the collectors must show."""
    rows = [r for r in jsonl_records(path) if all(r[k] == v for k, v in key.items())]
    assert rows, f"no JSON record of {key}"
    return sum(r["packets"] for r in rows), sum(r["bytes"] for r in rows), rows


def test_nfacctd_and_nfcapd_show_the_tcp_flags_of_a_real_connection(host_between, tmp_path):
    a_end, host_a, _c_end, _host_c = host_between
    host = host_a.ns
    jsonl = tmp_path / "flows.jsonl"
    with Nfacctd(tmp_path, 47401, host) as nfacctd, Nfcapd(tmp_path, 47402, host) as nfcapd:
        # GIVEN the agent exporting IPFIX to both, and JSON lines for reference
        agent = Agent(host, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms",
                      "--output", f"ipfix:127.0.0.1:{nfacctd.port}", "--output", f"ipfix:127.0.0.1:{nfcapd.port}",
                      "--output", f"jsonl:{jsonl}")
        try:
            # WHEN a TCP connection from a to the host opens, carries data both ways and closes
            tcp_connection(a_end, host_a)
            code, _ = agent.stop()
        finally:
            agent.close()
        assert code == 0
        pmacct_rows, nfdump_rows = nfacctd.stop_and_read(), nfcapd.stop_and_read()

    both_ways = ((a_end, host_a, CLIENT_PORT, SERVER_PORT), (host_a, a_end, SERVER_PORT, CLIENT_PORT))
    for src, dst, sport, dport in both_ways:
        packets, nbytes, json_rows = jsonl_totals(jsonl, src_addr=src.ipv4, dst_addr=dst.ipv4, src_port=sport,
                                                  dst_port=dport, protocol=6)
        flags = 0
        for row in json_rows:
            flags |= row["tcp_flags"]
        assert flags & 0xFF == SYN | ACK | PSH | FIN  # what was sent, as the agent saw it
        # THEN nfacctd shows the TCP flags that were sent, and the agent's counters
        rows = [r for r in pmacct_rows if (r["ip_src"], r["ip_dst"], r["port_src"], r["port_dst"], r["ip_proto"])
                == (src.ipv4, dst.ipv4, sport, dport, "tcp")]
        shown = 0
        for row in rows:
            shown |= int(row["tcp_flags"])
        assert shown == SYN | ACK | PSH | FIN, rows
        assert (sum(r["packets"] for r in rows), sum(r["bytes"] for r in rows)) == (packets, nbytes)
        # and so does nfcapd
        rows = [r for r in nfdump_rows if (r.get("src4_addr"), r.get("dst4_addr"), r.get("src_port"),
                                           r.get("dst_port"), r["proto"]) == (src.ipv4, dst.ipv4, sport, dport, 6)]
        shown = 0
        for row in rows:
            shown |= nfdump_flag_bits(row["tcp_flags"])
        assert shown == SYN | ACK | PSH | FIN, rows
        assert (sum(r["in_packets"] for r in rows), sum(r["in_bytes"] for r in rows)) == (packets, nbytes)


@pytest.mark.parametrize("collector", [Nfcapd, Nfacctd], ids=["nfcapd", "nfacctd"])
def test_netflow9_per_flow_packets_and_bytes_are_those_sent(collector, host_between, tmp_path):
    a_end, host_a, _c_end, _host_c = host_between
    host = host_a.ns
    jsonl = tmp_path / "flows.jsonl"
    with collector(tmp_path, 47403, host) as daemon:
        # GIVEN the agent, with two workers (two source ids), exporting NetFlow v9
        agent = Agent(host, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms",
                      "--output", f"netflow9:127.0.0.1:{daemon.port}", "--output", f"jsonl:{jsonl}")
        try:
            # WHEN known IPv4 and IPv6 datagrams reach the host
            send_udp(a_end, host_a.ipv4, 4500, 5500, 33, 100)
            send_udp(a_end, host_a.ipv6, 4600, 5600, 21, 200)
            code, _ = agent.stop()
        finally:
            agent.close()
        assert code == 0
        rows = daemon.stop_and_read()
        info = daemon.nfdump("-I") if collector is Nfcapd else ""

    # THEN the collector shows each flow with exactly the packets and bytes sent
    sent = ((a_end.ipv4, host_a.ipv4, 4500, 5500, 33, 33 * (UDP4 + 100)),
            (a_end.ipv6, host_a.ipv6, 4600, 5600, 21, 21 * (UDP6 + 200)))
    for src, dst, sport, dport, packets, nbytes in sent:
        _, _, json_rows = jsonl_totals(jsonl, src_addr=src, src_port=sport, dst_port=dport)
        if collector is Nfcapd:
            flow = [r for r in rows if r.get("src_port") == sport and r.get("dst_port") == dport]
            assert {r.get("src4_addr") or r.get("src6_addr") for r in flow} == {src}
            assert {r.get("dst4_addr") or r.get("dst6_addr") for r in flow} == {dst}
            assert (sum(r["in_packets"] for r in flow), sum(r["in_bytes"] for r in flow)) == (packets, nbytes)
            # with the agent's times, to the millisecond
            assert (sorted((nfdump_ms(r["first"]), nfdump_ms(r["last"])) for r in flow)
                    == sorted((r["time_flow_start_ms"], r["time_flow_end_ms"]) for r in json_rows))
        else:
            flow = [r for r in rows if (r["port_src"], r["port_dst"]) == (sport, dport)]
            assert {(r["ip_src"], r["ip_dst"], r["ip_proto"]) for r in flow} == {(src, dst, "udp")}
            assert (sum(r["packets"] for r in flow), sum(r["bytes"] for r in flow)) == (packets, nbytes)
            first = min(r["time_flow_start_ms"] for r in json_rows) / 1000
            assert abs(min(float(r["timestamp_start"]) for r in flow) - first) < 1  # nfacctd keeps v9 times in s
    if collector is Nfcapd:
        assert "Sequence failures: 0" in info  # each worker's source id counts its own packets
