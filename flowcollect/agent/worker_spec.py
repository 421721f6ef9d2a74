"""WorkerSpec: everything a worker process is started with, passed as JSON on its command line.

Workers get addresses and settings, never sockets (docs/architecture.md).
"""
from dataclasses import dataclass
from typing import Any

import orjson

from flowcollect.export.ipfix import IpfixOptions
from flowcollect.export.outputs import ExportSpec, FlowMetricsOptions
from flowcollect.pipeline.deduper import Deduper
from flowcollect.settings.values import OutputSpec


@dataclass(frozen=True)
class WorkerSpec:
    index: int                 # 0..N-1: the dedup shard this worker owns
    collector_pid: int         # the worker exits when this process is gone
    shard_endpoint: str        # PULL: FLOWS, INTERFACES and STOP from the collector
    status_endpoint: str       # PUSH: STATUS to the collector
    queue_max_flows: int       # flows queued before the export thread (the worker's limiter drops beyond)
    agent_ip: str
    deduper: Deduper
    export: ExportSpec
    log_level: str

    def to_json(self) -> str:
        return orjson.dumps(self).decode()

    @classmethod
    def from_json(cls, text: str) -> "WorkerSpec":
        spec: dict[str, Any] = orjson.loads(text)
        export = spec["export"]
        metrics = export["flow_metrics"]
        return cls(**{
            **spec,
            "deduper": Deduper(**spec["deduper"]),
            "export": ExportSpec(**{
                **export,
                "outputs": tuple(OutputSpec(**output) for output in export["outputs"]),
                "ipfix": IpfixOptions(**export["ipfix"]),
                "flow_metrics": None if metrics is None else FlowMetricsOptions(
                    tuple(metrics["attributes"]), metrics["max_series"]),
            }),
        })
