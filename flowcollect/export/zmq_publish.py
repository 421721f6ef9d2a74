"""Publish flow batches on the public ZeroMQ topics (binary and JSON), through the proxy.

A worker's XPUB socket connects to the collector's publishing proxy. It is an
XPUB rather than a PUB so that the worker hears the subscriptions (the proxy
passes them on): a topic nobody subscribes to is not built at all, which
spares the JSON encoding, most of a worker's time, when only binary
subscribers listen. Sends never block: a message the proxy cannot take now
is dropped and counted here (lost: worker_socket_full); its sequence number
is used anyway, so subscribers see the gap. Each topic is an output of its own
in the ledger ("zmq:flows.bin", "zmq:flows.json"): a batch nobody wanted on a
topic is lost there as no_subscriber.
"""
import logging

import zmq

from flowcollect.export.prometheus import health
from flowcollect.pipeline.log_backoff import LossLog
from flowcollect.records.batch import FlowBatch
from flowcollect.records.tally import OutputTally
from flowcollect.transport import wire

TOPIC_NAMES = {topic: name for name, topic in wire.TOPICS.items()}
log = logging.getLogger(__name__)


def topic_output(topic: bytes) -> str:
    """The output a topic is in the ledger: zmq:flows.bin, zmq:flows.json."""
    return f"zmq:{topic.decode()}"


class ZmqPublisher:
    """The zmq outputs of one worker, as a sink."""

    name = "zmq"

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, publisher_id: int, hwm: int = 1000) -> None:
        self.socket = ctx.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 3000)  # a stopping worker still delivers what it published
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.connect(endpoint)
        self.publisher = wire.Publisher(publisher_id)
        self._subscriptions: dict[bytes, int] = {}  # topic prefix -> how many times subscribed
        self.topics = {topic: OutputTally() for topic in TOPIC_NAMES}
        self._losses = LossLog(log, "not published: the publishing proxy took no more (worker_socket_full)")

    def _follow_subscriptions(self) -> None:
        while True:
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not message:
                continue
            prefix, change = message[1:], 1 if message[0] == 1 else -1
            count = self._subscriptions[prefix] = max(0, self._subscriptions.get(prefix, 0) + change)
            log.debug("publisher %d: %r now has %d subscription(s)", self.publisher.publisher,
                      prefix.decode(errors="replace"), count)

    def wants(self, topic: bytes) -> bool:
        """Does any subscriber want this topic now?"""
        self._follow_subscriptions()
        return any(count and topic.startswith(prefix) for prefix, count in self._subscriptions.items())

    def wants_json(self) -> bool:
        return self.wants(wire.TOPIC_JSON)

    def write(self, batch: FlowBatch, lines: memoryview | None = None) -> bool:
        """Send the batch on the binary topic and its JSON lines on the JSON topic, where subscribed."""
        sent = True
        for topic, name in TOPIC_NAMES.items():
            tally = self.topics[topic]
            if not self.wants(topic) or (topic == wire.TOPIC_JSON and lines is None):
                tally.lose("no_subscriber", batch.flows)
                continue
            if topic == wire.TOPIC_BINARY:
                frames = wire.flows_message(self.publisher, batch, topic=wire.TOPIC_BINARY)
            else:
                assert lines is not None
                frames = wire.json_message(self.publisher, lines, len(batch), batch.packets())
            try:
                self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                tally.exported.add(batch.flows)
                health.exported(health.zmq_label(name), len(batch), batch.packets())
            except zmq.Again:
                sent = False
                tally.lose("worker_socket_full", batch.flows)
                health.lost("worker_socket_full", len(batch), batch.packets())
                self._losses.lost(batch.packets(), len(batch))
        return sent

    def idle(self) -> None:
        """Hear subscribers come and go while no flows do (a topic is built only when wanted)."""
        self._follow_subscriptions()
        self._losses.tick()

    def reopen(self) -> None:
        """Nothing to reopen: the socket stays connected."""

    def counters(self) -> dict[str, OutputTally]:
        return {topic_output(topic): tally for topic, tally in self.topics.items()}

    def close(self) -> None:
        self.socket.close()
