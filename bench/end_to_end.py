"""End to end: flow records/s from the kernel table to a ZeroMQ subscriber, and where the time goes.

The real agent runs in a namespace of its own (collector + its default
number of workers, settings/model.py: cpu_count - 1, unless --workers says,
`--output zmq:ipc://...`, dedup off, eviction every EVICTION_S), tracing no
interface. Traffic on this 2-core machine cannot make hundreds of thousands
of new flows per eviction without taking a core from the agent, so the bench
runs frames through the agent's own fc_ingress (BPF_PROG_TEST_RUN, pinned to
one CPU: bench/lab.py AgentTable): the real program writes the flows into
that CPU's region of the active half. First the region is grown to hold
twice N (filled to the swap mark, half after half, within --cache-max-flows
set for it). One cycle:
  1. wait for the agent's swap (fc_table_active changes);
  2. put N new flows into the half the programs now write: it is then at
     the swap mark, so the agent's fill watch swaps within milliseconds;
  3. that swap seen: t0; the agent drains those N flows, shards them to the
     workers, which decorate them, encode them (binary and JSON topics) and
     publish them through the collector's proxy;
  4. a SUB socket on flows.bin counts records (header counts); when all N
     have arrived: t1. Records/s = N / (t1 - t0).
Where the time goes: CPU seconds of the collector and of the workers
between t0 and t1 (each process's CPU-time clock), per million records.
Where each CPU second goes, by step: the same functions the collector and a
worker run (pipeline/, transport/wire.py, export/zmq_publish.py's message),
called here in turn on the same N flows, each on this process's CPU clock:
collector: drain (drain_flows: the half read through its mapping, the rows
folded and made export rows with their wall-clock times), sharding, message
building, send (PUSH over ipc);
worker: receive, decode, dedup, decorate, encode, send (PUB over ipc).
Beside each, the process's CPU in the real agent, so that its share shows
and what the steps leave out (threads, polls, the publishing proxy's hop) is
the rest.
Baseline, same run: the ZeroMQ ipc transport alone, a PUB in this process
sending the same number of FLOW_EXPORT rows (248 bytes) in messages of BATCH rows to a SUB.
The first eviction of each size is a warm-up (first touch of the agent's
buffers) and is not counted.
Run: .venv/bin/python -m bench.end_to_end [--flows 10000,30000,100000] [--runs 5] [--workers N]
"""
import argparse
import os
import threading
import time

import numpy as np
import zmq

from bench.build_baselines import load as load_baselines
from bench.common import Figure, Result, progress, results_table
from bench.drain import fill_every_cpu
from bench.lab import AgentTable, Lab, interrupt_on_sigterm, wait_until
from flowcollect.kernel.bindings import lib
from flowcollect.kernel.flow_kernel import FlowKernel
from flowcollect.kernel.table_sizing import smallest_caps
from flowcollect.pipeline.decorator import Decorator
from flowcollect.pipeline.deduper import Deduper
from flowcollect.pipeline.sharding import split
from flowcollect.pipeline.timebase import Timebase
from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from flowcollect.settings.model import Settings
from flowcollect.transport import wire

PART = "end to end"
EVICTION_S = 1.5
CYCLE_TIMEOUT_S = 30
POLL_S = 0.001
BATCH = 8192
AIM_RECORDS_S = 2_000_000  # issue 19, at 100k flows per eviction with the default workers
AIM_COLLECTOR_CPU = 0.25  # issue 19: CPU s per million records at 100k flows per eviction


class Counter(threading.Thread):
    """A SUB socket on flows.bin counting records, with the time the count last grew."""

    def __init__(self, ctx, endpoint):
        super().__init__(daemon=True)
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_BINARY)
        self.sock.connect(endpoint)
        self.count, self.last = 0, 0.0
        self.gaps = 0
        self._sequences = {}
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            if self.sock.poll(50):
                _, header, _ = wire.split(self.sock.recv_multipart(copy=False), topic=True)
                key = (header.publisher, header.instance)
                if self._sequences.get(key, header.sequence - 1) != header.sequence - 1:
                    self.gaps += 1
                self._sequences[key] = header.sequence
                self.count += header.count
                self.last = time.perf_counter()
        self.sock.close()

    def stop(self):
        self._done.set()
        self.join()


def agent_run(lab, base, flows, cycles, workers):
    ns = lab.namespace("e2e")
    endpoint = f"ipc://{lab.tmp}/e2e-{flows}.sock"
    worker_args = ["--workers", str(workers)] if workers else []
    cpu = min(os.sched_getaffinity(0))
    # Room for the region of the CPU the flows go to to hold 2 x N, the others at their smallest.
    bound = 2 * flows + sum(smallest_caps(1 << 30, lib.fc_num_possible_cpus())[1:])
    agent = lab.agent(ns, *worker_args, "--output", f"zmq:{endpoint}", "--interfaces", "none-such",
                      "--agent-ip", "192.0.2.1", "--cache-max-flows", str(bound),
                      "--cache-active-timeout", f"{EVICTION_S:g}s", name=f"e2e-{flows}")
    collector = agent.process.pid
    ctx = zmq.Context()
    counter = Counter(ctx, endpoint)
    counter.start()
    table = AgentTable(base, collector)
    rates, collector_cpu, worker_cpu = [], [], []
    try:
        time.sleep(0.3)  # the subscription reaches the proxy
        progress(f"end to end {flows:,} flows: growing the agent's table to hold them")
        first = table.grow(2 * flows, cpu, 0)  # `first` flows went in: all of them reach the subscriber first
        if not wait_until(lambda: counter.count >= first, CYCLE_TIMEOUT_S, period=POLL_S):
            raise TimeoutError(f"{counter.count} of the {first} flows that grew the table arrived")
        for cycle in range(cycles + 1):
            progress(f"end to end {flows:,} flows: eviction {cycle}/{cycles}" + (" (warm-up)" if not cycle else ""))
            table.wait_swap(table.active(), CYCLE_TIMEOUT_S)
            base_count = counter.count
            active = table.active()  # the half the programs write until the next swap
            table.fill(first, flows, cpu)
            first += flows
            expected = base_count + flows
            t0 = table.wait_swap(active, CYCLE_TIMEOUT_S)
            cpu0 = agent.cpu()
            if not wait_until(lambda expected=expected: counter.count >= expected, CYCLE_TIMEOUT_S, period=POLL_S):
                raise TimeoutError(f"{counter.count - expected + flows} of {flows} records arrived")
            t1 = counter.last
            cpu1 = agent.cpu()
            assert counter.count == expected, (counter.count, expected)
            if not cycle:
                continue  # the first eviction of a size touches the agent's buffers for the first time
            rates.append(flows / (t1 - t0))
            collector_cpu.append((cpu1[collector] - cpu0[collector]) / flows * 1e6)
            worker_cpu.append(sum(cpu1[p] - cpu0.get(p, 0) for p in cpu1 if p != collector) / flows * 1e6)
    finally:
        table.close()
        code, _ = agent.stop()
        counter.stop()
        ctx.term()
        ns.delete()
    assert code == 0, f"flowcollect exited {code}"
    assert counter.gaps == 0, f"{counter.gaps} sequence gaps at the subscriber"
    return rates, collector_cpu, worker_cpu


def default_workers():
    """The agent's default worker count on this host (what `flowcollect` starts without --workers)."""
    return Settings().worker_count


def transport_alone(flows, runs, endpoint):
    """Records/s of a bare PUB -> SUB over ipc, the agent's row size, BATCH rows a message."""
    rows = np.zeros(BATCH, dtype=layout.FLOW_EXPORT)
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    for s in (pub, sub):
        s.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    pub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    time.sleep(0.2)
    rates = []
    try:
        for _ in range(runs):
            messages = -(-flows // BATCH)
            t0 = time.perf_counter()
            sender = threading.Thread(target=lambda messages=messages: [pub.send_multipart([wire.TOPIC_BINARY, rows])
                                                                        for _ in range(messages)])
            sender.start()
            for _ in range(messages):
                sub.recv_multipart(copy=False)
            rates.append(messages * BATCH / (time.perf_counter() - t0))
            sender.join()
    finally:
        pub.close()
        sub.close()
        ctx.term()
    return rates


def steps(base, flows, runs, workers, endpoint):
    """CPU seconds per million records of each step, collector's and a worker's: {(process, step): [runs]}."""
    ncpus = lib.fc_num_possible_cpus()
    cpu = min(os.sched_getaffinity(0))
    cost = {}

    def clocked(process, step, fn):
        c0 = time.process_time()
        result = fn()
        cost.setdefault((process, step), []).append((time.process_time() - c0) / flows * 1e6)
        return result

    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    for sock in (push, pull, pub, sub):
        sock.setsockopt(zmq.LINGER, 0)
    push.bind(endpoint + "-shard")
    pull.connect(endpoint + "-shard")
    pub.setsockopt(zmq.SNDHWM, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    pub.bind(endpoint + "-pub")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint + "-pub")
    time.sleep(0.2)  # the subscription reaches the PUB
    collector_pub, worker_pub = wire.Publisher(0), wire.Publisher(1)
    dedup = Deduper().batch_filter()  # the agent's default deduper
    decorate = Decorator("192.0.2.1", lambda if_index: f"if{if_index}")
    def one_round(kernel, first):
        """Every step once, in the agent's order, on `flows` new flows in one CPU's region of the table."""
        fill_every_cpu(base, kernel.prog_fd(lib.FC_PROG_INGRESS), first, flows, [cpu])
        timebase = Timebase.read(time.time_ns, time.monotonic_ns)
        drained, _ = clocked("collector", "drain: drain_flows (the half read through its mapping, rows folded, "
                                          "made export rows)",
                             lambda: kernel.drain_flows(timebase.wall_ns - timebase.mono_ns, 0))
        assert len(drained) == flows
        batch = FlowBatch(drained)
        parts = clocked("collector", "sharding", lambda: split(batch, workers))
        messages = clocked("collector", "message building", lambda: [
            wire.flows_message(collector_pub, FlowBatch(part.flows[start:start + wire.MAX_MESSAGE_FLOWS]))
            for _, part in parts for start in range(0, len(part), wire.MAX_MESSAGE_FLOWS)])
        clocked("collector", "send (PUSH, ipc)", lambda: [push.send_multipart(m, copy=False) for m in messages])
        received = clocked("worker", "receive (PULL, ipc)", lambda: [pull.recv_multipart(copy=False) for _ in messages])
        decoded = clocked("worker", "decode", lambda: [wire.read_flows(*wire.split(m)[1:], copy=False)
                                                       for m in received])
        kept = clocked("worker", "dedup", lambda: [k for k in map(dedup, decoded) if k is not None])
        decorated = clocked("worker", "decorate", lambda: [decorate.process(k) for k in kept])
        published = clocked("worker", "encode", lambda: [
            wire.flows_message(worker_pub, d, topic=wire.TOPIC_BINARY) for d in decorated])
        clocked("worker", "send (PUB, ipc)", lambda: [pub.send_multipart(m, copy=False) for m in published])
        for _ in published:
            sub.recv_multipart(copy=False)

    try:
        # The CPU's region holds 2 x N, as in the agent's run, bounded there.
        with FlowKernel(2 * flows * ncpus, start_cap=2 * flows) as kernel:
            for run in range(runs + 1):
                progress(f"end to end {flows:,} flows: steps, round {run}/{runs}" + (" (warm-up)" if not run else ""))
                one_round(kernel, run * flows)
                if not run:  # the first round touches every buffer for the first time: not counted
                    for runs_of_step in cost.values():
                        runs_of_step.clear()
    finally:
        for sock in (push, pull, pub, sub):
            sock.close()
        ctx.term()
    return cost


def measure(flow_counts, runs, workers=0):
    """workers: 0 = the agent's default (settings/model.py worker_count)."""
    base = load_baselines()
    results = []
    with Lab() as lab:
        for flows in flow_counts:
            rates, collector_cpu, worker_cpu = agent_run(lab, base, flows, runs, workers)
            transport = transport_alone(flows, runs, f"ipc://{lab.tmp}/transport.sock")
            count = workers or default_workers()
            case = f"{flows:,} new flows per eviction, {count} worker{'s' if count > 1 else ''}"
            transport_fig = Figure("ZeroMQ ipc PUB->SUB alone", "records/s", transport)
            rate = Figure("kernel table -> subscriber", "records/s", rates)
            collector_fig = Figure("collector CPU", "CPU s/M records", collector_cpu)
            workers_fig = Figure("workers' CPU", "CPU s/M records", worker_cpu)
            results += [
                Result(PART, case, rate, transport_fig),
                Result(PART, f"{case}: where the time goes", collector_fig, workers_fig, better="lower"),
            ]
            if flows == 100_000 and not workers:
                results += [Result(PART, f"{case}: the aim", rate, Figure("aim", "records/s", [AIM_RECORDS_S]),
                                   aim=">= 1"),
                            Result(PART, f"{case}: the aim", collector_fig, better="lower",
                                   aim=f"<= {AIM_COLLECTOR_CPU}", aim_of="median")]
            if flows != max(flow_counts):
                continue  # where the CPU goes: at the largest size only
            by_step = steps(base, flows, runs, count, f"ipc://{lab.tmp}/steps")
            whole = {"collector": collector_fig, "worker": Figure("a worker's CPU", "CPU s/M records",
                                                                  [c / count for c in worker_cpu])}
            results += [Result(PART, f"{case}: {process}'s CPU by step (in this process), share of its "
                                     "CPU end to end", Figure(step, "CPU s/M records", cost), whole[process],
                               better="lower")
                        for (process, step), cost in by_step.items()]
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", default="10000,30000,100000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: the agent's own default)")
    args = parser.parse_args()
    interrupt_on_sigterm()
    print(results_table(measure([int(f) for f in args.flows.split(",")], args.runs, args.workers)))


if __name__ == "__main__":
    main()
