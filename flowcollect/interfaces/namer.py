"""Interface names for the if_index of each flow, never "unknown" for a live interface.

The seed answered "unknown" when a flow's interface was not yet in its cache.
Here the names follow the informer's events, and on a miss the kernel is
asked directly (then cached). An interface that was deleted keeps its last
name for a while: its flows are still evicted up to one cache_active_timeout
after it is gone, and they belong to it. Only an index the kernel does not
know and we never saw gets the placeholder.
"""
import collections
import fcntl
import socket
import struct
import threading
from collections.abc import Callable

from flowcollect.interfaces.informer import ADDED, Event

SIOCGIFNAME = 0x8910  # <linux/sockios.h>
_IFREQ = struct.Struct("16si20x")  # struct ifreq: ifr_name, then ifr_ifindex in a 24-byte union
DEFAULT_RETIRED_MAX = 4096  # deleted interfaces remembered; bounds memory on hosts that churn veths


def placeholder(if_index: int) -> str:
    """The name given to an index that exists nowhere: clearly not an interface name."""
    return f"<gone:{if_index}>"


class KernelNames:
    """if_indextoname in the network namespace this object was made in.

    socket.if_indextoname asks in the calling thread's namespace; the ioctl on
    a socket of our own asks in the socket's, whichever thread calls.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def __call__(self, if_index: int) -> str | None:
        """The interface's name, or None when no interface has this index."""
        try:
            ifreq = fcntl.ioctl(self._sock.fileno(), SIOCGIFNAME, _IFREQ.pack(b"", if_index))
        except OSError:
            return None  # ENODEV: no such index
        return ifreq[:16].split(b"\0", 1)[0].decode()

    def close(self) -> None:
        self._sock.close()


class InterfaceNamer:
    """namer(if_index) -> name. Fed by handle(event); thread-safe for one writer and many readers."""

    def __init__(self, lookup: Callable[[int], str | None] | None = None,
                 retired_max: int = DEFAULT_RETIRED_MAX) -> None:
        self._lookup = KernelNames() if lookup is None else lookup
        self._names: dict[int, str] = {}
        # deleted index -> last name, oldest first
        self._retired: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._retired_max = retired_max
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        """Follow one informer event."""
        index, name = event.interface.index, event.interface.name
        with self._lock:
            if event.type is ADDED:
                self._names[index] = name
                self._retired.pop(index, None)
            elif self._names.get(index) == name:
                # A rename also starts with DELETED: the ADDED that follows overwrites this.
                del self._names[index]
                self._retired[index] = name
                self._retired.move_to_end(index)
                while len(self._retired) > self._retired_max:
                    self._retired.popitem(last=False)

    def __call__(self, if_index: int) -> str:
        if_index = int(if_index)
        name = self._names.get(if_index)
        if name is not None:
            return name
        name = self._lookup(if_index)
        with self._lock:
            if name is not None:
                self._names[if_index] = name
                self._retired.pop(if_index, None)
                return name
            return self._retired.get(if_index) or placeholder(if_index)

    def names(self) -> dict[int, str]:
        """{index: name} of the live interfaces we know, for the workers' copies."""
        with self._lock:
            return dict(self._names)

    def close(self) -> None:
        close = getattr(self._lookup, "close", None)
        if close is not None:
            close()
