"""`flowcollect replay FILE`: the kernel programs and the workers' stages over a capture, in this process.

Every frame runs through the same fc_ingress / fc_egress programs as on a
live interface (BPF_PROG_TEST_RUN, native/fc_replay.c), into a flow table
of its own (test runs are preemptible: a live program must never write the
same table), with the capture's time as the flows' times. Evictions follow
the capture's clock: every cache_active_timeout of capture time, and
whenever a CPU's region of the table is half full, as the live map tracer
does (so the ring buffer, which replay does not read, is never needed); so a
capture and a live run of the same traffic give the same flows. Each capture
interface has its own loaded programs (a lane), since the kernel runs every
test frame on one device; its flows carry the interface's name and an index
of its own (1, 2, ... in the order the capture describes them). The workers'
stages follow (deduper on the capture's clock, decorator), then the outputs;
the last log line is the same ledger as the agent's stop line.
"""
import logging
from dataclasses import dataclass, field

import numpy as np
import zmq

from flowcollect.agent import logs
from flowcollect.agent.ledger import Ledger, describe
from flowcollect.export.ipfix import IpfixOptions
from flowcollect.export.outputs import ExportSpec, Outputs, build_outputs
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.kernel.table_sizing import FILL_SHARE
from flowcollect.pipeline.decorator import Decorator
from flowcollect.pipeline.deduper import Deduper
from flowcollect.pipeline.map_tracer import MapTracer
from flowcollect.records.batch import FlowBatch
from flowcollect.records.capture import Capture, CaptureError, Chunk
from flowcollect.records.layout import COUNTER_NAMES
from flowcollect.records.tally import Tally
from flowcollect.settings.errors import ConfigError
from flowcollect.settings.model import Settings

log = logging.getLogger("flowcollect.replay")
MAX_INTERFACES = 64  # each loads its own programs and maps
REPLAY_OUTPUTS = ("jsonl", "ipfix", "netflow9", "none")


def check_outputs(config: Settings) -> None:
    """ConfigError for an output replay cannot feed: zmq needs the agent's publishing proxy."""
    for output in config.output:
        if output.kind not in REPLAY_OUTPUTS:
            raise ConfigError(f"--output {output}: replay writes to jsonl, ipfix and netflow9 outputs only")


@dataclass
class Lane:
    """One capture interface: its programs and maps, and the tracer that evicts them."""

    if_index: int
    name: str
    kernel: FlowKernel
    tracer: MapTracer


@dataclass
class Replay:
    config: Settings
    agent_ip: str
    outputs: Outputs
    lanes: dict[int, Lane] = field(default_factory=dict)
    evicted: Tally = field(default_factory=Tally)
    deduplicated: Tally = field(default_factory=Tally)
    delivered: Tally = field(default_factory=Tally)
    frames: int = 0
    short: int = 0
    now_ns: int = 0  # the capture's clock: the time of the last frame run

    def __post_init__(self) -> None:
        config = self.config
        deduper = Deduper(config.deduper, config.deduper_expiry, config.deduper_just_mark)
        self.dedup = deduper.batch_filter(clock=lambda: self.now_ns)
        self.decorate = Decorator(self.agent_ip, self._name_of)
        self.period_ns = int(self.config.cache_active_timeout * 1e9)
        self.boundary_ns: int | None = None

    def _name_of(self, if_index: int) -> str:
        lane = self.lanes.get(if_index - 1)
        return lane.name if lane is not None else f"if{if_index}"

    def lane(self, interface: int, name: str) -> Lane:
        lane = self.lanes.get(interface)
        if lane is None:
            if len(self.lanes) >= MAX_INTERFACES:
                raise ConfigError(f"replay: the capture has more than {MAX_INTERFACES} interfaces")
            config = self.config
            kernel = FlowKernel(config.cache_max_flows, sampling=config.sampling, direction=config.direction,
                                ringbuf_bytes=config.ringbuf_size, replay=True)
            # The flows' times are already epoch ns: a timebase of (0, 0) leaves them as they are.
            tracer = MapTracer(kernel, config.cache_active_timeout, sampling=config.sampling,
                               clock=lambda: 0, mono_clock=lambda: 0)
            lane = self.lanes[interface] = Lane(interface + 1, name, kernel, tracer)
        return lane

    def run_chunk(self, chunk: Chunk, names: list[str]) -> None:
        self.short += chunk.short
        start, n = 0, len(chunk.offsets)
        while start < n:
            if self.boundary_ns is None:
                self.boundary_ns = int(chunk.tstamps_ns[start]) + self.period_ns
            later = np.nonzero(chunk.tstamps_ns[start:] >= self.boundary_ns)[0]
            end = start + int(later[0]) if len(later) else n
            for interface in np.unique(chunk.interfaces[start:end]):
                picked = start + np.nonzero(chunk.interfaces[start:end] == interface)[0]
                self._run(self.lane(int(interface), names[int(interface)]), chunk, picked)
            self.frames += end - start
            if end < n:  # the capture's clock passed an eviction period
                self.now_ns = int(chunk.tstamps_ns[end])
                self.evict_all("timer")
                self.boundary_ns = self.now_ns + self.period_ns
            start = end

    def _run(self, lane: Lane, chunk: Chunk, picked: np.ndarray) -> None:
        done = 0
        while done < len(picked):
            if lane.kernel.table_fill() >= FILL_SHARE:  # a frame adds at most one flow: never past the cap
                self.evict(lane, "map_filling")
                continue
            part = picked[done:]
            ran = lane.kernel.replay(chunk.data, chunk.offsets[part], chunk.lengths[part], chunk.tstamps_ns[part],
                                     chunk.egress[part], stop_at_fill=FILL_SHARE)
            done += ran
            self.now_ns = int(chunk.tstamps_ns[picked[done - 1]]) if done else self.now_ns

    def evict_all(self, reason: str) -> None:
        for lane in self.lanes.values():
            self.evict(lane, reason)

    def evict(self, lane: Lane, reason: str) -> None:
        batch = lane.tracer.evict(reason)
        if batch is None:
            return
        batch.flows["if_index"] = lane.if_index  # the kernel saw every test frame on one device
        self.evicted.add(batch.flows)
        self.export(batch)

    def export(self, batch: FlowBatch) -> None:
        kept = self.dedup(batch)
        kept_flows, kept_packets = (len(kept), kept.packets()) if kept is not None else (0, 0)
        self.deduplicated.add_tally(Tally(len(batch) - kept_flows, batch.packets() - kept_packets))
        if kept is not None and len(kept):
            self.outputs.export(self.decorate.process(kept))
            self.delivered.add(kept.flows)

    def counters(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNTER_NAMES, 0)
        for lane in self.lanes.values():
            for name, value in lane.kernel.counters().items():
                totals[name] += value
        return totals

    def table(self) -> dict[str, int]:
        """The lanes' flow tables together, as the stop line gives one."""
        summaries = [lane.kernel.table_summary() for lane in self.lanes.values()]
        return {key: sum(summary[key] for summary in summaries) for key in summaries[0]} if summaries else {}

    def ledger(self) -> Ledger:
        kernel = self.counters()
        return Ledger(
            seen=kernel["packets_seen"], sampled_out=kernel["sampled_out"], evicted=self.evicted,
            deduplicated=self.deduplicated,
            pipeline_lost={"ring_buffer_full": Tally(0, kernel["ringbuf_reserve_failed"]),
                           "no_flow_map": Tally(0, kernel["no_flow_map"])},
            delivered=self.delivered, outputs=self.outputs.counters(), kernel=kernel, table=self.table())

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.kernel.close()


def replay(path: str, config: Settings, agent_ip: str) -> int:
    """Replay the capture at path to config's outputs; the ledger in the last log line; exit code 0.

    A capture that turns out unreadable part way (CaptureError, exit 2) has what was read before exported
    and accounted for first."""
    check_outputs(config)
    capture = Capture(path)
    spec = ExportSpec(exporter_id=1, outputs=tuple(o for o in config.output if o.kind != "none"),
                      ipfix=IpfixOptions(config.ipfix_mtu, config.ipfix_template_refresh,
                                         config.ipfix_template_refresh_messages),
                      publish_endpoint=None, publish_hwm=0, jsonl_lock=None, flow_metrics=None)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    outputs = build_outputs(spec, ctx)
    run = Replay(config, agent_ip, outputs)
    failed: CaptureError | None = None
    try:
        try:
            for chunk in capture.chunks():
                run.run_chunk(chunk, [interface.name for interface in capture.interfaces])
        except CaptureError as exc:  # cut short, say: what was read before is still exported
            failed = exc
        run.evict_all("shutdown")
        fields = run.ledger().fields()
    finally:
        run.close()
        outputs.close()
        ctx.term()
    if failed is not None and not run.frames:
        raise failed  # nothing was read: there is no ledger to tell
    if run.short:
        log.warning("%d frames shorter than an Ethernet header were skipped (no TC hook sees one)", run.short)
    log.info("replayed %d frames of %s on %d interfaces (%s): %s", run.frames, path, len(run.lanes),
             ", ".join(lane.name for lane in run.lanes.values()) or "none", describe(fields),
             extra=logs.fields(frames=run.frames, frames_skipped=run.short, **fields))
    if failed is not None:
        raise failed
    return 0
