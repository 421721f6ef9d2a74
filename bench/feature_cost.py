"""Feature cost: the extra ns per packet of fc_ingress with each --features on, under BPF_PROG_TEST_RUN.

The same frames through the same program loaded with no feature and with one
(bench/kernel_cost.py's runner: the kernel times the runs itself), in one run,
each against the program with no feature measured alongside it:
  - dns: a DNS query to port 53 (the same id repeated: after the first packet,
    the parse and an insert refused as already pending), and a UDP packet to another
    port (the port check only);
  - rtt: a TCP ACK (the handshake tracking's lookup of a pending handshake);
  - drops: its program is on the kfree_skb tracepoint, not at TC: the TC
    program's code is the same, so the figure is the floor's noise.
With no feature, the verifier removes the features' code from the TC programs
(fc_dns, fc_rtt are constants of the loaded object) and loads none of their
tracing programs: the cost is the one bench/kernel_cost.py reports.
Call measure_features(runs, packets) from bench/run_all.py; or
.venv/bin/python -m bench.feature_cost [--runs 7] [--packets 200000]
"""
import argparse
import struct

from bench.build_baselines import load as load_baselines
from bench.common import Figure, Result, progress, results_table
from bench.harness import frames
from bench.kernel_cost import Runner
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.settings.model import Settings

PART = "feature cost"
MAP_FLOWS = 1 << 12
SRC, DST = "10.0.0.1", "10.0.0.2"
MACS = (bytes.fromhex("020000000002"), bytes.fromhex("020000000001"))


def frame(packet):
    return frames.ethernet(*MACS, frames.ETH_P_IP, packet)


def dns_query():
    question = b"\x07example\x04test\x00\x00\x01\x00\x01"
    message = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question
    return frame(frames.ipv4(SRC, DST, frames.UDP, frames.udp(SRC, DST, 40000, 53, message)))


def udp_other():
    return frame(frames.ipv4(SRC, DST, frames.UDP, frames.udp(SRC, DST, 40000, 9000, bytes(32))))


def tcp_ack():
    return frame(frames.ipv4(SRC, DST, frames.TCP, frames.tcp(SRC, DST, 40000, 443, 0x10, bytes(32))))


CASES = (("dns", "DNS query", dns_query), ("dns", "UDP, not DNS", udp_other), ("rtt", "TCP ACK", tcp_ack),
         ("drops", "UDP", udp_other))


def measure_features(runs, packets):
    """Results: per feature and frame, ns per packet with the feature on against the same with none."""
    runner = Runner(load_baselines(), packets)
    clock = Settings().flow_clock  # the agent's own: dns and rtt read the fine clock whatever it is
    kernels = {name: FlowKernel(MAP_FLOWS, features=(name,) if name else (), clock=clock)
               for name in ("", "dns", "rtt", "drops")}
    try:
        figures = {(feature, label): ([], []) for feature, label, _ in CASES}
        for run in range(runs):
            progress(f"feature cost: run {run + 1}/{runs}")
            for feature, label, make in CASES:
                packet = make()
                off, on = figures[(feature, label)]
                off.append(runner.repeated(kernels[""].prog_fd(lib.FC_PROG_INGRESS), packet))
                on.append(runner.repeated(kernels[feature].prog_fd(lib.FC_PROG_INGRESS), packet))
            for kernel in kernels.values():  # the maps stay small: their flows are counted, then dropped
                kernel.swap_and_drain()
                kernel.swap_and_drain_dns()
                kernel.swap_and_drain_rtt()
    finally:
        for kernel in kernels.values():
            kernel.close()
    unit = "ns/packet"
    return [Result(PART, f"--features {feature}: {label}", Figure(f"fc_ingress, {feature} on", unit, on),
                   Figure("fc_ingress, no feature", unit, off), better="lower")
            for (feature, label), (off, on) in figures.items()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--packets", type=int, default=200_000)
    args = parser.parse_args()
    print(results_table(measure_features(args.runs, args.packets)))


if __name__ == "__main__":
    main()
