"""Names a person reads in `sub --top`: protocols, ICMP types, ethertypes, and endpoints as text.

Numbers come from the JSON record fields (docs/records.md). ICMP type names
are nftables' (`nft describe icmp_type`, `icmpv6_type`), so that they match
what an operator writes in a firewall rule.
"""
from collections.abc import Mapping
from typing import Any

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, ETH_P_LLDP = 0x0800, 0x0806, 0x86DD, 0x88CC
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6, IPPROTO_SCTP = 1, 6, 17, 58, 132

PROTOCOLS = {IPPROTO_ICMP: "icmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMPV6: "icmpv6",
             IPPROTO_SCTP: "sctp"}
PORTED = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP))
"""Protocols whose records carry ports (for the others src_port and dst_port are 0)."""
ETHERTYPES = {ETH_P_ARP: "arp", ETH_P_LLDP: "lldp"}

ICMP_TYPES = {
    0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect", 8: "echo-request",
    9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded", 12: "parameter-problem",
    13: "timestamp-request", 14: "timestamp-reply", 15: "info-request", 16: "info-reply",
    17: "address-mask-request", 18: "address-mask-reply",
}
ICMPV6_TYPES = {
    1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
    128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
    132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert", 135: "nd-neighbor-solicit",
    136: "nd-neighbor-advert", 137: "nd-redirect", 138: "router-renumbering", 143: "mld2-listener-report",
}


def protocol_name(protocol: int) -> str:
    """tcp, udp, icmp, icmpv6, sctp; any other protocol as its IANA number."""
    return PROTOCOLS.get(protocol, str(protocol))


def ethertype_name(eth_protocol: int) -> str:
    """arp, lldp; any other ethertype as 0xNNNN."""
    return ETHERTYPES.get(eth_protocol, f"0x{eth_protocol:04x}")


def icmp_type_name(protocol: int, icmp_type: int) -> str:
    """The name of an ICMP or ICMPv6 type, or `type N` for one without a name."""
    names = ICMP_TYPES if protocol == IPPROTO_ICMP else ICMPV6_TYPES
    return names.get(icmp_type, f"type {icmp_type}")


def protocol_label(record: Mapping[str, Any]) -> str:
    """What a flow is: `udp`, `icmp echo-request`, `arp`, `0x88b5`, `47`."""
    if record["src_addr"] is None:
        return ethertype_name(record["eth_protocol"])
    protocol = record["protocol"]
    if protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        return f"{protocol_name(protocol)} {icmp_type_name(protocol, record['icmp_type'])}"
    return protocol_name(protocol)


def endpoint(address: str, port: int | None) -> str:
    """address:port, [IPv6]:port, or the bare address when the protocol has no ports."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def endpoints(record: Mapping[str, Any]) -> tuple[str, str]:
    """(source, destination) as text: addresses with ports, or the MACs of a frame that is not IP."""
    if record["src_addr"] is None:
        return record["src_mac"], record["dst_mac"]
    ported = record["protocol"] in PORTED
    return (endpoint(record["src_addr"], record["src_port"] if ported else None),
            endpoint(record["dst_addr"], record["dst_port"] if ported else None))
