"""Fakes for the pipeline stages: clocks, a map fetcher, a ring-buffer reader, and flow rows."""
import threading
from collections import deque

import numpy as np

from flowcollect.pipeline import rows
from flowcollect.pipeline.timebase import Timebase, evicted
from flowcollect.records import layout
from flowcollect.records.batch import empty
from tests.flowtools import ip16, mac6

_ADDRESSES = ("src_ip", "dst_ip")
_MACS = ("src_mac", "dst_mac")


def flows(*rows, dtype=layout.FLOW_RECORD):
    """A batch of `dtype` rows from dicts of field values (addresses and MACs as text), others 0."""
    batch = np.zeros(len(rows), dtype=dtype)
    for i, row in enumerate(rows):
        for name, value in row.items():
            if name in _ADDRESSES:
                value = ip16(value)
            elif name in _MACS:
                value = mac6(value)
            batch[name][i] = value
    return batch


class FakeClock:
    """A clock in nanoseconds (wall or monotonic) that moves only when told."""

    def __init__(self, now_ns=0):
        self.now_ns = now_ns

    def __call__(self):
        return self.now_ns

    def advance(self, seconds):
        self.now_ns += round(seconds * 1e9)

    def seconds(self):
        """The same clock in seconds, as an eviction period's clock (time.monotonic) reads."""
        return self.now_ns / 1e9


class FakeFetcher:
    """A kernel map for MapTracer: swap_and_drain() returns what was put() since the last call.

    Like FlowKernel, it returns a view of a buffer it reuses. With hold set,
    swap_and_drain() swaps, signals `entered` and waits for `release` (a long drain).
    """

    def __init__(self, capacity=1024):
        self._buffer = empty(capacity)
        self._pending = []
        self._lock = threading.Lock()
        self.calls = 0
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self._called = threading.Condition()

    def put(self, batch):
        with self._lock:
            self._pending.append(batch.copy())

    def swap_and_drain(self):
        # The swap: what is put() from here on belongs to the next call.
        with self._lock:
            pending = rows.concatenate(self._pending) if self._pending else empty(0)
            self._pending = []
        if self.hold:
            self.entered.set()
            self.release.wait()
        self._buffer[:len(pending)] = pending
        with self._called:
            self.calls += 1
            self._called.notify_all()
        return self._buffer[:len(pending)], None

    def drain_flows(self, wall_minus_mono_ns, sampling):
        """swap_and_drain(), the rows made export rows as FlowKernel.drain_flows makes them."""
        drained, stats = self.swap_and_drain()
        return evicted(drained, Timebase(wall_ns=wall_minus_mono_ns, mono_ns=0), sampling), stats

    def wait_calls(self, count, timeout=5.0):
        """True once swap_and_drain() has returned `count` times in all."""
        with self._called:
            return self._called.wait_for(lambda: self.calls >= count, timeout)


class FakeRingBuf:
    """A ring buffer for RingBufTracer: read_ringbuf() returns the next put() batch, or no rows.

    Returns views of one reused buffer, as FlowKernel does.
    """

    def __init__(self, capacity=1024):
        self._buffer = empty(capacity)
        self._batches = deque()
        self._ready = threading.Condition()

    def put(self, batch):
        with self._ready:
            self._batches.append(batch.copy())
            self._ready.notify_all()

    def read_ringbuf(self, timeout_ms=0):
        with self._ready:
            if not self._ready.wait_for(lambda: self._batches, timeout_ms / 1000):
                return self._buffer[:0]
            batch = self._batches.popleft()
        self._buffer[:len(batch)] = batch
        return self._buffer[:len(batch)]


class FakeFlusher:
    """Counts flush() calls."""

    def __init__(self):
        self.flushes = 0

    def flush(self):
        self.flushes += 1
