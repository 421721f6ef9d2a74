"""Accounter: user-space aggregation of ring-buffer records (the seed's max-entries and period cases)."""
import errno
import random
from datetime import UTC, datetime

import pytest

from flowcollect.flow import Accounter
from flowcollect.pipeline import rows
from flowcollect.pipeline.channel import Channel
from flowcollect.records import layout
from tests.channels import receive_timeout, require_closed, require_nothing, start, wait_taken
from tests.fakes import FakeClock, flows
from tests.flowtools import only_flow

T = int(datetime(2022, 8, 23, 16, 33, 22, tzinfo=UTC).timestamp()) * 10**9
MONO_NOW = 1000

K1 = {"src_ip": "18.52.86.120", "src_port": 333, "dst_ip": "67.33.0.255", "dst_port": 8080}
K2 = {"src_ip": "170.187.204.221", "src_port": 12, "dst_ip": "67.33.0.255", "dst_port": 8080}
K3 = {"src_ip": "18.52.86.120", "src_port": 333, "dst_ip": "17.34.51.68", "dst_port": 443}


def packet(key, bytes_, start, end=None, flags=1, **fields):
    """One ring-buffer record: a one-packet flow."""
    return flows({**key, "bytes": bytes_, "packets": 1, "first_seen_ns": start,
                  "last_seen_ns": start if end is None else end, "tcp_flags": flags,
                  "errno_code": errno.E2BIG, **fields})


def metrics(row):
    return (int(row["bytes"]), int(row["packets"]), int(row["first_seen_ns"]),
            int(row["last_seen_ns"]), int(row["tcp_flags"]))


def wall(row):
    return int(row["time_flow_start_ns"]) - T, int(row["time_flow_end_ns"]) - T


def fixed_clocks():
    return (lambda: T), (lambda: MONO_NOW)


def test_evicts_everything_when_max_entries_is_reached():
    # GIVEN an accounter of 2 entries, with a fixed wall clock T and monotonic clock 1000 ns
    acc = Accounter(2, 3600, *fixed_clocks())
    inputs, evictor = Channel(20), Channel(20)
    worker = start(acc.account, inputs, evictor)

    # WHEN it accounts records of two flows
    require_nothing(evictor)
    inputs.put(packet(K1, 123, 123))
    inputs.put(packet(K2, 456, 456))
    inputs.put(packet(K1, 321, 789))
    # THEN nothing is evicted yet
    require_nothing(evictor, wait=0.1)

    # WHEN a record of a third flow arrives
    inputs.put(packet(K3, 111, 888))

    # THEN the two flows held are evicted, in one batch, aggregated
    batch = receive_timeout(evictor)
    require_nothing(evictor, wait=0.1)
    assert batch.flows.dtype == layout.FLOW_EXPORT
    assert len(batch) == 2
    k1 = only_flow(batch.flows, **K1)
    assert metrics(k1) == (444, 2, 123, 789, 1)
    assert wall(k1) == (-877, -211)
    k2 = only_flow(batch.flows, **K2)
    assert metrics(k2) == (456, 1, 456, 456, 1)
    assert wall(k2) == (-544, -544)

    # AND the third flow stays cached: it is what the end of input evicts
    inputs.close()
    last = receive_timeout(evictor)
    assert metrics(only_flow(last.flows, **K3)) == (111, 1, 888, 888, 1)
    assert len(last) == 1
    require_closed(evictor)
    worker.join(5)


def test_evicts_periodically_with_signed_time_conversion():
    # GIVEN an accounter evicting every 20 ms of its period clock (a fake one, moved by the
    # test), with fixed clocks to date the flows
    period = FakeClock()
    acc = Accounter(200, 0.020, *fixed_clocks(), period_clock=period.seconds)
    inputs, evictor = Channel(20), Channel(20)
    worker = start(acc.account, inputs, evictor)

    # WHEN three packets of k1 arrive, then 30 ms pass, then two more, then 30 ms
    for start_ns in (123, 456, 789):
        inputs.put(packet(K1, 10, start_ns))
    wait_taken(inputs)
    period.advance(0.030)
    first = receive_timeout(evictor)
    for start_ns in (1123, 1456):
        inputs.put(packet(K1, 10, start_ns))
    wait_taken(inputs)
    period.advance(0.030)
    second = receive_timeout(evictor)

    # THEN each period's packets come out as one flow
    assert len(first) == 1
    assert metrics(first.flows[0]) == (30, 3, 123, 789, 1)
    assert wall(first.flows[0]) == (-877, -211)
    assert len(second) == 1
    assert metrics(second.flows[0]) == (20, 2, 1123, 1456, 1)
    # AND times after the monotonic "now" land after T (signed arithmetic)
    assert wall(second.flows[0]) == (123, 456)

    # AND an idle period evicts nothing (no empty batches)
    period.advance(0.030)
    require_nothing(evictor, wait=0.1)
    inputs.close()
    require_closed(evictor)
    worker.join(5)


def test_a_batch_that_overflows_the_table_is_cut_at_the_first_key_that_does_not_fit():
    # GIVEN an accounter of 2 entries holding k1
    acc = Accounter(2, 3600, *fixed_clocks())
    assert acc.add(packet(K1, 1, 10)) == []

    # WHEN one batch brings k2, k1 again, k3 (no room) and k1 once more
    batch = rows.concatenate([packet(K2, 2, 20), packet(K1, 4, 30), packet(K3, 8, 40), packet(K1, 16, 50)])
    evictions = acc.add(batch)

    # THEN k1 and k2, with the rows before k3, are evicted
    assert len(evictions) == 1
    evicted = evictions[0].flows
    assert len(evicted) == 2
    assert metrics(only_flow(evicted, **K1)) == (5, 2, 10, 30, 1)
    assert metrics(only_flow(evicted, **K2)) == (2, 1, 20, 20, 1)
    # AND k3 and the k1 that came after the cut start the next table
    rest = acc.evict().flows
    assert len(rest) == 2
    assert metrics(only_flow(rest, **K3)) == (8, 1, 40, 40, 1)
    assert metrics(only_flow(rest, **K1)) == (16, 1, 50, 50, 1)
    assert acc.evict() is None


def test_aggregates_like_the_kernel_fold():
    # GIVEN an accounter
    acc = Accounter(10, 3600, *fixed_clocks(), sampling=50)
    # WHEN packets of one flow arrive out of order, with different flags and DSCP
    acc.add(rows.concatenate([
        packet(K1, 100, 500, flags=0x02, dscp=10),
        packet(K1, 200, 900, flags=0x10, dscp=46),
        packet(K1, 300, 300, flags=0x01, dscp=8),
    ]))
    row = acc.evict().flows[0]
    # THEN sums, min/max times, OR-ed flags, the latest packet's DSCP, the rate
    assert metrics(row) == (600, 3, 300, 900, 0x13)
    assert row["dscp"] == 46
    assert row["errno_code"] == errno.E2BIG
    assert row["sampling"] == 50


def test_keys_differing_in_any_field_are_different_flows():
    acc = Accounter(100, 3600, *fixed_clocks())
    variants = [{}, {"if_index": 2}, {"direction": 1}, {"src_mac": "02:00:00:00:00:01"},
                {"vlan_id": 7}, {"icmp_type": 3}, {"icmp_code": 1}, {"protocol": 6}, {"eth_protocol": 0x86DD}]
    acc.add(rows.concatenate([packet({**K1, **v}, 1, 1) for v in variants]))
    assert len(acc.evict()) == len(variants)


def reference_accounter(batches, max_entries):
    """The seed's algorithm, record by record over a dict: the evictions, as sorted tuples."""
    table, evictions = {}, []

    def evict():
        if table:
            evictions.append(sorted(table.values()))
            table.clear()

    for batch in batches:
        for row in batch:
            key = row.tobytes()[:layout.KEY_SIZE]
            if key not in table and len(table) >= max_entries:
                evict()
            b, p, first, last, flags = table.get(key, (0, 0, None, 0, 0))
            first = row["first_seen_ns"] if first is None else min(first, row["first_seen_ns"])
            table[key] = (b + int(row["bytes"]), p + 1, int(first),
                          max(last, int(row["last_seen_ns"])), flags | int(row["tcp_flags"]))
    evict()
    return evictions


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_record_by_record_algorithm(seed):
    # GIVEN random batches over a small set of keys and a small table
    rng = random.Random(seed)
    keys = [{"src_port": p, "dst_port": 80, "if_index": i} for p in range(12) for i in (1, 2)]
    batches = [rows.concatenate([packet(rng.choice(keys), rng.randint(1, 1500), rng.randint(1, 10**6),
                                      flags=rng.choice((1, 2, 16)))
                               for _ in range(rng.randint(1, 40))]) for _ in range(30)]
    max_entries = rng.choice((1, 3, 7, 16))
    acc = Accounter(max_entries, 3600, *fixed_clocks())

    # WHEN they are accounted, then the rest is evicted
    got = [e.flows for batch in batches for e in acc.add(batch)]
    got.append(acc.evict().flows)

    # THEN the evictions are those of the seed's per-record algorithm
    def as_tuples(rows):
        return sorted((int(r["bytes"]), int(r["packets"]), int(r["first_seen_ns"]),
                       int(r["last_seen_ns"]), int(r["tcp_flags"])) for r in rows)

    assert [as_tuples(rows) for rows in got] == reference_accounter(batches, max_entries)
