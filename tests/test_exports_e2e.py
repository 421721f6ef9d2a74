"""The real agent's IPFIX and Prometheus outputs, read by the standard tools, on namespace traffic."""
import json
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.harness.agent import Agent, send_udp
from bench.harness.netns import wait_udp

pytestmark = pytest.mark.kernel
UDP4, UDP6 = 14 + 20 + 8, 14 + 40 + 8


def test_nfcapd_reads_the_agent_s_ipfix_exactly(host_between, tmp_path):
    a_end, host_a, _c_end, _host_c = host_between
    host = host_a.ns
    directory = tmp_path / "nfcapd"
    directory.mkdir()
    port = 47390
    nfcapd = host.popen("nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(directory), "-t", "3600",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running():
        assert nfcapd.poll() is None, "nfcapd exited"

    try:
        wait_udp(port, host, alive=running)  # bound before the agent sends its first templates
        agent = Agent(host, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms",
                      "--output", f"ipfix:127.0.0.1:{port}")
        try:
            send_udp(a_end, host_a.ipv4, 4500, 5500, 33, 100)
            send_udp(a_end, host_a.ipv6, 4600, 5600, 21, 200)
            code, _ = agent.stop()  # the last drain: every flow goes out before the agent exits
        finally:
            agent.close()
        assert code == 0
        wait_udp(port, host, read=True, alive=running)  # nfcapd writes what it read when stopped
    finally:
        nfcapd.send_signal(signal.SIGTERM)
        nfcapd.wait(timeout=10)
    result = subprocess.run(["nfdump", "-R", str(directory), "-o", "json"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    flows = json.loads(result.stdout)

    def totals(sport, dport):
        rows = [f for f in flows if f.get("src_port") == sport and f.get("dst_port") == dport]
        return len(rows) > 0, sum(f["in_packets"] for f in rows), sum(f["in_bytes"] for f in rows), rows

    found, packets, nbytes, rows = totals(4500, 5500)
    assert found and (packets, nbytes) == (33, 33 * (UDP4 + 100))
    assert {r["src4_addr"] for r in rows} == {a_end.ipv4} and {r["proto"] for r in rows} == {17}
    found, packets, nbytes, rows = totals(4600, 5600)
    assert found and (packets, nbytes) == (21, 21 * (UDP6 + 200))
    assert {r["src6_addr"] for r in rows} == {a_end.ipv6}


def scrape(ns, address):
    with ns.entered():  # the agent's loopback is in its namespace: so is this socket
        body = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_the_flows_exactly_and_the_overflow(host_between, tmp_path):
    a_end, host_a, _c_end, _host_c = host_between
    host = host_a.ns
    address = "127.0.0.1:47391"
    agent = Agent(host, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms", "--cache-max-flows", "64",
                  "--output", "none", "--metrics-address", address)
    try:
        send_udp(a_end, host_a.ipv4, 4700, 5700, 40, 60)
        sock = a_end.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for port in range(30000, 32000):  # 2,000 new flows: the 64-flow map overflows
            sock.sendto(b"o", (host_a.ipv4, port))
        sock.close()
        expected_packets = 40 + 2000
        expected_bytes = 40 * (UDP4 + 60) + 2000 * (UDP4 + 1)
        deadline = time.monotonic() + 20
        while True:
            samples = scrape(host, address)
            got = value(samples, "flowcollect_flow_packets_total", interface="to-a", direction="ingress", protocol="17")
            kernel_seen = value(samples, "flowcollect_kernel_packets_total")  # read every second
            if (got >= expected_packets and kernel_seen >= expected_packets) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    assert got == expected_packets
    assert value(samples, "flowcollect_flow_bytes_total", interface="to-a", direction="ingress",
                 protocol="17") == expected_bytes
    # The overflow shows in the health metrics.
    assert value(samples, "flowcollect_kernel_map_insert_failures_total") > 0
    assert value(samples, "flowcollect_ringbuf_records_total") > 0
    assert value(samples, "flowcollect_evicted_flows_total", reason="map_full") > 0
    assert value(samples, "flowcollect_kernel_packets_total") >= expected_packets
    assert value(samples, "flowcollect_lost_packets_total") == 0


def test_jsonl_file_every_field_of_a_known_flow_and_reopen_on_sighup(host_between, tmp_path):
    a_end, host_a, _c_end, _host_c = host_between
    path = tmp_path / "flows.jsonl"
    # A 1 s eviction period: the 12-packet burst (well under 1 ms) falls in one eviction.
    agent = Agent(host_a.ns, tmp_path, "--workers", "2", "--cache-active-timeout", "1s",
                  "--output", f"jsonl:{path}")
    try:
        before = time.time()
        send_udp(a_end, host_a.ipv4, 4800, 5800, 12, 30)
        wait_for_lines(path, lambda r: r["src_port"] == 4800)
        path.rename(tmp_path / "flows.jsonl.1")  # logrotate moves the file...
        agent.process.send_signal(signal.SIGHUP)  # ...and tells the agent, which tells its workers
        agent.wait_for_log("SIGHUP: files are reopened", count=2)
        send_udp(a_end, host_a.ipv4, 4801, 5801, 5, 30)
        wait_for_lines(path, lambda r: r["src_port"] == 4801)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    rotated = [json.loads(line) for line in (tmp_path / "flows.jsonl.1").read_text().splitlines()]
    current = [json.loads(line) for line in path.read_text().splitlines()]
    assert not [r for r in current if r["src_port"] == 4800] and not [r for r in rotated if r["src_port"] == 4801]
    row, = [r for r in rotated if r["src_port"] == 4800 and r["interface"] == "to-a"]
    start, end = row.pop("time_flow_start_ms"), row.pop("time_flow_end_ms")
    assert before * 1000 - 1000 <= start <= end <= time.time() * 1000
    assert row.pop("time_flow_start")[:19] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start / 1000))
    assert row.pop("time_flow_end").endswith("Z")
    assert row == {
        "interface": "to-a", "if_index": host_a.ifindex, "direction": "ingress",
        "src_mac": a_end.mac, "dst_mac": host_a.mac, "eth_protocol": 0x0800,
        "src_addr": a_end.ipv4, "dst_addr": host_a.ipv4, "src_port": 4800, "dst_port": 5800, "protocol": 17,
        "icmp_type": 0, "icmp_code": 0, "vlan_id": 0, "packets": 12, "bytes": 12 * (UDP4 + 30),
        "tcp_flags": 0, "dscp": 0, "sampling": 0, "agent_ip": row["agent_ip"], "duplicate": False,
    }
    assert row["agent_ip"]


def wait_for_lines(path, predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(predicate(json.loads(line)) for line in path.read_text().splitlines()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no matching line in {path}")
