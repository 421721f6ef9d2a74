"""The collector's side of one worker: its PUSH socket, and what became of the flows sent to it.

Batches go out without ever blocking the collector while it runs: a worker
whose queue is full has its newest batches dropped and counted
(forward_queue_full); one that restarts has them held, up to the same bound,
and sent first when it is back. At stop the collector waits for room instead
(send_waiting): nothing is dropped that a live worker can still take.
"""
import collections
import dataclasses
import time

import zmq

from flowcollect.records.batch import FlowBatch
from flowcollect.records.tally import OutputTally, Tally
from flowcollect.transport import wire

CONTROL_TIMEOUT_MS = 1000


def queue_hwm(queue_max_flows: int) -> int:
    """ZeroMQ high-water marks count messages: as many as hold queue_max_flows in full-size messages."""
    return max(2, queue_max_flows // wire.MAX_MESSAGE_FLOWS)


@dataclasses.dataclass
class WorkerTotals:
    """What every instance of one worker did, the dead ones included (for the ledger)."""

    deduplicated: Tally = dataclasses.field(default_factory=Tally)
    dropped: Tally = dataclasses.field(default_factory=Tally)
    delivered: Tally = dataclasses.field(default_factory=Tally)
    outputs: dict[str, OutputTally] = dataclasses.field(default_factory=dict)

    def add(self, status: "wire.WorkerStatus | WorkerTotals") -> None:
        """Add one instance's last status, or another worker's totals."""
        self.deduplicated.add_tally(status.deduplicated)
        self.dropped.add_tally(status.dropped)
        self.delivered.add_tally(status.delivered)
        for name, output in status.outputs.items():
            self.outputs.setdefault(name, OutputTally()).add_output(output)


class WorkerLink:
    """Sends batches to worker `index` and keeps its accounts."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], index: int, endpoint: str, queue_max_flows: int,
                 linger_s: float = 3.0) -> None:
        self.index = index
        self.socket = ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, queue_hwm(queue_max_flows))
        # Queue only to a connected worker: while one restarts, its batches are
        # held here rather than piled up for a process that is gone.
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, int(linger_s * 1000))
        self.socket.bind(endpoint)
        self.publisher = wire.Publisher(0)
        self.sent = Tally()      # since the worker instance started
        self.status: wire.WorkerStatus | None = None  # the last status of the current instance
        self.dead_instances: set[int] = set()
        self.past = WorkerTotals()  # the instances that died or stopped, as they last reported
        self.lost = Tally()      # over all instances: sent to a worker that died before accounting for them
        self.needs_names = False
        self.down = False
        self.last_heard = 0.0  # monotonic time of the current instance's last STATUS
        self.held: collections.deque[FlowBatch] = collections.deque()
        self.hold_limit_flows = queue_max_flows

    def try_put(self, batch: FlowBatch) -> bool:
        """The limiter's view of the link: send now (or hold while the worker restarts), or report no room."""
        if self.down or self.held:
            if self.held_flows() + len(batch) > self.hold_limit_flows:
                return False
            self.held.append(batch)
            return True
        return self._send(batch)

    def _send(self, batch: FlowBatch, flags: int = zmq.NOBLOCK) -> bool:
        try:
            self.socket.send_multipart(wire.flows_message(self.publisher, batch), flags=flags, copy=False)
        except zmq.Again:
            return False
        self.sent.add(batch.flows)
        return True

    def send_waiting(self, batch: FlowBatch, deadline: float) -> bool:
        """Send, waiting for room until `deadline` (time.monotonic()): the stop path, which may wait."""
        while not self.down:
            if self._send(batch):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.socket.poll(int(min(left, 0.1) * 1000) + 1, zmq.POLLOUT)
        return self.try_put(batch)

    def release_held(self) -> None:
        """Send what was held while the worker was down, as far as it has room."""
        while self.held and not self.down and self._send(self.held[0]):
            self.held.popleft()

    def held_flows(self) -> int:
        return sum(len(batch) for batch in self.held)

    def held_tally(self) -> Tally:
        tally = Tally()
        for batch in self.held:
            tally.add(batch.flows)
        return tally

    def send_control(self, frames: list[wire.Buffer], timeout_ms: int = CONTROL_TIMEOUT_MS) -> bool:
        """Control messages are small and rare: wait a little for room rather than lose one."""
        if not self.socket.poll(timeout_ms, zmq.POLLOUT):
            return False
        try:
            self.socket.send_multipart(frames, flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def update_status(self, status: wire.WorkerStatus) -> None:
        if status.instance not in self.dead_instances:
            self.status = status
            self.down = False
            self.last_heard = time.monotonic()  # the supervisor's heartbeat

    def totals(self) -> WorkerTotals:
        """What this worker did over all its instances, the current one as it last reported."""
        totals = WorkerTotals()
        totals.add(self.past)
        if self.status is not None:
            totals.add(self.status)
        return totals

    def instance_died(self) -> Tally:
        """Count what the dead instance never accounted for; start afresh for the next one."""
        accounted = self.status.accounted() if self.status is not None else Tally()
        lost = Tally(max(0, self.sent.flows - accounted.flows), max(0, self.sent.packets - accounted.packets))
        self.lost.add_tally(lost)
        self.sent = Tally()
        if self.status is not None:
            self.dead_instances.add(self.status.instance)
            self.past.add(self.status)
        self.status = None
        self.down = True
        return lost
