"""A worker publishes only the topics someone subscribes to."""
import time

import numpy as np
import zmq

from flowcollect import records, wire
from flowcollect.exporters.zmq_publish import ZmqPublisher


def test_topics_follow_the_subscriptions(tmp_path):
    ctx = zmq.Context()
    proxy_side = ctx.socket(zmq.XSUB)
    endpoint = f"ipc://{tmp_path}/publish.sock"
    proxy_side.bind(endpoint)
    publisher = ZmqPublisher(ctx, endpoint, 1)
    try:
        batch = records.FlowBatch(np.zeros(4, dtype=records.FLOW_EXPORT))
        assert not publisher.wants(wire.TOPIC_BINARY) and not publisher.wants(wire.TOPIC_JSON)
        proxy_side.send(b"\x01" + wire.TOPIC_BINARY)  # a subscriber of the binary topic appears
        deadline = time.monotonic() + 5
        while not publisher.wants(wire.TOPIC_BINARY) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert publisher.wants(wire.TOPIC_BINARY) and not publisher.wants(wire.TOPIC_JSON)
        publisher.publish(batch, b"{}\n" * 4)
        assert publisher.published_flows == {"binary": 4, "json": 0}
        topic, header, _ = wire.split(proxy_side.recv_multipart(), topic=True)
        assert topic == wire.TOPIC_BINARY and header.count == 4
        proxy_side.send(b"\x00" + wire.TOPIC_BINARY)  # and leaves
        deadline = time.monotonic() + 5
        while publisher.wants(wire.TOPIC_BINARY) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not publisher.wants(wire.TOPIC_BINARY)
    finally:
        publisher.close()
        proxy_side.close(linger=0)
        ctx.term()
