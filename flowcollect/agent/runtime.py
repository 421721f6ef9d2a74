"""The agent's private runtime directory and the ZeroMQ endpoints inside it.

Internal sockets (collector <-> workers, workers -> publishing proxy) are ipc
sockets in a directory only the agent's user can enter (0700), so no other
local user can inject or read flows.
"""
import os
import shutil
import tempfile


class RuntimeDir:
    def __init__(self, parent: str | None = None) -> None:
        # systemd's RuntimeDirectory= when run as a service (the rest of /run may be read-only).
        parent = parent or os.environ.get("RUNTIME_DIRECTORY") or ("/run" if os.access("/run", os.W_OK) else None)
        self.path = tempfile.mkdtemp(prefix="flowcollect-", dir=parent)
        os.chmod(self.path, 0o700)

    def endpoint(self, name: str) -> str:
        return f"ipc://{os.path.join(self.path, name)}.sock"

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def shard_endpoint(self, index: int) -> str:
        return self.endpoint(f"shard-{index}")

    @property
    def status_endpoint(self) -> str:
        return self.endpoint("status")

    @property
    def publish_endpoint(self) -> str:
        return self.endpoint("publish")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

