"""End to end: flow records/s from the kernel map to a ZeroMQ subscriber, and where the time goes.

The real agent runs in a namespace of its own (collector + 2 workers,
`--output zmq:ipc://...`, dedup off, eviction every EVICTION_S). Traffic on
this 2-core machine cannot make hundreds of thousands of new flows per
eviction without taking a core from the agent, so the bench writes the flows
into the agent's kernel map itself (by map id, bench/baselines.c
fcb_fill_from: distinct flows, every CPU slot written, as the TC programs
would leave them). One cycle:
  1. wait for the agent's swap (the one-slot array-of-maps changes value);
  2. fill the map the kernel now writes with N new flows;
  3. wait for the next swap: t0; the agent drains those N flows, folds them,
     shards them to the workers, which decorate them, encode them (binary and
     JSON topics) and publish them through the collector's proxy;
  4. a SUB socket on flows.bin counts records (header counts); when all N
     have arrived: t1. Records/s = N / (t1 - t0).
Where the time goes: CPU seconds of the collector and of the workers
between t0 and t1 (each process's CPU-time clock), per million records.
Baseline, same run: the ZeroMQ ipc transport alone, a PUB in this process
sending the same number of 128-byte rows in messages of BATCH rows to a SUB.
The first eviction of each size is a warm-up (first touch of the agent's
buffers) and is not counted.
Run: .venv/bin/python -m bench.end_to_end [--flows 10000,30000,100000] [--runs 5]
"""
import argparse
import threading
import time

import numpy as np
import zmq

from bench.build_baselines import load as load_baselines
from bench.common import Figure, Result, progress, results_table
from bench.lab import AgentMaps, Lab, interrupt_on_sigterm, wait_until
from flowcollect.kernel.bindings import lib
from flowcollect.records import layout
from flowcollect.transport import wire

PART = "end to end"
EVICTION_S = 1.5
CYCLE_TIMEOUT_S = 30
POLL_S = 0.001
BATCH = 8192


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


def wait_swap(maps, current):
    """Block until the kernel writes another map than `current`; (new map id, time seen)."""
    deadline = time.monotonic() + CYCLE_TIMEOUT_S
    while (now := maps.active()) == current:
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not swap its flow maps")
        time.sleep(POLL_S)
    return now, time.perf_counter()


def agent_run(lab, base, flows, cycles):
    ns = lab.namespace("e2e")
    endpoint = f"ipc://{lab.tmp}/e2e-{flows}.sock"
    agent = lab.agent(ns, "--workers", "2", "--output", f"zmq:{endpoint}", "--interfaces", "none-such",
                      "--agent-ip", "192.0.2.1", "--cache-max-flows", str(flows),
                      "--cache-active-timeout", f"{EVICTION_S:g}s", name=f"e2e-{flows}")
    collector = agent.process.pid
    ctx = zmq.Context()
    counter = Counter(ctx, endpoint)
    counter.start()
    maps = AgentMaps(base, collector)
    ncpus = lib.fc_num_possible_cpus()
    rates, collector_cpu, worker_cpu = [], [], []
    try:
        time.sleep(0.3)  # the subscription reaches the proxy
        active, _ = wait_swap(maps, maps.active())
        for cycle in range(cycles + 1):
            progress(f"end to end {flows:,} flows: eviction {cycle}/{cycles}" + (" (warm-up)" if not cycle else ""))
            active = maps.active()  # the map the kernel writes until the next swap
            maps.fill(active, cycle * flows, flows, ncpus)
            expected = counter.count + flows
            active, t0 = wait_swap(maps, active)
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
        maps.close()
        code, _ = agent.stop()
        counter.stop()
        ctx.term()
        ns.delete()
    assert code == 0, f"flowcollect exited {code}"
    assert counter.gaps == 0, f"{counter.gaps} sequence gaps at the subscriber"
    return rates, collector_cpu, worker_cpu


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


def measure(flow_counts, runs):
    base = load_baselines()
    results = []
    with Lab() as lab:
        for flows in flow_counts:
            rates, collector_cpu, worker_cpu = agent_run(lab, base, flows, runs)
            transport = transport_alone(flows, runs, f"ipc://{lab.tmp}/transport.sock")
            case = f"{flows:,} new flows per eviction, 2 workers"
            transport_fig = Figure("ZeroMQ ipc PUB->SUB alone", "records/s", transport)
            results += [
                Result(PART, case, Figure("kernel map -> subscriber", "records/s", rates), transport_fig),
                Result(PART, f"{case}: where the time goes",
                       Figure("collector CPU", "CPU s/M records", collector_cpu),
                       Figure("workers' CPU", "CPU s/M records", worker_cpu), better="lower"),
            ]
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", default="10000,30000,100000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    interrupt_on_sigterm()
    print(results_table(measure([int(f) for f in args.flows.split(",")], args.runs)))


if __name__ == "__main__":
    main()
