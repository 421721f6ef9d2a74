// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowcollect kernel side: count every packet seen at the TC hook into
 * per-flow, per-CPU counters.
 *
 * - Headers are read in place from the linear area when they are there, and
 *   from one copy of the frame's first 128 bytes when they are not (see
 *   frame_open() and frame_bytes()).
 * - The programs never change or drop traffic: they return TC_ACT_UNSPEC, which
 *   hands the packet to the next filter (or the default "pass") so that any
 *   foreign filter attached beside ours keeps its meaning. TC_ACT_OK would
 *   end classification and silently bypass filters with a lower priority.
 * - Flows are counted in a per-CPU open-addressing table of two halves that
 *   user space swaps and reads through its mapping (table.bpf.h).
 * - A new flow that the table refuses travels as a one-packet record through
 *   the ring buffer; if that fails too the loss is counted.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flow.h"

#define FC_DEFAULT_MAX_FLOWS 5000
#define FC_MAX_VLAN_TAGS 2
#define FC_MAX_IPV6_EXT_HEADERS 8
#define FC_MAX_DIRECT_OFFSET 512 /* bounds the variable offset the verifier must check */

#define ETH_P_8021Q_BE bpf_htons(0x8100)
#define ETH_P_8021AD_BE bpf_htons(0x88A8)
#define ETH_P_IP_BE bpf_htons(0x0800)
#define ETH_P_IPV6_BE bpf_htons(0x86DD)

#define IPPROTO_ICMPV6_NR 58
#define IPV6_NH_HOP 0
#define IPV6_NH_ROUTING 43
#define IPV6_NH_FRAGMENT 44
#define IPV6_NH_AH 51
#define IPV6_NH_DSTOPTS 60
#define IP_OFFSET_MASK 0x1fff
#define IPV6_FRAG_OFFSET_MASK 0xfff8

/* Load-time settings, fixed before load (the verifier prunes on them). */
const volatile __u32 fc_sampling = 0; /* 1 in N packets; 0 and 1 mean every packet */
const volatile __u8 fc_direction_mask = FC_TRACE_BOTH;
const volatile __u8 fc_debug = 0;
/* Replay (flowcollect replay): the frame's skb->tstamp is its capture time, and the flow's times
 * come from it. A constant of the loaded object: live, the verifier removes the branch. */
const volatile __u8 fc_replay = 0;

/*
 * Two identical maps behind a one-slot array-of-maps: the programs write the
 * one the slot points at; user space points it at the other and drains the
 * retired one, which has no writer left (native/fc_swapped.c). The maps of
 * each feature are declared so.
 */
#define FC_SWAPPED_MAPS(kind, map_type, key_type, value_type, a, b, slot)	\
	struct kind {								\
		__uint(type, map_type);						\
		__type(key, key_type);						\
		__type(value, value_type);					\
		__uint(max_entries, FC_DEFAULT_MAX_FLOWS);			\
	};									\
	struct kind a SEC(".maps");						\
	struct kind b SEC(".maps");						\
	struct {								\
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);			\
		__uint(max_entries, 1);						\
		__type(key, __u32);						\
		__array(values, struct kind);					\
	} slot SEC(".maps") = {							\
		.values = { [0] = &a },						\
	}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} fc_ringbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FC_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fc_counters SEC(".maps");

/* Add n to a slot of a per-CPU counters map (this one, or the features' fc_feature_counters). */
static __always_inline void add_to_counter(void *counters, __u32 slot, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(counters, &slot);

	if (c)
		*c += n; /* per-CPU slot: no other writer */
}

static __always_inline void count(__u32 slot, __u64 n)
{
	add_to_counter(&fc_counters, slot, n);
}

/* What one packet contributes, beside its key. */
struct fc_packet {
	__u64 segments;   /* wire frames: a GSO packet stands for gso_segs frames */
	__u32 header_len; /* L2..L4 header bytes, repeated in every GSO segment */
	__u16 tcp_flags;
	__u8 dscp;
	__u8 parse_failed;
};

/*
 * The frame as the parser reads it. When the headers are not all in the
 * linear area (trafgen, GSO, some drivers), the first FC_WINDOW bytes are
 * copied once into a per-CPU scratch buffer: one helper call per packet
 * instead of one per header.
 */
#define FC_WINDOW 128
struct fc_window {
	__u8 bytes[2 * FC_WINDOW]; /* the upper half: a header past the window (frame_bytes) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fc_window);
} fc_scratch SEC(".maps");

struct fc_frame {
	struct __sk_buff *skb;
	const __u8 *copy; /* the scratch copy, or NULL: read the linear area in place */
	__u32 copy_len;
};

static __always_inline void frame_open(struct __sk_buff *skb, struct fc_frame *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 zero = 0, n = skb->len;
	__u8 *scratch;

	f->skb = skb;
	f->copy = NULL;
	f->copy_len = 0;
	if (data + FC_WINDOW <= data_end || data_end - data >= n)
		return; /* the headers are linear */
	if (n > FC_WINDOW)
		n = FC_WINDOW;
	if (n < 1)
		return;
	scratch = bpf_map_lookup_elem(&fc_scratch, &zero);
	if (scratch && !bpf_skb_load_bytes(skb, 0, scratch, n)) {
		f->copy = scratch;
		f->copy_len = n;
	}
}

/*
 * len bytes of the frame at off: in place in the linear area or in the
 * window's copy (the common cases: no helper call), else copied with
 * bpf_skb_load_bytes into buf, or in copy mode into the window's upper half
 * (valid until the next such read; the parser reads one header at a time).
 * The scratch is per CPU and TC programs do not nest on a CPU. NULL when the
 * frame is shorter.
 */
static __always_inline const void *frame_bytes(const struct fc_frame *f, __u32 off, __u32 len, void *buf)
{
	if (f->copy) {
		/* The mask is a no-op (off < copy_len <= FC_WINDOW); it tells the verifier. */
		if (off + len <= f->copy_len)
			return f->copy + (off & (FC_WINDOW - 1));
		/* Past the window: into its upper half, so that every pointer of this mode is one
		 * type (map value) and the verifier walks one path per header, not two. */
		if (bpf_skb_load_bytes(f->skb, off, (void *)(f->copy + FC_WINDOW), len))
			return NULL;
		return f->copy + FC_WINDOW;
	} else {
		void *data = (void *)(long)f->skb->data;
		void *data_end = (void *)(long)f->skb->data_end;

		if (off <= FC_MAX_DIRECT_OFFSET && data + off + len <= data_end)
			return data + off;
	}
	if (bpf_skb_load_bytes(f->skb, off, buf, len))
		return NULL;
	return buf;
}

static __always_inline void set_ipv4_mapped(__u8 *dst, __be32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

static __always_inline __u16 tcp_flags_of(__u8 hdr_flags)
{
	__u16 flags = hdr_flags;

	if (hdr_flags & FC_TCP_ACK) {
		if (hdr_flags & FC_TCP_SYN)
			flags |= FC_TCP_SYN_ACK;
		if (hdr_flags & FC_TCP_FIN)
			flags |= FC_TCP_FIN_ACK;
		if (hdr_flags & FC_TCP_RST)
			flags |= FC_TCP_RST_ACK;
	}
	return flags;
}

/* Transport header at byte off: ports, ICMP type/code, TCP flags. */
static __always_inline int parse_transport(const struct fc_frame *f, __u32 off, __u8 proto,
					   struct fc_flow_key *key, struct fc_packet *pkt)
{
	switch (proto) {
	case IPPROTO_TCP: {
		__u8 buf[14]; /* ports, seq, ack, data offset, flags */
		const __u8 *tcp = frame_bytes(f, off, sizeof(buf), buf);

		if (!tcp)
			return -1;
		key->src_port = ((__u16)tcp[0] << 8) | tcp[1];
		key->dst_port = ((__u16)tcp[2] << 8) | tcp[3];
		pkt->tcp_flags = tcp_flags_of(tcp[13]);
		pkt->header_len = off + ((tcp[12] >> 4) * 4);
		return 0;
	}
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP: {
		__u8 buf[4];
		const __u8 *ports = frame_bytes(f, off, sizeof(buf), buf);

		if (!ports)
			return -1;
		key->src_port = ((__u16)ports[0] << 8) | ports[1];
		key->dst_port = ((__u16)ports[2] << 8) | ports[3];
		pkt->header_len = off + (proto == IPPROTO_SCTP ? 12 : 8);
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_NR: {
		__u8 buf[2];
		const __u8 *icmp = frame_bytes(f, off, sizeof(buf), buf);

		if (!icmp)
			return -1;
		key->icmp_type = icmp[0];
		key->icmp_code = icmp[1];
		return 0;
	}
	}
	return 0;
}

struct ipv4_header {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_header {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct eth_header {
	__u8 dst[FC_MAC_LEN];
	__u8 src[FC_MAC_LEN];
	__be16 proto;
};

static __always_inline int parse_ipv4(const struct fc_frame *f, __u32 off, struct fc_flow_key *key,
				      struct fc_packet *pkt)
{
	struct ipv4_header buf;
	const struct ipv4_header *ip = frame_bytes(f, off, sizeof(buf), &buf);
	__u32 ihl;

	if (!ip)
		return -1;
	ihl = ip->ver_ihl & 0x0f;
	if (ihl < 5)
		return -1;
	key->protocol = ip->protocol;
	pkt->dscp = ip->tos >> 2;
	set_ipv4_mapped(key->src_ip, ip->saddr);
	set_ipv4_mapped(key->dst_ip, ip->daddr);
	/* Only the first fragment carries the transport header. */
	if (bpf_ntohs(ip->frag_off) & IP_OFFSET_MASK)
		return 0;
	return parse_transport(f, off + ihl * 4, ip->protocol, key, pkt);
}

static __always_inline int parse_ipv6(const struct fc_frame *f, __u32 off, struct fc_flow_key *key,
				      struct fc_packet *pkt)
{
	struct ipv6_header buf;
	const struct ipv6_header *ip6 = frame_bytes(f, off, sizeof(buf), &buf);
	__u8 nexthdr;
	int i;

	if (!ip6)
		return -1;
	pkt->dscp = (bpf_ntohl(ip6->ver_tc_flow) >> 22) & 0x3f;
	__builtin_memcpy(key->src_ip, ip6->saddr, 16);
	__builtin_memcpy(key->dst_ip, ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	off += sizeof(buf);

	/* Bounded walk of the extension-header chain. */
	for (i = 0; i < FC_MAX_IPV6_EXT_HEADERS; i++) {
		__u8 ext[4]; /* next header, length, and for fragments the offset */

		if (nexthdr != IPV6_NH_HOP && nexthdr != IPV6_NH_ROUTING &&
		    nexthdr != IPV6_NH_DSTOPTS && nexthdr != IPV6_NH_FRAGMENT &&
		    nexthdr != IPV6_NH_AH)
			break;
		/* Rare: read with the helper, not frame_bytes(), which would multiply the paths
		 * the verifier walks by two per header of this loop. */
		if (bpf_skb_load_bytes(f->skb, off, ext, sizeof(ext))) {
			key->protocol = nexthdr;
			return -1;
		}
		if (nexthdr == IPV6_NH_FRAGMENT) {
			key->protocol = ext[0];
			if ((((__u16)ext[2] << 8) | ext[3]) & IPV6_FRAG_OFFSET_MASK)
				return 0; /* not the first fragment: no transport header */
			off += 8;
		} else if (nexthdr == IPV6_NH_AH) {
			off += ((__u32)ext[1] + 2) * 4;
		} else {
			off += ((__u32)ext[1] + 1) * 8;
		}
		nexthdr = ext[0];
	}
	key->protocol = nexthdr;
	return parse_transport(f, off, nexthdr, key, pkt);
}

/* Fill the key from the frame. Parse errors keep what was read so far. */
static __always_inline void parse_frame(const struct fc_frame *f, struct fc_flow_key *key,
					struct fc_packet *pkt)
{
	struct eth_header buf;
	const struct eth_header *eth = frame_bytes(f, 0, sizeof(buf), &buf);
	__be16 proto;
	__u32 off = sizeof(buf);
	int i, err = 0;

	if (!eth) {
		pkt->parse_failed = 1;
		return;
	}
	__builtin_memcpy(key->dst_mac, eth->dst, FC_MAC_LEN);
	__builtin_memcpy(key->src_mac, eth->src, FC_MAC_LEN);
	proto = eth->proto;

	/* On receive the outer tag is usually already in skb->vlan_tci (stripped). */
	if (f->skb->vlan_present)
		key->vlan_id = f->skb->vlan_tci & 0x0fff;
	for (i = 0; i < FC_MAX_VLAN_TAGS; i++) {
		__be16 tag[2]; /* TCI, inner ethertype */

		if (proto != ETH_P_8021Q_BE && proto != ETH_P_8021AD_BE)
			break;
		/* Rare on the wire (usually stripped into vlan_tci): the helper, as for IPv6 extension headers. */
		if (bpf_skb_load_bytes(f->skb, off, tag, sizeof(tag))) {
			pkt->parse_failed = 1;
			break;
		}
		if (!key->vlan_id)
			key->vlan_id = bpf_ntohs(tag[0]) & 0x0fff;
		proto = tag[1];
		off += sizeof(tag);
	}
	key->eth_protocol = bpf_ntohs(proto);

	if (proto == ETH_P_IP_BE)
		err = parse_ipv4(f, off, key, pkt);
	else if (proto == ETH_P_IPV6_BE)
		err = parse_ipv6(f, off, key, pkt);
	if (err)
		pkt->parse_failed = 1;
}

/* Opt-in features (--features): each in its own header, off unless asked for. */
#include "features.bpf.h"
#include "drops.bpf.h"
#include "dns.bpf.h"
#include "rtt.bpf.h"

#include "clock.bpf.h"
#include "table.bpf.h"

static __always_inline int account_packet(struct __sk_buff *skb, __u8 direction)
{
	struct fc_flow_key key __attribute__((aligned(8))); /* read as eight words by table.bpf.h */
	struct fc_frame frame;
	struct fc_packet pkt = {};
	struct fc_packet_counts counts;

	/*
	 * A GSO packet leaves as gso_segs frames, each with its own copy of the
	 * headers: every counter counts frames, as the flows do, so that frames
	 * seen = frames in flows + sampled out + lost, exactly.
	 */
	pkt.segments = skb->gso_segs > 1 ? skb->gso_segs : 1;
	count(FC_COUNTER_PACKETS_SEEN, pkt.segments);
	if (fc_sampling > 1 && bpf_get_prandom_u32() % fc_sampling != 0) {
		count(FC_COUNTER_SAMPLED_OUT, pkt.segments);
		return TC_ACT_UNSPEC;
	}

	__builtin_memset(&key, 0, sizeof(key));
	key.if_index = skb->ifindex;
	key.direction = direction;
	frame_open(skb, &frame);
	parse_frame(&frame, &key, &pkt);
	if (pkt.parse_failed) {
		count(FC_COUNTER_PARSE_FAILED, 1);
		if (fc_debug)
			bpf_printk("flowcollect: parse failed, ifindex %u len %u", skb->ifindex, skb->len);
	}

	counts.segments = pkt.segments;
	counts.bytes = skb->len;
	if (pkt.segments > 1 && pkt.header_len)
		counts.bytes += (pkt.segments - 1) * pkt.header_len;
	/* The features measure latencies in microseconds: they read the fine clock, and the flow takes it too. */
	counts.now = fc_dns || fc_rtt ? fine_clock(skb) : packet_clock(skb);
	counts.tcp_flags = pkt.tcp_flags;
	counts.dscp = pkt.dscp;
	if (fc_dns)
		track_dns(skb, &key, &pkt, counts.now);
	if (fc_rtt)
		track_handshake(&key, &pkt, counts.now);
	count_in_table(&key, &counts);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int fc_ingress(struct __sk_buff *skb)
{
	if (!(fc_direction_mask & FC_TRACE_INGRESS))
		return TC_ACT_UNSPEC;
	return account_packet(skb, FC_DIRECTION_INGRESS);
}

SEC("tc")
int fc_egress(struct __sk_buff *skb)
{
	if (!(fc_direction_mask & FC_TRACE_EGRESS))
		return TC_ACT_UNSPEC;
	return account_packet(skb, FC_DIRECTION_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
