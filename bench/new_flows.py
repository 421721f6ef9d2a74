"""New flows: the highest rate of new flows the agent takes for 30 s with zero loss, beside trafgen's own.

Every frame is a new flow: trafgen (one CPU, full speed, 60-byte frames)
walks 16M source addresses (bench/harness/traffic.py) towards a veth whose
other end the real `flowcollect` traces with its defaults and `--output none`
(the whole pipeline runs: collector, worker, the ledger; nothing is written).
A run counts when the agent's stop line says packets_seen = frames sent and
0 lost; a run that loses is repeated at 90% of its rate (trafgen --rate),
so the figure is the fastest rate sustained without loss.

Baseline, measured in the same run: trafgen's rate to the same receiver with
nothing attached (the limit). Beside it: the share of packets that came
through a fallback (the ring buffer: the table refused the flow; the
overflow map: its bucket was full), the table's largest size (it grows with
the flood, kernel/table_sizing.py), the collector's CPU during the
flood, its CPU in the 2 s that start 2 s after the flood (it must be idle
again: under 5% of a core), and a subscriber that never reads while 20,000
flows an eviction are published for 2 minutes: the collector's peak RSS
(aim: under 256 MiB).
Run: .venv/bin/python -m bench.new_flows [--seconds 30] [--runs 3]
"""
import argparse
import time

import zmq

from bench.common import Figure, Result, cpu_seconds, progress, results_table
from bench.harness.traffic import flood_config, quiet
from bench.lab import Lab, interrupt_on_sigterm

PART = "new flows"
SUBNET = 65
ADDRESSES = 1 << 24
LOSS_BACKOFF = 0.9
RSS_SECONDS, RSS_FLOWS, RSS_RATE = 120, 20_000, 40_000
RSS_BOUND_MIB = 256


def trafgen(lab, sender, conf, count, rate=None):
    """Send count frames; (frames, seconds) as trafgen took them."""
    args = ["trafgen", "--dev", sender.name, "--conf", str(conf), "--num", str(count), "--cpus", "1",
            "-q", "--no-sock-mem", "--no-cpu-stats"]
    if rate:
        args += ["--rate", f"{int(rate)}pps"]
    t0 = time.monotonic()
    sender.ns.exec(*args)
    return count, time.monotonic() - t0


def limit_run(lab, sender, receiver, conf, count):
    frames, seconds = trafgen(lab, sender, conf, count)
    return frames / seconds


def agent_run(lab, sender, receiver, conf, count, rate, run):
    agent = lab.agent(receiver.ns, "--interfaces", receiver.name, "--output", "none", name=f"flows-{run}")
    pid = agent.process.pid
    try:
        c0 = cpu_seconds(pid)
        frames, seconds = trafgen(lab, sender, conf, count, rate)
        during = (cpu_seconds(pid) - c0) / seconds
        time.sleep(2.0)  # the 2 s the collector gets to be idle again...
        c1, t1 = cpu_seconds(pid), time.monotonic()
        time.sleep(2.0)  # ...then 2 s measured
        after = (cpu_seconds(pid) - c1) / (time.monotonic() - t1)
    finally:
        code, _ = agent.stop(timeout=60)
    assert code == 0, f"flowcollect exited {code}"
    ledger = agent.ledger()
    exact = ledger["packets_seen"] == frames and ledger["packets_lost"] == 0
    seen = max(1, ledger["packets_seen"])
    fallbacks = (ledger["kernel"]["ringbuf_submitted"] / seen, ledger["kernel"]["overflow_packets"] / seen)
    return exact, frames / seconds, fallbacks, ledger["table"]["largest_bytes"], during, after


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def stuck_subscriber_rss(lab, sender, receiver, seconds):
    """The collector's peak RSS while a subscriber never reads and 20,000 flows an eviction are published."""
    endpoint = f"ipc://{lab.tmp}/flows.sock"
    agent = lab.agent(receiver.ns, "--interfaces", receiver.name, "--cache-max-flows", str(2 * RSS_FLOWS),
                      "--cache-active-timeout", "1s", "--workers", "1", "--log-level", "debug",
                      "--output", f"zmq:{endpoint}", name="stuck")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)  # its own queue takes nothing: what it does not read stays with the agent
    sub.setsockopt(zmq.SUBSCRIBE, b"flows.json")
    sub.connect(endpoint)
    conf = lab.tmp / "stuck.trafgen"
    conf.write_text(flood_config(sender, receiver, RSS_FLOWS))
    peak = 0
    try:
        agent.wait_for_subscribers(1)
        traffic = lab.start(sender.ns, "trafgen", "--dev", sender.name, "--conf", str(conf), "--num", "0",
                            "--cpus", "1", "-q", "--rate", f"{RSS_RATE}pps")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(agent.process.pid))
            time.sleep(1.0)
        lab.stop(traffic)
    finally:
        agent.stop(timeout=60)
        sub.close(linger=0)
        ctx.term()
    too_slow = agent.ledger()["lost_by_cause"].get("subscriber_too_slow", 0)
    assert too_slow > 0, "the subscriber that never reads should have lost flows"
    return peak / 1024


def measure(seconds, runs, rss_seconds=RSS_SECONDS):
    with Lab() as lab:
        sender, receiver = lab.pair(SUBNET)
        quiet(sender, receiver)
        conf = lab.tmp / "flood.trafgen"
        conf.write_text(flood_config(sender, receiver, ADDRESSES))
        limits = []
        for run in range(runs):
            progress(f"{PART}: trafgen alone, run {run + 1}/{runs}")
            limits.append(limit_run(lab, sender, receiver, conf, 1_500_000))
        limit = sorted(limits)[len(limits) // 2]
        count = int(limit * seconds)
        sustained, rings, overflows, tables, during, after = [], [], [], [], [], []
        for run in range(runs):
            rate = None
            while True:
                progress(f"{PART}: agent, run {run + 1}/{runs}, {count:,} new flows at "
                         f"{'full speed' if rate is None else f'{rate:,.0f}/s'}")
                exact, achieved, (ring, overflow), table, cpu_during, cpu_after = agent_run(
                    lab, sender, receiver, conf, count, rate, run)
                if exact:
                    break
                rate = LOSS_BACKOFF * (rate or achieved)
            sustained.append(achieved)
            rings.append(100 * ring)
            overflows.append(100 * overflow)
            tables.append(table / 2**20)
            during.append(cpu_during)
            after.append(cpu_after)
        progress(f"{PART}: a subscriber that never reads, {rss_seconds} s")
        rss = stuck_subscriber_rss(lab, sender, receiver, rss_seconds)
    case = f"every frame a new flow, {seconds} s, defaults"
    core = Figure("one core", "cores", [1.0] * runs)
    return [
        Result(PART, case, Figure("new flows/s without loss", "flows/s", sustained),
               Figure("trafgen alone (limit)", "frames/s", limits), aim=">= 0.95"),
        Result(PART, case, Figure("through any fallback: ring buffer and overflow map", "% of packets",
                                  [r + o for r, o in zip(rings, overflows, strict=True)]),
               better="lower", aim="<= 1", aim_of="median"),
        Result(PART, case, Figure("through the ring buffer", "% of packets", rings), better="lower"),
        Result(PART, case, Figure("through the overflow map", "% of packets", overflows), better="lower"),
        Result(PART, case, Figure("flow table at its largest (two halves)", "MiB", tables), better="lower"),
        Result(PART, case, Figure("collector CPU during the flood", "cores", during), core, better="lower"),
        Result(PART, case, Figure("collector CPU 2-4 s after the flood", "cores", after), core,
               aim="<= 0.05", better="lower"),
        Result(PART, f"a subscriber that never reads, {RSS_FLOWS:,} flows an eviction, {rss_seconds} s",
               Figure("collector peak RSS", "MiB", [rss]), Figure("bound", "MiB", [RSS_BOUND_MIB]),
               aim="<= 1", better="lower"),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rss-seconds", type=int, default=RSS_SECONDS)
    args = parser.parse_args()
    interrupt_on_sigterm()
    print(results_table(measure(args.seconds, args.runs, args.rss_seconds)))


if __name__ == "__main__":
    main()
