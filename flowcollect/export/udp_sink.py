"""The IPFIX and NetFlow v9 outputs: an encoder's messages sent as UDP datagrams to HOST:PORT.

Failed sends are counted, never raised: the flows of a datagram that could
not be sent are lost (send_failed, records/tally.py) and logged with a back-off.
"""
import logging
import socket

from flowcollect.export.prometheus import health
from flowcollect.export.template_export import TemplateEncoder
from flowcollect.pipeline.log_backoff import LossLog
from flowcollect.records.batch import FlowBatch
from flowcollect.records.tally import OutputTally, Tally
from flowcollect.settings.addresses import host_port

log = logging.getLogger(__name__)


class UdpSink:
    """Sends the messages of `encoder` (IPFIX or NetFlow v9) to a collector at HOST:PORT."""

    def __init__(self, target: str, encoder: TemplateEncoder) -> None:
        self.target = target
        self.kind = encoder.kind
        self.name = f"{encoder.kind}:{target}"
        host, port = host_port(target)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.encoder = encoder
        self.tally = OutputTally()
        self.messages = 0    # datagrams sent
        self.errors = 0      # datagrams that could not be sent
        self._losses = LossLog(log, f"not sent to {self.name}: the send failed")
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        # connect(): the kernel then reports "port unreachable" from the collector as ECONNREFUSED.
        self._socket.connect(address)

    def __repr__(self) -> str:
        return f"UdpSink({self.name!r})"

    def wants_json(self) -> bool:
        return False

    def write(self, batch: FlowBatch, lines: memoryview | None = None) -> bool:
        """Encode and send one batch (`lines` is not used); True when every datagram went out.

        The flows of a datagram that could not be sent are lost (send_failed); the others are exported.
        """
        failed = 0
        # Counted once per batch, not per datagram (~16 records each): the tally and the Prometheus
        # calls per datagram cost more than the send. Every flow of the batch is in one data message.
        lost = Tally()
        for message, flows in self.encoder.encode_messages(batch):
            try:
                self._socket.send(message)
                self.messages += 1
            except OSError as exc:
                failed += 1
                if failed == 1 and not self.errors:
                    log.error("%s output: send failed: %s", self.name, exc.strerror or exc)
                if flows is not None:
                    self.tally.lose("send_failed", flows)
                    packets = int(flows["packets"].sum())
                    lost.add_tally(Tally(len(flows), packets))
                    health.lost("send_failed", len(flows), packets)
                    self._losses.lost(packets, len(flows))
        exported = Tally(len(batch) - lost.flows, batch.packets() - lost.packets)
        if exported.flows:
            self.tally.exported.add_tally(exported)
            health.exported(self.kind, exported.flows, exported.packets)
        self.errors += failed
        if failed:
            health.export_error(self.kind, failed)
        return not failed

    def idle(self) -> None:
        self._losses.tick()

    def reopen(self) -> None:
        """Nothing to reopen: UDP has no file."""

    def counters(self) -> dict[str, OutputTally]:
        return {self.name: self.tally}

    def close(self) -> None:
        self._socket.close()
