"""`flowcollect sub --top` on a real terminal (tmux) against a live agent, read back from the screen.

The agent runs in namespace `b` and traces its veth; namespace `a` sends
known traffic to it: UDP over IPv4 and IPv6, ICMP and ICMPv6 echo, ARP and a
frame of an experimental ethertype (AF_PACKET), plus a steady trickle so that
every eviction sends a message and the view learns the eviction period. The
view runs in a tmux pane of 160 x 40 and is read with capture-pane.
"""
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from bench.harness.agent import FLOWCOLLECT, Agent, send_udp
from bench.harness.frames import FrameSender, ethernet
from bench.harness.traffic import UDP_FRAME

pytestmark = pytest.mark.kernel

WIDTH, HEIGHT = 160, 40
RATE = re.compile(r"^\d+(\.\d+)?[kMGT]?$")
ETH_P_ARP, ETH_P_EXPERIMENTAL = 0x0806, 0x88B5
BROADCAST = "ff:ff:ff:ff:ff:ff"
WAITING_MESSAGE_WITHIN_S = 5.0


class Pane:
    """One tmux session of its own server (its own socket), the pane kept after its command exits."""

    def __init__(self, tmp_path, command):
        self.socket = str(tmp_path / "tmux.sock")
        conf = tmp_path / "tmux.conf"
        conf.write_text("set -g remain-on-exit on\n")
        self.tmux("-f", str(conf), "new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "-s", "top", command)

    def tmux(self, *args):
        return subprocess.run(["tmux", "-S", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout

    def lines(self, history=False):
        """The screen, or with history=True everything the pane ever showed."""
        return self.tmux("capture-pane", "-p", "-t", "top", *(["-S", "-"] if history else [])).splitlines()

    def show(self, fmt):
        return self.tmux("display-message", "-p", "-t", "top", fmt).strip()

    def wait(self, done, what, timeout=30, shown=None, history=False):
        """Until done(lines) is true for a capture of the pane, within timeout seconds.

        shown(): what the failure message adds to the last screen.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines(history)
            if done(lines):
                return lines
            time.sleep(0.1)
        size = self.show("#{window_width}x#{window_height}")
        raise AssertionError(f"no {what} on the screen ({size}) within {timeout} s:\n" + "\n".join(self.lines())
                             + (f"\n{shown()}" if shown else ""))

    def after_exit(self):
        """Once the pane's command has ended: (all the pane ever showed, whether it is on the alternate screen).

        All, not the screen: remain-on-exit adds a line at the bottom when the command
        ends, which may scroll the first ones away.
        """
        self.wait(lambda _: self.show("#{pane_dead}") == "1", "end of the pane's command")
        return self.lines(history=True), self.show("#{alternate_on}")

    def kill(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, check=False)


def table_rows(lines):
    """The table's rows as lists of cells (columns are at least two spaces apart)."""
    if len(lines) < 4 or not lines[2].startswith("─"):
        return []
    return [re.split(r"\s{2,}", line.strip()) for line in lines[3:] if line.strip() and "[q] quit" not in line]


def assert_sorted(lines, column):
    values = [int(cells[column].replace(",", "")) for cells in table_rows(lines)]
    assert values and values == sorted(values, reverse=True), lines


def arp_announcement(link):
    """A gratuitous ARP reply for the sender's own address: nothing answers it."""
    mac = link.mac_bytes
    ip = socket.inet_aton(link.ipv4)
    payload = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, ip, b"\xff" * 6, ip)
    return ethernet(b"\xff" * 6, mac, ETH_P_ARP, payload)


def trickle(link, dst, stop):
    """A datagram every 50 ms until stop is set: every eviction has a flow to send."""
    sock = link.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((link.ipv4, 4999))
    while not stop.wait(0.05):
        sock.sendto(b"t", (dst, 5999))
    sock.close()


def test_top_view_of_live_traffic_then_q_restores_the_terminal(two_hosts, tmp_path):
    a, b = two_hosts
    endpoint = f"ipc://{tmp_path}/flows.sock"
    agent = Agent(b.ns, tmp_path, "--workers", "2", "--cache-active-timeout", "500ms", "--log-level", "debug",
                  "--output", f"zmq:{endpoint}")
    receivers = []
    for family, address, port in ((socket.AF_INET, b.ipv4, 5001), (socket.AF_INET6, b.ipv6, 5002),
                                  (socket.AF_INET, b.ipv4, 5999)):
        receivers.append(b.ns.socket(family, socket.SOCK_DGRAM))
        receivers[-1].bind((address, port))  # no ICMP port unreachable in the way
    pane = Pane(tmp_path, f"{FLOWCOLLECT} sub --top --endpoint {endpoint}; echo sub-exit=$?; stty -a")
    stop = threading.Event()
    ticker = threading.Thread(target=trickle, args=(a, b.ipv4, stop))
    try:
        agent.wait_for_subscribers(2, topic="flows.bin")
        ticker.start()
        send_udp(a, b.ipv4, 4001, 5001, 10, 100)
        send_udp(a, b.ipv6, 4002, 5002, 7, 200)
        pings = [a.ns.popen("ping", *flags, "-c", "3", "-i", "0.2", "-W", "2", dst, stdout=subprocess.DEVNULL)
                 for flags, dst in ((["-4"], b.ipv4), (["-6"], b.ipv6))]
        frames = FrameSender(a)
        frames.send(arp_announcement(a), count=2)
        frames.send(ethernet(b.mac_bytes, a.mac_bytes, ETH_P_EXPERIMENTAL, b"x" * 50))
        frames.close()
        assert [p.wait(10) for p in pings] == [0, 0]

        # (direction, protocol, source, destination) -> (bytes, packets), as they go over b's veth0
        want = {
            ("ingress", "udp", f"{a.ipv4}:4001", f"{b.ipv4}:5001"): (10 * (UDP_FRAME + 100), 10),
            ("ingress", "udp", f"[{a.ipv6}]:4002", f"[{b.ipv6}]:5002"): (7 * (UDP_FRAME + 20 + 200), 7),
            ("ingress", "icmp echo-request", a.ipv4, b.ipv4): (3 * 98, 3),
            ("egress", "icmp echo-reply", b.ipv4, a.ipv4): (3 * 98, 3),
            ("ingress", "icmpv6 echo-request", a.ipv6, b.ipv6): (3 * 118, 3),
            ("egress", "icmpv6 echo-reply", b.ipv6, a.ipv6): (3 * 118, 3),
            ("ingress", "arp", a.mac, BROADCAST): (2 * 42, 2),
            ("ingress", "0x88b5", a.mac, b.mac): (64, 1),
        }
        seen = {}  # every talker must show its exact totals on some screen, with its rates
        rows = {}  # the last row of every talker, for the failure message

        def all_seen(lines):
            for cells in table_rows(lines):
                rows[tuple(cells[:5])] = cells
                if len(cells) != 10 or cells[0] != "veth0":
                    continue
                key = tuple(cells[1:5])
                numbers = (int(cells[7].replace(",", "")), int(cells[8].replace(",", "")))
                if want.get(key) == numbers and RATE.match(cells[5]) and RATE.match(cells[6]):
                    seen[key] = cells
            return set(seen) == set(want)

        lines = pane.wait(all_seen, "row of every talker with its exact totals and rates",
                          shown=lambda: f"rows seen: {list(rows.values())}\nmissing: {set(want) - set(seen)}")
        assert lines[1].split() == ["iface", "dir", "proto", "source", "destination", "bit/s",
                                    "pkt/s", "bytes", "packets", "flows"]
        assert re.search(r"window \d+\.\d s = \d+ evictions of 0\.\d\d s", lines[0]), lines[0]
        assert lines[0].startswith("flowcollect sub --top") and any("sorted by bytes" in line for line in lines)
        assert_sorted(lines, 7)

        pane.tmux("send-keys", "-t", "top", "p")
        lines = pane.wait(lambda screen: any("sorted by packets" in line for line in screen), "sort by packets")
        assert_sorted(lines, 8)
        # A smaller terminal: the next refresh fills it, no more (the title on top, the keys at the bottom).
        pane.tmux("resize-window", "-t", "top", "-x", "120", "-y", "12")
        lines = pane.wait(lambda screen: len(screen) == 12 and "[q] quit" in screen[-2], "view resized to 120 x 12")
        assert lines[0].startswith("flowcollect sub --top") and 0 < len(table_rows(lines)) <= 12 - 5
        assert max(len(line) for line in lines) <= 120

        pane.tmux("send-keys", "-t", "top", "q")
        final, alternate = pane.after_exit()
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        pane.kill()
        for receiver in receivers:
            receiver.close()
        code, _ = agent.stop()
    assert_restored(final, alternate)
    assert code == 0


def assert_restored(final, alternate):
    """sub exited 0, and left the terminal as it was: the shell's screen (the view was on the alternate
    screen), and stty's line discipline in canonical mode with echo (the view had them off)."""
    assert "sub-exit=0" in final, final
    assert alternate == "0" and not any("bit/s" in line for line in final)
    stty = " ".join(final[final.index("sub-exit=0") + 1:]).split()
    assert "icanon" in stty and "echo" in stty and "-icanon" not in stty and "-echo" not in stty


def test_top_view_says_why_nothing_comes_and_ctrl_c_restores_the_terminal(tmp_path):
    folder = tempfile.mkdtemp(prefix="fcsub-", dir="/tmp")  # a short path: the status line is one line
    endpoint = f"ipc://{folder}/flows.sock"  # no agent there
    pane = Pane(tmp_path, f"{FLOWCOLLECT} sub --top --endpoint {endpoint}; echo sub-exit=$?; stty -a")
    try:
        lines = pane.wait(lambda screen: any(line.startswith("no flows from") for line in screen),
                          "waiting message on the status line", timeout=WAITING_MESSAGE_WITHIN_S)
        status = next(line for line in lines if line.startswith("no flows from"))
        assert status.startswith(f"no flows from {endpoint} after 3 s, still waiting: the socket file does not exist")
        assert "measuring the eviction period" in lines[0] and "0 talkers" in lines[0]
        pane.tmux("send-keys", "-t", "top", "C-c")
        final, alternate = pane.after_exit()
    finally:
        pane.kill()
        os.rmdir(folder)
    assert_restored(final, alternate)
