"""The collector's side of one worker: its PUSH socket, and what became of the flows sent to it."""
import collections

import zmq

from flowcollect.records.batch import FlowBatch
from flowcollect.transport import wire

CONTROL_TIMEOUT_MS = 1000


class WorkerLink:
    """Sends batches to worker `index` without ever blocking the collector, and keeps its accounts."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], index: int, endpoint: str, hwm: int,
                 linger_s: float = 3.0) -> None:
        self.index = index
        self.socket = ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        # Queue only to a connected worker: while one restarts, its batches are
        # dropped and counted here rather than piled up for a process that is gone.
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.LINGER, int(linger_s * 1000))
        self.socket.bind(endpoint)
        self.publisher = wire.Publisher(0)
        self.sent_flows = 0      # since the worker instance started
        self.status: wire.WorkerStatus | None = None  # the last status of the current instance
        self.dead_instances: set[int] = set()
        self.lost_flows = 0      # over all instances: sent to a worker that died before exporting them
        self.needs_names = False
        # While the worker restarts, its batches wait here (up to the queue length)
        # instead of being dropped; they go out first once the new instance says hello.
        self.down = False
        self.held: collections.deque[FlowBatch] = collections.deque()
        self.hold_limit = hwm

    def try_put(self, batch: FlowBatch) -> bool:
        """The limiter's view of the link: send now (or hold while the worker restarts), or report no room."""
        if self.down or self.held:
            if len(self.held) >= self.hold_limit:
                return False
            self.held.append(batch)
            return True
        return self._send(batch)

    def _send(self, batch: FlowBatch) -> bool:
        try:
            self.socket.send_multipart(wire.flows_message(self.publisher, batch), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        self.sent_flows += len(batch)
        return True

    def release_held(self) -> None:
        """Send what was held while the worker was down, as far as it has room."""
        while self.held and not self.down and self._send(self.held[0]):
            self.held.popleft()

    def held_flows(self) -> int:
        return sum(len(batch) for batch in self.held)

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

    def exported_flows(self) -> int:
        return self.status.exported_flows if self.status is not None else 0

    def instance_died(self) -> int:
        """Count what the dead instance never accounted for; start afresh for the next one."""
        accounted = self.status.accounted() if self.status is not None else 0
        lost = max(0, self.sent_flows - accounted)
        self.lost_flows += lost
        self.sent_flows = 0
        if self.status is not None:
            self.dead_instances.add(self.status.instance)
        self.status = None
        self.down = True
        return lost
