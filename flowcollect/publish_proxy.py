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

import zmq

from flowcollect import health, wire
from flowcollect.runtime import restrict_socket, secure_ipc_endpoint

log = logging.getLogger(__name__)
LOG_PERIOD_S = (60.0, 3600.0)


class PublishProxy(threading.Thread):
    def __init__(self, ctx, internal_endpoint, public_endpoints, hwm=1000, curve_secret_key=None):
        super().__init__(name="publish-proxy", daemon=True)
        self._ctx = ctx
        self._internal = internal_endpoint
        self._public = list(public_endpoints)
        self._hwm = hwm
        self._curve_secret_key = curve_secret_key
        self._finish = threading.Event()
        self._ready = threading.Event()
        self.error = None
        self.forwarded_messages = 0
        self.dropped_messages = 0
        self.dropped_flows = 0
        self._unreported = 0
        self._log_period = LOG_PERIOD_S[0]
        self._window_start = time.monotonic()
        self._quiet = True

    def start(self):
        super().start()
        self._ready.wait(5.0)
        if self.error:
            raise self.error

    def finish(self):
        """Forward what is still queued, then stop."""
        self._finish.set()

    def run(self):
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
        except Exception as exc:  # reported to the starting thread
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(xsub, xpub)
        finally:
            xpub.close()
            xsub.close()

    def _loop(self, xsub, xpub):
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
            self._report(time.monotonic())

    def _forward(self, frames, xpub):
        try:
            xpub.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            self.forwarded_messages += 1
        except zmq.Again:
            self.dropped_messages += 1
            try:
                count = wire.unpack_header(frames[1].bytes).count
            except (wire.WireError, IndexError):
                count = 0
            self.dropped_flows += count
            self._unreported += count
            health.limiter_dropped(count, stage="subscribers")

    def _report(self, now):
        """The first drop is logged at once; later ones once per window, the window doubling
        from one minute to one hour while drops go on (back to one minute after a quiet one)."""
        if self._unreported and self._quiet:
            self._log_drops(self._unreported, "just now")
            self._quiet = False
            self._window_start = now
            return
        if now - self._window_start < self._log_period:
            return
        if self._unreported:
            self._log_drops(self._unreported, f"in the last {self._log_period:.0f} s")
            self._log_period = min(2 * self._log_period, LOG_PERIOD_S[1])
        else:
            self._log_period = LOG_PERIOD_S[0]
            self._quiet = True
        self._window_start = now

    def _log_drops(self, flows, when):
        log.warning("a subscriber is too slow: %d flows not delivered to subscribers %s (%d in all); "
                    "subscribers see the gap in the sequence numbers", flows, when, self.dropped_flows)
        self._unreported = 0
