"""Kernel cost: ns per packet of fc_ingress under BPF_PROG_TEST_RUN, against an empty TC program.

The kernel times the program runs itself (bpf_test_run: the loop around the
program, no syscall, no skb allocation), so the figures are the program's own
cost on this CPU. The packet is a 74-byte Ethernet/IPv4/UDP frame (a DNS query's
size). Cases, each against the floor measured the same way in the same run:
  - existing flow: the same frame repeated; after the first run every packet
    is a lookup and an in-place update of this CPU's slot;
  - new flow: one test run per frame, each frame from a source address never
    seen, so every packet inserts a key (the map is swapped and drained
    between runs, off the clock, and sized so that a run ends half full, where
    the agent swaps); the floor is the empty program run one frame at a time too;
  - full map: a map of 1 flow, already taken: every packet's insert fails
    (E2BIG) and the packet goes to the ring buffer as a one-packet record
    (consumed between runs, off the clock);
  - full map and full ring buffer: the insert and the reserve both fail and
    the packet is only counted (the loss is visible in the counters map).
A second floor, bench/bpf/floor.bpf.c, is what every flow program must do per
packet before any map: read the clock once (and copy non-linear headers once);
a third, bench/bpf/minimal.bpf.c, the least a per-flow counter can cost: the
clock, a per-CPU hash keyed by 4 bytes, a lookup and (new flow) an insert.
Run: .venv/bin/python -m bench.kernel_cost [--runs 7] [--packets 200000]
"""
import argparse
import os

from bench.build_baselines import OUT_DIR
from bench.build_baselines import load as load_baselines
from bench.common import Figure, Result, progress, results_table
from bench.harness import frames
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.flow_kernel import FlowKernel

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PART = "kernel cost"
SRC_IP_OFFSET = 14 + 12  # IPv4 source address in an untagged frame
# The agent swaps its map once it is half full (flowcollect/pipeline/fill_watch.py): a run of
# new flows ends at that fill, not beyond it, where hash buckets grow longer than the agent sees.
NEW_FLOWS_FILL = 0.5
RINGBUF_BYTES = 1 << 26  # room for a whole run of one-packet records (112 bytes each with the header)
SMALLEST_RINGBUF = 4096  # one page: fills after a few dozen records


def udp_frame():
    src, dst = "10.0.0.1", "10.0.0.2"
    payload = bytes(32)  # a small DNS query
    packet = frames.ipv4(src, dst, frames.UDP, frames.udp(src, dst, 40000, 53, payload))
    return frames.ethernet(bytes.fromhex("020000000002"), bytes.fromhex("020000000001"), frames.ETH_P_IP, packet)


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


class Runner:
    def __init__(self, base, packets):
        self.base, self.packets = base, packets
        self.frame = udp_frame()
        self.ns = base.ffi.new("__u64 *")
        self.buf = base.ffi.new("char[]", self.frame)

    def repeated(self, prog_fd, frame=None):
        """ns per packet of one test run of `packets` repeats of the same frame."""
        frame = frame or self.frame
        ret = self.base.lib.fcb_test_run(prog_fd, frame, len(frame), self.packets, self.ns)
        if ret < 0:
            raise OSError(-ret, f"BPF_PROG_TEST_RUN: {os.strerror(-ret)}")
        return self.ns[0] / self.packets

    def one_by_one(self, prog_fd, first):
        """ns per packet over `packets` test runs, each a frame of a flow not seen before."""
        ret = self.base.lib.fcb_test_run_new_flows(prog_fd, self.buf, len(self.frame), SRC_IP_OFFSET,
                                                    first, self.packets, self.ns)
        if ret < 0:
            raise OSError(-ret, f"BPF_PROG_TEST_RUN: {os.strerror(-ret)}")
        return self.ns[0] / self.packets


def drain_ringbuf(kernel):
    n = 0
    while (got := len(kernel.read_ringbuf())):
        n += got
    return n


def measure(runs, packets):
    base = load_baselines()
    runner = Runner(base, packets)
    empty_fd = bench_program(base, "empty")
    clock_fd = bench_program(base, "floor")
    minimal_fd = bench_program(base, "minimal")
    floor, floor_single, clock, existing, new, full, lost = [], [], [], [], [], [], []
    minimal, minimal_new = [], []
    try:
        with FlowKernel(int(packets / NEW_FLOWS_FILL)) as flows_kernel, \
                FlowKernel(1, ringbuf_bytes=RINGBUF_BYTES) as full_kernel, \
                FlowKernel(1, ringbuf_bytes=SMALLEST_RINGBUF) as lossy_kernel:
            ingress = flows_kernel.prog_fd(lib.FC_PROG_INGRESS)
            full_ingress = full_kernel.prog_fd(lib.FC_PROG_INGRESS)
            lossy_ingress = lossy_kernel.prog_fd(lib.FC_PROG_INGRESS)
            # Take the one slot of the small maps with another flow, and fill the small ring buffer.
            other = bytearray(runner.frame)
            other[SRC_IP_OFFSET + 3] ^= 0xFF
            for prog in (full_ingress, lossy_ingress):
                runner.base.lib.fcb_test_run(prog, bytes(other), len(other), 1, runner.ns)
            runner.repeated(lossy_ingress)
            drain_ringbuf(full_kernel)
            for run in range(runs):
                progress(f"kernel cost: run {run + 1}/{runs}")
                floor.append(runner.repeated(empty_fd))
                clock.append(runner.repeated(clock_fd))
                minimal.append(runner.repeated(minimal_fd))
                existing.append(runner.repeated(ingress))
                floor_single.append(runner.one_by_one(empty_fd, 0))
                new.append(runner.one_by_one(ingress, (run + 1) * packets))
                flows_kernel.swap_and_drain()  # the new flows were counted: empty the map off the clock
                assert base.lib.fcb_clear_prog_maps(minimal_fd) >= 1
                minimal_new.append(runner.one_by_one(minimal_fd, (run + 1) * packets))
                assert base.lib.fcb_clear_prog_maps(minimal_fd) == packets
                before = full_kernel.counters()
                full.append(runner.repeated(full_ingress))
                after = full_kernel.counters()
                assert drain_ringbuf(full_kernel) == packets
                assert after["ringbuf_reserve_failed"] == before["ringbuf_reserve_failed"], \
                    "ring buffer overflowed: the full-map case must measure the ring-buffer path"
                before = lossy_kernel.counters()
                lost.append(runner.repeated(lossy_ingress))
                assert lossy_kernel.counters()["ringbuf_reserve_failed"] - before["ringbuf_reserve_failed"] == packets
    finally:
        os.close(empty_fd)
        os.close(clock_fd)
        os.close(minimal_fd)
    unit = "ns/packet"
    floor_fig = Figure("empty TC program, repeated", unit, floor)
    floor_single_fig = Figure("empty TC program, one run per frame", unit, floor_single)
    existing_fig, new_fig = Figure("fc_ingress", unit, existing), Figure("fc_ingress", unit, new)
    return [
        Result(PART, "existing flow", existing_fig, floor_fig, better="lower", aim="<= 65", aim_of="median"),
        Result(PART, "existing flow", existing_fig, Figure("floor: empty program + one clock read", unit, clock),
               better="lower"),
        Result(PART, "existing flow", existing_fig,
               Figure("least per-flow program: clock + 4-byte-key per-CPU hash", unit, minimal), better="lower"),
        Result(PART, "new flow per packet", new_fig, floor_single_fig, better="lower", aim="<= 350",
               aim_of="median"),
        Result(PART, "new flow per packet", new_fig,
               Figure("least per-flow program: clock + 4-byte-key per-CPU hash", unit, minimal_new), better="lower"),
        Result(PART, "full map: ring buffer", Figure("fc_ingress", unit, full), floor_fig, better="lower"),
        Result(PART, "full map and ring buffer: counted loss", Figure("fc_ingress", unit, lost), floor_fig,
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
