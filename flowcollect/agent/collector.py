"""The collector process: everything that touches the kernel, and the workers' supervisor.

    informer ─► TC attach/detach (TcAttacher), interface names (InterfaceNamer)
    map tracer ─────────────────────┐
    ring-buffer tracer ─► accounter ─┴─► evicted ─► coalesce, shard by dedup key ─► PUSH to worker i
    status PULL ◄─ workers            publishing proxy (XSUB/XPUB) ◄─ workers' PUB

Threads: the map tracer, the ring-buffer tracer, the accounter, the informer
and the publishing proxy each run in their own; the main thread waits on the
one channel both evicting stages feed, forwards what is ready as a few large
batches, reads the workers' status and restarts the ones that die. Every
queue is bounded in flows (queue_max_flows). Signal handlers only set flags.
On SIGTERM/SIGINT: no more attaching, our programs detached, the last
swap-and-drains, every batch forwarded (waiting for room), STOP to every
worker, workers waited for, and the ledger (ledger.py) in the last log line;
exit 0.
"""
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
import zmq

from flowcollect.agent import logs, sd_notify
from flowcollect.agent.ledger import account, describe
from flowcollect.agent.runtime import RuntimeDir
from flowcollect.agent.signals import SignalFlags
from flowcollect.agent.supervisor import HEARTBEAT_TIMEOUT_S, Supervisor, WorkerProcess
from flowcollect.agent.worker_link import WorkerLink
from flowcollect.agent.worker_spec import WorkerSpec
from flowcollect.export.ipfix import IpfixOptions
from flowcollect.export.outputs import ExportSpec, FlowMetricsOptions
from flowcollect.export.prometheus import health
from flowcollect.export.prometheus.tracing import Tracing
from flowcollect.interfaces.attacher import SUMMARY_PERIOD_S, TcAttacher
from flowcollect.interfaces.filter import InterfaceFilter
from flowcollect.interfaces.informer import new_informer
from flowcollect.interfaces.namer import InterfaceNamer
from flowcollect.kernel import owners
from flowcollect.kernel.features import drop_reasons
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.pipeline import rows
from flowcollect.pipeline.accounter import Accounter
from flowcollect.pipeline.channel import Channel, Closed
from flowcollect.pipeline.deduper import Deduper
from flowcollect.pipeline.limiter import CapacityLimiter
from flowcollect.pipeline.log_backoff import LossLog
from flowcollect.pipeline.map_tracer import MapTracer
from flowcollect.pipeline.ringbuf_tracer import RingBufTracer
from flowcollect.pipeline.sharding import split
from flowcollect.pipeline.sources import DrainStats
from flowcollect.records.batch import Enrichment, FlowBatch
from flowcollect.records.layout import Rows
from flowcollect.records.tally import Tally
from flowcollect.settings.errors import FlowcollectError
from flowcollect.settings.model import Settings
from flowcollect.transport import curve, endpoints, wire
from flowcollect.transport.publish_proxy import SUBSCRIBER_HWM, PublishProxy

log = logging.getLogger("flowcollect.collector")
RINGBUF_LOG_TIMEOUT_S = 60.0
FORWARD_POLL_S = 0.25  # idle wake-ups cost CPU; a batch wakes the loop at once
STOP_GRACE_S = 3.0
STOP_FORWARD_S = 10.0  # at stop, how long a worker that takes nothing more is waited for
WORKER_READY_TIMEOUT_S = 20.0
COUNTERS_PERIOD_S = 1.0


Closer = Callable[[], object]


class Collector:
    def __init__(self, config: Settings, agent_ip: str) -> None:
        self.config = config
        self.agent_ip = agent_ip
        self.flags = SignalFlags()
        self.stop_tracing = threading.Event()
        self.names_sent: dict[int, str] = {}
        self.forward_limiter = CapacityLimiter()
        self.evicted = Tally()
        self.links: list[WorkerLink] = []
        self.proxy: PublishProxy | None = None
        self.final_counters: Mapping[str, int] = {}
        self.final_table: Mapping[str, int] = {}
        self.enrichment = Enrichment(config.features)
        self._counters_read = 0.0
        self._summarized = time.monotonic()
        self._kernel_losses = LossLog(log, "lost in the kernel: the flow map and the ring buffer were both full "
                                           "(a larger cache_max_flows or ringbuf_size keeps them)")
        self._kernel_lost_seen = 0
        self.tracing = Tracing(config.cache_active_timeout)  # what /healthz answers

    def install_signal_handlers(self) -> None:
        self.flags.install()

    def run(self) -> int:
        config = self.config
        rundir = RuntimeDir()
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        closers: list[Closer] = [rundir.remove]
        try:
            # What another process may hold comes first: when one is taken, nothing has touched the kernel.
            for endpoint in config.output:
                if endpoint.kind == "zmq":
                    held = endpoints.claim(endpoint.target)
                    if held is not None:
                        closers.append(held.release)
            if config.metrics_address:
                # Only then: prometheus_client is ~8 MiB of every process's memory (health.py).
                from flowcollect.export.prometheus import server
                # Before any process counts anything: every process then writes its metrics to this directory.
                metrics_dir = health.enable_multiprocess()
                owners.claim(metrics_dir)
                closers.append(lambda: health.remove_multiprocess_directory(metrics_dir))
                closers.append(server.serve(config.metrics_address, config.output, self.tracing).shutdown)
                log.info("serving Prometheus metrics on http://%s/metrics (and /healthz)", config.metrics_address)
            kernel = FlowKernel(config.cache_max_flows, sampling=config.sampling, direction=config.direction,
                                ringbuf_bytes=config.ringbuf_size, attach_mode=config.tc_attach_mode,
                                features=config.features, clock=config.flow_clock)
            self.kernel = kernel
            closers.append(kernel.close)
            if "rtt" in config.features:
                log.info("rtt: the smoothed RTT of this namespace's TCP sockets, from %s on tcp_rcv_established",
                         kernel.rtt_attach)
            if "drops" in config.features:  # the names of this kernel's drop reasons, for every record
                self.enrichment = Enrichment(config.features, drop_reasons())
            owners.claim(rundir.path, kernel.prog_ids())  # what `flowcollect cleanup` must leave alone
            log.info("attaching with %s", "TCX links: they go with this process, whatever ends it"
                     if kernel.attach_mode == "tcx" else "legacy clsact filters (if this agent is killed, "
                     "`flowcollect cleanup` removes them)")
            self._run(config, self.agent_ip, kernel, rundir, ctx, closers)
        finally:
            for close in reversed(closers):
                close()
            ctx.term()
        ledger = self.summary()
        unaccounted = ledger.get("packets_unaccounted")
        if unaccounted:
            log.error("the ledger does not add up: %s packets unaccounted for", unaccounted)
        log.info("stopped: %s; our programs detached", describe(ledger), extra=logs.fields(**ledger))
        return 0

    def summary(self) -> dict[str, object]:
        """The ledger of the stop line (ledger.py), from what the kernel and every process counted."""
        return account(self.final_counters, self.evicted, self.forward_limiter.dropped, self.links,
                       self.proxy, self.final_table).fields()

    def _run(self, config: Settings, agent_ip: str, kernel: FlowKernel, rundir: RuntimeDir,
             ctx: zmq.Context[zmq.Socket[bytes]], closers: list[Closer]) -> None:
        workers = config.worker_count
        publish = [o.target for o in config.output if o.kind == "zmq"]
        self.links = [WorkerLink(ctx, i, rundir.shard_endpoint(i), config.queue_max_flows, linger_s=STOP_GRACE_S)
                      for i in range(workers)]
        closers.append(self._close_links)
        self.status_socket = ctx.socket(zmq.PULL)
        self.status_socket.bind(rundir.status_endpoint)
        closers.append(self.status_socket.close)
        proxy = None
        if publish:
            secret = curve.read_secret_key(config.zmq_curve_secret_key_file)
            for endpoint in publish:
                if endpoint.startswith("tcp://") and secret is None:
                    log.warning("zmq output %s has no CURVE key: anyone who can reach it reads the flows "
                                "(set zmq_curve_secret_key_file)", endpoint)
            if secret is not None:
                log.info("zmq outputs require CURVE; the agent's public key is %s", curve.public_key(secret))
            proxy = PublishProxy(ctx, rundir.publish_endpoint, publish, curve_secret_key=secret,
                                 on_dropped=lambda flows, packets: health.lost("subscriber_too_slow", flows, packets))
            proxy.start()
            closers.append(proxy.finish_and_join)
        self.proxy = proxy
        specs = [self._worker_spec(i, rundir, bool(publish)) for i in range(workers)]
        supervisor = Supervisor(specs, on_exit=self._worker_died, on_restart=self._worker_restarted,
                                last_heard=lambda index: self.links[index].last_heard,
                                on_hung=lambda worker: health.worker_silenced())
        closers.append(lambda: supervisor.stop(grace_s=0.5))  # after an error: the normal path stopped them

        namer = InterfaceNamer()
        self.namer = namer
        attacher = TcAttacher(kernel, InterfaceFilter(config.interfaces, config.exclude_interfaces), namer)
        informer = new_informer(config.listen_interfaces, attacher.handle, config.listen_poll_period)
        informer.start()
        closers.append(informer.stop)  # after an error: the normal path stops it first
        attacher.started()
        self.attacher = attacher

        map_tracer = MapTracer(kernel, config.cache_active_timeout, sampling=config.sampling,
                               watch_fill=True, on_eviction=self._evicted_from_map,
                               drops=kernel if "drops" in config.features else None,
                               dns=kernel if "dns" in config.features else None,
                               rtt=kernel if "rtt" in config.features else None)
        ring_tracer = RingBufTracer(kernel, map_tracer, RINGBUF_LOG_TIMEOUT_S)
        accounter = Accounter(config.accounter_flows, config.cache_active_timeout, sampling=config.sampling,
                              on_eviction=lambda flows: health.flows_evicted("ring_buffer", flows))
        # Both evicting stages feed one channel: the main thread waits on it alone, woken by either.
        evicted: Channel[FlowBatch] = Channel(config.queue_max_flows, size=len, producers=2)
        ring_out: Channel[Rows] = Channel(config.queue_max_flows, size=len)
        stages = [
            threading.Thread(target=map_tracer.trace_loop(self.stop_tracing), args=(evicted,), name="map-tracer"),
            # The ring buffer is read to its end after the map tracer's last swaps, which wait for every
            # program still running: a record written by one of them is not left behind.
            threading.Thread(target=ring_tracer.trace_loop(map_tracer.finished), args=(ring_out,),
                             name="ringbuf-tracer"),
            threading.Thread(target=accounter.account, args=(ring_out, evicted), name="accounter"),
        ]
        supervisor.start()
        self._wait_for_workers(supervisor)
        for stage in stages:
            stage.start()
        self.tracing.started(stages[0], self._workers_working)
        # Runs before kernel.close(): no stage may be inside a native call when the kernel objects go.
        closers.append(lambda: self._stop_stages(stages))
        log.info("agent ready: %d workers, eviction every %ss, outputs %s", workers,
                 f"{config.cache_active_timeout:g}", ", ".join(str(o) for o in config.output))
        sd_notify.notify("READY=1")

        self._forward_until_stopped(evicted, supervisor)
        log.info("stopping: our programs detached, the last swap-and-drain, then every flow to the workers")
        sd_notify.notify("STOPPING=1")
        self.tracing.stopping()
        informer.stop()  # no interface is attached from here on...
        kernel.detach_all()  # ...nor counted: what was counted is all in the maps and the ring buffer
        self.stop_tracing.set()
        self._forward_until_closed(evicted, supervisor)
        for link in self.links:
            link.send_control(wire.stop_message(link.publisher))
        supervisor.stop(grace_s=STOP_GRACE_S)
        self._read_status()
        self.final_counters = kernel.counters()
        self.final_table = kernel.table_summary()
        health.kernel_counters(self.final_counters)
        unrecorded = kernel.feature_counters() if config.features else {}
        for what, count in unrecorded.items():
            if count:
                log.warning("%s: %d not recorded: their flows did not fit the feature's map "
                            "(a larger cache_max_flows makes room)", what, count)
        if proxy is not None:
            proxy.finish_and_join()  # its counts are final once it has forwarded what the workers sent

    def _close_links(self) -> None:
        for link in self.links:
            link.socket.close()

    def _stop_stages(self, stages: list[threading.Thread]) -> None:
        self.stop_tracing.set()
        for stage in stages:
            stage.join()

    def _wait_for_workers(self, supervisor: Supervisor) -> None:
        """Start tracing once every worker has said hello: no first batch is sent into the void."""
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while not all(link.status is not None for link in self.links):
            if time.monotonic() > deadline or self.flags.stop:
                missing = [link.index for link in self.links if link.status is None]
                raise FlowcollectError(f"workers {missing} did not start within {WORKER_READY_TIMEOUT_S:.0f} s "
                                       "(their errors are in the log above)")
            supervisor.check()
            if self.status_socket.poll(100):
                self._read_status()

    def _evicted_from_map(self, reason: str, flows: int, stats: DrainStats) -> None:
        self.tracing.evicted()
        health.flows_evicted(reason, flows)
        health.drain_finished(stats, flows)

    def _workers_working(self) -> int:
        """Workers that run and answer (a STATUS within the supervisor's heartbeat timeout): /healthz needs one."""
        now = time.monotonic()
        return sum(not link.down and now - link.last_heard <= HEARTBEAT_TIMEOUT_S for link in self.links)

    def _worker_spec(self, index: int, rundir: RuntimeDir, publish: bool) -> WorkerSpec:
        config = self.config
        flow_metrics = None
        if config.metrics_address:
            # The series cap is per process: split it so that all workers together keep to it.
            flow_metrics = FlowMetricsOptions(config.metrics_flow_attributes,
                                              max(1, config.metrics_max_series // config.worker_count))
        export = ExportSpec(
            exporter_id=index + 1,
            outputs=tuple(o for o in config.output if o.kind not in ("zmq", "none")),
            ipfix=IpfixOptions(config.ipfix_mtu, config.ipfix_template_refresh, config.ipfix_template_refresh_messages,
                               config.features),
            publish_endpoint=rundir.publish_endpoint if publish else None,
            publish_hwm=SUBSCRIBER_HWM,
            jsonl_lock=rundir.file("jsonl.lock"),
            flow_metrics=flow_metrics,
        )
        return WorkerSpec(
            index=index,
            collector_pid=os.getpid(),
            shard_endpoint=rundir.shard_endpoint(index),
            status_endpoint=rundir.status_endpoint,
            queue_max_flows=config.queue_max_flows,
            agent_ip=self.agent_ip,
            deduper=Deduper(config.deduper, config.deduper_expiry, config.deduper_just_mark),
            export=export,
            log_level=config.log_level,
        )

    # --- the main loop ---

    def _forward_until_stopped(self, evicted: Channel[FlowBatch], supervisor: Supervisor) -> None:
        while not self.flags.stop:
            self._service(supervisor)
            self._forward_ready(evicted)

    def _forward_until_closed(self, evicted: Channel[FlowBatch], supervisor: Supervisor) -> None:
        """The stop path: every batch goes out, waiting for room where a worker is busy."""
        deadline = time.monotonic() + STOP_FORWARD_S
        while not (evicted.closed and not len(evicted)):
            self._service(supervisor)
            if self._forward_ready(evicted, waiting_until=deadline):
                deadline = time.monotonic() + STOP_FORWARD_S  # progress: wait afresh for the next

    def _service(self, supervisor: Supervisor) -> None:
        if self.flags.reopen:
            self.flags.reopen = False
            alive = supervisor.alive()
            for worker in alive:
                worker.signal(signal.SIGHUP)
            log.info("SIGHUP: %d workers reopen their JSON-lines files before their next write; settings are "
                     "read only at start (a change needs a restart)", len(alive))
        self._read_status()
        supervisor.check()
        now = time.monotonic()
        if now - self._counters_read >= COUNTERS_PERIOD_S:
            self._counters_read = now
            counters = self.kernel.counters()
            health.kernel_counters(counters)
            kernel_lost = counters["ringbuf_reserve_failed"] + counters["no_flow_map"]
            self._kernel_losses.lost(kernel_lost - self._kernel_lost_seen)
            self._kernel_lost_seen = kernel_lost
            if now - self._summarized >= SUMMARY_PERIOD_S:
                self._summarized = now
                self.attacher.summary()
            repaired = self.kernel.repair()
            if repaired:
                health.reattached(repaired)
                log.warning("%d of our attachments had been removed (a filter deleted, a link detached, by "
                            "someone else): put back; packets in between were not counted", repaired)
        for link in self.links:
            if link.held and not link.down:
                self._refresh_names(link)
                link.release_held()
        self.forward_limiter.tick()

    def _forward_ready(self, evicted: Channel[FlowBatch], waiting_until: float | None = None) -> bool:
        """Wait for evicted flows; forward them with every batch ready behind them, as few large messages.

        With waiting_until, wait for room in the workers' queues until then (the stop path). True if
        anything was forwarded.
        """
        try:
            first = evicted.get(timeout=FORWARD_POLL_S)
        except (TimeoutError, Closed):
            return False
        batches = [first, *evicted.get_ready(max(0, wire.MAX_MESSAGE_FLOWS * len(self.links) - len(first)))]
        flows = batches[0].flows if len(batches) == 1 else rows.concatenate([b.flows for b in batches])
        batch = FlowBatch(flows, enrichment=self.enrichment)
        self.evicted.add(batch.flows)
        self._announce_names(batch.flows["if_index"])
        for index, part in split(batch, len(self.links)):
            link = self.links[index]
            if not link.down:
                self._refresh_names(link)
            for start in range(0, len(part), wire.MAX_MESSAGE_FLOWS):
                message = part if len(part) <= wire.MAX_MESSAGE_FLOWS else dataclasses.replace(
                    part, flows=part.flows[start:start + wire.MAX_MESSAGE_FLOWS])
                self._send(link, message, waiting_until)
        return True

    def _send(self, link: WorkerLink, batch: FlowBatch, waiting_until: float | None) -> None:
        if waiting_until is not None:
            if link.send_waiting(batch, waiting_until):
                return
            self.forward_limiter.dropped.add(batch.flows)  # a worker that took nothing for STOP_FORWARD_S
        elif self.forward_limiter.offer(batch, link):
            return
        health.lost("forward_queue_full", len(batch), batch.packets())

    def _refresh_names(self, link: WorkerLink) -> None:
        """A restarted worker gets every interface name before its first batch."""
        if link.needs_names and link.send_control(wire.interfaces_message(link.publisher, self.names_sent)):
            link.needs_names = False

    def _announce_names(self, if_index: npt.NDArray[np.uint32]) -> None:
        # Interface indexes are small numbers: counting them is a tenth of np.unique's sort on a large batch.
        present = np.flatnonzero(np.bincount(if_index)) if len(if_index) and if_index.max() < 1 << 20 \
            else np.unique(if_index)
        changed = {int(i): self.namer(int(i)) for i in present}
        changed = {i: name for i, name in changed.items() if self.names_sent.get(i) != name}
        if changed:
            self.names_sent.update(changed)
            for link in self.links:
                # A worker that is down (or full) gets the whole table before its next batch.
                if link.down or not link.send_control(wire.interfaces_message(link.publisher, changed)):
                    link.needs_names = True

    def _read_status(self) -> None:
        while True:
            try:
                frames = self.status_socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            _, _, body = wire.split(frames)
            status = wire.read_status(body)
            self.links[status.worker].update_status(status)

    def _worker_died(self, worker: WorkerProcess, code: int | None) -> None:
        self._read_status()
        if worker.pid is not None:
            health.process_exited(worker.pid)
        lost = self.links[worker.index].instance_died()
        health.lost("worker_died", lost.flows, lost.packets)
        if lost.flows:
            log.error("worker %d died with %d flows (%d packets) it had not accounted for (counted as lost)",
                      worker.index, lost.flows, lost.packets)

    def _worker_restarted(self, worker: WorkerProcess) -> None:
        health.worker_restarted()
        self.links[worker.index].needs_names = bool(self.names_sent)
