"""Memory: peak RSS of every flowcollect process, and kernel map memory, against cache_max_flows.

For each cache_max_flows value the real agent runs in a namespace (collector
+ 2 workers, `--output none`, eviction every 1 s), tracing no interface.
Traffic cannot make 500,000 distinct flows a second on this machine, so the
bench runs frames through the agent's own fc_ingress (bench/lab.py
AgentTable), CPU by CPU: first every CPU's region is grown to an even share
of cache_max_flows (filled to the swap mark, half after half), then filled
to its cap FILLS times: every eviction then drains a full half through the
collector and the workers, the worst case for memory. Then:
  - peak RSS: VmHWM of the collector and of each worker (/proc/<pid>/status),
    against a bare Python process that imports what a worker imports (the
    floor of any process of ours), measured in the same run;
  - kernel maps: memlock of every BPF map the collector holds (the table's
    two halves, the overflow maps, the ring buffer, counters, read-only
    data), from /proc/<pid>/fdinfo, against the bytes of the flows
    themselves: two halves x cache_max_flows x (key + metrics).
Run: .venv/bin/python -m bench.memory [--flows 5000,50000,500000] [--runs 3]
"""
import argparse
import os
import subprocess
import sys
import time

from bench.build_baselines import load as load_baselines
from bench.common import Figure, Result, progress, results_table
from bench.lab import AgentTable, Lab, bpf_maps, interrupt_on_sigterm
from flowcollect.kernel.bindings import lib
from flowcollect.records import layout

PART = "memory"
SUBNET = 64
EVICTION_S = 1.0
FILLS = 2
FLOOR_IMPORTS = "import numpy, zmq, flowcollect.agent.worker, flowcollect.export.outputs"


def floor_rss_kib():
    """VmHWM of a bare Python process with the worker's imports."""
    out = subprocess.run([sys.executable, "-c", FLOOR_IMPORTS + "\nprint(open('/proc/self/status').read())"],
                         capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[1]) for line in out.splitlines() if line.startswith("VmHWM:"))


def flow_bytes(flows):
    """What the table's two halves hold at most: the key and metrics of every flow."""
    return 2 * flows * (layout.FLOW_KEY.itemsize + layout.FLOW_METRICS.itemsize)


def one_run(lab, base, flows, ncpus, run):
    receiver = lab.namespace("mem")
    agent = lab.agent(receiver, "--workers", "2", "--output", "none", "--interfaces", "none-such",
                      "--agent-ip", "192.0.2.1", "--cache-max-flows", str(flows),
                      "--cache-active-timeout", f"{EVICTION_S:g}s",
                      name=f"memory-{flows}-{run}")
    table = AgentTable(base, agent.process.pid)
    cpus = sorted(os.sched_getaffinity(0))
    try:
        first = 0
        for cpu in cpus:
            first = table.grow(flows // len(cpus), cpu, first)
        for _ in range(FILLS):
            for cpu in cpus:
                cap = int(table.region(cpu).cap)
                table.fill(first, cap, cpu)
                first += cap
            time.sleep(2 * EVICTION_S + 0.3)  # both halves swapped out and drained through the workers
        rss = agent.peak_rss_kib()
        memlock = sum(m.get("memlock", 0) for m in bpf_maps(agent.process.pid))
    finally:
        table.close()
        code, _ = agent.stop()
        receiver.delete()
    assert code == 0, f"flowcollect exited {code}"
    collector = rss.pop(agent.process.pid)
    return collector, sorted(rss.values()), memlock


def measure(flow_counts, runs):
    base = load_baselines()
    ncpus = lib.fc_num_possible_cpus()
    results = []
    with Lab() as lab:
        for flows in flow_counts:
            collector, workers, maps, floor = [], [], [], []
            for run in range(runs):
                progress(f"memory: cache_max_flows {flows:,}, run {run + 1}/{runs}")
                c, w, m = one_run(lab, base, flows, ncpus, run)
                collector.append(c / 1024)
                workers.append(max(w) / 1024)
                maps.append(m / 2**20)
                floor.append(floor_rss_kib() / 1024)
            case = f"cache_max_flows {flows:,}"
            floor_fig = Figure("bare Python + worker imports", "MiB", floor)
            results += [
                Result(PART, case, Figure("collector peak RSS", "MiB", collector), floor_fig, better="lower"),
                Result(PART, case, Figure("largest worker peak RSS", "MiB", workers), floor_fig, better="lower"),
                Result(PART, case, Figure("kernel maps (memlock)", "MiB", maps),
                       Figure("flows' own bytes, 2 halves", "MiB", [flow_bytes(flows) / 2**20] * runs),
                       better="lower"),
            ]
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", default="5000,50000,500000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    interrupt_on_sigterm()
    print(results_table(measure([int(f) for f in args.flows.split(",")], args.runs)))


if __name__ == "__main__":
    main()
