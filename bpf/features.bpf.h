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

#endif /* FC_FEATURES_BPF_H */
