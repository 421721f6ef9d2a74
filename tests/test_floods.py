"""Floods of new flows at trafgen's full speed into the real agent: every packet out, exactly.

A port scan, a SYN flood or a busy load balancer is when exact counts matter
most: every frame a new flow. The agent runs with its defaults in the
receiving namespace; trafgen floods from the other (bench/harness/traffic.py).
"""
import signal
import time

import pytest

from bench.harness.agent import Agent
from bench.harness.traffic import flood, flood_totals, jsonl_records, quiet
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.table_sizing import SMALLEST_CAP

pytestmark = pytest.mark.kernel


def smallest_table_bytes():
    """Both halves at their smallest: per CPU, the index for SMALLEST_CAP flows and the entries it serves."""
    buckets = 2 * SMALLEST_CAP // lib.FC_BUCKET_PAIRS
    return 2 * lib.fc_num_possible_cpus() * buckets * (1 + lib.FC_BUCKET_PAIRS // 2) * 128


def run_flood(two_hosts, tmp_path, flows, repeat, *args, stop_after=0.0):
    sender, receiver = two_hosts
    quiet(sender, receiver)
    out = tmp_path / "flows.jsonl"
    agent = Agent(receiver.ns, tmp_path, "--interfaces", receiver.name, "--output", f"jsonl:{out}", *args)
    try:
        sent = flood(sender, receiver, tmp_path / "flood.trafgen", flows, repeat)
        time.sleep(stop_after)
        code, _ = agent.stop(signal.SIGTERM, timeout=60)
    finally:
        agent.close()
    assert code == 0
    return sent, flood_totals(jsonl_records(out)), agent.ledger()


@pytest.mark.parametrize("flows, repeat", [(300_000, 2), (1_000_000, 1)])
def test_defaults_export_every_packet_of_a_flood_of_new_flows(two_hosts, tmp_path, flows, repeat):
    sent, (packets, distinct), ledger = run_flood(two_hosts, tmp_path, flows, repeat)
    assert (packets, distinct) == (sent, flows), ledger
    assert (ledger["packets_seen"], ledger["packets_exported"], ledger["packets_lost"]) == (sent, sent, 0)
    assert ledger["flows_lost"] == 0 and "packets_unaccounted" not in ledger


def test_a_tiny_map_and_sigterm_right_after_the_flood_lose_nothing(two_hosts, tmp_path):
    # The 64-flow map fills in microseconds: most flows come through the ring buffer and the
    # accounter, and the agent stops while they are still on their way.
    sent, (packets, distinct), ledger = run_flood(two_hosts, tmp_path, 3000, 2, "--cache-max-flows", "64",
                                                  stop_after=0.5)
    assert (packets, distinct) == (sent, 3000)
    assert (ledger["packets_seen"], ledger["packets_exported"], ledger["packets_lost"]) == (sent, sent, 0)


def test_a_flood_past_the_table_s_smallest_size_is_counted_exactly_and_the_next_halves_grow(two_hosts, tmp_path):
    # GIVEN the agent's table at its smallest size (512 flows a CPU) and room to grow
    # WHEN 200,000 new flows come at trafgen's speed: the first half is past its cap in a millisecond
    sent, (packets, distinct), ledger = run_flood(two_hosts, tmp_path, 200_000, 1, "--cache-max-flows", "1000000")
    # THEN every packet is exported, the ones the small halves refused through the ring buffer...
    assert (packets, distinct) == (sent, 200_000), ledger
    assert (ledger["packets_seen"], ledger["packets_exported"], ledger["packets_lost"]) == (sent, sent, 0)
    assert ledger["kernel"]["ringbuf_submitted"] > 0
    # ...and the next halves grew to take the flood in the kernel: past four times their smallest size
    table = ledger["table"]
    assert table["regions_grown"] >= 2, table
    assert table["largest_bytes"] >= 4 * smallest_table_bytes(), table
