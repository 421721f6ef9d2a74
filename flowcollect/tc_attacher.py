"""Informer events -> TC attach/detach: the collector traces every allowed interface, as it comes.

Attaching happens in the thread that delivers the events (the informer's),
so in the network namespace the informer was made in. One interface that
refuses our programs is logged and tried again the next time it is
announced (a rename, or a re-creation); it never stops the agent.
"""
import logging

from flowcollect.errors import FlowcollectError
from flowcollect.informer import ADDED

log = logging.getLogger(__name__)


class TcAttacher:
    """The sink for informer events: keeps the namer current and our TC programs on allowed interfaces.

    `kernel` needs attach(ifindex) and detach(ifindex) (a FlowKernel);
    `interface_filter` needs allowed(name); `namer`, if given, needs handle(event).
    """

    def __init__(self, kernel, interface_filter, namer=None):
        self._kernel = kernel
        self._filter = interface_filter
        self._namer = namer
        self._attached = {}  # ifindex -> name it had when we attached

    def handle(self, event):
        if self._namer is not None:
            self._namer.handle(event)  # first, so records are named before they can be drained
        if event.type is ADDED:
            self._added(event.interface)
        else:
            self._deleted(event.interface)

    def attached(self):
        """{ifindex: name} of the interfaces our programs are on."""
        return dict(self._attached)

    def _added(self, iface):
        if iface.index in self._attached:
            return
        if not self._filter.allowed(iface.name):
            log.debug("interface %s (ifindex %d) is not traced: %r", iface.name, iface.index, self._filter)
            return
        if self._call(self._kernel.attach, iface, "trace", "; trying again when it is next announced"):
            self._attached[iface.index] = iface.name
            log.info("tracing interface %s (ifindex %d)", iface.name, iface.index)

    def _deleted(self, iface):
        if self._attached.pop(iface.index, None) is None:
            return
        # A deleted interface took our filters with it, and detach() then only
        # forgets it (so a later interface with the same index is attached
        # afresh). A renamed interface still has them: the new name gets its
        # own ADDED and its own verdict from the filter.
        if self._call(self._kernel.detach, iface, "remove our TC programs from", ""):
            log.info("no longer tracing interface %s (ifindex %d)", iface.name, iface.index)

    @staticmethod
    def _call(operation, iface, action, then):
        """attach or detach; a failure is logged, with what happens next, and returns False."""
        try:
            operation(iface.index)
        except FlowcollectError as exc:
            log.warning("cannot %s interface %s (ifindex %d): %s%s", action, iface.name, iface.index, exc, then)
            return False
        return True
