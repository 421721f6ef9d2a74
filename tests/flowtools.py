"""Helpers to find flows in drained batches by their key, in readable terms."""
import ipaddress
import socket

import numpy as np

MARKER_PORT = 9999  # no test sends to it


def ip16(text):
    """An address as the kernel keys it: IPv6, or IPv4-mapped IPv6."""
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        addr = ipaddress.IPv6Address(f"::ffff:{text}")
    return np.frombuffer(addr.packed, dtype=np.uint8)


def mac6(text):
    return np.frombuffer(bytes.fromhex(text.replace(":", "")), dtype=np.uint8)


_CONVERT = {"src_ip": ip16, "dst_ip": ip16, "src_mac": mac6, "dst_mac": mac6}


def matching(batch, **fields):
    """Rows of batch whose fields equal the given values (addresses and MACs as text)."""
    mask = np.ones(len(batch), dtype=bool)
    for name, value in fields.items():
        column = batch[name]
        value = _CONVERT.get(name, lambda v: v)(value)
        if column.ndim > 1:
            mask &= (column == value).all(axis=1)
        else:
            mask &= column == value
    return batch[mask]


def only_flow(batch, **fields):
    """The single row matching fields; fails the test if there are none or several."""
    rows = matching(batch, **fields)
    assert len(rows) == 1, f"expected one flow matching {fields}, found {len(rows)}"
    return rows[0]


def totals(rows):
    return int(rows["packets"].sum()), int(rows["bytes"].sum())


def attach(kernel, *links):
    """Attach the kernel's programs to test links, each in its own namespace."""
    for link in links:
        with link.ns.entered():
            kernel.attach(link.ifindex)


def delivered(a, b, timeout=5.0):
    """Return once every frame this thread sent between links a and b, and every reply to
    them, has been through the TC hooks of both ends.

    The receiving side of a veth runs in the softirq of the sending CPU, maybe later (in
    ksoftirqd), but in order: with this thread on one CPU (pin_to_one_cpu), a marker sent
    a -> b and received at b comes after every frame sent before it, and one sent b -> a
    after that, after every reply those frames caused.
    """
    for src, dst in ((a, b), (b, a)):
        rx = dst.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = src.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rx.bind((dst.ipv4, MARKER_PORT))
            rx.settimeout(timeout)
            tx.sendto(b"m", (dst.ipv4, MARKER_PORT))
            rx.recv(1)
        finally:
            tx.close()
            rx.close()
