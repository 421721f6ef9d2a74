"""The collector's HTTP endpoint: /metrics for Prometheus, /healthz for what watches the agent.

Paths. GET /metrics answers the metrics of every process of the agent
(multiprocess mode: health.py), in the text format or in OpenMetrics as the
scraper's Accept header asks; GET /healthz answers 200 while the agent traces
and 503 with a one-line reason while it does not (tracing.py); HEAD answers like
GET without the body; any other path is 404, any other method 405. It is a
small WSGI app of our own on wsgiref, one thread per request, because
prometheus_client's own server answers the metrics on every path and refuses
HEAD.

Every counter is there from the first scrape (health.declare): an alert on a
rate or an increase needs the series before the first event.
"""
import ctypes
import os
import platform
import socket
import threading
from collections.abc import Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIEnvironment

import prometheus_client
from prometheus_client import multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from flowcollect import __version__
from flowcollect.export.prometheus import health
from flowcollect.export.prometheus.tracing import Tracing
from flowcollect.settings.addresses import host_port
from flowcollect.settings.errors import ConfigError
from flowcollect.settings.values import OutputSpec

TEXT = "text/plain; charset=utf-8"


def build_info() -> dict[str, str]:
    return {"version": __version__, "python": platform.python_version(), "libbpf": _libbpf_version()}


def _libbpf_version() -> str:
    """The libbpf of this process, when the kernel layer has loaded it ("" otherwise): RTLD_NOLOAD only
    finds a library already loaded, so the export layer never loads libbpf itself."""
    try:
        libbpf = ctypes.CDLL("libbpf.so.1", mode=os.RTLD_NOLOAD)
        version = libbpf.libbpf_version_string
    except (OSError, AttributeError):  # not loaded; a libbpf before 0.7
        return ""
    version.restype = ctypes.c_char_p
    return str(version().decode()).removeprefix("v")


class _BuildInfo(Collector):
    def __init__(self) -> None:
        self.labels = build_info()

    def collect(self) -> Iterable[Metric]:
        yield InfoMetricFamily("flowcollect_build", "The agent's version, and the Python and libbpf it runs with",
                               value=self.labels)


class _ThisProcess(Collector):
    """Without multiprocess mode (tests, one process): the metrics of this process."""

    def collect(self) -> Iterable[Metric]:
        return prometheus_client.REGISTRY.collect()


def scrape_registry() -> CollectorRegistry:
    """What /metrics serves: every process's files in multiprocess mode, else this process; the build info."""
    registry = CollectorRegistry()
    if os.environ.get(health.MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(_BuildInfo())
    return registry


class MetricsApp:
    """The WSGI app: /metrics and /healthz, GET and HEAD."""

    def __init__(self, registry: CollectorRegistry, tracing: Tracing) -> None:
        self.registry = registry
        self.tracing = tracing

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        content_type = TEXT
        if path not in ("/metrics", "/healthz"):
            status, body = "404 Not Found", b"not found: the agent serves /metrics and /healthz\n"
        elif method not in ("GET", "HEAD"):
            status, body = "405 Method Not Allowed", b"method not allowed: GET or HEAD\n"
        elif path == "/metrics":
            encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            status, body = "200 OK", encoder(self.registry)
        else:
            tracing, reason = self.tracing.check()
            status, body = "200 OK" if tracing else "503 Service Unavailable", f"{reason}\n".encode()
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if status.startswith("405"):
            headers.append(("Allow", "GET, HEAD"))
        start_response(status, headers)
        return iter(() if method == "HEAD" else (body,))


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged: a scrape every few seconds would fill the log."""


def serve(address: str, outputs: Iterable[OutputSpec], tracing: Tracing) -> WSGIServer:
    """Serve /metrics and /healthz on HOST:PORT (an empty host: every address) in a thread; returns the
    server (.shutdown() stops it and closes its socket). `outputs`: the agent's, whose counters start at 0."""
    health.declare(health.output_labels(output.kind for output in outputs))
    host, port = host_port(address, default_host="0.0.0.0")
    try:
        family, _, _, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        server_class: type[_Server] = type("_Server", (_Server,), {"address_family": family})
        server = server_class(cast(tuple[str, int] | tuple[str, int, int, int], where), _QuietHandler)  # IP families
    except socket.gaierror as exc:
        raise ConfigError(f"--metrics-address {address}: cannot resolve {host}: {exc.strerror}") from None
    except OSError as exc:  # the port in use, an address not of this host
        raise ConfigError(f"--metrics-address {address}: {exc.strerror}") from None
    server.set_app(MetricsApp(scrape_registry(), tracing))
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
