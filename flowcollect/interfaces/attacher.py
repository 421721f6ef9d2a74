"""Informer events -> TC attach/detach: the collector traces every allowed interface, as it comes.

Attaching happens in the thread that delivers the events (the informer's),
so in the network namespace the informer was made in. One interface that
refuses our programs is logged and tried again the next time it is
announced (a rename, or a re-creation); it never stops the agent.

Each attach and detach is logged at debug: a host where containers come and
go churns thousands of veths an hour. summary(), which the collector calls
every SUMMARY_PERIOD_S, says at info what changed since the last one.
"""
import errno
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from flowcollect.interfaces.filter import InterfaceFilter
from flowcollect.interfaces.informer import ADDED, Event, Interface
from flowcollect.interfaces.namer import InterfaceNamer
from flowcollect.kernel.errors import NativeError
from flowcollect.settings.errors import FlowcollectError

log = logging.getLogger(__name__)
SUMMARY_PERIOD_S = 60.0


class Attachable(Protocol):
    """What the attacher needs of the kernel side (flowcollect/kernel/flow_kernel.py FlowKernel)."""

    def attach(self, ifindex: int) -> None: ...

    def detach(self, ifindex: int) -> None: ...


class TcAttacher:
    """The sink for informer events: keeps the namer current and our TC programs on allowed interfaces."""

    def __init__(self, kernel: Attachable, interface_filter: InterfaceFilter,
                 namer: InterfaceNamer | None = None) -> None:
        self._kernel = kernel
        self._filter = interface_filter
        self._namer = namer
        self._attached: dict[int, str] = {}  # ifindex -> name it had when we attached
        self._lock = threading.Lock()  # the informer's thread changes what summary() reads
        self._came = self._went = 0

    def handle(self, event: Event) -> None:
        if self._namer is not None:
            self._namer.handle(event)  # first, so records are named before they can be drained
        if event.type is ADDED:
            self._added(event.interface)
        else:
            self._deleted(event.interface)

    def attached(self) -> dict[int, str]:
        """{ifindex: name} of the interfaces our programs are on."""
        with self._lock:
            return dict(self._attached)

    def started(self) -> None:
        """Log at info what the agent traces at start; summaries count from here."""
        with self._lock:
            names = sorted(self._attached.values())
            self._came = self._went = 0
        log.info("tracing %s", ", ".join(names) or "no interface yet")

    def summary(self) -> None:
        """Log at info how many interfaces were traced and let go since the last call, if any were."""
        with self._lock:
            came, went, now = self._came, self._went, len(self._attached)
            self._came = self._went = 0
        if came or went:
            log.info("interfaces in the last minute: %d traced, %d no longer traced; tracing %d now", came, went, now)

    def _added(self, iface: Interface) -> None:
        if iface.index in self._attached:
            return
        if not self._filter.allowed(iface.name):
            log.debug("interface %s (ifindex %d) is not traced: %r", iface.name, iface.index, self._filter)
            return
        if self._call(self._kernel.attach, iface, "trace", "; trying again when it is next announced"):
            with self._lock:
                self._attached[iface.index] = iface.name
                self._came += 1
            log.debug("tracing interface %s (ifindex %d)", iface.name, iface.index)

    def _deleted(self, iface: Interface) -> None:
        if iface.index not in self._attached:  # only this thread changes it
            return
        # A deleted interface took our filters with it, and detach() then only
        # forgets it (so a later interface with the same index is attached
        # afresh). A renamed interface still has them: the new name gets its
        # own ADDED and its own verdict from the filter. It leaves attached()
        # once detached, so that whoever reads attached() sees the kernel's state.
        detached = self._call(self._kernel.detach, iface, "remove our TC programs from", "")
        with self._lock:
            del self._attached[iface.index]
            self._went += 1
        if detached:
            log.debug("no longer tracing interface %s (ifindex %d)", iface.name, iface.index)

    @staticmethod
    def _call(operation: Callable[[int], None], iface: Interface, action: str, then: str) -> bool:
        """attach or detach; a failure is logged, with what happens next, and returns False."""
        try:
            operation(iface.index)
        except FlowcollectError as exc:
            if isinstance(exc, NativeError) and exc.errno == errno.ENODEV:
                # Gone before we got to it (containers' veths come and go by the hundred): nothing to say.
                log.debug("interface %s (ifindex %d) went away before we could %s it", iface.name, iface.index,
                          action)
                return False
            log.warning("cannot %s interface %s (ifindex %d): %s%s", action, iface.name, iface.index, exc, then)
            return False
        return True
