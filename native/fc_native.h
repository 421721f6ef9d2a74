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
#define FC_MAP_TABLE 0          /* fc_table: the two halves' bucket arrays */
#define FC_MAP_CPU_TABLES 1     /* fc_cpu_tables: each CPU's region in each half */
#define FC_MAP_OVERFLOW 2       /* fc_overflow: the halves' overflow maps */
#define FC_MAP_RINGBUF 3
#define FC_MAP_COUNTERS 4
#define FC_MAP_BSS 5            /* the programs' .bss: fc_table_active */

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
	__u32 max_flows;      /* the most flows a half holds, all CPUs together (cache_max_flows) */
	const __u32 *region_caps; /* one per possible CPU: flows it may start in a half, at load */
	__u32 overflow_flows; /* entries of each half's overflow map (flows whose bucket was full) */
	__u32 ringbuf_bytes;  /* power of two, multiple of the page size */
	__u32 sampling;       /* 1 in N packets; 0 or 1 = every packet */
	__u32 drain_batch;    /* entries per batch syscall (overflow and feature maps); 0 = default */
	__u8 direction_mask;  /* enum fc_direction_mask */
	__u8 debug;
	__u8 attach_mode;     /* FC_ATTACH_* */
	__u8 replay;          /* 1: flow times are the frames' skb->tstamp (fc_agent_replay), not the clock */
	__u8 clock;           /* enum fc_clock_mode: the flows' times from the fine clock or the tick */
	__u8 pad_opts[3];
	__u32 features;       /* FC_FEATURE_* wanted: their programs are loaded, their hot-path code enabled */
	__u32 tick_min_runs;  /* FC_CLOCK_TICK: the tick runs only while the programs run at least this many
				 times a second, all CPUs together (native/fc_clock.c); 0: always */
};

/* What one swap-and-drain cost and found, for the agent's own metrics. */
struct fc_drain_stats {
	__u64 swap_ns;       /* the idle half laid out, the flip, the RCU grace period */
	__u64 drain_ns;      /* the retired half read, folded across CPUs and cleared; its overflow map drained */
	__u64 table_bytes;   /* both halves' bucket arrays, after the swap */
	__u32 overflow_rows; /* rows that came from the overflow map */
	__u32 batches;       /* batch syscalls made (the overflow map's; none when it was empty) */
	__u32 resized;       /* 1: the idle half was made anew at another size before it became active */
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
 * until all n ran or a CPU's region of the active half reached stop_at_fill of its cap (the caller
 * then swaps and drains, so the table never refuses a flow; 0: never stop). The agent must be one
 * opened for replay: its table is written by these test runs only (they are preemptible, and a
 * live program writing the same region would break its one writer). Returns the frames that ran,
 * or -errno. */
long fc_agent_replay(struct fc_agent *agent, const __u8 *data, const struct fc_replay_frame *frames, __u64 n,
		     double stop_at_fill);

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

/* The flow table (bpf/table.bpf.h, native/fc_table.c). Lay out the idle half for next_caps (one
 * cap per possible CPU: flows that CPU may start in the half; its region is made anew only when its
 * size changes), point the programs at it, wait for those still writing the other, then read and
 * clear that one into out[0..n): one row per flow, its slots of every CPU and its overflow-map
 * values folded. capacity: at least the sum of the retired half's caps. Returns n. */
long fc_agent_swap_and_drain(struct fc_agent *agent, const __u32 *next_caps, struct fc_flow_record *out,
			     __u64 capacity, struct fc_drain_stats *stats);

/* Drained rows as the pipeline passes them on (struct fc_flow_export): each record with its wall-clock
 * times (first/last seen + wall_minus_mono_ns, signed), the sampling rate, and every other byte zero.
 * One pass, as flowcollect/pipeline/timebase.py evicted() does it in numpy for the ring buffer's rows. */
void fc_export_rows(const struct fc_flow_record *in, __u64 n, __s64 wall_minus_mono_ns, __u32 sampling,
		    struct fc_flow_export *out);

/* The flow table's hash of a key (bpf/flow_hash.h): its low bits pick the bucket in a region. */
__u64 fc_key_hash(const struct fc_flow_key *key);

/* The active half's region of every possible CPU, copied from the mapping (no syscall): its cap
 * and what the programs counted so far. Returns the number of CPUs. */
long fc_agent_table_regions(struct fc_agent *agent, struct fc_table_region *out, __u32 capacity);

/* Copy up to capacity ring-buffer records into out, waiting up to timeout_ms
 * (0 = do not wait) for the first. Returns how many were copied. */
long fc_agent_ringbuf_consume(struct fc_agent *agent, struct fc_flow_record *out, __u64 capacity,
			      int timeout_ms);

/* The tick (FC_CLOCK_TICK, native/fc_clock.c), since load: how many times it wrote the time, the
 * latest it did after its due time (ns), and how many times it started ticking (it rests while the
 * programs run less than tick_min_runs a second). All 0 with the fine clock. */
void fc_agent_clock_ticks(struct fc_agent *agent, __u64 *ticks, __u64 *late_max_ns, __u64 *starts);

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
