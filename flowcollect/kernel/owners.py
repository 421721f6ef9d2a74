"""Who owns what an agent leaves on the host: its programs, its runtime and metrics folders.

Each agent writes an owner file (owner.json: its pid, the start time of that
process, its programs' ids) in every folder it makes. `flowcollect cleanup`
reads them: a folder, or a TC filter running one of the listed programs,
belongs to a live agent when its pid runs and started when the file says
(a pid reused by another process is not the owner). Everything else of ours
that cleanup finds is a leftover of an agent that is gone.
"""
import contextlib
import glob
import json
import os
import tempfile
import time
from dataclasses import dataclass

OWNER_FILE = "owner.json"
RUNTIME_PREFIX = "flowcollect-"
METRICS_PREFIX = "flowcollect-metrics-"
# A folder with no owner file yet is being made (the file follows at once): young ones are left alone.
UNCLAIMED_GRACE_S = 60.0


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Owner:
    pid: int
    started: int | None
    prog_ids: tuple[int, ...] = ()

    def alive(self) -> bool:
        return self.started is not None and _start_time(self.pid) == self.started


def claim(directory: str, prog_ids: tuple[int, ...] = ()) -> None:
    """Write this process's owner file into directory."""
    pid = os.getpid()
    record = {"pid": pid, "started": _start_time(pid), "prog_ids": list(prog_ids)}
    path = os.path.join(directory, OWNER_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)


def owner_of(directory: str) -> Owner | None:
    """The owner a folder's file names; None when it has none (or an unreadable one)."""
    try:
        with open(os.path.join(directory, OWNER_FILE)) as f:
            record = json.load(f)
        return Owner(int(record["pid"]), record.get("started"), tuple(int(i) for i in record.get("prog_ids", ())))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def folders() -> list[str]:
    """Every runtime and metrics folder an agent may have made on this host."""
    parents = {"/run", tempfile.gettempdir(), os.environ.get("RUNTIME_DIRECTORY") or "/run"}
    found = []
    for parent in sorted(parents):
        found += [path for path in glob.glob(os.path.join(parent, RUNTIME_PREFIX + "*")) if os.path.isdir(path)]
    return sorted(set(found))


def live_programs() -> set[int]:
    """The program ids of every running agent."""
    ids: set[int] = set()
    for folder in folders():
        owner = owner_of(folder)
        if owner is not None and owner.alive():
            ids.update(owner.prog_ids)
    return ids


def stale_folders(now: float | None = None) -> list[str]:
    """Folders whose agent is gone (or that no agent claimed, made long ago)."""
    now = time.time() if now is None else now
    stale = []
    for folder in folders():
        owner = owner_of(folder)
        if owner is None:
            with contextlib.suppress(OSError):
                if now - os.stat(folder).st_mtime > UNCLAIMED_GRACE_S:
                    stale.append(folder)
        elif not owner.alive():
            stale.append(folder)
    return stale
