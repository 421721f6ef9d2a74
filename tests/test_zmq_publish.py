"""A worker publishes only the topics someone subscribes to, and hears about
subscribers that were there before it started (a restarted worker)."""
import time

import numpy as np
import zmq

from flowcollect.export.zmq_publish import ZmqPublisher
from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from flowcollect.transport import wire
from flowcollect.transport.publish_proxy import PublishProxy


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_topics_follow_the_subscriptions_through_the_proxy(tmp_path):
    ctx = zmq.Context()
    internal, public = f"ipc://{tmp_path}/publish.sock", f"ipc://{tmp_path}/flows.sock"
    proxy = PublishProxy(ctx, internal, [public])
    proxy.start()
    subscriber = ctx.socket(zmq.SUB)
    subscriber.connect(public)
    subscriber.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_BINARY)
    # The subscription has reached the proxy once a first worker hears of it; the worker
    # under test starts after that one is gone, as a restarted worker does.
    first = ZmqPublisher(ctx, internal, 1)
    assert wait_until(lambda: first.wants(wire.TOPIC_BINARY))
    first.close()
    publisher = ZmqPublisher(ctx, internal, 1)
    try:
        assert wait_until(lambda: publisher.wants(wire.TOPIC_BINARY))
        assert not publisher.wants(wire.TOPIC_JSON)
        publisher.write(FlowBatch(np.zeros(4, dtype=layout.FLOW_EXPORT)), b"{}\n" * 4)
        tallies = publisher.counters()
        assert tallies["zmq:flows.bin"].exported.flows == 4
        unwanted = tallies["zmq:flows.json"]
        assert unwanted.exported.flows == 0 and unwanted.lost["no_subscriber"].flows == 4
        assert subscriber.poll(5000)
        topic, header, _ = wire.split(subscriber.recv_multipart(), topic=True)
        assert topic == wire.TOPIC_BINARY and header.count == 4
        subscriber.close(linger=0)  # the only subscriber leaves
        assert wait_until(lambda: not publisher.wants(wire.TOPIC_BINARY))
    finally:
        publisher.close()
        proxy.finish()
        proxy.join()
        ctx.term()
