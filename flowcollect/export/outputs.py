"""A worker's outputs, fed one decorated batch at a time.

Built from the worker's export settings (ExportSpec, written by the collector
from the agent's settings). The zmq outputs are served by the collector's
publishing proxy, to which each worker publishes. The JSON lines of a batch
are encoded once and shared by every sink that wants them (JSON-lines files,
the JSON topic). Sinks count and log their own failures; none of them raises.
"""
from collections.abc import Sequence
from dataclasses import dataclass

import zmq

from flowcollect.export.ipfix import IpfixOptions
from flowcollect.export.sink import Sink
from flowcollect.records.batch import FlowBatch
from flowcollect.records.json_lines import encode_lines
from flowcollect.records.tally import OutputTally
from flowcollect.settings.values import OutputSpec


@dataclass(frozen=True)
class FlowMetricsOptions:
    """The Prometheus flow counters of one worker: their labels, and this worker's share of the series cap."""

    attributes: tuple[str, ...]
    max_series: int


@dataclass(frozen=True)
class ExportSpec:
    """Everything a worker needs to build its outputs."""

    exporter_id: int                   # 1..N: the worker's publisher id, IPFIX observation domain, v9 source id
    outputs: tuple[OutputSpec, ...]    # jsonl, ipfix and netflow9 outputs (zmq outputs go through publish_endpoint)
    ipfix: IpfixOptions                # for the netflow9 outputs too
    publish_endpoint: str | None       # the collector's publishing proxy, when there is a zmq output
    publish_hwm: int
    jsonl_lock: str | None             # one flock for every worker writing JSON lines (export/jsonl.py)
    flow_metrics: FlowMetricsOptions | None


class Outputs:
    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def export(self, batch: FlowBatch) -> None:
        lines = encode_lines(batch) if any(sink.wants_json() for sink in self.sinks) else None
        for sink in self.sinks:
            sink.write(batch, lines)

    def idle(self) -> None:
        for sink in self.sinks:
            sink.idle()

    def reopen(self) -> None:
        for sink in self.sinks:
            sink.reopen()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def counters(self) -> dict[str, OutputTally]:
        """Every output's tally (two sinks of one output, e.g. a file given twice, add up)."""
        merged: dict[str, OutputTally] = {}
        for sink in self.sinks:
            for name, tally in sink.counters().items():
                merged.setdefault(name, OutputTally()).add_output(tally)
        return merged


def build_outputs(spec: ExportSpec, ctx: zmq.Context[zmq.Socket[bytes]]) -> Outputs:
    """The sinks of `spec`: files and collectors in the order given, then the zmq topics, then Prometheus."""
    sinks: list[Sink] = []
    for output in spec.outputs:
        if output.kind == "jsonl":
            from flowcollect.export.jsonl import JsonLinesSink
            sinks.append(JsonLinesSink(output.target, lock_path=spec.jsonl_lock))
        elif output.kind in ("ipfix", "netflow9"):
            from flowcollect.export.ipfix import IpfixEncoder
            from flowcollect.export.netflow9 import NetflowV9Encoder
            from flowcollect.export.udp_sink import UdpSink
            protocol = IpfixEncoder if output.kind == "ipfix" else NetflowV9Encoder
            encoder = protocol(spec.exporter_id, mtu=spec.ipfix.mtu,
                               template_refresh_seconds=spec.ipfix.template_refresh_seconds,
                               template_refresh_messages=spec.ipfix.template_refresh_messages,
                               features=spec.ipfix.features)
            sinks.append(UdpSink(output.target, encoder))
    if spec.publish_endpoint:
        from flowcollect.export.zmq_publish import ZmqPublisher
        sinks.append(ZmqPublisher(ctx, spec.publish_endpoint, spec.exporter_id, hwm=spec.publish_hwm))
    if spec.flow_metrics is not None:
        from flowcollect.export.prometheus.flow_counters import FlowMetrics
        sinks.append(FlowMetrics(spec.flow_metrics.attributes, spec.flow_metrics.max_series))
    return Outputs(sinks)
