"""Compile the kernel programs (bpf/*.bpf.c) and generate their libbpf skeleton.

Run by setup.py's build_ext before the cffi extension is compiled: the
extension embeds the object through the skeleton, so the installed package
needs no .o file at run time. Not part of the installed package.
"""
import os
import platform
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPF_DIR = os.path.join(ROOT, "bpf")
GENERATED_DIR = os.path.join(ROOT, "build", "bpf")


def multiarch_include():
    """Where <asm/types.h> lives for this machine (Debian multiarch)."""
    try:
        triplet = subprocess.run(
            ["gcc", "-print-multiarch"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        triplet = ""
    return os.path.join("/usr/include", triplet) if triplet else "/usr/include"


def require(tool, package):
    if shutil.which(tool) is None:
        sys.exit(f"flowcollect build: '{tool}' not found; install the Debian package {package} (make setup does)")


# bpf_tracing.h's names for the machine (the kprobe of bpf/rtt.bpf.h reads its argument registers).
TARGET_ARCH = {"x86_64": "x86", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "powerpc", "s390x": "s390",
               "riscv64": "riscv", "loongarch64": "loongarch"}


def compile_object(source, output):
    require("clang", "clang")
    subprocess.run(
        [
            "clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
            f"-D__TARGET_ARCH_{TARGET_ARCH.get(platform.machine(), platform.machine())}",
            "-I", BPF_DIR, "-I", multiarch_include(),
            "-c", source, "-o", output,
        ],
        check=True,
    )


def build(out_dir=GENERATED_DIR):
    """Build flows.bpf.o and flows.skel.h into out_dir; return out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    obj = os.path.join(out_dir, "flows.bpf.o")
    compile_object(os.path.join(BPF_DIR, "flows.bpf.c"), obj)
    require("bpftool", "bpftool")
    skeleton = subprocess.run(
        ["bpftool", "gen", "skeleton", obj, "name", "flows_bpf"],
        check=True, capture_output=True, text=True,
    ).stdout
    with open(os.path.join(out_dir, "flows.skel.h"), "w") as f:
        f.write(skeleton)
    return out_dir


if __name__ == "__main__":
    print(build())
