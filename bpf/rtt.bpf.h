/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * RTT (--features rtt): the kernel's smoothed round-trip time of the agent's
 * TCP sockets, read each time one takes a segment on the established fast
 * path (tcp_rcv_established: fentry; where the kernel has no BPF trampolines,
 * the tcp_probe tracepoint it calls through BTF; else a kprobe),
 * the largest of each eviction period per connection. Keyed by the socket's
 * tuple (local to remote), in per-CPU maps of their own behind fc_rtt_slot,
 * swapped and drained with the flow table (native/fc_features.c) and joined onto
 * the flows of both directions in user space (flowcollect/pipeline/rtt_join.py).
 *
 * Only sockets of the agent's network namespace count, as for drops. The
 * programs are loaded only when the feature is on, and only one of the three
 * (native/fc_features.c chooses).
 *
 * The handshake RTT comes from the TC programs (one call from account_packet,
 * removed by the verifier when fc_rtt is 0): SYN to SYN-ACK where the agent
 * sees both (it is on the client's side or between), else SYN-ACK to the
 * client's first ACK (on the server's side). It goes into the same record,
 * keyed by the connection's client-to-server tuple.
 */
#ifndef FC_RTT_BPF_H
#define FC_RTT_BPF_H

#include <asm/ptrace.h> /* struct pt_regs of this machine (the multiarch include), for PT_REGS_PARM1 */
#include <bpf/bpf_tracing.h>

#define FC_AF_INET 2
#define FC_AF_INET6 10

struct in6_addr___fc {
	__u8 u6_addr8[16];
};

struct sock_common___rtt {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr___fc skc_v6_daddr;
	struct in6_addr___fc skc_v6_rcv_saddr;
	struct {
		struct net___fc *net;
	} skc_net;
} __attribute__((preserve_access_index));

struct tcp_sock___fc {
	__u32 srtt_us; /* smoothed RTT << 3, in microseconds */
} __attribute__((preserve_access_index));

const volatile __u8 fc_rtt = 0;

#define FC_HANDSHAKE_SYN 1
#define FC_HANDSHAKE_SYN_ACK 2
/* Timed; kept, not deleted, so that a second sighting of the same segments (a host that routes the
 * connection sees each of them at two interfaces) does not start the measurement again. */
#define FC_HANDSHAKE_DONE 3

struct fc_handshake {
	__u64 seen_ns; /* of the SYN, or of the SYN-ACK when the SYN was not seen */
	__u32 phase;   /* FC_HANDSHAKE_* */
	__u32 pad;
};

/* Handshakes in progress, by the client-to-server tuple: LRU, so that those never completed make room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct fc_flow_tuple);
	__type(value, struct fc_handshake);
	__uint(max_entries, FC_DEFAULT_MAX_FLOWS);
} fc_handshakes SEC(".maps");

FC_SWAPPED_MAPS(fc_rtt_map, BPF_MAP_TYPE_PERCPU_HASH, struct fc_flow_tuple, struct fc_rtt_metrics,
		fc_rtt_a, fc_rtt_b, fc_rtt_slot);

/* This period's RTT record of `tuple`, created empty if need be (NULL: no room, counted). */
static __always_inline struct fc_rtt_metrics *rtt_record(const struct fc_flow_tuple *tuple, __u64 now)
{
	struct fc_rtt_metrics *rtt, fresh = {};

	rtt = feature_row(&fc_rtt_slot, tuple, &fresh, FC_FEATURE_COUNTER_RTT_UNRECORDED, 1);
	if (!rtt)
		return NULL;
	/* Per-CPU value: this CPU is its only writer. */
	if (!rtt->first_seen_ns)
		rtt->first_seen_ns = now;
	rtt->last_seen_ns = now;
	return rtt;
}

/* The tuple of the packet's flow, or of the other direction. */
static __always_inline void packet_tuple(const struct fc_flow_key *key, struct fc_flow_tuple *tuple, int reverse)
{
	__builtin_memset(tuple, 0, sizeof(*tuple));
	__builtin_memcpy(tuple->src_ip, reverse ? key->dst_ip : key->src_ip, FC_IP_LEN);
	__builtin_memcpy(tuple->dst_ip, reverse ? key->src_ip : key->dst_ip, FC_IP_LEN);
	tuple->src_port = reverse ? key->dst_port : key->src_port;
	tuple->dst_port = reverse ? key->src_port : key->dst_port;
	tuple->protocol = key->protocol;
}

/* Global, as track_dns() in bpf/dns.bpf.h is: verified once, on its own. */
__noinline int track_handshake(const struct fc_flow_key *key, const struct fc_packet *pkt, __u64 now)
{
	struct fc_handshake *pending, started = { .seen_ns = now };
	struct fc_flow_tuple client;
	struct fc_rtt_metrics *rtt;
	__u64 since;
	__u16 flags;

	if (!key || !pkt || key->protocol != IPPROTO_TCP)
		return 0;
	flags = pkt->tcp_flags & (FC_TCP_SYN | FC_TCP_ACK | FC_TCP_RST | FC_TCP_FIN);
	if (flags == FC_TCP_SYN) {
		packet_tuple(key, &client, 0);
		started.phase = FC_HANDSHAKE_SYN;
		pending = bpf_map_lookup_elem(&fc_handshakes, &client);
		/* A retransmitted or second sighting of the SYN keeps the first; a SYN after a timed
		 * handshake of the same tuple is a new connection. */
		bpf_map_update_elem(&fc_handshakes, &client, &started,
				    pending && pending->phase == FC_HANDSHAKE_DONE ? BPF_ANY : BPF_NOEXIST);
		return 0;
	}
	if (flags == (FC_TCP_SYN | FC_TCP_ACK)) {
		packet_tuple(key, &client, 1);
		pending = bpf_map_lookup_elem(&fc_handshakes, &client);
		if (!pending) {
			started.phase = FC_HANDSHAKE_SYN_ACK; /* the SYN was not seen: time to the client's ACK */
			bpf_map_update_elem(&fc_handshakes, &client, &started, BPF_NOEXIST);
			return 0;
		}
		if (pending->phase != FC_HANDSHAKE_SYN)
			return 0;
	} else if (flags == FC_TCP_ACK) {
		packet_tuple(key, &client, 0);
		pending = bpf_map_lookup_elem(&fc_handshakes, &client);
		if (!pending || pending->phase != FC_HANDSHAKE_SYN_ACK)
			return 0;
	} else {
		return 0;
	}
	since = pending->seen_ns;
	pending->phase = FC_HANDSHAKE_DONE;
	rtt = rtt_record(&client, now);
	if (rtt)
		rtt->handshake_ns = now - since;
	return 0;
}

static __always_inline int record_rtt(void *sk)
{
	struct sock_common___rtt *common = sk; /* struct sock begins with its sock_common */
	struct fc_rtt_metrics *rtt;
	struct fc_flow_tuple tuple;
	__u32 srtt_us;
	__u64 srtt_ns;

	if (BPF_CORE_READ(common, skc_net.net, ns.inum) != fc_agent_netns)
		return 0;
	srtt_us = BPF_CORE_READ((struct tcp_sock___fc *)sk, srtt_us) >> 3;
	if (!srtt_us)
		return 0; /* no sample yet */
	__builtin_memset(&tuple, 0, sizeof(tuple));
	if (BPF_CORE_READ(common, skc_family) == FC_AF_INET) {
		set_ipv4_mapped(tuple.src_ip, BPF_CORE_READ(common, skc_rcv_saddr));
		set_ipv4_mapped(tuple.dst_ip, BPF_CORE_READ(common, skc_daddr));
	} else {
		BPF_CORE_READ_INTO(&tuple.src_ip, common, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&tuple.dst_ip, common, skc_v6_daddr);
	}
	tuple.src_port = BPF_CORE_READ(common, skc_num);
	tuple.dst_port = bpf_ntohs(BPF_CORE_READ(common, skc_dport));
	tuple.protocol = IPPROTO_TCP;
	srtt_ns = (__u64)srtt_us * 1000;
	rtt = rtt_record(&tuple, bpf_ktime_get_ns());
	if (rtt && srtt_ns > rtt->srtt_max_ns)
		rtt->srtt_max_ns = srtt_ns;
	return 0;
}

SEC("fentry/tcp_rcv_established")
int fc_rtt_fentry(__u64 *ctx)
{
	return record_rtt((void *)ctx[0]); /* (struct sock *sk, struct sk_buff *skb) */
}

SEC("tp_btf/tcp_probe")
int fc_rtt_tcp_probe(__u64 *ctx)
{
	return record_rtt((void *)ctx[0]); /* (struct sock *sk, const struct sk_buff *skb): from tcp_rcv_established */
}

SEC("kprobe/tcp_rcv_established")
int fc_rtt_kprobe(struct pt_regs *ctx)
{
	return record_rtt((void *)PT_REGS_PARM1(ctx));
}

#endif /* FC_RTT_BPF_H */
