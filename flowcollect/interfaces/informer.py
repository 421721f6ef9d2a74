"""The interface informer: tells the agent when interfaces appear and go away.

Two modes, as in the seed's agent:

- `watch`: subscribe to RTNLGRP_LINK over rtnetlink, dump the links once,
  then follow the kernel's link events (and dump again if the kernel says it
  dropped events for us, ENOBUFS);
- `poll`: dump the links every period and diff.

Both emit Event(ADDED | DELETED, Interface(name, index)) to a sink, a callable
(pass `channel.put` to feed a channel), from one thread of their own. A rename
is DELETED of the old name then ADDED of the new one, so whoever filters by
name decides again.

An interface counts from the moment it exists, up or down: TC filters on a
down interface stay in place, so attaching early counts its very first
packets, and a link that flaps is not detached and re-attached each time.

The netlink socket is opened in the constructor, so the informer follows the
network namespace of the thread that created it, whichever thread runs it.
"""
import contextlib
import enum
import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from flowcollect.settings.model import check

log = logging.getLogger(__name__)

DEFAULT_POLL_PERIOD = 10.0
START_TIMEOUT = 10.0  # the first dump of a namespace with thousands of links takes well under a second
RCVBUF = 1 << 20  # room for a burst of link events (a host starting hundreds of containers)
RECV_SIZE = 1 << 16  # above the 32 KiB the kernel puts in one netlink message batch


class EventType(enum.Enum):
    ADDED = "added"
    DELETED = "deleted"


ADDED, DELETED = EventType.ADDED, EventType.DELETED


@dataclass(frozen=True)
class Interface:
    name: str
    index: int


@dataclass(frozen=True)
class Event:
    type: EventType
    interface: Interface


Sink = Callable[[Event], None]
"""Where an informer delivers its events."""
LinkMessage = tuple[int, int, str | None]
"""(netlink message type, interface index, interface name) of one link message."""


class RtnlLinks:
    """The links of one network namespace over rtnetlink: dumps and, if subscribed, events.

    Dumps go over a socket of their own, so their replies never interleave
    with the event stream.
    """

    def __init__(self, subscribe: bool) -> None:
        self._marshal = MarshalRtnl()
        self._seq = 0
        self._dump_sock = self._open(0)
        self.events = self._open(RTMGRP_LINK) if subscribe else None

    @staticmethod
    def _open(groups: int) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, groups))
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        for sock in (self._dump_sock, self.events):
            if sock is not None:
                sock.close()

    def _parse(self, data: bytes) -> list[LinkMessage]:
        """(message type, index, name) of each link message; AF_UNSPEC only, because
        the bridge reports a port leaving it as an AF_BRIDGE RTM_DELLINK of a link
        that still exists."""
        out = []
        for msg in self._marshal.parse(data):
            kind = msg["header"]["type"]
            if kind == NLMSG_ERROR and msg["header"].get("error") is not None:
                raise msg["header"]["error"]
            if kind in (RTM_NEWLINK, RTM_DELLINK) and msg["family"] == socket.AF_UNSPEC:
                out.append((kind, msg["index"], msg.get_attr("IFLA_IFNAME")))
            elif kind == NLMSG_DONE:
                out.append((kind, 0, None))
        return out

    def dump(self) -> dict[int, str]:
        """{index: name} of every link now."""
        self._seq += 1
        request = ifinfmsg()
        request["header"]["type"] = RTM_GETLINK
        request["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        request["header"]["seq"] = self._seq
        request.encode()
        self._dump_sock.send(request.data)
        links: dict[int, str] = {}
        while True:
            for kind, index, name in self._parse(self._dump_sock.recv(RECV_SIZE)):
                if kind == NLMSG_DONE:
                    return links
                if name is not None:
                    links[index] = name

    def discard_events(self) -> None:
        """Empty the subscribed socket. After an overflow the kernel reports the next
        loss only once the queue has been emptied: a dump alone would leave it
        silent."""
        assert self.events is not None, "not subscribed"
        while True:
            try:
                self.events.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise

    def read_events(self) -> list[LinkMessage]:
        """The link events waiting on the subscribed socket, oldest first.

        Raises OSError(ENOBUFS) when the kernel dropped events: dump again."""
        assert self.events is not None, "not subscribed"
        out: list[LinkMessage] = []
        while True:
            try:
                data = self.events.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            out.extend(msg for msg in self._parse(data) if msg[0] != NLMSG_DONE)


class LinkTable:
    """The links we have announced, and the events that bring it up to date."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}

    def new_link(self, index: int, name: str) -> list[Event]:
        old = self.names.get(index)
        if old == name:
            return []
        events = [] if old is None else [Event(DELETED, Interface(old, index))]
        self.names[index] = name
        return [*events, Event(ADDED, Interface(name, index))]

    def del_link(self, index: int) -> list[Event]:
        name = self.names.pop(index, None)
        return [] if name is None else [Event(DELETED, Interface(name, index))]

    def snapshot(self, links: dict[int, str]) -> list[Event]:
        """Events that turn the table into `links` ({index: name}): deletions first."""
        events: list[Event] = []
        for index in sorted(self.names.keys() - links.keys()):
            events += self.del_link(index)
        for index in sorted(links):
            events += self.new_link(index, links[index])
        return events


class Informer:
    """Base of both modes: a thread that emits events to the sink until stop()."""

    mode = ""

    def __init__(self, sink: Sink, links: RtnlLinks) -> None:
        self._sink = sink
        self._links = links
        self._table = LinkTable()
        self._stopping = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None

    def __enter__(self) -> "Informer":
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Run in a thread of its own; return once the interfaces present now are announced."""
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.mode}", daemon=True)
        self._thread.start()
        if not self._synced.wait(timeout):
            self.stop()
            raise TimeoutError(f"the {self.mode} informer did not list the interfaces within {timeout} s")
        if self.error is not None:
            self.stop()
            raise self.error

    def stop(self) -> None:
        """Stop the thread, wait for it and close the netlink sockets. Idempotent."""
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        self._links.close()

    def _wake(self) -> None:
        """Interrupt a wait in progress; modes that block on a file override this."""

    def _loop(self) -> None:
        """Announce the interfaces present, set _synced, then follow changes until stopped."""
        raise NotImplementedError

    def run(self) -> None:
        """Emit events until stop(); an unexpected netlink error is logged and ends the run."""
        try:
            self._loop()
        except Exception as exc:  # kept in .error and logged: the agent decides
            if not self._stopping.is_set():
                self.error = exc
                log.exception("the %s interface informer failed: no more interface events", self.mode)
        finally:
            self._synced.set()

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            log.debug("interface %s: %s (ifindex %d)", event.type.value, event.interface.name, event.interface.index)
            try:
                self._sink(event)
            except Exception:  # one bad event must not stop the informer
                log.exception("the interface event sink failed on %s", event)

    def _resync(self) -> None:
        self._emit(self._table.snapshot(self._links.dump()))


class WatchInformer(Informer):
    """Follows rtnetlink link events; a dump at start and after any event loss."""

    mode = "watch"

    def __init__(self, sink: Sink) -> None:
        # Subscribe before the first dump, so that no change falls between the two.
        super().__init__(sink, RtnlLinks(subscribe=True))
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    def _wake(self) -> None:
        if self._wake_w < 0:
            return  # stopped already
        with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
            os.write(self._wake_w, b"x")

    def stop(self) -> None:
        super().stop()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _loop(self) -> None:
        self._resync()
        self._synced.set()
        assert self._links.events is not None
        events_fd = self._links.events.fileno()
        waiter = select.poll()  # not select(): an agent with many sockets has fds above 1023
        waiter.register(events_fd, select.POLLIN)
        waiter.register(self._wake_r, select.POLLIN)
        while not self._stopping.is_set():
            if events_fd not in {fd for fd, _ in waiter.poll()}:
                continue
            try:
                updates = self._links.read_events()
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                log.warning("the kernel dropped link events (socket buffer full): listing interfaces again")
                self._links.discard_events()  # the dump that follows says all they said
                self._resync()
                continue
            for kind, index, name in updates:
                if kind == RTM_NEWLINK and name is not None:
                    self._emit(self._table.new_link(index, name))
                elif kind == RTM_DELLINK:
                    self._emit(self._table.del_link(index))


class PollInformer(Informer):
    """Lists the links every `period` seconds and diffs with the previous list."""

    mode = "poll"

    def __init__(self, sink: Sink, period: float = DEFAULT_POLL_PERIOD) -> None:
        super().__init__(sink, RtnlLinks(subscribe=False))
        self.period = period

    def _loop(self) -> None:
        self._resync()
        self._synced.set()
        while not self._stopping.wait(self.period):
            self._resync()


def new_informer(mode: str, sink: Sink, poll_period: float = DEFAULT_POLL_PERIOD) -> Informer:
    """The informer for the listen_interfaces setting (watch | poll), not yet started."""
    if check("listen_interfaces", mode) == "watch":
        return WatchInformer(sink)
    return PollInformer(sink, poll_period)
