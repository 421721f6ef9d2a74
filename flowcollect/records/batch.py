"""FlowBatch, the unit that flows between pipeline stages, processes and exporters."""
from dataclasses import dataclass, field

import numpy as np

from flowcollect.records.layout import FLOW_RECORD, Rows


def empty(n: int, dtype: np.dtype = FLOW_RECORD) -> Rows:
    """A zeroed batch of n rows (zeroed: touched now, not in the hot path)."""
    return np.zeros(n, dtype=dtype)


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
