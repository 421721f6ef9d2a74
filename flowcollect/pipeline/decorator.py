"""Decorator: what the kernel cannot know about a flow, added per batch.

The interface name of every if_index in the batch (once per interface, not
per row: a batch carries a small if_index -> name table) and the IP address
of the agent's host.
"""
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from flowcollect.pipeline.channel import Stage, channel_stage
from flowcollect.records.batch import FlowBatch

InterfaceNamer = Callable[[int], str]
"""if_index -> interface name."""

# Interface indexes are small integers (the kernel hands them out densely from
# 1), so counting them beats sorting; past this the batch is sorted instead.
_COUNTABLE_IF_INDEX = 1 << 16


class Decorator:
    """The per-batch core: fills FlowBatch.interface_names and FlowBatch.agent_ip."""

    def __init__(self, agent_ip: object, iface_namer: InterfaceNamer) -> None:
        self._agent_ip = str(agent_ip)
        self._iface_namer = iface_namer

    def __call__(self, batch: FlowBatch) -> FlowBatch:
        return self.process(batch)

    def process(self, batch: FlowBatch) -> FlowBatch:
        batch.interface_names = {
            if_index: self._iface_namer(if_index) for if_index in _present(batch.flows["if_index"])
        }
        batch.agent_ip = self._agent_ip
        return batch


def _present(if_index: npt.NDArray[np.uint32]) -> list[int]:
    """The distinct interface indexes of a batch, as Python ints."""
    if not len(if_index):
        return []
    if if_index.max() < _COUNTABLE_IF_INDEX:
        return [int(i) for i in np.flatnonzero(np.bincount(if_index))]
    return [int(i) for i in np.unique(if_index)]


def decorate(agent_ip: object, iface_namer: InterfaceNamer) -> Stage[FlowBatch]:
    """The decorator as a channel stage: a function (in_ch, out_ch) that runs until in_ch closes."""
    return channel_stage(Decorator(agent_ip, iface_namer))
