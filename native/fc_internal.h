/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the native files share and Python never sees: the agent's state and
 * the functions one file offers the others. fc_native.h is the boundary.
 *
 *   fc_error.c    the one place an error is recorded (fc_fail) and libbpf's log kept
 *   fc_load.c     open, load and close the programs; counters; capability probes
 *   fc_attach.c   TC attachments: TCX links or clsact filters, beside foreign ones
 *   fc_table.c    the flow table: layout of a half, swap, drain and fold across CPUs
 *   fc_swapped.c  maps swapped behind an array-of-maps slot, drained by batch syscalls
 *   fc_ringbuf.c  the ring buffer
 *   fc_replay.c   captured frames through the programs (BPF_PROG_TEST_RUN)
 *   fc_features.c the opt-in features' programs and maps
 *   fc_clock.c    the tick: a thread writing the time for the programs (FC_CLOCK_TICK)
 */
#ifndef FC_INTERNAL_H
#define FC_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "flow.h"
#include "fc_native.h"
#include "flows.skel.h"

#define FC_ERROR_LEN 1024

/* ---- fc_error.c ---- */

/* Record what failed and why (printf-style); returns err, a negative errno, for tail calls. */
int fc_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Record a message as the last error as is (no errno). */
void fc_set_error(const char *message);
/* Route libbpf's messages into a buffer (they would be a second line on stderr); clear it. */
void fc_capture_libbpf_log(void);
/* The tail of what libbpf printed since fc_capture_libbpf_log() (a failed load's verifier log). */
const char *fc_libbpf_log(void);

/* ---- shared helpers (fc_load.c) ---- */

__u64 fc_now_ns(void);
/* Write every page of a new buffer now, not in the first drain: first-touch memory is slow here. */
void fc_prefault(void *buffer, size_t size);
/* Inode of the calling thread's network namespace: interface indexes are per namespace. */
__u64 fc_current_netns(void);

/* ---- fc_swapped.c: two maps behind a one-slot array-of-maps, or one half's overflow map ---- */

struct fc_swapped_map {
	struct bpf_map *slot; /* NULL: swapped by the flow table (its overflow maps), not by a slot */
	int fd[2];
	int active;           /* index into fd of the map the kernel writes */
	size_t key_size, value_size;
	__u32 values_per_key; /* ncpus for a per-CPU map, else 1 */
	void (*fold)(const void *values, __u32 n, void *out);
	__u32 batch;          /* rows per batch syscall: the agent's, or the map's size if smaller */
	/* Reused between drains, and touched at open: first-touch memory is slow. */
	void *keys;           /* batch */
	void *values;         /* batch x values_per_key */
};

struct fc_agent;

int fc_swapped_open(struct fc_agent *agent, struct fc_swapped_map *m, struct bpf_map *slot, struct bpf_map *a,
		    struct bpf_map *b, size_t key_size, size_t value_size, bool percpu,
		    void (*fold)(const void *, __u32, void *));
void fc_swapped_close(struct fc_swapped_map *m);
/* Point the slot at the idle map and drain the retired one into out (rows of key + folded value). */
long fc_swapped_swap_and_drain(struct fc_agent *agent, struct fc_swapped_map *m, void *out, __u64 capacity);
/* Read and delete every row of a map no program writes any more; batches counts the syscalls. */
long fc_swapped_drain(struct fc_agent *agent, struct fc_swapped_map *m, int fd, __u8 *out, __u64 capacity,
		      __u32 *batches);

/* ---- fc_table.c ---- */

/* One half of the flow table: its array of index buckets and entries, and the mapping of it. */
struct fc_table_half {
	int fd;
	struct fc_table_entry *elements; /* 128-byte elements: a region's buckets, then its entries */
	size_t bytes;
	__u32 n_elements;
	__u32 *caps;          /* ncpus: the caps it was laid out for */
};

struct fc_table {
	struct fc_table_half half[2];
	int active;                     /* the half the programs write (fc_table_active) */
	struct fc_cpu_table *cpus;      /* fc_cpu_tables, mapped: ncpus entries */
	size_t cpus_bytes;
	struct fc_swapped_map overflow; /* fc_overflow_a/b, indexed like the halves */
	/* The drain's fold across CPUs: an open-addressing index of output rows (row + 1; 0 is free). */
	__u32 *index;
	__u64 index_size;               /* a power of two */
	struct fc_flow_record *overflow_rows;
	__u64 overflow_capacity;
};

int fc_table_open(struct fc_agent *agent, const struct fc_load_opts *opts);
void fc_table_close(struct fc_agent *agent);
/* The largest share of its cap a CPU's region of the active half has used (a region with no cap and
 * refused flows: 1). */
double fc_table_fill(struct fc_agent *agent);

/* ---- fc_attach.c ---- */

/* Does this kernel attach TCX links? 1: yes, 0: no, < 0: the probe itself failed. */
int fc_probe_tcx(void);

struct fc_attachment {
	__u64 netns; /* inode of the network namespace the interface is in */
	int ifindex;
	bool ingress, egress;
	/* TCX: the links (-1 when none); legacy tc: the filters */
	int ingress_link, egress_link;
	struct bpf_tc_opts ingress_opts, egress_opts;
};

/* ---- fc_ringbuf.c ---- */

struct fc_ringbuf_sink {
	struct fc_flow_record *out;
	__u64 capacity;
	__u64 n;
	__u64 malformed;
};

/* Unmap the ring buffer (it is mapped again by the next read that finds records waiting). */
void fc_ringbuf_close(struct fc_agent *agent);

/* ---- fc_features.c ---- */

struct fc_feature_state {
	__u32 enabled; /* FC_FEATURE_* */
	struct fc_swapped_map drops, dns, rtt;
	const char *rtt_attach; /* "fentry", "tracepoint", "kprobe", or "" */
};

int fc_features_before_load(struct fc_agent *agent, const struct fc_load_opts *opts);
int fc_features_after_load(struct fc_agent *agent);
void fc_features_close(struct fc_agent *agent);

/* ---- fc_clock.c ---- */

struct fc_clock {
	pthread_t thread;
	pthread_mutex_t lock; /* with wake: the thread's sleeps, which fc_clock_stop() cuts short */
	pthread_cond_t wake;
	bool initialized;     /* lock and wake */
	bool running;         /* the thread */
	bool stop;            /* under lock */
	__u32 min_runs;       /* tick_min_runs of the load */
	__u64 *values;        /* ncpus: the thread's own buffer for reading the runs counter */
	__u64 ticks;
	__u64 late_max_ns;
	__u64 starts;
};

/* Start the tick's thread (FC_CLOCK_TICK); stop and join it, free what it held (a no-op when it
 * never started). */
int fc_clock_start(struct fc_agent *agent, __u32 min_runs);
void fc_clock_stop(struct fc_agent *agent);

/* ---- the agent ---- */

struct fc_agent {
	struct flows_bpf *skel;
	struct ring_buffer *ringbuf; /* NULL while unmapped (fc_ringbuf.c) */
	__u64 ringbuf_last_record_ns;
	struct fc_ringbuf_sink sink;
	struct fc_table table;
	__u32 max_flows;
	__u32 ncpus;
	__u32 batch;
	__u8 direction_mask;
	bool batch_ops;
	bool tcx; /* attach with TCX links, else legacy clsact filters */
	__u64 *counter_values; /* ncpus, reused between reads */
	struct fc_attachment *attachments;
	size_t n_attachments;
	size_t cap_attachments;
	struct fc_feature_state features;
	struct fc_clock clock;
};

/* Sum slots 0..n of a per-CPU array of counters (of `size` slots) into out. */
int fc_sum_percpu_counters(struct fc_agent *agent, int fd, __u64 *out, __u32 n, __u32 size, const char *what);

#endif /* FC_INTERNAL_H */
