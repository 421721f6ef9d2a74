"""Informer -> TC attach/detach: first the decisions with a fake kernel, then the real programs
following real interfaces in a namespace, counting the packets sent over them."""
import errno
import logging
import socket
import time

import pytest

from bench.harness.netns import veth_pair
from bench.harness.programs import ours, programs_on
from flowcollect.interfaces.attacher import TcAttacher
from flowcollect.interfaces.filter import InterfaceFilter
from flowcollect.interfaces.informer import ADDED, DELETED, Event, Interface
from flowcollect.interfaces.namer import InterfaceNamer
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.errors import NativeError
from flowcollect.kernel.flow_kernel import FlowKernel
from tests.flowtools import matching, only_flow
from tests.test_informer import start_in

INGRESS, EGRESS = lib.FC_DIRECTION_INGRESS, lib.FC_DIRECTION_EGRESS


class FakeKernel:
    """attach/detach recorded; the indexes in `refuse` fail their next attach, those in `gone` every one
    (the interface went away before the attach: ENODEV)."""

    def __init__(self, refuse=(), gone=()):
        self.calls = []
        self.refuse = set(refuse)
        self.gone = set(gone)

    def attach(self, ifindex):
        self.calls.append(("attach", ifindex))
        if ifindex in self.gone:
            raise NativeError(errno.ENODEV, f"attaching the ingress TCX link to ifindex {ifindex}: No such device")
        if ifindex in self.refuse:
            self.refuse.discard(ifindex)
            raise NativeError(95, f"attaching the ingress TC program to ifindex {ifindex}")

    def detach(self, ifindex):
        self.calls.append(("detach", ifindex))


def announce(attacher, *events):
    for kind, name, index in events:
        attacher.handle(Event(kind, Interface(name, index)))


# -- decisions, with a fake kernel --------------------------------------------------------

def test_attaches_allowed_interfaces_only_and_once():
    kernel = FakeKernel()
    attacher = TcAttacher(kernel, InterfaceFilter(["/^eth/"], ["lo", "eth9"]))
    announce(attacher, (ADDED, "lo", 1), (ADDED, "eth0", 2), (ADDED, "eth9", 3), (ADDED, "br-0", 4),
             (ADDED, "eth0", 2))
    assert kernel.calls == [("attach", 2)]
    assert attacher.attached() == {2: "eth0"}


def test_a_refused_attach_is_logged_not_fatal_and_retried_on_the_next_added(caplog):
    kernel = FakeKernel(refuse={3})
    attacher = TcAttacher(kernel, InterfaceFilter())
    with caplog.at_level(logging.WARNING, logger="flowcollect.interfaces.attacher"):
        announce(attacher, (ADDED, "odd0", 3), (ADDED, "eth0", 4))
    assert attacher.attached() == {4: "eth0"}
    assert "cannot trace interface odd0 (ifindex 3)" in caplog.text
    announce(attacher, (ADDED, "odd0", 3))
    assert attacher.attached() == {3: "odd0", 4: "eth0"}
    assert kernel.calls == [("attach", 3), ("attach", 4), ("attach", 3)]


def test_an_interface_gone_before_its_attach_is_no_warning(caplog):
    attacher = TcAttacher(FakeKernel(gone={7}), InterfaceFilter())
    with caplog.at_level(logging.DEBUG, logger="flowcollect.interfaces.attacher"):
        announce(attacher, (ADDED, "veth7", 7), (DELETED, "veth7", 7))
    assert attacher.attached() == {}
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "veth7 (ifindex 7) went away before we could trace it" in caplog.text


def test_deleted_forgets_and_a_rename_is_judged_by_the_new_name():
    kernel = FakeKernel()
    attacher = TcAttacher(kernel, InterfaceFilter(["/^eth/"]))
    announce(attacher, (ADDED, "eth0", 2), (ADDED, "eth1", 3))
    announce(attacher, (DELETED, "eth0", 2))  # gone
    announce(attacher, (DELETED, "eth1", 3), (ADDED, "tmp1", 3))  # renamed out of the filter
    announce(attacher, (DELETED, "tmp1", 3), (ADDED, "eth7", 3))  # and back in
    announce(attacher, (DELETED, "br-0", 9))  # never traced: nothing to do
    assert kernel.calls == [("attach", 2), ("attach", 3), ("detach", 2), ("detach", 3), ("attach", 3)]
    assert attacher.attached() == {3: "eth7"}


def test_the_namer_learns_every_event_even_for_interfaces_not_traced():
    namer = InterfaceNamer(lookup=lambda index: None)
    attacher = TcAttacher(FakeKernel(), InterfaceFilter(["eth0"]), namer)
    announce(attacher, (ADDED, "lo", 1), (ADDED, "eth0", 2), (DELETED, "eth0", 2), (ADDED, "wan0", 2))
    assert namer.names() == {1: "lo", 2: "wan0"}


# -- the real programs on real interfaces -------------------------------------------------

def has_our_programs(ns, dev):
    on = programs_on(ns, dev)
    return any(name.endswith(":fc_ingress") for name in on["ingress"]) and any(
        name.endswith(":fc_egress") for name in on["egress"])


def has_none_of_ours(ns, dev):
    return not ours(ns, dev)


def wait_for(condition, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def send_udp(sender, receiver, sport, dport, count):
    """count datagrams, each received: the receiving end's ingress hook has run on all of them."""
    rx = receiver.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((receiver.ipv4, dport))
    rx.settimeout(5)
    tx = sender.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind((sender.ipv4, sport))
    try:
        for _ in range(count):
            tx.sendto(b"p" * 64, (receiver.ipv4, dport))
        for _ in range(count):
            rx.recv(64)
    finally:
        tx.close()
        rx.close()


@pytest.mark.kernel
def test_interfaces_created_after_start_are_traced_if_allowed_and_counted_exactly(netns_factory, caplog):
    agent, peer = netns_factory("agent"), netns_factory("peer")
    with FlowKernel(1024) as kernel:
        # veth_pair moves each end in under a temporary name (fct...), which this filter refuses too.
        attacher = TcAttacher(kernel, InterfaceFilter(["/^fc[0-9]/"], ["lo", "/^fcx/"]))
        caplog.set_level(logging.DEBUG, logger="flowcollect.interfaces.attacher")
        informer = start_in(agent, "watch", attacher.handle)
        try:
            # GIVEN an excluded and an allowed veth, both created after the agent started
            skipped, skipped_peer = veth_pair(agent, peer, 220, name_a="fcx0", name_b="px0")
            traced, traced_peer = veth_pair(agent, peer, 221, name_a="fc0", name_b="p0")
            wait_for(lambda: traced.ifindex in attacher.attached(), what="fc0 to be traced")

            # THEN our programs are on the allowed one only
            assert has_our_programs(agent, "fc0")
            assert has_none_of_ours(agent, "fcx0")
            assert attacher.attached() == {traced.ifindex: "fc0"}

            # WHEN traffic crosses both, THEN every packet on fc0 is counted, none on fcx0
            kernel.swap_and_drain()  # start from an empty map
            send_udp(traced_peer, traced, 4100, 5100, 5)
            send_udp(traced, traced_peer, 4200, 5200, 3)
            send_udp(skipped_peer, skipped, 4300, 5300, 4)
            batch = kernel.swap_and_drain()[0].copy()
            into = only_flow(batch, if_index=traced.ifindex, direction=INGRESS, protocol=17,
                             src_ip=traced_peer.ipv4, dst_ip=traced.ipv4, src_port=4100, dst_port=5100)
            out = only_flow(batch, if_index=traced.ifindex, direction=EGRESS, protocol=17,
                            src_ip=traced.ipv4, dst_ip=traced_peer.ipv4, src_port=4200, dst_port=5200)
            assert (int(into["packets"]), int(out["packets"])) == (5, 3)
            assert len(matching(batch, if_index=skipped.ifindex)) == 0
            assert len(matching(batch, src_port=4300)) == 0

            # WHEN the excluded one is renamed into the filter, THEN it is traced; and out again, not
            agent.exec("ip", "link", "set", "fcx0", "down")
            agent.exec("ip", "link", "set", "fcx0", "name", "fc9")
            wait_for(lambda: skipped.ifindex in attacher.attached(), what="fc9 to be traced")
            assert has_our_programs(agent, "fc9")
            agent.exec("ip", "link", "set", "fc9", "name", "fcx9")
            wait_for(lambda: skipped.ifindex not in attacher.attached(), what="fcx9 to be let go")
            assert has_none_of_ours(agent, "fcx9")

            # WHEN the traced one is deleted, THEN it is forgotten without a complaint
            agent.exec("ip", "link", "del", "fc0")
            wait_for(lambda: attacher.attached() == {}, what="fc0 to be forgotten")
        finally:
            informer.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("flowcollect")]
    traced = [r for r in caplog.records if r.msg.startswith("tracing interface")]
    assert [r.args[0] for r in traced] == ["fc0", "fc9"]
    assert "no longer tracing interface fc0" in caplog.text
    # each at debug (hosts churn thousands of veths); at info, a summary once a minute
    assert {r.levelno for r in caplog.records if "tracing interface" in r.msg} == {logging.DEBUG}
    attacher.summary()
    assert caplog.records[-1].levelno == logging.INFO
    assert caplog.records[-1].getMessage() == ("interfaces in the last minute: 2 traced, 2 no longer traced; "
                                               "tracing 0 now")
    said = len(caplog.records)
    attacher.summary()  # nothing changed since: nothing said
    assert len(caplog.records) == said
