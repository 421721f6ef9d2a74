"""The agent's own metrics: defined here once, updated by the collector and the workers.

Processes. The agent is one collector and N workers (docs/architecture.md), and every one
of them counts something. prometheus_client's multiprocess mode merges them:
each process writes its counters to memory-mapped files in one directory,
and a scrape of the collector's /metrics reads and sums all of them. So:

- the agent calls enable_multiprocess() in the parent before it starts any
  process (the directory is private to the agent: created 0700 in the temp
  dir, removed at exit by remove_multiprocess_directory());
- each process simply calls the functions below;
- the collector serves /metrics and /healthz (server.py), which first
  declares the collector's labelled counters at zero (declare());
- the supervisor calls process_exited(pid) for a worker that died: its
  counters stay (they are totals; the restarted worker adds to them), its
  live gauges go.

An agent without --metrics-address counts nothing: until enable_multiprocess()
(in this process or, through the environment, in its parent) or a call of
metrics(), the functions below return at once, and prometheus_client, ~8 MiB
of every process's memory with what it imports, is never imported. After
metrics() alone the same calls count in one process (tests) with
prometheus_client's default in-memory values. Metric objects are created on
first use, after the mode is chosen.

Every counter is present from the first scrape, at zero, with every label
value known at start: each loss cause, each eviction reason, each configured
output. An alert on rate() or increase() needs the series before the first
event, and a series that appears with its first loss hides that loss from
increase().

Kernel counters arrive as totals since the BPF program was loaded;
kernel_counters() turns them into increments, so a scrape shows counters.
"""
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping

from flowcollect.pipeline.sources import DrainStats
from flowcollect.records.tally import LOSS_CAUSES
from flowcollect.transport import wire

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EVICTION_REASONS = ("timer", "map_filling", "map_full", "ring_buffer", "shutdown")


def zmq_label(topic_name: str) -> str:
    """The `output` label of one zmq topic (transport/wire.py TOPICS: binary, json)."""
    return f"zmq_{topic_name}"


ZMQ_OUTPUT_LABELS = tuple(zmq_label(name) for name in wire.TOPICS)
DRAIN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Kernel counters (records/layout.py COUNTER_NAMES) -> (metric name, help).
KERNEL_COUNTERS = {
    "packets_seen": ("flowcollect_kernel_packets_total", "Frames seen by the TC programs (a GSO packet: its segments)"),
    "sampled_out": ("flowcollect_kernel_sampled_out_packets_total", "Frames skipped by sampling"),
    "parse_failed": ("flowcollect_kernel_parse_failures_total", "Packets whose headers could not be parsed"),
    "map_insert_failed": ("flowcollect_kernel_map_insert_failures_total",
                          "New flows the flow table refused, past its cap or the overflow map's (sent through the "
                          "ring buffer)"),
    "overflow_packets": ("flowcollect_kernel_overflow_packets_total",
                         "Frames counted in the flow table's overflow map: their flow's bucket was full"),
    "ringbuf_submitted": ("flowcollect_ringbuf_records_total", "One-packet flows sent through the ring buffer"),
    "lost_bytes": ("flowcollect_lost_bytes_total", "Bytes of the packets lost in the kernel (ring_buffer_full)"),
}
# Kernel counters that are losses of the ledger: counted in flowcollect_lost_packets_total{cause}.
KERNEL_LOSSES = {"ringbuf_reserve_failed": "ring_buffer_full", "no_flow_map": "no_flow_map"}


def enable_multiprocess(directory: str | None = None) -> str:
    """Switch this process (and the processes it starts) to multiprocess metrics; returns the directory."""
    from prometheus_client import values
    if _metrics is not None and not _metrics.multiprocess:
        raise RuntimeError("enable_multiprocess() must come before the first metric is updated")
    directory = directory or tempfile.mkdtemp(prefix="flowcollect-metrics-")  # mode 0700
    os.environ[MULTIPROC_ENV] = directory
    # prometheus_client picks its value store when it is imported: choose again now that the variable is set.
    values.ValueClass = values.get_value_class()
    return directory


def remove_multiprocess_directory(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def process_exited(pid: int) -> None:
    """A worker died: drop its live gauges (its counters stay in the totals)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


class _Metrics:
    def __init__(self) -> None:
        import prometheus_client
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        counter, gauge, histogram = prometheus_client.Counter, prometheus_client.Gauge, prometheus_client.Histogram
        self.kernel = {name: counter(metric, text) for name, (metric, text) in KERNEL_COUNTERS.items()}
        self.kernel_last: dict[str, int] = {}
        self.kernel_lock = threading.Lock()
        self.evicted = counter("flowcollect_evicted_flows_total", "Flows evicted from the kernel, by reason",
                               ["reason"])
        for reason in EVICTION_REASONS:
            self.evicted.labels(reason)
        self.drain = histogram("flowcollect_drain_duration_seconds",
                               "Time of one swap-and-drain of the kernel flow map", buckets=DRAIN_BUCKETS)
        self.map_fill = gauge("flowcollect_map_fill_ratio",
                              "Flows in the flow table half at the last drain / the flows it could hold (its caps)",
                              multiprocess_mode="livemostrecent")
        self.table_bytes = gauge("flowcollect_table_bytes", "Memory of the kernel flow table's two halves",
                                 multiprocess_mode="livemostrecent")
        self.table_flow_cap = gauge("flowcollect_table_flow_cap",
                                    "Flows the active half of the kernel flow table can hold, all CPUs together",
                                    multiprocess_mode="livemostrecent")
        self.table_resizes = counter("flowcollect_table_resizes_total",
                                     "CPU regions of the flow table made larger (it filled, overflowed or refused "
                                     "flows) or smaller (quiet), by direction", ["direction"])
        for direction in ("grow", "shrink"):
            self.table_resizes.labels(direction)
        self.dedup_dropped = counter("flowcollect_dedup_dropped_flows_total",
                                     "Flows dropped as duplicates seen on another interface")
        self.lost_packets = counter("flowcollect_lost_packets_total",
                                    "Packets that reached no output, by cause (docs/records.md, the ledger)", ["cause"])
        self.lost_flows = counter("flowcollect_lost_flows_total",
                                  "Flows that reached no output, by cause (kernel losses have no flows)", ["cause"])
        for cause in LOSS_CAUSES:
            self.lost_packets.labels(cause)
            self.lost_flows.labels(cause)
        self.exported = counter("flowcollect_exported_flows_total", "Flows an output took", ["output"])
        self.exported_packets = counter("flowcollect_exported_packets_total", "Packets of the flows an output took",
                                        ["output"])
        self.export_errors = counter("flowcollect_export_errors_total", "Failed writes or sends, by output", ["output"])
        self.worker_restarts = counter("flowcollect_worker_restarts_total", "Worker processes restarted after a crash")
        self.workers_silenced = counter("flowcollect_workers_silenced_total",
                                        "Workers killed (then restarted) for sending no status: stopped or hung")
        self.reattached = counter("flowcollect_reattached_total",
                                  "Attachments of ours someone removed, put back by the agent")
        self.capped_flows = counter(
            "flowcollect_flow_series_capped_flows_total",
            "Flows counted in the overflow series because the flow metrics reached their series cap")


_metrics: _Metrics | None = None
_metrics_lock = threading.Lock()


def counting() -> _Metrics | None:
    """The metric objects of this process when it counts (metrics are on, or metrics() was called), else None."""
    if _metrics is None and os.environ.get(MULTIPROC_ENV):
        return metrics()
    return _metrics


def metrics() -> _Metrics:
    """The metric objects of this process, created on first use: from here on, this process counts."""
    global _metrics
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# --- what the collector reports ---

def declare(outputs: Iterable[str]) -> None:
    """In the collector, at start: the counters of each output (output_labels()) at 0, the fill gauge at 0.

    The gauge is set here, in the collector only: the most recent value of any process wins.
    """
    m = counting()
    if m is None:
        return
    for output in outputs:
        m.exported.labels(output)
        m.exported_packets.labels(output)
        m.export_errors.labels(output)
    m.map_fill.set(0.0)


def kernel_counters(totals: Mapping[str, int]) -> None:
    """The kernel's counters as totals since load ({layout.COUNTER_NAMES: int}); adds what is new."""
    m = counting()
    if m is None:
        return
    with m.kernel_lock:
        for name, total in totals.items():
            increase = int(total) - m.kernel_last.get(name, 0)
            m.kernel_last[name] = int(total)
            if increase <= 0:
                continue
            if name in KERNEL_LOSSES:
                m.lost_packets.labels(KERNEL_LOSSES[name]).inc(increase)
            elif name in m.kernel:
                m.kernel[name].inc(increase)


def flows_evicted(reason: str, count: int) -> None:
    if reason not in EVICTION_REASONS:
        raise ValueError(f"eviction reason {reason!r}: one of {', '.join(EVICTION_REASONS)}")
    m = counting()
    if m is not None:
        m.evicted.labels(reason).inc(count)


def drain_finished(stats: DrainStats, flows: int) -> None:
    """One swap-and-drain (its cost and the table it left, stats) found `flows`."""
    m = counting()
    if m is None:
        return
    m.drain.observe((stats.swap_ns + stats.drain_ns) / 1e9)
    m.map_fill.set(flows / stats.flow_cap if stats.flow_cap else 0.0)
    m.table_bytes.set(stats.table_bytes)
    m.table_flow_cap.set(stats.next_flow_cap)
    if stats.grown:
        m.table_resizes.labels("grow").inc(stats.grown)
    if stats.shrunk:
        m.table_resizes.labels("shrink").inc(stats.shrunk)


def worker_restarted() -> None:
    m = counting()
    if m is not None:
        m.worker_restarts.inc()


def worker_silenced() -> None:
    m = counting()
    if m is not None:
        m.workers_silenced.inc()


def reattached(count: int) -> None:
    m = counting()
    if m is not None:
        m.reattached.inc(count)


# --- what the workers report ---

def dedup_dropped(count: int) -> None:
    m = counting()
    if m is not None:
        m.dedup_dropped.inc(count)


def lost(cause: str, flows: int, packets: int) -> None:
    """Flows that reached no output, for one of records/tally.py LOSS_CAUSES (any process)."""
    if cause not in LOSS_CAUSES:
        raise ValueError(f"loss cause {cause!r}: one of {', '.join(LOSS_CAUSES)}")
    m = counting()
    if m is None:
        return
    m.lost_flows.labels(cause).inc(flows)
    m.lost_packets.labels(cause).inc(packets)


def output_labels(kinds: Iterable[str]) -> list[str]:
    """The `output` labels the sinks of these output kinds count under: the kind (jsonl, ipfix, ...), and
    for zmq each topic (zmq_label(), as export/zmq_publish.py counts them)."""
    labels: list[str] = []
    for kind in kinds:
        for label in ZMQ_OUTPUT_LABELS if kind == "zmq" else () if kind == "none" else (kind,):
            if label not in labels:
                labels.append(label)
    return labels


def exported(output: str, flows: int, packets: int) -> None:
    m = counting()
    if m is None:
        return
    m.exported.labels(output).inc(flows)
    m.exported_packets.labels(output).inc(packets)


def export_error(output: str, count: int = 1) -> None:
    m = counting()
    if m is not None:
        m.export_errors.labels(output).inc(count)


def flows_capped(count: int) -> None:
    m = counting()
    if m is not None:
        m.capped_flows.inc(count)
