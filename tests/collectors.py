"""nfcapd (nfdump) and nfacctd (pmacct) as test collectors, the flows they wrote, and known flows to send them.

Each listens on 127.0.0.1:PORT, in our namespace or in a test namespace's
(`ns`), and is ready once its UDP socket is bound. stop_and_read() waits
until the collector has read every datagram sent to it (its receive queue
is empty), stops it (both write what they hold when stopped) and returns the
flows it wrote: nfdump's JSON objects, or nfacctd's JSON lines.

nfacctd's print plugin writes the flows it aggregated by `aggregate` (the
primitives below) when it stops (SIGINT: the core waits for the plugin);
counters of records with the same primitives are added up. Its core binds
the socket before the plugin (a child process) is ready, and hands it no
record until the plugin first waits for one (in poll(2)): what arrives
before is never written. So nfacctd is ready when its plugin sleeps in poll.
"""
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
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import FLOW_EXPORT
from tests.flowtools import ip16, mac6

NFACCTD_PRIMITIVES = ("src_host", "dst_host", "src_port", "dst_port", "proto", "tcpflags", "src_mac", "dst_mac",
                      "in_iface", "out_iface", "tos", "etype", "timestamp_start", "timestamp_end")


def require(*programs):
    missing = [p for p in programs if not shutil.which(p)]
    if not missing:
        return
    message = f"{', '.join(missing)} missing (Debian packages nfdump, pmacct; the Makefile installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """A collector process on 127.0.0.1:port; a context manager that always ends it."""

    stop_signal = signal.SIGTERM

    def __init__(self, tmp_path, port, ns, args):
        self.port = port
        self.ns = ns
        self.log_path = tmp_path / f"{args[0]}-{port}.log"
        with open(self.log_path, "ab") as log:
            popen = ns.popen if ns is not None else lambda *a, **k: subprocess.Popen(a, **k)
            self.process = popen(*args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_udp(port, ns, alive=self.running)
        except BaseException:
            self.close()
            raise

    def running(self):
        assert self.process.poll() is None, f"{self.log_path.name}: exited\n{self.log_path.read_text(errors='replace')}"

    def stop(self):
        wait_udp(self.port, self.ns, read=True, alive=self.running)  # every datagram sent is read
        self.process.send_signal(self.stop_signal)
        code = self.process.wait(timeout=20)
        assert code == 0, f"{self.log_path.name}: exit code {code}\n{self.log_path.read_text(errors='replace')}"

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Nfcapd(Collector):
    def __init__(self, tmp_path, port, ns=None):
        require("nfcapd", "nfdump")
        self.directory = tmp_path / f"nfcapd-{port}"
        self.directory.mkdir()
        super().__init__(tmp_path, port, ns,
                         ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(self.directory), "-t", "3600"])

    def stop_and_read(self):
        """nfdump's records (-o json) of every flow nfcapd wrote (it writes its file when stopped)."""
        self.stop()
        return json.loads(self.nfdump("-o", "json"))

    def nfdump(self, *args):
        result = subprocess.run(["nfdump", "-R", str(self.directory), *args],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout


class Nfacctd(Collector):
    stop_signal = signal.SIGINT  # the core stops its plugins, which write what they hold

    def __init__(self, tmp_path, port, ns=None):
        require("nfacctd")
        self.output = tmp_path / f"nfacctd-{port}.json"
        config = tmp_path / f"nfacctd-{port}.conf"
        config.write_text("\n".join([
            "daemonize: false",
            "nfacctd_ip: 127.0.0.1",
            f"nfacctd_port: {port}",
            "plugins: print",
            "print_output: json",
            f"print_output_file: {self.output}",
            "print_refresh_time: 3600",  # written when it stops
            f"aggregate: {', '.join(NFACCTD_PRIMITIVES)}",
            "timestamps_since_epoch: true",
            "",
        ]))
        super().__init__(tmp_path, port, ns, ["nfacctd", "-f", str(config)])
        try:
            self._wait_for_plugin()
        except BaseException:
            self.close()
            raise

    def _wait_for_plugin(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        children = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        while True:
            self.running()
            with open(children) as f:
                plugins = f.read().split()
            if plugins and all(_sleeps_in_poll(pid) for pid in plugins):
                return
            assert time.monotonic() < deadline, f"nfacctd's plugin not waiting for data after {timeout} s"
            time.sleep(0.02)

    def stop_and_read(self):
        """nfacctd's JSON records (one per distinct set of primitives)."""
        self.stop()
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line.strip()]


def _sleeps_in_poll(pid):
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "poll" in f.read()
    except FileNotFoundError:
        return False


# Flows with known counters, to send the collectors: (src, dst, sport, dport, protocol, packets, bytes, tcp_flags)
KNOWN_FLOWS = [
    ("10.11.12.13", "192.0.2.7", 40001, 443, 6, 10, 12_340, 0x1B | 0x100),  # FIN PSH SYN ACK (+ flowcollect's SYN_ACK)
    ("192.0.2.7", "10.11.12.13", 443, 40001, 6, 8, 9_000, 0x12),
    ("10.0.0.1", "10.0.0.2", 5353, 53, 17, 3, 300, 0),
    ("2001:db8::10", "2001:db8:1::20", 50000, 8080, 6, 1000, 1_500_000, 0x04 | 0x10 | 0x400),  # RST ACK
    ("fe80::1", "ff02::fb", 5353, 5353, 17, 2, 250, 0),
    ("2001:db8::10", "2001:db8:1::20", 0, 0, 58, 4, 416, 0),  # ICMPv6 echo
]
KNOWN_START_NS = time.time_ns() // 1_000_000 * 1_000_000 - 60 * 10**9  # whole ms, a minute ago
KNOWN_DURATION_MS = 1500


def known_batch():
    rows = np.zeros(len(KNOWN_FLOWS), dtype=FLOW_EXPORT)
    for row, (src, dst, sport, dport, proto, packets, nbytes, flags) in zip(rows, KNOWN_FLOWS, strict=True):
        row["eth_protocol"] = 0x0800 if ipaddress.ip_address(src).version == 4 else 0x86DD
        row["src_ip"], row["dst_ip"] = ip16(src), ip16(dst)
        row["src_port"], row["dst_port"], row["protocol"] = sport, dport, proto
        row["packets"], row["bytes"], row["tcp_flags"] = packets, nbytes, flags
        row["icmp_type"] = 128 if proto == 58 else 0
        row["time_flow_start_ns"] = KNOWN_START_NS
        row["time_flow_end_ns"] = KNOWN_START_NS + KNOWN_DURATION_MS * 1_000_000
        row["if_index"], row["direction"] = 2, 1
        row["src_mac"], row["dst_mac"] = mac6("02:00:00:00:00:01"), mac6("0a:bb:cc:dd:ee:ff")
    return FlowBatch(rows, {2: "eth0"}, "127.0.0.1")


def nfdump_flags(tcp_flags):
    """TCP flags as nfdump shows them: CEUAPRSF, a dot for each flag not set."""
    return "".join(name if tcp_flags & (0x80 >> i) else "." for i, name in enumerate("CEUAPRSF"))


def nfdump_ms(text):
    """nfdump's JSON times (local time, ms) as Unix ms."""
    stamp = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")
    return round(stamp.timestamp() * 1000)
