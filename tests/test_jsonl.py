"""JSON-lines output: append, survive rotation (reopen), count write errors, stdout."""
import os

import numpy as np
import orjson

from flowcollect.exporters.jsonl import JsonLinesOutput
from flowcollect.records import FLOW_EXPORT, FlowBatch


def batch_of(ports):
    flows = np.zeros(len(ports), dtype=FLOW_EXPORT)
    flows["dst_port"] = ports
    flows["eth_protocol"] = 0x0800
    flows["packets"] = 1
    return FlowBatch(flows, {}, "10.0.0.1")


def ports_in(path):
    with open(path, "rb") as f:
        return [orjson.loads(line)["dst_port"] for line in f]


def test_appends_to_an_existing_file(tmp_path):
    path = tmp_path / "flows.jsonl"
    path.write_bytes(b'{"dst_port":1}\n')
    out = JsonLinesOutput(str(path))
    assert out.export(batch_of([2, 3]))
    out.close()
    assert ports_in(path) == [1, 2, 3]
    assert (out.records, out.errors) == (2, 0)


def test_reopen_after_rotation_keeps_old_lines_in_the_moved_file(tmp_path):
    # GIVEN a file that logrotate moves away between two batches
    path = tmp_path / "flows.jsonl"
    out = JsonLinesOutput(str(path))
    out.export(batch_of([1, 2]))
    os.rename(path, tmp_path / "flows.jsonl.1")
    # WHEN the agent asks for a reopen (SIGHUP) and the next batches come
    out.reopen()
    out.export(batch_of([3]))
    out.export(batch_of([4]))
    out.close()
    # THEN the old lines stay in the rotated file and the new ones start a new file
    assert ports_in(tmp_path / "flows.jsonl.1") == [1, 2]
    assert ports_in(path) == [3, 4]


def test_without_reopen_writes_follow_the_moved_file(tmp_path):
    path = tmp_path / "flows.jsonl"
    out = JsonLinesOutput(str(path))
    out.export(batch_of([1]))
    os.rename(path, tmp_path / "moved")
    out.export(batch_of([2]))
    out.close()
    assert ports_in(tmp_path / "moved") == [1, 2] and not path.exists()


def test_write_errors_are_counted_and_the_output_recovers(tmp_path):
    # GIVEN a stdout-like output whose pipe reader went away, then a working one
    read_end, write_end = os.pipe()
    os.close(read_end)
    out = JsonLinesOutput("-", stdout_fd=write_end)
    # WHEN a batch is written: EPIPE (Python ignores SIGPIPE), counted, not raised
    assert out.export(batch_of([1, 2])) is False
    assert (out.records, out.errors) == (0, 1)
    os.close(write_end)
    read_end, write_end = os.pipe()
    out._stdout_fd = write_end
    out.reopen()
    assert out.export(batch_of([3]))
    os.close(write_end)
    data = os.read(read_end, 1 << 16)
    os.close(read_end)
    # THEN the failed batch may have left a partial line: it is ended before the next batch
    assert data.split(b"\n")[-2].startswith(b'{"time_flow_start_ms"')
    assert orjson.loads(data.splitlines()[-1])["dst_port"] == 3
    assert (out.records, out.errors) == (1, 1)


def test_stdout_target_writes_to_the_given_descriptor():
    read_end, write_end = os.pipe()
    out = JsonLinesOutput("-", stdout_fd=write_end)
    out.export(batch_of([7, 8]))
    out.close()  # never closes stdout
    os.write(write_end, b"")
    os.close(write_end)
    lines = os.read(read_end, 1 << 16).splitlines()
    os.close(read_end)
    assert [orjson.loads(line)["dst_port"] for line in lines] == [7, 8]
