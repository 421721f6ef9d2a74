"""`sub --top`'s data: flows summed per talker over a window of whole evictions, with their rates.

A talker is what one line of the view shows: interface, direction, protocol
(with the ICMP type), source and destination. The same packets seen on two
interfaces, or leaving one and entering another, are two talkers, never one
counted twice. The window is the last `evictions_in_window(period)`
evictions (at least MIN_WINDOW_S, at least MIN_EVICTIONS), so rates are a
whole number of the agent's eviction periods: bytes x 8 / window seconds.
When the records carry the agent's --features fields, each talker also has
the packets the kernel dropped in the window, and the largest RTT and DNS
latency of its flows in the window; the view says which of these it has.
"""
import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flowcollect.subscriber import naming
from flowcollect.subscriber.eviction_clock import EvictionClock

MIN_WINDOW_S = 5.0
MIN_EVICTIONS = 2
FLOW_KEY_FIELDS = ("src_mac", "dst_mac", "eth_protocol", "src_addr", "dst_addr", "src_port", "dst_port",
                   "vlan_id", "if_index", "protocol", "direction", "icmp_type", "icmp_code")
"""The fields of `struct fc_flow_key` (bpf/flow.h): records with the same values are one flow."""
FEATURE_COLUMNS = (("drops", "drop_packets"), ("rtt", "rtt_ns"), ("dns", "dns_latency_ns"))
"""The view's feature columns, and the record field whose presence means the stream carries them."""
SortKey = Literal["bytes", "packets", "flows"]
SORT_KEYS: tuple[SortKey, ...] = ("bytes", "packets", "flows")


@dataclass(frozen=True, order=True)
class Talker:
    interface: str
    direction: str
    protocol: str
    source: str
    destination: str


def talker(record: Mapping[str, Any]) -> Talker:
    """The talker of a JSON flow record (the fields of docs/records.md)."""
    source, destination = naming.endpoints(record)
    return Talker(record["interface"] or f"if{record['if_index']}", record["direction"],
                  naming.protocol_label(record), source, destination)


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class Tally:
    bytes: int = 0
    packets: int = 0
    flows: set[tuple[Any, ...]] = field(default_factory=set)
    drops: int = 0
    rtt_ns: int | None = None  # the largest of the flows', None when none had one
    dns_latency_ns: int | None = None

    def add(self, other: "Tally") -> None:
        self.bytes += other.bytes
        self.packets += other.packets
        self.flows |= other.flows
        self.drops += other.drops
        self.rtt_ns = _larger(self.rtt_ns, other.rtt_ns)
        self.dns_latency_ns = _larger(self.dns_latency_ns, other.dns_latency_ns)

    def add_record(self, record: Mapping[str, Any]) -> None:
        self.bytes += record["bytes"]
        self.packets += record["packets"]
        self.flows.add(tuple(record[f] for f in FLOW_KEY_FIELDS))
        self.drops += record.get("drop_packets", 0)
        self.rtt_ns = _larger(self.rtt_ns, record.get("rtt_ns"))
        self.dns_latency_ns = _larger(self.dns_latency_ns, record.get("dns_latency_ns"))


@dataclass(frozen=True)
class Row:
    talker: Talker
    bytes: int
    packets: int
    flows: int
    bits_per_s: float | None  # None until the eviction period is known
    packets_per_s: float | None
    drops: int = 0
    rtt_ns: int | None = None
    dns_latency_ns: int | None = None


@dataclass(frozen=True)
class View:
    """What the screen shows at one moment."""

    rows: list[Row]  # the first `limit`, in sort order
    talkers: int  # how many there are in the window
    total: Row  # every talker summed (its talker is empty)
    period_s: float | None
    evictions: int  # in the window
    window_s: float | None
    features: tuple[str, ...] = ()  # the FEATURE_COLUMNS the stream carries


def evictions_in_window(period: float) -> int:
    return max(MIN_EVICTIONS, math.ceil(MIN_WINDOW_S / period - 1e-9))


_NOBODY = Talker("", "", "", "", "")


class TopTalkers:
    """Flow records per eviction (one sample each), summed per talker over the window at `now`."""

    def __init__(self, clock: EvictionClock | None = None) -> None:
        self.clock = clock or EvictionClock()
        self._samples: deque[tuple[float, dict[Talker, Tally]]] = deque()  # (eviction time, tallies)
        self._added = 0  # messages added: the sums below are those of (added, latest eviction, period)
        self._sums: tuple[tuple[int, float | None, float | None], dict[Talker, Tally], Tally] | None = None
        self._view: tuple[tuple[Any, ...], View] | None = None
        self.features: tuple[str, ...] = ()

    def add(self, records: Iterable[Mapping[str, Any]], eviction: float) -> None:
        """The records of a message of the eviction at `eviction` (EvictionClock.arrived())."""
        if not self._samples or self._samples[-1][0] != eviction:
            self._samples.append((eviction, {}))
        tallies = self._samples[-1][1]
        self._added += 1
        for record in records:
            tally = tallies.get(key := talker(record))
            if tally is None:
                tally = tallies[key] = Tally()
                if len(self.features) < len(FEATURE_COLUMNS):
                    self.features = tuple(c for c, f in FEATURE_COLUMNS if c in self.features or f in record)
            tally.add_record(record)

    def view(self, now: float, sort: SortKey = "bytes", limit: int | None = None) -> View:
        """The window at `now`: its first `limit` talkers in `sort` order, and its totals."""
        period = self.clock.period
        latest = self.clock.latest_eviction(now)
        evictions, window = len(self._samples), None
        if period is not None and latest is not None:
            evictions = evictions_in_window(period)
            window = evictions * period
        # Refreshed several times a second, the view changes only with a message or an eviction.
        version = (self._added, latest, period, sort, limit, self.features)
        if self._view is not None and self._view[0] == version:
            return self._view[1]
        tallies, total = self._summed(latest, period, window)

        def order(item: tuple[Talker, Tally]) -> tuple[int, int, Talker]:
            key, tally = item
            value = len(tally.flows) if sort == "flows" else getattr(tally, sort)
            return -value, -tally.bytes, key

        ranked = (heapq.nsmallest(limit, tallies.items(), key=order) if limit is not None
                  else sorted(tallies.items(), key=order))
        view = View([_row(key, tally, window) for key, tally in ranked], len(tallies),
                    _row(_NOBODY, total, window), period, evictions, window, self.features)
        self._view = (version, view)
        return view

    def _summed(self, latest: float | None, period: float | None,
                window: float | None) -> tuple[dict[Talker, Tally], Tally]:
        """Tallies per talker and in all over the window (all samples while the period is unknown)."""
        version = (self._added, latest, period)
        if self._sums is not None and self._sums[0] == version:
            return self._sums[1], self._sums[2]
        samples = list(self._samples)
        if period is not None and latest is not None and window is not None:
            # An eviction's flows cover the period before it: a sample is in the window
            # when the middle of that period is (robust to a few ms of jitter either way).
            while self._samples and self._samples[0][0] - period / 2 <= latest - window:
                self._samples.popleft()
            samples = [(t, s) for t, s in self._samples if t - period / 2 <= latest]
        tallies: dict[Talker, Tally] = {}
        for _, sample in samples:
            for key, tally in sample.items():
                if (sum_ := tallies.get(key)) is None:
                    sum_ = tallies[key] = Tally()
                sum_.add(tally)
        total = Tally()
        for tally in tallies.values():
            total.add(tally)
        self._sums = (version, tallies, total)
        return tallies, total


def _row(key: Talker, tally: Tally, window: float | None) -> Row:
    return Row(key, tally.bytes, tally.packets, len(tally.flows),
               tally.bytes * 8 / window if window else None, tally.packets / window if window else None,
               tally.drops, tally.rtt_ns, tally.dns_latency_ns)
