"""Errors of the kernel side; flowcollect/kernel/bindings.py check() raises them from native return codes."""
from flowcollect.settings.errors import FlowcollectError


class PrivilegeError(FlowcollectError):
    """The process lacks a capability the kernel side needs (exit 1)."""


class NativeError(FlowcollectError):
    """A native (libbpf / kernel) operation failed; .errno is the positive errno."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno
