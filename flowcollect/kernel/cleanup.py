"""`flowcollect cleanup`: remove what agents that are gone left behind, and nothing of a running one.

A stopping agent removes its own filters and folders. One killed without its
shutdown (kill -9, a crash, the OOM killer) cannot. With TCX links (the
default where the kernel has them) its programs went with its process; with
legacy clsact filters (tc_attach_mode tc) they stay attached, counting into
maps nobody drains. This finds our programs' filters (fc_ingress, fc_egress:
libbpf names a filter "<program>:[<id>]") on every interface of the network
namespace and removes those whose program belongs to no running agent
(flowcollect/kernel/owners.py); foreign filters, and the clsact qdisc they
may share, stay. Runtime and metrics folders of agents that are gone go too.
The systemd unit runs this after every stop (ExecStopPost).
"""
import logging
import re
import shutil
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from flowcollect.kernel import owners

log = logging.getLogger(__name__)

OUR_PROGRAMS = ("fc_ingress", "fc_egress")
# clsact hooks: TC_H_CLSACT major with TC_H_MIN_INGRESS / TC_H_MIN_EGRESS.
HOOKS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
_FILTER_NAME = re.compile(r"^(\w+):\[(\d+)\]$")


@dataclass(frozen=True)
class Filter:
    hook: str
    handle: int
    priority: int
    program: str
    prog_id: int


def _program(message: Any) -> tuple[str, int] | None:
    """(program name, program id) of a bpf filter, from the name libbpf gave it."""
    options = message.get_attr("TCA_OPTIONS")
    if message.get_attr("TCA_KIND") != "bpf" or not options:
        return None
    match = _FILTER_NAME.match(str(dict(options["attrs"]).get("TCA_BPF_NAME", "")))
    return (match.group(1), int(match.group(2))) if match else None


def ours(ipr: IPRoute, ifindex: int) -> list[Filter]:
    """Our programs' filters on one interface, whoever's agent they belong to."""
    found = []
    for hook, parent in HOOKS.items():
        for message in ipr.get_filters(index=ifindex, parent=parent):
            program = _program(message)
            if program is not None and program[0] in OUR_PROGRAMS and message["handle"]:
                found.append(Filter(hook, message["handle"], message["info"] >> 16, *program))
    return found


def remove_leftovers(interfaces: Collection[str] = ()) -> tuple[int, int]:
    """Remove the filters and folders of agents that are gone (on the named interfaces, default all).

    Returns (filters removed, folders removed).
    """
    alive = owners.live_programs()
    removed = 0
    with IPRoute() as ipr:
        for ifindex, name in socket.if_nameindex():
            if interfaces and name not in interfaces:
                continue
            for leftover in ours(ipr, ifindex):
                if leftover.prog_id in alive:
                    continue  # a running agent's: not ours to touch
                ipr.tc("del-filter", kind="bpf", index=ifindex, parent=HOOKS[leftover.hook],
                       handle=leftover.handle, prio=leftover.priority)
                log.info("removed %s (program %d) left on %s %s", leftover.program, leftover.prog_id, name,
                         leftover.hook)
                removed += 1
    folders = owners.stale_folders()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by an agent that is gone", folder)
    return removed, len(folders)
