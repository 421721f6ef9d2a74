"""The real `flowcollect` command, with 2 workers, on namespace traffic, end to end.

Topology: namespaces `a` and `c` each joined to a namespace `host` by a veth
pair; the agent runs in `host` and traces both of its interfaces. Traffic
goes only between these namespaces.
"""
import json
import socket
import subprocess
import time

import pytest

from bench.harness.agent import FLOWCOLLECT, Agent, Subscriber, flows_of, send_udp, totals
from bench.harness.traffic import UDP_FRAME

pytestmark = pytest.mark.kernel


def add_foreign_filter(ns, dev, hook, priority, classid):
    """Another tool's TC filter: a u32 match-all that classifies into classid."""
    ns.exec("tc", "qdisc", "add", "dev", dev, "clsact")
    ns.exec("tc", "filter", "add", "dev", dev, hook, "prio", str(priority), "u32",
            "match", "u32", "0", "0", "classid", classid)


def endpoint(tmp_path):
    return f"ipc://{tmp_path}/flows.sock"


def test_exact_totals_on_several_interfaces_at_subscriber_and_jsonl(host_between, tmp_path):
    a_end, host_a, c_end, host_c = host_between
    jsonl = tmp_path / "flows.jsonl"
    agent = Agent(host_a.ns, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms", "--log-level", "debug",
                  "--output", f"zmq:{endpoint(tmp_path)}", "--output", f"jsonl:{jsonl}")
    sub = Subscriber(endpoint(tmp_path))
    try:
        agent.wait_for_subscribers(2)
        send_udp(a_end, host_a.ipv4, 4001, 5001, 40, 100)
        send_udp(c_end, host_c.ipv4, 4002, 5002, 25, 300)
        want = {("to-a", 4001): (40, 40 * (UDP_FRAME + 100)), ("to-c", 4002): (25, 25 * (UDP_FRAME + 300))}

        def complete(records):
            return all(totals(flows_of(records, interface=i, src_port=p, direction="ingress")) == t
                       for (i, p), t in want.items())

        sub.receive_until(complete)
        code, _seconds = agent.stop()
    finally:
        agent.close()
        sub.close()
    assert code == 0
    from_file = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for records in (sub.records, from_file):
        for (interface, port), expected in want.items():
            rows = flows_of(records, interface=interface, src_port=port, direction="ingress")
            assert totals(rows) == expected, (interface, rows)
            assert {r["dst_port"] for r in rows} == {port + 1000}
            assert {r["protocol"] for r in rows} == {17}
            assert all(r["agent_ip"] and r["duplicate"] is False for r in rows)


@pytest.mark.parametrize("mode", ["firstCome", "just-mark", "none"])
def test_dedup_of_traffic_crossing_the_host(host_between, tmp_path, mode):
    a_end, host_a, c_end, _host_c = host_between
    args = {"firstCome": ["--deduper", "firstCome"],
            "just-mark": ["--deduper", "firstCome", "--deduper-just-mark"],
            "none": ["--deduper", "none"]}[mode]
    agent = Agent(host_a.ns, tmp_path, "--workers", "2", "--cache-active-timeout", "300ms", "--log-level", "debug",
                  "--output", f"zmq:{endpoint(tmp_path)}", *args)
    sub = Subscriber(endpoint(tmp_path))
    packets = 30
    try:
        agent.wait_for_subscribers(2)
        send_udp(a_end, c_end.ipv4, 4100, 5100, packets, 64)  # routed: seen on to-a and on to-c
        key = dict(src_addr=a_end.ipv4, dst_addr=c_end.ipv4, src_port=4100, dst_port=5100)
        expected_total = packets if mode == "firstCome" else 2 * packets
        sub.receive_until(lambda records: totals(flows_of(records, **key))[0] >= expected_total)
        sub.receive_for(1.0)  # and nothing more
        code, _ = agent.stop()
    finally:
        agent.close()
        sub.close()
    assert code == 0
    rows = flows_of(sub.records, **key)
    on_a, on_c = flows_of(rows, interface="to-a"), flows_of(rows, interface="to-c")
    size = UDP_FRAME + 64
    if mode == "firstCome":
        assert totals(rows) == (packets, packets * size)
        assert not on_a or not on_c  # one interface owns the flow
        assert all(r["duplicate"] is False for r in rows)
    elif mode == "just-mark":
        assert totals(on_a) == (packets, packets * size) and totals(on_c) == (packets, packets * size)
        marked = [r for r in rows if r["duplicate"]]
        assert totals(marked)[0] == packets and len({r["interface"] for r in marked}) == 1
    else:
        assert totals(on_a) == (packets, packets * size) and totals(on_c) == (packets, packets * size)
        assert all(r["duplicate"] is False for r in rows)
    assert {r["direction"] for r in on_a} <= {"ingress"} and {r["direction"] for r in on_c} <= {"egress"}


def test_sigterm_right_after_traffic_delivers_everything_and_cleans_up(host_between, tmp_path):
    a_end, host_a, _c_end, _host_c = host_between
    host = host_a.ns
    add_foreign_filter(host, "to-a", "ingress", 20, "1:7")
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for systemd's notify socket
    systemd.bind(str(tmp_path / "notify.sock"))
    systemd.settimeout(5)
    agent = Agent(host, tmp_path, "--workers", "2", "--cache-active-timeout", "1h", "--log-level", "debug",
                  "--output", f"zmq:{endpoint(tmp_path)}", env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    sub = Subscriber(endpoint(tmp_path))
    key = dict(interface="to-a", src_port=4200, dst_port=5200)
    try:
        assert systemd.recv(100) == b"READY=1"
        agent.wait_for_subscribers(2)
        send_udp(a_end, host_a.ipv4, 4200, 5200, 77, 50)
        code, seconds = agent.stop()
        sub.receive_until(lambda records: totals(flows_of(records, **key))[0] >= 77)
        assert systemd.recv(100) == b"STOPPING=1"
    finally:
        agent.close()
        sub.close()
        systemd.close()
    assert code == 0 and seconds < 5
    rows = flows_of(sub.records, **key)
    assert totals(rows) == (77, 77 * (UDP_FRAME + 50))
    for dev in ("to-a", "to-c"):
        for hook in ("ingress", "egress"):
            shown = host.exec("tc", "filter", "show", "dev", dev, hook).stdout
            assert "fc_" not in shown
    assert "1:7" in host.exec("tc", "filter", "show", "dev", "to-a", "ingress").stdout


def test_killed_worker_is_restarted_and_its_loss_is_counted(host_between, tmp_path):
    a_end, host_a, _c_end, _host_c = host_between
    agent = Agent(host_a.ns, tmp_path, "--workers", "2", "--cache-active-timeout", "200ms", "--log-level", "debug",
                  "--output", f"zmq:{endpoint(tmp_path)}")
    sub = Subscriber(endpoint(tmp_path))
    try:
        agent.wait_for_subscribers(2)
        before = agent.worker_pids()
        assert len(before) == 2
        # Traffic while a worker dies: many ports, so both workers get flows.
        for port in range(6000, 6200):
            send_udp(a_end, host_a.ipv4, port, 7000, 2, 10)
        subprocess.run(["kill", "-9", str(before[0])], check=True)
        for port in range(6200, 6400):
            send_udp(a_end, host_a.ipv4, port, 7000, 2, 10)
        agent.wait_for_log("restarting")
        agent.wait_for_subscribers(3)  # the restarted instance has heard of the subscription too
        after = agent.worker_pids()
        assert len(after) == 2 and before[0] not in after
        # Flows that start after the restart arrive in full.
        for port in range(7100, 7140):
            send_udp(a_end, host_a.ipv4, port, 7001, 3, 10)
        sub.receive_until(lambda records: len(flows_of(records, dst_port=7001)) >= 40)
        code, _ = agent.stop()
        # Whatever did not arrive is accounted for by the collector, never silently gone: read
        # what the stopped agent delivered until the flows of the first 400 ports are all there
        # but for those it counted.
        summary, = [e for e in agent.logs() if e.get("message", "").startswith("stopped:")]
        lost = summary["flows_lost_by_cause"]
        counted = lost.get("worker_died", 0) + lost.get("forward_queue_full", 0)

        def missing(records):
            return 400 - len({r["src_port"] for r in flows_of(records, dst_port=7000)})

        sub.receive_until(lambda records: missing(records) <= counted)
    finally:
        agent.close()
        sub.close()
    assert code == 0
    late = flows_of(sub.records, dst_port=7001)
    assert len(late) == 40 and totals(late) == (120, 120 * (UDP_FRAME + 10))
    assert 0 <= missing(sub.records) <= counted


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_a_stuck_subscriber_never_stalls_the_agent(host_between, tmp_path):
    """A subscriber that never reads: the agent keeps evicting and exporting, with
    bounded memory, and counts and logs the messages the stuck subscriber misses."""
    a_end, host_a, _c_end, _host_c = host_between
    agent = Agent(host_a.ns, tmp_path, "--workers", "2", "--cache-active-timeout", "100ms",
                  "--output", f"zmq:{endpoint(tmp_path)}")
    stuck = Subscriber(endpoint(tmp_path), topic=b"flows", hwm=1)
    sock = a_end.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a_end.ipv4, 4300))
    try:
        rss = []
        started = time.monotonic()
        while time.monotonic() < started + 8:
            for port in range(20000, 21500):  # 1,500 flows per eviction: large messages
                sock.sendto(b"s", (host_a.ipv4, port))
            rss.append(_rss_kib(agent.process.pid))
            time.sleep(0.01)
        evictions = (time.monotonic() - started) / 0.1
        agent.wait_for_log("a subscriber is too slow", timeout=10)
        code, seconds = agent.stop()
    finally:
        agent.close()
        stuck.close()
        sock.close()
    assert code == 0 and seconds < 5
    summary, = [e for e in agent.logs() if e.get("message", "").startswith("stopped:")]
    lost = summary["flows_lost_by_cause"]
    assert lost["subscriber_too_slow"] > 0
    assert lost.get("forward_queue_full", 0) == 0 and lost.get("worker_died", 0) == 0
    assert summary["flows_evicted"] >= 1500 * evictions / 2  # the kernel side kept evicting
    assert max(rss) - rss[len(rss) // 2] < 64 * 1024  # no growth with the backlog: bounded


def test_curve_on_a_tcp_endpoint(host_between, tmp_path):
    """With a CURVE key, only a subscriber that knows the agent's public key gets flows."""
    _a_end, host_a, c_end, host_c = host_between
    key_file = tmp_path / "agent.key"
    public = subprocess.run([FLOWCOLLECT, "keygen", str(key_file)], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert len(public) == 40 and oct(key_file.stat().st_mode & 0o777) == "0o600"
    public_file = tmp_path / "agent.key.pub"
    assert public_file.read_text().strip() == public
    tcp = "tcp://127.0.0.1:47123"  # the host namespace's own loopback
    agent = Agent(host_a.ns, tmp_path, "--workers", "1", "--cache-active-timeout", "200ms", "--log-level", "debug",
                  "--output", f"zmq:{tcp}", "--zmq-curve-secret-key-file", str(key_file))
    subs = {name: host_a.ns.popen(FLOWCOLLECT, "sub", "--endpoint", tcp, "--count", "1", *extra,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name, extra in (("trusted", ["--curve-server-key-file", str(public_file)]), ("plain", []))}
    try:
        # Only a subscriber that passed the CURVE handshake can subscribe: the worker hears of one.
        agent.wait_for_subscribers(1)
        send_udp(host_c, c_end.ipv4, 4400, 5400, 3, 10)  # traffic from the host itself
        out, err = subs["trusted"].communicate(timeout=20)
        assert out, err
        time.sleep(0.5)
        assert subs["plain"].poll() is None  # still waiting: it never got a flow
    finally:
        for sub in subs.values():
            sub.kill()
            sub.wait()
        code, _ = agent.stop()
    assert code == 0
    first = json.loads(out.splitlines()[0])
    assert first["packets"] >= 1 and first["agent_ip"]
    assert any("require CURVE" in e.get("message", "") and public in e["message"] for e in agent.logs())
