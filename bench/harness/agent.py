"""Run the real `flowcollect` command in a test namespace, and read what it exports.

Agent() starts it with ip netns exec, waits for its "agent ready" log line,
and stop() sends SIGTERM and returns the exit code and the seconds it took.
Subscriber() is a ZeroMQ SUB on the agent's public endpoint (an ipc socket in
the test's temp dir: unix sockets do not belong to a network namespace).
"""
import calendar
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import zmq

from flowcollect.transport import wire

FLOWCOLLECT = os.path.join(os.path.dirname(sys.executable), "flowcollect")
READY_TIMEOUT_S = 30


class Agent:
    def __init__(self, ns, tmp_path, *args, name="agent", env=None, cwd=None, command=FLOWCOLLECT):
        self.ns = ns
        self.log_path = tmp_path / f"{name}.log"
        self.stdout_path = tmp_path / f"{name}.out"
        # The agent writes both files until close(): once it is started they move to
        # self._files, which close() closes; if it does not start they close here.
        with contextlib.ExitStack() as files:
            self._log = files.enter_context(open(self.log_path, "wb"))
            self._stdout = files.enter_context(open(self.stdout_path, "wb"))
            self.process = ns.popen(command, *args, stdout=self._stdout, stderr=self._log,
                                    env={**os.environ, **(env or {})}, cwd=cwd)
            self._files = files.pop_all()
        self.wait_for_log("agent ready")

    def logs(self):
        """The agent's log lines, parsed (it logs JSON when stderr is not a terminal)."""
        entries = []
        for line in self.log_path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append({"message": line})
        return entries

    def wait_for_log(self, text, timeout=READY_TIMEOUT_S, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in e.get("message", "") for e in self.logs()) >= count:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"flowcollect exited ({self.process.returncode}):\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"no log line {text!r} within {timeout} s:\n{self.log_path.read_text()}")

    def ledger(self):
        """The stop line: the last log record, with the ledger of every packet (flowcollect/agent/ledger.py)."""
        stopped = [e for e in self.logs() if e.get("message", "").startswith("stopped:")]
        assert stopped, self.log_path.read_text()
        return stopped[-1]

    def first_log_time(self, text):
        """When the first log line containing text was written (Unix seconds), or None."""
        for entry in self.logs():
            if text in entry.get("message", "") and "time" in entry:
                stamp = time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S")
                return calendar.timegm(stamp) + int(entry["time"][20:23]) / 1000
        return None

    def wait_for_subscribers(self, count, topic="flows.json", timeout=READY_TIMEOUT_S):
        """Until `count` worker instances have heard of a subscription to `topic`, so that they publish it.

        ZeroMQ subscriptions reach publishers asynchronously; the workers log each change at
        debug level (start the agent with --log-level debug).
        """
        self.wait_for_log(f"{topic!r} now has 1 subscription", timeout=timeout, count=count)

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-f", "flowcollect.agent.worker"], capture_output=True, text=True).stdout
        pids = [int(p) for p in out.split()]
        return [p for p in pids if _ancestor(p, self.process.pid)]

    def stop(self, signum=signal.SIGTERM, timeout=10):
        """Signal the agent; (exit code, seconds until it exited)."""
        started = time.monotonic()
        os.kill(self.process.pid, signum)  # ip netns exec execs flowcollect: the pid is the agent's
        try:
            code = self.process.wait(timeout)
        finally:
            self.close()
        return code, time.monotonic() - started

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._files.close()


def _ancestor(pid, ancestor):
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


class Subscriber:
    """A SUB socket on the agent's endpoint, collecting JSON records of one topic."""

    def __init__(self, endpoint, topic=wire.TOPIC_JSON, hwm=None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        if hwm is not None:
            self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)
        self.records = []
        self.headers = []

    def receive_for(self, seconds):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000) + 1):
                _topic, header, body = wire.split(self.sock.recv_multipart(), topic=True)
                self.headers.append(header)
                if header.kind == wire.FLOWS_JSON:
                    self.records += [json.loads(line) for line in bytes(body[0]).splitlines()]
                else:
                    from flowcollect.records.json_lines import records
                    self.records += records(wire.read_flows(header, body))
        return self.records

    def receive_until(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not predicate(self.records):
            self.receive_for(0.2)
        return self.records

    def close(self):
        self.sock.close()
        self.ctx.term()


def flows_of(records, **fields):
    return [r for r in records if all(r.get(k) == v for k, v in fields.items())]


def totals(records):
    return sum(r["packets"] for r in records), sum(r["bytes"] for r in records)


def send_udp(link, dst, sport, dport, count, size):
    """count datagrams of size bytes from link (a tests.netns.Link) to dst, IPv4 or IPv6."""
    v6 = ":" in dst
    sock = link.ns.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((link.ipv6 if v6 else link.ipv4, sport))
    for _ in range(count):
        sock.sendto(b"u" * size, (dst, dport))
    sock.close()
