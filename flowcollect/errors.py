"""Every error flowcollect reports, and the one place native errors become exceptions."""
import errno as _errno


class FlowcollectError(Exception):
    """Base of flowcollect's errors; str() is one line an operator can act on."""

    exit_code = 1


class ConfigError(FlowcollectError):
    """A setting has a value we cannot accept (exit 2)."""

    exit_code = 2


class PrivilegeError(FlowcollectError):
    """The process lacks a capability the kernel side needs (exit 1)."""


class NativeError(FlowcollectError):
    """A native (libbpf / kernel) operation failed; .errno is the positive errno."""

    def __init__(self, errno, message):
        super().__init__(message)
        self.errno = errno


_PRIVILEGE_ERRNOS = (_errno.EPERM, _errno.EACCES)


def check(rc):
    """Return rc if it is not a negative errno, else raise with the native message."""
    if rc >= 0:
        return rc
    from flowcollect.native import ffi, lib

    message = ffi.string(lib.fc_last_error()).decode(errors="replace")
    err = -rc
    if err in _PRIVILEGE_ERRNOS:
        raise PrivilegeError(message)
    raise NativeError(err, message)
