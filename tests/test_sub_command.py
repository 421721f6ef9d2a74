"""The real `flowcollect sub` command: bad input is one line and exit 2; when nothing comes it says why.

And CURVE keys as `flowcollect keygen` makes them, one in about 85 of which
starts with '-': given as --curve-server-key=KEY or in a file, with a real
agent that requires CURVE on a tcp endpoint, in a test namespace.
"""
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import zmq

from bench.harness.agent import FLOWCOLLECT, Agent, flows_of, send_udp, totals
from bench.harness.traffic import UDP_FRAME
from flowcollect.subscriber.waiting import HINT_AFTER_S
from flowcollect.transport import curve
from tests.conftest import require_kernel

WAITING_MESSAGE_WITHIN_S = 5.0
KEY_ATTEMPTS = 2000  # P(no key starting with '-') = (1 - 1/82.3) ** 2000 < 1e-10


def sub(*args, timeout=20):
    return subprocess.run([FLOWCOLLECT, "sub", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_exit_2(result, *words):
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("endpoint", [
    "/some/path", "bogus://x", "", "flows.sock", "tcp://host", "tcp://10.0.0.1:0", "tcp://10.0.0.1:70000",
    "tcp://fd00::1:5555", "tcp://*:5555", "ipc://", "inproc://flows", "udp://10.0.0.1:5555",
    "ipc:///tmp/" + "x" * 120,
])
def test_an_endpoint_that_is_not_a_zeromq_address_is_one_line_and_exit_2(endpoint):
    line = assert_one_line_exit_2(sub("--endpoint", endpoint), "--endpoint")
    assert line.startswith("flowcollect: --endpoint")


def test_the_hints_of_a_bad_endpoint_say_what_to_write():
    assert "ipc:///some/path" in sub("--endpoint", "/some/path").stderr
    assert "tcp://[::1]:PORT" in sub("--endpoint", "tcp://fd00::1:5555").stderr
    assert "tcp://HOST:PORT" in sub("--endpoint", "bogus://x").stderr


def test_a_bad_curve_key_is_one_line_and_exit_2(tmp_path):
    assert_one_line_exit_2(sub("--curve-server-key=tooshort"), "--curve-server-key", "40-character")
    assert_one_line_exit_2(sub("--curve-server-key=" + "~" * 40), "--curve-server-key")
    garbage = tmp_path / "agent.key.pub"
    garbage.write_text("not a key\n")
    assert_one_line_exit_2(sub("--curve-server-key-file", str(garbage)), str(garbage), "Z85")
    assert_one_line_exit_2(sub("--curve-server-key-file", str(tmp_path / "absent")), "No such file")
    # A key that starts with '-' must be given with '=': argparse takes `-x...` for an option.
    assert_one_line_exit_2(sub("--curve-server-key", "-" + "a" * 39), "--curve-server-key")


def test_top_needs_a_terminal():
    assert_one_line_exit_2(sub("--top", "--endpoint", "ipc:///nonexistent/flows.sock"), "--top", "terminal")


@contextlib.contextmanager
def waiting_sub(*command):
    """A subscriber that gets nothing: yields (process, time it started)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process, time.monotonic()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def first_stderr_line(process, started, timeout=WAITING_MESSAGE_WITHIN_S):
    """The first line the process writes on stderr, within `timeout` seconds of `started`."""
    left = started + timeout - time.monotonic()
    ready, _, _ = select.select([process.stderr], [], [], max(0.0, left))
    assert ready, f"no message on stderr within {timeout} s"
    return json.loads(process.stderr.readline())["message"]


def stop_and_check(process):
    """SIGTERM: exit 0, and nothing more on stderr (the waiting message is given once) nor stdout."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0 and out == "" and err == "", (process.returncode, out, err)


def test_no_agent_behind_an_ipc_endpoint(tmp_path):
    endpoint = f"ipc://{tmp_path}/flows.sock"
    with waiting_sub(FLOWCOLLECT, "sub", "--endpoint", endpoint) as (process, started):
        message = first_stderr_line(process, started)
        assert message.startswith(f"no flows from {endpoint} after {HINT_AFTER_S:.0f} s, still waiting")
        assert "the socket file does not exist: no agent publishes there" in message
        assert process.poll() is None  # it keeps waiting
        stop_and_check(process)


def test_a_socket_file_left_by_an_agent_that_is_gone(tmp_path):
    path = tmp_path / "flows.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a killed agent leaves
    try:
        with waiting_sub(FLOWCOLLECT, "sub", "--endpoint", f"ipc://{path}") as (process, started):
            message = first_stderr_line(process, started)
            assert "the socket file exists and this user may use it, but nothing accepts connections" in message
            stop_and_check(process)
    finally:
        stale.close()


@pytest.fixture
def root_socket_dir():
    """A directory of root's, with an agent-like ipc publisher whose socket file is root's and 0600."""
    require_kernel()  # root, to bind as root and run the subscriber as nobody
    folder = tempfile.mkdtemp(prefix="fcsub-", dir="/tmp")
    ctx = zmq.Context()
    publisher = ctx.socket(zmq.XPUB)
    publisher.setsockopt(zmq.LINGER, 0)
    path = os.path.join(folder, "flows.sock")
    publisher.bind(f"ipc://{path}")
    os.chmod(path, 0o600)
    try:
        yield folder, path
    finally:
        publisher.close()
        ctx.term()
        shutil.rmtree(folder)


@pytest.mark.parametrize(("folder_mode", "words"), [
    (0o755, ["the socket file exists (owner root, mode 0600)", "not readable and writable by this user (nobody",
             "permission denied"]),
    (0o700, ["the socket file is out of reach: permission denied to this user (nobody", "directory"]),
])
def test_an_ipc_socket_this_user_may_not_use(root_socket_dir, folder_mode, words):
    folder, path = root_socket_dir
    os.chmod(folder, folder_mode)
    as_nobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
    with waiting_sub(*as_nobody, FLOWCOLLECT, "sub", "--endpoint", f"ipc://{path}") as (process, started):
        message = first_stderr_line(process, started)
        for word in words:
            assert word in message, message
        stop_and_check(process)


def test_no_agent_behind_a_tcp_endpoint(netns_factory):
    ns = netns_factory("sub")  # nothing listens in a namespace of our own
    # Below the ephemeral range (32768-60999): a connect to a port inside it can pick that same port as
    # its source and connect to itself (TCP simultaneous open), which ZeroMQ sees as a failed handshake.
    endpoint = "tcp://127.0.0.1:24710"
    with waiting_sub("ip", "netns", "exec", ns.name, FLOWCOLLECT, "sub", "--endpoint", endpoint) as (process, started):
        message = first_stderr_line(process, started)
        assert "nothing accepts connections there: no agent publishes on it" in message
        stop_and_check(process)


# --- CURVE, with keys that start with '-' ---

def keypair_starting_with_dash(folder):
    """(secret key file, public key) from the real keygen path, the public key starting with '-'."""
    for attempt in range(KEY_ATTEMPTS):
        path = folder / f"agent{attempt}.key"
        public = curve.write_keypair(str(path))
        if public.startswith("-"):
            return path, public
        path.unlink()
        (folder / f"agent{attempt}.key{curve.PUBLIC_SUFFIX}").unlink()
    pytest.fail(f"no public key starting with '-' in {KEY_ATTEMPTS} key pairs")


class Sub:
    """`flowcollect sub` in a namespace, its stdout and stderr in files."""

    def __init__(self, ns, tmp_path, name, *args):
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = ns.popen(FLOWCOLLECT, "sub", *args, stdout=out, stderr=err)

    def records(self):
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.endswith("}")]

    def wait(self, predicate, what, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            assert self.process.poll() is None, self.err.read_text()
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout} s: {self.err.read_text()}")

    def messages(self):
        return [json.loads(line)["message"] for line in self.err.read_text().splitlines()]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


def exact_flows(trusted, a, b, ports, packets, payload):
    """Send `packets` datagrams from a to b; the (packets, bytes) `trusted` got of them once they are all there."""
    sport, dport = ports
    send_udp(a, b.ipv4, sport, dport, packets, payload)
    want = (packets, packets * (UDP_FRAME + payload))
    ours = dict(src_port=sport, dst_port=dport, direction="ingress", protocol=17)
    trusted.wait(lambda s: totals(flows_of(s.records(), **ours)) == want, f"{want} on ports {ports}")
    assert trusted.stop() == 0
    return totals(flows_of(trusted.records(), **ours))


@pytest.mark.kernel
def test_curve_keys_starting_with_dash_by_value_and_by_file(two_hosts, tmp_path):
    a, b = two_hosts
    key_file, public = keypair_starting_with_dash(tmp_path)
    public_file = f"{key_file}{curve.PUBLIC_SUFFIX}"
    endpoint = "tcp://127.0.0.1:47311"  # b's own loopback
    agent = Agent(b.ns, tmp_path, "--workers", "1", "--cache-active-timeout", "200ms", "--log-level", "debug",
                  "--output", f"zmq:{endpoint}", "--zmq-curve-secret-key-file", str(key_file))
    wrong_key = curve.write_keypair(str(tmp_path / "other.key"))
    subs = [Sub(b.ns, tmp_path, "plain", "--endpoint", endpoint),
            Sub(b.ns, tmp_path, "wrong", "--endpoint", endpoint, f"--curve-server-key={wrong_key}")]
    try:
        plain, wrong = subs
        for without, text in ((plain, "the agent requires CURVE there"), (wrong, "the CURVE key is wrong")):
            without.wait(lambda s: s.messages(), "waiting message", timeout=WAITING_MESSAGE_WITHIN_S)
            message, = without.messages()
            assert text in message, message

        received = {}
        for round_, (name, key_args, packets, payload) in enumerate((
                ("by-value", [f"--curve-server-key={public}"], 9, 60),
                ("by-file", ["--curve-server-key-file", public_file], 13, 30))):
            subs.append(trusted := Sub(b.ns, tmp_path, name, "--endpoint", endpoint, *key_args))
            agent.wait_for_subscribers(round_ + 1)  # the handshake passed: it subscribed (once more)
            received[name] = exact_flows(trusted, a, b, (4100 + round_, 5100 + round_), packets, payload)
            assert trusted.messages() == []  # flows came: no waiting message
            # Its subscription is gone before the next subscriber comes, so the count above is the next one's.
            agent.wait_for_log("'flows.json' now has 0 subscription", count=round_ + 1)
        assert plain.records() == [] and wrong.records() == []
    finally:
        codes = [s.stop() for s in subs]
        code, _ = agent.stop()
    assert received == {"by-value": (9, 9 * (UDP_FRAME + 60)), "by-file": (13, 13 * (UDP_FRAME + 30))}
    assert codes == [0] * len(subs) and code == 0
    assert any("require CURVE" in e.get("message", "") and public in e["message"] for e in agent.logs())
