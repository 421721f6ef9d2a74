"""`flowcollect sub`: gaps in sequence numbers, and the top-talkers table."""
import logging

import numpy as np

from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from flowcollect.records.json_lines import records
from flowcollect.subscriber.gaps import GapTracker
from flowcollect.subscriber.top_talkers import Talker, TopTalkers
from flowcollect.transport import wire
from tests.flowtools import ip16, mac6


def header(sequence, instance=1, publisher=1):
    return wire.Header(wire.FLOWS_JSON, publisher=publisher, instance=instance, sequence=sequence)


def test_a_jump_in_sequence_is_a_gap_a_new_instance_is_not(caplog):
    gaps = GapTracker()
    with caplog.at_level(logging.WARNING):
        for seq in (1, 2, 5):
            gaps.see(wire.TOPIC_JSON, header(seq))
        gaps.see(wire.TOPIC_JSON, header(1, instance=2))  # the worker restarted
        gaps.see(wire.TOPIC_BINARY, header(7))  # another topic keeps its own count
    assert gaps.missed == 2
    assert len([r for r in caplog.records if "missed 2 messages" in r.getMessage()]) == 1


def test_top_talkers_of_binary_rows_as_the_agent_sends_them():
    """Rows of the binary topic, through the JSON records, to talkers: IPv4 UDP, IPv6 TCP, ARP."""
    flows = np.zeros(3, dtype=layout.FLOW_EXPORT)
    flows["if_index"], flows["direction"] = 3, (0, 1, 0)
    flows["eth_protocol"] = (0x0800, 0x86DD, 0x0806)
    flows["protocol"] = (17, 6, 0)
    flows["src_port"], flows["dst_port"] = (4000, 42531, 0), (53, 443, 0)
    flows["bytes"], flows["packets"] = (5000, 700, 42), (5, 7, 1)
    for row, src, dst in zip(flows[:2], ("10.0.0.1", "fd00:199::3"), ("10.0.0.9", "fd00::1"), strict=True):
        row["src_ip"], row["dst_ip"] = ip16(src), ip16(dst)
    flows[2]["src_mac"], flows[2]["dst_mac"] = mac6("02:00:00:00:00:0a"), mac6("ff:ff:ff:ff:ff:ff")
    talkers = TopTalkers()
    talkers.add(records(FlowBatch(flows, {3: "eth0"})), talkers.clock.arrived(1.0))
    rows = [(r.talker, r.bytes, r.packets) for r in talkers.view(1.0).rows]
    assert rows == [
        (Talker("eth0", "ingress", "udp", "10.0.0.1:4000", "10.0.0.9:53"), 5000, 5),
        (Talker("eth0", "egress", "tcp", "[fd00:199::3]:42531", "[fd00::1]:443"), 700, 7),
        (Talker("eth0", "ingress", "arp", "02:00:00:00:00:0a", "ff:ff:ff:ff:ff:ff"), 42, 1),
    ]
