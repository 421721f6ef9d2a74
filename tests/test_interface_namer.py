"""The interface namer: current names from events, the kernel on a miss, a placeholder only
for an index that exists nowhere."""
import numpy as np
import pytest

from flowcollect.interfaces.informer import ADDED, DELETED, Event, Interface
from flowcollect.interfaces.namer import InterfaceNamer, KernelNames, placeholder
from tests.test_informer import events_channel, receive, start_in


class FakeKernel:
    """The kernel's index -> name table, counting how often it is asked."""

    def __init__(self, names=None):
        self.names = dict(names or {})
        self.asked = []

    def __call__(self, index):
        self.asked.append(index)
        return self.names.get(index)


def event(kind, name, index):
    return Event(kind, Interface(name, index))


def test_names_follow_added_and_renames_without_asking_the_kernel():
    kernel = FakeKernel()
    namer = InterfaceNamer(lookup=kernel)
    namer.handle(event(ADDED, "eth0", 2))
    namer.handle(event(ADDED, "br-0", 3))
    assert (namer(2), namer(3)) == ("eth0", "br-0")
    namer.handle(event(DELETED, "eth0", 2))
    namer.handle(event(ADDED, "wan0", 2))
    assert namer(np.uint32(2)) == "wan0"  # indexes straight from a numpy batch
    assert namer.names() == {2: "wan0", 3: "br-0"}
    assert kernel.asked == []


def test_a_miss_asks_the_kernel_once_then_uses_the_cache():
    kernel = FakeKernel({7: "veth7"})
    namer = InterfaceNamer(lookup=kernel)
    assert [namer(7) for _ in range(3)] == ["veth7"] * 3
    assert kernel.asked == [7]


def test_a_deleted_interface_keeps_its_last_name_for_the_flows_drained_after_it():
    kernel = FakeKernel()
    namer = InterfaceNamer(lookup=kernel)
    namer.handle(event(ADDED, "veth9", 9))
    namer.handle(event(DELETED, "veth9", 9))
    assert namer(9) == "veth9"
    assert namer.names() == {}
    # The kernel is still asked first: a new interface with that index wins.
    kernel.names[9] = "newer9"
    assert namer(9) == "newer9"


def test_an_index_never_seen_and_unknown_to_the_kernel_gets_the_placeholder():
    namer = InterfaceNamer(lookup=FakeKernel())
    assert namer(42) == placeholder(42) == "<gone:42>"
    assert namer(42) != "unknown"


def test_remembered_deleted_names_are_bounded_oldest_first():
    namer = InterfaceNamer(lookup=FakeKernel(), retired_max=2)
    for index in (11, 12, 13):
        namer.handle(event(ADDED, f"v{index}", index))
        namer.handle(event(DELETED, f"v{index}", index))
    assert [namer(i) for i in (11, 12, 13)] == [placeholder(11), "v12", "v13"]


def test_a_late_deleted_of_an_old_name_does_not_remove_the_current_one():
    namer = InterfaceNamer(lookup=FakeKernel())
    namer.handle(event(ADDED, "new0", 5))
    namer.handle(event(DELETED, "old0", 5))
    assert namer(5) == "new0"


@pytest.mark.kernel
def test_kernel_names_answer_for_the_namespace_they_were_made_in(netns_factory):
    ns = netns_factory("namer")
    ns.exec("ip", "link", "add", "fcnm0", "type", "veth", "peer", "name", "fcnm1")
    index = ns.ifindex("fcnm0")
    with ns.entered():
        namer = InterfaceNamer()
    try:
        # Asked from this thread, outside the namespace, with no event ever received.
        assert namer(index) == "fcnm0"
        assert namer(index + 1000) == placeholder(index + 1000)
    finally:
        namer.close()


@pytest.mark.kernel
def test_kernel_names_say_none_for_an_index_that_does_not_exist(netns_factory):
    ns = netns_factory("kn")
    with ns.entered():
        lookup = KernelNames()
    try:
        assert lookup(1) == "lo"
        assert lookup(999999) is None
    finally:
        lookup.close()


@pytest.mark.kernel
def test_fed_by_the_watch_informer_names_follow_renames_and_outlive_deletion(netns_factory):
    ns = netns_factory("namerw")
    events = events_channel()
    with ns.entered():
        namer = InterfaceNamer()

    def sink(ev):
        namer.handle(ev)
        events.put(ev)

    informer = start_in(ns, "watch", sink)
    try:
        receive(events)  # lo
        ns.exec("ip", "link", "add", "fcnw0", "type", "veth", "peer", "name", "fcnw1")
        receive(events, 2)
        index = ns.ifindex("fcnw0")
        ns.exec("ip", "link", "set", "fcnw0", "name", "fcnw9")
        receive(events, 2)  # DELETED fcnw0, ADDED fcnw9
        assert namer(index) == "fcnw9"
        ns.exec("ip", "link", "del", "fcnw9")
        receive(events, 2)
        assert namer(index) == "fcnw9"
        assert index not in namer.names()
    finally:
        informer.stop()
        namer.close()
