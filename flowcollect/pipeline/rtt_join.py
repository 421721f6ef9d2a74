"""RTT joined onto evicted flows (--features rtt): numpy, once per eviction, in the collector.

The kernel keeps one RTT record per TCP connection and period (struct
fc_rtt_metrics, bpf/rtt.bpf.h): the largest smoothed RTT its socket had,
keyed by the socket's tuple (local to remote), and its handshake RTT, keyed
by the client-to-server tuple. Like DNS, a fact about the connection: it goes
onto the flows of both directions on every interface. Where a connection
has both records (the agent's own socket, and a handshake it saw), each
field takes the non-zero value. A record no flow of its eviction matches is
dropped, not held as drops are (drop_join.py): only a connection whose every
packet of the period came in the ~10 ms between the flow maps' swap and the
RTT maps' loses its RTT for that period.
"""
import numpy as np

from flowcollect.pipeline.flow_tuples import both_directions
from flowcollect.records.layout import RTT_RECORD, Rows


def join_rtt(flows: Rows, rtt: Rows) -> Rows:
    """FLOW_EXPORT rows `flows` with the RTT_RECORD rows `rtt` joined onto both directions of each."""
    rtt = np.ascontiguousarray(rtt, dtype=RTT_RECORD)
    matches = both_directions(flows, rtt)
    if not matches:
        return flows
    flows = flows.copy()
    for at, record in matches:
        flows["rtt_ns"][at] = np.maximum(flows["rtt_ns"][at], rtt["srtt_max_ns"][record])
        flows["handshake_rtt_ns"][at] = np.maximum(flows["handshake_rtt_ns"][at], rtt["handshake_ns"][record])
    return flows
