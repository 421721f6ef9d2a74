"""RTT joined onto evicted flows (--features rtt): numpy, once per eviction, in the collector.

The kernel keeps one RTT record per TCP connection and period (struct
fc_rtt_metrics, bpf/rtt.bpf.h): the largest smoothed RTT its socket had,
keyed by the socket's tuple (local to remote), and its handshake RTT, keyed
by the client-to-server tuple. Like DNS, a fact about the connection: it goes
onto the flows of both directions on every interface. Where a connection
has both records (the agent's own socket, and a handshake it saw), each
field takes the non-zero value. A record no flow of its eviction matches is
offered to the next eviction's flows (FactJoin in flow_tuples.py says why),
then dropped.
"""
import numpy as np

from flowcollect.pipeline.flow_tuples import FactJoin, Matches
from flowcollect.records.layout import RTT_RECORD, Rows


def rtt_join() -> FactJoin:
    """The join of each eviction's RTT_RECORD rows onto its flows, with the records it holds for the next."""
    return FactJoin(RTT_RECORD, _apply)


def _apply(flows: Rows, rtt: Rows, matches: Matches) -> None:
    for at, record in matches:
        flows["rtt_ns"][at] = np.maximum(flows["rtt_ns"][at], rtt["srtt_max_ns"][record])
        flows["handshake_rtt_ns"][at] = np.maximum(flows["handshake_rtt_ns"][at], rtt["handshake_ns"][record])
