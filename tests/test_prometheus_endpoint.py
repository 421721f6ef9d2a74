"""The agent's HTTP endpoint (flowcollect/export/prometheus/server.py): /metrics and /healthz only, GET and
HEAD, the build info, /healthz's reasons; and the metrics table of docs/records.md against the registry."""
import platform
import re
import socket
from pathlib import Path

import prometheus_client
import pytest

from flowcollect import __version__
from flowcollect.export.prometheus import health, server
from flowcollect.export.prometheus.flow_counters import FlowMetrics
from flowcollect.settings.values import OutputSpec
from tests.metrics_http import request, samples

RECORDS_MD = Path(__file__).resolve().parent.parent / "docs" / "records.md"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeThread:
    def __init__(self):
        self.alive = True

    def is_alive(self):
        return self.alive


@pytest.fixture
def endpoint():
    """(address, tracing, clock): the endpoint served in this process, for a jsonl and a zmq output."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock()
    tracing = server.Tracing(2.0, clock=clock)
    outputs = [OutputSpec("jsonl", "/tmp/x.jsonl"), OutputSpec("zmq", "ipc:///tmp/x.sock"), OutputSpec("none", "")]
    http = server.serve(f"127.0.0.1:{port}", outputs, tracing)
    yield f"127.0.0.1:{port}", tracing, clock
    http.shutdown()


def test_metrics_only_on_its_path_with_the_build_info_and_head_like_get(endpoint):
    address, _tracing, _clock = endpoint
    status, headers, body = request(address, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = samples(body.decode())
    build = {"version": __version__, "python": platform.python_version()}
    info = [dict(labels) for (name, labels), v in got.items() if name == "flowcollect_build_info" and v == 1]
    assert len(info) == 1 and {k: info[0][k] for k in build} == build and "libbpf" in info[0]
    # Each configured output has its series from the start (a zmq output: one per topic; none: nothing).
    outputs = {dict(labels)["output"] for name, labels in got if name == "flowcollect_export_errors_total"}
    assert {"jsonl", "zmq_binary", "zmq_json"} <= outputs and "none" not in outputs
    # HEAD: the same status and headers, no body.
    status, head_headers, head_body = request(address, "/metrics", method="HEAD")
    assert (status, head_body) == (200, b"")
    assert head_headers["Content-Type"] == headers["Content-Type"] and int(head_headers["Content-Length"]) > 0
    # A scraper that asks for OpenMetrics gets it.
    status, headers, body = request(address, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert headers["Content-Type"].startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    for path in ("/", "/metrics/", "/favicon.ico", "/healthz/x"):
        status, _headers, body = request(address, path)
        assert (status, body) == (404, b"not found: the agent serves /metrics and /healthz\n"), path
    status, headers, _body = request(address, "/metrics", method="POST")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_healthz_is_200_while_tracing_and_503_with_one_line_saying_why(endpoint):
    address, tracing, clock = endpoint
    map_tracer, workers = FakeThread(), [2]

    def healthz():
        status, _headers, body = request(address, "/healthz")
        text = body.decode()
        assert text.endswith("\n") and text.count("\n") == 1, text  # one line
        return status, text.strip()

    assert healthz() == (503, "starting: the kernel programs, the workers or the tracers are not up yet")
    tracing.started(map_tracer, lambda: workers[0])
    clock.now += 1.5
    assert healthz() == (200, "tracing: 2 workers running, started 1.5 s ago")
    status, _headers, body = request(address, "/healthz", method="HEAD")
    assert (status, body) == (200, b"")
    # Three eviction periods (2 s) and the slack (1 s) without an eviction: stuck.
    clock.now += 3 * 2.0 + 1.0 - 1.5
    assert healthz()[0] == 200
    clock.now += 0.1
    assert healthz() == (503, "no eviction of the kernel map for 7.1 s (eviction period 2 s): the map tracer is stuck")
    tracing.evicted()
    clock.now += 0.2
    assert healthz() == (200, "tracing: 2 workers running, last eviction 0.2 s ago")
    workers[0] = 0
    assert healthz() == (503, "no worker is running: each one is starting, restarting or not answering")
    workers[0] = 1
    map_tracer.alive = False
    assert healthz() == (503, "the map-tracer thread has died: nothing is evicted from the kernel")
    map_tracer.alive = True
    assert healthz()[0] == 200
    tracing.stopping()
    status, _headers, body = request(address, "/healthz", method="HEAD")
    assert (status, body) == (503, b"")
    assert healthz() == (503, "stopping: our programs are detached")


def exposed_names(registry):
    """The metric names a scrape shows (a counter's with _total, an info's with _info)."""
    suffix = {"counter": "_total", "info": "_info"}
    return {family.name + suffix.get(family.type, "") for family in registry.collect()
            if family.name.startswith("flowcollect_")}


def test_every_metric_is_in_the_table_of_docs_records_md_and_every_row_is_a_metric():
    health.metrics()
    flow_registry = prometheus_client.CollectorRegistry()
    FlowMetrics(registry=flow_registry)
    registered = exposed_names(server.scrape_registry()) | exposed_names(flow_registry)
    section = RECORDS_MD.read_text().split("## Prometheus", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(flowcollect_\w+)`", section, flags=re.MULTILINE))
    assert registered == documented
