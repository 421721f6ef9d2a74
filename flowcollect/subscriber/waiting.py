"""Why a subscriber gets no flows: what ZeroMQ saw of the connection, and the ipc socket file.

A SUB socket connects in the background and retries for ever, silently: a
missing agent, a socket file this user may not open, a CURVE key missing or
wrong all look the same from the outside. Its monitor (zmq_socket_monitor)
tells them apart: no connection at all, a connection whose handshake failed
on the security mechanism (CURVE on one side only) or otherwise (a CURVE key
the agent cannot open: the wrong one), or a handshake that succeeded (an
agent is there; it has sent nothing yet). For an ipc endpoint the socket
file says the rest: absent, out of this user's reach, or left by an agent
that is gone.
"""
import errno
import os
import pwd
import socket
import stat
from dataclasses import dataclass
from urllib.parse import urlsplit

import zmq
from zmq.utils.monitor import recv_monitor_message

from flowcollect.transport.endpoints import ipc_path

HINT_AFTER_S = 3.0
MONITORED = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
             | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
             | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


@dataclass
class Connection:
    """The monitor events of one SUB socket, folded."""

    connected: int = 0
    handshakes: int = 0
    mechanism_mismatch: bool = False
    handshake_failed: bool = False
    disconnected_unshaken: int = 0  # connections closed before their handshake completed

    def see(self, event: int, value: int) -> None:
        if event == zmq.EVENT_CONNECTED:
            self.connected += 1
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.handshakes += 1
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            self.mechanism_mismatch = True
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                       zmq.EVENT_HANDSHAKE_FAILED_AUTH):
            self.handshake_failed = True
        elif event == zmq.EVENT_DISCONNECTED and not self.handshakes:
            self.disconnected_unshaken += 1


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    except KeyError:
        return f"uid {uid}"


def _owner(status: os.stat_result) -> str:
    try:
        name = pwd.getpwuid(status.st_uid).pw_name
    except KeyError:
        name = str(status.st_uid)
    return f"owner {name}, mode {stat.S_IMODE(status.st_mode):04o}"


def socket_file(path: str) -> str:
    """What the ipc socket file at `path` says about why nobody answers there (the message names the path)."""
    if path.startswith("@"):  # Linux's abstract namespace: no file to look at
        return "no agent listens on this abstract socket"
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "the socket file does not exist: no agent publishes there (an agent's --output zmq:ENDPOINT)"
    except OSError as exc:
        if exc.errno != errno.EACCES:
            return f"the socket file: {exc.strerror}"
        return (f"the socket file is out of reach: permission denied to this user ({_user()}) on a directory "
                "above it; run as the agent's user or root")
    if not stat.S_ISSOCK(status.st_mode):
        return "the file exists but is not a socket"
    if not os.access(path, os.R_OK | os.W_OK):
        return (f"the socket file exists ({_owner(status)}) but is not readable and writable by this user "
                f"({_user()}): permission denied; run as the agent's user or root")
    return ("the socket file exists and this user may use it, but nothing accepts connections on it: "
            "the agent that made it is gone")


def _unreachable_tcp(endpoint: str) -> str:
    host = urlsplit(endpoint).hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return f"host {host} does not resolve ({exc.strerror})"
    return ("nothing accepts connections there: no agent publishes on it (its --output zmq:ENDPOINT), "
            "or a firewall is in the way")


def reason(endpoint: str, seen: Connection, curve: bool) -> str:
    """Why no flow came from `endpoint`, from what the socket monitor saw."""
    if seen.handshakes:
        return ("connected to the agent, which has sent no flows yet: it sends them at each eviction "
                "(--cache-active-timeout), when its interfaces carried traffic")
    if seen.mechanism_mismatch:
        if curve:
            return "the agent does not use CURVE there: leave out --curve-server-key(-file)"
        return ("the agent requires CURVE there: give its public key with --curve-server-key-file FILE.pub "
                "(written by `flowcollect keygen FILE`) or --curve-server-key=KEY")
    if seen.handshake_failed or seen.disconnected_unshaken:
        if curve:
            return ("the agent refused our CURVE handshake: the CURVE key is wrong "
                    "(it is the agent's public key, FILE.pub of `flowcollect keygen FILE`)")
        return "something accepts connections there but is not an agent's publisher (the ZeroMQ handshake failed)"
    path = ipc_path(endpoint)
    return socket_file(path) if path is not None else _unreachable_tcp(endpoint)


def message(endpoint: str, seen: Connection, curve: bool) -> str:
    return f"no flows from {endpoint} after {HINT_AFTER_S:.0f} s, still waiting: {reason(endpoint, seen, curve)}"


class Watch:
    """A SUB socket's monitor, from before its connect until flows come or the reason was given."""

    def __init__(self, sock: "zmq.Socket[bytes]", endpoint: str, curve: bool, now: float) -> None:
        self._sock = sock
        self._endpoint = endpoint
        self._curve = curve
        self.monitor: zmq.Socket[bytes] | None = sock.get_monitor_socket(MONITORED)
        self.connection = Connection()
        self._hint_at: float | None = now + HINT_AFTER_S  # None once flows came or the reason was given

    def read(self) -> None:
        """Fold the monitor's events (call when the monitor socket is readable)."""
        while self.monitor is not None and self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            self.connection.see(event["event"], event["value"])

    def due(self, now: float, flows: bool) -> str | None:
        """The message to give once, when no flows came in time; the monitor ends when it is no longer needed."""
        if self._hint_at is None or (not flows and now < self._hint_at):
            return None
        self.read()
        self._hint_at = None
        self.close()
        return None if flows else message(self._endpoint, self.connection, self._curve)

    def close(self) -> None:
        if self.monitor is not None:
            self._sock.disable_monitor()
            self.monitor.close()
            self.monitor = None
