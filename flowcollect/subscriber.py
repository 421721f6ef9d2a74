"""`flowcollect sub`: a subscriber of the agent's public endpoint.

Prints the JSON stream (from the JSON topic, or decoded from the binary
topic), or with --top a live table of the top talkers. Sequence numbers are
checked per publisher: a gap (a slow subscriber's dropped messages) is
reported on stderr, a publisher restart is not a gap.
"""
import logging
import signal
import sys
import time

import zmq

from flowcollect import wire
from flowcollect.exporters import json_records

log = logging.getLogger("flowcollect.sub")


class GapTracker:
    """Per (publisher, topic): the next expected sequence number of its current instance."""

    def __init__(self):
        self._expected = {}
        self.missed = 0

    def see(self, topic, header):
        key = (header.publisher, topic)
        instance, expected = self._expected.get(key, (None, None))
        if instance == header.instance and header.sequence != expected:
            missed = header.sequence - expected
            self.missed += missed
            log.warning("missed %d messages from publisher %d on %s (a slow subscriber loses messages)",
                        missed, header.publisher, topic.decode())
        self._expected[key] = (header.instance, header.sequence + 1)


class TopTalkers:
    """Bytes and packets per (src, dst, protocol) over the last window, for --top."""

    def __init__(self, window_s=10.0):
        self.window_s = window_s
        self.samples = []  # (arrival time, list of records)

    def add(self, batch):
        self.samples.append((time.monotonic(), json_records.records(batch)))

    def top(self, n=20):
        cutoff = time.monotonic() - self.window_s
        self.samples = [s for s in self.samples if s[0] >= cutoff]
        totals = {}
        for _, recs in self.samples:
            for r in recs:
                key = (r["src_addr"], r["src_port"], r["dst_addr"], r["dst_port"], r["protocol"])
                entry = totals.setdefault(key, [0, 0])
                entry[0] += r["bytes"]
                entry[1] += r["packets"]
        return sorted(totals.items(), key=lambda kv: kv[1][0], reverse=True)[:n]


def _table(talkers):
    from rich.table import Table

    table = Table(title=f"flowcollect: top talkers, last {talkers.window_s:.0f} s")
    for column in ("source", "destination", "proto", "bytes", "packets"):
        table.add_column(column, justify="right" if column in ("bytes", "packets") else "left")
    for (src, sport, dst, dport, proto), (nbytes, packets) in talkers.top():
        table.add_row(f"{src}:{sport}", f"{dst}:{dport}", str(proto), f"{nbytes:,}", f"{packets:,}")
    return table


def run(endpoint, fmt="json", top=False, count=None, curve_server_key=None, out=None):
    out = out or sys.stdout.buffer
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    topic = wire.TOPIC_BINARY if (top or fmt == "binary") else wire.TOPIC_JSON
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if curve_server_key:
        public, secret = zmq.curve_keypair()
        sock.setsockopt(zmq.CURVE_SERVERKEY, curve_server_key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    gaps = GapTracker()
    talkers = TopTalkers() if top else None
    live = None
    if top:
        from rich.live import Live
        live = Live(_table(talkers), refresh_per_second=1)
        live.start()
    seen = 0
    try:
        while not stopping and (count is None or seen < count):
            if not sock.poll(200):
                if live is not None:
                    live.update(_table(talkers))
                continue
            got, header, body = wire.split(sock.recv_multipart(), topic=True)
            gaps.see(got, header)
            seen += header.count
            if header.kind == wire.FLOWS_JSON:
                out.write(bytes(body[0]))
            elif talkers is not None:
                talkers.add(wire.read_flows(header, body))
                live.update(_table(talkers))
            else:
                out.write(json_records.encode_lines(wire.read_flows(header, body)))
            out.flush()
    finally:
        if live is not None:
            live.stop()
        sock.close()
        ctx.term()
    return 0

