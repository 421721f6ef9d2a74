"""`flowcollect sub`: gaps in sequence numbers, and the top-talkers table."""
import io
import logging

import numpy as np
from rich.console import Console

from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from flowcollect.subscriber.gaps import GapTracker
from flowcollect.subscriber.top_talkers import TopTalkers, table
from flowcollect.transport import wire
from tests.flowtools import ip16


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


def test_top_talkers_rank_by_bytes_over_the_window():
    flows = np.zeros(3, dtype=layout.FLOW_EXPORT)
    flows["eth_protocol"] = 0x0800
    for row, (src, nbytes) in zip(flows, (("10.0.0.1", 100), ("10.0.0.2", 5000), ("10.0.0.1", 50)), strict=True):
        row["src_ip"], row["dst_ip"] = ip16(src), ip16("10.0.0.9")
        row["bytes"], row["packets"], row["protocol"] = nbytes, 1, 17
    talkers = TopTalkers(window_s=60)
    talkers.add(FlowBatch(flows))
    top = talkers.top()
    assert [(key[0], total) for key, (total, _) in top] == [("10.0.0.2", 5000), ("10.0.0.1", 150)]
    console = Console(file=io.StringIO(), width=120)
    console.print(table(talkers))
    text = console.file.getvalue()
    assert "10.0.0.2:0" in text and "5,000" in text
