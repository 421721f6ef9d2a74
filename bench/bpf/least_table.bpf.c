// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The least a program of the flow table's design can do per packet, for bench/kernel_cost.py: the
 * floor under fc_ingress with its parser, its fallbacks, its layout in maps and its clock taken
 * away. It reads Ethernet, IPv4 and UDP/TCP ports from the linear area only, builds the agent's
 * 64-byte key, hashes it with the agent's hash (bpf/flow_hash.h), and counts the packet in this
 * CPU's region of a table laid out like a half of bpf/table.bpf.h (an index of 16-pair buckets, then
 * entries appended in order), but in .bss, sized when compiled, and with the time a tick wrote into
 * .bss (the agent's default clock, bpf/clock.bpf.h). A full bucket or a full region counts the
 * packet as refused, nothing more. The bench clears the table between runs of new flows.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flow.h"
#include "flow_hash.h"

#define LEAST_CPUS 8          /* the bench refuses to run it on a host with more possible CPUs */
#define LEAST_ENTRIES 8192    /* flows a CPU's region holds */
#define LEAST_BUCKETS (2 * LEAST_ENTRIES / FC_BUCKET_PAIRS)

struct least_region {
	struct fc_table_bucket index[LEAST_BUCKETS];
	struct fc_table_entry entries[LEAST_ENTRIES];
	__u64 flows;
	__u64 refused;
};

struct least_region least_regions[LEAST_CPUS];
__u64 least_now = 1; /* what the agent's tick would have written */

/* A function of its own, verified once: inlined into the probe loop, its comparisons of bytes the
 * verifier knows the ranges of keep the loop's states apart, past the verifier's limit. */
__attribute__((noinline)) int same_key(const struct fc_flow_key *a, const struct fc_flow_key *b)
{
	if (!a || !b)
		return 0;
	{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4] && x[5] == y[5] &&
	       x[6] == y[6] && x[7] == y[7];
	}
}

SEC("tc")
int least_table(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct fc_flow_key key __attribute__((aligned(8))) = {};
	__u32 cpu = bpf_get_smp_processor_id(), tag, first, i, at;
	__u8 *eth = data, *ip = data + 14, *l4;
	struct least_region *region;
	struct fc_table_bucket *bucket;
	struct fc_table_pair *pair = 0;
	struct fc_table_entry *entry;
	__u64 hash;

	if (cpu >= LEAST_CPUS || data + 14 + 20 + 4 > end)
		return TC_ACT_UNSPEC;
	__builtin_memcpy(key.dst_mac, eth, 6);
	__builtin_memcpy(key.src_mac, eth + 6, 6);
	key.eth_protocol = ((__u16)eth[12] << 8) | eth[13];
	if (key.eth_protocol == 0x0800) {
		key.src_ip[10] = key.src_ip[11] = key.dst_ip[10] = key.dst_ip[11] = 0xff;
		__builtin_memcpy(&key.src_ip[12], ip + 12, 4);
		__builtin_memcpy(&key.dst_ip[12], ip + 16, 4);
		key.protocol = ip[9];
		l4 = ip + (ip[0] & 0x0f) * 4;
		if (l4 + 4 <= (__u8 *)end) {
			key.src_port = ((__u16)l4[0] << 8) | l4[1];
			key.dst_port = ((__u16)l4[2] << 8) | l4[3];
		}
	}
	key.if_index = skb->ifindex;

	region = &least_regions[cpu];
	hash = fc_flow_hash(&key);
	tag = (__u32)(hash >> 32);
	bucket = &region->index[hash & (LEAST_BUCKETS - 1)];
	first = tag >> 8;
	for (i = 0; i < FC_BUCKET_PAIRS; i++) {
		pair = &bucket->pairs[(first + i) & (FC_BUCKET_PAIRS - 1)];
		if (!pair->entry)
			break;
		if (pair->tag != tag)
			continue;
		entry = &region->entries[(pair->entry - 1) & (LEAST_ENTRIES - 1)];
		if (entry->hash == hash && same_key(&entry->key, &key)) {
			entry->metrics.packets++;
			entry->metrics.bytes += skb->len;
			entry->metrics.last_seen_ns = least_now;
			return TC_ACT_UNSPEC;
		}
	}
	if (i == FC_BUCKET_PAIRS || !pair || region->flows >= LEAST_ENTRIES) {
		region->refused++;
		return TC_ACT_UNSPEC;
	}
	at = (__u32)region->flows & (LEAST_ENTRIES - 1);
	entry = &region->entries[at];
	__builtin_memcpy(&entry->key, &key, sizeof(key));
	entry->hash = hash;
	entry->metrics.packets = 1;
	entry->metrics.bytes = skb->len;
	entry->metrics.first_seen_ns = entry->metrics.last_seen_ns = least_now;
	pair->tag = tag;
	pair->entry = at + 1;
	region->flows++;
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
