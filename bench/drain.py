"""Drain: entries/s of swap-and-drain into numpy, against the limit and the seed's way.

For each flow count, the kernel's own flow maps are filled from user space
(every CPU slot written), then drained, the paths interleaved run by run:
  - flowcollect: FlowKernel.swap_and_drain() called from Python, per-CPU fold
    into the numpy batch included. The map swap waits one RCU grace period
    (~10 ms, asleep: no CPU), so the figure is given on the CPU clock
    (user + system time of the process) and on the wall clock;
  - limit: a plain C loop over the same lookup_and_delete_batch syscalls into
    reused buffers: no fold, no output;
  - per-key C: get_next_key + lookup + delete per flow, in C (the seed's
    algorithm at its fastest);
  - per-key Python: the same loop in the agent's language, as the seed runs it
    from Go: one syscall per call, a fold per flow.
Ratios are of medians on the CPU clock.
Run: .venv/bin/python -m bench.drain [--flows 10000,100000,1000000] [--runs 9]
"""
import argparse
import time

from bench.build_baselines import load as load_baselines
from bench.common import Figure, markdown_table, progress
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.flow_kernel import FlowKernel

DRAIN_BATCH = 8192
PER_KEY_PYTHON_MAX = 100_000  # beyond this the Python loop alone takes minutes


def clocked(fn):
    """(result, wall seconds, CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w0, time.process_time() - c0


def per_key_python(base, fd, ncpus):
    """The seed's loop: next key, look it up, fold its per-CPU values, delete it."""
    ffi, blib = base.ffi, base.lib
    key, nxt = ffi.new("char[64]"), ffi.new("char[64]")
    values = ffi.new("uint64_t[]", 5 * ncpus)  # ncpus x struct fc_flow_metrics (40 bytes)
    prev, n = ffi.NULL, 0
    while blib.bpf_map_get_next_key(fd, prev, nxt) == 0:
        if prev != ffi.NULL:
            blib.bpf_map_delete_elem(fd, key)
        ffi.memmove(key, nxt, 64)
        prev = key
        if blib.bpf_map_lookup_elem(fd, key, values) == 0:
            packets = sum(values[5 * c] for c in range(ncpus))
            n += packets > 0
    if prev != ffi.NULL:
        blib.bpf_map_delete_elem(fd, key)
    return n


def measure(flows, runs):
    base = load_baselines()
    blib = base.lib
    ncpus = lib.fc_num_possible_cpus()
    wall, cpu, limit, per_key_c, per_key_py = [], [], [], [], []
    with FlowKernel(flows, drain_batch=DRAIN_BATCH) as kernel:
        maps = [kernel.map_fd(lib.FC_MAP_FLOWS_A), kernel.map_fd(lib.FC_MAP_FLOWS_B)]
        active = [0]  # the kernel starts on map A; every swap flips it

        def ours(fd):
            (batch, _), w, c = clocked(kernel.swap_and_drain)
            active[0] ^= 1
            assert len(batch) == flows and int(batch["packets"][0]) == sum(3 + c for c in range(ncpus))
            wall.append(flows / w)
            cpu.append(flows / c)

        def the_limit(fd):
            n, _, c = clocked(lambda: blib.fcb_raw_drain(fd, DRAIN_BATCH, ncpus))
            assert n == flows
            limit.append(flows / c)

        for run in range(runs):
            progress(f"drain {flows:,} flows: run {run + 1}/{runs}")
            # Every path drains the same map, just filled; nothing else writes it.
            # The order alternates: a drain is faster or slower depending on where
            # the previous drain left the map's elements in memory.
            fd = maps[active[0]]
            for path in ((ours, the_limit) if run % 2 == 0 else (the_limit, ours)):
                assert blib.fcb_fill(fd, flows, ncpus) == flows
                path(fd)
            if run < 3:
                assert blib.fcb_fill(fd, flows, ncpus) == flows
                n, _, c = clocked(lambda fd=fd: blib.fcb_per_key_drain(fd, ncpus))
                assert n == flows
                per_key_c.append(flows / c)
            if run < 3 and flows <= PER_KEY_PYTHON_MAX:
                assert blib.fcb_fill(fd, flows, ncpus) == flows
                n, _, c = clocked(lambda fd=fd: per_key_python(base, fd, ncpus))
                assert n == flows
                per_key_py.append(flows / c)
    figures = [
        Figure("flowcollect swap_and_drain, CPU clock", "entries/s", cpu),
        Figure("flowcollect swap_and_drain, wall clock", "entries/s", wall),
        Figure("limit: C batch loop", "entries/s", limit),
        Figure("per-key C (seed's algorithm)", "entries/s", per_key_c),
    ]
    if per_key_py:
        figures.append(Figure("per-key Python (seed's loop)", "entries/s", per_key_py))
    return figures


def run(flow_counts, runs):
    rows = []
    for flows in flow_counts:
        figures = measure(flows, runs)
        limit = figures[2]
        per_key_c = figures[3]
        per_key_py = figures[4] if len(figures) > 4 else None
        rows.extend([f"{flows:,}", fig.name, *fig.cells(), len(fig.runs),
                     f"{fig.ratio_to(limit):.2f}", f"{fig.ratio_to(per_key_c):.1f}",
                     f"{fig.ratio_to(per_key_py):.1f}" if per_key_py else "-"]
                    for fig in figures)
    return markdown_table(["flows", "path", "median entries/s", "min", "max", "runs",
                           "x limit", "x per-key C", "x per-key Py"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=9)  # as run_all.py DRAIN_RUNS: a drain swings ±15 % here
    args = parser.parse_args()
    print(run([int(f) for f in args.flows.split(",")], args.runs))


if __name__ == "__main__":
    main()
