"""Every ZeroMQ frame flowcollect sends, in one place (documented in docs/wire.md).

A message is a multipart ZeroMQ message. Public messages (the subscriber
endpoint) start with a topic frame; every message then has one 32-byte
header frame, then its body frames:

    header  <4s B B H I I Q I H H>  little-endian, 32 bytes
            magic b"FCW\\0", version, kind, flags, publisher, instance,
            sequence, count, row_size, reserved

    kind    FLOWS       body: [meta JSON, rows]   rows = count x row_size bytes,
                                                  numpy dtype records.FLOW_EXPORT
            FLOWS_JSON  body: [JSON lines]        count lines, SPEC §7.2 fields
            INTERFACES  body: [meta JSON]         {"interface_names": {"3": "eth0"}}
            STATUS      body: [status JSON]       worker -> collector: acks, counters
            STOP        body: []                  drain what you have, then exit

`publisher` numbers the sender (0 = collector, 1..N = workers); `instance` is
random per process start, so a restart is told apart from a gap; `sequence`
counts the messages of one publisher instance on one topic from 1.
"""
import os
import struct
from dataclasses import dataclass

import numpy as np
import orjson

from flowcollect.records import FLOW_EXPORT, FlowBatch

MAGIC = b"FCW\0"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIQIHH")
assert HEADER.size == 32

FLOWS, FLOWS_JSON, INTERFACES, STATUS, STOP = 1, 2, 3, 4, 5
KIND_NAMES = {FLOWS: "flows", FLOWS_JSON: "flows-json", INTERFACES: "interfaces", STATUS: "status", STOP: "stop"}

TOPIC_BINARY = b"flows.bin"
TOPIC_JSON = b"flows.json"
TOPICS = {"binary": TOPIC_BINARY, "json": TOPIC_JSON}


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

    def pack(self):
        return HEADER.pack(MAGIC, VERSION, self.kind, self.flags, self.publisher, self.instance,
                           self.sequence, self.count, self.row_size, 0)


def unpack_header(frame):
    frame = bytes(frame) if not isinstance(frame, bytes) else frame
    if len(frame) != HEADER.size:
        raise WireError(f"header of {len(frame)} bytes, expected {HEADER.size}")
    magic, version, kind, flags, publisher, instance, sequence, count, row_size, _ = HEADER.unpack(frame)
    if magic != MAGIC:
        raise WireError("not a flowcollect message (bad magic)")
    if version != VERSION:
        raise WireError(f"wire version {version}; this flowcollect reads version {VERSION}")
    if kind not in KIND_NAMES:
        raise WireError(f"unknown message kind {kind}")
    return Header(kind, publisher, instance, sequence, count, row_size, flags)


def new_instance():
    return int.from_bytes(os.urandom(4), "little") or 1


class Publisher:
    """Numbers the messages one process sends: one sequence per topic or kind."""

    def __init__(self, publisher):
        self.publisher = publisher
        self.instance = new_instance()
        self._sequences = {}

    def header(self, kind, count=0, row_size=0, stream=None):
        key = stream if stream is not None else kind
        self._sequences[key] = seq = self._sequences.get(key, 0) + 1
        return Header(kind, self.publisher, self.instance, seq, count, row_size).pack()


# --- message builders and readers, one pair per kind ---

def _meta(batch):
    return orjson.dumps({"agent_ip": batch.agent_ip,
                         "interface_names": {str(k): v for k, v in batch.interface_names.items()}})


def flows_message(publisher, batch, topic=None):
    """Frames of a FLOWS message; the rows frame is the batch's own memory (no copy)."""
    flows = np.ascontiguousarray(batch.flows)
    frames = [publisher.header(FLOWS, len(flows), FLOW_EXPORT.itemsize, stream=topic),
              _meta(batch), memoryview(flows.view(np.uint8))]
    return [topic, *frames] if topic else frames


def read_flows(header, body):
    """FlowBatch from the body frames of a FLOWS message (rows copied out of the frame)."""
    meta_frame, rows_frame = body
    if header.row_size != FLOW_EXPORT.itemsize:
        raise WireError(f"rows of {header.row_size} bytes, expected {FLOW_EXPORT.itemsize}")
    rows = np.frombuffer(rows_frame, dtype=FLOW_EXPORT)
    if len(rows) != header.count:
        raise WireError(f"{len(rows)} rows in a message that announces {header.count}")
    meta = orjson.loads(bytes(meta_frame))
    names = {int(k): v for k, v in meta.get("interface_names", {}).items()}
    return FlowBatch(rows.copy(), names, meta.get("agent_ip", ""))


def json_message(publisher, lines, count):
    return [TOPIC_JSON, publisher.header(FLOWS_JSON, count, stream=TOPIC_JSON), lines]


def interfaces_message(publisher, names):
    return [publisher.header(INTERFACES), orjson.dumps({"interface_names": {str(k): v for k, v in names.items()}})]


def read_interfaces(body):
    return {int(k): v for k, v in orjson.loads(bytes(body[0]))["interface_names"].items()}


def status_message(publisher, status):
    return [publisher.header(STATUS), orjson.dumps(status)]


def read_status(body):
    return orjson.loads(bytes(body[0]))


def stop_message(publisher):
    return [publisher.header(STOP)]


def split(frames, topic=False):
    """(topic or None, Header, body frames) of a received multipart message."""
    frames = list(frames)
    head = frames.pop(0) if topic else None
    if not frames:
        raise WireError("empty message")
    return head, unpack_header(frames[0]), frames[1:]
