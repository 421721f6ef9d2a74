"""The benchmarks' test bench: namespaces, veth pairs and processes that are always cleaned up.

    with Lab() as lab:
        sender, receiver = lab.pair(subnet=61)       # two namespaces, one veth pair
        server = lab.start(receiver.ns, "iperf3", "-s")
        agent = lab.agent(receiver.ns, "--interfaces", "veth0", "--output", "none")

Everything started through the lab is stopped (SIGTERM, then SIGKILL, by pid)
and every namespace deleted when the block ends, on an exception or Ctrl-C
too; SIGTERM to the benchmark is turned into KeyboardInterrupt so that it
cleans up the same way. Traffic stays inside the lab's namespaces.
"""
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, descendants
from bench.harness.agent import Agent
from bench.harness.netns import NetNS, veth_pair
from flowcollect.records.layout import FLOW_KEY

STOP_TIMEOUT_S = 5


def interrupt_on_sigterm():
    """SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, through every finally."""
    def handler(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


class BenchAgent(Agent):
    """The real flowcollect command in a namespace, with the pids and CPU of its processes."""

    def pids(self):
        """The collector (ip netns exec execs it: same pid) and every worker below it."""
        return descendants(self.process.pid)

    def cpu(self):
        """{pid: CPU seconds} of every process of the agent, now."""
        return {pid: cpu_seconds(pid) for pid in self.pids()}

    def peak_rss_kib(self):
        """{pid: VmHWM} of every process of the agent."""
        out = {}
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    out[pid] = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
            except (OSError, StopIteration):
                pass
        return out


class Lab:
    def __init__(self):
        self.namespaces = []
        self.processes = []
        self.agents = []
        self.tmp = None

    def __enter__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="fcbench-"))
        return self

    def __exit__(self, *exc):
        self.close()

    def namespace(self, role):
        ns = NetNS(role)
        self.namespaces.append(ns)
        return ns

    def pair(self, subnet, mtu=1500):
        """Two fresh namespaces joined by a veth pair (veth0 on both sides): (sender end, receiver end)."""
        a, b = self.namespace("tx"), self.namespace("rx")
        return veth_pair(a, b, subnet, mtu=mtu)

    def start(self, ns, *args, **kwargs):
        """A process in ns (or on the host if ns is None), stopped when the lab closes.

        It leads a process group of its own: tools that fork (trafgen starts one
        child per CPU) are stopped with all their children.
        """
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        kwargs["start_new_session"] = True
        proc = ns.popen(*args, **kwargs) if ns is not None else subprocess.Popen(args, **kwargs)
        self.processes.append(proc)
        return proc

    def agent(self, ns, *args, name="agent"):
        agent = BenchAgent(ns, self.tmp, *args, name=name)
        self.agents.append(agent)
        return agent

    def stop(self, proc, signum=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Ask a process of ours and its group to stop, then kill them; its exit code."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signum)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children left in the group, if any
        proc.wait()
        return proc.returncode

    def close(self):
        for agent in self.agents:
            if agent.process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    agent.stop(timeout=STOP_TIMEOUT_S)
            agent.close()
        for proc in self.processes:
            self.stop(proc, timeout=2)
        for ns in self.namespaces:
            ns.delete()
        self.namespaces, self.processes, self.agents = [], [], []
        if self.tmp is not None:
            subprocess.run(["rm", "-rf", str(self.tmp)], check=False)
            self.tmp = None


def wait_until(predicate, timeout, period=0.05):
    """Poll predicate until true or timeout; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(period)


def link_counter(link, name):
    """/sys/class/net/<veth>/statistics/<name> of a link in its namespace."""
    return int(link.ns.exec("cat", f"/sys/class/net/{link.name}/statistics/{name}").stdout)


def bpf_maps(pid):
    """fdinfo of every BPF map a process holds, one dict per map (map_id, map_type, memlock...), as ints."""
    return bpf_objects(pid, "map")


def bpf_objects(pid, kind):
    """fdinfo of every BPF object of `kind` ("map", "prog") a process holds, one dict per object, as ints."""
    maps = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != f"anon_inode:bpf-{kind}":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        info = {k: v.strip() for k, v in info.items()}
        info = {k: int(v) if v.isdigit() else v for k, v in info.items()}
        maps[info[f"{kind}_id"]] = info
    return list(maps.values())


BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12


class AgentMaps:
    """A running agent's flow maps, reached by id from this process (bench/baselines.c fills them).

    flows: the two per-CPU hash maps keyed by struct fc_flow_key (the features' maps have keys of
    their own); active(): the id of the one the kernel programs write now (the value in the
    one-slot array-of-maps that points at one of them).
    """

    def __init__(self, base, pid):
        self.base = base
        maps = bpf_maps(pid)
        self.ids = sorted(m["map_id"] for m in maps if m["map_type"] == BPF_MAP_TYPE_PERCPU_HASH
                          and m["key_size"] == FLOW_KEY.itemsize)
        assert len(self.ids) == 2, maps
        self.fds = {i: self._fd(i) for i in self.ids}
        self._key = base.ffi.new("__u32 *", 0)
        self._value = base.ffi.new("__u32 *")
        slots = [self._fd(m["map_id"]) for m in maps if m["map_type"] == BPF_MAP_TYPE_ARRAY_OF_MAPS]
        flow_slots = [fd for fd in slots if self._inner(fd) in self.ids]
        for fd in slots:
            if fd not in flow_slots:
                os.close(fd)
        assert len(flow_slots) == 1, maps
        self.slot_fd = flow_slots[0]

    def _fd(self, map_id):
        fd = self.base.lib.bpf_map_get_fd_by_id(map_id)
        if fd < 0:
            raise OSError(-fd, f"map id {map_id}: {os.strerror(-fd)}")
        return fd

    def _inner(self, slot_fd):
        """The id of the map an array-of-maps' one slot holds."""
        rc = self.base.lib.bpf_map_lookup_elem(slot_fd, self._key, self._value)
        if rc:
            raise OSError(-rc, "lookup of a map-in-map slot")
        return self._value[0]

    def active(self):
        return self._inner(self.slot_fd)

    def fill(self, map_id, first, n, ncpus):
        """n distinct flows (first .. first+n-1), every CPU slot written, into one of the flow maps."""
        got = self.base.lib.fcb_fill_from(self.fds[map_id], first, n, ncpus)
        if got != n:
            raise OSError(-got if got < 0 else 0, f"filled {got} of {n} flows")

    def close(self):
        for fd in [*self.fds.values(), self.slot_fd]:
            os.close(fd)
