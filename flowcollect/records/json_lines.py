"""Flow batches as JSON lines (the fields of docs/records.md): the one JSON encoder of the project.

The same bytes go to JSON-lines files and to the ZeroMQ JSON topic. Each line
is exactly what `orjson.dumps(record, option=OPT_APPEND_NEWLINE)` prints for
the flow's dict, with the keys of FIELDS in that order (tests/test_json_lines.py
keeps that dict-per-flow encoder as the reference).

Why not a dict per flow: one dict with its ~25 int and str objects costs about
1 KB of fresh memory and a few microseconds per flow, so a worker managed
100-200k records/s. Here rows are assembled column by column with numpy:

- Every value becomes text right-aligned in a fixed-width slot, with a length
  per row (or one length for all rows): numbers through digit tables, MACs,
  IPv4 halves and IPv6 hextets through tables of their parts, times through a
  table of the few seconds the rows span; strings (interface names, direction,
  agent IP, the keys) go through orjson once per distinct value, never per row.
- A line is a sequence of parts: key, value, key, value, ... A run of parts
  whose length is the same on every row is fused with the variable-length part
  before it into one chunk, a (rows, width) matrix.
- Each chunk is copied to its place with one numpy scatter of one wide void
  item per row (a stride-1 view of the output), its right edge at the end of
  the part. Text is right-aligned, so the bytes left of a short value are
  junk; chunks are written from the end of the line towards its start, so the
  chunk that owns those bytes overwrites the junk afterwards. The first value
  (time_flow_start_ms, at most 14 characters) sits behind the 22-byte head
  '{"time_flow_start_ms":', so junk never reaches the previous line.
- All of this runs on blocks of rows small enough for the CPU cache: the batch
  rows, chunks and output of a block are touched several times each, and from
  main memory every pass would cost as much as the work. Chunk matrices keep
  their constant text between blocks and calls (first-touch memory is slow on
  these machines).

The output is a fresh numpy buffer (large, so the kernel backs it with huge
pages; sized for the longest possible lines, only the pages written are ever
touched) returned as a memoryview: copying it into a bytes object would cost
a third of the encoding.
"""
import threading
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import (
    DIRECTION_NAMES,
    DNS_ANSWERED,
    DNS_RCODE_NAMES,
    ETH_P_IP,
    ETH_P_IPV6,
    FC_DNS_NAME_LEN,
    FLOW_EXPORT,
    TCP_STATE_NAMES,
)

FIELDS = (
    "time_flow_start_ms", "time_flow_end_ms", "time_flow_start", "time_flow_end",
    "interface", "if_index", "direction", "src_mac", "dst_mac", "eth_protocol",
    "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "icmp_type", "icmp_code",
    "vlan_id", "packets", "bytes", "tcp_flags", "dscp", "sampling", "agent_ip", "duplicate",
)
# Fields each --features adds after FIELDS, in this order, on every record of an agent with it on.
FEATURE_FIELDS = {
    "drops": ("drop_packets", "drop_bytes", "drop_cause", "drop_tcp_state"),
    "rtt": ("rtt_ns", "handshake_rtt_ns"),
    "dns": ("dns_id", "dns_name", "dns_rcode", "dns_latency_ns", "dns_unanswered"),
}
NUMBER_FIELDS = ("if_index", "eth_protocol", "src_port", "dst_port", "protocol", "icmp_type", "icmp_code",
                 "vlan_id", "packets", "bytes", "tcp_flags", "dscp", "sampling", "drop_packets", "drop_bytes",
                 "dns_id", "dns_latency_ns", "dns_unanswered", "rtt_ns", "handshake_rtt_ns")
BLOCK_ROWS = 8192  # rows per block: measured best here (smaller: numpy call overhead; larger: cache misses)
_U8 = np.uint8

# numpy types the fields of structured arrays, and most of what is computed from them, as Any:
# the arrays of this module are typed by shape and dtype in their docstrings instead.
Array = npt.NDArray[Any]
Bytes = npt.NDArray[np.uint8]
"""A (rows, width) uint8 view of the output: one part's slot on each row."""
Fill = Callable[[Bytes], None]
Signature = tuple[tuple[int, bytes | None], ...]
"""The widths and constant texts of a chunk's parts: what its cached matrix depends on."""


# --- right-aligned text in words ---
#
# Tables hold text right-aligned in 8- or 16-byte items: numpy gathers items of
# a power-of-two size several times faster than odd-sized ones. Slots in a
# chunk are odd-sized, so values are copied as void items of the slot's width
# cut from the tail of each word.

def _right_aligned(texts: Sequence[bytes], item: int = 8) -> tuple[Array, Array]:
    """Byte strings right-aligned in `item`-byte rows of uint64 words, and their lengths."""
    padded = np.char.rjust(np.array(texts, dtype=f"S{item}"), item)
    return padded.view(np.uint64).reshape(len(texts), item // 8), np.array([len(t) for t in texts], dtype=np.int64)


def _tail(words: Array, width: int) -> Array:
    """The last `width` bytes of each row's text as void items; a row is the last axis (or one item of a 1-D array)."""
    raw = (words[:, None] if words.ndim == 1 else words).view(_U8)
    return raw[..., raw.shape[-1] - width:].view(f"V{width}")[..., 0]


def _slot(dest: Bytes) -> Array:
    """A (rows, width) uint8 view with contiguous rows, as one void item per row."""
    return dest.view(f"V{dest.shape[-1]}")[..., 0]


def _digit_count(value: int) -> int:
    return len(str(abs(int(value))))


@cache
def _decimal_small() -> tuple[Array, Array]:
    """Digits of 0..65535 right-aligned in uint64 words (text in the last 5 bytes), and their lengths."""
    words, lengths = _right_aligned([b"%d" % i for i in range(1 << 16)])
    return words[:, 0], lengths


@cache
def _decimal_groups() -> Array:
    """Four zero-padded digits of 0..9999 as uint32 words."""
    return np.array([b"%04d" % i for i in range(10_000)], dtype="S4").view(np.uint32)


# Tables of octet pairs are indexed by the pair read as a little-endian uint16
# (first octet in the low byte): reading columns byte-swapped costs more than the rest.

@cache
def _mac_pairs() -> Array:
    """'aa:bb:' for every pair of MAC octets (the last 6 bytes of a uint64 word)."""
    words, _ = _right_aligned([b"%02x:%02x:" % (i & 255, i >> 8) for i in range(1 << 16)])
    return words[:, 0]


@cache
def _ipv4_halves() -> tuple[Array, Array, Array, Array]:
    """'"a.b' (uint64 words) and '.c.d"' (16-byte void items) for every pair of IPv4 octets."""
    octets = [b"%d" % i for i in range(256)]
    pairs = [(octets[i & 255], octets[i >> 8]) for i in range(1 << 16)]
    high, high_len = _right_aligned([b'"' + a + b"." + b for a, b in pairs])
    low, low_len = _right_aligned([b"." + a + b"." + b + b'"' for a, b in pairs], 16)
    return high[:, 0], high_len, low.view("V16")[:, 0], low_len


@cache
def _milliseconds() -> tuple[Array, Array]:
    """'mmm' and 'mmmZ"' for 0..999, right-aligned in uint64 words."""
    digits, _ = _right_aligned([b"%03d" % i for i in range(1000)])
    iso, _ = _right_aligned([b'%03dZ"' % i for i in range(1000)])
    return digits[:, 0], iso[:, 0]


# --- parts ---

class Part:
    """The text of one value (or constant) of every line, right-aligned in `width` bytes.

    lengths: an int when every row has the same length, else an int64 array.
    template: `width` bytes every row shares (kept in the cached chunk), or None.
    fill(dest): writes the part into dest, a (rows, width) uint8 view.
    rows: None when the part is on every row, else the sorted rows it is on
        (lengths and fill then cover those rows only).
    """

    __slots__ = ("fill", "lengths", "rows", "template", "width")

    def __init__(self, width: int, lengths: int | Array, template: bytes | None = None, fill: Fill | None = None,
                 rows: Array | None = None) -> None:
        self.width, self.lengths, self.template, self.fill, self.rows = width, lengths, template, fill, rows

    @classmethod
    def constant(cls, text: bytes) -> "Part":
        return cls(len(text), len(text), template=text)

    @classmethod
    def varying(cls, lengths: Array, fill_of_width: Callable[[int], Fill]) -> "Part":
        """A part whose slot is as wide as its longest row; one int length when all rows agree."""
        low, high = (int(lengths.min()), int(lengths.max())) if len(lengths) else (0, 0)
        return cls(high, high if low == high else lengths, fill=fill_of_width(high))

    @property
    def fixed(self) -> bool:
        """Same length on every row, filling the slot: it can be fused into a chunk."""
        return self.rows is None and not isinstance(self.lengths, np.ndarray) and self.lengths == self.width


def _copy_words(words: Array) -> Callable[[int], Fill]:
    """fill() factory copying the tail of each row's words."""
    words = np.ascontiguousarray(words)

    def of_width(width: int) -> Fill:
        def fill(dest: Bytes) -> None:
            _slot(dest)[:] = _tail(words, width)
        return fill

    return of_width


def _number_part(values: Array) -> Part:
    """Decimal text of an integer column (negative values too: times before 1970)."""
    low, high = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    if low == high:  # one value (vlan 0, sampling...): its text sits in the cached chunk
        return Part.constant(b"%d" % low)
    if low < 0:
        return _negative_number_part(values)
    width = _digit_count(high)
    same = _digit_count(low) == width  # then every value between has that many digits too
    if high < (1 << 16):
        words, lengths = _decimal_small()
        index = values.astype(np.intp)

        def fill(dest: Bytes) -> None:
            _slot(dest)[:] = _tail(words[index], width)

        return Part(width, width if same else lengths[index], fill=fill)
    groups, lengths = _digit_groups(values.astype(np.uint64), width)
    return Part(width, width if same else lengths, fill=_groups_fill(groups, width))


def _digit_groups(values: Array, width: int) -> tuple[list[Array], Array]:
    """Groups of four decimal digits (least significant first) of uint64 values, and the digit counts."""
    _, small_lengths = _decimal_small()
    groups: list[Array] = []
    rest, lengths = values, None
    for k in range(-(-width // 4)):
        quotient = rest // 10_000  # // by a constant is fast in numpy; % is not
        groups.append((rest - quotient * 10_000).astype(np.intp))
        # The most significant non-zero group sets the count: 4 per lower group plus its own digits.
        top = 4 * k + small_lengths[np.minimum(rest, 9_999).astype(np.intp)]
        lengths = top if lengths is None else np.where(rest > 0, top, lengths)
        rest = quotient
    assert lengths is not None, "width is at least one digit"
    return groups, lengths


def _groups_fill(groups: list[Array], width: int) -> Fill:
    table = _decimal_groups()
    count = len(groups)

    def fill(dest: Bytes) -> None:
        words = np.empty((len(dest), count), dtype=np.uint32)
        for k, group in enumerate(groups):
            words[:, count - 1 - k] = table[group]
        _slot(dest)[:] = _tail(words, width)

    return fill


def _negative_number_part(values: Array) -> Part:
    negative = values < 0
    magnitude = np.where(negative, (-(values + 1)).astype(np.uint64) + np.uint64(1), values.astype(np.uint64))
    width = _digit_count(int(magnitude.max())) + 1
    groups, lengths = _digit_groups(magnitude, width)
    if 4 * len(groups) < width:  # the sign needs a byte the digit groups do not cover
        groups.append(np.zeros(len(values), dtype=np.intp))
    lengths = lengths + negative
    digits = _groups_fill(groups, width)
    signed = np.flatnonzero(negative)

    def fill(dest: Bytes) -> None:
        digits(dest)
        dest[signed, width - lengths[signed]] = ord("-")

    return Part(width, lengths, fill=fill)


class _TextTable:
    """A few distinct JSON texts (orjson output), chosen per row by an index."""

    def __init__(self, texts: Sequence[bytes]) -> None:
        longest = max(len(t) for t in texts)
        item = 8 if longest <= 8 else 16 * -(-longest // 16)
        words, self.lengths = _right_aligned(texts, item)
        self.words = words.view(f"V{item}")[:, 0]  # gathering 1-D items is faster than rows

    def part(self, index: Array) -> Part:
        return Part.varying(self.lengths[index], _copy_words(self.words[index]))


@cache
def _direction_texts() -> _TextTable:
    return _TextTable([orjson.dumps(DIRECTION_NAMES.get(d, str(d))) for d in range(256)])


@cache
def _duplicate_texts() -> _TextTable:
    return _TextTable([b"false"] + [b"true"] * 255)


# --- times ---

def _time_parts(ns: Array) -> tuple[Part, Part]:
    """(epoch milliseconds, ISO 8601 text) parts of an int64 nanosecond column.

    Rows span a few seconds of wall time: every text that depends on the
    second is made once per second of that span, then gathered per row.
    """
    n = len(ns)
    ms = ns // 1_000_000
    seconds = ms // 1000
    millis = (ms - seconds * 1000).astype(np.intp)
    first, last = int(seconds.min()), int(seconds.max())
    if last - first < n:
        index = (seconds - first).astype(np.intp)
        prefixes, second_words = _span_texts(first, last)
    else:
        index = np.arange(n)
        prefixes, second_words = _second_texts(seconds)
    digit_words, iso_words = _milliseconds()

    def iso_fill(dest: Bytes) -> None:
        _slot(dest[:, :21])[:] = _tail(prefixes[index], 21)
        _slot(dest[:, 21:])[:] = _tail(iso_words[millis], 5)

    iso = Part(26, 26, fill=iso_fill)
    if not (first >= 10**9 and last < 10**10):
        return _number_part(ms), iso
    # From 2001-09-09 to 2286: ten digits of seconds, then three of milliseconds.
    def ms_fill(dest: Bytes) -> None:
        _slot(dest[:, :10])[:] = _tail(second_words[index], 10)
        _slot(dest[:, 10:])[:] = _tail(digit_words[millis], 3)

    return Part(13, 13, fill=ms_fill), iso


@lru_cache(maxsize=16)
def _span_texts(first: int, last: int) -> tuple[Array, Array]:
    """_second_texts of every second from first to last: the blocks of a batch share them."""
    return _second_texts(np.arange(first, last + 1, dtype=np.int64))


def _second_texts(seconds: Array) -> tuple[Array, Array]:
    """'"YYYY-MM-DDTHH:MM:SS.' ((len, 4) uint64 words) and the decimal digits ((len, 3) uint32) of epoch seconds."""
    groups, _ = _digit_groups(np.abs(seconds).astype(np.uint64), 12)
    digits = np.empty((len(seconds), 3), dtype=np.uint32)
    for k, group in enumerate(groups):
        digits[:, 2 - k] = _decimal_groups()[group]
    return _iso_prefixes(seconds), digits


def _iso_prefixes(seconds: Array) -> Array:
    """'"YYYY-MM-DDTHH:MM:SS.' for epoch seconds, right-aligned in (len, 4) uint64 words.

    Days to dates by H. Hinnant's civil_from_days (proleptic Gregorian); int64
    nanosecond times always fall within years 1677-2262: four-digit years.
    """
    days = seconds // 86_400
    in_day = seconds - days * 86_400
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    hour, minute, second = in_day // 3600, in_day // 60 % 60, in_day % 60
    digits = _decimal_groups().view(_U8).reshape(-1, 4)
    out = np.zeros((len(seconds), 32), dtype=_U8)
    text = out[:, 11:]
    text[:, 0] = ord('"')
    text[:, 1:5] = digits[year]
    for start, values in ((6, month), (9, day), (12, hour), (15, minute), (18, second)):
        text[:, start:start + 2] = digits[values][:, 2:]
    text[:, [5, 8]] = ord("-")
    text[:, 11] = ord("T")
    text[:, [14, 17]] = ord(":")
    text[:, 20] = ord(".")
    return out.view(np.uint64)


# --- MACs and addresses ---

def _mac_part(column: Array) -> Part:
    """'"aa:bb:cc:dd:ee:ff"' (19 bytes) from (n, 6) octets."""
    words = _mac_pairs()[column.view("<u2").astype(np.intp)]  # (n, 3) words ending in 'aa:bb:'

    def fill(dest: Bytes) -> None:
        _slot(dest[:, 1:19].reshape(-1, 3, 6))[:] = _tail(words[..., None], 6)
        dest[:, 18] = ord('"')  # the last ':' closes the string

    return Part(19, 19, template=b'"' + bytes(18), fill=fill)


def _address_parts(column: Array, is_ip: Array) -> list[Part]:
    """Parts of src_addr/dst_addr: quoted dotted quad, quoted RFC 5952 IPv6 text, or null.

    On IPv6 rows, four 16-byte pieces of two hextets each; on IPv4 rows an
    opening '"a.b' (a zero-length part elsewhere); on every row a closing part:
    '.c.d"' (IPv4), '"', '::"' or '"::"' (IPv6), 'null' (not IP).
    """
    words = column.view("<u8")  # (n, 2); IPv4-mapped: 0, then bytes 00 00 ff ff a b c d
    v4 = is_ip & (words[:, 0] == 0) & ((words[:, 1] & np.uint64(0xFFFFFFFF)) == np.uint64(0xFFFF0000))
    v6 = np.flatnonzero(is_ip & ~v4)
    high_words, high_len, low_words, low_len = _ipv4_halves()
    quad = (words[:, 1] >> np.uint64(32)).astype(np.intp)
    high, low = quad & 0xFFFF, quad >> 16
    closing = low_words[low]
    closing_lengths = np.where(v4, low_len[low], 4)
    closing[~is_ip] = _NULL
    parts: list[Part] = []
    if len(v6):
        pieces, piece_lengths, closing_text, closing_len = _ipv6_pieces(column[v6])
        closing[v6] = closing_text
        closing_lengths[v6] = closing_len
        parts = [Part(16, piece_lengths[i], fill=_copy_words(pieces[i])(16), rows=v6) for i in range(4)]
    if v4.any():
        parts.append(Part(8, np.where(v4, high_len[high], 0), fill=_copy_words(high_words[high])(8)))
    parts.append(Part.varying(closing_lengths, _copy_words(closing)))
    return parts


_NULL = np.frombuffer(b" " * 12 + b"null", dtype="V16")[0]
_NO_PREFIX, _COLON, _QUOTE, _DOUBLE_COLON, _QUOTE_DOUBLE_COLON = range(5)
_EMPTY_HEXTET = 1 << 16  # the hextet index whose text is empty: zeros inside the '::' run
_ZERO_BITS = np.uint64(0x0102040810204080)  # multiplier gathering the low bits of 8 bytes in the top byte


@cache
def _ipv6_tables() -> tuple[Array, Array, Array, Array, Array, Array]:
    """Tables that turn an address into its text pieces with two lookups.

    offsets[mask], for each of the 256 patterns of zero hextets: per hextet,
    the offset of its piece in `pieces` (prefix code * 65537, plus
    _EMPTY_HEXTET inside the '::' run); closing_kind[mask]: '"', '::"' or '"::"'.
    pieces[offset + hextet]: prefix + hex text, right-aligned in a uint64 word.
    """
    offsets = np.zeros((256, 8), dtype=np.int64)
    closing_kind = np.zeros(256, dtype=np.intp)
    for mask in range(256):
        zero = [(mask >> i) & 1 for i in range(8)]
        best_start, best_len = 0, 0
        for start in range(8):
            length = 0
            while start + length < 8 and zero[start + length]:
                length += 1
            if length > best_len:  # strictly longer: the leftmost of equal runs wins
                best_start, best_len = start, length
        if best_len < 2:  # a lone zero hextet is written "0"
            best_len = 0
        after = best_start + best_len
        for i in range(8):
            if best_len and best_start <= i < after:
                code, hextet = _NO_PREFIX, _EMPTY_HEXTET
            elif best_len and i == after:
                code, hextet = (_QUOTE_DOUBLE_COLON if best_start == 0 else _DOUBLE_COLON), 0
            else:
                code, hextet = (_QUOTE if i == 0 else _COLON), 0
            offsets[mask, i] = code * (_EMPTY_HEXTET + 1) + hextet
        if best_len and after == 8:
            closing_kind[mask] = 2 if best_start == 0 else 1
    prefixes, prefix_len = _right_aligned([b"", b":", b'"', b"::", b'"::'])
    # Indexed by the hextet read little-endian: byte-swapped.
    hexes, hex_len = _right_aligned([b"%x" % ((i & 255) << 8 | i >> 8) for i in range(1 << 16)] + [b""])
    # The prefix goes before the hex digits: shifted right (to lower addresses) by their length.
    pieces = (hexes[:, 0][None, :] | (prefixes[:, 0][:, None] >> (8 * hex_len[None, :]).astype(np.uint64))).ravel()
    piece_len = (prefix_len[:, None] + hex_len[None, :]).ravel().astype(_U8)  # small: stays in cache
    closings, closing_len = _right_aligned([b'"', b'::"', b'"::"'], 16)
    return offsets.view("V64")[:, 0], closing_kind, pieces, piece_len, closings.view("V16")[:, 0], closing_len


def _ipv6_pieces(addresses: Array) -> tuple[Array, Array, Array, Array]:
    """RFC 5952 text of (m, 16) addresses: four (m, 2) word pieces of two hextets each, and the closing.

    Each hextet is written as prefix + hex: ':' ('"' for the first), nothing
    inside the longest run (>= 2, leftmost) of zero hextets, '::' ('"::' at the
    start) for the hextet after that run.
    """
    m = len(addresses)
    offsets, closing_kind, pieces, piece_len, closings, closing_len = _ipv6_tables()
    hextets = addresses.view("<u2").astype(np.int64)  # (m, 8), byte-swapped: the tables are too
    zero = np.ascontiguousarray(hextets == 0).view(np.uint64)[:, 0]
    mask = ((zero * _ZERO_BITS) >> np.uint64(56)).astype(np.intp)
    index = hextets + offsets[mask].view(np.int64).reshape(m, 8)
    words, lengths = pieces[index].T, piece_len[index].T.astype(np.int64)  # (8, m)
    # Two pieces per 16 bytes, (low word, high word): the second right-aligned, the first before it.
    first, second = words[0::2], words[1::2]
    shift = (8 * lengths[1::2]).astype(np.uint64)
    pairs = np.empty((4, m, 2), dtype=np.uint64)
    pairs[:, :, 0] = first << (np.uint64(64) - shift)  # a shift by 64 gives 0 in numpy
    pairs[:, :, 1] = second | (first >> shift)
    kind = closing_kind[mask]
    return pairs, lengths[0::2] + lengths[1::2], closings[kind], closing_len[kind]


# --- lines ---

def _key(name: str, first: bool = False) -> bytes:
    return (b"{" if first else b",") + orjson.dumps(name) + b":"


_KEYS = [_key(name, first=(i == 0)) for i, name in enumerate(FIELDS)]
_END = b"}\n"
_DROP_CAUSE_LONGEST = 64  # names of enum skb_drop_reason are shorter (struct fc_drop_reason.name)


def fields_of(features: Sequence[str]) -> tuple[str, ...]:
    """The keys of every record of a batch whose rows carry `features`, in line order."""
    return FIELDS + tuple(name for feature in FEATURE_FIELDS if feature in features for name in FEATURE_FIELDS[feature])


def _longest_value(field: str) -> int:
    """The most bytes a field's value can take, whatever the row (interface and agent_ip: per batch)."""
    if field in NUMBER_FIELDS:
        return _digit_count(np.iinfo(FLOW_EXPORT[field]).max)
    return {"time_flow_start_ms": 14, "time_flow_end_ms": 14, "time_flow_start": 26, "time_flow_end": 26,
            "interface": 0, "direction": 9, "src_mac": 19, "dst_mac": 19,
            "src_addr": 41, "dst_addr": 41, "agent_ip": 0, "duplicate": 5,
            "drop_cause": _DROP_CAUSE_LONGEST, "drop_tcp_state": 16,
            "dns_name": 2 + 6 * FC_DNS_NAME_LEN, "dns_rcode": 16}[field]  # a name's bytes may be \u00XX escapes


_LONGEST_LINE = len(_END) + sum(len(key) + _longest_value(field) for key, field in zip(_KEYS, FIELDS, strict=True))


@cache
def _rcode_texts() -> _TextTable:
    return _TextTable([orjson.dumps(DNS_RCODE_NAMES.get(r, f"RCODE{r}")) for r in range(256)] + [b"null"])


def _nullable(part: Part, null: Array) -> Part:
    """The part, with `null` on the rows of the mask `null`."""
    if not null.any():
        return part
    width = max(part.width, 4)
    null_rows = np.flatnonzero(null)

    def fill(dest: Bytes) -> None:
        inner = dest[:, width - part.width:]
        if part.fill is not None:
            part.fill(inner)
        elif part.template is not None:
            inner[:] = np.frombuffer(part.template, dtype=_U8)
        dest[null_rows, width - 4:] = np.frombuffer(b"null", dtype=_U8)

    return Part(width, np.where(null, 4, part.lengths), fill=fill)


def _name_part(names: Array, null: Array) -> Part:
    """dns_name: NUL-padded (n, FC_DNS_NAME_LEN) bytes as JSON strings, through orjson once per distinct name."""
    distinct, inverse = np.unique(names.view(f"V{FC_DNS_NAME_LEN}")[:, 0], return_inverse=True)
    texts = [orjson.dumps(bytes(name).rstrip(b"\0").decode("ascii", "backslashreplace")) for name in distinct]
    return _TextTable([*texts, b"null"]).part(np.where(null, len(texts), inverse.reshape(-1)))


@cache
def _tcp_state_texts() -> _TextTable:
    return _TextTable([b"null"] + [orjson.dumps(TCP_STATE_NAMES.get(s, str(s))) for s in range(1, 256)])


class _BatchText:
    """What every block of a batch shares: interface names, agent IP, the longest line."""

    def __init__(self, batch: FlowBatch) -> None:
        known = {i: name for i, name in batch.interface_names.items() if 0 <= i < (1 << 32)}
        self.interfaces = _TextTable([orjson.dumps("")] + [orjson.dumps(name) for name in known.values()])
        # if_index -> code: its position in the table (1-based)
        self.interface_code = {i: code for code, i in enumerate(known, start=1)}
        self.agent_ip = orjson.dumps(batch.agent_ip)
        extra = fields_of(batch.enrichment.features)[len(FIELDS):]
        self.extra_keys = [(_key(name), name) for name in extra]
        self.longest_line = (_LONGEST_LINE + int(self.interfaces.lengths.max()) + len(self.agent_ip)
                             + sum(len(key) + _longest_value(name) for key, name in self.extra_keys))
        # drop_reason -> its position in the table of causes: 0 is null (not dropped).
        reasons = batch.enrichment.drop_reasons
        self.causes = _TextTable([b"null"] + [orjson.dumps(reasons[r][:_DROP_CAUSE_LONGEST - 2]) for r in reasons])
        self.cause_code = {r: code for code, r in enumerate(reasons, start=1)}

    def cause_part(self, flows: Array) -> Part:
        """drop_cause: the kernel's name of the drop reason of dropped flows, null on the others."""
        codes = np.zeros(len(flows), dtype=np.intp)
        dropped = np.flatnonzero(flows["drop_packets"] > 0)
        if len(dropped):
            distinct, inverse = np.unique(flows["drop_reason"][dropped], return_inverse=True)
            known = np.array([self.cause_code.get(int(r), 0) for r in distinct], dtype=np.intp)
            codes[dropped] = known[inverse]
        return self.causes.part(codes)

    def interface_part(self, if_index: Array) -> Part:
        top = int(if_index.max())
        if top < (1 << 20):
            lookup = np.zeros(top + 1, dtype=np.intp)
            for i, code in self.interface_code.items():
                if i <= top:
                    lookup[i] = code
            return self.interfaces.part(lookup[if_index])
        distinct, inverse = np.unique(if_index, return_inverse=True)
        codes = np.array([self.interface_code.get(int(i), 0) for i in distinct], dtype=np.intp)
        return self.interfaces.part(codes[inverse])

    def line_parts(self, flows: Array) -> list[Part]:
        """Every part of the lines of these rows, in line order."""
        eth = flows["eth_protocol"]
        is_ip = (eth == ETH_P_IP) | (eth == ETH_P_IPV6)
        start_ms, start_iso = _time_parts(flows["time_flow_start_ns"])
        end_ms, end_iso = _time_parts(flows["time_flow_end_ns"])
        values = {
            "time_flow_start_ms": [start_ms], "time_flow_end_ms": [end_ms],
            "time_flow_start": [start_iso], "time_flow_end": [end_iso],
            "interface": [self.interface_part(flows["if_index"])],
            "direction": [_direction_texts().part(flows["direction"].astype(np.intp))],
            "src_mac": [_mac_part(flows["src_mac"])], "dst_mac": [_mac_part(flows["dst_mac"])],
            "src_addr": _address_parts(flows["src_ip"], is_ip), "dst_addr": _address_parts(flows["dst_ip"], is_ip),
            "agent_ip": [Part.constant(self.agent_ip)],
            "duplicate": [_duplicate_texts().part(flows["duplicate"].astype(np.intp))],
        }
        extra = {name for _, name in self.extra_keys}
        if "drop_cause" in extra:
            values["drop_cause"] = [self.cause_part(flows)]
            values["drop_tcp_state"] = [_tcp_state_texts().part(flows["drop_tcp_state"].astype(np.intp))]
        if "rtt_ns" in extra:  # null where the flow is not a connection the agent timed
            for name in ("rtt_ns", "handshake_rtt_ns"):
                values[name] = [_nullable(_number_part(flows[name]), flows[name] == 0)]
        if "dns_id" in extra:
            no_dns = flows["dns_flags"] == 0
            unanswered = (flows["dns_flags"] & DNS_ANSWERED) == 0
            values["dns_id"] = [_nullable(_number_part(flows["dns_id"]), no_dns)]
            values["dns_name"] = [_name_part(flows["dns_name"], no_dns | (flows["dns_name"][:, 0] == 0))]
            values["dns_rcode"] = [_rcode_texts().part(np.where(unanswered, 256, flows["dns_rcode"].astype(np.intp)))]
            values["dns_latency_ns"] = [_nullable(_number_part(flows["dns_latency_ns"]), unanswered)]
        parts: list[Part] = []
        for key, name in [*zip(_KEYS, FIELDS, strict=True), *self.extra_keys]:
            parts.append(Part.constant(key))
            parts += values[name] if name in values else [_number_part(flows[name])]
        parts.append(Part.constant(_END))
        return parts


class _Chunk:
    """Parts written by one scatter: a first part, then parts of fixed length."""

    __slots__ = ("fixed_length", "lengths", "parts", "rows", "width")

    def __init__(self, part: Part) -> None:
        self.parts = [part]
        self.width = part.width
        self.rows = part.rows
        lengths = part.lengths
        self.fixed_length = 0 if isinstance(lengths, np.ndarray) else lengths
        self.lengths = lengths if isinstance(lengths, np.ndarray) else None

    def absorb(self, part: Part) -> bool:
        if self.rows is not None or not part.fixed:
            return False
        self.parts.append(part)
        self.width += part.width
        self.fixed_length += part.width
        return True

    def signature(self) -> Signature:
        return tuple((p.width, p.template) for p in self.parts)


def _chunks(parts: list[Part]) -> list["_Chunk"]:
    chunks: list[_Chunk] = []
    for part in parts:
        if not (chunks and chunks[-1].absorb(part)):
            chunks.append(_Chunk(part))
    return chunks


class JsonLinesEncoder:
    """Encodes FlowBatch objects to JSON lines, keeping its chunk buffers between calls.

    Not thread-safe: one encoder per thread (encode_lines keeps one per thread).
    """

    def __init__(self, block_rows: int = BLOCK_ROWS) -> None:
        self.block_rows = block_rows
        # chunk position -> (signature, uint8 matrix with the templates in place)
        self._matrices: dict[int, tuple[Signature, Bytes]] = {}

    def encode(self, batch: FlowBatch) -> memoryview:
        """The batch as JSON lines: a memoryview over a new buffer, one object per flow, each ending in '\\n'."""
        n = len(batch)
        if n == 0:
            return memoryview(b"")
        text = _BatchText(batch)
        out = np.empty(n * text.longest_line, dtype=_U8)
        written = 0
        for lo in range(0, n, self.block_rows):
            written = self._encode_block(text, batch.flows[lo:lo + self.block_rows], out, written)
        return out.data[:written]

    def _encode_block(self, text: _BatchText, flows: Array, out: Bytes, start: int) -> int:
        """Write the lines of `flows` into out from byte `start`; returns where they end."""
        chunks = _chunks(text.line_parts(flows))
        line_lengths = np.full(len(flows), sum(c.fixed_length for c in chunks if c.rows is None), dtype=np.int64)
        for chunk in chunks:
            if chunk.lengths is None:
                continue
            if chunk.rows is not None:
                line_lengths[chunk.rows] += chunk.lengths
            else:
                line_lengths += chunk.lengths
        ends = np.cumsum(line_lengths)
        ends += start
        end = int(ends[-1])
        for position in range(len(chunks) - 1, -1, -1):
            chunk = chunks[position]
            rows = slice(None) if chunk.rows is None else chunk.rows
            matrix = self._matrix(position, chunk, len(chunk.rows) if chunk.rows is not None else len(flows))
            offset = 0
            for part in chunk.parts:
                if part.fill is not None:
                    part.fill(matrix[:, offset:offset + part.width])
                offset += part.width
            width = chunk.width
            # Item i of this view is the `width` bytes of the output that start at byte i.
            items = np.ndarray((end - width + 1,), dtype=f"V{width}", buffer=out, strides=(1,))
            chunk_ends = ends[rows]
            items[chunk_ends - width] = matrix.view(f"V{width}")[:, 0]
            consumed = chunk.fixed_length if chunk.lengths is None else chunk.fixed_length + chunk.lengths
            ends[rows] = chunk_ends - consumed
        return end

    def _matrix(self, position: int, chunk: "_Chunk", rows: int) -> Bytes:
        signature = chunk.signature()
        cached = self._matrices.get(position)
        if cached is None or cached[0] != signature or len(cached[1]) < rows:
            matrix = np.empty((max(rows, self.block_rows), chunk.width), dtype=_U8)
            offset = 0
            for part in chunk.parts:
                if part.template is not None:
                    matrix[:, offset:offset + part.width] = np.frombuffer(part.template, dtype=_U8)
                offset += part.width
            self._matrices[position] = cached = (signature, matrix)
        return cached[1][:rows]


_local = threading.local()


def encode_lines(batch: FlowBatch) -> memoryview:
    """The batch as JSON lines: a bytes-like memoryview, one object per flow, each ending in a newline."""
    encoder = getattr(_local, "encoder", None)
    if encoder is None:
        encoder = _local.encoder = JsonLinesEncoder()
    return encoder.encode(batch)


def records(batch: FlowBatch) -> list[dict[str, Any]]:
    """The batch as a list of dicts with the FIELDS keys: the JSON lines read back, so that
    every consumer of records sees exactly what the JSON outputs carry."""
    return [orjson.loads(line) for line in bytes(encode_lines(batch)).splitlines()]
