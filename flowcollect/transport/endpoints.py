"""ipc endpoints that only the agent's user can reach."""
import os


def secure_ipc_endpoint(endpoint: str) -> str | None:
    """Make the directory of an ipc endpoint exist, owner-only; return the socket path (or None)."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):]
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return path


def restrict_socket(path: str | None) -> None:
    """Owner-only permissions on a bound ipc socket file."""
    if path and os.path.exists(path):
        os.chmod(path, 0o600)
