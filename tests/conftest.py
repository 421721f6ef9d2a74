"""Shared fixtures: namespaces, veth pairs and a loaded FlowKernel.

Kernel tests need root and BPF. When those are missing they skip, except
under CI=true, where a kernel test that cannot run is a failure.
"""
import itertools
import os

import pytest

from tests.netns import NetNS, veth_pair


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
