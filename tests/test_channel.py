"""The bounded channel between stages: Go-channel semantics over threads."""
import threading
import time

import pytest

from flowcollect.pipeline.channel import Channel, Closed, forward_each
from tests.channels import receive_timeout, require_closed, start


def test_items_come_out_in_order_and_capacity_bounds_try_put():
    ch = Channel(2)
    assert (ch.capacity, len(ch)) == (2, 0)
    assert ch.try_put("a") and ch.try_put("b")
    # GIVEN a full channel, THEN try_put refuses without blocking
    assert ch.try_put("c") is False
    assert len(ch) == 2
    assert [ch.get(), ch.get()] == ["a", "b"]


def test_put_waits_for_room():
    ch = Channel(1)
    ch.put(1)
    with pytest.raises(TimeoutError):
        ch.put(2, timeout=0.05)
    threading.Timer(0.05, ch.get).start()
    ch.put(3, timeout=5)
    assert ch.get(timeout=1) == 3


def test_get_times_out_when_nothing_comes():
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        Channel(1).get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.05


def test_close_lets_consumers_drain_then_ends_iteration():
    # GIVEN a channel with two items, closed
    ch = Channel(5)
    ch.put(1)
    ch.put(2)
    ch.close()
    # THEN what was queued comes out, then the end
    assert list(ch) == [1, 2]
    with pytest.raises(Closed):
        ch.get(timeout=0)
    # AND nothing more may go in
    with pytest.raises(Closed):
        ch.put(3)
    with pytest.raises(Closed):
        ch.try_put(3)
    ch.close()


def test_close_wakes_a_waiting_consumer_and_a_waiting_producer():
    empty, full = Channel(1), Channel(1)
    full.put("x")
    results = []

    def consume():
        try:
            empty.get()
        except Closed:
            results.append("consumer")

    def produce():
        try:
            full.put("y")
        except Closed:
            results.append("producer")

    threads = [start(consume), start(produce)]
    time.sleep(0.05)
    empty.close()
    full.close()
    for t in threads:
        t.join(5)
    assert sorted(results) == ["consumer", "producer"]


def test_forward_each_passes_on_no_none_and_no_empty_result_then_closes():
    inputs, outputs = Channel(10), Channel(10)
    start(forward_each, lambda item: None if item == "drop" else item.upper(), inputs, outputs)
    for item in ("a", "drop", "", "b"):
        inputs.put(item)
    inputs.close()
    assert [receive_timeout(outputs), receive_timeout(outputs)] == ["A", "B"]
    require_closed(outputs)
