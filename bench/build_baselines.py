"""Build bench/baselines.c as a cffi module in build/bench/ (bench-only, never installed)."""
import glob
import importlib.util
import os
from types import ModuleType

from cffi import FFI

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
OUT_DIR = os.path.join(ROOT, "build", "bench")


def load() -> ModuleType:
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
    path, = glob.glob(os.path.join(OUT_DIR, "fc_baselines*.so"))
    spec = importlib.util.spec_from_file_location("fc_baselines", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
