"""Addresses that settings name: HOST:PORT, and the agent's default public endpoint."""
import re

DEFAULT_PUBLIC_DIR = "/run/flowcollect"
DEFAULT_PUBLIC_ENDPOINT = f"ipc://{DEFAULT_PUBLIC_DIR}/flows.sock"

_BRACKETED = re.compile(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$")
_PLAIN = re.compile(r"^([^:\[\]]*):(\d+)$")


def host_port(text: str, default_host: str | None = None) -> tuple[str, int]:
    """(host, port) from HOST:PORT or [IPv6]:PORT; ValueError saying what is accepted."""
    match = _BRACKETED.match(text) or _PLAIN.match(text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError("HOST:PORT with a port from 1 to 65535")
    host = match.group(1) or default_host
    if not host:
        raise ValueError("HOST:PORT with a host")
    return host, int(match.group(2))
