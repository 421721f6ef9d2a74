// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The least a per-flow counting program can cost on this kernel, for bench/kernel_cost.py: one
 * clock read, one per-CPU hash lookup keyed by a 4-byte address (no parsing beyond it), an
 * in-place update, and for a key not seen before one insert. bpf/flows.bpf.c does this with its
 * full 64-byte key (bpf/flow.h) and a parser; the gap between the two is all that the key and the
 * parser cost.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define SRC_IP_OFFSET 26 /* untagged Ethernet + IPv4 */

struct counts {
	__u64 packets, bytes, first_seen_ns, last_seen_ns, flags; /* 40 bytes, as struct fc_flow_metrics */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, __u32);
	__type(value, struct counts);
	__uint(max_entries, 1 << 19);
} minimal_flows SEC(".maps");

SEC("tc")
int fc_minimal(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct counts *c, fresh = {};
	__u64 now = bpf_ktime_get_ns();
	__u32 key;

	if (data + SRC_IP_OFFSET + sizeof(key) > data_end)
		return TC_ACT_UNSPEC;
	key = *(__u32 *)(data + SRC_IP_OFFSET);
	c = bpf_map_lookup_elem(&minimal_flows, &key);
	if (c) {
		c->packets++;
		c->bytes += skb->len;
		c->last_seen_ns = now;
		return TC_ACT_UNSPEC;
	}
	fresh.packets = 1;
	fresh.bytes = skb->len;
	fresh.first_seen_ns = fresh.last_seen_ns = now;
	bpf_map_update_elem(&minimal_flows, &key, &fresh, BPF_ANY);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
