"""The collector's side of a worker link: never blocks, holds while a worker restarts,
and counts what a dead worker never accounted for."""
import numpy as np
import zmq

from flowcollect.agent.worker_link import WorkerLink
from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from flowcollect.records.tally import Tally
from flowcollect.transport import wire


def batch(n):
    return FlowBatch(np.zeros(n, dtype=layout.FLOW_EXPORT))


def test_no_worker_connected_means_no_room_not_a_blocked_collector(tmp_path):
    ctx = zmq.Context()
    link = WorkerLink(ctx, 0, f"ipc://{tmp_path}/shard.sock", queue_max_flows=4)
    try:
        assert link.try_put(batch(3)) is False  # IMMEDIATE: nothing queued for nobody
        assert link.sent.flows == 0
    finally:
        link.socket.close(linger=0)
        ctx.term()


def test_held_while_down_then_released_in_order_and_lost_flows_counted(tmp_path):
    ctx = zmq.Context()
    endpoint = f"ipc://{tmp_path}/shard.sock"
    link = WorkerLink(ctx, 0, endpoint, queue_max_flows=6)
    worker = ctx.socket(zmq.PULL)
    worker.connect(endpoint)
    try:
        link.update_status(wire.WorkerStatus(worker=0, instance=1))
        deadline = 50
        while not link.try_put(batch(5)) and deadline:  # the connection completes
            worker.poll(20)
            deadline -= 1
        assert link.sent.flows == 5
        link.update_status(wire.WorkerStatus(worker=0, instance=1, delivered=Tally(2, 0), deduplicated=Tally(1, 0),
                                             dropped=Tally(0, 0)))

        assert link.instance_died().flows == 2  # 5 sent, 3 accounted for
        assert link.lost.flows == 2 and link.down
        # held, up to queue_max_flows
        assert [link.try_put(batch(n)) for n in (1, 2, 3, 4)] == [True, True, True, False]
        assert link.held_flows() == 6

        # a late word from the dead instance
        link.update_status(wire.WorkerStatus(worker=0, instance=1, delivered=Tally(99, 0)))
        assert link.down and link.status is None
        link.update_status(wire.WorkerStatus(worker=0, instance=2))  # the new one says hello
        counts = []
        for _ in range(20):  # the worker reads; the link sends what it held as room appears
            link.release_held()
            if worker.poll(100):
                counts.append(wire.split(worker.recv_multipart())[1].count)
            if len(counts) == 4:
                break
        assert counts == [5, 1, 2, 3]
        assert not link.held and link.sent.flows == 6
    finally:
        worker.close(linger=0)
        link.socket.close(linger=0)
        ctx.term()
