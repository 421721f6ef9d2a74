"""Nothing orphaned, nothing blinded: what an agent takes on the host has one owner, found from outside.

A killed agent's TCX links go with its process; its legacy clsact filters and
folders are what `flowcollect cleanup` removes, and only those: never a live
agent's. An attachment someone removes by hand is put back by its agent.
"""
import json
import os
import subprocess
import time

import pytest

from bench.harness.agent import FLOWCOLLECT, Agent, send_udp
from bench.harness.programs import ours, tcx_links
from tests.test_agent_e2e import add_foreign_filter

pytestmark = pytest.mark.kernel


def wait_for(condition, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def runtime_folder(agent):
    """The agent's private runtime folder: the one whose owner file names its pid."""
    for entry in os.listdir("/run"):
        path = os.path.join("/run", entry, "owner.json")
        if entry.startswith("flowcollect-") and os.path.exists(path):
            with open(path) as f:
                if json.load(f)["pid"] == agent.process.pid:
                    return os.path.dirname(path)
    raise AssertionError("no runtime folder with this agent's owner file")


def kill_collector(agent):
    workers = agent.worker_pids()
    agent.process.kill()  # SIGKILL: no shutdown, no cleanup
    agent.process.wait()
    agent.close()
    return workers


def test_a_killed_agent_with_tcx_links_leaves_nothing_attached(host_between, tmp_path):
    _a_end, host_a, _c_end, _host_c = host_between
    host = host_a.ns
    agent = Agent(host, tmp_path, "--workers", "2", "--output", "none")
    assert any("TCX links" in e.get("message", "") for e in agent.logs())
    assert ours(host, "to-a") == {"tcx:fc_ingress", "tcx:fc_egress"}
    folder = runtime_folder(agent)
    workers = kill_collector(agent)
    killed = time.monotonic()
    wait_for(lambda: not ours(host, "to-a") and not ours(host, "to-c"), "detach of the links", timeout=2.0)
    assert time.monotonic() - killed < 2.0
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), "workers' exit")
    for dev in ("to-a", "to-c"):
        assert "fc_" not in host.exec("tc", "filter", "show", "dev", dev, "ingress").stdout
    # cleanup finds no filter, and takes the folder the killed agent left (and any other dead one's)
    result = host.exec(FLOWCOLLECT, "cleanup")
    assert "removed 0 filters" in result.stdout and not os.path.exists(folder)


def test_a_killed_agent_s_clsact_filters_are_removed_by_cleanup_foreign_ones_stay(host_between, tmp_path):
    _a_end, host_a, _c_end, _host_c = host_between
    host = host_a.ns
    add_foreign_filter(host, "to-c", "egress", 30, "1:9")
    agent = Agent(host, tmp_path, "--workers", "2", "--output", "none", "--tc-attach-mode", "tc")
    workers = kill_collector(agent)
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), "workers' exit")
    assert ours(host, "to-a") == {"tc:fc_ingress", "tc:fc_egress"}  # what a killed agent leaves
    result = host.exec(FLOWCOLLECT, "cleanup")
    assert "removed 4 filters" in result.stdout
    for dev in ("to-a", "to-c"):
        assert not ours(host, dev)
    assert "1:9" in host.exec("tc", "filter", "show", "dev", "to-c", "egress").stdout


def count_port(path, port):
    packets = 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["dst_port"] == port and record["direction"] == "ingress":
            packets += record["packets"]
    return packets


def count_traced_while(host_between, tmp_path, mode, meanwhile, port, packets):
    """Run an agent in `mode`, do `meanwhile(agent)`, then send `packets` to `port`: all are counted."""
    a_end, host_a, _c_end, _host_c = host_between
    out = tmp_path / "flows.jsonl"
    agent = Agent(host_a.ns, tmp_path, "--output", f"jsonl:{out}", "--cache-active-timeout", "1s",
                  "--tc-attach-mode", mode)
    try:
        meanwhile(agent)
        send_udp(a_end, host_a.ipv4, port - 1000, port, packets, 40)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    assert count_port(out, port) == packets


@pytest.mark.parametrize("mode", ["tcx", "tc"])
def test_cleanup_beside_a_live_agent_removes_nothing_of_it(host_between, tmp_path, mode):
    host = host_between[1].ns

    def cleanup(agent):
        folder = runtime_folder(agent)
        before = ours(host, "to-a")
        result = host.exec(FLOWCOLLECT, "cleanup")
        assert "removed 0 filters" in result.stdout
        assert ours(host, "to-a") == before and os.path.isdir(folder)

    count_traced_while(host_between, tmp_path, mode, cleanup, 5600, 25)  # and it counts on, exactly


@pytest.mark.parametrize("mode", ["tcx", "tc"])
def test_an_attachment_removed_by_hand_is_back_with_a_warning(host_between, tmp_path, mode):
    host = host_between[1].ns

    def remove_by_hand(agent):
        if mode == "tc":
            host.exec("tc", "filter", "del", "dev", "to-a", "ingress")  # every ingress filter: ours
        else:
            links = tcx_links(host, "to-a", "ingress")
            assert links
            for link_id in links:
                subprocess.run(["bpftool", "link", "detach", "id", str(link_id)], check=True)
        assert f"{mode}:fc_ingress" not in ours(host, "to-a")
        removed = time.monotonic()
        agent.wait_for_log("attachments had been removed", timeout=6)
        assert time.monotonic() - removed < 3  # checked every second: within one default eviction (5 s)
        assert f"{mode}:fc_ingress" in ours(host, "to-a")

    count_traced_while(host_between, tmp_path, mode, remove_by_hand, 5700, 12)
