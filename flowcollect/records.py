"""numpy dtypes of the shared structs, derived from bpf/flow.h through cffi.

Nothing here is typed by hand: the field names, offsets and sizes come from
the compiled extension, whose C compiler read bpf/flow.h. Nested structs are
flattened (`rec["packets"]`, `rec["src_port"]`), padding fields are left out
of the dtype but kept in its itemsize and offsets, so a numpy row is the C
struct byte for byte.
"""
from dataclasses import dataclass, field

import numpy as np

from flowcollect.native import ffi, lib


def _leaf_fields(ctype, base=0):
    for name, field in ctype.fields:
        ftype = field.type
        offset = base + field.offset
        if ftype.kind == "struct":
            yield from _leaf_fields(ftype, offset)
        elif not name.startswith("pad"):
            yield name, ftype, offset


def _numpy_format(ctype):
    if ctype.kind == "array":
        return (_numpy_format(ctype.item), (ctype.length,))
    if ctype.kind == "primitive" and ctype.cname.startswith(("uint", "int")):
        kind = "u" if ctype.cname.startswith("uint") else "i"
        return np.dtype(f"{kind}{ffi.sizeof(ctype)}")
    raise TypeError(f"flow.h field of type {ctype.cname} has no numpy equivalent")


def dtype_of(struct_name):
    """The flattened numpy dtype of `struct <struct_name>` from bpf/flow.h."""
    ctype = ffi.typeof(f"struct {struct_name}")
    names, formats, offsets = [], [], []
    for name, ftype, offset in _leaf_fields(ctype):
        if name in names:
            raise TypeError(f"flow.h field name {name!r} is not unique in struct {struct_name}")
        names.append(name)
        formats.append(_numpy_format(ftype))
        offsets.append(offset)
    return np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": ffi.sizeof(ctype)}
    )


FLOW_KEY = dtype_of("fc_flow_key")
FLOW_METRICS = dtype_of("fc_flow_metrics")
FLOW_RECORD = dtype_of("fc_flow_record")
FLOW_EXPORT = dtype_of("fc_flow_export")

KEY_SIZE = ffi.sizeof("struct fc_flow_key")
METRICS_OFFSET = ffi.offsetof("struct fc_flow_record", "metrics")

DIRECTION_INGRESS = lib.FC_DIRECTION_INGRESS
DIRECTION_EGRESS = lib.FC_DIRECTION_EGRESS
DIRECTION_NAMES = {DIRECTION_INGRESS: "ingress", DIRECTION_EGRESS: "egress"}

# Kernel counters (enum fc_counter), in slot order, as lower-case names.
COUNTER_NAMES = tuple(
    name[len("FC_COUNTER_"):].lower()
    for name, _ in sorted(
        ((n, getattr(lib, n)) for n in dir(lib) if n.startswith("FC_COUNTER_") and n != "FC_COUNTER_MAX"),
        key=lambda item: item[1],
    )
)
assert len(COUNTER_NAMES) == lib.FC_COUNTER_MAX, "enum fc_counter slots must be 0..FC_COUNTER_MAX-1"


def empty(n, dtype=FLOW_RECORD):
    """A zeroed batch of n rows (zeroed: touched now, not in the hot path)."""
    return np.zeros(n, dtype=dtype)


@dataclass
class FlowBatch:
    """The unit that flows between pipeline stages: evicted flows and their context.

    flows: FLOW_EXPORT rows (wall-clock times, sampling, duplicate mark).
    interface_names: if_index -> name for the rows' interfaces (set by decorate).
    agent_ip: the address of the host that observed the flows (set by decorate).
    """

    flows: np.ndarray
    interface_names: dict = field(default_factory=dict)
    agent_ip: str = ""

    def __len__(self):
        return len(self.flows)
