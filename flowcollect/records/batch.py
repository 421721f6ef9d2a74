"""FlowBatch, the unit that flows between pipeline stages, processes and exporters."""
import mmap
from dataclasses import dataclass, field

import numpy as np

from flowcollect.records.layout import FLOW_RECORD, Rows


def empty(n: int, dtype: np.dtype = FLOW_RECORD) -> Rows:
    """A zeroed batch of n rows, every page of it mapped now, not by the first drain into it."""
    batch = np.zeros(n, dtype=dtype)
    # np.zeros is calloc: fresh zero pages the kernel maps only at their first write, one fault per
    # page (2,500 for 100k rows) inside the first swap-and-drain. One byte written per page maps them.
    batch.view(np.uint8)[::mmap.PAGESIZE] = 0
    return batch


@dataclass
class FlowBatch:
    """Evicted flows and their context.

    flows: FLOW_EXPORT rows (wall-clock times, sampling, duplicate mark).
    interface_names: if_index -> name for the rows' interfaces (set by the decorator).
    agent_ip: the address of the host that observed the flows (set by the decorator).
    """

    flows: Rows
    interface_names: dict[int, str] = field(default_factory=dict)
    agent_ip: str = ""

    def __len__(self) -> int:
        return len(self.flows)

    def packets(self) -> int:
        """The packets of every flow of the batch."""
        return int(self.flows["packets"].sum())
