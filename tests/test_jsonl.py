"""JSON-lines output: append, survive rotation (reopen), count write errors, stdout."""
import os

import numpy as np
import orjson

from flowcollect.export.jsonl import JsonLinesSink
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import FLOW_EXPORT


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
    out = JsonLinesSink(str(path))
    assert out.write(batch_of([2, 3]))
    out.close()
    assert ports_in(path) == [1, 2, 3]
    assert (out.tally.exported.flows, out.errors) == (2, 0)


def test_reopen_after_rotation_keeps_old_lines_in_the_moved_file(tmp_path):
    # GIVEN a file that logrotate moves away between two batches
    path = tmp_path / "flows.jsonl"
    out = JsonLinesSink(str(path))
    out.write(batch_of([1, 2]))
    os.rename(path, tmp_path / "flows.jsonl.1")
    # WHEN the agent asks for a reopen (SIGHUP) and the next batches come
    out.reopen()
    out.write(batch_of([3]))
    out.write(batch_of([4]))
    out.close()
    # THEN the old lines stay in the rotated file and the new ones start a new file
    assert ports_in(tmp_path / "flows.jsonl.1") == [1, 2]
    assert ports_in(path) == [3, 4]


def test_without_reopen_writes_follow_the_moved_file(tmp_path):
    path = tmp_path / "flows.jsonl"
    out = JsonLinesSink(str(path))
    out.write(batch_of([1]))
    os.rename(path, tmp_path / "moved")
    out.write(batch_of([2]))
    out.close()
    assert ports_in(tmp_path / "moved") == [1, 2] and not path.exists()


def test_write_errors_are_counted_and_the_output_recovers(tmp_path):
    # GIVEN a stdout-like output whose pipe reader went away, then a working one
    read_end, write_end = os.pipe()
    os.close(read_end)
    out = JsonLinesSink("-", stdout_fd=write_end)
    # WHEN a batch is written: EPIPE (Python ignores SIGPIPE), counted, not raised
    assert out.write(batch_of([1, 2])) is False
    assert (out.tally.exported.flows, out.errors) == (0, 1)
    assert out.tally.lost["write_failed"].flows == 2
    os.close(write_end)
    read_end, write_end = os.pipe()
    out._stdout_fd = write_end
    out.reopen()
    assert out.write(batch_of([3]))
    os.close(write_end)
    data = os.read(read_end, 1 << 16)
    os.close(read_end)
    # THEN the failed batch may have left a partial line: it is ended before the next batch
    assert data.split(b"\n")[-2].startswith(b'{"time_flow_start_ms"')
    assert orjson.loads(data.splitlines()[-1])["dst_port"] == 3
    assert (out.tally.exported.flows, out.errors) == (1, 1)


def test_workers_sharing_a_pipe_never_mix_lines(tmp_path):
    # GIVEN two writers (as two workers) on one pipe, locking the same lock file
    read_end, write_end = os.pipe()
    lock = str(tmp_path / "jsonl.lock")
    first = JsonLinesSink("-", lock_path=lock, stdout_fd=write_end)
    second = JsonLinesSink("-", lock_path=lock, stdout_fd=write_end)
    import threading
    received = []
    reader = threading.Thread(target=lambda: received.append(_read_all(read_end)))
    reader.start()
    # WHEN each writes batches larger than the pipe's atomic 4 KiB, concurrently
    writers = [threading.Thread(target=lambda s=s, p=p: [s.write(batch_of([p] * 200)) for _ in range(20)])
               for s, p in ((first, 1), (second, 2))]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    os.close(write_end)
    reader.join()
    # THEN every line is whole
    ports = [orjson.loads(line)["dst_port"] for line in received[0].splitlines()]
    assert sorted(ports) == [1] * 4000 + [2] * 4000
    (tally,) = first.counters().values()
    assert (tally.exported.flows, tally.lost) == (4000, {})


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def test_stdout_target_writes_to_the_given_descriptor():
    read_end, write_end = os.pipe()
    out = JsonLinesSink("-", stdout_fd=write_end)
    out.write(batch_of([7, 8]))
    out.close()  # never closes stdout
    os.write(write_end, b"")
    os.close(write_end)
    lines = os.read(read_end, 1 << 16).splitlines()
    os.close(read_end)
    assert [orjson.loads(line)["dst_port"] for line in lines] == [7, 8]
