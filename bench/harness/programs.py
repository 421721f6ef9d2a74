"""Which BPF programs are on an interface's TC hooks: legacy clsact filters and TCX links alike."""
import json
import re
import socket
import subprocess

from flowcollect.kernel.flow_kernel import tcx_programs

HOOKS = ("ingress", "egress")
_TC_PROGRAM = re.compile(r"handle \S+ (\w+):\[\d+\]")


def programs_on(ns, dev):
    """{hook: {"tc:NAME" or "tcx:NAME", ...}} of the BPF programs on dev's ingress and egress hooks."""
    with ns.entered():
        ifindex = socket.if_nametoindex(dev)
        tcx = {hook: tcx_programs(ifindex, hook == "ingress") for hook in HOOKS}
    found = {}
    for hook in HOOKS:
        text = ns.exec("tc", "filter", "show", "dev", dev, hook, check=False).stdout
        names = {f"tc:{name}" for name in _TC_PROGRAM.findall(text)}
        names |= {f"tcx:{program_name(prog_id)}" for prog_id in tcx[hook]}
        found[hook] = names
    return found


def program_name(prog_id):
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "-j"], capture_output=True, text=True)
    return json.loads(out.stdout).get("name", "?") if out.returncode == 0 else "?"


def ours(ns, dev):
    """Our programs on dev: fc_ingress and fc_egress, by attach kind ("tc:fc_ingress", "tcx:fc_egress", ...)."""
    return {name for names in programs_on(ns, dev).values() for name in names
            if name.split(":", 1)[1].startswith("fc_")}


def tcx_links(ns, dev, hook):
    """Ids of the TCX links on dev's hook (what `bpftool link detach id N` takes)."""
    with ns.entered():
        prog_ids = set(tcx_programs(socket.if_nametoindex(dev), hook == "ingress"))
    links = json.loads(subprocess.run(["bpftool", "link", "show", "-j"], capture_output=True, text=True,
                                      check=True).stdout)
    return [link["id"] for link in links if link.get("prog_id") in prog_ids]
