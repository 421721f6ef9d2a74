"""The one public endpoint: an XSUB/XPUB proxy between the workers and subscribers.

Workers publish to the proxy's internal XSUB; subscribers connect to its
XPUB. The XPUB side never blocks: a message that a subscriber's queue cannot
take (it is slow or stuck) is dropped, counted and logged with back-off, so a
slow subscriber can cost subscribers messages (they see the gap in the
sequence numbers) but never stalls the workers or the collector. Messages
carry at most wire.MAX_MESSAGE_FLOWS flows, so the high-water mark bounds a
never-reading subscriber's queue in bytes: SUBSCRIBER_QUEUE_BYTES.
"""
import logging
import threading
from collections.abc import Callable, Sequence

import zmq

from flowcollect.pipeline.log_backoff import LossLog
from flowcollect.records.tally import Tally
from flowcollect.settings.errors import ConfigError
from flowcollect.transport import wire
from flowcollect.transport.endpoints import restrict_socket, secure_ipc_endpoint

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_BYTES = 64 << 20
# The largest message: a JSON one (up to ~500 bytes a flow) of MAX_MESSAGE_FLOWS flows.
_LARGEST_MESSAGE_BYTES = wire.MAX_MESSAGE_FLOWS * 512
SUBSCRIBER_HWM = max(1, SUBSCRIBER_QUEUE_BYTES // _LARGEST_MESSAGE_BYTES)


class PublishProxy(threading.Thread):
    """on_dropped(flows, packets) hears about every message a subscriber could not take (the agent counts it).

    forwarded and dropped: by topic, what reached the subscribers and what did not.
    """

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], internal_endpoint: str, public_endpoints: Sequence[str],
                 hwm: int = SUBSCRIBER_HWM, curve_secret_key: bytes | None = None,
                 on_dropped: Callable[[int, int], None] | None = None) -> None:
        super().__init__(name="publish-proxy", daemon=True)
        self._ctx = ctx
        self._internal = internal_endpoint
        self._public = list(public_endpoints)
        self._hwm = hwm
        self._curve_secret_key = curve_secret_key
        self._on_dropped = on_dropped or (lambda flows, packets: None)
        self._finish = threading.Event()
        self._ready = threading.Event()
        self.error: Exception | None = None
        self.forwarded: dict[bytes, Tally] = {}
        self.dropped: dict[bytes, Tally] = {}
        self._losses = LossLog(log, "not delivered to subscribers: a subscriber is too slow "
                                    "(subscribers see the gap in the sequence numbers)")

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
                try:
                    xpub.bind(endpoint)
                except zmq.ZMQError as exc:  # a tcp port in use, an address not of this host
                    raise ConfigError(f"zmq output {endpoint}: {exc.strerror}") from None
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
            self._losses.tick()

    def _forward(self, frames: list[zmq.Frame], xpub: zmq.Socket[bytes]) -> None:
        try:
            header = wire.unpack_header(frames[1].bytes)
            topic = frames[0].bytes
        except (wire.WireError, IndexError):
            return  # not ours: nothing to forward
        try:
            xpub.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            self.forwarded.setdefault(topic, Tally()).add_tally(Tally(header.count, header.packets))
        except zmq.Again:
            self.dropped.setdefault(topic, Tally()).add_tally(Tally(header.count, header.packets))
            self._losses.lost(header.packets, header.count)
            self._on_dropped(header.count, header.packets)
