"""The real agent's /metrics and /healthz, from inside its namespace: promtool's lint, a real
Prometheus server's scrape read back through its HTTP API, and /healthz on a real failure."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from bench.harness.agent import Agent, send_udp
from flowcollect import __version__
from flowcollect.export.prometheus.health import EVICTION_REASONS
from flowcollect.records.tally import LOSS_CAUSES
from tests.metrics_http import request, samples

pytestmark = pytest.mark.kernel
OUTPUTS = ("jsonl", "ipfix", "zmq_binary", "zmq_json")
# Counters that nothing moves while the agent runs quietly: every one must be there at 0 from the start.
ZERO_FROM_START = (
    [(name, {"cause": cause}) for cause in LOSS_CAUSES
     for name in ("flowcollect_lost_packets_total", "flowcollect_lost_flows_total")]
    + [("flowcollect_export_errors_total", {"output": output}) for output in OUTPUTS]
    + [(name, {}) for name in (
        "flowcollect_lost_bytes_total", "flowcollect_dedup_dropped_flows_total", "flowcollect_worker_restarts_total",
        "flowcollect_workers_silenced_total", "flowcollect_reattached_total",
        "flowcollect_flow_series_capped_flows_total", "flowcollect_kernel_sampled_out_packets_total",
        "flowcollect_kernel_parse_failures_total", "flowcollect_kernel_map_insert_failures_total",
        "flowcollect_ringbuf_records_total")])
# Series that traffic moves: there from the start too (their value depends on what the interfaces carried).
PRESENT_FROM_START = (
    [(name, {"output": output}) for output in OUTPUTS
     for name in ("flowcollect_exported_flows_total", "flowcollect_exported_packets_total")]
    + [("flowcollect_evicted_flows_total", {"reason": reason}) for reason in EVICTION_REASONS]
    + [(name, {}) for name in ("flowcollect_kernel_packets_total", "flowcollect_map_fill_ratio",
                               "flowcollect_drain_duration_seconds_count")])


def key(name, labels):
    return name, frozenset(labels.items())


def scrape_and_lint(ns, address):
    """The agent's /metrics, fetched in its namespace, after `promtool check metrics` found nothing to say."""
    status, headers, body = request(address, "/metrics", ns=ns)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), (status, headers)
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint
    return samples(body.decode())


def output_labels(got):
    return {dict(labels)["output"] for name, labels in got if name == "flowcollect_exported_packets_total"}


def test_promtool_passes_on_the_metrics_and_every_loss_counter_is_there_at_zero_before_any_loss(two_hosts, tmp_path):
    a_end, b_end = two_hosts
    ns = b_end.ns
    address = "127.0.0.1:47410"
    ipfix_collector = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, so that no IPFIX send fails
    ipfix_collector.bind(("127.0.0.1", 4739))
    agent = Agent(ns, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms",
                  "--output", f"jsonl:{tmp_path / 'flows.jsonl'}", "--output", "ipfix:127.0.0.1:4739",
                  "--output", f"zmq:ipc://{tmp_path / 'flows.sock'}", "--metrics-address", address)
    try:
        before = scrape_and_lint(ns, address)
        send_udp(a_end, b_end.ipv4, 4900, 5900, 25, 80)
        udp_in = key("flowcollect_flow_packets_total", {"interface": "veth0", "direction": "ingress", "protocol": "17"})
        deadline = time.monotonic() + 20
        while (after := scrape_and_lint(ns, address)).get(udp_in, 0) < 25 and time.monotonic() < deadline:
            time.sleep(0.1)
        code, _ = agent.stop()
    finally:
        agent.close()
        ipfix_collector.close()
    assert code == 0
    missing = [k for k in ZERO_FROM_START + PRESENT_FROM_START if key(*k) not in before]
    assert not missing
    assert {k[0]: before[key(*k)] for k in ZERO_FROM_START if before[key(*k)] != 0} == {}
    info, = [dict(labels) for name, labels in before if name == "flowcollect_build_info"]
    assert info["version"] == __version__ and info["python"] and info["libbpf"]
    assert before[key("flowcollect_build_info", info)] == 1
    # After traffic: the flows counted exactly, under the output labels that were declared at the start.
    assert after[udp_in] == 25
    assert output_labels(after) == output_labels(before) == set(OUTPUTS)
    exported = {o: after[key("flowcollect_exported_packets_total", {"output": o})] for o in ("jsonl", "ipfix")}
    assert exported["jsonl"] == exported["ipfix"] >= 25


class Prometheus:
    """A real Prometheus server in `ns`, scraping `target` every second; its data in tmp_path."""

    def __init__(self, ns, tmp_path, target, listen="127.0.0.1:9090"):
        self.ns = ns
        self.listen = listen
        self.data = tmp_path / "prometheus-data"
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "flowcollect", "static_configs": [{"targets": [target]}]}],
        }))
        self.log_path = tmp_path / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.process = ns.popen("prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.data}",
                                    f"--web.listen-address={listen}", stdout=log, stderr=log)
        self.wait_until(lambda: self.get("/-/ready")[0] == 200, "ready")

    def get(self, path):
        try:
            status, _headers, body = request(self.listen, path, ns=self.ns)
        except OSError:  # not listening yet
            return None, b""
        return status, body

    def query(self, promql):
        """The value of an instant query that returns one series, or None."""
        status, body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        if status != 200:
            return None
        result = json.loads(body)["data"]["result"]
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def wait_until(self, condition, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"prometheus exited:\n{self.log_path.read_text()}"
            assert time.monotonic() < deadline, f"prometheus: not {what} within {timeout} s"
            time.sleep(0.1)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def test_a_prometheus_server_scrapes_the_agent_and_reads_back_the_exact_packet_count(two_hosts, tmp_path):
    a_end, b_end = two_hosts
    ns = b_end.ns
    address = "127.0.0.1:47411"
    agent = Agent(ns, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms", "--output", "none",
                  "--metrics-address", address)
    prometheus = None
    try:
        prometheus = Prometheus(ns, tmp_path, address)
        send_udp(a_end, b_end.ipv4, 4910, 5910, 37, 50)
        packets = ('flowcollect_flow_packets_total{job="flowcollect",interface="veth0",direction="ingress",'
                   'protocol="17"}')
        prometheus.wait_until(lambda: (prometheus.query(packets) or 0) >= 37, "scraped the packets")
        assert prometheus.query(packets) == 37
        assert prometheus.query('up{job="flowcollect"}') == 1
        # Negotiated as OpenMetrics, the build info is an info metric: Prometheus stores its one series at 1.
        assert prometheus.query(f'flowcollect_build_info{{version="{__version__}"}}') == 1
        assert prometheus.query('flowcollect_lost_packets_total{cause="worker_died"}') == 0
        code, _ = agent.stop()
    finally:
        agent.close()
        if prometheus is not None:
            prometheus.stop()
    assert code == 0
    assert not os.path.exists(prometheus.data)


def healthz(ns, address, method="GET"):
    status, _headers, body = request(address, "/healthz", method=method, ns=ns)
    return status, body.decode()


def test_healthz_is_200_while_tracing_503_while_no_worker_can_start_and_404_elsewhere(netns_factory, tmp_path):
    ns = netns_factory("agent")
    address = "127.0.0.1:47412"
    flows = tmp_path / "flows.jsonl"
    agent = Agent(ns, tmp_path, "--workers", "1", "--cache-active-timeout", "300ms", "--output", f"jsonl:{flows}",
                  "--metrics-address", address)
    try:
        status, text = healthz(ns, address)
        assert status == 200 and text.startswith("tracing: 1 workers running,"), text
        assert healthz(ns, address, "HEAD") == (200, "")
        status, headers, body = request(address, "/metrics", method="HEAD", ns=ns)
        assert (status, body) == (200, b"") and int(headers["Content-Length"]) > 0
        for path in ("/", "/metrics/", "/health", "/index.html"):
            assert request(address, path, ns=ns)[0] == 404, path
            assert request(address, path, method="HEAD", ns=ns)[0] == 404, path
        assert request(address, "/healthz", method="POST", ns=ns)[0] == 405

        # WHEN the worker's output file becomes a folder and the worker is killed: no new worker can open
        # its output, so none ever sends a STATUS
        flows.rename(tmp_path / "flows.jsonl.1")
        flows.mkdir()
        worker, = agent.worker_pids()
        os.kill(worker, signal.SIGKILL)
        agent.wait_for_log("worker 0 started", count=2)  # its replacement, which cannot work
        status, text = healthz(ns, address)
        assert (status, text) == (503, "no worker is running: each one is starting, restarting or not answering\n")
        assert healthz(ns, address, "HEAD") == (503, "")

        # THEN once the file can be opened again, the next worker works and the agent traces again (the
        # workers started meanwhile are killed: the supervisor would wait for their start timeout)
        flows.rmdir()
        for worker in agent.worker_pids():
            os.kill(worker, signal.SIGKILL)
        wait_for_healthz(ns, address, 200)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0


def wait_for_healthz(ns, address, status, timeout=30):
    deadline = time.monotonic() + timeout
    while (got := healthz(ns, address))[0] != status:
        assert time.monotonic() < deadline, f"/healthz still {got} after {timeout} s"
        time.sleep(0.05)
