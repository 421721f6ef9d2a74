"""IPFIX as a standard collector reads it: nfdump's nfcapd on loopback receives our messages for
known IPv4 and IPv6 flows, and `nfdump -o json` must show the flows, packets, bytes, addresses,
ports and protocol that were encoded."""
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from bench.harness.netns import wait_udp
from flowcollect.export.ipfix import IpfixSink
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import FLOW_EXPORT
from tests.flowtools import ip16, mac6

NOW_NS = time.time_ns() - 60 * 10**9

FLOWS = [  # (src, dst, sport, dport, protocol, packets, bytes)
    ("10.11.12.13", "192.0.2.7", 40001, 443, 6, 10, 12_340),
    ("192.0.2.7", "10.11.12.13", 443, 40001, 6, 8, 9_000),
    ("10.0.0.1", "10.0.0.2", 5353, 53, 17, 3, 300),
    ("2001:db8::10", "2001:db8:1::20", 50000, 8080, 6, 1000, 1_500_000),
    ("fe80::1", "ff02::fb", 5353, 5353, 17, 2, 250),
    ("2001:db8::10", "2001:db8:1::20", 0, 0, 58, 4, 416),  # ICMPv6 echo
]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def known_batch():
    rows = np.zeros(len(FLOWS), dtype=FLOW_EXPORT)
    for row, (src, dst, sport, dport, proto, packets, nbytes) in zip(rows, FLOWS, strict=True):
        row["eth_protocol"] = 0x0800 if ipaddress.ip_address(src).version == 4 else 0x86DD
        row["src_ip"], row["dst_ip"] = ip16(src), ip16(dst)
        row["src_port"], row["dst_port"], row["protocol"] = sport, dport, proto
        row["packets"], row["bytes"] = packets, nbytes
        row["icmp_type"] = 128 if proto == 58 else 0
        row["time_flow_start_ns"], row["time_flow_end_ns"] = NOW_NS, NOW_NS + 1_500_000_000
        row["if_index"], row["direction"] = 2, 1
        row["src_mac"], row["dst_mac"] = mac6("02:00:00:00:00:01"), mac6("0a:bb:cc:dd:ee:ff")
    return FlowBatch(rows, {2: "eth0"}, "127.0.0.1")


@pytest.fixture
def nfcapd(tmp_path):
    if not (shutil.which("nfcapd") and shutil.which("nfdump")):
        if os.environ.get("CI") == "true":
            pytest.fail("nfcapd/nfdump missing (Debian package nfdump; the Makefile installs it)")
        pytest.skip("nfcapd/nfdump missing (apt-get install nfdump)")
    port = free_udp_port()
    directory = tmp_path / "flows"
    directory.mkdir()
    with open(tmp_path / "nfcapd.log", "wb") as log:
        process = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(directory), "-t", "3600"],
                                   stdout=log, stderr=subprocess.STDOUT)
        def running():
            assert process.poll() is None, (tmp_path / "nfcapd.log").read_text(errors="replace")

        try:
            wait_udp(port, alive=running)
            yield port, directory, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def stop_and_read(process, directory, port):
    """Stop nfcapd (it writes its current file on SIGTERM) and read every flow back."""
    wait_udp(port, read=True)  # every datagram sent is read before it stops
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    result = subprocess.run(["nfdump", "-R", str(directory), "-o", "json"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_nfcapd_reads_the_flows_we_encode(nfcapd):
    port, directory, process = nfcapd
    # GIVEN our UDP output pointed at nfcapd on loopback
    out = IpfixSink(f"127.0.0.1:{port}", observation_domain=1)
    # WHEN a batch of known IPv4 and IPv6 flows is exported
    assert out.write(known_batch())
    out.close()
    # THEN nfdump lists exactly those flows with their counters, addresses, ports and protocol
    rows = stop_and_read(process, directory, port)
    got = sorted((str(ipaddress.ip_address(r.get("src4_addr") or r["src6_addr"])),
                  str(ipaddress.ip_address(r.get("dst4_addr") or r["dst6_addr"])),
                  r.get("src_port", 0), r.get("dst_port", 0), r["proto"], r["in_packets"], r["in_bytes"])
                 for r in rows)
    expected = sorted((str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)),
                       sport, dport, proto, packets, nbytes)
                      for src, dst, sport, dport, proto, packets, nbytes in FLOWS)
    assert got == expected
    # and what else a collector shows: ICMP type, egress interface, direction, MACs, duration
    icmp = next(r for r in rows if r["proto"] == 58)
    assert (icmp["icmp_type"], icmp["icmp_code"]) == (128, 0)
    assert {(r["output_snmp"], r["input_snmp"], r["direction"]) for r in rows} == {(2, 0, 1)}
    assert {r["in_src_mac"] for r in rows} == {"02:00:00:00:00:01"}
    assert {r["in_dst_mac"] for r in rows} == {"0a:bb:cc:dd:ee:ff"}
    durations = {_ms(r["last"]) - _ms(r["first"]) for r in rows}
    assert durations == {1500}


def _ms(text):
    stamp = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")
    return round(stamp.timestamp() * 1000)
