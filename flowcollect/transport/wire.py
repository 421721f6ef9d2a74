"""Every ZeroMQ frame flowcollect sends, in one place (documented in docs/wire.md).

A message is a multipart ZeroMQ message. Public messages (the subscriber
endpoint) start with a topic frame; every message then has one 32-byte
header frame, then its body frames:

    header  <4s B B H I I Q Q I H H>  little-endian, 40 bytes
            magic b"FCW\\0", version, kind, flags, publisher, instance,
            sequence, packets, count, row_size, reserved

    kind    FLOWS       body: [meta JSON, rows]   rows = count x row_size bytes,
                                                  numpy dtype layout.FLOW_EXPORT
            FLOWS_JSON  body: [JSON lines]        count lines, the fields of docs/records.md
            INTERFACES  body: [meta JSON]         {"interface_names": {"3": "eth0"}}
            STATUS      body: [status JSON]       worker -> collector: acks, counters
            STOP        body: []                  drain what you have, then exit

`publisher` numbers the sender (0 = collector, 1..N = workers); `instance` is
random per process start, so a restart is told apart from a gap; `sequence`
counts the messages of one publisher instance on one topic from 1. `count`
is the flows a FLOWS or FLOWS_JSON message carries and `packets` their
packets, so that whoever drops a message can count what was lost without
decoding it. Version 2 added `packets`; version 3 the feature fields of the
rows (struct fc_flow_features: 248-byte rows) and `features`/`drop_reasons` in
the meta frame; a message of another version is refused, naming both.
"""
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import zmq

from flowcollect.pipeline import rows as row_copies
from flowcollect.records.batch import Enrichment, FlowBatch
from flowcollect.records.layout import FLOW_EXPORT
from flowcollect.records.tally import OutputTally, Tally

MAGIC = b"FCW\0"
VERSION = 3
HEADER = struct.Struct("<4sBBHIIQQIHH")
assert HEADER.size == 40

FLOWS, FLOWS_JSON, INTERFACES, STATUS, STOP = 1, 2, 3, 4, 5
KIND_NAMES = {FLOWS: "flows", FLOWS_JSON: "flows-json", INTERFACES: "interfaces", STATUS: "status", STOP: "stop"}

TOPIC_BINARY = b"flows.bin"
TOPIC_JSON = b"flows.json"
TOPICS = {"binary": TOPIC_BINARY, "json": TOPIC_JSON}

# The most flows one FLOWS or FLOWS_JSON message carries: larger batches go as several messages,
# so that a queue bounded in messages is bounded in bytes too (2 MiB of rows, ~8 MiB of JSON).
MAX_MESSAGE_FLOWS = 16384

Buffer = bytes | memoryview | zmq.Frame
"""One frame of a message, as built (bytes, a view of a batch's rows) or as received (zmq.Frame)."""


class WireError(ValueError):
    """A message that is not ours, or not of a version we read."""


@dataclass(frozen=True)
class Header:
    kind: int
    publisher: int = 0
    instance: int = 0
    sequence: int = 0
    count: int = 0
    row_size: int = 0
    flags: int = 0
    packets: int = 0

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self.kind, self.flags, self.publisher, self.instance,
                           self.sequence, self.packets, self.count, self.row_size, 0)


def frame_bytes(frame: Buffer) -> bytes:
    """A frame's bytes (a copy, unless they are bytes already)."""
    if isinstance(frame, bytes):
        return frame
    return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)


def frame_view(frame: Buffer) -> bytes | memoryview:
    """A frame's memory, without a copy."""
    return frame.buffer if isinstance(frame, zmq.Frame) else frame


def unpack_header(frame: Buffer) -> Header:
    frame = frame_bytes(frame)
    if len(frame) != HEADER.size:
        raise WireError(f"header of {len(frame)} bytes, expected {HEADER.size}")
    magic, version, kind, flags, publisher, instance, sequence, packets, count, row_size, _ = HEADER.unpack(frame)
    if magic != MAGIC:
        raise WireError("not a flowcollect message (bad magic)")
    if version != VERSION:
        raise WireError(f"wire version {version}; this flowcollect reads version {VERSION}")
    if kind not in KIND_NAMES:
        raise WireError(f"unknown message kind {kind}")
    return Header(kind, publisher, instance, sequence, count, row_size, flags, packets)


def new_instance() -> int:
    return int.from_bytes(os.urandom(4), "little") or 1


class Publisher:
    """Numbers the messages one process sends: one sequence per topic or kind."""

    def __init__(self, publisher: int) -> None:
        self.publisher = publisher
        self.instance = new_instance()
        self._sequences: dict[object, int] = {}

    def header(self, kind: int, count: int = 0, row_size: int = 0, stream: bytes | None = None,
               packets: int = 0) -> bytes:
        key: object = stream if stream is not None else kind
        self._sequences[key] = seq = self._sequences.get(key, 0) + 1
        return Header(kind, self.publisher, self.instance, seq, count, row_size, packets=packets).pack()


# --- message builders and readers, one pair per kind ---

def _meta(batch: FlowBatch) -> bytes:
    meta: dict[str, object] = {"agent_ip": batch.agent_ip,
                               "interface_names": {str(k): v for k, v in batch.interface_names.items()}}
    enrichment = batch.enrichment
    if enrichment.features:
        meta["features"] = list(enrichment.features)
    if enrichment.drop_reasons:
        # The names of the reasons in these rows only: the kernel's whole table is over a hundred.
        dropped = batch.flows["drop_packets"] > 0
        present = np.unique(batch.flows["drop_reason"][dropped]) if dropped.any() else ()
        meta["drop_reasons"] = {str(int(r)): enrichment.drop_reasons.get(int(r), str(int(r))) for r in present}
    return orjson.dumps(meta)


def flows_message(publisher: Publisher, batch: FlowBatch, topic: bytes | None = None) -> list[Buffer]:
    """Frames of a FLOWS message; the rows frame is the batch's own memory (no copy)."""
    flows = np.ascontiguousarray(batch.flows)
    frames: list[Buffer] = [publisher.header(FLOWS, len(flows), FLOW_EXPORT.itemsize, stream=topic,
                                             packets=batch.packets()),
                            _meta(batch), flows.view(np.uint8).data]
    return [topic, *frames] if topic else frames


def read_flows(header: Header, body: Sequence[Buffer], copy: bool = True) -> FlowBatch:
    """FlowBatch from the body frames of a FLOWS message.

    copy=False: the rows are the frame's own memory, read-only, kept alive by the batch (a worker
    reads them and passes them on: a copy of 100k rows is ~5 ms, most of it first touch of new pages).
    """
    meta_frame, rows_frame = body
    if header.row_size != FLOW_EXPORT.itemsize:
        raise WireError(f"rows of {header.row_size} bytes, expected {FLOW_EXPORT.itemsize}")
    rows = np.frombuffer(frame_view(rows_frame), dtype=FLOW_EXPORT)
    if len(rows) != header.count:
        raise WireError(f"{len(rows)} rows in a message that announces {header.count}")
    meta = orjson.loads(frame_bytes(meta_frame))
    names = {int(k): v for k, v in meta.get("interface_names", {}).items()}
    enrichment = Enrichment(tuple(meta.get("features", ())),
                            {int(k): v for k, v in meta.get("drop_reasons", {}).items()})
    # A copy as opaque rows: numpy copies a padded struct field by field, several times slower (pipeline/rows.py).
    return FlowBatch(row_copies.copy(rows) if copy else rows, names, meta.get("agent_ip", ""), enrichment)


def json_message(publisher: Publisher, lines: Buffer, count: int, packets: int = 0) -> list[Buffer]:
    return [TOPIC_JSON, publisher.header(FLOWS_JSON, count, stream=TOPIC_JSON, packets=packets), lines]


def interfaces_message(publisher: Publisher, names: dict[int, str]) -> list[Buffer]:
    return [publisher.header(INTERFACES), orjson.dumps({"interface_names": {str(k): v for k, v in names.items()}})]


def read_interfaces(body: Sequence[Buffer]) -> dict[int, str]:
    return {int(k): v for k, v in orjson.loads(frame_bytes(body[0]))["interface_names"].items()}


@dataclass(frozen=True)
class WorkerStatus:
    """A STATUS body: what one worker instance did with what it was sent, cumulative since it started.

    received = deduplicated + dropped + delivered (+ what is still in the
    worker); every output then accounts for what it was delivered.
    """

    worker: int
    instance: int
    received: Tally = field(default_factory=Tally)
    deduplicated: Tally = field(default_factory=Tally)  # duplicates dropped by the deduper: by design
    dropped: Tally = field(default_factory=Tally)       # the export queue was full (the worker's limiter)
    delivered: Tally = field(default_factory=Tally)     # handed to the outputs
    final: bool = False  # the last status of an instance that is exiting
    outputs: dict[str, OutputTally] = field(default_factory=dict)  # by output name (Sink.counters())

    def accounted(self) -> Tally:
        """What the worker can say became of: delivered, or dropped and counted."""
        total = Tally()
        for tally in (self.delivered, self.deduplicated, self.dropped):
            total.add_tally(tally)
        return total

    def to_json(self) -> bytes:
        return orjson.dumps({
            "worker": self.worker, "instance": self.instance, "final": self.final,
            **{name: getattr(self, name).to_json() for name in _STATUS_TALLIES},
            "outputs": {name: output.to_json() for name, output in self.outputs.items()},
        })

    @classmethod
    def from_json(cls, data: bytes) -> "WorkerStatus":
        raw = orjson.loads(data)
        return cls(worker=raw["worker"], instance=raw["instance"], final=raw["final"],
                   **{name: Tally.from_json(raw[name]) for name in _STATUS_TALLIES},
                   outputs={name: OutputTally.from_json(o) for name, o in raw["outputs"].items()})


_STATUS_TALLIES = ("received", "deduplicated", "dropped", "delivered")


def status_message(publisher: Publisher, status: WorkerStatus) -> list[Buffer]:
    return [publisher.header(STATUS), status.to_json()]


def read_status(body: Sequence[Buffer]) -> WorkerStatus:
    return WorkerStatus.from_json(frame_bytes(body[0]))


def stop_message(publisher: Publisher) -> list[Buffer]:
    return [publisher.header(STOP)]


def split(frames: Sequence[Buffer], topic: bool = False) -> tuple[Buffer | None, Header, list[Buffer]]:
    """(topic or None, Header, body frames) of a received multipart message."""
    frames = list(frames)
    head = frames.pop(0) if topic else None
    if not frames:
        raise WireError("empty message")
    return head, unpack_header(frames[0]), frames[1:]
