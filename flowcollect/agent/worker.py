"""A worker process: dedup -> decorate -> limiter -> exporters, for one dedup shard.

    python -m flowcollect.agent.worker --spec JSON   (started by the collector's supervisor)

The intake loop takes FLOWS, INTERFACES and STOP messages from the
collector's PUSH socket for this shard and runs dedup and decoration on each
batch; the limiter hands batches to the export thread through a bounded
channel and drops (and counts) what does not fit, so a stuck output never
backs up into the collector. After every exported batch, and every second,
a STATUS message tells the collector what became of the flows it sent.
"""
import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import time

import zmq

from flowcollect.agent import logs
from flowcollect.agent.signals import SignalFlags
from flowcollect.agent.supervisor import die_with_parent
from flowcollect.agent.worker_spec import WorkerSpec
from flowcollect.export.outputs import build_outputs
from flowcollect.export.prometheus import health
from flowcollect.pipeline.channel import Channel, Closed
from flowcollect.pipeline.decorator import Decorator
from flowcollect.pipeline.limiter import CapacityLimiter
from flowcollect.records.batch import FlowBatch
from flowcollect.records.tally import OutputTally, Tally
from flowcollect.settings.errors import FlowcollectError
from flowcollect.transport import wire

log = logging.getLogger("flowcollect.worker")
STATUS_PERIOD_S = 1.0
POLL_MS = 500
# Messages the intake queues beyond the one being processed: the flows wait in the
# collector's queue (bounded in flows) rather than here.
INTAKE_HWM = 2


class Worker:
    def __init__(self, spec: WorkerSpec, ctx: zmq.Context[zmq.Socket[bytes]], flags: SignalFlags) -> None:
        self.spec = spec
        self.index = spec.index
        self.flags = flags
        self.intake = ctx.socket(zmq.PULL)
        self.intake.setsockopt(zmq.RCVHWM, INTAKE_HWM)
        self.intake.connect(spec.shard_endpoint)
        self.status = ctx.socket(zmq.PUSH)
        self.status.setsockopt(zmq.LINGER, 1000)
        self.status.connect(spec.status_endpoint)
        self.publisher = wire.Publisher(self.index + 1)

        self.names: dict[int, str] = {}
        self.dedup = spec.deduper.batch_filter()
        self.decorate = Decorator(spec.agent_ip, self._name_of)
        self.limiter = CapacityLimiter()
        self.outputs = build_outputs(spec.export, ctx)
        self.export_queue: Channel[FlowBatch] = Channel(spec.queue_max_flows, size=len)
        self.exporter = threading.Thread(target=self._export_loop, name="exporter", daemon=True)
        self.received, self.deduplicated, self.delivered = Tally(), Tally(), Tally()
        # The outputs' tallies as the export thread last saw them: only that thread touches the outputs.
        self._outputs_seen: dict[str, OutputTally] = {}
        self._lock = threading.Lock()
        self._last_status = 0.0

    def _name_of(self, if_index: int) -> str:
        return self.names.get(if_index) or f"if{if_index}"

    def run(self) -> None:
        self.exporter.start()
        self.send_status()
        try:
            self._intake_loop()
        finally:
            self.export_queue.close()
            self.exporter.join()
            self.outputs.close()
            self.send_status(final=True)
            self.status.close()
            self.intake.close()

    def _intake_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.intake, zmq.POLLIN)
        while True:
            if self.flags.reopen:
                self.flags.reopen = False
                self.outputs.reopen()
                log.info("worker %d: SIGHUP: files are reopened before their next write", self.index)
            if self.flags.stop:
                # The stop ladder's second step, or the collector died (PR_SET_PDEATHSIG).
                log.warning("worker %d: terminated; exporting what it holds and exiting", self.index)
                return
            if poller.poll(POLL_MS):
                _, header, body = wire.split(self.intake.recv_multipart(copy=False))
                if header.kind == wire.STOP:
                    return
                if header.kind == wire.INTERFACES:
                    self.names.update(wire.read_interfaces(body))
                elif header.kind == wire.FLOWS:
                    self._take(wire.read_flows(header, body, copy=False))
            self.limiter.tick()
            if time.monotonic() - self._last_status >= STATUS_PERIOD_S:
                self.send_status()

    def _take(self, batch: FlowBatch) -> None:
        kept = self.dedup(batch)
        with self._lock:
            self.received.add(batch.flows)
            self.deduplicated.add(batch.flows)
            if kept is not None:
                self.deduplicated.flows -= len(kept)
                self.deduplicated.packets -= kept.packets()
        if kept is None or len(kept) < len(batch):
            health.dedup_dropped(len(batch) - (len(kept) if kept is not None else 0))
        if kept is not None and len(kept) and not self.limiter.offer(self.decorate.process(kept), self.export_queue):
            health.lost("worker_queue_full", len(kept), kept.packets())

    def _export_loop(self) -> None:
        # The sinks belong to this thread (a ZeroMQ socket is not thread-safe): their idle
        # work runs here too, between batches.
        while True:
            try:
                batch = self.export_queue.get(timeout=POLL_MS / 1000)
            except TimeoutError:
                self.outputs.idle()
                continue
            except Closed:
                return
            self.outputs.export(batch)
            seen = {name: OutputTally.from_json(tally.to_json()) for name, tally in self.outputs.counters().items()}
            with self._lock:
                self.delivered.add(batch.flows)
                self._outputs_seen = seen
            self.send_status()

    def send_status(self, final: bool = False) -> None:
        with self._lock:
            status = wire.WorkerStatus(
                worker=self.index, instance=self.publisher.instance, final=final,
                received=dataclasses.replace(self.received), deduplicated=dataclasses.replace(self.deduplicated),
                dropped=dataclasses.replace(self.limiter.dropped), delivered=dataclasses.replace(self.delivered),
                outputs=self._outputs_seen)
            self._last_status = time.monotonic()
            with contextlib.suppress(zmq.Again):  # the next status carries the same cumulative counts
                self.status.send_multipart(wire.status_message(self.publisher, status), flags=zmq.NOBLOCK)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowcollect.agent.worker")
    parser.add_argument("--spec", required=True, help="JSON from the collector (agent/worker_spec.py)")
    spec = WorkerSpec.from_json(parser.parse_args(argv).spec)
    logs.setup(spec.log_level)
    die_with_parent(spec.collector_pid)
    flags = SignalFlags()
    # Ctrl-C belongs to the collector, which drains the kernel first and then sends STOP.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    flags.install(stop_on=(signal.SIGTERM,))
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        worker = Worker(spec, ctx, flags)
    except (OSError, FlowcollectError) as exc:  # an output that cannot be opened (now: preflight checked it)
        log.error("worker %d cannot start: %s", spec.index, exc)
        ctx.destroy(linger=0)  # the sockets made before the failure, or term() would wait on them for ever
        return 1
    try:
        worker.run()
    finally:
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
