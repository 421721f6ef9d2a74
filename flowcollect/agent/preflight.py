"""Checks of the settings against this host, before anything touches the kernel.

Run by --check-config and at start, in the collector process: an output path
that cannot be written, an IPFIX or NetFlow v9 collector that does not
resolve, a zmq ipc endpoint another agent holds, a metrics port in use, an
unreadable CURVE key, a feature the kernel cannot do (--features) all stop
the agent with one line and exit 2, instead of surfacing later in a worker.
What only looks like a mistake (an interface that is not there yet, an agent
IP taken by fallback) is a warning, and the agent runs.
"""
import contextlib
import os
import socket
from dataclasses import dataclass

from flowcollect.interfaces.agent_ip import AgentIpChoice, choose_agent_ip
from flowcollect.interfaces.filter import InterfaceFilter
from flowcollect.settings.addresses import host_port
from flowcollect.settings.errors import ConfigError
from flowcollect.settings.model import Settings
from flowcollect.settings.values import OutputSpec
from flowcollect.transport import curve, endpoints


@dataclass(frozen=True)
class Verdict:
    """What start-up needs from the checks: the agent IP, and the warnings to log once."""

    agent_ip: AgentIpChoice
    warnings: tuple[str, ...]


def check_output(output: OutputSpec) -> None:
    if output.kind == "jsonl" and output.target != "-":
        target = os.path.abspath(output.target)
        while not os.path.exists(target):  # the sink makes the folders that are missing
            target = os.path.dirname(target)
        if not os.access(target, os.W_OK):
            raise ConfigError(f"--output {output}: {target} is not writable")
    elif output.kind in ("ipfix", "netflow9"):
        host, port = host_port(output.target)
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise ConfigError(f"--output {output}: cannot resolve {host}: {exc.strerror}") from None
    elif output.kind == "zmq":
        endpoints.check_free(output.target)  # EndpointHeld names the agent that has it


def check_metrics_address(address: str) -> None:
    """The port is free to bind (the agent binds it for real before it loads anything into the kernel)."""
    host, port = host_port(address, default_host="0.0.0.0")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--metrics-address {address}: cannot resolve {host}: {exc.strerror}") from None
    family, kind, proto, _name, where = infos[0]
    with contextlib.closing(socket.socket(family, kind, proto)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is free
        try:
            probe.bind(where)
        except OSError as exc:
            raise ConfigError(f"--metrics-address {address}: {exc.strerror}") from None


def missing_interfaces(config: Settings) -> list[str]:
    """Interfaces named exactly (not /regex/) in `interfaces` that this namespace does not have now."""
    present = {name for _index, name in socket.if_nameindex()}
    allow = InterfaceFilter(config.interfaces, config.exclude_interfaces).allow
    return [entry for entry in allow if isinstance(entry, str) and entry not in present]


def check_features(features: tuple[str, ...]) -> None:
    """The kernel can do every feature asked for (its BTF says so); else one line naming what is missing."""
    if not features:
        return  # counting alone needs no probe, and --check-config then never loads the native extension
    from flowcollect.kernel.features import missing

    lacking = missing(features)
    if lacking:
        raise ConfigError(f"--features {','.join(features)}: this kernel cannot: {lacking}")


def check(config: Settings, warnings: tuple[str, ...] = ()) -> Verdict:
    """Raise ConfigError for the first setting this host cannot honour; else the verdict to start with."""
    for output in config.output:
        check_output(output)
    if config.metrics_address:
        check_metrics_address(config.metrics_address)
    curve.read_secret_key(config.zmq_curve_secret_key_file)
    check_features(config.features)
    traced = InterfaceFilter(config.interfaces, config.exclude_interfaces)
    agent_ip = choose_agent_ip(config.agent_ip, config.agent_ip_iface, config.agent_ip_type, traced=traced.allowed)
    found = list(warnings)
    if agent_ip.fallback:
        found.append(f"agent IP {agent_ip.address}: {agent_ip.how}")
    found += [f"interfaces: there is no interface {name!r} yet; the agent traces it when it appears"
              for name in missing_interfaces(config)]
    return Verdict(agent_ip, tuple(found))
