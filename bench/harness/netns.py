"""Network namespaces and veth pairs for kernel tests: unique names, always removed.

A test enters a namespace only around the calls that must happen there
(attach, socket creation); sockets keep the namespace they were made in.
"""
import contextlib
import ctypes
import itertools
import os
import socket
import subprocess
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_serial = itertools.count()


def sh(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kwargs)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class NetNS:
    """A network namespace of our own, with lo up and IPv6 quiet (no DAD, no RS)."""

    def __init__(self, role):
        self.name = f"fct{os.getpid()}-{next(_serial)}-{role}"
        sh("ip", "netns", "add", self.name)
        self.exec("ip", "link", "set", "lo", "up")
        for key in ("all", "default"):
            self.exec("sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
            self.exec("sysctl", "-qw", f"net.ipv6.conf.{key}.router_solicitations=0")

    def exec(self, *args, check=True):
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def popen(self, *args, **kwargs):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kwargs)

    @contextlib.contextmanager
    def entered(self):
        """Run the block with this thread in the namespace."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield self
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def ifindex(self, ifname):
        with self.entered():
            return socket.if_nametoindex(ifname)

    def socket(self, *args):
        with self.entered():
            return socket.socket(*args)

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)


class Link:
    """One end of a veth pair: its namespace, name, index, MAC and addresses."""

    def __init__(self, ns, name, ipv4, ipv6):
        self.ns = ns
        self.name = name
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.ifindex = ns.ifindex(name)
        self.mac = ns.exec("cat", f"/sys/class/net/{name}/address").stdout.strip()

    @property
    def mac_bytes(self):
        return bytes.fromhex(self.mac.replace(":", ""))


def veth_pair(ns_a, ns_b, subnet, name_a="veth0", name_b="veth0", mtu=1500):
    """A veth pair between two namespaces with IPv4 10.<subnet>.0.{1,2}/24 and
    IPv6 fd00:<subnet>::{1,2}/64, up, with static neighbours (no ARP/ND noise)."""
    tmp_a, tmp_b = f"fct{os.getpid()}a{next(_serial)}", f"fct{os.getpid()}b{next(_serial)}"
    sh("ip", "link", "add", "name", tmp_a, "mtu", str(mtu), "type", "veth", "peer", "name", tmp_b, "mtu", str(mtu))
    sh("ip", "link", "set", tmp_a, "netns", ns_a.name, "name", name_a)
    sh("ip", "link", "set", tmp_b, "netns", ns_b.name, "name", name_b)
    ends = []
    for ns, name, host in ((ns_a, name_a, 1), (ns_b, name_b, 2)):
        v4, v6 = f"10.{subnet}.0.{host}", f"fd00:{subnet}::{host}"
        ns.exec("ip", "addr", "add", f"{v4}/24", "dev", name)
        ns.exec("ip", "-6", "addr", "add", f"{v6}/64", "dev", name, "nodad")
        ns.exec("ip", "link", "set", name, "up")
        ends.append(Link(ns, name, v4, v6))
    a, b = ends
    for near, far in ((a, b), (b, a)):
        near.ns.exec("ip", "neigh", "replace", far.ipv4, "lladdr", far.mac, "dev", near.name, "nud", "permanent")
        near.ns.exec("ip", "-6", "neigh", "replace", far.ipv6, "lladdr", far.mac, "dev", near.name, "nud", "permanent")
    return a, b


def udp_receive_queues(ns=None):
    """{local port: bytes waiting in its receive queue} of the UDP sockets of a namespace (default: ours).

    From /proc/net/udp and udp6 (rx_queue): a collector has read every datagram
    sent to it when its queue is empty.
    """
    if ns is None:
        text = sh("cat", "/proc/net/udp", "/proc/net/udp6").stdout
    else:
        text = ns.exec("cat", "/proc/net/udp", "/proc/net/udp6").stdout
    queues = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0].endswith(":"):
            continue  # a header line
        port = int(fields[1].rsplit(":", 1)[1], 16)
        queues[port] = queues.get(port, 0) + int(fields[4].split(":")[1], 16)
    return queues


def wait_udp(port, ns=None, *, read=False, timeout=10.0, alive=None):
    """Until a UDP socket is bound to `port` and, with read=True, has read all it was sent.

    alive(): checked on every round (e.g. that the collector's process still runs).
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        queues = udp_receive_queues(ns)
        if port in queues and (not read or queues[port] == 0):
            return
        if time.monotonic() > deadline:
            state = "bound" if port in queues else "not bound"
            raise AssertionError(f"UDP port {port}: {state}, {queues.get(port, 0)} bytes queued after {timeout} s")
        time.sleep(0.02)
