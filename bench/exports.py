"""Exports: records/s of one worker (one core) encoding JSON lines, IPFIX and NetFlow v9.

Batches of realistic flows (70% IPv4, 28% IPv6, 2% ARP; a few local
addresses against a Zipf-distributed pool of remote ones; service ports
against ephemeral ones; log-normal packet counts) go through:
  - JSON lines: json_records.encode_lines, the encoder of files and the ZeroMQ JSON topic;
  - IPFIX: IpfixEncoder.encode, every UDP datagram of the batch (no send);
  - NetFlow v9: NetflowV9Encoder.encode, the same templates and messages;
and, measured in the same run, as references:
  - floor: a numpy copy of the batch (the least any per-batch work costs);
  - orjson, list of dicts: orjson.dumps of the records already built as dicts
    (serialisation alone; building those dicts is what limited the
    dict-per-flow encoder to 100-200k records/s).
Each path runs --runs times, interleaved; median/min/max records/s.
Run: .venv/bin/python -m bench.exports [--flows 100000] [--runs 5]
"""
import argparse
import os
import time

import numpy as np
import orjson

from bench.common import Figure, markdown_table, progress, rate, timed
from flowcollect.export.ipfix import IpfixEncoder
from flowcollect.export.netflow9 import NetflowV9Encoder
from flowcollect.records.batch import FlowBatch
from flowcollect.records.json_lines import encode_lines
from flowcollect.records.layout import FLOW_EXPORT


def realistic_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    flows = np.zeros(n, dtype=FLOW_EXPORT)
    now = time.time_ns()
    start = now - rng.integers(0, 5_000_000_000, n)  # one 5 s eviction period
    flows["time_flow_start_ns"] = start
    flows["time_flow_end_ns"] = start + rng.integers(0, 5_000_000_000, n)
    interface = rng.integers(0, 4, n)
    flows["if_index"] = np.array([2, 3, 17, 123])[interface]
    flows["direction"] = rng.integers(0, 2, n)
    egress = flows["direction"] == 1
    macs = rng.integers(0, 256, (8, 6), dtype=np.uint8)
    flows["src_mac"] = macs[interface * 2 + flows["direction"]]
    flows["dst_mac"] = macs[interface * 2 + 1 - flows["direction"]]
    kind = rng.random(n)
    v4, v6 = kind < 0.70, (kind >= 0.70) & (kind < 0.98)
    flows["eth_protocol"] = np.where(v4, 0x0800, np.where(v6, 0x86DD, 0x0806))
    remote_pool = rng.integers(0, 256, (20_000, 16), dtype=np.uint8)
    remote_pool[:, :4] = [0x2A, 0x00, 0x14, 0x50]
    remote_pool[::3, 8:14] = 0  # a third with a '::' run
    local = rng.integers(0, 256, (4, 16), dtype=np.uint8)
    remote = remote_pool[np.minimum(rng.zipf(1.3, n), len(remote_pool)) - 1]
    here = local[rng.integers(0, 4, n)]
    for column, when_egress, when_ingress in (("src_ip", here, remote), ("dst_ip", remote, here)):
        address = np.where(egress[:, None], when_egress, when_ingress)
        address[v4, :10], address[v4, 10:12] = 0, 0xFF  # IPv4-mapped
        flows[column] = address
    service = np.array([443, 80, 53, 22, 8080, 123, 5432, 6443])[rng.integers(0, 8, n)]
    ephemeral = rng.integers(32768, 61000, n)
    flows["src_port"] = np.where(egress, ephemeral, service)
    flows["dst_port"] = np.where(egress, service, ephemeral)
    pick = rng.random(n)
    flows["protocol"] = np.where(pick < 0.8, 6, np.where(pick < 0.98, 17, np.where(v6, 58, 1)))
    icmp = np.isin(flows["protocol"], (1, 58))
    flows["icmp_type"][icmp] = 8
    flows["src_port"][icmp] = flows["dst_port"][icmp] = 0
    flows["packets"] = np.minimum(rng.lognormal(1.5, 2.0, n).astype(np.int64) + 1, 10**7)
    flows["bytes"] = flows["packets"] * rng.integers(60, 1500, n)
    flows["tcp_flags"] = np.where(flows["protocol"] == 6, rng.choice([0x10, 0x18, 0x12, 0x02, 0x11, 0x19, 0x110], n), 0)
    flows["dscp"] = np.where(rng.random(n) < 0.1, 46, 0)
    return FlowBatch(flows, {2: "eth0", 3: "eth1", 17: "veth3f2a9c1", 123: "br-5d1e0c7a"}, "10.0.0.5")


def pin_one_core():
    """Run on one CPU, as a worker process does."""
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    return cpus[-1]


def measure(flows, runs):
    batch = realistic_batch(flows)
    dicts = [orjson.loads(line) for line in bytes(encode_lines(batch)).splitlines()]
    json_bytes = len(encode_lines(batch))
    encoder = IpfixEncoder(template_refresh_seconds=0, template_refresh_messages=0)  # templates once
    ipfix_bytes = sum(len(m) for m in encoder.encode(batch))
    v9 = NetflowV9Encoder(template_refresh_seconds=0, template_refresh_messages=0)
    v9_bytes = sum(len(m) for m in v9.encode(batch))
    paths = {
        "floor: numpy copy of the batch": lambda: batch.flows.copy(),
        "JSON lines (encode_lines)": lambda: encode_lines(batch),
        "reference: orjson.dumps of prebuilt dicts": lambda: orjson.dumps(dicts),
        "IPFIX (IpfixEncoder.encode)": lambda: encoder.encode(batch),
        "NetFlow v9 (NetflowV9Encoder.encode)": lambda: v9.encode(batch),
    }
    rates = {name: [] for name in paths}
    for run in range(runs):
        progress(f"exports {flows:,} flows: run {run + 1}/{runs}")
        for name, work in paths.items():
            _, seconds = timed(work)
            rates[name].append(rate(flows, seconds))
    figures = [Figure(name, "records/s", runs_) for name, runs_ in rates.items()]
    sizes = {"JSON lines (encode_lines)": json_bytes / flows,
             "reference: orjson.dumps of prebuilt dicts": json_bytes / flows,
             "IPFIX (IpfixEncoder.encode)": ipfix_bytes / flows,
             "NetFlow v9 (NetflowV9Encoder.encode)": v9_bytes / flows,
             "floor: numpy copy of the batch": FLOW_EXPORT.itemsize}
    return figures, sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cpu = pin_one_core()
    figures, sizes = measure(args.flows, args.runs)
    floor = figures[0]
    rows = [[fig.name, *fig.cells(), len(fig.runs), f"{fig.ratio_to(floor):.3f}", f"{sizes[fig.name]:.0f}"]
            for fig in figures]
    print(f"\nExports, {args.flows:,} realistic flows per batch, one core (CPU {cpu}):\n")
    print(markdown_table(["path", "records/s median", "min", "max", "runs", "/ floor", "bytes/record"], rows))


if __name__ == "__main__":
    main()
