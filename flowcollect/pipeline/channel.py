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
    """A FIFO for any number of consumers, holding at most `capacity` items.

    size: with it, `capacity` bounds the sum of size(item) of what is queued
    (e.g. flows, not batches); an item larger than the whole capacity still
    goes into an empty channel. producers: how many producers close() it; the
    input ends with the last of them.
    """

    def __init__(self, capacity: int, *, size: Callable[[T], int] | None = None, producers: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"channel capacity must be at least 1, not {capacity}")
        if producers < 1:
            raise ValueError(f"a channel needs at least one producer, not {producers}")
        self._capacity = capacity
        self._size = size or _one
        self._queued = 0
        self._items: deque[T] = deque()
        self._open_producers = producers
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

    @property
    def queued(self) -> int:
        """The sum of size(item) of what is queued (items, without `size`)."""
        return self._queued

    def put(self, item: T, timeout: float | None = None) -> None:
        """Queue item, waiting for room. Raises Closed, or TimeoutError after `timeout` seconds."""
        size = self._size(item)
        with self._not_full:
            if not self._not_full.wait_for(lambda: self._has_room_or_closed(size), timeout):
                raise TimeoutError(f"channel still full after {timeout} s")
            self._append(item, size)

    def try_put(self, item: T) -> bool:
        """Queue item if there is room now; False (and nothing queued) if the channel is full."""
        size = self._size(item)
        with self._not_full:
            if not self._has_room_or_closed(size):
                return False
            self._append(item, size)
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
            return self._pop()

    def get_ready(self, limit: int) -> list[T]:
        """What is queued now, oldest first, without waiting: items while their sizes add up to at most limit."""
        taken: list[T] = []
        with self._not_empty:
            while self._items and self._size(self._items[0]) <= limit:
                limit -= self._size(self._items[0])
                taken.append(self._pop())
        return taken

    def close(self) -> None:
        """End of input from one producer: once all have closed, consumers get what is queued, then Closed.

        Closing more often than there are producers is harmless.
        """
        with self._not_empty:
            self._open_producers = max(0, self._open_producers - 1)
            if self._open_producers:
                return
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

    def _has_room_or_closed(self, size: int) -> bool:
        return self._closed or not self._items or self._queued + size <= self._capacity

    def _has_item_or_closed(self) -> bool:
        return self._closed or bool(self._items)

    def _append(self, item: T, size: int) -> None:
        # Called with the lock held, once there is room or the channel is closed.
        if self._closed:
            raise Closed("send on a closed channel")
        self._items.append(item)
        self._queued += size
        self._not_empty.notify()

    def _pop(self) -> T:
        # Called with the lock held, with an item queued.
        item = self._items.popleft()
        self._queued -= self._size(item)
        self._not_full.notify_all()  # sizes differ: any waiting producer may fit now
        return item


def _one(item: object) -> int:
    return 1


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
