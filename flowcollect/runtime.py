"""The agent's private runtime directory and the ZeroMQ endpoints inside it.

Internal sockets (collector <-> workers, workers -> publishing proxy) are ipc
sockets in a directory only the agent's user can enter (0700), so no other
local user can inject or read flows.
"""
import os
import shutil
import tempfile

DEFAULT_PUBLIC_DIR = "/run/flowcollect"
DEFAULT_PUBLIC_ENDPOINT = f"ipc://{DEFAULT_PUBLIC_DIR}/flows.sock"


class RuntimeDir:
    def __init__(self, parent=None):
        # systemd's RuntimeDirectory= when run as a service (the rest of /run may be read-only).
        parent = parent or os.environ.get("RUNTIME_DIRECTORY") or ("/run" if os.access("/run", os.W_OK) else None)
        self.path = tempfile.mkdtemp(prefix="flowcollect-", dir=parent)
        os.chmod(self.path, 0o700)

    def endpoint(self, name):
        return f"ipc://{os.path.join(self.path, name)}.sock"

    def file(self, name):
        return os.path.join(self.path, name)

    def shard_endpoint(self, index):
        return self.endpoint(f"shard-{index}")

    @property
    def status_endpoint(self):
        return self.endpoint("status")

    @property
    def publish_endpoint(self):
        return self.endpoint("publish")

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


def secure_ipc_endpoint(endpoint):
    """Make the directory of an ipc endpoint exist, owner-only; return the socket path (or None)."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):]
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return path


def restrict_socket(path):
    """Owner-only permissions on a bound ipc socket file."""
    if path and os.path.exists(path):
        os.chmod(path, 0o600)
