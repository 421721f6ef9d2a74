"""The wire envelope: round trips, versioning, and docs/wire.md kept true to the code."""
import os
import re

import numpy as np
import pytest

from flowcollect.records import layout
from flowcollect.records.batch import Enrichment, FlowBatch
from flowcollect.transport import wire

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "wire.md")


def batch_of(n):
    flows = np.zeros(n, dtype=layout.FLOW_EXPORT)
    flows["src_port"] = np.arange(n)
    flows["packets"] = 3
    flows["if_index"] = 7
    return FlowBatch(flows, {7: "eth7"}, "192.0.2.1")


def test_flows_round_trip_and_sequence_numbers():
    publisher = wire.Publisher(3)
    for expected_seq in (1, 2):
        frames = wire.flows_message(publisher, batch_of(5), topic=wire.TOPIC_BINARY)
        topic, header, body = wire.split([bytes(f) for f in frames], topic=True)
        assert topic == wire.TOPIC_BINARY
        assert (header.kind, header.publisher, header.sequence, header.count) == (wire.FLOWS, 3, expected_seq, 5)
        batch = wire.read_flows(header, body)
        assert batch.interface_names == {7: "eth7"} and batch.agent_ip == "192.0.2.1"
        assert batch.flows["src_port"].tolist() == [0, 1, 2, 3, 4]


def test_features_and_the_names_of_the_drop_reasons_in_the_rows_travel_in_the_meta_frame():
    batch = batch_of(3)
    batch.flows["drop_packets"] = [0, 4, 2]
    batch.flows["drop_reason"] = [3, 12, 12]  # the first was not dropped: its reason is not named
    batch.enrichment = Enrichment(("drops",), {2: "NOT_SPECIFIED", 3: "NO_SOCKET", 12: "NETFILTER_DROP"})
    frames = wire.flows_message(wire.Publisher(1), batch)
    header, body = wire.unpack_header(frames[0]), frames[1:]
    assert b'"drop_reasons":{"12":"NETFILTER_DROP"}' in bytes(body[0])
    read = wire.read_flows(header, [bytes(f) for f in body])
    assert read.enrichment == Enrichment(("drops",), {12: "NETFILTER_DROP"})
    assert read.flows["drop_packets"].tolist() == [0, 4, 2]
    assert wire.read_flows(header, [bytes(f) for f in wire.flows_message(wire.Publisher(1), batch_of(3))[1:]]
                           ).enrichment == Enrichment()


def test_a_version_2_message_is_refused_naming_both_versions():
    old = wire.HEADER.pack(wire.MAGIC, 2, wire.FLOWS, 0, 1, 1, 1, 0, 0, 128, 0)
    with pytest.raises(wire.WireError, match="wire version 2; this flowcollect reads version 3"):
        wire.unpack_header(old)


def test_flows_are_read_as_a_writable_copy_or_as_the_frame_itself():
    # GIVEN a FLOWS message as a receiving socket hands it over (one read-only buffer per frame)
    _, header, body = wire.split(wire.flows_message(wire.Publisher(1), batch_of(3)))
    rows_frame = bytearray(body[1])
    body = [body[0], memoryview(rows_frame).toreadonly()]  # a zmq.Frame's buffer is read-only
    # WHEN it is read with a copy (the default), THEN the rows are the sender's, writable, and not the frame
    copied = wire.read_flows(header, body).flows
    assert copied.flags.writeable and copied.dtype == layout.FLOW_EXPORT
    assert copied.tobytes() == bytes(rows_frame) and copied["src_port"].tolist() == [0, 1, 2]
    # WHEN it is read without one (a worker), THEN the rows are the frame's memory, read-only
    viewed = wire.read_flows(header, body, copy=False).flows
    assert not viewed.flags.writeable and np.shares_memory(viewed, np.frombuffer(rows_frame, dtype=np.uint8))
    assert viewed["packets"].tolist() == [3, 3, 3]


def test_topics_number_their_messages_separately():
    publisher = wire.Publisher(1)
    wire.flows_message(publisher, batch_of(1), topic=wire.TOPIC_BINARY)
    json_frames = wire.json_message(publisher, b"{}\n", 1)
    assert wire.unpack_header(json_frames[1]).sequence == 1


def test_foreign_or_future_messages_are_refused():
    header = wire.Header(wire.STOP).pack()
    with pytest.raises(wire.WireError, match="magic"):
        wire.unpack_header(b"XXXX" + header[4:])
    with pytest.raises(wire.WireError, match="version 9"):
        wire.unpack_header(header[:4] + bytes([9]) + header[5:])
    with pytest.raises(wire.WireError, match="announces 4"):
        frames = wire.flows_message(wire.Publisher(1), batch_of(3))
        bad = wire.Header(wire.FLOWS, count=4, row_size=layout.FLOW_EXPORT.itemsize)
        wire.read_flows(bad, [bytes(frames[1]), bytes(frames[2])])


def _doc_text():
    with open(DOC) as f:
        return f.read()


def _doc_table(after_heading):
    text = _doc_text()
    section = text[text.index(after_heading):]
    rows = re.findall(r"^\| (\d+) \| (\d+) \| ([^|]+) \| (\w+) \|", section, re.M)
    return [(int(o), int(s), t.strip(), name) for o, s, t, name in rows]


def test_the_documented_row_layout_is_the_code_s():
    documented = _doc_table("### `flows.bin` body")
    dtype = layout.FLOW_EXPORT
    assert [name for *_, name in documented] == list(dtype.names)
    for offset, size, _, name in documented:
        field, field_offset = dtype.fields[name][:2]
        assert (field_offset, field.itemsize) == (offset, size), name
    assert "row_size` bytes" in _doc_text() and dtype.itemsize == 248


def test_the_documented_header_is_the_code_s():
    text = _doc_text()
    assert f"`{wire.HEADER.format}`" in text and f"({wire.HEADER.size} bytes" in text
    assert wire.MAGIC == b"FCW\0" and "`FCW\\0`" in text
