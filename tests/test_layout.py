"""The three views of bpf/flow.h agree byte for byte: the kernel object's BTF,
the C compiler of the native extension, and the numpy dtypes declared in
flowcollect/records/layout.py."""
import json
import os
import subprocess

import numpy as np
import pytest

from flowcollect.kernel.bindings import ffi, lib
from flowcollect.records import layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPF_OBJECT = os.path.join(ROOT, "build", "bpf", "flows.bpf.o")
STRUCTS = {
    "fc_flow_key": (layout.FLOW_KEY, 64),
    "fc_flow_metrics": (layout.FLOW_METRICS, 40),
    "fc_flow_record": (layout.FLOW_RECORD, 104),
    "fc_flow_features": (layout.FLOW_FEATURES, 120),
    "fc_flow_export": (layout.FLOW_EXPORT, 248),
    "fc_flow_tuple": (layout.FLOW_TUPLE, 40),
    "fc_drop_metrics": (layout.DROP_METRICS, 48),
    "fc_drop_record": (layout.DROP_RECORD, 88),
    "fc_dns_query_key": (layout.DNS_QUERY_KEY, 44),
    "fc_dns_metrics": (layout.DNS_METRICS, 96),
    "fc_dns_record": (layout.DNS_RECORD, 136),
    "fc_rtt_metrics": (layout.RTT_METRICS, 32),
    "fc_rtt_record": (layout.RTT_RECORD, 72),
}


def leaves(ctype, base=0, prefix=""):
    """(name, ctype, offset) of every leaf field, padding included."""
    for name, field in ctype.fields:
        if field.type.kind == "struct":
            yield from leaves(field.type, base + field.offset, f"{prefix}{name}.")
        else:
            yield prefix + name, field.type, base + field.offset


def numpy_format(ctype):
    if ctype.kind == "array":
        return (numpy_format(ctype.item), (ctype.length,))
    assert ctype.kind == "primitive" and ctype.cname.startswith(("uint", "int")), ctype.cname
    return np.dtype(f"{'u' if ctype.cname.startswith('uint') else 'i'}{ffi.sizeof(ctype)}")


def dtype_from_c(struct):
    """The flattened dtype of a struct as the C compiler laid it out, padding fields left out."""
    fields = [(path.rsplit(".", 1)[-1], ftype, offset)
              for path, ftype, offset in leaves(ffi.typeof(f"struct {struct}"))]
    kept = [(name, numpy_format(ftype), offset) for name, ftype, offset in fields if not name.startswith("pad")]
    return np.dtype({"names": [k[0] for k in kept], "formats": [k[1] for k in kept],
                     "offsets": [k[2] for k in kept], "itemsize": ffi.sizeof(f"struct {struct}")})


@pytest.mark.parametrize("struct", STRUCTS)
def test_declared_dtype_is_the_c_compilers_layout(struct):
    dtype, _ = STRUCTS[struct]
    assert dtype == dtype_from_c(struct)


def test_declared_constants_are_flow_h_enums():
    counters = sorted((getattr(lib, n), n) for n in dir(lib) if n.startswith("FC_COUNTER_") and n != "FC_COUNTER_MAX")
    assert tuple(name[len("FC_COUNTER_"):].lower() for _, name in counters) == layout.COUNTER_NAMES
    assert [slot for slot, _ in counters] == list(range(lib.FC_COUNTER_MAX))
    assert (layout.DIRECTION_INGRESS, layout.DIRECTION_EGRESS) == (lib.FC_DIRECTION_INGRESS, lib.FC_DIRECTION_EGRESS)
    assert (layout.FC_MAC_LEN, layout.FC_IP_LEN) == (lib.FC_MAC_LEN, lib.FC_IP_LEN)
    assert layout.FC_DNS_NAME_LEN == lib.FC_DNS_NAME_LEN
    assert (layout.DNS_SEEN_QUERY, layout.DNS_ANSWERED) == (lib.FC_DNS_SEEN_QUERY, lib.FC_DNS_ANSWERED)
    assert ffi.sizeof("struct fc_flow_key") == layout.KEY_SIZE
    assert ffi.offsetof("struct fc_flow_record", "metrics") == layout.METRICS_OFFSET


def distinct_value(ctype, seed):
    if ctype.kind == "array":
        return [(seed * 7 + i + 1) & 0xFF for i in range(ctype.length)]
    bits = ffi.sizeof(ctype) * 8
    value = (0x0123456789ABCDEF * (seed + 1)) & ((1 << bits) - 1)
    if ctype.cname.startswith("int") and value >> (bits - 1):
        value -= 1 << bits  # a negative value for the signed fields
    return value or 1


@pytest.mark.parametrize("struct", STRUCTS)
def test_every_field_written_in_c_reads_back_through_numpy(struct):
    dtype, size = STRUCTS[struct]
    ctype = ffi.typeof(f"struct {struct}")
    assert ffi.sizeof(ctype) == dtype.itemsize == size

    obj = ffi.new(f"struct {struct} *")
    ffi.memmove(obj, b"\xee" * size, size)  # padding keeps this marker
    written = {}
    for seed, (path, ftype, offset) in enumerate(leaves(ctype)):
        value = distinct_value(ftype, seed)
        target = obj
        *parents, leaf = path.split(".")
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, leaf, value)
        written[path] = (leaf, ftype, offset, value)
    raw = bytes(ffi.buffer(obj))
    row = np.frombuffer(raw, dtype=dtype)[0]

    covered = 0
    for path, (leaf, ftype, offset, value) in written.items():
        covered += ffi.sizeof(ftype)
        if leaf.startswith("pad"):
            assert leaf not in dtype.names
            continue
        assert dtype.fields[leaf][1] == offset, f"{path}: numpy offset differs from C"
        got = row[leaf]
        assert (got.tolist() if ftype.kind == "array" else int(got)) == value, path
    assert covered == size, f"struct {struct} has implicit padding: give every hole a name"
    assert b"\xee" not in raw or struct == "fc_flow_export"  # every byte written by a field
    assert np.frombuffer(raw, dtype=dtype).tobytes() == raw


def btf_structs(path):
    dump = subprocess.run(["bpftool", "btf", "dump", "file", path, "-j"], check=True,
                          capture_output=True, text=True).stdout
    return {t["name"]: t for t in json.loads(dump)["types"] if t["kind"] == "STRUCT" and t.get("name")}


def test_kernel_object_btf_matches_the_native_layout():
    assert os.path.exists(BPF_OBJECT), "build the project first (make setup)"
    btf = btf_structs(BPF_OBJECT)
    # The map key and value types are in the object's BTF; fc_flow_record (the
    # ring-buffer record) is these two back to back, checked in the test above.
    for struct in ("fc_flow_key", "fc_flow_metrics", "fc_flow_tuple", "fc_drop_metrics", "fc_dns_query_key",
                   "fc_dns_metrics", "fc_rtt_metrics"):
        ctype = ffi.typeof(f"struct {struct}")
        assert btf[struct]["size"] == ffi.sizeof(ctype), struct
        kernel_members = [(m["name"], m["bits_offset"] // 8) for m in btf[struct]["members"]]
        native_members = [(name, field.offset) for name, field in ctype.fields]
        assert kernel_members == native_members, struct
