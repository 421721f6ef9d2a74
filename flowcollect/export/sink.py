"""The one contract of an output: what a worker's export thread calls on each of its sinks."""
from typing import Protocol

from flowcollect.records.batch import FlowBatch
from flowcollect.records.tally import OutputTally


class Sink(Protocol):
    """An output of decorated flows. A sink counts and logs its own failures; it never raises on a write."""

    @property
    def name(self) -> str:
        """The output as the operator named it (jsonl:PATH, ipfix:HOST:PORT, netflow9:HOST:PORT, zmq, prometheus)."""
        ...

    def wants_json(self) -> bool:
        """Would write() use the batch's JSON lines now? Then the worker encodes them once, for every sink."""
        ...

    def write(self, batch: FlowBatch, lines: memoryview | None = None) -> bool:
        """Deliver one batch (`lines`: its JSON lines, if encoded); True when all of it went out."""
        ...

    def idle(self) -> None:
        """Called by the export thread when no batch came for a while (about twice a second)."""
        ...

    def reopen(self) -> None:
        """Reopen files before the next write (after SIGHUP); safe to call from a signal handler."""
        ...

    def counters(self) -> dict[str, OutputTally]:
        """What became of the flows handed to it, by output name (a sink may be several outputs: zmq topics)."""
        ...

    def close(self) -> None: ...
