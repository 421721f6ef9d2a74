"""A worker's outputs, fed one decorated batch at a time.

Built from the worker spec's output list (the zmq outputs are served by the
collector's publishing proxy; each worker publishes to it). The JSON lines
of a batch are encoded once and shared by the JSON-lines files and the JSON
topic.
"""
import logging

from flowcollect.config import output_spec
from flowcollect.exporters import json_records

log = logging.getLogger(__name__)


class Outputs:
    def __init__(self, sinks, publisher=None):
        self.sinks = sinks            # objects with write(batch, lines), reopen(), close(), counters()
        self.publisher = publisher    # ZmqPublisher or None
        self.errors = {}
        self._needs_json = publisher is not None or any(getattr(s, "needs_json", False) for s in sinks)

    def export(self, batch):
        lines = json_records.encode_lines(batch) if self._needs_json else None
        for sink in self.sinks:
            try:
                sink.write(batch, lines)
            except OSError as exc:
                self.errors[sink.name] = self.errors.get(sink.name, 0) + 1
                log.error("output %s failed: %s", sink.name, exc)
        if self.publisher is not None:
            self.publisher.publish(batch, lines)

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
        counts["errors"] = dict(self.errors)
        return counts


def build_outputs(spec, ctx):
    sinks = []
    for text in spec["outputs"]:
        output = output_spec(text)
        if output.kind == "jsonl":
            from flowcollect.exporters.jsonl import JsonLinesSink
            sinks.append(JsonLinesSink(output.target, lock_path=spec.get("jsonl_lock")))
        elif output.kind == "ipfix":
            from flowcollect.exporters.ipfix import IpfixSink
            sinks.append(IpfixSink(output.target, observation_domain=spec["index"] + 1))
    publisher = None
    if spec.get("publish_endpoint"):
        from flowcollect.exporters.zmq_publish import ZmqPublisher
        publisher = ZmqPublisher(ctx, spec["publish_endpoint"], spec["index"] + 1, hwm=spec["buffers_length"])
    return Outputs(sinks, publisher)
