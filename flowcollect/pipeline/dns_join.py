"""DNS joined onto evicted flows (--features dns): numpy, once per eviction, in the collector.

The kernel keeps one DNS record per flow and period (struct fc_dns_metrics,
bpf/dns.bpf.h), keyed by the query's addresses, ports and protocol (client
to server). It goes onto every flow of that key and of the reversed key (the
responses), on every interface: a DNS exchange is a fact about both
directions, not a counter, so nothing is doubled by it. A record no flow of
its eviction matches is offered to the next eviction's flows (FactJoin in
flow_tuples.py says why), then dropped.
"""
import numpy as np
import numpy.typing as npt

from flowcollect.pipeline.flow_tuples import FactJoin, Matches
from flowcollect.records.layout import DNS_ANSWERED, DNS_RECORD, DNS_SEEN_QUERY, FC_DNS_NAME_LEN, Rows


def dotted_name(wire: bytes) -> bytes:
    """The text of a DNS name as it is on the wire (length-prefixed labels), cut where the capture ends."""
    labels: list[bytes] = []
    at = 0
    while at < len(wire) and wire[at] and not wire[at] & 0xC0:  # a compression pointer ends a question's name
        length = wire[at]
        labels.append(wire[at + 1:at + 1 + length])
        at += 1 + length
    return b".".join(labels)[:FC_DNS_NAME_LEN]


def dns_join() -> FactJoin:
    """The join of each eviction's DNS_RECORD rows onto its flows, with the records it holds for the next."""
    return FactJoin(DNS_RECORD, _apply)


def _apply(flows: Rows, dns: Rows, matches: Matches) -> None:
    for at, record in matches:
        _set_dns(flows, at, dns[record])


def _set_dns(flows: Rows, at: npt.NDArray[np.intp], dns: Rows) -> None:
    flows["dns_id"][at] = dns["id"]
    flows["dns_rcode"][at] = dns["rcode"]
    flows["dns_flags"][at] = dns["flags"] & (DNS_SEEN_QUERY | DNS_ANSWERED)
    flows["dns_latency_ns"][at] = np.where(dns["flags"] & DNS_ANSWERED, dns["latency_ns"], 0)
    flows["dns_unanswered"][at] = dns["unanswered"]
    names = flows["dns_name"]
    for row, record in zip(at, dns, strict=True):  # a name is labels to walk: per record, DNS flows only
        text = dotted_name(bytes(record["name"][:record["name_len"]]))
        names[row] = 0
        names[row, :len(text)] = np.frombuffer(text, dtype=np.uint8)
