"""The flows' clock on real traffic: the tick (flow_clock tick) rests while the host is quiet and
ticks through a flood, and the flood's times stay within the documented bound.

bpf/clock.bpf.h and native/fc_clock.c: the tick's thread counts the programs' runs every 0.1 s,
ticks from TICK_MIN_RUNS a second and rests again below half of that.
"""
import time

import numpy as np
import pytest

from bench.harness.traffic import FLOOD_DPORT, FLOOD_SPORT, flood, quiet
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.flow_kernel import TICK_MIN_RUNS, FlowKernel
from tests.flowtools import attach, matching

pytestmark = pytest.mark.kernel

FLOWS, REPEAT = 1000, 600  # 600,000 frames: about a second at trafgen's speed here
# The earliest a flow time may be before its packet: a reading older than FC_CLOCK_STALE_NS by the
# coarse clock is not used, and the coarse clock lags by at most a jiffy (10 ms at the smallest HZ).
EARLIEST_NS = lib.FC_CLOCK_STALE_NS + 10_000_000


def test_the_tick_rests_while_quiet_ticks_through_a_flood_and_rests_again(two_hosts, tmp_path):
    sender, receiver = two_hosts
    quiet(sender, receiver)
    with FlowKernel(100_000, start_cap=4096, clock="tick") as kernel:
        attach(kernel, receiver)
        time.sleep(0.3)
        assert kernel.clock_ticks() == (0, 0, 0), "the tick ran on a quiet host"

        start_ns = time.monotonic_ns()
        sent = flood(sender, receiver, tmp_path / "flood.trafgen", FLOWS, REPEAT)
        end_ns = time.monotonic_ns()
        ticks, _, starts = kernel.clock_ticks()
        seconds = (end_ns - start_ns) / 1e9
        assert sent / seconds > 2 * TICK_MIN_RUNS, f"trafgen sent {sent / seconds:,.0f} frames/s: too few to test"
        assert starts >= 1 and ticks > 0, f"the tick never started during {sent} frames in {seconds:.2f} s"

        with receiver.ns.entered():
            kernel.detach(receiver.ifindex)
        batch, _ = kernel.swap_and_drain()
        rows = matching(batch, src_port=FLOOD_SPORT, dst_port=FLOOD_DPORT)
        # Counted exactly, whatever clock each packet read...
        assert (len(rows), int(rows["packets"].sum())) == (FLOWS, sent)
        # ...with times inside the flood, at most the documented bound early...
        assert rows["first_seen_ns"].min() >= start_ns - EARLIEST_NS
        assert rows["last_seen_ns"].max() <= end_ns
        assert (rows["first_seen_ns"] <= rows["last_seen_ns"]).all()
        # ...and the last pass, while it ticked, read the tick's copy: a reading shared by many flows
        # (the fine clock gives every packet its own time).
        assert len(np.unique(rows["last_seen_ns"])) < FLOWS // 10

        # Quiet again: within a few checks the tick rests.
        time.sleep(0.4)
        rested, _, _ = kernel.clock_ticks()
        time.sleep(0.3)
        assert kernel.clock_ticks()[0] == rested, "the tick kept running on a quiet host"


def test_the_fine_clock_never_ticks(two_hosts, tmp_path):
    sender, receiver = two_hosts
    quiet(sender, receiver)
    with FlowKernel(100_000, start_cap=4096, clock="fine") as kernel:
        attach(kernel, receiver)
        sent = flood(sender, receiver, tmp_path / "flood.trafgen", FLOWS, 100)
        with receiver.ns.entered():
            kernel.detach(receiver.ifindex)
        rows = matching(kernel.swap_and_drain()[0], src_port=FLOOD_SPORT, dst_port=FLOOD_DPORT)
        assert int(rows["packets"].sum()) == sent
        assert kernel.clock_ticks() == (0, 0, 0)
        assert kernel.counters()["program_runs"] == 0  # counted for the tick only
        assert len(np.unique(rows["last_seen_ns"])) == FLOWS
