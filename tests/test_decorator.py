"""Decorator: interface names and agent IP per batch."""
import ipaddress

from flowcollect.flow import decorate
from flowcollect.pipeline.channel import Channel
from flowcollect.pipeline.decorator import Decorator
from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from tests.channels import receive_timeout, require_closed, start
from tests.fakes import flows


class CountingNamer:
    def __init__(self):
        self.asked = []

    def __call__(self, if_index):
        self.asked.append(if_index)
        return f"eth{if_index}"


def batch_on(*if_indexes):
    return FlowBatch(flows=flows(*({"if_index": i, "src_port": n} for n, i in enumerate(if_indexes)),
                                 dtype=layout.FLOW_EXPORT))


def test_names_each_interface_of_the_batch_once_and_sets_the_agent_ip():
    # GIVEN a decorator for agent 10.1.2.3
    namer = CountingNamer()
    decorator = Decorator(ipaddress.ip_address("10.1.2.3"), namer)
    # WHEN a batch has rows from interfaces 3, 1, 3, 7, 1
    batch = batch_on(3, 1, 3, 7, 1)
    rows_before = batch.flows.tobytes()
    decorated = decorator(batch)
    # THEN it names exactly those interfaces, asking once each
    assert decorated.interface_names == {1: "eth1", 3: "eth3", 7: "eth7"}
    assert sorted(namer.asked) == [1, 3, 7]
    assert all(type(i) is int for i in decorated.interface_names)
    assert decorated.agent_ip == "10.1.2.3"
    # AND the rows are untouched
    assert decorated.flows.tobytes() == rows_before


def test_large_interface_indexes_are_named_too():
    decorated = Decorator("fd00::1", CountingNamer())(batch_on(2, 70000, 4_000_000_000))
    assert decorated.interface_names == {2: "eth2", 70000: "eth70000", 4_000_000_000: "eth4000000000"}
    assert decorated.agent_ip == "fd00::1"


def test_channel_stage_decorates_every_batch_then_closes():
    inputs, outputs = Channel(10), Channel(10)
    start(decorate("192.0.2.1", CountingNamer()), inputs, outputs)
    inputs.put(batch_on(5))
    inputs.put(batch_on(6, 6))
    first, second = receive_timeout(outputs), receive_timeout(outputs)
    assert (first.interface_names, second.interface_names) == ({5: "eth5"}, {6: "eth6"})
    assert first.agent_ip == second.agent_ip == "192.0.2.1"
    inputs.close()
    require_closed(outputs)
