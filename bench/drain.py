"""Drain: entries/s of swap-and-drain into numpy, against a copy of the same bytes and the old ways.

For each flow count, the agent's own program fills the table: the same N
flows run through fc_ingress (BPF_PROG_TEST_RUN) on every CPU in turn, so
that every flow has an entry in every CPU's region and the drain folds them,
its worst case. Then, the paths interleaved run by run:
  - flowcollect: FlowKernel.swap_and_drain() called from Python: the swap
    (one RCU grace period, ~10 ms asleep: no CPU, so the figure is given on
    the CPU clock, user + system of the process, and on the wall clock), the
    read of every region's entries through the mapping, the fold across CPUs
    into the numpy rows, the index cleared;
  - floor: memcpy of the bytes the drain reads (every region's entries) into
    a buffer: what reading them costs at the least;
  - the old drain (BASELINE_COMMIT): a plain C loop over lookup_and_delete_batch
    syscalls on a per-CPU hash holding the same flows, every CPU's value
    written, into reused buffers, no fold; and per key (get_next_key + lookup
    + delete per flow) in C and in Python (the seed's loop).
Ratios are of medians on the CPU clock.
Run: .venv/bin/python -m bench.drain [--flows 10000,100000,1000000] [--runs 9]
"""
import argparse
import os
import time

import numpy as np

from bench.build_baselines import load as load_baselines
from bench.common import Figure, markdown_table, progress
from bench.harness import frames
from bench.kernel_cost import BASELINE_COMMIT
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.records.layout import FLOW_KEY, FLOW_METRICS

DRAIN_BATCH = 8192
PER_KEY_PYTHON_MAX = 100_000  # beyond this the Python loop alone takes minutes
ENTRY_BYTES = 128  # struct fc_table_entry


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


def fill_every_cpu(base, prog_fd, first, flows, cpus):
    """The same `flows` new flows (source addresses first..), run through the program on each CPU in turn."""
    frame = base.ffi.new("char[]", frames.new_flow_frame())
    ns = base.ffi.new("__u64 *")
    home = os.sched_getaffinity(0)
    try:
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            rc = base.lib.fcb_test_run_new_flows(prog_fd, frame, len(base.ffi.buffer(frame)),
                                                 frames.NEW_FLOW_SRC_IP_OFFSET, first, flows, ns)
            assert rc == 0, os.strerror(-rc)
    finally:
        os.sched_setaffinity(0, home)


def measure(flows, runs):
    base = load_baselines()
    blib = base.lib
    ncpus = lib.fc_num_possible_cpus()
    cpus = sorted(os.sched_getaffinity(0))
    wall, cpu, floor, limit, per_key_c, per_key_py = [], [], [], [], [], []
    entries = np.zeros(flows * len(cpus) * ENTRY_BYTES, dtype=np.uint8)
    copy = np.ones_like(entries)  # both touched now: the floor pays no first-touch faults
    old_fd = blib.fcb_percpu_hash(FLOW_KEY.itemsize, FLOW_METRICS.itemsize, flows)
    assert old_fd >= 0, os.strerror(-old_fd)
    # Every CPU's region holds the flows at its cap, bounded there: the table keeps its size run after run.
    with FlowKernel(flows * ncpus, start_cap=flows) as kernel:
        prog = kernel.prog_fd(lib.FC_PROG_INGRESS)
        first = 0

        def ours():
            nonlocal first
            fill_every_cpu(base, prog, first, flows, cpus)
            first += flows
            (batch, _), w, c = clocked(kernel.swap_and_drain)
            assert len(batch) == flows and (batch["packets"] == len(cpus)).all()
            wall.append(flows / w)
            cpu.append(flows / c)

        def the_floor():
            _, _, c = clocked(lambda: np.copyto(copy, entries))
            floor.append(flows / c)

        def the_limit():
            assert blib.fcb_fill(old_fd, flows, ncpus) == flows
            n, _, c = clocked(lambda: blib.fcb_raw_drain(old_fd, DRAIN_BATCH, ncpus))
            assert n == flows
            limit.append(flows / c)

        try:
            for run in range(runs):
                progress(f"drain {flows:,} flows: run {run + 1}/{runs}")
                # The order alternates: a path is faster or slower depending on what the one before left
                # in the caches.
                for path in ((ours, the_floor, the_limit) if run % 2 == 0 else (the_limit, the_floor, ours)):
                    path()
                if run < 3:
                    assert blib.fcb_fill(old_fd, flows, ncpus) == flows
                    n, _, c = clocked(lambda: blib.fcb_per_key_drain(old_fd, ncpus))
                    assert n == flows
                    per_key_c.append(flows / c)
                if run < 3 and flows <= PER_KEY_PYTHON_MAX:
                    assert blib.fcb_fill(old_fd, flows, ncpus) == flows
                    n, _, c = clocked(lambda: per_key_python(base, old_fd, ncpus))
                    assert n == flows
                    per_key_py.append(flows / c)
        finally:
            os.close(old_fd)
    figures = [
        Figure("flowcollect swap_and_drain, CPU clock", "entries/s", cpu),
        Figure("flowcollect swap_and_drain, wall clock", "entries/s", wall),
        Figure(f"floor: memcpy of the entries it reads ({len(cpus)} CPUs)", "entries/s", floor),
        Figure(f"old drain ({BASELINE_COMMIT}): C batch-syscall loop", "entries/s", limit),
        Figure("per-key C (seed's algorithm)", "entries/s", per_key_c),
    ]
    if per_key_py:
        figures.append(Figure("per-key Python (seed's loop)", "entries/s", per_key_py))
    return figures


def run(flow_counts, runs):
    rows = []
    for flows in flow_counts:
        figures = measure(flows, runs)
        floor, limit = figures[2], figures[3]
        rows.extend([f"{flows:,}", fig.name, *fig.cells(), len(fig.runs),
                     f"{fig.ratio_to(floor):.2f}", f"{fig.ratio_to(limit):.2f}"]
                    for fig in figures)
    return markdown_table(["flows", "path", "median entries/s", "min", "max", "runs", "x floor", "x old C loop"],
                          rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=9)  # as run_all.py DRAIN_RUNS: a drain swings ±15 % here
    args = parser.parse_args()
    print(run([int(f) for f in args.flows.split(",")], args.runs))


if __name__ == "__main__":
    main()
