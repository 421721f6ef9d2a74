"""FlowBatch, the unit that flows between pipeline stages, processes and exporters."""
import mmap
from collections.abc import Mapping
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


@dataclass(frozen=True)
class Enrichment:
    """What the rows of a batch carry beyond the counts (--features), and what their codes mean.

    features: the agent's --features ("drops", "rtt", "dns"): their record fields are present.
    drop_reasons: drop_reason -> the kernel's name for it (enum skb_drop_reason, from its BTF).
    """

    features: tuple[str, ...] = ()
    drop_reasons: Mapping[int, str] = field(default_factory=dict)


@dataclass
class FlowBatch:
    """Evicted flows and their context.

    flows: FLOW_EXPORT rows (wall-clock times, sampling, duplicate mark).
    interface_names: if_index -> name for the rows' interfaces (set by the decorator).
    agent_ip: the address of the host that observed the flows (set by the decorator).
    enrichment: the features the rows carry (set by the collector).
    """

    flows: Rows
    interface_names: dict[int, str] = field(default_factory=dict)
    agent_ip: str = ""
    enrichment: Enrichment = field(default_factory=Enrichment)

    def __len__(self) -> int:
        return len(self.flows)

    def packets(self) -> int:
        """The packets of every flow of the batch."""
        return int(self.flows["packets"].sum())
