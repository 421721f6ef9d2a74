"""Overhead on real traffic: UDP packets/s and TCP throughput over a veth pair, with and without the agent.

Two namespaces joined by a veth pair. The sender runs trafgen (UDP, 60-byte
frames, 8,192 flows: source ports 1024..9215, to a closed port) or an iperf3
client (TCP); the receiver is where the agent runs: the real `flowcollect`
command (collector + 1 worker, `--output none`, `--cache-max-flows 100000` so
every flow fits the map, eviction every 5 s), attached to the receiver's veth0
(ingress: the data; egress: ACKs and ICMP errors). The real command rather than
FlowKernel alone, so that the figure includes what an operator pays: the TC
programs on every packet plus the user-space evictions competing for the same
two cores.

UDP packets/s is counted where the receiving stack has fully handled a packet
(Udp NoPorts in the receiver's /proc/net/snmp) over a fixed window, while
trafgen sends as fast as it can from one CPU. On a veth the receive side runs
in the sender's softirq on the same CPU, so every ns the TC program costs
shows up in this figure: the worst case for overhead. trafgen's frames are
non-linear skbs (headers in page fragments): the program copies the first
128 bytes once with bpf_skb_load_bytes (bpf/flows.bpf.c frame_open). TCP:
iperf3 bits/s received, one stream, GSO on (a TC program runs once per GSO
packet of up to 64 KiB, not per wire frame).

A third condition, an empty TC program (bench/bpf/empty.bpf.c) attached on
both hooks of the same veth, separates what the TC hook itself costs from
what flowcollect's program and processes add; a fourth, the floor program
(bench/bpf/floor.bpf.c: one clock read and one header copy, what any flow
program must do per packet before it touches a map), bounds what changes to
the program itself can win (UDP only); a fifth, the datapath as it was at
BASELINE_COMMIT (its fc_ingress and fc_egress built from git, flow maps of
AGENT_FLOWS, attached with TCX links like the agent's), measures what the
table bought on the real path; a sixth, the agent with `--flow-clock tick`
(docs/architecture.md, the clock: it ticks through the UDP flood and rests
through the TCP stream), what the tick changes on the same traffic. Each run rotates which condition goes first,
so drift on a noisy host favours none. Ratio = with / without.

The programs' own cost on this flood is read from the kernel's run-time
statistics (BPF_ENABLE_STATS, on only for that extra window: they add two
clock reads per run, which the empty program's figure shows).
Run: .venv/bin/python -m bench.overhead [--runs 5] [--seconds 2]
"""
import argparse
import contextlib
import functools
import json
import os
import time

from bench.build_baselines import load as load_baselines
from bench.common import Figure, Result, progress, results_table
from bench.kernel_cost import BASELINE_COMMIT, bench_object, old_program
from bench.lab import Lab, bpf_objects, interrupt_on_sigterm, wait_until

PART = "overhead"
SUBNET = 61
WARMUP_S = 0.5
UDP_FLOWS = 8192
IPERF_PORT = 5201


def trafgen_udp_config(sender, receiver, flows):
    """A 60-byte UDP frame whose source port walks over `flows` values: one flow each."""
    return (f"{{ eth(da={receiver.mac}, sa={sender.mac}), ipv4(saddr={sender.ipv4}, daddr={receiver.ipv4}, ttl=64), "
            f"udp(sport=dinc(1024, {1023 + flows:d}), dport=9), fill(0x00, 18) }}\n")


def udp_no_ports(link):
    """UDP packets the namespace's stack received for a closed port (each one fully handled)."""
    lines = [line.split() for line in link.ns.exec("cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("NoPorts")])


class Bench:
    def __init__(self, lab, seconds):
        self.lab, self.seconds = lab, seconds
        self.base = load_baselines()
        self.sender, self.receiver = lab.pair(SUBNET)
        self.udp_conf = lab.tmp / "udp.trafgen"
        self.udp_conf.write_text(trafgen_udp_config(self.sender, self.receiver, UDP_FLOWS))
        self.iperf_server = lab.start(self.receiver.ns, "iperf3", "--server", "--port", str(IPERF_PORT))

    def udp_pps(self):
        trafgen = self.lab.start(self.sender.ns, "trafgen", "--dev", "veth0", "--cpus", "1",
                                 "--conf", str(self.udp_conf), "--num", "0")
        try:
            time.sleep(WARMUP_S)
            n0, t0 = udp_no_ports(self.receiver), time.monotonic()
            time.sleep(self.seconds)
            n1, t1 = udp_no_ports(self.receiver), time.monotonic()
        finally:
            self.lab.stop(trafgen)
        return (n1 - n0) / (t1 - t0)

    def _prog_stats(self, prog_id):
        run_ns, runs, name = (self.base.ffi.new("__u64 *"), self.base.ffi.new("__u64 *"),
                              self.base.ffi.new("char[16]"))
        err = self.base.lib.fcb_prog_run_stats(prog_id, run_ns, runs, name)
        if err < 0:
            raise OSError(-err, "bpf_obj_get_info_by_fd")
        return run_ns[0], runs[0], self.base.ffi.string(name).decode()

    def ingress_id(self, attached):
        """The kernel id of the receiving veth's ingress program under a condition (what condition() yields).

        A program tc attached is found on the veth; the agent's among the programs its collector holds
        (its TCX links are not shown by Debian 12's bpftool); the old datapath's is the one this bench loaded.
        """
        if isinstance(attached, int):
            return attached
        if attached is None:
            nets = json.loads(self.receiver.ns.exec("bpftool", "-j", "net", "show", "dev", "veth0").stdout)
            ids = [p["id"] for net in nets for p in net.get("tc", []) if p.get("kind") == "clsact/ingress"]
        else:
            ids = [p["prog_id"] for p in bpf_objects(attached.process.pid, "prog")
                   if self._prog_stats(p["prog_id"])[2] == "fc_ingress"]
        assert len(ids) == 1, f"expected one ingress program on the receiver's veth0, found {ids}"
        return ids[0]

    def ingress_ns_per_packet(self, attached):
        """The receiving veth's ingress program, timed by the kernel (bpf_stats) over `seconds` of the UDP flood."""
        prog_id = self.ingress_id(attached)

        def stats():
            return self._prog_stats(prog_id)[:2]

        stats_fd = self.base.lib.fcb_enable_stats()
        if stats_fd < 0:
            raise OSError(-stats_fd, "BPF_ENABLE_STATS")
        try:
            (ns0, n0), _ = stats(), self.udp_pps()
            ns1, n1 = stats()
        finally:
            os.close(stats_fd)
        return (ns1 - ns0) / max(1, n1 - n0)

    def tcp_bps(self):
        out = self.sender.ns.exec("iperf3", "--client", self.receiver.ipv4, "--port", str(IPERF_PORT),
                                  "--time", f"{self.seconds:g}", "--json").stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]

    @contextlib.contextmanager
    def condition(self, name):
        """Traffic measured inside the block runs with `name` attached to the receiver's veth0.

        Afterwards the clsact qdisc goes too (flowcollect leaves qdiscs in
        place, as it must on a real host): "without" means no TC hook at all.
        """
        tc = functools.partial(self.receiver.ns.exec, "tc")
        try:
            if name == NOTHING:
                yield None
            elif name == OLD_DATAPATH:
                progs = [old_program(self.base, hook, flow_map_entries=AGENT_FLOWS) for hook in ("fc_ingress",
                                                                                                 "fc_egress")]
                with self.receiver.ns.entered():
                    links = [self.base.lib.fcb_tcx_attach(fd, self.receiver.ifindex, ingress)
                             for fd, ingress in zip(progs, (1, 0), strict=True)]
                try:
                    assert min(links) >= 0, f"attaching {OLD_DATAPATH}: {os.strerror(-min(links))}"
                    yield self.base.lib.fcb_prog_id(progs[0])
                finally:
                    for fd in [*progs, *(link for link in links if link >= 0)]:
                        os.close(fd)
            elif name in BENCH_PROGRAMS:
                tc("qdisc", "add", "dev", "veth0", "clsact")
                for hook in ("ingress", "egress"):
                    tc("filter", "add", "dev", "veth0", hook, "prio", "1", "bpf", "direct-action",
                       "object-file", bench_object(BENCH_PROGRAMS[name]), "section", "tc")
                yield None
            else:
                agent = self.lab.agent(self.receiver.ns, "--interfaces", "veth0", "--output", "none",
                                       "--workers", "1", "--cache-max-flows", str(AGENT_FLOWS),
                                       *(["--flow-clock", "tick"] if name == FLOWCOLLECT_TICK else []),
                                       name=f"overhead-{time.monotonic_ns()}")
                try:
                    yield agent
                finally:
                    code, _ = agent.stop()
                    assert code == 0, f"flowcollect exited {code}"
        finally:
            tc("qdisc", "del", "dev", "veth0", "clsact", check=False)


NOTHING, EMPTY_PROGRAM, FLOWCOLLECT = "without", "empty TC program", "with flowcollect"
FLOWCOLLECT_TICK = "with flowcollect, flow_clock tick"
FLOOR_PROGRAM = "floor: empty + one clock read + one header copy"
OLD_DATAPATH = f"fc_ingress/fc_egress at {BASELINE_COMMIT}"
BENCH_PROGRAMS = {EMPTY_PROGRAM: "empty", FLOOR_PROGRAM: "floor"}  # bench/bpf/<name>.bpf.c
CONDITIONS = (NOTHING, EMPTY_PROGRAM, FLOOR_PROGRAM, OLD_DATAPATH, FLOWCOLLECT, FLOWCOLLECT_TICK)
AGENT_FLOWS = 100_000  # every flow of the flood fits, in the agent's table as in the old maps


def over(runs, floor):
    """Each run's figure less the floor's of the same run."""
    return [x - f for x, f in zip(runs, floor, strict=True)]


def measure(runs, seconds):
    udp = {c: [] for c in CONDITIONS}
    tcp = {c: [] for c in (NOTHING, EMPTY_PROGRAM, FLOWCOLLECT, FLOWCOLLECT_TICK)}
    timed = {c: [] for c in CONDITIONS[1:]}
    with Lab() as lab:
        bench = Bench(lab, seconds)
        wait_until(lambda: bench.receiver.ns.exec("ss", "-ltn").stdout.count(f":{IPERF_PORT}"), 5)
        for run in range(runs):
            progress(f"overhead: run {run + 1}/{runs}")
            turn = run % len(CONDITIONS)
            for condition in CONDITIONS[turn:] + CONDITIONS[:turn]:
                with bench.condition(condition) as attached:
                    udp[condition].append(bench.udp_pps())
                    if condition in tcp:
                        tcp[condition].append(bench.tcp_bps() / 1e9)
                    if condition in timed:
                        timed[condition].append(bench.ingress_ns_per_packet(attached))
    udp_case, tcp_case = f"UDP, {UDP_FLOWS:,} flows, 60 B frames", "TCP, 1 iperf3 stream"
    fig = Figure
    return [
        Result(PART, udp_case, fig(FLOWCOLLECT, "packets/s", udp[FLOWCOLLECT]),
               fig(NOTHING, "packets/s", udp[NOTHING]), aim=">= 0.92"),
        Result(PART, udp_case, fig(EMPTY_PROGRAM, "packets/s", udp[EMPTY_PROGRAM]),
               fig(NOTHING, "packets/s", udp[NOTHING])),
        Result(PART, udp_case, fig(FLOOR_PROGRAM, "packets/s", udp[FLOOR_PROGRAM]),
               fig(NOTHING, "packets/s", udp[NOTHING])),
        Result(PART, udp_case + ": kernel-timed (bpf_stats)", fig(FLOWCOLLECT, "ns/packet", timed[FLOWCOLLECT]),
               fig(EMPTY_PROGRAM, "ns/packet", timed[EMPTY_PROGRAM]), better="lower", aim="<= 150",
               aim_of="median"),
        Result(PART, udp_case + ": kernel-timed (bpf_stats)", fig(FLOWCOLLECT, "ns/packet", timed[FLOWCOLLECT]),
               fig(FLOOR_PROGRAM, "ns/packet", timed[FLOOR_PROGRAM]), better="lower"),
        Result(PART, udp_case + ": kernel-timed (bpf_stats)", fig(FLOWCOLLECT, "ns/packet", timed[FLOWCOLLECT]),
               fig(OLD_DATAPATH, "ns/packet", timed[OLD_DATAPATH]), better="lower", aim="<= 0.65"),
        Result(PART, udp_case + ": kernel-timed (bpf_stats), less the empty program's of the same run",
               fig(FLOWCOLLECT, "ns/packet", over(timed[FLOWCOLLECT], timed[EMPTY_PROGRAM])),
               fig(OLD_DATAPATH, "ns/packet", over(timed[OLD_DATAPATH], timed[EMPTY_PROGRAM])), better="lower",
               aim="<= 0.65"),
        Result(PART, udp_case, fig(OLD_DATAPATH, "packets/s", udp[OLD_DATAPATH]),
               fig(NOTHING, "packets/s", udp[NOTHING])),
        # The tick (docs/architecture.md, the clock): it ticks through the UDP flood, rests through TCP.
        Result(PART, udp_case, fig(FLOWCOLLECT_TICK, "packets/s", udp[FLOWCOLLECT_TICK]),
               fig(NOTHING, "packets/s", udp[NOTHING])),
        Result(PART, udp_case + ": kernel-timed (bpf_stats)",
               fig(FLOWCOLLECT_TICK, "ns/packet", timed[FLOWCOLLECT_TICK]),
               fig(OLD_DATAPATH, "ns/packet", timed[OLD_DATAPATH]), better="lower"),
        Result(PART, udp_case + ": kernel-timed (bpf_stats), less the empty program's of the same run",
               fig(FLOWCOLLECT_TICK, "ns/packet", over(timed[FLOWCOLLECT_TICK], timed[EMPTY_PROGRAM])),
               fig(OLD_DATAPATH, "ns/packet", over(timed[OLD_DATAPATH], timed[EMPTY_PROGRAM])), better="lower"),
        Result(PART, tcp_case, fig(FLOWCOLLECT_TICK, "Gbit/s", tcp[FLOWCOLLECT_TICK]),
               fig(NOTHING, "Gbit/s", tcp[NOTHING])),
        Result(PART, tcp_case, fig(FLOWCOLLECT, "Gbit/s", tcp[FLOWCOLLECT]), fig(NOTHING, "Gbit/s", tcp[NOTHING])),
        Result(PART, tcp_case, fig(EMPTY_PROGRAM, "Gbit/s", tcp[EMPTY_PROGRAM]),
               fig(NOTHING, "Gbit/s", tcp[NOTHING])),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    interrupt_on_sigterm()
    print(results_table(measure(args.runs, args.seconds)))


if __name__ == "__main__":
    main()
