"""Deduper: the seed's firstCome semantics over numpy batches (its first-come, just-mark and expiry cases)."""
import random

import numpy as np
import pytest

from flowcollect.flow import DEDUPER_FIRST_COME, DEDUPER_NONE, Deduper, deduper_provider
from flowcollect.pipeline.channel import Channel
from flowcollect.pipeline.flow_key import DEDUP_KEY, hash_words
from flowcollect.pipeline.flow_table import FlowTable, group_keys
from flowcollect.records import layout
from flowcollect.records.batch import FlowBatch
from flowcollect.settings.errors import ConfigError
from tests.channels import receive_timeout, require_closed, require_nothing, start
from tests.fakes import FakeClock, flows

MAC1, MAC2 = "01:00:00:00:00:00", "02:00:00:00:00:00"
ONE_IF1 = {"eth_protocol": 1, "direction": 1, "src_port": 123, "dst_port": 456,
           "src_mac": MAC1, "dst_mac": MAC1, "if_index": 1, "packets": 2, "bytes": 456, "tcp_flags": 1}
ONE_IF2 = {**ONE_IF1, "src_mac": MAC2, "dst_mac": MAC2, "if_index": 2}
TWO_IF1 = {**ONE_IF1, "src_port": 333}
TWO_IF2 = {**TWO_IF1, "direction": 0, "src_mac": MAC2, "dst_mac": MAC2, "if_index": 2}
NAMES = {id(ONE_IF1): "oneIf1", id(ONE_IF2): "oneIf2", id(TWO_IF1): "twoIf1", id(TWO_IF2): "twoIf2"}


def batch(*rows):
    return FlowBatch(flows=flows(*rows, dtype=layout.FLOW_EXPORT))


def expected(*rows, duplicate=()):
    """The rows as a FLOW_EXPORT array, with the given positions marked duplicate."""
    rows = flows(*rows, dtype=layout.FLOW_EXPORT)
    rows["duplicate"][list(duplicate)] = 1
    return rows


def assert_rows(got, want):
    assert got is not None, "expected a batch, got nothing"
    assert got.flows.dtype == layout.FLOW_EXPORT
    assert got.flows.tobytes() == want.tobytes(), (got.flows, want)


def dedupe_stage(deduper, clock=None):
    inputs, outputs = Channel(100), Channel(100)
    stage = deduper_provider(deduper) if clock is None else deduper_provider(deduper, clock)
    worker = start(stage, inputs, outputs)
    return inputs, outputs, worker


def test_first_come_drops_the_flows_of_other_interfaces():
    # GIVEN a firstCome deduper with a 1 minute expiry
    inputs, outputs, _ = dedupe_stage(Deduper(DEDUPER_FIRST_COME, 60, False))

    # WHEN two flows come, each from two interfaces
    inputs.put(batch(ONE_IF2, TWO_IF1, ONE_IF1, ONE_IF1, TWO_IF2, ONE_IF2))
    # THEN only the rows of the first interface of each flow pass, in order
    assert_rows(receive_timeout(outputs), expected(ONE_IF2, TWO_IF1, ONE_IF2))

    # WHEN they come again: the first interface still owns each flow
    inputs.put(batch(ONE_IF1, ONE_IF2))
    assert_rows(receive_timeout(outputs), expected(ONE_IF2))
    inputs.close()
    require_closed(outputs)


def test_just_mark_keeps_duplicates_marked():
    # GIVEN a firstCome deduper that only marks duplicates
    inputs, outputs, _ = dedupe_stage(Deduper(DEDUPER_FIRST_COME, 60, True))

    # WHEN the same flows come
    inputs.put(batch(ONE_IF2, TWO_IF1, ONE_IF1, ONE_IF1, TWO_IF2, ONE_IF2))
    # THEN every row passes, those of other interfaces marked duplicate
    assert_rows(receive_timeout(outputs),
                expected(ONE_IF2, TWO_IF1, ONE_IF1, ONE_IF1, TWO_IF2, ONE_IF2, duplicate=(2, 3, 4)))
    inputs.put(batch(ONE_IF1, ONE_IF2))
    assert_rows(receive_timeout(outputs), expected(ONE_IF1, ONE_IF2, duplicate=(0,)))


def test_an_idle_flow_expires_and_its_next_interface_owns_it():
    # GIVEN a firstCome deduper with a 15 s expiry and a fake clock
    clock = FakeClock(10**12)
    inputs, outputs, _ = dedupe_stage(Deduper(DEDUPER_FIRST_COME, 15, False), clock)

    # WHEN both flows come from interface 1 first
    inputs.put(batch(ONE_IF1, TWO_IF1, ONE_IF2))
    assert_rows(receive_timeout(outputs), expected(ONE_IF1, TWO_IF1))

    # THEN 10 s later, flow one from interface 2 is still a duplicate
    clock.advance(10)
    inputs.put(batch(ONE_IF2))
    require_nothing(outputs, wait=0.1)

    # AND 20 s after the start, flow two (unseen for 20 s) belongs to whoever comes first,
    # while flow one (seen 10 s ago) still belongs to interface 1
    clock.advance(10)
    inputs.put(batch(ONE_IF2, TWO_IF2, TWO_IF1))
    assert_rows(receive_timeout(outputs), expected(TWO_IF2))

    # AND 20 s later both have expired: interface 2 owns both
    clock.advance(20)
    inputs.put(batch(ONE_IF2, TWO_IF2))
    assert_rows(receive_timeout(outputs), expected(ONE_IF2, TWO_IF2))


def test_expiry_is_inclusive_like_the_seed():
    # GIVEN a flow owned by interface 1, 15 s expiry
    clock = FakeClock(0)
    dedupe = Deduper(DEDUPER_FIRST_COME, 15, False).batch_filter(clock)
    dedupe(batch(ONE_IF1))
    # WHEN interface 2 reports it exactly 15 s later, THEN it is still a duplicate
    clock.advance(15)
    assert dedupe(batch(ONE_IF2)) is None
    # AND 15 s + 1 ns after that sighting it has expired
    clock.advance(15)
    clock.now_ns += 1
    assert_rows(dedupe(batch(ONE_IF2)), expected(ONE_IF2))


def test_an_all_duplicate_batch_sends_nothing_and_order_is_kept():
    dedupe = Deduper(DEDUPER_FIRST_COME, 60, False).batch_filter(FakeClock())
    ports = list(range(1000, 1100))
    random.Random(1).shuffle(ports)
    first = dedupe(batch(*({**ONE_IF1, "src_port": p} for p in ports)))
    assert first.flows["src_port"].tolist() == ports
    assert dedupe(batch(*({**ONE_IF2, "src_port": p} for p in ports))) is None


def test_none_passes_everything_unchanged():
    deduper = Deduper(DEDUPER_NONE, 60, False)
    assert not deduper.enabled()
    assert Deduper(DEDUPER_FIRST_COME, 60, False).enabled()
    inputs, outputs, _ = dedupe_stage(deduper)
    sent = batch(ONE_IF1, ONE_IF2, ONE_IF1)
    inputs.put(sent)
    assert receive_timeout(outputs) is sent
    inputs.close()
    require_closed(outputs)


def test_an_unknown_type_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="firstCome"):
        Deduper("lastCome", 60, False)


def reference_first_come(batches, expire_ns, just_mark):
    """The seed's deduper, record by record: a dict of key -> (if_index, expiry)."""
    cache, out = {}, []
    for now, rows in batches:
        for key in [k for k, (_, expiry) in cache.items() if now > expiry]:
            del cache[key]
        kept = []
        for row in rows:
            key = (int(row["src_port"]), int(row["dst_port"]), int(row["protocol"]))
            owner = cache.get(key, (int(row["if_index"]), 0))[0]
            cache[key] = (owner, now + expire_ns)
            duplicate = owner != row["if_index"]
            if not duplicate or just_mark:
                kept.append((*key, int(row["if_index"]), int(duplicate)))
        if kept:
            out.append(kept)
    return out


@pytest.mark.parametrize("just_mark", (False, True))
@pytest.mark.parametrize("seed", range(4))
def test_matches_the_record_by_record_algorithm(seed, just_mark):
    # GIVEN random batches of a few flows seen on random interfaces, at random times
    rng = random.Random(seed)
    now, batches = 10**12, []
    for _ in range(60):
        now += rng.choice((0, 1, 3, 7, 20)) * 10**9
        rows = flows(*({"src_port": rng.randint(1, 6), "dst_port": rng.choice((53, 80)),
                        "protocol": rng.choice((6, 17)), "if_index": rng.randint(1, 4),
                        "direction": rng.randint(0, 1), "src_mac": f"0{rng.randint(0, 9)}:00:00:00:00:00"}
                       for _ in range(rng.randint(1, 50))), dtype=layout.FLOW_EXPORT)
        batches.append((now, rows))
    clock = FakeClock()
    dedupe = Deduper(DEDUPER_FIRST_COME, 10, just_mark).batch_filter(clock)

    # WHEN the deduper filters them
    got = []
    for at, rows in batches:
        clock.now_ns = at
        result = dedupe(FlowBatch(flows=rows.copy()))
        if result is not None:
            got.append([(int(r["src_port"]), int(r["dst_port"]), int(r["protocol"]), int(r["if_index"]),
                         int(r["duplicate"])) for r in result.flows])

    # THEN it keeps and marks exactly what the seed's algorithm does
    assert got == reference_first_come(batches, 10 * 10**9, just_mark)


def test_a_hash_collision_never_merges_two_keys():
    # GIVEN three different keys forced onto one hash, and one more key
    words = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4], [7, 8]], dtype=np.uint64)
    hashes = np.array([9, 9, 9, 9, 9, 1], dtype=np.uint64)

    # WHEN the rows are grouped, THEN groups follow the words, not the hash
    first, inverse = group_keys(words, hashes)
    assert sorted(first.tolist()) == [0, 1, 3, 5]
    assert inverse[0] == inverse[2] and inverse[1] == inverse[4]
    assert len({inverse[0], inverse[1], inverse[3], inverse[5]}) == 4

    # AND a table finds each colliding key in its own slot
    table = FlowTable(2, np.dtype(np.uint8))
    slots = table.add(words[[0, 1, 5]], hashes[[0, 1, 5]])
    found = table.lookup(words, hashes)
    assert found.tolist() == [slots[0], slots[1], slots[0], -1, slots[1], slots[2]]


def test_dedup_key_leaves_out_interface_macs_and_direction_only():
    base = flows(ONE_IF1, dtype=layout.FLOW_EXPORT)
    same = flows({**ONE_IF1, "if_index": 9, "direction": 0, "src_mac": MAC2, "dst_mac": MAC2},
                 dtype=layout.FLOW_EXPORT)
    assert (DEDUP_KEY.words(base) == DEDUP_KEY.words(same)).all()
    for field, value in (("vlan_id", 5), ("protocol", 6), ("icmp_type", 1), ("icmp_code", 1),
                         ("eth_protocol", 2), ("dst_port", 1), ("src_ip", "10.0.0.1")):
        other = flows({**ONE_IF1, field: value}, dtype=layout.FLOW_EXPORT)
        assert hash_words(DEDUP_KEY.words(other)) != hash_words(DEDUP_KEY.words(base)), field


def test_just_mark_copies_rows_it_may_not_write():
    # GIVEN rows that are read-only, as when they are a view of a received message
    dedupe = Deduper(DEDUPER_FIRST_COME, 60, True).batch_filter(FakeClock())
    rows = flows(ONE_IF1, ONE_IF2, dtype=layout.FLOW_EXPORT)
    rows.flags.writeable = False
    # WHEN they are marked, THEN the result is a marked copy and the input is untouched
    assert_rows(dedupe(FlowBatch(flows=rows)), expected(ONE_IF1, ONE_IF2, duplicate=(1,)))
    assert rows["duplicate"].tolist() == [0, 0]
