"""Tallies of flows and packets: what every stage, process and output counts, in one shape.

The collector adds them up into the ledger of the stop line and /metrics
(flowcollect/agent/ledger.py); workers send theirs in STATUS messages
(flowcollect/transport/wire.py), as JSON lists [flows, packets].
"""
from collections.abc import Mapping
from dataclasses import dataclass, field

from flowcollect.records.layout import Rows

# Every way a packet seen by the kernel can fail to reach an output: the ledger's causes.
LOSS_CAUSES = {
    "ring_buffer_full": "the flow map and the kernel ring buffer were both full (packets only: the flows are unknown)",
    "no_flow_map": "no flow map was installed (never after load)",
    "forward_queue_full": "the collector's queue towards a worker was full",
    "worker_died": "sent to a worker that died before it accounted for them",
    "worker_queue_full": "a worker's queue towards its outputs was full",
    "write_failed": "a JSON-lines write failed (disk full, closed pipe)",
    "send_failed": "an IPFIX or NetFlow v9 datagram could not be sent",
    "worker_socket_full": "the publishing proxy took no more from a worker",
    "subscriber_too_slow": "a subscriber's queue at the publishing proxy was full",
    "no_subscriber": "published while no subscriber wanted any zmq topic",
}


@dataclass
class Tally:
    flows: int = 0
    packets: int = 0

    def add(self, flows: Rows) -> None:
        """Count rows of FLOW_RECORD or FLOW_EXPORT (a FlowBatch's .flows)."""
        self.flows += len(flows)
        self.packets += int(flows["packets"].sum())

    def add_tally(self, other: "Tally") -> None:
        self.flows += other.flows
        self.packets += other.packets

    def to_json(self) -> list[int]:
        return [self.flows, self.packets]

    @classmethod
    def from_json(cls, value: list[int]) -> "Tally":
        flows, packets = value
        return cls(int(flows), int(packets))


@dataclass
class OutputTally:
    """What one output did with the flows handed to it: exported, or lost and why (handed = exported + lost)."""

    exported: Tally = field(default_factory=Tally)
    lost: dict[str, Tally] = field(default_factory=dict)

    def lose(self, cause: str, flows: Rows) -> None:
        self.lost.setdefault(cause, Tally()).add(flows)

    def lost_total(self) -> Tally:
        total = Tally()
        for tally in self.lost.values():
            total.add_tally(tally)
        return total

    def add_output(self, other: "OutputTally") -> None:
        self.exported.add_tally(other.exported)
        for cause, tally in other.lost.items():
            self.lost.setdefault(cause, Tally()).add_tally(tally)

    def to_json(self) -> dict[str, object]:
        return {"exported": self.exported.to_json(), "lost": {c: t.to_json() for c, t in self.lost.items()}}

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> "OutputTally":
        lost = value["lost"]
        assert isinstance(lost, dict)
        exported = value["exported"]
        assert isinstance(exported, list)
        return cls(Tally.from_json(exported), {cause: Tally.from_json(t) for cause, t in lost.items()})
