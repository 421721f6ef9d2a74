"""The subscriber's loop: read the agent's public endpoint and print flows, or keep the top-talkers view live.

Prints the JSON stream (from the JSON topic, or decoded from the binary
topic), or with --top a live view of the top talkers (top_view.py). Sequence
numbers are checked per publisher (gaps.py). The endpoint is checked before
connecting (endpoint.py); when no flow has come after a few seconds, the loop
says once why that may be (waiting.py) and keeps waiting.
"""
import contextlib
import logging
import signal
import sys
import time
from typing import BinaryIO

import zmq

from flowcollect.records.json_lines import encode_lines
from flowcollect.settings.errors import ConfigError
from flowcollect.subscriber import endpoint as endpoints
from flowcollect.subscriber.gaps import GapTracker
from flowcollect.subscriber.top_view import TopView
from flowcollect.subscriber.waiting import Watch
from flowcollect.transport import wire

log = logging.getLogger("flowcollect.sub")

POLL_MS = 250  # also the refresh period of the top view, and the longest the loop reads messages in a row


def _subscriber(ctx: "zmq.Context[zmq.Socket[bytes]]", topic: bytes, server_key: str | None) -> "zmq.Socket[bytes]":
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if server_key:
        public, secret = zmq.curve_keypair()
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    return sock


def _deliver(frames: list[bytes], arrived: float, gaps: GapTracker, view: TopView | None, out: BinaryIO) -> int:
    """One message to the view or to `out` as JSON lines; returns the flows it carried."""
    got, header, body = wire.split(frames, topic=True)
    gaps.see(wire.frame_bytes(got or b""), header)
    if header.kind == wire.FLOWS_JSON:
        out.write(wire.frame_bytes(body[0]))
    elif view is not None:
        view.flows(wire.read_flows(header, body), arrived)
    else:
        out.write(encode_lines(wire.read_flows(header, body)))
    return header.count


def run(endpoint: str, fmt: str = "json", top: bool = False, count: int | None = None,
        curve_server_key: str | None = None, out: BinaryIO | None = None) -> int:
    """Subscribe until SIGTERM/SIGINT, `q` in the top view, or `count` flows; returns the exit code."""
    endpoints.check(endpoint)
    if top and not sys.stdout.isatty():
        raise ConfigError("--top draws on a terminal and stdout is not one (without --top: JSON lines)")
    out = out or sys.stdout.buffer
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    topic = wire.TOPIC_BINARY if (top or fmt == "binary") else wire.TOPIC_JSON
    with contextlib.ExitStack() as stack:  # closed in reverse order: view, monitor, socket, context
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        stack.callback(ctx.term)
        sock = _subscriber(ctx, topic, curve_server_key)
        stack.callback(sock.close)
        watch = Watch(sock, endpoint, bool(curve_server_key), time.monotonic())
        stack.callback(watch.close)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:  # what endpoint.check() cannot see (the host's limits)
            raise ConfigError(f"--endpoint {endpoint}: {exc.strerror}") from None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if watch.monitor is not None:
            poller.register(watch.monitor, zmq.POLLIN)
        view = stack.enter_context(TopView(endpoint)) if top else None
        if view is not None and view.keys.fd is not None:
            poller.register(view.keys.fd, zmq.POLLIN)
        gaps = GapTracker()
        seen = 0
        while not stopping and (count is None or seen < count) and not (view and view.quit):
            ready = dict(poller.poll(POLL_MS))
            if watch.monitor is not None and watch.monitor in ready:
                watch.read()
            if view is not None and view.keys.fd in ready:
                view.pressed()
            # However busy the stream, the view is refreshed and the keys read every POLL_MS.
            reading_until = time.monotonic() + POLL_MS / 1000
            while sock in ready and (count is None or seen < count) and time.monotonic() < reading_until:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                seen += _deliver(frames, time.monotonic(), gaps, view, out)
            if view is None:
                out.flush()
            now = time.monotonic()
            monitor = watch.monitor
            if (reason := watch.due(now, flows=seen > 0)) is not None:
                log.warning("%s", reason)
            if monitor is not None and watch.monitor is None:
                poller.unregister(monitor)
            if view is not None:
                view.refresh(now)
    return 0
