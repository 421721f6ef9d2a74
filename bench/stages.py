"""Stages: records/s of dedup + decorate on one core, against a per-record dict and a plain copy.

Each case is a sequence of 100k-record evictions from a host where a share of
the packets is seen on two interfaces (a veth and its bridge, say): those rows
are the duplicates. 80% of the flows of an eviction are still alive in the
next, 20% are new, and the clock moves 5 s per eviction with a 10 s dedup
expiry, so the deduper works in steady state against a cache of ~2 evictions
of keys. One run = a fresh deduper fed WARMUP evictions off the clock, then
MEASURED evictions timed. Paths:
  - flowcollect: FirstComeCache.process then Decorator.process (the worker's path);
  - dict (seed's loop): the seed's firstCome algorithm, one Python dict
    operation per record, over keys already extracted with numpy, plus the
    same decorator: what a straightforward Python port would cost;
  - copy (floor): one copy of the batch's rows, the least any filter costs.
Run: .venv/bin/python -m bench.stages [--runs 5] [--records 100000]
"""
import argparse
import time

import numpy as np

from bench.common import Figure, markdown_table, progress, rate, timed
from flowcollect.flow import DEDUPER_FIRST_COME, Deduper
from flowcollect.pipeline import rows
from flowcollect.pipeline.decorator import Decorator
from flowcollect.pipeline.flow_key import DEDUP_KEY
from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch

DUPLICATE_SHARES = (0.01, 0.10, 0.50)
EVICTION_PERIOD_NS = 5 * 10**9
EXPIRY_S = 10.0
SURVIVING_SHARE = 0.8
WARMUP = 2
MEASURED = 4
INTERFACES = {i: f"veth{i:04x}" for i in range(2, 42)}
BRIDGE_IF_INDEX = 1
INTERFACES[BRIDGE_IF_INDEX] = "br0"


class FlowPopulation:
    """Random flows as the kernel keys them: IPv4-mapped addresses, ports, TCP/UDP, pod interfaces."""

    def __init__(self, rng):
        self._rng = rng

    def new(self, n):
        rng = self._rng
        flows = np.zeros(n, dtype=layout.FLOW_EXPORT)
        flows["eth_protocol"] = 0x0800
        for field, prefix in (("src_ip", 10), ("dst_ip", 172)):
            addr = flows[field]
            addr[:, 10:12] = 0xFF
            addr[:, 12] = prefix
            addr[:, 13:16] = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
        flows["src_mac"] = rng.integers(0, 256, size=(n, 6), dtype=np.uint8)
        flows["dst_mac"] = rng.integers(0, 256, size=(n, 6), dtype=np.uint8)
        flows["src_port"] = rng.integers(32768, 61000, size=n)
        flows["dst_port"] = rng.choice([53, 80, 443, 5432, 6379, 8080, 9092], size=n)
        flows["protocol"] = rng.choice([6, 6, 6, 17], size=n)
        flows["if_index"] = rng.integers(2, 42, size=n)
        flows["direction"] = rng.integers(0, 2, size=n)
        flows["packets"] = rng.integers(1, 1000, size=n)
        flows["bytes"] = flows["packets"] * rng.integers(60, 1500, size=n)
        flows["tcp_flags"] = 0x18
        return flows

    def next_eviction(self, previous, n, duplicate_share):
        """n rows: survivors of `previous` and new flows, a duplicate_share of them seen again on the bridge."""
        rng = self._rng
        originals = n - round(n * duplicate_share)
        if previous is None:
            flows = self.new(originals)
        else:
            alive = previous[previous["if_index"] != BRIDGE_IF_INDEX]
            survivors = rows.take(alive, rng.permutation(len(alive))[:round(originals * SURVIVING_SHARE)])
            flows = rows.concatenate([survivors, self.new(originals - len(survivors))])
        seen_twice = rows.take(flows, rng.choice(len(flows), size=n - originals, replace=False))
        seen_twice["if_index"] = BRIDGE_IF_INDEX
        seen_twice["direction"] ^= 1
        seen_twice["src_mac"] = 0xAA
        both = rows.concatenate([flows, seen_twice])
        return rows.take(both, rng.permutation(len(both)))


def evictions(n, duplicate_share, seed=1):
    population, out, previous = FlowPopulation(np.random.default_rng(seed)), [], None
    for _ in range(WARMUP + MEASURED):
        previous = population.next_eviction(previous, n, duplicate_share)
        out.append(previous)
    return out


class SeedDictDeduper:
    """The seed's firstCome, record by record, with a dict: the Python baseline."""

    def __init__(self, expire_ns, clock):
        self._expire_ns, self._clock, self._cache = expire_ns, clock, {}

    def process(self, batch):
        now = self._clock()
        cache = self._cache
        for key in [k for k, (_, expiry) in cache.items() if now > expiry]:
            del cache[key]
        expiry = now + self._expire_ns
        words = DEDUP_KEY.words(batch.flows)
        words = np.ascontiguousarray(words)
        keys = words.view(np.dtype((np.void, words.shape[1] * 8))).ravel().tolist()
        keep = []
        for key, if_index in zip(keys, batch.flows["if_index"].tolist(), strict=True):
            owner = cache.get(key)
            owner = if_index if owner is None else owner[0]
            cache[key] = (owner, expiry)
            keep.append(owner == if_index)
        return FlowBatch(flows=rows.take(batch.flows, np.array(keep)))


class Clock:
    def __init__(self):
        self.now_ns = 10**12

    def __call__(self):
        return self.now_ns


def run_path(make_dedupe, batches):
    """Records/s of dedup + decorate over the measured evictions, and the rows passed on."""
    clock = Clock()
    dedupe, decorate = make_dedupe(clock), Decorator("192.0.2.10", INTERFACES.__getitem__)
    kept = 0
    seconds = 0.0
    for i, flows in enumerate(batches):
        clock.now_ns += EVICTION_PERIOD_NS
        out, took = timed(lambda flows=flows: decorate.process(dedupe.process(FlowBatch(flows=flows))))
        if i >= WARMUP:
            seconds += took
            kept += len(out)
    return rate(sum(len(b) for b in batches[WARMUP:]), seconds), kept


def copy_floor(batches):
    _, seconds = timed(lambda: [rows.raw(b).copy() for b in batches[WARMUP:]])
    return rate(sum(len(b) for b in batches[WARMUP:]), seconds)


def measure(n, share, runs):
    batches = evictions(n, share)
    ours, seed_dict, floor = [], [], []
    for run in range(runs):
        progress(f"{share:.0%} duplicates: run {run + 1}/{runs}")
        r, kept = run_path(lambda clock: Deduper(DEDUPER_FIRST_COME, EXPIRY_S).batch_filter(clock), batches)
        ours.append(r)
        r, kept_dict = run_path(lambda clock: SeedDictDeduper(int(EXPIRY_S * 1e9), clock), batches)
        seed_dict.append(r)
        # Same input, same semantics: both must pass on the same rows.
        assert kept == kept_dict, (kept, kept_dict)
        floor.append(copy_floor(batches))
    dropped = 1 - kept / (n * MEASURED)
    return (Figure("flowcollect dedup + decorate", "records/s", ours),
            Figure("dict per record (seed's loop) + decorate", "records/s", seed_dict),
            Figure("copy of the batch (floor)", "records/s", floor)), dropped


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    table = []
    started = time.perf_counter()
    for share in DUPLICATE_SHARES:
        figures, dropped = measure(args.records, share, args.runs)
        _ours, seed_dict, floor = figures
        table.extend([f"{share:.0%}", f"{dropped:.1%}", fig.name, *fig.cells(), len(fig.runs),
                      f"{fig.ratio_to(seed_dict):.1f}", f"{fig.ratio_to(floor):.2f}"]
                     for fig in figures)
    print(f"dedup (firstCome, drop) + decorate, batches of {args.records:,} records, "
          f"{MEASURED} evictions per run after {WARMUP} of warm-up, one core")
    print(markdown_table(["duplicates", "dropped", "path", "median records/s", "min", "max", "runs",
                          "x dict", "x copy"], table))
    progress(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
