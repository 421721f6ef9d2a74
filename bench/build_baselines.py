"""Build bench/baselines.c as a cffi module in build/bench/ (bench-only, never installed)."""
import importlib
import os
import sys

from cffi import FFI

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
OUT_DIR = os.path.join(ROOT, "build", "bench")


def load():
    """Compile if needed and import the baselines module."""
    ffi = FFI()
    with open(os.path.join(BENCH_DIR, "baselines.h")) as f:
        ffi.cdef("typedef uint32_t __u32;\ntypedef unsigned long long __u64;\n" + f.read())
    ffi.set_source(
        "fc_baselines",
        '#include <linux/types.h>\n#include <bpf/bpf.h>\n#include "baselines.h"\n',
        sources=[os.path.join(BENCH_DIR, "baselines.c")],
        include_dirs=[os.path.join(ROOT, "bpf"), BENCH_DIR],
        libraries=["bpf"],
        extra_compile_args=["-O2"],
    )
    os.makedirs(OUT_DIR, exist_ok=True)
    ffi.compile(tmpdir=OUT_DIR, verbose=False)
    sys.path.insert(0, OUT_DIR)
    return importlib.import_module("fc_baselines")
