"""The one public endpoint: an XSUB/XPUB proxy between the workers and subscribers.

Workers publish to the proxy's internal XSUB; subscribers connect to its
XPUB. The XPUB side never blocks: a message that a subscriber's queue cannot
take (it is slow or stuck) is dropped, counted and logged with back-off, so a
slow subscriber can cost subscribers messages (they see the gap in the
sequence numbers) but never stalls the workers or the collector, and queued
memory stays bounded by the high-water mark.
"""
import logging
import threading
import time
from collections.abc import Callable, Sequence

import zmq

from flowcollect.pipeline.log_backoff import LogBackoff
from flowcollect.transport import wire
from flowcollect.transport.endpoints import restrict_socket, secure_ipc_endpoint

log = logging.getLogger(__name__)


class PublishProxy(threading.Thread):
    """on_dropped(flows) hears about every message a subscriber could not take (the agent counts it)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], internal_endpoint: str, public_endpoints: Sequence[str],
                 hwm: int = 1000, curve_secret_key: bytes | None = None,
                 on_dropped: Callable[[int], None] | None = None) -> None:
        super().__init__(name="publish-proxy", daemon=True)
        self._ctx = ctx
        self._internal = internal_endpoint
        self._public = list(public_endpoints)
        self._hwm = hwm
        self._curve_secret_key = curve_secret_key
        self._on_dropped = on_dropped or (lambda flows: None)
        self._finish = threading.Event()
        self._ready = threading.Event()
        self.error: Exception | None = None
        self.dropped_flows = 0
        self._backoff = LogBackoff(time.monotonic_ns(), at_once=True)

    def start(self) -> None:
        super().start()
        self._ready.wait(5.0)
        if self.error:
            raise self.error

    def finish(self) -> None:
        """Forward what is still queued, then stop."""
        self._finish.set()

    def finish_and_join(self) -> None:
        self.finish()
        self.join()

    def run(self) -> None:
        try:
            xsub = self._ctx.socket(zmq.XSUB)
            xpub = self._ctx.socket(zmq.XPUB)
            for sock in (xsub, xpub):
                sock.setsockopt(zmq.LINGER, 2000)
            xsub.setsockopt(zmq.RCVHWM, self._hwm)
            xpub.setsockopt(zmq.SNDHWM, self._hwm)
            xpub.setsockopt(zmq.XPUB_NODROP, 1)  # EAGAIN instead of a silent drop: we count it
            if self._curve_secret_key:
                xpub.setsockopt(zmq.CURVE_SERVER, 1)
                xpub.setsockopt(zmq.CURVE_SECRETKEY, self._curve_secret_key)
            xsub.bind(self._internal)
            for endpoint in self._public:
                path = secure_ipc_endpoint(endpoint)
                xpub.bind(endpoint)
                restrict_socket(path)
        except Exception as exc:  # reported to the starting thread, which raises it
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(xsub, xpub)
        finally:
            xpub.close()
            xsub.close()

    def _loop(self, xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(xsub, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        while True:
            events = dict(poller.poll(100))
            if xpub in events:  # subscriptions travel upstream to the publishers
                xsub.send_multipart(xpub.recv_multipart())
            if xsub in events:
                self._forward(xsub.recv_multipart(copy=False), xpub)
            elif self._finish.is_set() and not events:
                return
            self._report(time.monotonic_ns())

    def _forward(self, frames: list[zmq.Frame], xpub: zmq.Socket[bytes]) -> None:
        try:
            xpub.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            try:
                count = wire.unpack_header(frames[1].bytes).count
            except (wire.WireError, IndexError):
                count = 0
            self.dropped_flows += count
            self._backoff.add(count)
            self._on_dropped(count)

    def _report(self, now_ns: int) -> None:
        report = self._backoff.due(now_ns)
        if report is not None:
            when = "just now" if report.period_s is None else f"in the last {report.period_s:.0f} s"
            log.warning("a subscriber is too slow: %d flows not delivered to subscribers %s (%d in all); "
                        "subscribers see the gap in the sequence numbers", report.count, when, self.dropped_flows)
