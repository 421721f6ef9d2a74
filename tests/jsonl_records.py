"""The records an agent writes to a `jsonl:PATH` output, read while it runs (the features' kernel tests)."""
import json
import time

WAIT_S = 30


def read_records(path):
    """Every whole record in the file so far (a line being written is left for the next read)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for_records(path, complete, timeout=WAIT_S):
    """The records once complete(records) holds; fails, showing them, after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        if complete(records):
            return records
        assert time.monotonic() < deadline, f"incomplete after {timeout}s: {records}"
        time.sleep(0.05)  # polling a file the agent appends to: the event is its content
