"""`flowcollect cleanup`: remove TC filters that a flowcollect killed without its
shutdown (kill -9, a crash, the host's OOM killer) left behind.

A stopping agent removes its own filters. One that was killed cannot: its
programs stay attached and keep counting into maps nobody drains. This finds
our programs by name (fc_ingress, fc_egress) on every interface of the
network namespace and removes only those filters; foreign filters, and the
clsact qdisc they may share, stay. The systemd unit runs it after every stop
(ExecStopPost), so a crash never leaves filters behind for long.
"""
import logging
import socket
from collections.abc import Collection
from typing import Any

from pyroute2 import IPRoute

log = logging.getLogger(__name__)

OUR_PROGRAMS = ("fc_ingress", "fc_egress")
# clsact hooks: TC_H_CLSACT major with TC_H_MIN_INGRESS / TC_H_MIN_EGRESS.
HOOKS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}


def _program(message: Any) -> str | None:
    options = message.get_attr("TCA_OPTIONS")
    if message.get_attr("TCA_KIND") != "bpf" or not options:
        return None
    name = str(dict(options["attrs"]).get("TCA_BPF_NAME", ""))
    return name.split(":", 1)[0]


def ours(ipr: IPRoute, ifindex: int) -> list[tuple[str, int, int, str]]:
    """[(hook, handle, priority, program name)] of our filters on one interface."""
    found = []
    for hook, parent in HOOKS.items():
        for message in ipr.get_filters(index=ifindex, parent=parent):
            program = _program(message)
            if program in OUR_PROGRAMS and message["handle"]:
                found.append((hook, message["handle"], message["info"] >> 16, program))
    return found


def remove_leftovers(interfaces: Collection[str] = ()) -> int:
    """Remove our filters on the named interfaces (default: all); returns how many."""
    removed = 0
    with IPRoute() as ipr:
        for ifindex, name in socket.if_nameindex():
            if interfaces and name not in interfaces:
                continue
            for hook, handle, priority, program in ours(ipr, ifindex):
                ipr.tc("del-filter", kind="bpf", index=ifindex, parent=HOOKS[hook], handle=handle, prio=priority)
                log.info("removed %s left on %s %s (handle %#x, priority %d)", program, name, hook, handle, priority)
                removed += 1
    return removed
