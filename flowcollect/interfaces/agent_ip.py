"""The agent IP that every record carries, from the agent_ip* settings, sending nothing.

- agent_ip: an explicit address; wins over the other two settings.
- agent_ip_iface: `external` (the source address the routing table picks to
  reach the outside; with no such route, the first global address of an up,
  non-loopback interface), `local` (a loopback address), or `name:IFACE` (the
  first address of IFACE).
- agent_ip_type: `any` (IPv4 preferred), `ipv4` or `ipv6`.

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


def _from_external(versions: tuple[int, ...], addresses: Callable[[], list[HostAddress]],
                   route: Callable[[int], IPAddress | None]) -> IPAddress | None:
    for version in versions:
        source = route(version)
        if source is not None:
            return source
    return _first(addresses(), versions, lambda h: (
        h.up and not h.loopback and h.usable and h.scope == RT_SCOPE_UNIVERSE))


def _is_loopback(host: HostAddress) -> bool:
    return host.loopback or host.scope == RT_SCOPE_HOST


def _from_interface(mine: list[HostAddress], versions: tuple[int, ...]) -> IPAddress | None:
    # A link-local IPv6 address means nothing off the link: take one only if there is no other.
    return (_first(mine, versions, lambda h: h.scope == RT_SCOPE_UNIVERSE)
            or _first(mine, versions, lambda h: True))


def resolve_agent_ip(agent_ip: str = "", agent_ip_iface: str = IFACE_EXTERNAL, agent_ip_type: str = "any", *,
                     addresses: Callable[[], list[HostAddress]] = host_addresses,
                     route: Callable[[int], IPAddress | None] = routed_source) -> IPAddress:
    """The agent IP for these settings, as an ipaddress object; ConfigError when there is none.

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
        return address
    versions = _versions(agent_ip_type)
    if agent_ip_iface == IFACE_EXTERNAL:
        found = _from_external(versions, addresses, route)
        why = ("no route to the outside and no global address on an up interface; "
               "set agent_ip or agent_ip_iface=name:IFACE")
    elif agent_ip_iface == IFACE_LOCAL:
        found = _first(addresses(), versions, _is_loopback)
        why = "the loopback interface has none (is lo up?)"
    else:
        name = agent_ip_iface[len(AGENT_IP_IFACE_NAMED):]
        mine = [h for h in addresses() if h.interface == name]
        if not mine and not _link_exists(name):
            raise ConfigError(f"agent_ip_iface: there is no interface named {name!r}")
        found = _from_interface(mine, versions)
        why = f"interface {name!r} has none"
    if found is None:
        family = "" if agent_ip_type == "any" else f"{agent_ip_type} "
        raise ConfigError(f"agent_ip_iface: no {family}address for {agent_ip_iface}: {why}")
    return found


def _link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
