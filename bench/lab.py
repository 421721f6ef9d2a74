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
from bench.harness import frames
from bench.harness.agent import Agent
from bench.harness.netns import NetNS, veth_pair
from flowcollect.kernel.bindings import ffi
from flowcollect.kernel.table_sizing import FILL_SHARE

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

    def pair(self, subnet, mtu=1500, names=("veth0", "veth0")):
        """Two fresh namespaces joined by a veth pair (named `names`, veth0 on both sides by default):
        (sender end, receiver end)."""
        a, b = self.namespace("tx"), self.namespace("rx")
        return veth_pair(a, b, subnet, mtu=mtu, name_a=names[0], name_b=names[1])

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


class AgentTable:
    """A running agent's flow table, reached by id from this process, filled by its own program.

    The bench cannot make hundreds of thousands of new flows a second with traffic on this machine
    without taking a core from the agent, so it runs frames through the agent's fc_ingress with
    BPF_PROG_TEST_RUN (bench/baselines.c), pinned to one CPU: the real program writes the flows into
    that CPU's region of the active half, as it would for packets. The agent must trace no interface
    (`--interfaces none-such`): no live program may write the same region while a test run does.
    """

    def __init__(self, base, pid):
        self.base = base
        self.ffi = base.ffi
        progs = {self._prog_name(p["prog_id"]): p["prog_id"] for p in bpf_objects(pid, "prog")}
        self.prog_fd = self._fd(base.lib.bpf_prog_get_fd_by_id, progs["fc_ingress"])
        self.fds = []
        self.cpu_tables = self.bss = None
        for m in bpf_maps(pid):
            fd = self._fd(base.lib.bpf_map_get_fd_by_id, m["map_id"])
            name, size = self.ffi.new("char[16]"), self.ffi.new("__u32 *")
            if base.lib.fcb_map_name(fd, name, size):
                raise OSError("reading a map's name")
            name = self.ffi.string(name).decode()
            if name == "fc_cpu_tables":
                self.cpu_tables = fd
            elif name.endswith(".bss"):
                self.bss, self._bss_value = fd, self.ffi.new("char[]", size[0])
                self._active_at = base.lib.fcb_global_offset(fd, b"fc_table_active")
            else:
                os.close(fd)
                continue
            self.fds.append(fd)
        assert self.cpu_tables is not None and self.bss is not None and self._active_at >= 0
        self._key = self.ffi.new("__u32 *")
        self._region = ffi.new("struct fc_cpu_table *")
        self._frame = self.ffi.new("char[]", frames.new_flow_frame())
        self._ns = self.ffi.new("__u64 *")

    def _prog_name(self, prog_id):
        name, t, n = self.ffi.new("char[16]"), self.ffi.new("__u64 *"), self.ffi.new("__u64 *")
        return self.ffi.string(name).decode() if not self.base.lib.fcb_prog_run_stats(prog_id, t, n, name) else ""

    @staticmethod
    def _fd(get, object_id):
        fd = get(object_id)
        if fd < 0:
            raise OSError(-fd, f"BPF object id {object_id}: {os.strerror(-fd)}")
        return fd

    def active(self):
        """The half the agent's programs write now (fc_table_active)."""
        self._key[0] = 0
        if self.base.lib.bpf_map_lookup_elem(self.bss, self._key, self._bss_value):
            raise OSError("reading the agent's .bss")
        return int.from_bytes(self.ffi.buffer(self._bss_value)[self._active_at:self._active_at + 4], "little")

    def region(self, cpu):
        """CPU's region of the active half (struct fc_table_region): its cap and what it holds."""
        self._key[0] = cpu
        buffer = self.ffi.from_buffer(ffi.buffer(self._region))
        if self.base.lib.bpf_map_lookup_elem(self.cpu_tables, self._key, buffer):
            raise OSError("reading the agent's table regions")
        return self._region.half[self.active()]

    def fill(self, first, n, cpu):
        """n new flows (source addresses first .. first+n-1), in CPU's region of the active half."""
        home = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            rc = self.base.lib.fcb_test_run_new_flows(self.prog_fd, self._frame, len(self.ffi.buffer(self._frame)),
                                                      frames.NEW_FLOW_SRC_IP_OFFSET, first, n, self._ns)
        finally:
            os.sched_setaffinity(0, home)
        if rc < 0:
            raise OSError(-rc, f"BPF_PROG_TEST_RUN: {os.strerror(-rc)}")

    def wait_swap(self, current, timeout):
        """Block until the agent's programs write another half than `current`; the time it was seen."""
        deadline = time.monotonic() + timeout
        while self.active() == current:
            if time.monotonic() > deadline:
                raise TimeoutError("the agent did not swap its flow table")
            time.sleep(0.001)
        return time.perf_counter()

    def grow(self, cap, cpu, first, timeout=30):
        """Make CPU's region hold `cap` flows or more: fill it to the mark, half after half, so that the agent
        lays every next half out larger (kernel/table_sizing.py). Returns the next unused source address."""
        while (region := self.region(cpu)).cap < cap:
            half = self.active()
            n = int(region.cap * FILL_SHARE) + 1 - int(region.flows)
            self.fill(first, max(n, 1), cpu)
            first += max(n, 1)
            self.wait_swap(half, timeout)
        return first

    def close(self):
        for fd in [*self.fds, self.prog_fd]:
            os.close(fd)
