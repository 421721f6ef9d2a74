"""cffi builder (API mode) for flowcollect.kernel._native. Named in setup.py's cffi_modules.

The cdef is read from the real headers, bpf/flow.h and native/fc_native.h, so
the C compiler checks every struct and signature against what the kernel
program and native/*.c use. Not part of the installed package.
"""
import os
import re

from cffi import FFI

NATIVE_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(NATIVE_DIR)
BPF_DIR = os.path.join(ROOT, "bpf")
GENERATED_DIR = os.path.join(ROOT, "build", "bpf")  # written by native/build_bpf.py

FIXED_WIDTH_TYPES = """
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int64_t __s64;
"""

_INTEGER_DEFINE = re.compile(r"#define\s+\w+\s+(0x[0-9a-fA-F]+|\d+)\s*$")


def header_as_cdef(path):
    """The header without its preprocessor lines, except integer #defines (cffi reads those)."""
    kept = []
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("#") and not _INTEGER_DEFINE.match(stripped):
                continue
            kept.append(line)
    return "".join(kept)


ffibuilder = FFI()
ffibuilder.cdef(
    FIXED_WIDTH_TYPES
    + header_as_cdef(os.path.join(BPF_DIR, "flow.h"))
    + header_as_cdef(os.path.join(NATIVE_DIR, "fc_native.h"))
)
ffibuilder.set_source(
    "flowcollect.kernel._native",
    '#include <linux/types.h>\n#include "flow.h"\n#include "fc_native.h"\n',
    sources=sorted(os.path.relpath(os.path.join(NATIVE_DIR, name), ROOT)
                   for name in os.listdir(NATIVE_DIR) if name.endswith(".c")),
    include_dirs=[BPF_DIR, NATIVE_DIR, GENERATED_DIR],
    libraries=["bpf"],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
