"""Checks of the settings against this host, before anything touches the kernel.

Run by --check-config and at start: an output path that cannot be written,
an IPFIX collector that does not resolve, an agent_ip_iface that names no
interface, an unreadable CURVE key all stop the agent with one line and exit 2,
instead of surfacing later in a worker.
"""
import os
import socket

from flowcollect.interfaces.agent_ip import resolve_agent_ip
from flowcollect.settings.addresses import host_port
from flowcollect.settings.errors import ConfigError
from flowcollect.settings.model import Settings
from flowcollect.settings.values import OutputSpec
from flowcollect.transport import curve


def check_output(output: OutputSpec) -> None:
    if output.kind == "jsonl" and output.target != "-":
        path = os.path.abspath(output.target)
        target = path if os.path.exists(path) else os.path.dirname(path)
        if not os.access(target, os.W_OK):
            raise ConfigError(f"--output {output}: {target} is not writable")
    elif output.kind == "ipfix":
        host, port = host_port(output.target)
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise ConfigError(f"--output {output}: cannot resolve {host}: {exc.strerror}") from None


def check(config: Settings) -> str:
    """Raise ConfigError for the first setting this host cannot honour; return the agent IP."""
    for output in config.output:
        check_output(output)
    curve.read_secret_key(config.zmq_curve_secret_key_file)
    return str(resolve_agent_ip(config.agent_ip, config.agent_ip_iface, config.agent_ip_type))
