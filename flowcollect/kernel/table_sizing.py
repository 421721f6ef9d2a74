"""How many flows each CPU may start in the flow table's next half: grown when it filled or refused, shrunk when quiet.

The kernel table (bpf/table.bpf.h) gives every CPU a region of each half,
sized for a cap of flows (native/fc_table.c: 2 x cap slots, a power of two).
At every swap the idle half is laid out again from what the ending half saw,
CPU by CPU:

- grown, x2, when the region reached the fill at which the map tracer swaps
  (FILL_SHARE of its cap), or kept more than OVERFLOW_SHARE of its flows in
  the overflow map (its buckets were crowded); when it refused flows (past
  its cap: they went through the ring buffer), x4 or to twice the flows it
  was asked to start (those it took and those it refused), whichever is
  more, so that a burst into a small region is taken after one swap;
- shrunk, /2, after QUIET_SWAPS swaps in a row that used at most QUIET_SHARE
  of its cap, never below the smallest cap;
- all caps together at most `max_flows` (cache_max_flows; but one flow per
  CPU at least): when growing would pass it, the growing regions share what
  the others leave.

A region's memory moves only when its bucket count does; the caps in between
cost nothing. Runs in the collector (FlowKernel), and in `flowcollect replay`.
"""
from collections.abc import Sequence
from dataclasses import dataclass

FILL_SHARE = 0.5          # the map tracer swaps once a region holds this share of its cap (pipeline/fill_watch.py)
OVERFLOW_SHARE = 0.01     # more flows than this in the overflow map: the region's buckets are crowded
QUIET_SHARE = 1 / 8
QUIET_SWAPS = 4
SMALLEST_CAP = 512        # flows per CPU at load and after a quiet spell: 1,024 slots, 128 KiB a half


@dataclass(frozen=True)
class RegionUse:
    """What one CPU's region of the ending half held (struct fc_table_region)."""

    cap: int
    flows: int
    overflowed: int
    refused: int


def smallest_caps(max_flows: int, ncpus: int) -> list[int]:
    """Each CPU's cap at load: SMALLEST_CAP, or an even share of max_flows when that is less (at least one:
    a region that can start no flow would send all of its CPU's traffic through the ring buffer)."""
    if max_flows >= SMALLEST_CAP * ncpus:
        return [SMALLEST_CAP] * ncpus
    share, rest = divmod(max_flows, ncpus)
    return [max(1, share + (cpu < rest)) for cpu in range(ncpus)]


class TableSizer:
    """The caps of the next half, from what each CPU's region of the ending half held."""

    def __init__(self, max_flows: int, ncpus: int, start_cap: int | None = None) -> None:
        """start_cap: each CPU's cap at load, when not the smallest (a bench that knows its load)."""
        self.max_flows = max_flows
        self.floor = smallest_caps(max_flows, ncpus)
        self.caps = list(self.floor) if start_cap is None else [start_cap] * ncpus
        self._quiet = [0] * ncpus
        self.grown = 0   # regions made larger, since load
        self.shrunk = 0  # regions made smaller, since load

    def next_caps(self, used: Sequence[RegionUse]) -> list[int]:
        """The caps of the half about to become active."""
        wanted = self._bounded([self._wanted(cpu, use) for cpu, use in enumerate(used)])
        self.grown += sum(new > old for new, old in zip(wanted, self.caps, strict=True))
        self.shrunk += sum(new < old for new, old in zip(wanted, self.caps, strict=True))
        self.caps = wanted
        return wanted

    def _wanted(self, cpu: int, use: RegionUse) -> int:
        cap = self.caps[cpu]
        crowded = use.overflowed > OVERFLOW_SHARE * max(use.flows, 1)
        if use.refused:
            self._quiet[cpu] = 0
            # refused counts packets: a bound on the refused flows, exact for a burst of new flows.
            return max(cap * 4, _power_of_two(2 * (use.flows + use.refused)), self.floor[cpu], 1)
        if use.flows >= FILL_SHARE * cap > 0 or crowded:
            self._quiet[cpu] = 0
            return max(cap * 2, 1)
        if use.flows > QUIET_SHARE * cap or cap <= self.floor[cpu]:
            self._quiet[cpu] = 0
            return cap
        self._quiet[cpu] += 1
        if self._quiet[cpu] < QUIET_SWAPS:
            return cap
        self._quiet[cpu] = 0
        return max(cap // 2, self.floor[cpu])

    def _bounded(self, wanted: list[int]) -> list[int]:
        """At most max_flows in all: regions that grow share what the others leave, in proportion."""
        if sum(wanted) <= self.max_flows:
            return wanted
        growing = [cpu for cpu, cap in enumerate(wanted) if cap > self.caps[cpu]]
        kept = sum(cap for cpu, cap in enumerate(wanted) if cpu not in growing)
        room = self.max_flows - kept
        asked = sum(wanted[cpu] for cpu in growing)
        if room >= sum(self.caps[cpu] for cpu in growing):
            for cpu in growing:
                wanted[cpu] = max(self.caps[cpu], room * wanted[cpu] // asked)
            return wanted
        total = sum(wanted)  # even the old caps do not fit: scale every region down, to its floor at least
        return [max(floor, cap * self.max_flows // total) for cap, floor in zip(wanted, self.floor, strict=True)]


def _power_of_two(n: int) -> int:
    """The power of two at or above n (a region's buckets are a power of two: a cap is best one too)."""
    return 1 << max(0, n - 1).bit_length()
