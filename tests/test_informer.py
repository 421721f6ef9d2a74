"""The interface informer on real interfaces, in a namespace of its own, in both modes.

GIVEN an informer made and started by a thread inside a namespace, WHEN veth
pairs are created, brought up, renamed, moved and deleted there, THEN the sink
receives exactly the ADDED/DELETED events that describe it, in order.
"""
import contextlib
import logging
import socket
import threading
import time

import pytest

from flowcollect.interfaces.informer import ADDED, DELETED, Event, Interface, LinkTable, new_informer
from flowcollect.pipeline.channel import Channel
from flowcollect.settings.errors import ConfigError
from tests.channels import receive_timeout, require_nothing

POLL_PERIOD = 0.05
QUIET = 0.3  # long enough for a watch event to arrive, and for six poll periods


def events_channel():
    """A channel to use as the informer's sink (through its put), roomy enough never to block it."""
    return Channel(1000)


def receive(channel, count=1):
    return [receive_timeout(channel) for _ in range(count)]


def added(name, index):
    return Event(ADDED, Interface(name, index))


def deleted(name, index):
    return Event(DELETED, Interface(name, index))


def informer_threads():
    return [t for t in threading.enumerate() if t.name.startswith("informer-")]


@pytest.fixture(params=["watch", "poll"])
def mode(request):
    return request.param


def start_in(ns, mode, sink, period=POLL_PERIOD):
    """Made and started by this thread while it is inside ns, as the agent would be."""
    with ns.entered():
        informer = new_informer(mode, sink, poll_period=period)
        informer.start()
    return informer


@contextlib.contextmanager
def informing(ns, mode):
    """A channel fed by an informer started inside ns, stopped at the end of the block."""
    events = events_channel()
    informer = start_in(ns, mode, events.put)
    try:
        yield events
    finally:
        informer.stop()


# -- the event logic, without a kernel ----------------------------------------------------

def test_link_table_diffs_snapshots_deletions_first_and_renames_as_delete_then_add():
    table = LinkTable()
    assert table.snapshot({1: "lo", 3: "eth0"}) == [added("lo", 1), added("eth0", 3)]
    assert table.snapshot({1: "lo", 3: "eth0"}) == []
    assert table.snapshot({1: "lo", 3: "wan0", 5: "br-0"}) == [
        deleted("eth0", 3), added("wan0", 3), added("br-0", 5)]
    assert table.snapshot({1: "lo", 7: "br-0"}) == [
        deleted("wan0", 3), deleted("br-0", 5), added("br-0", 7)]


def test_link_table_follows_single_link_messages():
    table = LinkTable()
    assert table.new_link(4, "veth0") == [added("veth0", 4)]
    assert table.new_link(4, "veth0") == []  # a flags or statistics change: nothing to say
    assert table.new_link(4, "veth9") == [deleted("veth0", 4), added("veth9", 4)]
    assert table.del_link(4) == [deleted("veth9", 4)]
    assert table.del_link(4) == []


def test_an_unknown_mode_is_a_config_error_naming_the_setting():
    with pytest.raises(ConfigError, match=r"^listen_interfaces: 'inotify' is not one of watch, poll$"):
        new_informer("inotify", print)


# -- real interfaces ------------------------------------------------------------------------

@pytest.mark.kernel
def test_lifecycle_of_a_veth_pair_in_both_modes(netns_factory, mode):
    ns = netns_factory("informer")
    ns.exec("ip", "link", "add", "early0", "type", "veth", "peer", "name", "early1")
    with informing(ns, mode) as events:
        # GIVEN the interfaces that exist at start
        assert sorted(receive(events, 3), key=lambda e: e.interface.index) == [
            added("lo", 1), added("early1", ns.ifindex("early1")), added("early0", ns.ifindex("early0"))]

        # WHEN a pair is created, THEN both ends are announced
        ns.exec("ip", "link", "add", "fcv0", "type", "veth", "peer", "name", "fcv1")
        v0, v1 = ns.ifindex("fcv0"), ns.ifindex("fcv1")
        assert set(receive(events, 2)) == {added("fcv0", v0), added("fcv1", v1)}

        # WHEN it is brought up, THEN nothing: it was already announced
        ns.exec("ip", "link", "set", "fcv0", "up")
        ns.exec("ip", "link", "set", "fcv1", "up")
        require_nothing(events, QUIET)

        # WHEN one end is renamed (down first, as the kernel requires), THEN old name out, new name in
        ns.exec("ip", "link", "set", "fcv0", "down")
        ns.exec("ip", "link", "set", "fcv0", "name", "fcren0")
        assert receive(events, 2) == [deleted("fcv0", v0), added("fcren0", v0)]

        # WHEN the pair is deleted, THEN both ends go, under their current names
        ns.exec("ip", "link", "del", "fcren0")
        assert set(receive(events, 2)) == {deleted("fcren0", v0), deleted("fcv1", v1)}
        require_nothing(events, QUIET)
    assert informer_threads() == []


@pytest.mark.kernel
def test_interfaces_moved_in_and_out_of_the_namespace(netns_factory, mode):
    watched, elsewhere = netns_factory("watched"), netns_factory("elsewhere")
    with informing(watched, mode) as events:
        assert receive(events) == [added("lo", 1)]
        elsewhere.exec("ip", "link", "add", "fcmv0", "type", "veth", "peer", "name", "fcmv1")
        elsewhere.exec("ip", "link", "set", "fcmv0", "netns", watched.name)
        index = watched.ifindex("fcmv0")
        assert receive(events) == [added("fcmv0", index)]
        require_nothing(events, QUIET)
        watched.exec("ip", "link", "set", "fcmv0", "netns", elsewhere.name)
        assert receive(events) == [deleted("fcmv0", index)]
        require_nothing(events, QUIET)


@pytest.mark.kernel
def test_a_port_leaving_a_bridge_is_not_a_deleted_interface(netns_factory, mode):
    """The bridge announces a port leaving it as an AF_BRIDGE RTM_DELLINK of a link that lives on."""
    ns = netns_factory("bridge")
    ns.exec("ip", "link", "add", "br-fc", "type", "bridge")
    ns.exec("ip", "link", "add", "fcport0", "type", "veth", "peer", "name", "fcport1")
    with informing(ns, mode) as events:
        assert len(receive(events, 4)) == 4  # lo, the bridge, both veth ends
        for _ in range(2):
            ns.exec("ip", "link", "set", "fcport0", "master", "br-fc")
            ns.exec("ip", "link", "set", "fcport0", "up")
            ns.exec("ip", "link", "set", "fcport0", "nomaster")
        require_nothing(events, QUIET)


@pytest.mark.kernel
def test_stop_is_prompt_and_leaves_no_thread(netns_factory, mode):
    ns = netns_factory("stop")
    events = events_channel()
    informer = start_in(ns, mode, events.put, period=60.0)  # a poll that would sleep a minute
    assert receive(events) == [added("lo", 1)]
    assert len(informer_threads()) == 1
    started = time.monotonic()
    informer.stop()
    assert time.monotonic() - started < 1.0
    assert informer_threads() == []
    informer.stop()  # idempotent


@pytest.mark.kernel
def test_watch_lists_again_after_the_kernel_drops_events(netns_factory, caplog):
    """A sink that blocks lets the socket overflow (ENOBUFS): the informer dumps again,
    so it still announces every interface exactly once. The socket often overflows
    again while the sink blocks after the first dump; the kernel reports that only
    if the informer emptied the socket before dumping."""
    ns = netns_factory("overflow")
    gate = threading.Event()
    gate.set()
    events = events_channel()

    def slow_sink(event):
        gate.wait(10)
        events.put(event)

    informer = start_in(ns, "watch", slow_sink)
    try:
        assert receive(events) == [added("lo", 1)]
        informer._links.events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the smallest there is
        gate.clear()
        pairs = 20
        for i in range(pairs):
            ns.exec("ip", "link", "add", f"fco{i}a", "type", "veth", "peer", "name", f"fco{i}b")
        with caplog.at_level(logging.WARNING, logger="flowcollect.interfaces.informer"):
            gate.set()
            got = receive(events, 2 * pairs)
            require_nothing(events, QUIET)
        assert "dropped link events" in caplog.text
        expected = {added(f"fco{i}{end}", ns.ifindex(f"fco{i}{end}")) for i in range(pairs) for end in "ab"}
        assert len(got) == len(set(got)) and set(got) == expected
    finally:
        gate.set()
        informer.stop()
