/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * DNS (--features dns): DNS over UDP and TCP port 53, parsed at the TC hook
 * by the flow programs (one call from account_packet(), removed by the
 * verifier when fc_dns is 0). A query is remembered in fc_dns_pending by its
 * flow and DNS id with the time it was seen; its response (QR set, the flow
 * reversed, the same id) gives the latency. What one flow's DNS did during
 * an eviction period goes into a map of its own behind fc_dns_slot, keyed by
 * the query's addresses, ports and protocol (client to server), swapped and
 * drained with the flow table (native/fc_features.c) and joined onto the flows
 * of both directions in user space (flowcollect/pipeline/dns_join.py).
 *
 * A packet seen at two hooks of the agent (routed through the host) is one
 * query: a second sighting of a pending query changes nothing, and a second
 * sighting of a response finds no pending query.
 */
#ifndef FC_DNS_BPF_H
#define FC_DNS_BPF_H

#define FC_DNS_PORT 53
#define FC_DNS_HEADER_LEN 12
#define FC_DNS_QR 0x8000
#define FC_DNS_RCODE_MASK 0x000f

const volatile __u8 fc_dns = 0;
/*
 * Bumped by user space just before each swap of the DNS maps. A response
 * whose query was seen in the same period takes it off that period's
 * unanswered count; an older query was reported unanswered with its period.
 */
__u32 fc_dns_generation = 0;

struct fc_dns_pending {
	__u64 query_ns;
	__u32 generation;
	__u32 pad;
};

/* Queries waiting for their response: LRU, so that those never answered make room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct fc_dns_query_key);
	__type(value, struct fc_dns_pending);
	__uint(max_entries, FC_DEFAULT_MAX_FLOWS);
} fc_dns_pending SEC(".maps");

FC_SWAPPED_MAPS(fc_dns_map, BPF_MAP_TYPE_HASH, struct fc_flow_tuple, struct fc_dns_metrics,
		fc_dns_a, fc_dns_b, fc_dns_slot);

/* This period's DNS record of the flow `tuple` (client to server), created empty if need be. */
static __always_inline struct fc_dns_metrics *dns_record(const struct fc_flow_tuple *tuple)
{
	struct fc_dns_metrics fresh = {};

	return feature_row(&fc_dns_slot, tuple, &fresh, FC_FEATURE_COUNTER_DNS_UNRECORDED, 1);
}

/*
 * A global function: the verifier checks it once, on its own, instead of once for every path
 * through the parser before the call (bpf/flows.bpf.c's two header modes times this function's
 * branches exceeded the verifier's limit). Pointer arguments of a global function may be NULL.
 */
__noinline int track_dns(struct __sk_buff *skb, const struct fc_flow_key *key, const struct fc_packet *pkt,
			 __u64 now)
{
	struct fc_dns_query_key query = {};
	struct fc_dns_pending *pending;
	struct fc_dns_metrics *dns;
	__u32 off = pkt->header_len, name_len;
	__u16 id, flags;
	__u8 hdr[FC_DNS_HEADER_LEN];
	__u8 response;

	if (!skb || !key || !pkt)
		return 0;
	if ((key->protocol != IPPROTO_UDP && key->protocol != IPPROTO_TCP) || !off ||
	    (key->src_port != FC_DNS_PORT && key->dst_port != FC_DNS_PORT))
		return 0;
	if (key->protocol == IPPROTO_TCP)
		off += 2; /* DNS over TCP: each message starts with its length */
	if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)))
		return 0; /* no DNS header in this segment (a bare ACK, a SYN) */
	id = ((__u16)hdr[0] << 8) | hdr[1];
	flags = ((__u16)hdr[2] << 8) | hdr[3];
	response = !!(flags & FC_DNS_QR);
	/* The query's direction, client to server, for both the query and its response. */
	if (response) {
		__builtin_memcpy(query.tuple.src_ip, key->dst_ip, FC_IP_LEN);
		__builtin_memcpy(query.tuple.dst_ip, key->src_ip, FC_IP_LEN);
		query.tuple.src_port = key->dst_port;
		query.tuple.dst_port = key->src_port;
	} else {
		__builtin_memcpy(query.tuple.src_ip, key->src_ip, FC_IP_LEN);
		__builtin_memcpy(query.tuple.dst_ip, key->dst_ip, FC_IP_LEN);
		query.tuple.src_port = key->src_port;
		query.tuple.dst_port = key->dst_port;
	}
	query.tuple.protocol = key->protocol;
	query.id = id;

	if (!response) {
		struct fc_dns_pending waiting = { .query_ns = now, .generation = fc_dns_generation };

		if (bpf_map_update_elem(&fc_dns_pending, &query, &waiting, BPF_NOEXIST))
			return 0; /* seen already (at another hook), or no room */
		dns = dns_record(&query.tuple);
		if (!dns)
			return 0;
		__sync_fetch_and_add(&dns->queries, 1);
		__sync_fetch_and_add(&dns->unanswered, 1);
		dns->id = id;
		dns->flags |= FC_DNS_SEEN_QUERY;
		/* The question's name as it is on the wire (length-prefixed labels), bounded. */
		name_len = skb->len > off + FC_DNS_HEADER_LEN ? skb->len - off - FC_DNS_HEADER_LEN : 0;
		if (name_len >= FC_DNS_NAME_LEN) {
			if (!bpf_skb_load_bytes(skb, off + FC_DNS_HEADER_LEN, dns->name, FC_DNS_NAME_LEN))
				dns->name_len = FC_DNS_NAME_LEN;
			return 0;
		}
		/* No change (it is below 64): the bound the verifier needs, on the register the call takes. */
		barrier_var(name_len);
		name_len &= FC_DNS_NAME_LEN - 1;
		if (name_len && !bpf_skb_load_bytes(skb, off + FC_DNS_HEADER_LEN, dns->name, name_len))
			dns->name_len = name_len;
		return 0;
	}
	pending = bpf_map_lookup_elem(&fc_dns_pending, &query);
	if (!pending)
		return 0; /* its query was not seen, or this response was seen already */
	dns = dns_record(&query.tuple);
	if (dns) {
		dns->latency_ns = now - pending->query_ns;
		dns->id = id;
		dns->rcode = flags & FC_DNS_RCODE_MASK;
		dns->flags |= FC_DNS_ANSWERED;
		__sync_fetch_and_add(&dns->answers, 1);
		if (pending->generation == fc_dns_generation && dns->unanswered)
			__sync_fetch_and_add(&dns->unanswered, -1);
	}
	bpf_map_delete_elem(&fc_dns_pending, &query);
	return 0;
}

#endif /* FC_DNS_BPF_H */
