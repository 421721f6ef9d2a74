"""The compiled cffi extension, or a message that says how to build it."""

try:
    from flowcollect._native import ffi, lib
except ImportError as exc:  # an unbuilt source tree
    raise ImportError(
        "flowcollect's native extension is not built: run `make setup` "
        "(or `pip install -e .` with clang, bpftool and libbpf-dev installed)"
    ) from exc

__all__ = ["ffi", "lib"]
