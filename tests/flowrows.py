"""Build FLOW_EXPORT rows in readable terms (addresses and MACs as text), for exporter tests."""
import numpy as np

from flowcollect.records.layout import FLOW_EXPORT
from tests.flowtools import ip16, mac6


def flow_row(**fields):
    """One FLOW_EXPORT row: the given fields set, every other field zero."""
    row = np.zeros(1, dtype=FLOW_EXPORT)
    for name, value in fields.items():
        if name in ("src_ip", "dst_ip"):
            value = ip16(value)
        elif name in ("src_mac", "dst_mac"):
            value = mac6(value)
        row[name] = value
    return row
