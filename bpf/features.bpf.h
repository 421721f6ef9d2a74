/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the opt-in features' headers (drops.bpf.h, dns.bpf.h, rtt.bpf.h) share: the
 * per-CPU counters of what a feature saw but could not record, read by
 * user space (fc_agent_read_feature_counters) and logged at stop.
 */
#ifndef FC_FEATURES_BPF_H
#define FC_FEATURES_BPF_H

#define FC_EEXIST 17 /* errno.h is not for BPF programs */

/* Inode of the agent's network namespace (set at load): drops and sockets elsewhere are not its flows. */
const volatile __u32 fc_agent_netns = 0;

/* Per-CPU counters of what the features could not record (enum fc_feature_counter). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FC_FEATURE_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fc_feature_counters SEC(".maps");

static __always_inline void count_feature(__u32 slot, __u64 n)
{
	add_to_counter(&fc_feature_counters, slot, n); /* bpf/flows.bpf.c */
}

/*
 * This period's row of `tuple` in a feature's two swapped maps, reached through
 * `slot_map`, inserted as `fresh` (zeroed) when it is not there yet. EEXIST:
 * another CPU inserted it since the lookup, and it is found then. NULL when the
 * slot is empty or the map is full; a full map counts n in `unrecorded`.
 */
static __always_inline void *feature_row(void *slot_map, const struct fc_flow_tuple *tuple, const void *fresh,
					 __u32 unrecorded, __u64 n)
{
	__u32 slot = 0;
	void *rows = bpf_map_lookup_elem(slot_map, &slot), *row;
	long err;

	if (!rows)
		return NULL;
	row = bpf_map_lookup_elem(rows, tuple);
	if (row)
		return row;
	err = bpf_map_update_elem(rows, tuple, fresh, BPF_NOEXIST);
	row = err && err != -FC_EEXIST ? NULL : bpf_map_lookup_elem(rows, tuple);
	if (!row)
		count_feature(unrecorded, n);
	return row;
}

#endif /* FC_FEATURES_BPF_H */
