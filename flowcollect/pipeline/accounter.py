"""Accounter: per-flow counting in user space for packets the kernel map had no room for.

When the flow map is full the kernel sends each packet of a new flow through
the ring buffer as a one-packet record. The accounter aggregates those records
by their full flow key, as the kernel would have: packets and bytes summed,
first/last seen as min/max, TCP flags OR-ed, DSCP of the latest packet. It
evicts every flow it holds every `evict_timeout`, and, when a record of a new
flow arrives while it already holds `max_entries` flows, before adding it.

Records arrive in batches, so each batch is aggregated in a few numpy passes
per "segment": the rows up to the one whose new key finds the table full.
"""
import time
from collections.abc import Callable

import numpy as np

from flowcollect.pipeline import rows
from flowcollect.pipeline.channel import Channel, Closed
from flowcollect.pipeline.flow_key import FULL_KEY, hash_words
from flowcollect.pipeline.flow_table import FlowTable, group_keys
from flowcollect.pipeline.timebase import Clock, PeriodClock, Timebase, evicted
from flowcollect.records.batch import FlowBatch
from flowcollect.records.layout import FLOW_RECORD, Rows


class Accounter:
    """Aggregates ring-buffer records; not thread-safe (one account() loop owns it).

    evict_timeout: seconds. clock: wall-clock epoch ns; mono_clock: monotonic ns
    (the pair that converts kernel times at eviction). period_clock: monotonic
    seconds, what the eviction period runs on. sampling: the kernel's 1-in-N
    rate, carried into every evicted row. on_eviction(flows): told of each eviction.
    """

    def __init__(self, max_entries: int, evict_timeout: float, clock: Clock = time.time_ns,
                 mono_clock: Clock = time.monotonic_ns, *, sampling: int = 0,
                 period_clock: PeriodClock = time.monotonic, on_eviction: Callable[[int], None] | None = None) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._max_entries = max_entries
        self._evict_timeout = evict_timeout
        self._clock = clock
        self._mono_clock = mono_clock
        self._period_clock = period_clock
        self._on_eviction = on_eviction or (lambda flows: None)
        self._sampling = sampling
        self._flows = FlowTable(FULL_KEY.width, FLOW_RECORD)

    def __len__(self) -> int:
        return len(self._flows)

    def add(self, batch: Rows) -> list[FlowBatch]:
        """Account a FLOW_RECORD batch; returns the FlowBatches evicted because the table was full."""
        batch = np.ascontiguousarray(batch, dtype=FLOW_RECORD)
        evictions: list[FlowBatch] = []
        while len(batch):
            keys = _BatchKeys(batch, self._flows)
            new_starts = keys.first[keys.slots < 0]
            room = self._max_entries - len(self._flows)
            if len(new_starts) <= room:
                self._accumulate(batch, keys)
                break
            # The (room+1)-th new key, in arrival order, finds the table full:
            # the rows before it are accounted, then everything is evicted.
            cut = np.partition(new_starts, room)[room]
            if cut:
                self._accumulate(batch[:cut], _BatchKeys(batch[:cut], self._flows))
            evicted_now = self.evict()
            if evicted_now is not None:
                evictions.append(evicted_now)
            batch = batch[cut:]
        return evictions

    def evict(self) -> FlowBatch | None:
        """Every flow held, as a FlowBatch of FLOW_EXPORT rows; None when there is none."""
        if not len(self._flows):
            return None
        timebase = Timebase.read(self._clock, self._mono_clock)
        flows = evicted(self._flows.values, timebase, self._sampling)
        self._flows.clear()
        self._on_eviction(len(flows))
        return FlowBatch(flows=flows)

    def account(self, in_ch: Channel[Rows], out_ch: Channel[FlowBatch]) -> None:
        """The channel stage: FLOW_RECORD batches in, FlowBatches out, until in_ch closes.

        Then the flows still held are evicted and out_ch is closed.
        """
        try:
            next_eviction = self._period_clock() + self._evict_timeout
            while True:
                try:
                    batch: Rows | None = in_ch.get(timeout=max(next_eviction - self._period_clock(), 0))
                except TimeoutError:
                    batch = None
                except Closed:
                    self._send(self.evict(), out_ch)
                    return
                if batch is not None:
                    for full in self.add(batch):
                        self._send(full, out_ch)
                now = self._period_clock()
                if now >= next_eviction:
                    # The next period is set before this one's flows go out: a consumer that
                    # acts on them at once is already in that period.
                    next_eviction = now + self._evict_timeout
                    self._send(self.evict(), out_ch)
        finally:
            out_ch.close()

    @staticmethod
    def _send(batch: FlowBatch | None, out_ch: Channel[FlowBatch]) -> None:
        if batch is not None and len(batch):
            out_ch.put(batch)

    def _accumulate(self, batch: Rows, keys: "_BatchKeys") -> None:
        """Fold every row of batch into the table (all its new keys fit)."""
        slots = keys.slots
        new = slots < 0
        if new.any():
            starts = keys.first[new]
            slots[new] = self._flows.add(keys.words[starts], keys.hashes[starts])
            table = self._flows.values
            # A new flow starts as its first record, with the sums at zero: that
            # record is added below with the others (min, max and OR are idempotent).
            rows.put(table, slots[new], rows.take(batch, starts))
            table["packets"][slots[new]] = 0
            table["bytes"][slots[new]] = 0
        table = self._flows.values
        row_slots = slots[keys.inverse]
        np.add.at(table["packets"], row_slots, batch["packets"])
        np.add.at(table["bytes"], row_slots, batch["bytes"])
        np.minimum.at(table["first_seen_ns"], row_slots, batch["first_seen_ns"])
        np.maximum.at(table["last_seen_ns"], row_slots, batch["last_seen_ns"])
        np.bitwise_or.at(table["tcp_flags"], row_slots, batch["tcp_flags"])
        # DSCP of the latest packet, as the kernel-side per-CPU fold reports it.
        latest = batch["last_seen_ns"] == table["last_seen_ns"][row_slots]
        table["dscp"][row_slots[latest]] = batch["dscp"][latest]


class _BatchKeys:
    """A batch's full keys, grouped, and each group's slot in the table (-1: not there)."""

    def __init__(self, batch: Rows, table: FlowTable) -> None:
        self.words = FULL_KEY.words(batch)
        self.hashes = hash_words(self.words)
        self.first, self.inverse = group_keys(self.words, self.hashes)
        self.slots = table.lookup(self.words[self.first], self.hashes[self.first])
