"""The supervisor on real worker processes: restarts, back-off, a stopped worker, where workers import from.

The agent runs in namespace `host` (conftest.host_between) with 2 workers and
publishes to a subscriber in this process; the workers log each change of
subscriptions at debug level, which tells the test that a (re)started
worker runs and is connected.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bench.harness.agent import Agent, Subscriber, flows_of, send_udp, totals
from bench.harness.traffic import UDP_FRAME
from flowcollect.agent.supervisor import QUIET_S, RestartBackoff

SUBSCRIBED = "'flows.json' now has 1 subscription"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_backoff_doubles_for_a_crash_loop_and_starts_again_after_a_run():
    backoff = RestartBackoff()
    assert [backoff.died(uptime_s=3.5) for _ in range(4)] == [0.2] * 4  # killed every 4 s: never longer
    assert [backoff.died(uptime_s=0.3) for _ in range(9)] == [0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    assert backoff.died(uptime_s=QUIET_S) == 0.2


def restart_delays(agent):
    """The seconds each "restarting in N s" line of the agent's log announced, in order."""
    return [float(e["message"].rsplit("restarting in ", 1)[1].split()[0])
            for e in agent.logs() if "restarting in" in e.get("message", "")]


def ingress_totals(jsonl, dport):
    """(packets, bytes) of the ingress flows to dport in a JSON-lines output."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return totals(flows_of(rows, dst_port=dport, direction="ingress"))


def endpoint(tmp_path):
    return f"ipc://{tmp_path}/flows.sock"


def start_publishing(host_between, tmp_path):
    agent = Agent(host_between[1].ns, tmp_path, "--workers", "2", "--cache-active-timeout", "200ms",
                  "--log-level", "debug", "--output", f"zmq:{endpoint(tmp_path)}")
    sub = Subscriber(endpoint(tmp_path))
    agent.wait_for_subscribers(2)
    return agent, sub


def replaced(agent, old_pid, subscribed, timeout=10.0):
    """Seconds until a new worker stands in for old_pid and has heard of the subscription."""
    started = time.monotonic()
    agent.wait_for_log(SUBSCRIBED, timeout=timeout, count=subscribed)
    pids = agent.worker_pids()
    assert len(pids) == 2 and old_pid not in pids, pids
    return time.monotonic() - started


def counted_after(agent, sub, host_between, dport):
    """40 new flows of 3 packets: every one reaches the subscriber; the agent then stops cleanly."""
    a_end, host_a = host_between[0], host_between[1]
    for port in range(7100, 7140):
        send_udp(a_end, host_a.ipv4, port, dport, 3, 10)
    sub.receive_until(lambda records: totals(flows_of(records, dst_port=dport)) == (120, 120 * (UDP_FRAME + 10)))
    code, _ = agent.stop()
    assert code == 0
    ledger = agent.ledger()
    assert "packets_unaccounted" not in ledger  # every packet exported or lost, with a cause
    assert ledger["packets_seen"] >= 120


@pytest.mark.kernel
def test_four_kills_4s_apart_each_worker_back_within_2s(host_between, tmp_path):
    agent, sub = start_publishing(host_between, tmp_path)
    try:
        seconds = []
        time.sleep(4.0)  # the first kill too comes 4 s after its worker started
        for kill in range(4):
            victim = agent.worker_pids()[0]
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            seconds.append(replaced(agent, victim, subscribed=3 + kill))
            time.sleep(max(0.0, killed + 4.0 - time.monotonic()))
        assert max(seconds) < 2.0, seconds
        delays = restart_delays(agent)
        assert delays == [0.2] * 4, delays
        counted_after(agent, sub, host_between, 7001)
    finally:
        agent.close()
        sub.close()


@pytest.mark.kernel
def test_a_stopped_worker_is_killed_and_replaced_within_5s(host_between, tmp_path):
    agent, sub = start_publishing(host_between, tmp_path)
    try:
        victim = agent.worker_pids()[0]
        os.kill(victim, signal.SIGSTOP)
        assert replaced(agent, victim, subscribed=3) < 5.0
        assert any("sent no status" in e.get("message", "") and f"pid {victim}" in e["message"] for e in agent.logs())
        assert not os.path.exists(f"/proc/{victim}")  # killed and reaped, not left stopped
        counted_after(agent, sub, host_between, 7002)
    finally:
        agent.close()
        sub.close()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """flowcollect built as a wheel from a copy of this repository's files and installed with
    `pip install --target`, as a user's `pip install .` would: (site folder, unbuilt source copy)."""
    root = tmp_path_factory.mktemp("installed")
    source, site = root / "flowcollect-src", root / "site"
    source.mkdir()
    files = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.split(b"\0")
    present = [f.decode() for f in files if f and os.path.exists(os.path.join(REPO, f.decode()))]
    subprocess.run(["cp", "--parents", "-t", str(source), *present], cwd=REPO, check=True)
    pip = [os.path.join(os.path.dirname(sys.executable), "pip"), "-q"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(root / "wheel"), "."],
                   cwd=source, check=True, timeout=300)
    wheel, = (root / "wheel").glob("flowcollect-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300)
    assert not list((source / "flowcollect").rglob("_native*.so"))  # the copy is unbuilt
    # An unbuilt checkout differs from the installed package in ways that break it (no native
    # module, another version); this one cannot be imported at all, so any process of the agent
    # that imports from the folder it was started in fails.
    (source / "flowcollect" / "__init__.py").write_text('raise ImportError("imported the unbuilt source tree")\n')
    return site, source


@pytest.mark.kernel
@pytest.mark.parametrize("where", ["source tree", "neutral folder"])
def test_the_installed_agent_runs_from_an_unbuilt_source_tree_and_from_anywhere(installed, host_between, tmp_path,
                                                                                where):
    site, source = installed
    a_end, host_a = host_between[0], host_between[1]
    out = tmp_path / "flows.jsonl"
    agent = Agent(host_a.ns, tmp_path, "--workers", "2", "--cache-active-timeout", "200ms", "--output",
                  f"jsonl:{out}", command=str(site / "bin" / "flowcollect"), env={"PYTHONPATH": str(site)},
                  cwd=source if where == "source tree" else tmp_path)
    try:
        for pid in agent.worker_pids():
            assert os.readlink(f"/proc/{pid}/cwd") == "/"
        send_udp(a_end, host_a.ipv4, 4800, 5800, 30, 20)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    assert ingress_totals(out, 5800) == (30, 30 * (UDP_FRAME + 20))


@pytest.mark.kernel
def test_a_worker_that_cannot_open_its_output_exits_and_backs_off_until_it_can(host_between, tmp_path):
    a_end, host_a = host_between[0], host_between[1]
    out = tmp_path / "flows.jsonl"
    agent = Agent(host_a.ns, tmp_path, "--workers", "1", "--cache-active-timeout", "200ms", "--output",
                  f"jsonl:{out}")
    try:
        out.unlink(missing_ok=True)
        out.mkdir()  # the output path is now a folder: no new worker can open it
        os.kill(agent.worker_pids()[0], signal.SIGKILL)
        agent.wait_for_log("cannot start", count=3)  # each one says why, and exits: no hang
        delays = restart_delays(agent)
        # each dies as it starts: a crash loop, so each restart waits twice as long as the one before
        assert delays[1] == 2 * delays[0] and delays[2] == 2 * delays[1], delays
        out.rmdir()
        agent.wait_for_log("worker 0 started", count=len(delays) + 1, timeout=40)
        deadline = time.monotonic() + 20
        while not out.is_file():  # the restarted worker has opened its file
            assert time.monotonic() < deadline
            time.sleep(0.05)
        send_udp(a_end, host_a.ipv4, 4820, 5820, 17, 20)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    assert ingress_totals(out, 5820) == (17, 17 * (UDP_FRAME + 20))
