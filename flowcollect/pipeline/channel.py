"""A bounded channel between pipeline stages, shaped like a Go channel.

Stages run in threads and hand numpy batches to each other through these.
`queue.Queue` has no "closed" state, and a pipeline needs one: end of input
must reach the consumer after everything already queued, so that each stage
can flush what it holds, close its own output and return.
"""
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sized
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U", bound=Sized)


class Closed(Exception):
    """The channel is closed: nothing more will come out of it, nothing may go in."""


class Channel(Generic[T]):
    """A FIFO of at most `capacity` items, for any number of producers and consumers."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"channel capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._closed = False
        lock = threading.Lock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> None:
        """Queue item, waiting for room. Raises Closed, or TimeoutError after `timeout` seconds."""
        with self._not_full:
            if not self._not_full.wait_for(self._has_room_or_closed, timeout):
                raise TimeoutError(f"channel still full after {timeout} s")
            self._append(item)

    def try_put(self, item: T) -> bool:
        """Queue item if there is room now; False (and nothing queued) if the channel is full."""
        with self._not_full:
            if not self._has_room_or_closed():
                return False
            self._append(item)
            return True

    def get(self, timeout: float | None = None) -> T:
        """The oldest item, waiting for one.

        Raises Closed once the channel is closed and drained, TimeoutError when
        nothing came within `timeout` seconds.
        """
        with self._not_empty:
            if not self._not_empty.wait_for(self._has_item_or_closed, timeout):
                raise TimeoutError(f"nothing received within {timeout} s")
            if not self._items:
                raise Closed()
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def close(self) -> None:
        """End of input: consumers get what is queued, then Closed. Closing twice is harmless."""
        with self._not_empty:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def __iter__(self) -> Iterator[T]:
        """Every item until the channel is closed and drained."""
        while True:
            try:
                yield self.get()
            except Closed:
                return

    def _has_room_or_closed(self) -> bool:
        return self._closed or len(self._items) < self._capacity

    def _has_item_or_closed(self) -> bool:
        return self._closed or bool(self._items)

    def _append(self, item: T) -> None:
        # Called with the lock held, once there is room or the channel is closed.
        if self._closed:
            raise Closed("send on a closed channel")
        self._items.append(item)
        self._not_empty.notify()


def forward_each(process: Callable[[U], U | None], in_ch: Channel[U], out_ch: Channel[U]) -> None:
    """Run a per-batch stage core between two channels.

    `process(batch)` returns the batch to pass on, or None to pass nothing; an
    empty batch is never passed on. When the input closes, the output is closed.
    """
    try:
        for batch in in_ch:
            result = process(batch)
            if result is not None and len(result):
                out_ch.put(result)
    finally:
        out_ch.close()


Stage = Callable[[Channel[U], Channel[U]], None]
"""A stage in its channel form: runs from its input channel to its output channel until the input closes."""


def channel_stage(process: Callable[[U], U | None]) -> "Stage[U]":
    """A per-batch stage core as a channel stage (the seed's provider functions return these)."""
    def stage(in_ch: Channel[U], out_ch: Channel[U]) -> None:
        forward_each(process, in_ch, out_ch)
    return stage
