"""ipc endpoints: one owner each, reachable only by the agent's user.

zmq's ipc bind() unlinks a socket file that is already there, so a second
agent given the same endpoint would silently take it over: new subscribers
would reach only the newer agent, and the first one's flows would go
nowhere. Before binding, an agent takes an exclusive flock(2) on
`<socket>.lock` beside the socket file, held by an open descriptor for its
whole life (a killed agent's lock goes with its process) and with the
holder's pid inside, which the refusal names.
"""
import contextlib
import fcntl
import os

from flowcollect.settings.errors import ConfigError

LOCK_SUFFIX = ".lock"


class EndpointHeld(ConfigError):
    """Another running agent holds this ipc endpoint (exit 2, like any setting this host cannot honour)."""


def ipc_path(endpoint: str) -> str | None:
    """The socket path of an ipc:// endpoint, None for any other transport."""
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def secure_ipc_endpoint(endpoint: str) -> str | None:
    """Make the directory of an ipc endpoint exist, owner-only; return the socket path (or None)."""
    path = ipc_path(endpoint)
    if path is not None:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    return path


def restrict_socket(path: str | None) -> None:
    """Owner-only permissions on a bound ipc socket file."""
    if path and os.path.exists(path):
        os.chmod(path, 0o600)


class EndpointClaim:
    """This process's exclusive hold on an ipc endpoint; release() at stop also removes the socket file."""

    def __init__(self, endpoint: str, path: str, fd: int) -> None:
        self.endpoint = endpoint
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlinked while still locked: an agent that opened the old lock file then finds it
        # replaced (claim() compares inodes) and takes the new one, never a second hold.
        for leftover in (self.path, self.path + LOCK_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        os.close(self._fd)
        self._fd = None


def _held(endpoint: str, fd: int) -> EndpointHeld | None:
    """EndpointHeld naming the holder if another process has the lock of fd, else None (and fd is locked)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        return EndpointHeld(f"zmq output {endpoint} is held by another agent (pid {holder}); "
                            "give this one another endpoint")
    return None


def check_free(endpoint: str) -> None:
    """EndpointHeld if a running agent has the endpoint; makes and takes nothing (--check-config)."""
    path = ipc_path(endpoint)
    if path is None:
        return
    try:
        fd = os.open(path + LOCK_SUFFIX, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # no lock file: no agent has it
    try:
        held = _held(endpoint, fd)
    finally:
        os.close(fd)  # which also drops the lock if we took it
    if held is not None:
        raise held


def claim(endpoint: str) -> EndpointClaim | None:
    """Take the endpoint for this process (None for a non-ipc endpoint); EndpointHeld if an agent has it."""
    path = secure_ipc_endpoint(endpoint)
    if path is None:
        return None
    lock = path + LOCK_SUFFIX
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"zmq output {endpoint}: cannot create {lock}: {exc.strerror}") from None
        held = _held(endpoint, fd)
        if held is not None:
            os.close(fd)
            raise held
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed it as we opened it: take the one that is there now
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return EndpointClaim(endpoint, path, fd)
