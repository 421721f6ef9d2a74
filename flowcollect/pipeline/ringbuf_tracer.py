"""Ring-buffer tracer: forwards the kernel's one-packet records to the accounter.

The kernel sends a packet through the ring buffer when its flow could not be
inserted in the flow map; errno_code says why. E2BIG means the map is full:
then the map tracer is asked for an early eviction, at most once per
min_flush_interval (records queued behind the first E2BIG one would each ask
again, for a table that is already being emptied). The interval is short,
MIN_FLUSH_INTERVAL_S: a swap lays the next half out for the flows the full one
refused (kernel/table_sizing.py), so a burst into a small table stops going
through here after one or two flushes. Every log_timeout window with
records in it is summed up in one log line.
"""
import errno
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from flowcollect.pipeline.channel import Channel
from flowcollect.pipeline.sources import Flusher, RingReader
from flowcollect.pipeline.timebase import Clock
from flowcollect.records.layout import Rows

log = logging.getLogger(__name__)

# How long one read waits for records; bounds how late a stop is noticed.
POLL_TIMEOUT_MS = 250
MIN_FLUSH_INTERVAL_S = 0.05
# Records that come in a burst go on as one batch: the accounter's cost is mostly per batch (10 us a record in
# batches of a few, measured on a burst of 5,566 into a small table). A batch takes what follows it until a
# read waits COALESCE_WAIT_MS for nothing, or it holds COALESCE_RECORDS, or COALESCE_READS reads were made.
COALESCE_WAIT_MS = 1
COALESCE_RECORDS = 4096
COALESCE_READS = 64


class RingBufTracer:
    """Reads `reader` (the kernel's ring buffer) and asks `flusher` (the map tracer) for early evictions.

    log_timeout and min_flush_interval: seconds. mono_clock: monotonic ns.
    """

    def __init__(self, reader: RingReader, flusher: Flusher, log_timeout: float, *,
                 min_flush_interval: float = MIN_FLUSH_INTERVAL_S,
                 mono_clock: Clock = time.monotonic_ns, logger: logging.Logger = log) -> None:
        self._reader = reader
        self._flusher = flusher
        self._log_timeout_ns = int(log_timeout * 1e9)
        self._min_flush_interval_ns = int(min_flush_interval * 1e9)
        self._mono_clock = mono_clock
        self._log = logger
        self._last_flush_ns: int | None = None
        self._window_start_ns: int | None = None
        self._received = 0
        self._map_full = 0
        self.flushes = 0  # flush requests sent, for metrics

    def handle(self, records: Rows) -> Rows:
        """Count a batch of records, ask for a flush if the map was full; returns a copy to keep."""
        now = self._mono_clock()
        map_full = int(np.count_nonzero(records["errno_code"] == errno.E2BIG))
        if self._window_start_ns is None:
            self._window_start_ns = now
        self._received += len(records)
        self._map_full += map_full
        if map_full and (self._last_flush_ns is None
                         or now - self._last_flush_ns >= self._min_flush_interval_ns):
            self._last_flush_ns = now
            self.flushes += 1
            self._flusher.flush()
        self.tick()
        # The reader's buffer is overwritten by its next read.
        return records.copy()

    def tick(self) -> None:
        """Log the current window's counts if it is over."""
        if self._window_start_ns is None:
            return
        if self._mono_clock() - self._window_start_ns < self._log_timeout_ns:
            return
        if self._map_full:
            self._log.warning(
                "%d flows came through the ring buffer in the last %g s, %d of them because the "
                "kernel flow map was full: a larger cache_max_flows would keep them in the kernel",
                self._received, self._log_timeout_ns / 1e9, self._map_full)
        else:
            self._log.debug("%d flows came through the ring buffer in the last %g s",
                            self._received, self._log_timeout_ns / 1e9)
        self._window_start_ns = None
        self._received = self._map_full = 0

    def trace_loop(self, stop_event: threading.Event) -> Callable[[Channel[Rows]], None]:
        """The start function of the stage: call it with the accounter's input channel.

        Runs until stop_event is set, then forwards what is left in the ring
        buffer and closes the channel.
        """

        def trace(out_ch: Channel[Rows]) -> None:
            try:
                while not stop_event.is_set():
                    self._forward(self._reader.read_ringbuf(POLL_TIMEOUT_MS), out_ch)
                    self.tick()
                while self._forward(self._reader.read_ringbuf(0), out_ch):
                    pass
            finally:
                out_ch.close()

        return trace

    def _forward(self, records: Rows, out_ch: Channel[Rows]) -> bool:
        if not len(records):
            return False
        out_ch.put(self.handle(self._gather(records)))
        return True

    def _gather(self, first: Rows) -> Rows:
        """first, and the records that follow it closely (COALESCE_*), as one batch."""
        parts = [first.copy()]  # the reader's buffer is overwritten by its next read
        count = len(first)
        for _ in range(COALESCE_READS):
            if count >= COALESCE_RECORDS:
                break
            more = self._reader.read_ringbuf(COALESCE_WAIT_MS)
            if not len(more):
                break
            parts.append(more.copy())
            count += len(more)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
