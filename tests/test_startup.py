"""Starting the real agent where something is wrong, as operators do: one line, a documented exit code,
nothing left behind; and where something only looks wrong, a warning and an agent that runs.

Every agent runs in a namespace of its own (conftest.host_between); what "nothing left" means
is checked from outside: no program of ours on its interfaces, no runtime or metrics folder.
"""
import glob
import json
import os
import socket

import pytest

from bench.harness.agent import FLOWCOLLECT, Agent, Subscriber, flows_of, send_udp, totals
from bench.harness.programs import ours
from bench.harness.traffic import UDP_FRAME

pytestmark = pytest.mark.kernel


def leftovers():
    """Runtime and metrics folders of agents (ours are removed at exit, whatever stopped them)."""
    return set(glob.glob("/run/flowcollect-*")) | set(glob.glob("/tmp/flowcollect-*"))


def fails_in(ns, *args):
    """Run flowcollect in ns, expecting it to refuse to start: (exit code, its one stderr line)."""
    before = leftovers()
    result = ns.exec(FLOWCOLLECT, *args, check=False)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert leftovers() == before
    return result.returncode, lines[0]


def test_a_second_agent_on_the_same_ipc_endpoint_exits_2_and_the_first_keeps_publishing(host_between, tmp_path):
    a_end, host_a = host_between[0], host_between[1]
    host = host_a.ns
    endpoint = f"ipc://{tmp_path}/flows.sock"
    first = Agent(host, tmp_path, "--workers", "2", "--cache-active-timeout", "200ms", "--log-level", "debug",
                  "--output", f"zmq:{endpoint}")
    sub = Subscriber(endpoint)
    try:
        first.wait_for_subscribers(2)
        attached = ours(host, "to-a")
        code, line = fails_in(host, "--output", f"zmq:{endpoint}")
        assert code == 2
        assert line == (f"flowcollect: zmq output {endpoint} is held by another agent (pid {first.process.pid}); "
                        "give this one another endpoint")
        assert ours(host, "to-a") == attached  # the second agent attached nothing, and took nothing away
        send_udp(a_end, host_a.ipv4, 4900, 5900, 33, 30)
        sub.receive_until(lambda records: totals(flows_of(records, dst_port=5900, direction="ingress"))
                          == (33, 33 * (UDP_FRAME + 30)))
        code, _ = first.stop()
    finally:
        first.close()
        sub.close()
    assert code == 0
    assert not os.path.exists(f"{tmp_path}/flows.sock") and not os.path.exists(f"{tmp_path}/flows.sock.lock")


def test_a_metrics_port_in_use_is_one_line_exit_2_with_nothing_attached(host_between):
    host = host_between[1].ns
    with host.entered():
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, line = fails_in(host, "--output", "none", "--metrics-address", f"127.0.0.1:{port}")
    finally:
        taken.close()
    assert code == 2
    assert line == f"flowcollect: --metrics-address 127.0.0.1:{port}: Address already in use"
    assert not ours(host, "to-a") and not ours(host, "to-c")


@pytest.mark.parametrize("content, problem", [
    (b'log_level = "\xff"\n', "not UTF-8 text (byte 13: invalid start byte)"),
    (None, "No such file or directory"),
])
def test_an_unreadable_config_file_is_one_line_exit_2(host_between, tmp_path, content, problem):
    host = host_between[1].ns
    config = tmp_path / "flowcollect.toml"
    if content is not None:
        config.write_bytes(content)
    code, line = fails_in(host, "--config", str(config))
    assert (code, line) == (2, f"flowcollect: --config {config}: {problem}")
    assert not ours(host, "to-a")


def test_on_a_host_with_no_address_the_agent_warns_once_and_counts_exactly(host_between, tmp_path):
    a_end, host_a = host_between[0], host_between[1]
    host = host_a.ns
    for dev in ("to-a", "to-c", "lo"):  # bridge ports, and not even a loopback address
        host.exec("ip", "addr", "flush", "dev", dev)
    out = tmp_path / "flows.jsonl"
    agent = Agent(host, tmp_path, "--cache-active-timeout", "200ms", "--output", f"jsonl:{out}")
    try:
        send_udp(a_end, host_a.ipv4, 4950, 5950, 21, 60)  # to an address the host no longer has
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    warnings = [e["message"] for e in agent.logs() if e.get("level") == "warning"]
    assert warnings == ["agent IP 127.0.0.1: the loopback address, as agent_ip_iface: no address for external: "
                        "no route to the outside and no global address on an up interface; set agent_ip or "
                        "agent_ip_iface=name:IFACE and this host has no address at all"]
    rows = flows_of([json.loads(line) for line in out.read_text().splitlines()], dst_port=5950, direction="ingress")
    assert totals(rows) == (21, 21 * (UDP_FRAME + 60))
    assert {r["agent_ip"] for r in rows} == {"127.0.0.1"}


def test_an_interface_that_is_not_there_yet_is_a_warning_and_traced_when_it_comes(host_between, tmp_path):
    a_end, host_a = host_between[0], host_between[1]
    host = host_a.ns
    host.exec("ip", "link", "set", "to-a", "name", "late0")  # gone, as far as --interfaces to-a is concerned
    out = tmp_path / "flows.jsonl"
    agent = Agent(host, tmp_path, "--interfaces", "to-a", "--cache-active-timeout", "200ms",
                  "--output", f"jsonl:{out}", "--log-level", "debug")
    try:
        assert not ours(host, "late0")
        host.exec("ip", "link", "set", "late0", "name", "to-a")
        agent.wait_for_log("tracing interface to-a")
        send_udp(a_end, host_a.ipv4, 4960, 5960, 14, 10)
        code, _ = agent.stop()
    finally:
        agent.close()
    assert code == 0
    warnings = [e["message"] for e in agent.logs() if e.get("level") == "warning"]
    assert warnings == ["interfaces: there is no interface 'to-a' yet; the agent traces it when it appears"]
    rows = flows_of([json.loads(line) for line in out.read_text().splitlines()], dst_port=5960, direction="ingress")
    assert totals(rows) == (14, 14 * (UDP_FRAME + 10))
