"""Publish flow batches on the public ZeroMQ topics (binary and JSON), through the proxy.

A worker's PUB socket connects to the collector's publishing proxy. Sends
never block: a message the proxy cannot take now is dropped and counted here;
its sequence number is used anyway, so subscribers see the gap.
"""
import zmq

from flowcollect import health, wire


class ZmqPublisher:
    def __init__(self, ctx, endpoint, publisher_id, hwm=1000):
        self.socket = ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 3000)  # a stopping worker still delivers what it published
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.connect(endpoint)
        self.publisher = wire.Publisher(publisher_id)
        # flows per topic: {"binary": n, "json": n}
        self.published_flows = dict.fromkeys(wire.TOPICS, 0)
        self.dropped_flows = dict.fromkeys(wire.TOPICS, 0)

    def publish(self, batch, json_lines):
        """Send the batch on the binary topic and its JSON lines on the JSON topic."""
        for topic, frames in (("binary", wire.flows_message(self.publisher, batch, topic=wire.TOPIC_BINARY)),
                              ("json", wire.json_message(self.publisher, json_lines, len(batch)))):
            try:
                self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                self.published_flows[topic] += len(batch)
                health.exported(f"zmq_{topic}", len(batch))
            except zmq.Again:
                self.dropped_flows[topic] += len(batch)
                health.limiter_dropped(len(batch), stage=f"zmq_{topic}")

    def close(self):
        self.socket.close()
