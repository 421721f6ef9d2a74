"""What the collector's stages read from: narrow views of the kernel side.

The real source is flowcollect/kernel/flow_kernel.py's FlowKernel; tests pass
fakes (tests/fakes.py) with the same methods.
"""
from typing import Protocol

from flowcollect.records.layout import Rows


class DrainStats(Protocol):
    """What one swap-and-drain cost, and the table it left (kernel/flow_kernel.py DrainStats)."""

    @property
    def swap_ns(self) -> int: ...

    @property
    def drain_ns(self) -> int: ...

    @property
    def table_bytes(self) -> int: ...

    @property
    def flow_cap(self) -> int: ...

    @property
    def next_flow_cap(self) -> int: ...

    @property
    def grown(self) -> int: ...

    @property
    def shrunk(self) -> int: ...


class MapFetcher(Protocol):
    """Swaps the halves of the kernel's flow table and drains the retired one."""

    def drain_flows(self, wall_minus_mono_ns: int, sampling: int) -> tuple[Rows, DrainStats]:
        """FLOW_EXPORT rows in a new array, every CPU's counts folded, times on the wall clock (monotonic +
        wall_minus_mono_ns) and the sampling rate set, as timebase.evicted() makes them; and what it cost."""
        ...

    def table_fill(self) -> float:
        """The largest share of its cap a CPU's region of the active half holds (cheap: polled during floods)."""
        ...


class DropFetcher(Protocol):
    """Swaps the kernel's drop maps (--features drops) and drains the retired one."""

    def swap_and_drain_drops(self) -> Rows:
        """DROP_RECORD rows, per-CPU values folded (a buffer reused by the next call)."""
        ...


class DnsFetcher(Protocol):
    """Swaps the kernel's DNS maps (--features dns) and drains the retired one."""

    def swap_and_drain_dns(self) -> Rows:
        """DNS_RECORD rows, one per query flow (a buffer reused by the next call)."""
        ...


class RttFetcher(Protocol):
    """Swaps the kernel's RTT maps (--features rtt) and drains the retired one."""

    def swap_and_drain_rtt(self) -> Rows:
        """RTT_RECORD rows, one per TCP connection tuple (a buffer reused by the next call)."""
        ...


class RingReader(Protocol):
    """Reads the one-packet records of the kernel's ring buffer."""

    def read_ringbuf(self, timeout_ms: int = 0) -> Rows:
        """FLOW_RECORD rows waiting now (a buffer reused by the next call), waiting up to timeout_ms for one."""
        ...


class Flusher(Protocol):
    """Asks for an early eviction of the kernel map (the map tracer)."""

    def flush(self) -> None: ...
