"""Sequence gaps per publisher: a slow subscriber's lost messages are reported, a restart is not a gap."""
import logging

from flowcollect.transport import wire

log = logging.getLogger("flowcollect.sub")


class GapTracker:
    """Per (publisher, topic): the next expected sequence number of its current instance."""

    def __init__(self) -> None:
        self._expected: dict[tuple[int, bytes], tuple[int, int]] = {}
        self.missed = 0

    def see(self, topic: bytes, header: wire.Header) -> None:
        key = (header.publisher, topic)
        instance, expected = self._expected.get(key, (None, None))
        if instance == header.instance and expected is not None and header.sequence != expected:
            missed = header.sequence - expected
            self.missed += missed
            log.warning("missed %d messages from publisher %d on %s (a slow subscriber loses messages)",
                        missed, header.publisher, topic.decode())
        self._expected[key] = (header.instance, header.sequence + 1)
