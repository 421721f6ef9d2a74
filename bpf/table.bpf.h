/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The flow table: per-CPU open addressing in memory user space maps.
 *
 * Two halves; the programs write the one fc_table_active names, user space
 * drains the other (native/fc_table.c). A half is one array of 128-byte
 * elements made by user space at the size the half needs, with a region of
 * its own for every CPU (struct fc_table_region in fc_cpu_tables), so each
 * CPU writes only its own memory: one writer, plain adds, no locks, no
 * atomics. A region is an index of buckets (16 pairs of a hash tag and an
 * entry number), then the entries themselves, appended in the order flows
 * start: a new flow writes one index pair and the next entry, so inserts and
 * the drain run through memory in order. A flow's hash picks its bucket and
 * its first pair; its probes stay in the bucket (one lookup finds them all).
 *
 * A new flow whose bucket is full goes to the overflow map (a per-CPU hash,
 * one per half, found through fc_overflow with the same active index); one
 * past the CPU's cap, or refused by a full overflow map, goes to the ring
 * buffer as a one-packet record; if the ring buffer is full too, the loss is
 * counted. No packet is ever lost silently.
 *
 * Swap (native/fc_table.c): user space lays out the idle half, stores the
 * other index in fc_table_active, then updates an array-of-maps element, which
 * returns only after an RCU grace period: every program that read the old index
 * has finished, and the retired half is read and cleared with no writer left.
 */
#ifndef FC_TABLE_BPF_H
#define FC_TABLE_BPF_H

#include "flow_hash.h"

#define FC_E2BIG 7 /* errno.h is not for BPF programs: the hash map's "full" */
#define FC_DEFAULT_OVERFLOW_FLOWS 1024

/* The half the programs write: 0 or 1. Written by user space through the mapped .bss. */
__u32 fc_table_active = 0;

/* Each CPU's region in each half (max_entries: the possible CPUs, set before load). Mapped by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fc_cpu_table);
} fc_cpu_tables SEC(".maps");

/*
 * A half: index buckets and entries, 128 bytes each. User space makes each half at its own size
 * (BPF_F_INNER_MAP: the halves may differ in max_entries), maps it, and puts it into fc_table before
 * the flip. Sizes rather than types: user space makes the arrays without BTF, and the template must
 * match.
 */
struct fc_half_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE | BPF_F_INNER_MAP);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct fc_table_entry));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct fc_half_array);
} fc_table SEC(".maps");

/* Flows whose bucket was full: a per-CPU hash per half, indexed like fc_table. */
struct fc_overflow_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct fc_flow_key);
	__type(value, struct fc_flow_metrics);
	__uint(max_entries, FC_DEFAULT_OVERFLOW_FLOWS);
};
struct fc_overflow_map fc_overflow_a SEC(".maps");
struct fc_overflow_map fc_overflow_b SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct fc_overflow_map);
} fc_overflow SEC(".maps") = {
	.values = { [0] = &fc_overflow_a, [1] = &fc_overflow_b },
};

static __always_inline int same_key(const struct fc_flow_key *a, const struct fc_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4] && x[5] == y[5] &&
	       x[6] == y[6] && x[7] == y[7];
}

/* What one packet adds to a flow (the fields a new flow starts with). */
struct fc_packet_counts {
	__u64 segments;
	__u64 bytes;
	__u64 now;
	__u16 tcp_flags;
	__u8 dscp;
};

static __always_inline void add_packet(struct fc_flow_metrics *m, const struct fc_packet_counts *p)
{
	/* Another CPU may have started the flow in a per-CPU value this CPU never wrote: start it here. */
	if (!m->first_seen_ns)
		m->first_seen_ns = p->now;
	m->packets += p->segments;
	m->bytes += p->bytes;
	m->last_seen_ns = p->now;
	m->tcp_flags |= p->tcp_flags;
	m->dscp = p->dscp;
}

static __always_inline void start_flow(struct fc_flow_metrics *m, const struct fc_packet_counts *p)
{
	m->packets = p->segments;
	m->bytes = p->bytes;
	m->first_seen_ns = p->now;
	m->last_seen_ns = p->now;
	m->tcp_flags = p->tcp_flags;
	m->dscp = p->dscp;
	m->errno_code = 0;
	m->pad = 0;
}

/* A new flow the table cannot take: a one-packet record through the ring buffer, or a counted loss. */
static __always_inline void refuse(struct fc_table_region *region, const struct fc_flow_key *key,
				   const struct fc_packet_counts *p, long err)
{
	struct fc_flow_record *rec;

	region->refused += p->segments;
	count(FC_COUNTER_MAP_INSERT_FAILED, 1);
	rec = bpf_ringbuf_reserve(&fc_ringbuf, sizeof(*rec), 0);
	if (!rec) {
		count(FC_COUNTER_RINGBUF_RESERVE_FAILED, p->segments);
		count(FC_COUNTER_LOST_BYTES, p->bytes);
		return;
	}
	__builtin_memcpy(&rec->key, key, sizeof(*key));
	start_flow(&rec->metrics, p);
	rec->metrics.errno_code = (__u8)(-err);
	bpf_ringbuf_submit(rec, 0);
	count(FC_COUNTER_RINGBUF_SUBMITTED, 1);
}

/* The flow's bucket is full: count it in this half's overflow map. */
static __always_inline void count_overflow(struct fc_table_region *region, __u32 half,
					   const struct fc_flow_key *key, const struct fc_packet_counts *p)
{
	struct fc_flow_metrics *m, fresh;
	void *overflow = bpf_map_lookup_elem(&fc_overflow, &half);
	long err;

	if (!overflow) {
		count(FC_COUNTER_NO_FLOW_MAP, p->segments);
		return;
	}
	m = bpf_map_lookup_elem(overflow, key);
	if (m) {
		add_packet(m, p);
		count(FC_COUNTER_OVERFLOW_PACKETS, p->segments);
		return;
	}
	if (region->flows >= region->cap) {
		refuse(region, key, p, -FC_E2BIG);
		return;
	}
	start_flow(&fresh, p);
	/* BPF_ANY: if another CPU inserted the key since the lookup, this writes only this CPU's value. */
	err = bpf_map_update_elem(overflow, key, &fresh, BPF_ANY);
	if (err) {
		refuse(region, key, p, err);
		return;
	}
	region->flows++;
	region->overflowed++;
	count(FC_COUNTER_OVERFLOW_PACKETS, p->segments);
}

/* Add the packet to its flow in this CPU's region of the active half. */
static __always_inline void count_in_table(const struct fc_flow_key *key, const struct fc_packet_counts *p)
{
	__u32 cpu = bpf_get_smp_processor_id(), half, i, at, first, tag;
	struct fc_table_region *region;
	struct fc_table_bucket *bucket;
	struct fc_table_pair *pair = NULL;
	struct fc_table_entry *entry;
	struct fc_cpu_table *mine;
	void *elements;
	__u64 hash;

	mine = bpf_map_lookup_elem(&fc_cpu_tables, &cpu);
	half = *(volatile __u32 *)&fc_table_active & 1;
	elements = bpf_map_lookup_elem(&fc_table, &half);
	if (!mine || !elements) {
		count(FC_COUNTER_NO_FLOW_MAP, p->segments);
		return;
	}
	region = &mine->half[half];
	hash = fc_flow_hash(key);
	tag = (__u32)(hash >> 32);
	at = region->first_bucket + ((__u32)hash & region->bucket_mask);
	bucket = bpf_map_lookup_elem(elements, &at);
	if (!bucket) { /* a region outside its half: never, unless user space laid it out wrong */
		count(FC_COUNTER_NO_FLOW_MAP, p->segments);
		return;
	}
	first = tag >> 8;
	for (i = 0; i < FC_BUCKET_PAIRS; i++) {
		pair = &bucket->pairs[(first + i) & (FC_BUCKET_PAIRS - 1)];
		if (!pair->entry)
			break; /* a free pair: the flow is new (pairs are taken in probe order, never freed in a half) */
		if (pair->tag != tag)
			continue;
		at = region->first_entry + pair->entry - 1;
		entry = bpf_map_lookup_elem(elements, &at);
		if (entry && entry->hash == hash && same_key(&entry->key, key)) {
			add_packet(&entry->metrics, p);
			return;
		}
	}
	if (i == FC_BUCKET_PAIRS || !pair) {
		count_overflow(region, half, key, p);
		return;
	}
	if (region->flows >= region->cap) {
		refuse(region, key, p, -FC_E2BIG);
		return;
	}
	/* The region's next entry: flows started in it so far, less those the overflow map holds. */
	first = (__u32)(region->flows - region->overflowed);
	at = region->first_entry + first;
	entry = bpf_map_lookup_elem(elements, &at);
	if (!entry) {
		count(FC_COUNTER_NO_FLOW_MAP, p->segments);
		return;
	}
	__builtin_memcpy(&entry->key, key, sizeof(*key));
	entry->hash = hash;
	start_flow(&entry->metrics, p);
	pair->tag = tag;
	pair->entry = first + 1;
	region->flows++;
}

#endif /* FC_TABLE_BPF_H */
