"""The kernel side as one Python object: a thin wrapper over native/fc_native.c.

FlowKernel loads the programs with their map sizes, attaches them to
interfaces, swaps-and-drains the flow map into numpy batches, consumes the
ring buffer and reads the kernel counters. Every native call goes through
errors.check().
"""
from dataclasses import dataclass

import numpy as np

from flowcollect import records
from flowcollect.errors import check
from flowcollect.native import ffi, lib
from flowcollect.privileges import require_kernel_privileges

DIRECTION_MASKS = {
    "ingress": lib.FC_TRACE_INGRESS,
    "egress": lib.FC_TRACE_EGRESS,
    "both": lib.FC_TRACE_BOTH,
}
DEFAULT_RINGBUF_BYTES = 1 << 22
RINGBUF_BATCH = 4096


@dataclass(frozen=True)
class Capabilities:
    batch_ops: bool
    ringbuf: bool
    map_in_map: bool


@dataclass(frozen=True)
class DrainStats:
    swap_ns: int
    drain_ns: int
    batches: int
    used_batch_ops: bool


def probe_capabilities():
    require_kernel_privileges()
    caps = ffi.new("__u32 *")
    check(lib.fc_probe_capabilities(caps))
    return Capabilities(
        batch_ops=bool(caps[0] & lib.FC_CAP_BATCH_OPS),
        ringbuf=bool(caps[0] & lib.FC_CAP_RINGBUF),
        map_in_map=bool(caps[0] & lib.FC_CAP_MAP_IN_MAP),
    )


def _rows(batch):
    """A cffi pointer to the rows of a FLOW_RECORD array, without a copy."""
    if batch.dtype != records.FLOW_RECORD or not batch.flags.c_contiguous:
        raise ValueError("expected a C-contiguous array of records.FLOW_RECORD")
    return ffi.cast("struct fc_flow_record *", ffi.from_buffer(batch, require_writable=True))


class FlowKernel:
    """Loaded BPF programs and maps. Use as a context manager, or close().

    The operations keep separate native buffers: swap_and_drain, read_ringbuf
    and counters may run in three threads at once, each from one thread only.
    """

    def __init__(self, max_flows, *, sampling=0, direction="both",
                 ringbuf_bytes=DEFAULT_RINGBUF_BYTES, drain_batch=0, debug=False):
        require_kernel_privileges()
        opts = ffi.new("struct fc_load_opts *", {
            "max_flows": max_flows,
            "ringbuf_bytes": ringbuf_bytes,
            "sampling": sampling,
            "drain_batch": drain_batch,
            "direction_mask": DIRECTION_MASKS[direction],
            "debug": int(debug),
        })
        out = ffi.new("struct fc_agent **")
        check(lib.fc_agent_open(opts, out))
        self._agent = out[0]
        self.max_flows = max_flows
        self.sampling = sampling
        self.direction = direction
        # Reused between calls: fresh pages are slow to touch on these hosts.
        self._drain_rows = records.empty(max_flows)
        self._ring_rows = records.empty(RINGBUF_BATCH)
        self._counters = ffi.new("__u64[]", lib.FC_COUNTER_MAX)
        self._stats = ffi.new("struct fc_drain_stats *")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Detach every filter of ours and free the kernel objects."""
        if self._agent is not None:
            lib.fc_agent_close(self._agent)
            self._agent = None

    def attach(self, ifindex):
        """Attach at TC on ifindex (in this thread's network namespace), beside foreign filters."""
        check(lib.fc_agent_attach(self._agent, ifindex))

    def detach(self, ifindex):
        """Remove our filters from ifindex; foreign qdiscs and filters stay."""
        check(lib.fc_agent_detach(self._agent, ifindex))

    def swap_and_drain(self, out=None):
        """Swap the flow maps and drain the retired one.

        Returns (batch, stats): batch is a view of `out` (default: a buffer
        owned by this object and overwritten by the next call) holding one
        row per flow with the per-CPU values folded.
        """
        rows = self._drain_rows if out is None else out
        n = check(lib.fc_agent_swap_and_drain(self._agent, _rows(rows), len(rows), self._stats))
        s = self._stats
        return rows[:n], DrainStats(s.swap_ns, s.drain_ns, s.batches, bool(s.used_batch_ops))

    def read_ringbuf(self, timeout_ms=0, out=None):
        """Records waiting in the ring buffer (one packet each), up to len(out).

        Waits up to timeout_ms for the first one. The batch is a view of `out`
        (default: a buffer owned by this object, overwritten by the next call).
        """
        rows = self._ring_rows if out is None else out
        n = check(lib.fc_agent_ringbuf_consume(self._agent, _rows(rows), len(rows), timeout_ms))
        return rows[:n]

    def ringbuf_fd(self):
        """An fd that polls readable when ring-buffer records are waiting."""
        return check(lib.fc_agent_ringbuf_epoll_fd(self._agent))

    def counters(self):
        """The kernel counters (enum fc_counter), summed over CPUs, by name."""
        check(lib.fc_agent_read_counters(self._agent, self._counters, lib.FC_COUNTER_MAX))
        return dict(zip(records.COUNTER_NAMES, self._counters))

    def map_fd(self, which):
        return check(lib.fc_agent_map_fd(self._agent, which))

    def prog_fd(self, which):
        return check(lib.fc_agent_prog_fd(self._agent, which))


def fold_percpu(percpu):
    """Fold one flow's per-CPU metrics (a FLOW_METRICS array) with the native fold."""
    percpu = np.ascontiguousarray(percpu, dtype=records.FLOW_METRICS)
    out = np.zeros(1, dtype=records.FLOW_METRICS)
    lib.fc_fold_percpu(
        ffi.cast("struct fc_flow_metrics *", ffi.from_buffer(percpu)),
        len(percpu),
        ffi.cast("struct fc_flow_metrics *", ffi.from_buffer(out, require_writable=True)),
    )
    return out[0]
