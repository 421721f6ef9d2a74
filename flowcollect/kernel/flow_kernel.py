"""The kernel side as one Python object: a thin wrapper over native/ (fc_native.h).

FlowKernel loads the programs with their map sizes, attaches them to
interfaces, swaps-and-drains the flow table into numpy batches (sizing the
next half as it goes: table_sizing.py), consumes the ring buffer and reads
the kernel counters. Every native call goes through bindings.check().
"""
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from flowcollect.kernel.bindings import check, ffi, lib
from flowcollect.kernel.features import mask as feature_mask
from flowcollect.kernel.privileges import require_kernel_privileges
from flowcollect.kernel.table_sizing import RegionUse, TableSizer
from flowcollect.records.batch import empty
from flowcollect.records.layout import (
    COUNTER_NAMES,
    DNS_RECORD,
    DROP_RECORD,
    FLOW_EXPORT,
    FLOW_METRICS,
    FLOW_RECORD,
    RTT_RECORD,
)
from flowcollect.settings.model import RINGBUF_DEFAULT_BYTES

DIRECTION_MASKS = {
    "ingress": lib.FC_TRACE_INGRESS,
    "egress": lib.FC_TRACE_EGRESS,
    "both": lib.FC_TRACE_BOTH,
}
ATTACH_MODES = {"auto": lib.FC_ATTACH_AUTO, "tcx": lib.FC_ATTACH_TCX, "tc": lib.FC_ATTACH_TC}
CLOCK_MODES = {"fine": lib.FC_CLOCK_FINE, "tick": lib.FC_CLOCK_TICK}
# The tick rests while the programs run fewer times a second than this (native/fc_clock.c). It saves
# ~25 ns a run (bench/kernel_cost.py) and each of its 2,000 wake-ups a second costs 2-3 us of CPU on
# bare metal, ~26 us in this project's VMs (docs/architecture.md, the clock): 250,000 runs a second is
# where it starts to pay on the former. A bulk TCP stream is ~30,000 runs a second (64-KiB GSO packets).
TICK_MIN_RUNS = 250_000
RINGBUF_BATCH = 4096
# struct fc_replay_frame as numpy sees it, from the C compiler's offsets (native/fc_native.h is its one definition).
_REPLAY_FRAME = np.dtype({
    "names": ["offset", "length", "egress", "tstamp_ns"],
    "formats": [np.uint64, np.uint32, np.uint32, np.uint64],
    "offsets": [ffi.offsetof("struct fc_replay_frame", name) for name in ("offset", "length", "egress", "tstamp_ns")],
    "itemsize": ffi.sizeof("struct fc_replay_frame"),
})


@dataclass(frozen=True)
class DrainStats:
    """What one swap-and-drain cost and found (struct fc_drain_stats), and the table it left."""

    swap_ns: int
    drain_ns: int
    batches: int        # batch syscalls (the overflow map's; 0 when it was empty)
    overflow_rows: int  # rows from the overflow map
    table_bytes: int    # both halves' bucket arrays, after the swap
    flow_cap: int       # flows the drained half could hold, all CPUs together
    next_flow_cap: int  # flows the half now active can hold
    grown: int          # CPU regions the swap made larger (table_sizing.py)
    shrunk: int         # and smaller


def overflow_flows(max_flows: int) -> int:
    """Entries of each half's overflow map: flows whose bucket was full, 0.07 % of them at the fill a region
    has at its cap (docs/architecture.md), so 1/64 leaves twenty times that. A per-CPU hash holds a value for
    every possible CPU in every entry from load on: it is kept small."""
    return max(64, max_flows // 64)


def _rows(batch: np.ndarray) -> Any:
    """A cffi pointer to the rows of a FLOW_RECORD array, without a copy."""
    if batch.dtype != FLOW_RECORD or not batch.flags.c_contiguous:
        raise ValueError("expected a C-contiguous array of layout.FLOW_RECORD")
    return ffi.cast("struct fc_flow_record *", ffi.from_buffer(batch, require_writable=True))


class FlowKernel:
    """Loaded BPF programs and maps. Use as a context manager, or close().

    The operations keep separate native buffers: swap_and_drain, read_ringbuf
    and counters may run in three threads at once, each from one thread only;
    attach, detach, repair and detach_all share the attachments and take a lock.
    """

    def __init__(self, max_flows: int, *, sampling: int = 0, direction: str = "both",
                 ringbuf_bytes: int = RINGBUF_DEFAULT_BYTES, drain_batch: int = 0, debug: bool = False,
                 attach_mode: str = "auto", replay: bool = False, features: tuple[str, ...] = (),
                 start_cap: int | None = None, clock: str = "fine", tick_min_runs: int = TICK_MIN_RUNS) -> None:
        require_kernel_privileges()
        self.ncpus = check(lib.fc_num_possible_cpus())
        self.sizer = TableSizer(max_flows, self.ncpus, start_cap)
        self._next_caps = ffi.new("__u32[]", self.sizer.caps)
        opts = ffi.new("struct fc_load_opts *", {
            "max_flows": max_flows,
            "region_caps": self._next_caps,
            "overflow_flows": overflow_flows(max_flows),
            "ringbuf_bytes": ringbuf_bytes,
            "sampling": sampling,
            "drain_batch": drain_batch,
            "direction_mask": DIRECTION_MASKS[direction],
            "debug": int(debug),
            "attach_mode": ATTACH_MODES[attach_mode],
            "replay": int(replay),
            "clock": CLOCK_MODES[clock],
            "features": feature_mask(features),
            "tick_min_runs": tick_min_runs,
        })
        out = ffi.new("struct fc_agent **")
        check(lib.fc_agent_open(opts, out))
        self._agent = out[0]
        self.max_flows = max_flows
        self.sampling = sampling
        self.direction = direction
        # Reused between calls: fresh pages are slow to touch on these hosts. The drain's rows follow the
        # table's caps (they grow with it), the others are fixed.
        self._drain_rows = empty(sum(self.sizer.caps))
        self._regions = ffi.new("struct fc_table_region[]", self.ncpus)
        self._table_bytes = self._largest_table_bytes = 0
        self._ring_rows = empty(RINGBUF_BATCH)
        self._counters = ffi.new("__u64[]", lib.FC_COUNTER_MAX)
        self._feature_counters = ffi.new("__u64[]", lib.FC_FEATURE_COUNTER_MAX)
        self._drop_rows = empty(max_flows if "drops" in features else 0, DROP_RECORD)
        self._dns_rows = empty(max_flows if "dns" in features else 0, DNS_RECORD)
        self._rtt_rows = empty(max_flows if "rtt" in features else 0, RTT_RECORD)
        self._stats = ffi.new("struct fc_drain_stats *")
        self._attachments = threading.Lock()

    def __enter__(self) -> "FlowKernel":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Detach every filter of ours and free the kernel objects."""
        if self._agent is not None:
            lib.fc_agent_close(self._agent)
            self._agent = None

    def attach(self, ifindex: int) -> None:
        """Attach at TC on ifindex (in this thread's network namespace), beside foreign filters."""
        with self._attachments:
            check(lib.fc_agent_attach(self._agent, ifindex))

    def detach(self, ifindex: int) -> None:
        """Remove our filters from ifindex; foreign qdiscs and filters stay."""
        with self._attachments:
            check(lib.fc_agent_detach(self._agent, ifindex))

    @property
    def attach_mode(self) -> str:
        """"tcx" (links, gone with the process) or "tc" (clsact filters): what auto chose, at load."""
        return "tcx" if lib.fc_agent_attach_mode(self._agent) == lib.FC_ATTACH_TCX else "tc"

    def repair(self) -> int:
        """Put back our attachments someone removed (in this thread's namespace); how many."""
        with self._attachments:
            return check(lib.fc_agent_repair(self._agent))

    def prog_ids(self) -> tuple[int, int]:
        """The kernel's ids of our (ingress, egress) programs."""
        return (check(lib.fc_agent_prog_id(self._agent, lib.FC_PROG_INGRESS)),
                check(lib.fc_agent_prog_id(self._agent, lib.FC_PROG_EGRESS)))

    def detach_all(self) -> None:
        """Remove every filter of ours: from here on nothing is counted (the last drains follow)."""
        with self._attachments:
            lib.fc_agent_detach_all(self._agent)

    def regions(self) -> list[RegionUse]:
        """What each CPU's region of the active half holds so far (read from the mapping: no syscall)."""
        check(lib.fc_agent_table_regions(self._agent, self._regions, self.ncpus))
        return [RegionUse(int(r.cap), int(r.flows), int(r.overflowed), int(r.refused)) for r in self._regions]

    def clock_ticks(self) -> tuple[int, int, int]:
        """The tick (clock="tick", native/fc_clock.c) since load: how many times it wrote the time, the
        latest it did after its due time (ns), how many times it started ticking. Zeros with "fine"."""
        ticks, late, starts = ffi.new("__u64 *"), ffi.new("__u64 *"), ffi.new("__u64 *")
        lib.fc_agent_clock_ticks(self._agent, ticks, late, starts)
        return int(ticks[0]), int(late[0]), int(starts[0])

    def table_summary(self) -> dict[str, int]:
        """The flow table for the stop line: its memory now and at its largest (after a swap), the flows
        the active half can hold, and how often a CPU's region grew or shrank (table_sizing.py)."""
        return {"bytes": self._table_bytes, "largest_bytes": self._largest_table_bytes,
                "flow_cap": sum(self.sizer.caps), "regions_grown": self.sizer.grown,
                "regions_shrunk": self.sizer.shrunk}

    def table_fill(self) -> float:
        """The largest share of its cap a CPU's region of the active half has used (cheap: polled in floods)."""
        return max((use.flows / use.cap if use.cap else float(use.refused > 0) for use in self.regions()),
                   default=0.0)

    def replay(self, data: bytearray, offsets: np.ndarray, lengths: np.ndarray, tstamps_ns: np.ndarray,
               egress: np.ndarray, stop_at_fill: float = 0.0) -> int:
        """Run captured frames through the programs, in order (a FlowKernel made with replay=True: the
        flows' times are the frames' tstamps_ns, epoch ns). Stops early once a CPU's region of the
        active half holds stop_at_fill of its cap (0: never); returns how many frames ran."""
        n = len(offsets)
        frames = ffi.new("struct fc_replay_frame[]", max(1, n))
        view = np.frombuffer(ffi.buffer(frames), dtype=_REPLAY_FRAME, count=n)
        view["offset"], view["length"], view["egress"], view["tstamp_ns"] = offsets, lengths, egress, tstamps_ns
        return check(lib.fc_agent_replay(self._agent, ffi.from_buffer("__u8[]", data), frames, n, stop_at_fill))

    def swap_and_drain(self, out: np.ndarray | None = None) -> tuple[np.ndarray, DrainStats]:
        """Swap the flow table's halves and drain the retired one; the idle half is sized first (table_sizing.py).

        Returns (batch, stats): batch is a view of `out` (default: a buffer
        owned by this object and overwritten by the next call) holding one
        row per flow, its counts on every CPU folded.
        """
        retired_caps = sum(self.sizer.caps)
        grown, shrunk = self.sizer.grown, self.sizer.shrunk
        # Every swap lays the idle half out for the caps (it may still have those of two swaps ago).
        self._next_caps[0:self.ncpus] = self.sizer.next_caps(self.regions())
        if out is None and not retired_caps <= len(self._drain_rows) < 4 * retired_caps:
            # The rows follow the table: larger when it grew, smaller again once it shrank back.
            self._drain_rows = empty(retired_caps)
        rows = self._drain_rows if out is None else out
        n = check(lib.fc_agent_swap_and_drain(self._agent, self._next_caps, _rows(rows), len(rows), self._stats))
        s = self._stats
        self._table_bytes = int(s.table_bytes)
        self._largest_table_bytes = max(self._largest_table_bytes, self._table_bytes)
        return rows[:n], DrainStats(s.swap_ns, s.drain_ns, s.batches, s.overflow_rows, s.table_bytes, retired_caps,
                                    sum(self.sizer.caps), self.sizer.grown - grown, self.sizer.shrunk - shrunk)

    def drain_flows(self, wall_minus_mono_ns: int, sampling: int) -> tuple[np.ndarray, DrainStats]:
        """swap_and_drain(), then the rows as the pipeline passes them on: FLOW_EXPORT rows in a new array, their
        times on the wall clock (monotonic + wall_minus_mono_ns), the sampling rate set (native/fc_table.c
        fc_export_rows: one pass, where numpy's field assignments take several)."""
        drained, stats = self.swap_and_drain()
        flows = np.empty(len(drained), dtype=FLOW_EXPORT)
        lib.fc_export_rows(_rows(drained), len(drained), wall_minus_mono_ns, sampling,
                           ffi.cast("struct fc_flow_export *", ffi.from_buffer(flows, require_writable=True)))
        return flows, stats

    def swap_and_drain_drops(self) -> np.ndarray:
        """Swap the drop maps and drain the retired one (--features drops; else no rows): DROP_RECORD
        rows, per-CPU values folded, in a buffer owned by this object and overwritten by the next call.
        Call it right after swap_and_drain, so that both cover the same period."""
        return self._drain_feature(self._drop_rows, "struct fc_drop_record *", lib.fc_agent_swap_and_drain_drops)

    def swap_and_drain_dns(self) -> np.ndarray:
        """The same for the DNS maps (--features dns): DNS_RECORD rows, one per query flow and period."""
        return self._drain_feature(self._dns_rows, "struct fc_dns_record *", lib.fc_agent_swap_and_drain_dns)

    def swap_and_drain_rtt(self) -> np.ndarray:
        """The same for the RTT maps (--features rtt): RTT_RECORD rows, one per TCP connection tuple."""
        return self._drain_feature(self._rtt_rows, "struct fc_rtt_record *", lib.fc_agent_swap_and_drain_rtt)

    @property
    def rtt_attach(self) -> str:
        """How the RTT program is attached: "fentry", "tracepoint" (tcp_probe), "kprobe", or "" (rtt off)."""
        return str(ffi.string(lib.fc_agent_rtt_attach(self._agent)).decode())

    def _drain_feature(self, out: np.ndarray, ctype: str, swap_and_drain: Any) -> np.ndarray:
        if not len(out):
            return out
        n = check(swap_and_drain(self._agent, ffi.cast(ctype, ffi.from_buffer(out, require_writable=True)), len(out)))
        return out[:n]

    def feature_counters(self) -> dict[str, int]:
        """What the features saw but could not record (enum fc_feature_counter), summed over CPUs."""
        check(lib.fc_agent_read_feature_counters(self._agent, self._feature_counters, lib.FC_FEATURE_COUNTER_MAX))
        return {"drops_unrecorded": int(self._feature_counters[lib.FC_FEATURE_COUNTER_DROPS_UNRECORDED]),
                "dns_unrecorded": int(self._feature_counters[lib.FC_FEATURE_COUNTER_DNS_UNRECORDED]),
                "rtt_unrecorded": int(self._feature_counters[lib.FC_FEATURE_COUNTER_RTT_UNRECORDED])}

    def read_ringbuf(self, timeout_ms: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        """Records waiting in the ring buffer (one packet each), up to len(out).

        Waits up to timeout_ms for the first one. The batch is a view of `out`
        (default: a buffer owned by this object, overwritten by the next call).
        """
        rows = self._ring_rows if out is None else out
        n = check(lib.fc_agent_ringbuf_consume(self._agent, _rows(rows), len(rows), timeout_ms))
        return rows[:n]

    def counters(self) -> dict[str, int]:
        """The kernel counters (enum fc_counter), summed over CPUs, by name."""
        check(lib.fc_agent_read_counters(self._agent, self._counters, lib.FC_COUNTER_MAX))
        return {name: int(value) for name, value in zip(COUNTER_NAMES, self._counters, strict=True)}

    def map_fd(self, which: int) -> int:
        return check(lib.fc_agent_map_fd(self._agent, which))

    def prog_fd(self, which: int) -> int:
        return check(lib.fc_agent_prog_fd(self._agent, which))


def fold_percpu(percpu: np.ndarray) -> np.void:
    """Fold one flow's per-CPU metrics (a FLOW_METRICS array) with the native fold."""
    percpu = np.ascontiguousarray(percpu, dtype=FLOW_METRICS)
    out = np.zeros(1, dtype=FLOW_METRICS)
    lib.fc_fold_percpu(
        ffi.cast("struct fc_flow_metrics *", ffi.from_buffer(percpu)),
        len(percpu),
        ffi.cast("struct fc_flow_metrics *", ffi.from_buffer(out, require_writable=True)),
    )
    folded: np.void = out[0]
    return folded


def tcx_programs(ifindex: int, ingress: bool) -> list[int]:
    """Ids of every program attached with TCX on ifindex (this thread's network namespace), anyone's."""
    ids = ffi.new("__u32[]", 64)
    n = check(lib.fc_tcx_prog_ids(ifindex, int(ingress), ids, 64))
    return [int(ids[i]) for i in range(min(n, 64))]
