"""The ledger: what became of every packet the kernel saw, for the stop line.

    packets_seen = packets_sampled_out + packets_deduplicated + packets_exported + packets_lost

`packets_seen` counts frames as flows do (a GSO packet: its segments;
bpf/flows.bpf.c). Losses are split by cause (records/tally.py LOSS_CAUSES):
in the kernel (ring_buffer_full: those have no flows), on the way to and in
the workers, and in each output. Every output takes every delivered flow, so
each has its own account (`outputs`); the top-level figures are those of the
output that lost the most, so that one line tells the worst. The same for
flows, from the flows evicted to user space on.
"""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flowcollect.agent.worker_link import WorkerLink, WorkerTotals
from flowcollect.export.zmq_publish import topic_output
from flowcollect.records.tally import OutputTally, Tally
from flowcollect.transport.publish_proxy import PublishProxy


@dataclass
class Ledger:
    seen: int                      # packets (frames) the TC programs saw
    sampled_out: int
    evicted: Tally                 # flows (and their packets) that reached user space
    deduplicated: Tally
    pipeline_lost: dict[str, Tally]  # before the outputs
    delivered: Tally               # what the workers handed to their outputs
    outputs: dict[str, OutputTally] = field(default_factory=dict)
    kernel: Mapping[str, int] = field(default_factory=dict)  # the kernel counters, as read at stop
    table: Mapping[str, int] = field(default_factory=dict)   # the flow table (FlowKernel.table_summary)

    def worst_output(self) -> OutputTally:
        """The account of the output that lost the most packets; with no output, everything delivered.

        A zmq topic nobody ever subscribed to is left out while another output took flows.
        """
        candidates = [output for output in self.outputs.values()
                      if output.exported.packets or set(output.lost) - {"no_subscriber"}]
        if not candidates:
            return max(self.outputs.values(), key=_lost_packets, default=OutputTally(exported=self.delivered))
        return max(candidates, key=_lost_packets)

    def fields(self) -> dict[str, object]:
        """The stop line's fields."""
        worst = self.worst_output()
        lost = {cause: tally for cause, tally in self.pipeline_lost.items() if tally.packets or tally.flows}
        for cause, tally in worst.lost.items():
            lost.setdefault(cause, Tally()).add_tally(tally)
        packets_lost = sum(t.packets for t in lost.values())
        accounted = self.sampled_out + self.deduplicated.packets + worst.exported.packets + packets_lost
        out: dict[str, object] = {
            "packets_seen": self.seen,
            "packets_exported": worst.exported.packets,
            "packets_sampled_out": self.sampled_out,
            "packets_deduplicated": self.deduplicated.packets,
            "packets_lost": packets_lost,
            "lost_by_cause": {cause: t.packets for cause, t in lost.items()},
            "flows_evicted": self.evicted.flows,
            "flows_exported": worst.exported.flows,
            "flows_deduplicated": self.deduplicated.flows,
            "flows_lost": sum(t.flows for t in lost.values()),
            "flows_lost_by_cause": {cause: t.flows for cause, t in lost.items() if cause not in _KERNEL_CAUSES},
            "outputs": {name: _output_fields(output) for name, output in self.outputs.items()},
            "kernel": dict(self.kernel),
            "table": dict(self.table),
        }
        if accounted != self.seen:  # a bug of ours, never a loss to hide
            out["packets_unaccounted"] = self.seen - accounted
        return out


_KERNEL_CAUSES = ("ring_buffer_full", "no_flow_map")


def describe(fields: Mapping[str, object]) -> str:
    """The stop line's words for Ledger.fields(): packets seen, exported, ..., lost (by cause)."""
    lost = fields["lost_by_cause"]
    causes = ""
    if isinstance(lost, dict) and any(lost.values()):
        causes = " (" + ", ".join(f"{cause} {n}" for cause, n in lost.items() if n) + ")"
    return (f"{fields['packets_seen']} packets seen, {fields['packets_exported']} exported, "
            f"{fields['packets_sampled_out']} sampled out, {fields['packets_deduplicated']} deduplicated, "
            f"{fields['packets_lost']} lost{causes}")


def _lost_packets(output: OutputTally) -> int:
    return output.lost_total().packets


def _output_fields(output: OutputTally) -> dict[str, object]:
    lost = output.lost_total()
    return {"packets_exported": output.exported.packets, "packets_lost": lost.packets,
            "flows_exported": output.exported.flows, "flows_lost": lost.flows,
            "lost_by_cause": {cause: t.packets for cause, t in output.lost.items()}}


def account(kernel: Mapping[str, int], evicted: Tally, forward_dropped: Tally, links: Sequence[WorkerLink],
            proxy: PublishProxy | None, table: Mapping[str, int]) -> Ledger:
    """The ledger from the kernel counters, the collector's counts, every worker's and the proxy's."""
    totals = WorkerTotals()
    worker_died, held = Tally(), Tally()
    for link in links:
        totals.add(link.totals())
        worker_died.add_tally(link.lost)
        held.add_tally(link.held_tally())  # still held at stop: the worker never came back
    forward = Tally(forward_dropped.flows, forward_dropped.packets)
    forward.add_tally(held)
    outputs = totals.outputs
    if proxy is not None:  # what the workers published, the proxy could not give every subscriber
        for topic, dropped in proxy.dropped.items():
            output = outputs.setdefault(topic_output(topic), OutputTally())
            output.exported.flows -= dropped.flows
            output.exported.packets -= dropped.packets
            output.lost.setdefault("subscriber_too_slow", Tally()).add_tally(dropped)
    return Ledger(
        seen=int(kernel.get("packets_seen", 0)),
        sampled_out=int(kernel.get("sampled_out", 0)),
        evicted=evicted,
        deduplicated=totals.deduplicated,
        pipeline_lost={
            "ring_buffer_full": Tally(0, int(kernel.get("ringbuf_reserve_failed", 0))),
            "no_flow_map": Tally(0, int(kernel.get("no_flow_map", 0))),
            "forward_queue_full": forward,
            "worker_died": worker_died,
            "worker_queue_full": totals.dropped,
        },
        delivered=totals.delivered,
        outputs=outputs,
        kernel=kernel,
        table=table,
    )
