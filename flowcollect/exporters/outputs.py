"""A worker's outputs, fed one decorated batch at a time.

Built from the worker spec (flowcollect/collector.py writes it from the
settings). The zmq outputs are served by the collector's publishing proxy,
to which each worker publishes. The JSON lines of a batch are encoded once
and shared by the JSON-lines files and the JSON topic. Sinks count and log
their own failures; none of them raises.
"""
from flowcollect import wire
from flowcollect.config import output_spec
from flowcollect.exporters import json_records


class Outputs:
    def __init__(self, sinks, publisher=None, flow_metrics=None):
        self.sinks = sinks                # JsonLinesSink, IpfixSink: write(batch, lines), reopen(), counters(), close()
        self.publisher = publisher        # ZmqPublisher or None
        self.flow_metrics = flow_metrics  # prometheus FlowMetrics or None
        self._sinks_need_json = any(sink.needs_json for sink in sinks)

    def export(self, batch):
        needs_json = self._sinks_need_json or (self.publisher is not None and self.publisher.wants(wire.TOPIC_JSON))
        lines = json_records.encode_lines(batch) if needs_json else None
        for sink in self.sinks:
            sink.write(batch, lines)
        if self.publisher is not None:
            self.publisher.publish(batch, lines)
        if self.flow_metrics is not None:
            self.flow_metrics.export(batch)

    def reopen(self):
        for sink in self.sinks:
            sink.reopen()

    def close(self):
        for sink in self.sinks:
            sink.close()
        if self.publisher is not None:
            self.publisher.close()

    def counters(self):
        counts = {sink.name: sink.counters() for sink in self.sinks}
        if self.publisher is not None:
            counts["zmq"] = {"published_flows": self.publisher.published_flows,
                             "dropped_flows": self.publisher.dropped_flows}
        return counts


def build_outputs(spec, ctx):
    sinks = []
    for text in spec["outputs"]:
        output = output_spec(text)
        if output.kind == "jsonl":
            from flowcollect.exporters.jsonl import JsonLinesSink
            sinks.append(JsonLinesSink(output.target, lock_path=spec.get("jsonl_lock")))
        elif output.kind == "ipfix":
            from flowcollect.exporters.ipfix import IpfixEncoder, IpfixSink
            ipfix = spec["ipfix"]
            encoder = IpfixEncoder(observation_domain=spec["index"] + 1, mtu=ipfix["mtu"],
                                   template_refresh_seconds=ipfix["template_refresh"],
                                   template_refresh_messages=ipfix["template_refresh_messages"])
            sinks.append(IpfixSink(output.target, encoder=encoder))
    publisher = None
    if spec.get("publish_endpoint"):
        from flowcollect.exporters.zmq_publish import ZmqPublisher
        publisher = ZmqPublisher(ctx, spec["publish_endpoint"], spec["index"] + 1, hwm=spec["buffers_length"])
    flow_metrics = None
    if spec.get("metrics"):
        from flowcollect.exporters.prometheus import FlowMetrics
        flow_metrics = FlowMetrics(tuple(spec["metrics"]["attributes"]), spec["metrics"]["max_series"])
    return Outputs(sinks, publisher, flow_metrics)
