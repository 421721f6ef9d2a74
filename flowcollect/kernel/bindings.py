"""The compiled cffi extension (native/, its contract fc_native.h), and the one place its errors become exceptions."""
import errno as _errno

from flowcollect.kernel.errors import NativeError, PrivilegeError

try:
    from flowcollect.kernel._native import ffi, lib
except ImportError as exc:  # an unbuilt source tree
    raise ImportError(
        "flowcollect's native extension is not built: run `make setup` "
        "(or `pip install -e .` with clang, bpftool and libbpf-dev installed)"
    ) from exc

__all__ = ["check", "ffi", "lib"]

_PRIVILEGE_ERRNOS = (_errno.EPERM, _errno.EACCES)


def check(rc: int) -> int:
    """Return rc if it is not a negative errno, else raise with the native message."""
    if rc >= 0:
        return rc
    message = ffi.string(lib.fc_last_error()).decode(errors="replace")
    err = -rc
    if err in _PRIVILEGE_ERRNOS:
        raise PrivilegeError(message)
    raise NativeError(err, message)
