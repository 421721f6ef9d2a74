"""The endpoint `flowcollect sub` connects to, checked before connecting.

ZeroMQ refuses a malformed address with an exception, accepts some that can
never work (`tcp://host:0`, a port above 65535) and then retries forever, and
knows transports the agent never publishes on. The agent binds tcp or ipc
(docs/wire.md), so those two are what a subscriber may name.
"""
import re

from flowcollect.settings.errors import ConfigError
from flowcollect.transport.endpoints import ipc_path

ACCEPTED = "tcp://HOST:PORT (an IPv6 HOST in brackets) or ipc://PATH"
IPC_PATH_MAX = 107  # struct sockaddr_un's sun_path: 108 bytes with the final NUL
_TCP = re.compile(r"^tcp://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$")


def check(endpoint: str) -> str:
    """The endpoint if a subscriber can connect to it; else ConfigError (exit 2) saying what is accepted."""
    path = ipc_path(endpoint)
    if path is not None:
        if not path:
            raise ConfigError(f"--endpoint {endpoint}: no socket path; expected {ACCEPTED}")
        if len(path.encode()) > IPC_PATH_MAX:
            raise ConfigError(f"--endpoint {endpoint}: a socket path is at most {IPC_PATH_MAX} bytes")
        return endpoint
    match = _TCP.match(endpoint)
    if match and 0 < int(match.group(1)) < 65536:
        return endpoint
    hint = ""
    if endpoint.startswith("/"):
        hint = f" (a socket file: ipc://{endpoint})"
    elif match:
        hint = " (a port from 1 to 65535)"
    elif endpoint.startswith("tcp://*:"):
        hint = " (an agent binds to *; a subscriber connects to the agent's host)"
    elif endpoint.startswith("tcp://") and endpoint.count(":") > 2:
        hint = " (an IPv6 address in brackets: tcp://[::1]:PORT)"
    raise ConfigError(f"--endpoint {endpoint}: not a ZeroMQ endpoint an agent publishes on; "
                      f"expected {ACCEPTED}{hint}")
