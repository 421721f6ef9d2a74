"""Frames of a capture file (pcap or pcapng, Ethernet), read in chunks for `flowcollect replay`.

Both formats, in either byte order, pcap in micro- or nanoseconds, pcapng
with each interface's own time resolution and offset. A frame cut by the
capture's snap length is padded with zeros to its length on the wire, so its
bytes count as they did on the wire (tshark's frame.len); the headers the
programs parse are within the snap length of any useful capture. pcapng's
enhanced packet flags say a frame's direction (outbound: the egress program);
everything else is ingress. A file that is not a capture, is cut short, or
holds a link type other than Ethernet raises CaptureError with one line.
"""
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from flowcollect.settings.errors import ConfigError

LINKTYPE_ETHERNET = 1
LINKTYPE_NAMES = {0: "BSD loopback", 101: "raw IP", 113: "Linux cooked (tcpdump -i any)", 127: "802.11 radiotap",
                  228: "raw IPv4", 229: "raw IPv6", 276: "Linux cooked v2 (tcpdump -i any)"}
ETH_HLEN = 14
CHUNK_FRAMES = 65536

_PCAP_MAGIC = {0xA1B2C3D4: 1_000, 0xA1B23C4D: 1}  # -> nanoseconds per timestamp unit
_PCAPNG_SHB, _PCAPNG_IDB, _PCAPNG_SPB, _PCAPNG_EPB = 0x0A0D0D0A, 1, 3, 6
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_IF_NAME, _IF_TSRESOL, _IF_TSOFFSET, _EPB_FLAGS = 2, 9, 14, 2
_EPB_OUTBOUND = 2  # epb_flags bits 0-1: 1 inbound, 2 outbound


class CaptureError(ConfigError):
    """The capture cannot be replayed (exit 2): unreadable, not a capture, cut short, not Ethernet."""


@dataclass(frozen=True)
class Interface:
    """One interface of the capture: its name (pcapng if_name, else made from the file's name)."""

    name: str
    ns_per_unit: int = 1_000
    offset_s: int = 0


@dataclass
class Chunk:
    """Up to CHUNK_FRAMES frames, in file order: `data` holds them back to back, each `lengths[i]`
    long from `offsets[i]` (padded to its length on the wire)."""

    data: bytearray
    offsets: npt.NDArray[np.uint64]
    lengths: npt.NDArray[np.uint32]
    tstamps_ns: npt.NDArray[np.uint64]
    egress: npt.NDArray[np.uint32]
    interfaces: npt.NDArray[np.uint32]  # index into Capture.interfaces
    short: int = 0  # frames shorter than an Ethernet header, skipped (the TC hook never sees one)


@dataclass
class Capture:
    """A capture file being read: `interfaces` grows as pcapng describes them."""

    path: str
    interfaces: list[Interface] = field(default_factory=list)

    def chunks(self) -> Iterator[Chunk]:
        """The frames, CHUNK_FRAMES at a time; a CaptureError part way comes after the frames before it."""
        builder = _ChunkBuilder()
        try:
            with open(self.path, "rb") as f:
                head = f.read(4)
                if len(head) < 4:
                    raise self._error("too short to be a capture")
                f.seek(0)
                if struct.unpack("<I", head)[0] == _PCAPNG_SHB:
                    yield from self._pcapng(f, builder)
                else:
                    yield from self._pcap(f, builder)
        except OSError as exc:
            raise CaptureError(f"replay {self.path}: {exc.strerror}") from None
        except CaptureError:
            if builder.count:
                yield builder.take()
            raise
        if builder.count:
            yield builder.take()

    def _error(self, problem: str) -> CaptureError:
        return CaptureError(f"replay {self.path}: {problem}")

    def _stem(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0] or "capture"

    def _check_linktype(self, linktype: int) -> None:
        if linktype != LINKTYPE_ETHERNET:
            name = LINKTYPE_NAMES.get(linktype, "not Ethernet")
            raise self._error(f"link type {linktype} ({name}): only Ethernet captures can be replayed "
                              "(the TC programs parse Ethernet frames)")

    def _read(self, f: BinaryIO, size: int, what: str) -> bytes:
        data = f.read(size)
        if len(data) != size:
            raise self._error(f"cut short in {what} at byte {f.tell()}")
        return data

    # -- pcap ------------------------------------------------------------------------------

    def _pcap(self, f: BinaryIO, builder: "_ChunkBuilder") -> Iterator[Chunk]:
        header = f.read(24)
        for order in "<>":
            magic = struct.unpack(order + "I", header[:4])[0]
            if magic in _PCAP_MAGIC:
                break
        else:
            raise self._error("not a pcap or pcapng capture")
        if len(header) < 24:
            raise self._error("cut short in the file header")
        _major, _minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack(order + "HHiIII", header[4:])
        self._check_linktype(linktype & 0xFFFF)
        self.interfaces.append(Interface(self._stem(), _PCAP_MAGIC[magic]))
        record = struct.Struct(order + "IIII")
        while True:
            head = f.read(record.size)
            if not head:
                break
            if len(head) != record.size:
                raise self._error(f"cut short in a record header at byte {f.tell()}")
            seconds, fraction, caplen, wirelen = record.unpack(head)
            frame = self._read(f, caplen, "a frame")
            builder.add(frame, wirelen, seconds * 1_000_000_000 + fraction * _PCAP_MAGIC[magic], False, 0)
            if builder.full():
                yield builder.take()

    # -- pcapng ----------------------------------------------------------------------------

    def _pcapng(self, f: BinaryIO, builder: "_ChunkBuilder") -> Iterator[Chunk]:
        order = "<"
        section: list[int] = []  # this section's interfaces, as indexes into self.interfaces
        while True:
            head = f.read(8)
            if not head:
                break
            if len(head) != 8:
                raise self._error(f"cut short in a block header at byte {f.tell()}")
            kind = struct.unpack(order + "I", head[:4])[0]
            if kind == _PCAPNG_SHB:  # a new section: its own byte order and interfaces
                magic = self._read(f, 4, "a section header")
                order = "<" if struct.unpack("<I", magic)[0] == _PCAPNG_BYTE_ORDER else ">"
                if struct.unpack(order + "I", magic)[0] != _PCAPNG_BYTE_ORDER:
                    raise self._error("not a pcapng capture (bad byte-order magic)")
                length = struct.unpack(order + "I", head[4:])[0]
                self._read(f, length - 12, "a section header")  # version, section length, options
                section = []
                continue
            length = struct.unpack(order + "I", head[4:])[0]
            if length < 12 or length % 4:
                raise self._error(f"a block of {length} bytes at byte {f.tell() - 8}")
            body = self._read(f, length - 8, "a block")[:-4]  # the trailing length repeats the first
            if kind == _PCAPNG_IDB:
                section.append(self._interface(body, order, len(section)))
            elif kind in (_PCAPNG_EPB, _PCAPNG_SPB):
                self._packet(kind, body, order, section, builder)
                if builder.full():
                    yield builder.take()
            # other blocks (name resolution, statistics, secrets, custom) carry no frames

    def _interface(self, body: bytes, order: str, index: int) -> int:
        linktype = struct.unpack(order + "H", body[:2])[0]
        self._check_linktype(linktype)
        name, ns_per_unit, offset_s = f"{self._stem()}:{index}", 1_000, 0
        for code, value in _options(body[8:], order):
            if code == _IF_NAME:
                name = value.rstrip(b"\0").decode(errors="replace") or name
            elif code == _IF_TSRESOL and value:
                exponent = value[0] & 0x7F
                # ns per unit: 10^-n or 2^-n seconds; finer than a nanosecond rounds to 1 ns
                units_per_s = 2 ** exponent if value[0] & 0x80 else 10 ** exponent
                ns_per_unit = max(1, 1_000_000_000 // units_per_s)
            elif code == _IF_TSOFFSET and len(value) >= 8:
                offset_s = struct.unpack(order + "q", value[:8])[0]
        self.interfaces.append(Interface(name, ns_per_unit, offset_s))
        return len(self.interfaces) - 1

    def _packet(self, kind: int, body: bytes, order: str, section: list[int], builder: "_ChunkBuilder") -> None:
        if kind == _PCAPNG_SPB:  # simple packet: the first interface, no time (the last frame's is kept)
            if not section:
                raise self._error("a packet block before any interface block")
            wirelen = struct.unpack(order + "I", body[:4])[0]
            builder.add(body[4:4 + wirelen], wirelen, builder.last_tstamp, False, section[0])
            return
        if len(body) < 20:
            raise self._error("an enhanced packet block too short for its header")
        interface_id, high, low, caplen, wirelen = struct.unpack(order + "IIIII", body[:20])
        if interface_id >= len(section):
            raise self._error(f"a packet of interface {interface_id}, which no interface block describes")
        if 20 + caplen > len(body):
            raise self._error("an enhanced packet block shorter than its frame")
        egress = False
        for code, value in _options(body[20 + _padded(caplen):], order):
            if code == _EPB_FLAGS and len(value) >= 4:
                egress = struct.unpack(order + "I", value[:4])[0] & 3 == _EPB_OUTBOUND
        interface = self.interfaces[section[interface_id]]
        tstamp = (((high << 32) | low) * interface.ns_per_unit) + interface.offset_s * 1_000_000_000
        builder.add(body[20:20 + caplen], wirelen, tstamp, egress, section[interface_id])


def _padded(size: int) -> int:
    return (size + 3) & ~3


def _options(data: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    """(code, value) of each pcapng option up to opt_endofopt."""
    at = 0
    while at + 4 <= len(data):
        code, size = struct.unpack(order + "HH", data[at:at + 4])
        if code == 0:
            return
        yield code, data[at + 4:at + 4 + size]
        at += 4 + _padded(size)


class _ChunkBuilder:
    def __init__(self) -> None:
        self._reset()
        self.last_tstamp = 0

    def _reset(self) -> None:
        self.data = bytearray()
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        self.tstamps: list[int] = []
        self.egress: list[bool] = []
        self.interfaces: list[int] = []
        self.short = 0

    @property
    def count(self) -> int:
        return len(self.offsets) + self.short

    def full(self) -> bool:
        return len(self.offsets) >= CHUNK_FRAMES

    def add(self, frame: bytes, wirelen: int, tstamp_ns: int, egress: bool, interface: int) -> None:
        self.last_tstamp = tstamp_ns
        length = max(wirelen, len(frame))
        if length < ETH_HLEN:
            self.short += 1
            return
        self.offsets.append(len(self.data))
        self.lengths.append(length)
        self.tstamps.append(tstamp_ns)
        self.egress.append(egress)
        self.interfaces.append(interface)
        self.data += frame
        if length > len(frame):
            self.data += bytes(length - len(frame))

    def take(self) -> Chunk:
        chunk = Chunk(self.data, np.array(self.offsets, dtype=np.uint64), np.array(self.lengths, dtype=np.uint32),
                      np.array(self.tstamps, dtype=np.uint64), np.array(self.egress, dtype=np.uint32),
                      np.array(self.interfaces, dtype=np.uint32), self.short)
        self._reset()
        return chunk
