"""Every cause of loss, forced on real traffic: the ledger accounts for every packet, and says so at once.

Each test floods the real agent (bench/harness/traffic.py) while one thing
goes wrong: the kernel's ring buffer is too small, a worker dies, a worker
stalls, the disk is full, a subscriber never reads. Then, exactly,

    packets sent = packets seen = packets in the output + the ledger's packets lost,

with the loss under its cause, and a warning logged within 2 s of it.
"""
import os
import signal
import subprocess
import threading
import time

import pytest
import zmq

from bench.harness.agent import Agent
from bench.harness.traffic import flood, flood_totals, jsonl_records, quiet, start_flood
from flowcollect.transport import wire

pytestmark = pytest.mark.kernel
WARNING_WITHIN_S = 2.0


def start_agent(two_hosts, tmp_path, *args, output=None):
    sender, receiver = two_hosts
    quiet(sender, receiver)
    out = tmp_path / "flows.jsonl"
    agent = Agent(receiver.ns, tmp_path, "--interfaces", receiver.name,
                  "--output", output or f"jsonl:{out}", *args)
    return sender, receiver, out, agent


def stopped(agent):
    code, _ = agent.stop(signal.SIGTERM, timeout=60)
    agent.close()
    assert code == 0
    return agent.ledger()


def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def assert_accounted(sent, exported, ledger, cause):
    assert ledger["packets_seen"] == sent
    assert ledger["packets_exported"] == exported
    assert exported + ledger["packets_lost"] == sent
    assert ledger["lost_by_cause"][cause] > 0, ledger
    assert sum(ledger["lost_by_cause"].values()) == ledger["packets_lost"]
    assert "packets_unaccounted" not in ledger


def test_ring_buffer_full(two_hosts, tmp_path):
    # GIVEN a map of 64 flows and a ring buffer of one page (~36 records)
    sender, receiver, out, agent = start_agent(two_hosts, tmp_path, "--cache-max-flows", "64",
                                               "--ringbuf-size", "4KiB")
    try:
        # WHEN 50,000 new flows arrive at full speed
        sent = flood(sender, receiver, tmp_path / "flood.trafgen", 50_000)
        ended = time.time()
        agent.wait_for_log("lost in the kernel", timeout=10)
    finally:
        ledger = stopped(agent)
    # THEN what the output lacks is what the kernel counted as lost, and it was said at once
    assert_accounted(sent, flood_totals(jsonl_records(out))[0], ledger, "ring_buffer_full")
    assert agent.first_log_time("lost in the kernel") - ended < WARNING_WITHIN_S


def _stop_a_worker(agent):
    pid = agent.worker_pids()[0]
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_worker_died(two_hosts, tmp_path):
    # GIVEN two workers, one of them stopped: what is sent to it waits, unaccounted for
    sender, receiver, out, agent = start_agent(two_hosts, tmp_path, "--workers", "2")
    try:
        pid = _stop_a_worker(agent)
        sent = flood(sender, receiver, tmp_path / "flood.trafgen", 100_000)
        # Once the other worker wrote flows of the flood, the stopped one was sent its part of them
        # (the collector sends each batch's parts in one go).
        wait_for(lambda: flood_totals(jsonl_records(out))[0] > 0, "the running worker's first flows")
        # WHEN it is killed
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        agent.wait_for_log("restarting", timeout=10)
    finally:
        ledger = stopped(agent)
    # THEN its flows are lost as worker_died, and everything else reached the output
    assert_accounted(sent, flood_totals(jsonl_records(out))[0], ledger, "worker_died")
    assert agent.first_log_time("died with") - killed < WARNING_WITHIN_S


def test_worker_stalled(two_hosts, tmp_path):
    # GIVEN two workers with small queues, one of them stalled (SIGSTOP)
    sender, receiver, out, agent = start_agent(two_hosts, tmp_path, "--workers", "2", "--queue-max-flows", "1024",
                                               "--cache-active-timeout", "200ms")
    try:
        pid = _stop_a_worker(agent)
        # WHEN a flood comes
        sent = flood(sender, receiver, tmp_path / "flood.trafgen", 100_000)
        ended = time.time()
        agent.wait_for_log("limiter dropped", timeout=10)
        os.kill(pid, signal.SIGCONT)
    finally:
        ledger = stopped(agent)
    # THEN the flows the stalled worker had no room for are lost as forward_queue_full
    assert_accounted(sent, flood_totals(jsonl_records(out))[0], ledger, "forward_queue_full")
    assert agent.first_log_time("limiter dropped") - ended < WARNING_WITHIN_S


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_disk_full(two_hosts, tmp_path, small_disk):
    # GIVEN a JSON-lines output on a 1 MiB disk
    path = small_disk / "flows.jsonl"
    sender, receiver, _, agent = start_agent(two_hosts, tmp_path, "--cache-active-timeout", "200ms",
                                             output=f"jsonl:{path}")
    try:
        # WHEN 30,000 flows (~13 MB of JSON) come
        sent = flood(sender, receiver, tmp_path / "flood.trafgen", 30_000)
        ended = time.time()
        agent.wait_for_log("write failed", timeout=10)
    finally:
        ledger = stopped(agent)
    # THEN the file holds exactly what was exported; the rest is lost as write_failed
    assert_accounted(sent, flood_totals(jsonl_records(path))[0], ledger, "write_failed")
    assert agent.first_log_time("not written to") - ended < WARNING_WITHIN_S


def test_a_subscriber_that_never_reads(two_hosts, tmp_path):
    # GIVEN a zmq output and a subscriber that reads nothing while the flood lasts
    endpoint = f"ipc://{tmp_path}/flows.sock"
    sender, receiver, _, agent = start_agent(two_hosts, tmp_path, "--workers", "1", "--log-level", "debug",
                                             "--cache-active-timeout", "200ms", output=f"zmq:{endpoint}")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_JSON)
    sub.connect(endpoint)
    received = []

    def drain():
        """After the stop: what the subscriber's queues held, until the agent is gone and nothing comes."""
        while sub.poll(2000):
            _, header, _ = wire.split(sub.recv_multipart(), topic=True)
            received.append(header.packets)

    try:
        agent.wait_for_subscribers(1)
        process, sent = start_flood(sender, receiver, tmp_path / "flood.trafgen", 200_000)
        assert process.wait(60) == 0
        ended = time.time()
        agent.wait_for_log("a subscriber is too slow", timeout=10)
        reader = threading.Thread(target=drain)
        reader.start()  # the agent delivers what its proxy still holds as it stops
        ledger = stopped(agent)
        reader.join(30)
    finally:
        agent.close()
        sub.close(linger=0)
        ctx.term()
    # THEN what the subscriber got and what the ledger says it lost add up to what was sent
    assert_accounted(sent, sum(received), ledger, "subscriber_too_slow")
    assert ledger["outputs"]["zmq:flows.json"]["packets_exported"] == sum(received)
    assert agent.first_log_time("a subscriber is too slow") - ended < WARNING_WITHIN_S
