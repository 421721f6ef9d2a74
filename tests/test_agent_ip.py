"""Agent IP resolution: the settings' checks with fakes, then real addresses and routes in a
namespace of our own, where a packet capture on every peer proves nothing was sent."""
import ipaddress
import socket
import time

import pytest

from bench.harness.netns import veth_pair
from flowcollect.interfaces.agent_ip import RT_SCOPE_HOST, RT_SCOPE_UNIVERSE, HostAddress, resolve_agent_ip
from flowcollect.settings.errors import ConfigError

ip = ipaddress.ip_address
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6, UDP = 0x0003, 0x0800, 0x86DD, 17
RT_SCOPE_LINK = 253


def host(interface, address, scope=RT_SCOPE_UNIVERSE, up=True, loopback=False, usable=True):
    return HostAddress(interface, ip(address), scope, up, loopback, usable)


LOOPBACK = [host("lo", "127.0.0.1", RT_SCOPE_HOST, loopback=True), host("lo", "::1", RT_SCOPE_HOST, loopback=True)]


def resolve(addresses=(), route=lambda version: None, **settings):
    return resolve_agent_ip(addresses=lambda: list(addresses), route=route, **settings)


# -- settings and choices, with fake addresses and routes ---------------------------------

def test_an_explicit_agent_ip_wins_and_is_validated():
    assert resolve(agent_ip="192.0.2.7") == ip("192.0.2.7")
    assert resolve(agent_ip=" 2001:db8::7 ", agent_ip_type="ipv6") == ip("2001:db8::7")


@pytest.mark.parametrize("settings, starts", [
    (dict(agent_ip="not-an-ip"), "agent_ip: 'not-an-ip' is not an IPv4 or IPv6 address"),
    (dict(agent_ip="0.0.0.0"), "agent_ip: '0.0.0.0' cannot identify a host"),
    (dict(agent_ip="ff02::1"), "agent_ip: 'ff02::1' cannot identify a host"),
    (dict(agent_ip="192.0.2.7", agent_ip_type="ipv6"), "agent_ip: '192.0.2.7' is not an ipv6 address"),
    (dict(agent_ip_type="ipv5"), "agent_ip_type: 'ipv5' is not one of any, ipv4, ipv6"),
    (dict(agent_ip="192.0.2.7", agent_ip_iface="eth0"),
     "agent_ip_iface: 'eth0' is not one of external, local, name:IFACE"),
    (dict(agent_ip_iface="name:"), "agent_ip_iface: 'name:' is not one of"),
])
def test_bad_settings_are_one_line_config_errors_naming_the_setting(settings, starts):
    with pytest.raises(ConfigError) as caught:
        resolve(LOOPBACK, **settings)
    assert str(caught.value).startswith(starts) and "\n" not in str(caught.value)


def test_external_takes_the_routed_source_ipv4_first_for_any():
    routes = {4: ip("198.51.100.4"), 6: ip("2001:db8::4")}
    assert resolve(route=routes.get) == ip("198.51.100.4")
    assert resolve(route=routes.get, agent_ip_type="ipv6") == ip("2001:db8::4")
    assert resolve(route={6: ip("2001:db8::4")}.get) == ip("2001:db8::4")


def test_external_without_a_route_takes_the_first_usable_global_address():
    addresses = [
        *LOOPBACK,
        host("down0", "198.51.100.1", up=False),
        host("tent0", "198.51.100.2", usable=False),  # tentative: the kernel will not use it yet
        host("eth0", "fe80::1", RT_SCOPE_LINK),
        host("eth0", "2001:db8::9"),
        host("eth1", "198.51.100.3"),
    ]
    assert resolve(addresses) == ip("198.51.100.3")
    assert resolve(addresses, agent_ip_type="ipv6") == ip("2001:db8::9")
    with pytest.raises(ConfigError, match=r"^agent_ip_iface: no ipv4 address for external: no route"):
        resolve(LOOPBACK, agent_ip_type="ipv4")


# -- real addresses and routes ------------------------------------------------------------

class Capture:
    """Every frame that reaches a link's peer, to prove the agent sent nothing."""

    def __init__(self, link):
        self.sock = link.ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((link.name, 0))
        self.sock.setblocking(False)

    def udp_frames(self):
        time.sleep(0.1)  # a datagram sent by the resolution would have crossed the veth by now
        frames = []
        while True:
            try:
                frames.append(self.sock.recv(65536))
            except BlockingIOError:
                break
        self.sock.close()

        def is_udp(frame):
            ethertype = int.from_bytes(frame[12:14], "big")
            return ((ethertype == ETH_P_IP and frame[14 + 9] == UDP)
                    or (ethertype == ETH_P_IPV6 and frame[14 + 6] == UDP))
        return [frame for frame in frames if is_udp(frame)]


@pytest.fixture
def agent_host(netns_factory):
    """Namespace `agent` with lan0 (to `lan`) and wan0 (to `wan`), addresses on both, no routes
    beyond the connected ones. Returns (agent ns, lan0 link, lan peer, wan0 link, wan peer)."""
    agent, lan, wan = netns_factory("agent"), netns_factory("lan"), netns_factory("wan")
    lan0, lan_peer = veth_pair(agent, lan, 210, name_a="lan0", name_b="peer0")
    wan0, wan_peer = veth_pair(agent, wan, 211, name_a="wan0", name_b="peer0")
    return agent, lan0, lan_peer, wan0, wan_peer


def resolve_in(ns, **settings):
    with ns.entered():
        return resolve_agent_ip(**settings)


@pytest.mark.kernel
def test_external_is_the_source_the_routes_pick_and_no_packet_leaves(agent_host):
    agent, lan0, lan_peer, wan0, wan_peer = agent_host
    agent.exec("ip", "route", "add", "default", "via", wan_peer.ipv4)
    agent.exec("ip", "-6", "route", "add", "default", "via", lan_peer.ipv6)
    captures = [Capture(lan_peer), Capture(wan_peer)]

    assert resolve_in(agent) == ip(wan0.ipv4)  # wan0, not lan0, the first interface
    assert resolve_in(agent, agent_ip_type="ipv4") == ip(wan0.ipv4)
    assert resolve_in(agent, agent_ip_type="ipv6") == ip(lan0.ipv6)

    assert [capture.udp_frames() for capture in captures] == [[], []]


@pytest.mark.kernel
def test_external_without_a_default_route_falls_back_to_an_up_interface(agent_host):
    agent, lan0, _, wan0, _ = agent_host
    assert resolve_in(agent) == ip(lan0.ipv4)
    assert resolve_in(agent, agent_ip_type="ipv6") == ip(lan0.ipv6)  # global, never fe80::
    agent.exec("ip", "link", "set", "lan0", "down")
    assert resolve_in(agent) == ip(wan0.ipv4)


@pytest.mark.kernel
def test_external_with_no_global_address_at_all_is_a_config_error(netns_factory):
    bare = netns_factory("bare")
    with pytest.raises(ConfigError, match=r"^agent_ip_iface: no address for external: .*set agent_ip"):
        resolve_in(bare)


@pytest.mark.kernel
def test_local_is_a_loopback_address_of_the_family_asked(netns_factory):
    ns = netns_factory("local")
    assert resolve_in(ns, agent_ip_iface="local") == ip("127.0.0.1")
    assert resolve_in(ns, agent_ip_iface="local", agent_ip_type="ipv6") == ip("::1")
    ns.exec("ip", "addr", "flush", "dev", "lo")
    with pytest.raises(ConfigError, match=r"^agent_ip_iface: no ipv4 address for local: .*is lo up\?"):
        resolve_in(ns, agent_ip_iface="local", agent_ip_type="ipv4")


@pytest.mark.kernel
def test_named_interface_gives_its_first_address_of_the_family(agent_host):
    agent, _, _, wan0, _ = agent_host
    agent.exec("ip", "link", "add", "bare0", "type", "veth", "peer", "name", "bare1")
    assert resolve_in(agent, agent_ip_iface="name:wan0") == ip(wan0.ipv4)
    assert resolve_in(agent, agent_ip_iface="name:wan0", agent_ip_type="ipv6") == ip(wan0.ipv6)
    with pytest.raises(ConfigError, match=r"^agent_ip_iface: no ipv4 address for name:bare0: .*'bare0' has none"):
        resolve_in(agent, agent_ip_iface="name:bare0", agent_ip_type="ipv4")
    with pytest.raises(ConfigError, match=r"^agent_ip_iface: there is no interface named 'nosuch0'$"):
        resolve_in(agent, agent_ip_iface="name:nosuch0")
