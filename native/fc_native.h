/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The native boundary of flowcollect: a few coarse batch operations over the
 * kernel objects of bpf/flows.bpf.c. Python never asks for one record.
 *
 * Every function that can fail returns 0 (or a count) on success and a
 * negative errno on failure; fc_last_error() then says what failed and what
 * to do. flowcollect/kernel/bindings.py turns these into exceptions, in one place.
 *
 * The cffi builder reads this file as its cdef: only declarations and
 * "#define NAME <integer>" lines between the include guard.
 */
#ifndef FC_NATIVE_H
#define FC_NATIVE_H

/* Maps reachable through fc_agent_map_fd(). */
#define FC_MAP_FLOWS_A 0
#define FC_MAP_FLOWS_B 1
#define FC_MAP_FLOW_SLOT 2
#define FC_MAP_RINGBUF 3
#define FC_MAP_COUNTERS 4

/* Which of the two programs fc_agent_prog_fd() returns. */
#define FC_PROG_INGRESS 0
#define FC_PROG_EGRESS 1

/* How programs are attached (fc_load_opts.attach_mode): TCX links where the kernel has them
 * (auto), only TCX links, or only legacy clsact filters. */
#define FC_ATTACH_AUTO 0
#define FC_ATTACH_TCX 1
#define FC_ATTACH_TC 2

/* Opt-in features (fc_load_opts.features, fc_probe_features): bits of a mask. */
#define FC_FEATURE_DROPS 1
#define FC_FEATURE_RTT 2
#define FC_FEATURE_DNS 4

struct fc_load_opts {
	__u32 max_flows;      /* entries of each flow map (cache_max_flows) */
	__u32 ringbuf_bytes;  /* power of two, multiple of the page size */
	__u32 sampling;       /* 1 in N packets; 0 or 1 = every packet */
	__u32 drain_batch;    /* entries per batch syscall; 0 = default */
	__u8 direction_mask;  /* enum fc_direction_mask */
	__u8 debug;
	__u8 attach_mode;     /* FC_ATTACH_* */
	__u8 replay;          /* 1: flow times are the frames' skb->tstamp (fc_agent_replay), not the clock */
	__u32 features;       /* FC_FEATURE_* wanted: their programs are loaded, their hot-path code enabled */
};

/* What one swap-and-drain cost, for the agent's own metrics. */
struct fc_drain_stats {
	__u64 swap_ns;    /* map-in-map slot update, including the RCU grace period */
	__u64 drain_ns;   /* batch reads of the retired map and the per-CPU fold */
	__u32 batches;    /* batch syscalls made */
	__u32 used_batch_ops; /* 1 = batch syscalls, 0 = get-next-key fallback */
};

/* One frame of a capture for fc_agent_replay (flowcollect/agent/replay.py builds them). */
struct fc_replay_frame {
	__u64 offset;     /* of the frame in the data buffer */
	__u32 length;     /* bytes on the wire; the buffer holds that many (padded where the capture cut it) */
	__u32 egress;     /* 1: through fc_egress (a pcapng outbound frame), 0: fc_ingress */
	__u64 tstamp_ns;  /* capture time, epoch ns: becomes the flow's first/last seen time */
};

struct fc_agent;

const char *fc_last_error(void);
int fc_num_possible_cpus(void);

/* Which FC_FEATURE_* this kernel can do, from its BTF (and, for rtt, whether an empty fentry program
 * loads: that needs CAP_BPF, without which the tracepoint or kprobes are taken). For those of
 * `wanted` it cannot, fc_last_error() says what is missing, one clause per feature. */
__u32 fc_probe_features(__u32 wanted);

int fc_agent_open(const struct fc_load_opts *opts, struct fc_agent **out);
void fc_agent_close(struct fc_agent *agent);

/* Run captured frames through the programs (BPF_PROG_TEST_RUN, on the calling CPU) in order,
 * until all n ran or the flow maps gained stop_after_inserted new flows since the call (the
 * caller then swaps and drains, so the map never fills). Returns the frames that ran, or -errno. */
long fc_agent_replay(struct fc_agent *agent, const __u8 *data, const struct fc_replay_frame *frames, __u64 n,
		     __u64 stop_after_inserted);

/* Attach the enabled programs on ifindex (in the caller's network namespace),
 * beside any qdisc, filters and TCX programs already there; detach removes only ours.
 * A TCX link belongs to the agent's file descriptor: it goes when the process does. */
int fc_agent_attach(struct fc_agent *agent, int ifindex);
int fc_agent_detach(struct fc_agent *agent, int ifindex);

/* FC_ATTACH_TCX or FC_ATTACH_TC: how this agent attaches (auto resolved by a probe at open). */
int fc_agent_attach_mode(struct fc_agent *agent);

/* Put back what someone removed of ours (a filter deleted by hand, a link detached), on the
 * interfaces of the caller's network namespace. Returns how many attachments were restored;
 * one that cannot be (its interface is going away) is left to the caller's interface events. */
int fc_agent_repair(struct fc_agent *agent);

/* The kernel's id of one of our programs (FC_PROG_*): what `flowcollect cleanup` must not touch. */
long fc_agent_prog_id(struct fc_agent *agent, int which);

/* The ids of every program attached through TCX on ifindex (the caller's network namespace),
 * ours and others', into ids[0..capacity). Returns how many there are (0 without TCX). */
long fc_tcx_prog_ids(int ifindex, int ingress, __u32 *ids, __u32 capacity);

/* Point the kernel at the idle flow map, then read and clear the retired one
 * into out[0..n): one row per flow, per-CPU values folded. capacity must be at
 * least max_flows. Returns n. */
long fc_agent_swap_and_drain(struct fc_agent *agent, struct fc_flow_record *out, __u64 capacity,
			     struct fc_drain_stats *stats);

/* Copy up to capacity ring-buffer records into out, waiting up to timeout_ms
 * (0 = do not wait) for the first. Returns how many were copied. */
long fc_agent_ringbuf_consume(struct fc_agent *agent, struct fc_flow_record *out, __u64 capacity,
			      int timeout_ms);

/* New flows the programs inserted into the flow maps since load (a memory read, no syscall). */
__u64 fc_agent_flows_inserted(struct fc_agent *agent);

/* Remove every filter of ours, on every interface: nothing is counted after this. */
void fc_agent_detach_all(struct fc_agent *agent);

/* Sum the per-CPU counters map into out[0..n), n <= FC_COUNTER_MAX. */
int fc_agent_read_counters(struct fc_agent *agent, __u64 *out, __u32 n);

int fc_agent_map_fd(struct fc_agent *agent, int which);
int fc_agent_prog_fd(struct fc_agent *agent, int which);

/* Fold the per-CPU values of one flow (slots with first_seen_ns == 0 are empty). */
void fc_fold_percpu(const struct fc_flow_metrics *percpu, __u32 ncpus, struct fc_flow_metrics *out);

/* ---- Opt-in features (--features) ---- */

/* One enumerator of the kernel's enum skb_drop_reason, SKB_DROP_REASON_ prefix dropped. */
struct fc_drop_reason {
	__u32 value;
	char name[60];
};

/* Swap the drop maps (FC_FEATURE_DROPS) and drain the retired one into out[0..n), per-CPU values
 * folded; capacity at least max_flows. Called right after fc_agent_swap_and_drain, so both cover
 * the same period. Returns n (0 when the feature is off). */
long fc_agent_swap_and_drain_drops(struct fc_agent *agent, struct fc_drop_record *out, __u64 capacity);

/* The same for the DNS maps (FC_FEATURE_DNS): one row per flow tuple (client to server) and period. */
long fc_agent_swap_and_drain_dns(struct fc_agent *agent, struct fc_dns_record *out, __u64 capacity);

/* The same for the RTT maps (FC_FEATURE_RTT): one row per TCP connection tuple and period. */
long fc_agent_swap_and_drain_rtt(struct fc_agent *agent, struct fc_rtt_record *out, __u64 capacity);

/* How the RTT program is attached: "fentry", "tracepoint" (tcp_probe), "kprobe", or "" (rtt off). */
const char *fc_agent_rtt_attach(struct fc_agent *agent);

/* The kernel's drop reasons, from its BTF at run time (the enum grows between kernels). Returns how many. */
long fc_drop_reasons(struct fc_drop_reason *out, __u32 capacity);

/* Sum the per-CPU feature counters map (enum fc_feature_counter) into out[0..n). */
int fc_agent_read_feature_counters(struct fc_agent *agent, __u64 *out, __u32 n);

#endif /* FC_NATIVE_H */
