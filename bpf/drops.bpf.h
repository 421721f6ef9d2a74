/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Drops (--features drops): every packet the kernel frees as dropped
 * (tp_btf/kfree_skb, with its enum skb_drop_reason) is counted per flow into
 * a per-CPU map of its own, reached through a one-slot array-of-maps like the
 * flow table and swapped and drained with it (native/fc_features.c). User space
 * joins the rows onto the evicted flows by addresses, ports and protocol
 * (flowcollect/pipeline/drop_join.py): the interface, MACs and direction are
 * not in the key because a packet freed deep in the stack may have lost them.
 *
 * tp_btf rather than tracepoint/skb/kfree_skb: the same tracepoint, attached
 * through BTF (bpf_raw_tracepoint_open) with no tracefs mount needed, and its
 * arguments typed. The kernel structs below are CO-RE views (the ___fc
 * suffix is dropped when libbpf matches them against the kernel's BTF), so
 * the object is built without a vmlinux.h of the build host.
 *
 * The program is loaded only when the feature is on (bpf_program__set_autoload
 * in native/fc_features.c); the TC hot path is untouched by it.
 */
#ifndef FC_DROPS_BPF_H
#define FC_DROPS_BPF_H

#include <bpf/bpf_core_read.h>

/* Load-time settings of the drop program, set by native/fc_features.c. */
const volatile __u32 fc_drop_reason_consumed = ~0U; /* SKB_CONSUMED in this kernel's enum (from its BTF): not a drop */

#define FC_NO_HEADER 0xffff /* an unset skb header offset */
#define FC_ETH_HLEN 14

struct ns_common___fc {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net___fc {
	struct ns_common___fc ns;
} __attribute__((preserve_access_index));

struct net_device___fc {
	struct {
		struct net___fc *net;
	} nd_net;
	int ifindex;
} __attribute__((preserve_access_index));

struct sock_common___fc {
	unsigned char skc_state;
	struct {
		struct net___fc *net;
	} skc_net;
} __attribute__((preserve_access_index));

struct sock___fc {
	struct sock_common___fc __sk_common;
} __attribute__((preserve_access_index));

struct skb_shared_info___fc {
	unsigned short gso_segs;
} __attribute__((preserve_access_index));

struct sk_buff___fc {
	struct net_device___fc *dev;
	struct sock___fc *sk;
	unsigned int len;
	__be16 protocol;
	__u16 network_header;
	unsigned int end;
	unsigned char *head;
	unsigned char *data;
} __attribute__((preserve_access_index));

FC_SWAPPED_MAPS(fc_drop_map, BPF_MAP_TYPE_PERCPU_HASH, struct fc_flow_tuple, struct fc_drop_metrics,
		fc_drops_a, fc_drops_b, fc_drop_slot);

/* The network namespace a dropped packet belongs to: its device's, else its socket's. */
static __always_inline __u32 drop_netns(struct sk_buff___fc *skb)
{
	struct net_device___fc *dev = BPF_CORE_READ(skb, dev);

	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	return BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
}

/* Addresses, ports and protocol of the packet from its network header; the IP packet's length; -1 if not IP. */
static __always_inline int drop_key_of(struct sk_buff___fc *skb, struct fc_flow_tuple *key, __u32 *ip_len)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__be16 proto = BPF_CORE_READ(skb, protocol);
	unsigned char *data = BPF_CORE_READ(skb, data);
	__u32 l4, len = BPF_CORE_READ(skb, len);
	__u8 ports[4] = {};

	if (nh == FC_NO_HEADER)
		return -1;
	/* skb->len counts from skb->data, which may sit before or after the network header. */
	*ip_len = len + (__u32)(data - head) - nh;
	if (proto == ETH_P_IP_BE) {
		struct ipv4_header ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) || (ip.ver_ihl & 0x0f) < 5)
			return -1;
		set_ipv4_mapped(key->src_ip, ip.saddr);
		set_ipv4_mapped(key->dst_ip, ip.daddr);
		key->protocol = ip.protocol;
		if (bpf_ntohs(ip.frag_off) & IP_OFFSET_MASK)
			return 0; /* no transport header in a later fragment */
		l4 = nh + (ip.ver_ihl & 0x0f) * 4;
	} else if (proto == ETH_P_IPV6_BE) {
		struct ipv6_header ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return -1;
		__builtin_memcpy(key->src_ip, ip6.saddr, 16);
		__builtin_memcpy(key->dst_ip, ip6.daddr, 16);
		/* No extension-header walk here: a packet with them is keyed by its first next header. */
		key->protocol = ip6.nexthdr;
		l4 = nh + sizeof(ip6);
	} else {
		return -1;
	}
	if (key->protocol == IPPROTO_TCP || key->protocol == IPPROTO_UDP || key->protocol == IPPROTO_UDPLITE ||
	    key->protocol == IPPROTO_SCTP) {
		if (bpf_probe_read_kernel(ports, sizeof(ports), head + l4))
			return 0;
		key->src_port = ((__u16)ports[0] << 8) | ports[1];
		key->dst_port = ((__u16)ports[2] << 8) | ports[3];
	}
	return 0;
}

SEC("tp_btf/kfree_skb")
int fc_kfree_skb(__u64 *ctx)
{
	/* (struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...) */
	struct sk_buff___fc *skb = (struct sk_buff___fc *)ctx[0];
	__u32 reason = (__u32)ctx[2], ip_len = 0;
	struct fc_drop_metrics *metrics, fresh = {};
	struct fc_flow_tuple key;
	struct sock___fc *sk;
	__u64 now, segments;
	struct skb_shared_info___fc *shinfo;
	unsigned char *head;
	__u16 gso_segs;

	if (reason == fc_drop_reason_consumed || drop_netns(skb) != fc_agent_netns)
		return 0;
	__builtin_memset(&key, 0, sizeof(key));
	if (drop_key_of(skb, &key, &ip_len))
		return 0;
	head = BPF_CORE_READ(skb, head);
	shinfo = (struct skb_shared_info___fc *)(head + BPF_CORE_READ(skb, end));
	gso_segs = BPF_CORE_READ(shinfo, gso_segs);
	segments = gso_segs > 1 ? gso_segs : 1;
	metrics = feature_row(&fc_drop_slot, &key, &fresh, FC_FEATURE_COUNTER_DROPS_UNRECORDED, segments);
	if (!metrics)
		return 0;
	now = bpf_ktime_get_ns();
	sk = BPF_CORE_READ(skb, sk);
	/* Per-CPU value: this CPU is its only writer. */
	if (!metrics->first_seen_ns)
		metrics->first_seen_ns = now;
	metrics->last_seen_ns = now;
	metrics->packets += segments;
	metrics->bytes += ip_len + FC_ETH_HLEN * segments;
	metrics->reason = reason;
	metrics->if_index = BPF_CORE_READ(skb, dev, ifindex);
	metrics->tcp_state = sk && key.protocol == IPPROTO_TCP ? BPF_CORE_READ(sk, __sk_common.skc_state) : 0;
	return 0;
}

#endif /* FC_DROPS_BPF_H */
