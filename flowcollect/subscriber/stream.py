"""The subscriber's loop: read the agent's public endpoint and print flows, or keep the top-talkers table live.

Prints the JSON stream (from the JSON topic, or decoded from the binary
topic), or with --top a live table of the top talkers. Sequence numbers are
checked per publisher (gaps.py).
"""
import signal
import sys
from typing import BinaryIO

import zmq
from rich.live import Live

from flowcollect.records.json_lines import encode_lines
from flowcollect.subscriber.gaps import GapTracker
from flowcollect.subscriber.top_talkers import TopTalkers, table
from flowcollect.transport import wire

POLL_MS = 200


def run(endpoint: str, fmt: str = "json", top: bool = False, count: int | None = None,
        curve_server_key: str | None = None, out: BinaryIO | None = None) -> int:
    """Subscribe until SIGTERM/SIGINT, or until `count` flows were seen; returns the exit code."""
    out = out or sys.stdout.buffer
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    topic = wire.TOPIC_BINARY if (top or fmt == "binary") else wire.TOPIC_JSON
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
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
    if talkers is not None:
        live = Live(table(talkers), refresh_per_second=1)
        live.start()
    seen = 0
    try:
        while not stopping and (count is None or seen < count):
            if not sock.poll(POLL_MS):
                if live is not None and talkers is not None:
                    live.update(table(talkers))
                continue
            got, header, body = wire.split(sock.recv_multipart(), topic=True)
            gaps.see(wire.frame_bytes(got or b""), header)
            seen += header.count
            if header.kind == wire.FLOWS_JSON:
                out.write(wire.frame_bytes(body[0]))
            elif talkers is not None and live is not None:
                talkers.add(wire.read_flows(header, body))
                live.update(table(talkers))
            else:
                out.write(encode_lines(wire.read_flows(header, body)))
            out.flush()
    finally:
        if live is not None:
            live.stop()
        sock.close()
        ctx.term()
    return 0
