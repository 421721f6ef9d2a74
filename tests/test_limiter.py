"""Capacity limiter: drops instead of blocking, counts and logs (the seed's two limiter cases)."""
import logging

import numpy as np

from flowcollect.flow import CapacityLimiter
from flowcollect.pipeline.channel import Channel
from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from tests.channels import receive_timeout, require_closed, start
from tests.fakes import FakeClock

LIMITER_LEN = 50


def single_flow(i):
    rows = np.zeros(1, dtype=layout.FLOW_EXPORT)
    rows["src_port"] = i
    return FlowBatch(flows=rows)


def limited_pipe(limiter=None):
    limiter = limiter or CapacityLimiter()
    inputs, outputs = Channel(1), Channel(LIMITER_LEN)
    worker = start(limiter.limit, inputs, outputs)
    return limiter, inputs, outputs, worker


def test_passes_everything_while_there_is_room():
    # GIVEN a limiter in front of a queue of 50
    limiter, inputs, outputs, worker = limited_pipe()
    # WHEN it gets fewer batches than that
    for i in range(33):
        inputs.put(single_flow(i))
    inputs.close()
    worker.join(5)
    # THEN every one arrives, in order, and not one more
    for i in range(33):
        batch = receive_timeout(outputs)
        assert len(batch) == 1 and batch.flows["src_port"][0] == i
    require_closed(outputs)
    assert limiter.dropped_flows == 0


def test_drops_and_counts_what_does_not_fit_without_blocking():
    # GIVEN a limiter in front of a stalled queue of 50
    limiter, inputs, outputs, worker = limited_pipe()
    # WHEN 100 batches are pushed without pause
    sent = 100
    for i in range(sent):
        inputs.put(single_flow(i))
    inputs.close()
    # THEN the limiter never blocked: it has taken all of them and returned
    worker.join(5)
    assert not worker.is_alive()
    # AND the first ones that fit arrive in order, the rest are dropped and counted
    received = [int(receive_timeout(outputs).flows["src_port"][0]) for _ in range(LIMITER_LEN)]
    require_closed(outputs)
    assert received == list(range(LIMITER_LEN))
    assert limiter.dropped_flows == sent - LIMITER_LEN
    assert sent == len(received) + limiter.dropped_flows


def test_counts_flows_not_batches():
    limiter = CapacityLimiter()
    full = Channel(1)
    full.put(single_flow(0))
    big = FlowBatch(flows=np.zeros(7, dtype=layout.FLOW_EXPORT))
    assert limiter.offer(big, full) is False
    assert limiter.dropped_flows == 7


def test_logs_drops_with_a_back_off_from_one_minute_to_one_hour(caplog):
    # GIVEN a limiter with a fake clock, in front of a full queue
    clock = FakeClock()
    limiter = CapacityLimiter(mono_clock=clock)
    full = Channel(1)
    full.put(single_flow(0))
    caplog.set_level(logging.WARNING, logger="flowcollect.pipeline.limiter")

    def drop_then_wait(minutes):
        limiter.offer(single_flow(1), full)
        clock.advance(minutes * 60)
        limiter.tick()
        messages = [r.getMessage() for r in caplog.records]
        caplog.clear()
        return messages

    # WHEN drops happen in every window
    # THEN the first is logged at once
    (first,) = drop_then_wait(0.5)
    assert first.startswith("limiter dropped 1 flows just now:")
    # AND then one line per window, each window twice the last: 1, 2, 4, ... 32 min, then 1 h at most
    logged = drop_then_wait(0.5)
    assert len(logged) == 1
    assert logged[0].startswith("limiter dropped 1 flows in the last 1 min:")
    for knob in ("queue_max_flows", "--workers", "cache_active_timeout"):
        assert knob in logged[0]
    for period in ("2 min", "4 min", "8 min", "16 min", "32 min", "1 h", "1 h"):
        minutes = 60 if period == "1 h" else int(period.split()[0])
        assert drop_then_wait(minutes - 0.01) == []
        (message,) = drop_then_wait(0.01)
        assert message.startswith(f"limiter dropped 2 flows in the last {period}:"), message

    # WHEN a whole window passes without drops, THEN the next drop is logged at once again
    clock.advance(3600)
    limiter.tick()
    assert caplog.records == []
    (message,) = drop_then_wait(1)
    assert message.startswith("limiter dropped 1 flows just now:")
    assert limiter.dropped_flows == 2 + 2 * 7 + 1
