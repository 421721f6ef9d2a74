"""The agent IP that every record carries, from the agent_ip* settings, sending nothing.

- agent_ip: an explicit address; wins over the other two settings.
- agent_ip_iface: `external` (the source address the routing table picks to
  reach the outside; with no such route, the first global address of an up,
  non-loopback interface), `local` (a loopback address), or `name:IFACE` (the
  first address of IFACE).
- agent_ip_type: `any` (IPv4 preferred), `ipv4` or `ipv6`.

The agent IP is a label on the records, so a host where the setting finds no
address (bridge ports with none, no default route) still runs:
choose_agent_ip() falls back to the first address of a traced interface, then
of any up interface, then to a loopback address, and says why (one warning at
start; --check-config prints it). resolve_agent_ip() is the seed's strict
form: it raises instead.

`external` asks the routing table by connect()ing a UDP socket: that picks a
route and a source address and sends no packet. The target is a documentation
address (RFC 5737 / RFC 3849): like any address outside the host's own
prefixes it follows the default route, and even a mistake could never reach a
real host.

Everything runs in the calling thread's network namespace.
"""
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute

from flowcollect.settings.errors import ConfigError
from flowcollect.settings.model import check
from flowcollect.settings.values import AGENT_IP_IFACE_NAMED

IFACE_EXTERNAL, IFACE_LOCAL = "external", "local"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PROBE_TARGETS = {4: "203.0.113.1", 6: "2001:db8::1"}
PROBE_PORT = 9  # discard; never used, connect() on UDP sends nothing

IFF_UP, IFF_LOOPBACK = 0x1, 0x8  # <linux/if.h>
RT_SCOPE_UNIVERSE, RT_SCOPE_HOST = 0, 254  # <linux/rtnetlink.h>
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40  # <linux/if_addr.h>: not usable as a source


@dataclass(frozen=True)
class HostAddress:
    """One address of this namespace, with what we need to choose among them."""

    interface: str
    address: IPAddress
    scope: int
    up: bool
    loopback: bool
    usable: bool


def host_addresses() -> list[HostAddress]:
    """Every address of the calling thread's namespace, in the kernel's order (IPv4 first)."""
    with IPRoute() as ipr:
        links = {link["index"]: link for link in ipr.get_links()}
        out = []
        for msg in ipr.get_addr():
            link = links.get(msg["index"])
            if link is None:
                continue  # the link went away between the two dumps
            # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on point-to-point links.
            text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
            out.append(HostAddress(
                interface=link.get_attr("IFLA_IFNAME"),
                address=ipaddress.ip_address(text),
                scope=msg["scope"],
                up=bool(link["flags"] & IFF_UP),
                loopback=bool(link["flags"] & IFF_LOOPBACK),
                usable=not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED),
            ))
        return out


def routed_source(version: int, targets: dict[int, str] = PROBE_TARGETS) -> IPAddress | None:
    """The source address the routing table picks towards the outside, or None without a route."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((targets[version], PROBE_PORT))
        except OSError:
            return None  # ENETUNREACH and friends: no route for this family
        return ipaddress.ip_address(sock.getsockname()[0].split("%", 1)[0])


def _versions(ip_type: str) -> tuple[int, ...]:
    return {"any": (4, 6), "ipv4": (4,), "ipv6": (6,)}[ip_type]


def _first(addresses: Sequence[HostAddress], versions: tuple[int, ...],
           keep: Callable[[HostAddress], bool]) -> IPAddress | None:
    """The first address that `keep` accepts, by family in `versions` order."""
    for version in versions:
        for host in addresses:
            if host.address.version == version and keep(host):
                return host.address
    return None


class NoAgentAddress(ConfigError):
    """agent_ip_iface found no address on this host (choose_agent_ip then falls back)."""


@dataclass(frozen=True)
class AgentIpChoice:
    """The agent IP and how it was chosen; `fallback`: the setting found none, and `how` says why."""

    address: IPAddress
    how: str
    fallback: bool = False


def _from_external(versions: tuple[int, ...], addresses: Callable[[], list[HostAddress]],
                   route: Callable[[int], IPAddress | None]) -> tuple[IPAddress | None, str]:
    for version in versions:
        source = route(version)
        if source is not None:
            return source, "the source address of the route to the outside"
    return _first(addresses(), versions, lambda h: (
        h.up and not h.loopback and h.usable and h.scope == RT_SCOPE_UNIVERSE)), \
        "the first global address of an up interface (no route to the outside)"


def _is_loopback(host: HostAddress) -> bool:
    return host.loopback or host.scope == RT_SCOPE_HOST


def _from_interface(mine: list[HostAddress], versions: tuple[int, ...]) -> IPAddress | None:
    # A link-local IPv6 address means nothing off the link: take one only if there is no other.
    return (_first(mine, versions, lambda h: h.scope == RT_SCOPE_UNIVERSE)
            or _first(mine, versions, lambda h: True))


def resolve_agent_ip(agent_ip: str = "", agent_ip_iface: str = IFACE_EXTERNAL, agent_ip_type: str = "any", *,
                     addresses: Callable[[], list[HostAddress]] = host_addresses,
                     route: Callable[[int], IPAddress | None] = routed_source) -> IPAddress:
    """The agent IP for these settings, as an ipaddress object; ConfigError when there is none
    (NoAgentAddress when the settings are good but this host has no such address)."""
    return _resolve(agent_ip, agent_ip_iface, agent_ip_type, addresses, route).address


def _resolve(agent_ip: str, agent_ip_iface: str, agent_ip_type: str, addresses: Callable[[], list[HostAddress]],
             route: Callable[[int], IPAddress | None]) -> AgentIpChoice:
    """resolve_agent_ip(), with how the address was chosen.

    Every setting is checked (by its parser in the settings table), even those
    an explicit agent_ip makes moot, so that --check-config reports them.
    `addresses` lists the HostAddress-es and `route(version)` gives the routed
    source address or None: tests pass fakes.
    """
    agent_ip_type = check("agent_ip_type", agent_ip_type)
    agent_ip_iface = check("agent_ip_iface", agent_ip_iface)
    explicit = check("agent_ip", agent_ip)
    if explicit:
        address = ipaddress.ip_address(explicit)
        if address.version not in _versions(agent_ip_type):
            raise ConfigError(f"agent_ip: {agent_ip!r} is not an {agent_ip_type} address, as agent_ip_type asks")
        return AgentIpChoice(address, "agent_ip")
    versions = _versions(agent_ip_type)
    if agent_ip_iface == IFACE_EXTERNAL:
        found, how = _from_external(versions, addresses, route)
        why = ("no route to the outside and no global address on an up interface; "
               "set agent_ip or agent_ip_iface=name:IFACE")
    elif agent_ip_iface == IFACE_LOCAL:
        found, how = _first(addresses(), versions, _is_loopback), "a loopback address (agent_ip_iface local)"
        why = "the loopback interface has none (is lo up?)"
    else:
        name = agent_ip_iface[len(AGENT_IP_IFACE_NAMED):]
        mine = [h for h in addresses() if h.interface == name]
        if not mine and not _link_exists(name):
            raise ConfigError(f"agent_ip_iface: there is no interface named {name!r}")
        found, how = _from_interface(mine, versions), f"the first address of {name}"
        why = f"interface {name!r} has none"
    if found is None:
        family = "" if agent_ip_type == "any" else f"{agent_ip_type} "
        raise NoAgentAddress(f"agent_ip_iface: no {family}address for {agent_ip_iface}: {why}")
    return AgentIpChoice(found, how)


def choose_agent_ip(agent_ip: str = "", agent_ip_iface: str = IFACE_EXTERNAL, agent_ip_type: str = "any", *,
                    traced: Callable[[str], bool] = lambda name: False,
                    addresses: Callable[[], list[HostAddress]] = host_addresses,
                    route: Callable[[int], IPAddress | None] = routed_source) -> AgentIpChoice:
    """resolve_agent_ip(), but where the settings find no address on this host, the first address
    of an interface the agent traces (`traced(name)`), of any up one, then a loopback address."""
    try:
        return _resolve(agent_ip, agent_ip_iface, agent_ip_type, addresses, route)
    except NoAgentAddress as exc:
        problem = str(exc)
    versions = _versions(agent_ip_type)
    known = addresses()
    fallbacks: tuple[tuple[str, Callable[[HostAddress], bool]], ...] = (
        ("the first address of a traced interface", lambda h: traced(h.interface) and not h.loopback),
        ("the first address of an up interface", lambda h: h.up and not h.loopback),
        ("a loopback address", _is_loopback))
    for what, keep in fallbacks:
        found = _from_interface([h for h in known if h.usable and keep(h)], versions)
        if found is not None:
            return AgentIpChoice(found, f"{what}, as {problem}", fallback=True)
    # Not even lo has one (it is down): the loopback address still names this host.
    found = ipaddress.IPv4Address("127.0.0.1") if versions[0] == 4 else ipaddress.IPv6Address("::1")
    return AgentIpChoice(found, f"the loopback address, as {problem} and this host has no address at all",
                         fallback=True)


def _link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
