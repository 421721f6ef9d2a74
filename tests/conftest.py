"""Shared fixtures: namespaces, veth pairs and a loaded FlowKernel.

Kernel tests need root and BPF. When those are missing they skip, except
under CI=true, where a kernel test that cannot run is a failure.
"""
import itertools
import os

import pytest

from bench.harness.netns import NetNS, veth_pair


def require_kernel():
    reason = None
    if os.geteuid() != 0:
        reason = "kernel tests need root (BPF, TC and network namespaces)"
    elif not os.path.exists("/sys/fs/bpf") and not os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled"):
        reason = "this kernel has no BPF"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a kernel test may not skip)")
    pytest.skip(reason)


@pytest.fixture
def netns_factory():
    """Make namespaces on demand; every one is deleted at teardown."""
    require_kernel()
    made = []

    def make(role):
        ns = NetNS(role)
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.delete()


_subnets = itertools.cycle(range(100, 250))


@pytest.fixture
def two_hosts(netns_factory):
    """Namespaces `a` and `b` joined by one veth pair: returns (link_a, link_b)."""
    a, b = netns_factory("a"), netns_factory("b")
    return veth_pair(a, b, next(_subnets))


@pytest.fixture
def host_between(netns_factory):
    """(a_end, host_a, c_end, host_c): a <-> host <-> c, host routes between 10.x subnets."""
    a, host, c = netns_factory("a"), netns_factory("host"), netns_factory("c")
    a_end, host_a = veth_pair(a, host, 81, name_a="eth0", name_b="to-a")
    c_end, host_c = veth_pair(c, host, 82, name_a="eth0", name_b="to-c")
    host.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    a.exec("ip", "route", "add", "10.82.0.0/24", "via", host_a.ipv4)
    c.exec("ip", "route", "add", "10.81.0.0/24", "via", host_c.ipv4)
    for near, gateway in ((a_end, host_a), (c_end, host_c)):
        near.ns.exec("ip", "neigh", "replace", gateway.ipv4, "lladdr", gateway.mac, "dev", near.name,
                     "nud", "permanent")
    host.exec("ip", "neigh", "replace", a_end.ipv4, "lladdr", a_end.mac, "dev", "to-a", "nud", "permanent")
    host.exec("ip", "neigh", "replace", c_end.ipv4, "lladdr", c_end.mac, "dev", "to-c", "nud", "permanent")
    return a_end, host_a, c_end, host_c
