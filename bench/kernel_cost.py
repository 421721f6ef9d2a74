"""Kernel cost: ns per packet of fc_ingress under BPF_PROG_TEST_RUN, against an empty TC program and its old self.

The kernel times the program runs itself (bpf_test_run: the loop around the
program, no syscall, no skb allocation), so the figures are the program's own
cost on this CPU. The packet is a 74-byte Ethernet/IPv4/UDP frame (a DNS
query's size). Cases, each beside baselines measured the same way in the same
run:
  - existing flow: the same frame repeated; after the first run every packet
    finds its entry and adds to it. With the fine clock (a bpf_ktime_get_ns()
    per packet) and with the 0.5 ms tick (bpf/clock.bpf.h), against the empty
    program, the floor program (bench/bpf/floor.bpf.c: one clock read), and
    fc_ingress as it was at BASELINE_COMMIT (a per-CPU hash behind a one-slot
    array-of-maps), built from git in the same run;
  - new flow: one test run per frame, each from a source address never seen,
    so every packet starts a flow; NEW_FLOWS a half (the table laid out for
    them at the fill where the agent swaps, swapped and drained between runs,
    off the clock), and LARGE_NEW_FLOWS (a table far larger than the caches).
    Against the same program on an existing flow run one frame per test run
    (the like-for-like ratio), the empty program run so, and the old program
    on NEW_FLOWS (its map holds 5,000);
  - beside both, the least a program of this table's design can do
    (bench/bpf/least_table.bpf.c: the key of a linear Ethernet/IPv4 frame,
    the agent's hash, a region of index and entries in .bss, a time a tick
    wrote): what the parser, the fallbacks and the layout in maps cost;
  - overflowing flow: a flow whose bucket's 16 pairs are all taken (16 flows
    of colliding hashes first), counted in the overflow map;
  - full table: every region at its cap of one flow: every new flow is refused
    and goes to the ring buffer as a one-packet record (consumed between runs,
    off the clock); and with the ring buffer full too: the loss is counted.
Run: .venv/bin/python -m bench.kernel_cost [--runs 7] [--packets 200000]
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np

from bench.build_baselines import OUT_DIR
from bench.build_baselines import load as load_baselines
from bench.common import Figure, Result, progress, results_table
from bench.harness import frames
from flowcollect.kernel.bindings import ffi, lib
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.kernel.table_sizing import FILL_SHARE
from flowcollect.records.layout import DIRECTION_INGRESS, ETH_P_IP, FLOW_KEY

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
PART = "kernel cost"
BASELINE_COMMIT = "2be3784"  # the datapath before the per-CPU table (issue 19 measures against it)
NEW_FLOWS = 4096
LARGE_NEW_FLOWS = 100_000
RINGBUF_BYTES = 1 << 26  # room for a whole run of one-packet records (112 bytes each with the header)
SMALLEST_RINGBUF = 4096  # one page: fills after a few dozen records
TEST_RUN_IFINDEX = 1     # BPF_PROG_TEST_RUN runs a TC program on the loopback device
LEAST = "least table program (bench/bpf/least_table.bpf.c)"
TICK = {"clock": "tick", "tick_min_runs": 0}  # the tick runs all along, not only while the test runs are many


def bench_object(name="empty"):
    """Compile bench/bpf/NAME.bpf.c as native/build_bpf.py compiles the agent's programs; its path."""
    from native.build_bpf import compile_object
    obj = os.path.join(OUT_DIR, f"{name}.bpf.o")
    os.makedirs(OUT_DIR, exist_ok=True)
    compile_object(os.path.join(BENCH_DIR, "bpf", f"{name}.bpf.c"), obj)
    return obj


def bench_program(base, name):
    obj = bench_object(name)
    fd = base.lib.fcb_load_first_prog(obj.encode())
    if fd < 0:
        raise OSError(-fd, f"loading {obj}: {os.strerror(-fd)}")
    return fd


def old_object(commit=BASELINE_COMMIT):
    """bpf/flows.bpf.o as it was at `commit`, compiled from git the way this tree compiles its own; its path."""
    from native.build_bpf import compile_object
    out = os.path.join(OUT_DIR, f"flows-{commit}.bpf.o")
    if os.path.exists(out):
        return out
    os.makedirs(OUT_DIR, exist_ok=True)
    names = subprocess.run(["git", "-C", ROOT, "ls-tree", "--name-only", f"{commit}:bpf"], check=True,
                           capture_output=True, text=True).stdout.split()
    with tempfile.TemporaryDirectory() as src:
        for name in names:
            blob = subprocess.run(["git", "-C", ROOT, "show", f"{commit}:bpf/{name}"], check=True,
                                  capture_output=True).stdout
            with open(os.path.join(src, name), "wb") as f:
                f.write(blob)
        compile_object(os.path.join(src, "flows.bpf.c"), out)
    return out


def old_program(base, name="fc_ingress", flow_map_entries=0, commit=BASELINE_COMMIT):
    """A TC program as it was at `commit`, its maps made by libbpf as declared then (5,000 flows a map, or
    flow_map_entries)."""
    fd = base.lib.fcb_load_prog(old_object(commit).encode(), name.encode(), flow_map_entries)
    if fd < 0:
        raise OSError(-fd, f"loading {name} of {commit}: {os.strerror(-fd)}")
    return fd


class Runner:
    def __init__(self, base, packets):
        self.base, self.packets = base, packets
        self.frame = frames.new_flow_frame()
        self.ns = base.ffi.new("__u64 *")
        self.buf = base.ffi.new("char[]", self.frame)

    def repeated(self, prog_fd, frame=None, packets=None):
        """ns per packet of one test run of `packets` repeats of the same frame."""
        frame, packets = frame or self.frame, packets or self.packets
        ret = self.base.lib.fcb_test_run(prog_fd, frame, len(frame), packets, self.ns)
        if ret < 0:
            raise OSError(-ret, f"BPF_PROG_TEST_RUN: {os.strerror(-ret)}")
        return self.ns[0] / packets

    def each(self, prog_fd, n):
        """ns per packet over n test runs of one frame each, the same frame (an existing flow)."""
        ret = self.base.lib.fcb_test_run_each(prog_fd, self.frame, len(self.frame), n, self.ns)
        if ret < 0:
            raise OSError(-ret, f"BPF_PROG_TEST_RUN: {os.strerror(-ret)}")
        return self.ns[0] / n

    def one_by_one(self, prog_fd, first, n):
        """ns per packet over n test runs, each a frame of a flow not seen before."""
        ret = self.base.lib.fcb_test_run_new_flows(prog_fd, self.buf, len(self.frame),
                                                    frames.NEW_FLOW_SRC_IP_OFFSET, first, n, self.ns)
        if ret < 0:
            raise OSError(-ret, f"BPF_PROG_TEST_RUN: {os.strerror(-ret)}")
        return self.ns[0] / n


def drain_ringbuf(kernel):
    n = 0
    while (got := len(kernel.read_ringbuf())):
        n += got
    return n


def frame_key(frame):
    """The flow key fc_ingress builds for a test-run frame (Ethernet/IPv4/UDP, untagged)."""
    key = np.zeros(1, dtype=FLOW_KEY)
    key["dst_mac"], key["src_mac"] = np.frombuffer(frame[0:6], np.uint8), np.frombuffer(frame[6:12], np.uint8)
    key["eth_protocol"] = ETH_P_IP
    key["src_ip"][0, 10:12] = key["dst_ip"][0, 10:12] = 0xff
    key["src_ip"][0, 12:], key["dst_ip"][0, 12:] = np.frombuffer(frame[26:30], np.uint8), np.frombuffer(frame[30:34],
                                                                                                      np.uint8)
    key["src_port"], key["dst_port"] = int.from_bytes(frame[34:36], "big"), int.from_bytes(frame[36:38], "big")
    key["if_index"], key["protocol"], key["direction"] = TEST_RUN_IFINDEX, frame[23], DIRECTION_INGRESS
    return key


def colliding_frames(frame, buckets, count):
    """count copies of frame, each from another source port, whose flows share one bucket of a region."""
    found = {}
    for sport in range(1024, 65536):
        f = bytearray(frame)
        f[34:36] = sport.to_bytes(2, "big")
        f[40:42] = b"\0\0"  # no UDP checksum: the port changed
        bucket = int(lib.fc_key_hash(ffi.cast("struct fc_flow_key *", ffi.from_buffer(frame_key(bytes(f)))))) \
            & (buckets - 1)
        found.setdefault(bucket, []).append(bytes(f))
        if len(found[bucket]) == count:
            return found[bucket]
    raise RuntimeError("no bucket took enough source ports")


class Overflowing:
    """A table whose first bucket of this CPU's region is full: one more flow of that bucket overflows."""

    def __init__(self, base, runner, cpu):
        self.kernel = FlowKernel(1 << 20)
        buckets = 2 * self.kernel.sizer.caps[cpu] // lib.FC_BUCKET_PAIRS
        *crowd, self.frame = colliding_frames(runner.frame, buckets, lib.FC_BUCKET_PAIRS + 1)
        self.prog = self.kernel.prog_fd(lib.FC_PROG_INGRESS)
        for f in crowd:
            runner.repeated(self.prog, f, 1)
        runner.repeated(self.prog, self.frame, 1)
        assert self.kernel.counters()["overflow_packets"] == 1, "the crowded bucket did not overflow"


def measure(runs, packets):
    base = load_baselines()
    runner = Runner(base, packets)
    cpu = min(os.sched_getaffinity(0))
    home = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # one region of the table: the overflow case crowds one CPU's bucket
    fds = [bench_program(base, "empty"), bench_program(base, "floor"), old_program(base),
           bench_program(base, "least_table")]
    empty_fd, clock_fd, old_fd, least_fd = fds
    figures = {name: [] for name in ("empty", "floor", "fine", "tick", "old", "least", "empty one", "existing one",
                                     "least existing one", "new", "least new", "large new", "old new", "overflow",
                                     "full", "lost")}
    unit = "ns/packet"
    try:
        # Regions laid out for NEW_FLOWS and LARGE_NEW_FLOWS at the fill where the agent swaps: bounded there.
        new_cap, large_cap = int(NEW_FLOWS / FILL_SHARE), int(LARGE_NEW_FLOWS / FILL_SHARE)
        ncpus = lib.fc_num_possible_cpus()
        with FlowKernel(1_000_000) as fine, FlowKernel(1_000_000, **TICK) as tick, \
                FlowKernel(new_cap * ncpus, start_cap=new_cap, **TICK) as fresh, \
                FlowKernel(large_cap * ncpus, start_cap=large_cap, **TICK) as large, \
                FlowKernel(ncpus, ringbuf_bytes=RINGBUF_BYTES) as full_kernel, \
                FlowKernel(ncpus, ringbuf_bytes=SMALLEST_RINGBUF) as lossy_kernel:
            overflowing = Overflowing(base, runner, cpu)
            full_ingress = full_kernel.prog_fd(lib.FC_PROG_INGRESS)
            lossy_ingress = lossy_kernel.prog_fd(lib.FC_PROG_INGRESS)
            # Take the one flow of the small tables' regions with another flow, and fill the small ring buffer.
            other = bytearray(runner.frame)
            other[frames.NEW_FLOW_SRC_IP_OFFSET + 3] ^= 0xFF
            for prog in (full_ingress, lossy_ingress):
                runner.repeated(prog, bytes(other), 1)
            runner.repeated(lossy_ingress)
            drain_ringbuf(full_kernel)
            first = 0
            for run in range(runs):
                progress(f"kernel cost: run {run + 1}/{runs}")
                figures["empty"].append(runner.repeated(empty_fd))
                figures["floor"].append(runner.repeated(clock_fd))
                figures["fine"].append(runner.repeated(fine.prog_fd(lib.FC_PROG_INGRESS)))
                figures["tick"].append(runner.repeated(tick.prog_fd(lib.FC_PROG_INGRESS)))
                figures["old"].append(runner.repeated(old_fd))
                figures["least"].append(runner.repeated(least_fd))
                figures["empty one"].append(runner.one_by_one(empty_fd, 0, NEW_FLOWS))
                figures["existing one"].append(runner.each(tick.prog_fd(lib.FC_PROG_INGRESS), NEW_FLOWS))
                figures["least existing one"].append(runner.each(least_fd, NEW_FLOWS))
                assert base.lib.fcb_clear_prog_maps(least_fd) == 1  # its table, in its .bss
                figures["least new"].append(runner.one_by_one(least_fd, first, NEW_FLOWS))
                first += NEW_FLOWS
                assert base.lib.fcb_clear_prog_maps(least_fd) == 1
                for kernel, flows, name in ((fresh, NEW_FLOWS, "new"), (large, LARGE_NEW_FLOWS, "large new")):
                    figures[name].append(runner.one_by_one(kernel.prog_fd(lib.FC_PROG_INGRESS), first, flows))
                    first += flows
                    assert len(kernel.swap_and_drain()[0]) == flows  # counted; emptied off the clock
                    assert kernel.counters()["map_insert_failed"] == 0
                figures["old new"].append(runner.one_by_one(old_fd, first, NEW_FLOWS))
                first += NEW_FLOWS
                assert base.lib.fcb_clear_prog_maps(old_fd) >= NEW_FLOWS
                figures["overflow"].append(runner.repeated(overflowing.prog, overflowing.frame))
                before = full_kernel.counters()
                figures["full"].append(runner.repeated(full_ingress))
                after = full_kernel.counters()
                assert drain_ringbuf(full_kernel) == packets
                assert after["ringbuf_reserve_failed"] == before["ringbuf_reserve_failed"], \
                    "ring buffer overflowed: the full-table case must measure the ring-buffer path"
                before = lossy_kernel.counters()
                figures["lost"].append(runner.repeated(lossy_ingress))
                assert lossy_kernel.counters()["ringbuf_reserve_failed"] - before["ringbuf_reserve_failed"] == packets
            overflowing.kernel.close()
    finally:
        os.sched_setaffinity(0, home)
        for fd in fds:
            os.close(fd)
    empty = Figure("empty TC program, repeated", unit, figures["empty"])
    empty_one = Figure("empty TC program, one run per frame", unit, figures["empty one"])
    old = Figure(f"fc_ingress at {BASELINE_COMMIT}", unit, figures["old"])
    fine_fig, tick_fig = Figure("fc_ingress, fine clock", unit, figures["fine"]), \
        Figure("fc_ingress, the tick", unit, figures["tick"])
    existing_one = Figure("fc_ingress, existing flow, one run per frame", unit, figures["existing one"])
    new = Figure("fc_ingress", unit, figures["new"])
    new_case = f"new flow, one run per frame, {NEW_FLOWS:,} flows a half"
    return [
        Result(PART, "existing flow", tick_fig, empty, better="lower", aim="<= 45", aim_of="difference"),
        Result(PART, "existing flow", fine_fig, empty, better="lower", aim="<= 45", aim_of="difference"),
        Result(PART, "existing flow", tick_fig, old, better="lower"),
        Result(PART, "existing flow", fine_fig, old, better="lower"),
        Result(PART, "existing flow", Figure("floor: empty program + one clock read", unit, figures["floor"]), empty,
               better="lower"),
        Result(PART, "existing flow", tick_fig, Figure(LEAST, unit, figures["least"]), better="lower"),
        Result(PART, new_case, new, existing_one, better="lower", aim="<= 1.5"),
        Result(PART, new_case, new, empty_one, better="lower"),
        Result(PART, new_case, new, Figure(LEAST, unit, figures["least new"]), better="lower"),
        Result(PART, new_case, Figure(LEAST, unit, figures["least new"]),
               Figure(f"{LEAST}, existing flow, one run per frame", unit, figures["least existing one"]),
               better="lower"),
        Result(PART, new_case, Figure(f"fc_ingress at {BASELINE_COMMIT}", unit, figures["old new"]), empty_one,
               better="lower"),
        Result(PART, f"new flow, one run per frame, {LARGE_NEW_FLOWS:,} flows a half (a table past the caches)",
               Figure("fc_ingress", unit, figures["large new"]), existing_one, better="lower"),
        Result(PART, "overflowing flow: its bucket full, counted in the overflow map",
               Figure("fc_ingress", unit, figures["overflow"]), tick_fig, better="lower"),
        Result(PART, "full table: ring buffer", Figure("fc_ingress", unit, figures["full"]), empty, better="lower"),
        Result(PART, "full table and ring buffer: counted loss", Figure("fc_ingress", unit, figures["lost"]), empty,
               better="lower"),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--packets", type=int, default=200_000)
    args = parser.parse_args()
    print(results_table(measure(args.runs, args.packets)))


if __name__ == "__main__":
    main()
