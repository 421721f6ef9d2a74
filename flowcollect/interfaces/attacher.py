"""Informer events -> TC attach/detach: the collector traces every allowed interface, as it comes.

Attaching happens in the thread that delivers the events (the informer's),
so in the network namespace the informer was made in. One interface that
refuses our programs is logged and tried again the next time it is
announced (a rename, or a re-creation); it never stops the agent.
"""
import logging
from collections.abc import Callable
from typing import Protocol

from flowcollect.interfaces.filter import InterfaceFilter
from flowcollect.interfaces.informer import ADDED, Event, Interface
from flowcollect.interfaces.namer import InterfaceNamer
from flowcollect.settings.errors import FlowcollectError

log = logging.getLogger(__name__)


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

    def handle(self, event: Event) -> None:
        if self._namer is not None:
            self._namer.handle(event)  # first, so records are named before they can be drained
        if event.type is ADDED:
            self._added(event.interface)
        else:
            self._deleted(event.interface)

    def attached(self) -> dict[int, str]:
        """{ifindex: name} of the interfaces our programs are on."""
        return dict(self._attached)

    def _added(self, iface: Interface) -> None:
        if iface.index in self._attached:
            return
        if not self._filter.allowed(iface.name):
            log.debug("interface %s (ifindex %d) is not traced: %r", iface.name, iface.index, self._filter)
            return
        if self._call(self._kernel.attach, iface, "trace", "; trying again when it is next announced"):
            self._attached[iface.index] = iface.name
            log.info("tracing interface %s (ifindex %d)", iface.name, iface.index)

    def _deleted(self, iface: Interface) -> None:
        if self._attached.pop(iface.index, None) is None:
            return
        # A deleted interface took our filters with it, and detach() then only
        # forgets it (so a later interface with the same index is attached
        # afresh). A renamed interface still has them: the new name gets its
        # own ADDED and its own verdict from the filter.
        if self._call(self._kernel.detach, iface, "remove our TC programs from", ""):
            log.info("no longer tracing interface %s (ifindex %d)", iface.name, iface.index)

    @staticmethod
    def _call(operation: Callable[[int], None], iface: Interface, action: str, then: str) -> bool:
        """attach or detach; a failure is logged, with what happens next, and returns False."""
        try:
            operation(iface.index)
        except FlowcollectError as exc:
            log.warning("cannot %s interface %s (ifindex %d): %s%s", action, iface.name, iface.index, exc, then)
            return False
        return True
