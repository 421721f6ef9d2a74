// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowcollect native core: load the kernel programs, attach them at TC,
 * swap-and-drain the flow maps in batches, consume the ring buffer.
 * See fc_native.h for the contract; libbpf-tools' map_helpers.c is the model
 * for the batch dump with a get-next-key fallback.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/stat.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "flow.h"
#include "fc_native.h"
#include "flows.skel.h"

#define FC_DEFAULT_DRAIN_BATCH 8192
#define FC_TC_PRIORITY 1
/*
 * TCX attach types (Linux 6.6). Debian 12's kernel headers (6.1) and libbpf
 * (1.1) predate them: the links are made with bpf_link_create and these
 * values of enum bpf_attach_type.
 */
#define FC_TCX_INGRESS 46
#define FC_TCX_EGRESS 47
#define FC_ERROR_LEN 1024
#define FC_LIBBPF_LOG_LEN 2048
#define FC_PRIVILEGE_HINT "needs CAP_BPF and CAP_NET_ADMIN: run as root"

static __thread char fc_error[FC_ERROR_LEN];
/* Tail of what libbpf printed (the verifier log on a failed load). */
static __thread char fc_libbpf_log[FC_LIBBPF_LOG_LEN];

const char *fc_last_error(void)
{
	return fc_error;
}

/* Record what failed and why; returns err (a negative errno) for tail calls. */
static int fc_fail(int err, const char *fmt, ...)
{
	char what[FC_ERROR_LEN / 2];
	const char *hint = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err == -EPERM || err == -EACCES)
		hint = ": " FC_PRIVILEGE_HINT;
	snprintf(fc_error, sizeof(fc_error), "%s: %s%s", what, strerror(-err), hint);
	return err;
}

static int fc_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t used = strlen(fc_libbpf_log);
	char line[512];
	int len;

	if (level == LIBBPF_DEBUG)
		return 0;
	len = vsnprintf(line, sizeof(line), fmt, ap);
	if (len <= 0)
		return 0;
	if ((size_t)len >= sizeof(line))
		len = sizeof(line) - 1;
	if (used + len >= sizeof(fc_libbpf_log)) {
		/* Keep the tail: the last lines of a verifier log say what broke. */
		size_t keep = sizeof(fc_libbpf_log) / 2;
		memmove(fc_libbpf_log, fc_libbpf_log + used - keep, keep);
		fc_libbpf_log[keep] = '\0';
		used = keep;
	}
	memcpy(fc_libbpf_log + used, line, len + 1);
	return 0;
}

static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int fc_num_possible_cpus(void)
{
	return libbpf_num_possible_cpus();
}

/* Does the kfree_skb tracepoint pass the drop reason (its third argument, enum skb_drop_reason)? */
static bool btf_kfree_skb_has_reason(const struct btf *vmlinux)
{
	int id = btf__find_by_name_kind(vmlinux, "btf_trace_kfree_skb", BTF_KIND_TYPEDEF);
	const struct btf_type *t;
	const struct btf_param *params;

	if (id <= 0 || btf__find_by_name_kind(vmlinux, "skb_drop_reason", BTF_KIND_ENUM) <= 0)
		return false;
	t = btf__type_by_id(vmlinux, id);                  /* typedef -> pointer -> function prototype */
	t = t ? btf__type_by_id(vmlinux, t->type) : NULL;
	t = t && btf_is_ptr(t) ? btf__type_by_id(vmlinux, t->type) : NULL;
	if (!t || !btf_is_func_proto(t) || btf_vlen(t) < 4)
		return false; /* (void *ctx, skb, location, reason, ...) */
	params = btf_params(t);
	t = btf__type_by_id(vmlinux, params[3].type);
	return t && btf_is_enum(t);
}

static const char *rtt_attach_kind(const struct btf *vmlinux); /* in the features' section at the end */

static void append_missing(char *buf, size_t len, const char *clause)
{
	size_t used = strlen(buf);

	snprintf(buf + used, len - used, "%s%s", used ? "; " : "", clause);
}

__u32 fc_probe_features(__u32 wanted)
{
	/* DNS is parsed by the TC programs themselves: it needs nothing more than counting does. */
	__u32 supported = FC_FEATURE_DNS;
	struct btf *vmlinux;
	char missing[FC_ERROR_LEN] = "";

	libbpf_set_print(fc_libbpf_print); /* libbpf's own lines would be a second line on stderr */
	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		if (wanted & FC_FEATURE_DROPS)
			append_missing(missing, sizeof(missing),
				       "drops needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)");
		if (wanted & FC_FEATURE_RTT)
			append_missing(missing, sizeof(missing),
				       "rtt needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)");
		snprintf(fc_error, sizeof(fc_error), "%s", missing);
		return supported;
	}
	if (btf_kfree_skb_has_reason(vmlinux))
		supported |= FC_FEATURE_DROPS;
	else if (wanted & FC_FEATURE_DROPS)
		append_missing(missing, sizeof(missing),
			       "drops needs the kfree_skb tracepoint with its drop reason (Linux 5.17 and later)");
	if (rtt_attach_kind(vmlinux)[0])
		supported |= FC_FEATURE_RTT;
	else if (wanted & FC_FEATURE_RTT)
		append_missing(missing, sizeof(missing),
			       "rtt needs BPF trampolines (fentry), the tcp_probe tracepoint in the kernel's BTF, or kprobes "
			       "to reach tcp_rcv_established");
	btf__free(vmlinux);
	snprintf(fc_error, sizeof(fc_error), "%s", missing);
	return supported;
}

static int probe_batch_ops(void)
{
	__u64 values[256]; /* room for one per-CPU value of an 8-byte map */
	__u32 key, out_batch, count = 1;
	int fd, err;

	if (libbpf_num_possible_cpus() > 256)
		return 0;
	fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "fc_probe", sizeof(key), sizeof(__u64), 1, NULL);
	if (fd < 0)
		return -errno;
	err = bpf_map_lookup_batch(fd, NULL, &out_batch, &key, values, &count, NULL);
	close(fd);
	/* An empty map answers ENOENT when batch lookups exist, EINVAL when they do not. */
	return err == 0 || err == -ENOENT;
}

void fc_fold_percpu(const struct fc_flow_metrics *percpu, __u32 ncpus, struct fc_flow_metrics *out)
{
	/* Folded in a local and stored once: the row in `out` is written exactly
	 * one time, and the compiler need not assume it aliases `percpu`. */
	struct fc_flow_metrics acc = { 0 };
	__u32 cpu;

	for (cpu = 0; cpu < ncpus; cpu++) {
		const struct fc_flow_metrics *m = &percpu[cpu];

		if (!m->first_seen_ns)
			continue; /* this CPU never saw the flow */
		acc.packets += m->packets;
		acc.bytes += m->bytes;
		if (!acc.first_seen_ns || m->first_seen_ns < acc.first_seen_ns)
			acc.first_seen_ns = m->first_seen_ns;
		if (m->last_seen_ns >= acc.last_seen_ns) {
			/* DSCP of the most recent packet, as the seed reports it. */
			acc.last_seen_ns = m->last_seen_ns;
			acc.dscp = m->dscp;
		}
		acc.tcp_flags |= m->tcp_flags;
		if (!acc.errno_code)
			acc.errno_code = m->errno_code;
	}
	*out = acc;
}

/* The flow maps' fold, in the shape every swapped map's fold has. */
static void fold_flow(const void *values, __u32 ncpus, void *out)
{
	fc_fold_percpu(values, ncpus, out);
}

struct fc_ringbuf_sink {
	struct fc_flow_record *out;
	__u64 capacity;
	__u64 n;
	__u64 malformed;
};

struct fc_attachment {
	__u64 netns; /* inode of the network namespace the interface is in */
	int ifindex;
	bool ingress, egress;
	/* TCX: the links (-1 when none); legacy tc: the filters */
	int ingress_link, egress_link;
	struct bpf_tc_opts ingress_opts, egress_opts;
};

/*
 * A feature's pair of maps behind a one-slot array-of-maps, swapped and drained
 * like the flow maps. Drained rows are the key then the value (folded over CPUs
 * when per-CPU), as struct fc_drop_record and fc_dns_record lay them out.
 */
/*
 * Two maps behind a one-slot array-of-maps: the programs write the one the slot points at, user
 * space swaps in the other and drains the retired one with no writer left. The flow maps and the
 * features' maps are all drained this way, by swap_and_drain().
 */
struct fc_swapped_map {
	struct bpf_map *slot;
	int fd[2];
	int active;           /* index into fd of the map the kernel writes */
	size_t key_size, value_size;
	__u32 values_per_key; /* ncpus for a per-CPU map, else 1 */
	void (*fold)(const void *values, __u32 n, void *out);
	/* Reused between drains, and touched at open: first-touch memory is slow. */
	void *keys;           /* batch */
	void *values;         /* batch x values_per_key */
};

/* What the opt-in features (--features) hold beside the flow maps; see the section at the end. */
struct fc_feature_state {
	__u32 enabled; /* FC_FEATURE_* */
	struct fc_swapped_map drops, dns, rtt;
	const char *rtt_attach; /* "fentry", "tracepoint", "kprobe", or "" */
};

static int open_swapped_map(struct fc_agent *agent, struct fc_swapped_map *m, struct bpf_map *slot, struct bpf_map *a,
			    struct bpf_map *b, size_t key_size, size_t value_size, bool percpu,
			    void (*fold)(const void *, __u32, void *));
static void close_swapped_map(struct fc_swapped_map *m);
static int features_before_load(struct fc_agent *agent, const struct fc_load_opts *opts);
static int features_after_load(struct fc_agent *agent);
static void features_close(struct fc_agent *agent);

struct fc_agent {
	struct flows_bpf *skel;
	struct ring_buffer *ringbuf;
	struct fc_ringbuf_sink sink;
	struct fc_swapped_map flows; /* fc_flows_a and fc_flows_b behind fc_flow_slot */
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
};

static int on_ringbuf_record(void *ctx, void *data, size_t size)
{
	struct fc_ringbuf_sink *sink = ctx;

	if (size < sizeof(struct fc_flow_record)) {
		sink->malformed++;
		return 0;
	}
	memcpy(&sink->out[sink->n++], data, sizeof(struct fc_flow_record));
	/* A negative return stops libbpf after this record is consumed. */
	return sink->n >= sink->capacity ? -ENOBUFS : 0;
}

/*
 * Does this kernel attach TCX links? Tried with a program that only passes
 * packets on (TCX_NEXT) on the loopback interface, detached at once: no
 * traffic is changed. 1: yes, 0: no, < 0: the probe itself failed.
 */
static int probe_tcx(void)
{
	struct bpf_insn pass_on[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = -1 }, /* TCX_NEXT */
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int lo = if_nametoindex("lo"), prog, link, err;

	if (!lo)
		return 0;
	prog = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "fc_probe_tcx", "GPL", pass_on, 2, NULL);
	if (prog < 0)
		return -errno;
	link = bpf_link_create(prog, lo, FC_TCX_INGRESS, NULL);
	err = link < 0 ? -errno : 0;
	close(prog);
	if (link >= 0) {
		close(link);
		return 1;
	}
	return err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUP ? 0 : err;
}

/* Write every page of a new buffer (a memset of zeros after malloc may become calloc, which
 * leaves the pages unmapped). */
static void prefault(void *buffer, size_t size)
{
	volatile char *p = buffer;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), at;

	for (at = 0; at < size; at += page)
		p[at] = 0;
}

static bool is_power_of_two(__u32 v)
{
	return v && !(v & (v - 1));
}

int fc_agent_open(const struct fc_load_opts *opts, struct fc_agent **out)
{
	struct fc_agent *agent;
	long page = sysconf(_SC_PAGESIZE);
	int err, ncpus;

	*out = NULL;
	fc_libbpf_log[0] = '\0';
	libbpf_set_print(fc_libbpf_print);
	if (!opts->max_flows)
		return fc_fail(-EINVAL, "cache_max_flows must be at least 1");
	if (!is_power_of_two(opts->ringbuf_bytes) || opts->ringbuf_bytes % page)
		return fc_fail(-EINVAL, "ring buffer size %u must be a power of two and a multiple of %ld",
			       opts->ringbuf_bytes, page);
	if (!opts->direction_mask || opts->direction_mask & ~FC_TRACE_BOTH)
		return fc_fail(-EINVAL, "direction mask %u must be 1 (ingress), 2 (egress) or 3 (both)",
			       opts->direction_mask);
	ncpus = libbpf_num_possible_cpus();
	if (ncpus <= 0)
		return fc_fail(ncpus ? ncpus : -EINVAL, "counting possible CPUs");

	agent = calloc(1, sizeof(*agent));
	if (!agent)
		return fc_fail(-ENOMEM, "allocating the agent");
	agent->max_flows = opts->max_flows;
	agent->ncpus = ncpus;
	agent->direction_mask = opts->direction_mask;
	agent->batch = opts->drain_batch ? opts->drain_batch : FC_DEFAULT_DRAIN_BATCH;
	if (agent->batch > agent->max_flows)
		agent->batch = agent->max_flows;
	agent->flows.fd[0] = agent->flows.fd[1] = -1;

	agent->skel = flows_bpf__open();
	if (!agent->skel) {
		err = fc_fail(-errno, "opening the embedded BPF object");
		goto fail;
	}
	agent->skel->rodata->fc_sampling = opts->sampling;
	agent->skel->rodata->fc_direction_mask = opts->direction_mask;
	agent->skel->rodata->fc_debug = opts->debug;
	agent->skel->rodata->fc_replay = opts->replay;
	if ((err = bpf_map__set_max_entries(agent->skel->maps.fc_flows_a, opts->max_flows)) ||
	    (err = bpf_map__set_max_entries(agent->skel->maps.fc_flows_b, opts->max_flows)) ||
	    (err = bpf_map__set_max_entries(agent->skel->maps.fc_ringbuf, opts->ringbuf_bytes))) {
		err = fc_fail(err, "sizing the BPF maps");
		goto fail;
	}
	if ((err = features_before_load(agent, opts)))
		goto fail;
	err = flows_bpf__load(agent->skel);
	if (err) {
		size_t used;

		fc_fail(err, "loading the BPF programs");
		used = strlen(fc_error);
		if (fc_libbpf_log[0] && used + 4 < sizeof(fc_error))
			snprintf(fc_error + used, sizeof(fc_error) - used, "\nlibbpf: %s", fc_libbpf_log);
		goto fail;
	}
	err = probe_batch_ops();
	if (err < 0) {
		fc_fail(err, "probing BPF batch map operations");
		goto fail;
	}
	agent->batch_ops = err == 1;
	if (opts->attach_mode != FC_ATTACH_TC) {
		err = probe_tcx();
		if (err < 0) {
			fc_fail(err, "probing TCX links");
			goto fail;
		}
		if (!err && opts->attach_mode == FC_ATTACH_TCX) {
			err = fc_fail(-EOPNOTSUPP, "this kernel has no TCX links (Linux 6.6 and later): use tc_attach_mode tc");
			goto fail;
		}
		agent->tcx = err == 1;
	}

	if ((err = open_swapped_map(agent, &agent->flows, agent->skel->maps.fc_flow_slot, agent->skel->maps.fc_flows_a,
				    agent->skel->maps.fc_flows_b, sizeof(struct fc_flow_key),
				    sizeof(struct fc_flow_metrics), true, fold_flow)))
		goto fail;
	agent->counter_values = calloc(ncpus, sizeof(__u64));
	if (!agent->counter_values) {
		err = fc_fail(-ENOMEM, "allocating the counters' buffer");
		goto fail;
	}
	agent->ringbuf = ring_buffer__new(bpf_map__fd(agent->skel->maps.fc_ringbuf), on_ringbuf_record,
					  &agent->sink, NULL);
	if (!agent->ringbuf) {
		err = fc_fail(-errno, "opening the ring buffer");
		goto fail;
	}
	if ((err = features_after_load(agent)))
		goto fail;
	*out = agent;
	return 0;
fail:
	fc_agent_close(agent);
	return err;
}

/* Interface indexes are per network namespace: an attachment is (namespace, ifindex). */
static __u64 current_netns(void)
{
	struct stat st;

	return stat("/proc/thread-self/ns/net", &st) ? 0 : st.st_ino;
}

static struct fc_attachment *find_attachment(struct fc_agent *agent, __u64 netns, int ifindex)
{
	size_t i;

	for (i = 0; i < agent->n_attachments; i++)
		if (agent->attachments[i].ifindex == ifindex && agent->attachments[i].netns == netns)
			return &agent->attachments[i];
	return NULL;
}

/*
 * Remove one of our filters. The filter at (handle, priority) is deleted only
 * if it still runs our program: never a foreign filter that took its place,
 * nor one on a same-numbered interface of another network namespace. A
 * vanished interface or filter is already detached.
 */
static int detach_filter(int ifindex, enum bpf_tc_attach_point point, const struct bpf_tc_opts *attached)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
	LIBBPF_OPTS(bpf_tc_opts, query, .handle = attached->handle, .priority = attached->priority);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = attached->handle, .priority = attached->priority);
	int err = bpf_tc_query(&hook, &query);

	if (err == -ENOENT || err == -ENODEV || err == -EINVAL)
		return 0;
	if (err)
		return err;
	if (query.prog_id != attached->prog_id)
		return 0;
	err = bpf_tc_detach(&hook, &opts);
	if (err == -ENOENT || err == -ENODEV)
		return 0;
	return err;
}

/*
 * Our filter goes first (priority 1) so that it sees every packet before a
 * foreign filter can end classification; it returns TC_ACT_UNSPEC, so the
 * foreign filters still run after it. If priority 1 is held by a filter of
 * another kind, the kernel picks a free priority (which may come later).
 */
static int attach_filter(int ifindex, enum bpf_tc_attach_point point, int prog_fd, struct bpf_tc_opts *out)
{
	static const __u32 priorities[] = { FC_TC_PRIORITY, 0 };
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
	int err = -EINVAL;
	size_t i;

	for (i = 0; i < sizeof(priorities) / sizeof(priorities[0]); i++) {
		LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .priority = priorities[i]);

		err = bpf_tc_attach(&hook, &opts);
		if (!err) {
			*out = opts;
			return 0;
		}
		if (err != -EEXIST && err != -EINVAL)
			break;
	}
	return err;
}

/* A TCX link of one of our programs on ifindex; its fd, or a negative errno. */
static int attach_link(struct fc_agent *agent, int ifindex, bool ingress)
{
	struct bpf_program *prog = ingress ? agent->skel->progs.fc_ingress : agent->skel->progs.fc_egress;
	int link = bpf_link_create(bpf_program__fd(prog), ifindex, ingress ? FC_TCX_INGRESS : FC_TCX_EGRESS, NULL);

	return link < 0 ? -errno : link;
}

/* Is the TCX link still attached (not detached by someone else, its interface still there)? */
static bool link_attached(int link)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(link, &info, &len))
		return false;
	/* The ifindex is the first field of the tcx member, as of xdp's, at the same offset. */
	return info.xdp.ifindex != 0;
}

static int attach_links(struct fc_agent *agent, struct fc_attachment *att)
{
	int link;

	if (agent->direction_mask & FC_TRACE_INGRESS) {
		link = attach_link(agent, att->ifindex, true);
		if (link < 0)
			return fc_fail(link, "attaching the ingress TCX link to ifindex %d", att->ifindex);
		att->ingress_link = link;
		att->ingress = true;
	}
	if (agent->direction_mask & FC_TRACE_EGRESS) {
		link = attach_link(agent, att->ifindex, false);
		if (link < 0) {
			if (att->ingress) {
				close(att->ingress_link);
				att->ingress_link = -1;
				att->ingress = false;
			}
			return fc_fail(link, "attaching the egress TCX link to ifindex %d", att->ifindex);
		}
		att->egress_link = link;
		att->egress = true;
	}
	return 0;
}

static void detach_links(struct fc_attachment *att)
{
	if (att->ingress_link >= 0)
		close(att->ingress_link);
	if (att->egress_link >= 0)
		close(att->egress_link);
	att->ingress_link = att->egress_link = -1;
	att->ingress = att->egress = false;
}

static int attach_filters(struct fc_agent *agent, struct fc_attachment *att)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = att->ifindex, .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	int err;

	/* Creates a clsact qdisc only when there is none; an existing one is shared, never replaced. */
	err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return fc_fail(err, "creating the clsact qdisc on ifindex %d", att->ifindex);
	if (agent->direction_mask & FC_TRACE_INGRESS) {
		err = attach_filter(att->ifindex, BPF_TC_INGRESS, bpf_program__fd(agent->skel->progs.fc_ingress),
				    &att->ingress_opts);
		if (err)
			return fc_fail(err, "attaching the ingress TC program to ifindex %d", att->ifindex);
		att->ingress = true;
	}
	if (agent->direction_mask & FC_TRACE_EGRESS) {
		err = attach_filter(att->ifindex, BPF_TC_EGRESS, bpf_program__fd(agent->skel->progs.fc_egress),
				    &att->egress_opts);
		if (err) {
			if (att->ingress)
				detach_filter(att->ifindex, BPF_TC_INGRESS, &att->ingress_opts);
			att->ingress = false;
			return fc_fail(err, "attaching the egress TC program to ifindex %d", att->ifindex);
		}
		att->egress = true;
	}
	return 0;
}

/* Some of our filters are gone: remove what is left of ours, attach them all again. */
static int reattach_filters(struct fc_agent *agent, struct fc_attachment *att)
{
	if (att->ingress)
		detach_filter(att->ifindex, BPF_TC_INGRESS, &att->ingress_opts);
	if (att->egress)
		detach_filter(att->ifindex, BPF_TC_EGRESS, &att->egress_opts);
	att->ingress = att->egress = false;
	return attach_filters(agent, att);
}

int fc_agent_attach(struct fc_agent *agent, int ifindex)
{
	struct fc_attachment att = { .netns = current_netns(), .ifindex = ifindex,
				     .ingress_link = -1, .egress_link = -1 };
	int err;

	if (find_attachment(agent, att.netns, ifindex))
		return 0;
	if (agent->n_attachments == agent->cap_attachments) {
		size_t cap = agent->cap_attachments ? agent->cap_attachments * 2 : 16;
		struct fc_attachment *grown = realloc(agent->attachments, cap * sizeof(*grown));

		if (!grown)
			return fc_fail(-ENOMEM, "recording the attachment of ifindex %d", ifindex);
		agent->attachments = grown;
		agent->cap_attachments = cap;
	}
	if (agent->tcx) {
		err = attach_links(agent, &att);
		if (err)
			return err;
		agent->attachments[agent->n_attachments++] = att;
		return 0;
	}
	err = attach_filters(agent, &att);
	if (err)
		return err;
	agent->attachments[agent->n_attachments++] = att;
	return 0;
}

int fc_agent_detach(struct fc_agent *agent, int ifindex)
{
	struct fc_attachment *att = find_attachment(agent, current_netns(), ifindex);
	int err = 0;

	if (!att)
		return 0;
	if (agent->tcx) {
		detach_links(att);
		*att = agent->attachments[--agent->n_attachments];
		return 0;
	}
	if (att->ingress && (err = detach_filter(ifindex, BPF_TC_INGRESS, &att->ingress_opts)))
		return fc_fail(err, "detaching the ingress TC program from ifindex %d", ifindex);
	att->ingress = false;
	if (att->egress && (err = detach_filter(ifindex, BPF_TC_EGRESS, &att->egress_opts)))
		return fc_fail(err, "detaching the egress TC program from ifindex %d", ifindex);
	*att = agent->attachments[--agent->n_attachments];
	return 0;
}

/*
 * Read and delete every row of a retired map (no program writes it any more) into out, as rows of
 * key + folded value (struct fc_flow_record for the flows). stats, when given, counts the batches.
 */
static long drain_retired(struct fc_agent *agent, struct fc_swapped_map *m, int fd, __u8 *out, __u64 capacity,
			  struct fc_drain_stats *stats)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	size_t row = m->key_size + m->value_size, values = m->value_size * m->values_per_key;
	__u64 in_batch = 0, out_batch = 0;
	void *prev = NULL;
	bool first = true;
	long n = 0, i;
	int err;

	while (agent->batch_ops) {
		__u32 count = agent->batch;

		err = bpf_map_lookup_and_delete_batch(fd, first ? NULL : &in_batch, &out_batch, m->keys, m->values,
						      &count, &opts);
		if (err && err != -ENOENT)
			return fc_fail(err, "draining a retired map in batches of %u", agent->batch);
		if (stats)
			stats->batches++;
		if (n + count > capacity)
			return fc_fail(-ENOBUFS, "drained more rows than the %llu given", (unsigned long long)capacity);
		for (i = 0; i < count; i++, n++) {
			memcpy(out + n * row, (__u8 *)m->keys + i * m->key_size, m->key_size);
			m->fold((__u8 *)m->values + i * values, m->values_per_key, out + n * row + m->key_size);
		}
		if (err == -ENOENT)
			return n;
		in_batch = out_batch;
		first = false;
	}
	/* Kernels without batch operations: walk the keys, then delete them (no writer can race). */
	while (n < (long)capacity && !(err = bpf_map_get_next_key(fd, prev, out + n * row))) {
		if ((err = bpf_map_lookup_elem(fd, out + n * row, m->values)))
			return fc_fail(err, "reading a row of a retired map");
		m->fold(m->values, m->values_per_key, out + n * row + m->key_size);
		prev = out + n++ * row;
	}
	if (err && err != -ENOENT && n < (long)capacity)
		return fc_fail(err, "walking a retired map");
	for (i = 0; i < n; i++) {
		err = bpf_map_delete_elem(fd, out + i * row);
		if (err && err != -ENOENT)
			return fc_fail(err, "clearing a retired map");
	}
	return n;
}

/* Point the slot at the idle map and drain the retired one; stats (flows only) gets the times. */
static long swap_and_drain(struct fc_agent *agent, struct fc_swapped_map *m, void *out, __u64 capacity,
			   struct fc_drain_stats *stats)
{
	int retired = m->active, next = !m->active;
	__u32 slot = 0;
	__u64 t0 = now_ns(), t1;
	long n;
	int err;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (capacity < agent->max_flows)
		return fc_fail(-EINVAL, "a drain needs room for %u rows, got %llu", agent->max_flows,
			       (unsigned long long)capacity);
	/* The kernel waits for running programs before it returns: the retired map has no writer. */
	err = bpf_map_update_elem(bpf_map__fd(m->slot), &slot, &m->fd[next], BPF_ANY);
	if (err)
		return fc_fail(err, "swapping a map (%s)", bpf_map__name(m->slot));
	m->active = next;
	t1 = now_ns();
	n = drain_retired(agent, m, m->fd[retired], out, capacity, stats);
	if (stats) {
		stats->swap_ns = t1 - t0;
		stats->used_batch_ops = agent->batch_ops;
		stats->drain_ns = now_ns() - t1;
	}
	return n;
}

long fc_agent_swap_and_drain(struct fc_agent *agent, struct fc_flow_record *out, __u64 capacity,
			     struct fc_drain_stats *stats)
{
	return swap_and_drain(agent, &agent->flows, out, capacity, stats);
}

long fc_agent_ringbuf_consume(struct fc_agent *agent, struct fc_flow_record *out, __u64 capacity,
			      int timeout_ms)
{
	int err;

	if (!capacity)
		return fc_fail(-EINVAL, "consuming the ring buffer into 0 rows");
	agent->sink.out = out;
	agent->sink.capacity = capacity;
	agent->sink.n = 0;
	err = timeout_ms > 0 ? ring_buffer__poll(agent->ringbuf, timeout_ms) : ring_buffer__consume(agent->ringbuf);
	if (err < 0 && err != -ENOBUFS && err != -EINTR)
		return fc_fail(err, "consuming the ring buffer");
	return (long)agent->sink.n;
}

long fc_agent_replay(struct fc_agent *agent, const __u8 *data, const struct fc_replay_frame *frames, __u64 n,
		     __u64 stop_after_inserted)
{
	int progs[2] = { bpf_program__fd(agent->skel->progs.fc_ingress), bpf_program__fd(agent->skel->progs.fc_egress) };
	__u64 start = fc_agent_flows_inserted(agent);
	__u64 i;

	for (i = 0; i < n; i++) {
		const struct fc_replay_frame *frame = &frames[i];
		/* The skb's timestamp carries the capture time to the program (bpf/flows.bpf.c, fc_replay). */
		struct __sk_buff ctx = { .tstamp = frame->tstamp_ns };
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data + frame->offset, .data_size_in = frame->length,
			    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1);
		int err;

		if (stop_after_inserted && fc_agent_flows_inserted(agent) - start >= stop_after_inserted)
			break;
		err = bpf_prog_test_run_opts(progs[frame->egress ? 1 : 0], &opts);
		if (err)
			return fc_fail(err, "running frame %llu of the capture through the programs",
				       (unsigned long long)i);
	}
	return (long)i;
}

__u64 fc_agent_flows_inserted(struct fc_agent *agent)
{
	return __atomic_load_n(&agent->skel->bss->fc_flows_inserted, __ATOMIC_RELAXED);
}

void fc_agent_detach_all(struct fc_agent *agent)
{
	/* Filters we leave behind would keep counting into maps nobody drains. */
	while (agent->n_attachments) {
		struct fc_attachment *att = &agent->attachments[agent->n_attachments - 1];

		if (agent->tcx) {
			detach_links(att);
		} else {
			if (att->ingress)
				detach_filter(att->ifindex, BPF_TC_INGRESS, &att->ingress_opts);
			if (att->egress)
				detach_filter(att->ifindex, BPF_TC_EGRESS, &att->egress_opts);
		}
		agent->n_attachments--;
	}
}

int fc_agent_attach_mode(struct fc_agent *agent)
{
	return agent->tcx ? FC_ATTACH_TCX : FC_ATTACH_TC;
}

/* Is our filter still at (handle, priority), running our program? */
static bool filter_attached(int ifindex, enum bpf_tc_attach_point point, const struct bpf_tc_opts *attached)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
	LIBBPF_OPTS(bpf_tc_opts, query, .handle = attached->handle, .priority = attached->priority);

	return !bpf_tc_query(&hook, &query) && query.prog_id == attached->prog_id;
}

int fc_agent_repair(struct fc_agent *agent)
{
	__u64 netns = current_netns();
	int repaired = 0;
	size_t i;

	for (i = 0; i < agent->n_attachments; i++) {
		struct fc_attachment *att = &agent->attachments[i];
		bool whole;
		int err;

		if (att->netns != netns || !if_indextoname(att->ifindex, (char[IF_NAMESIZE]){ 0 }))
			continue; /* another namespace's, or the interface is going: the informer says so */
		if (agent->tcx) {
			whole = (!att->ingress || link_attached(att->ingress_link)) &&
				(!att->egress || link_attached(att->egress_link));
			if (whole)
				continue;
			detach_links(att);
			err = attach_links(agent, att);
		} else {
			whole = (!att->ingress || filter_attached(att->ifindex, BPF_TC_INGRESS, &att->ingress_opts)) &&
				(!att->egress || filter_attached(att->ifindex, BPF_TC_EGRESS, &att->egress_opts));
			if (whole)
				continue;
			err = reattach_filters(agent, att);
		}
		if (!err)  /* else the interface is going away: the informer's event will say so */
			repaired++;
	}
	return repaired;
}

long fc_tcx_prog_ids(int ifindex, int ingress, __u32 *ids, __u32 capacity)
{
	__u32 count = capacity;
	int err = bpf_prog_query(ifindex, ingress ? FC_TCX_INGRESS : FC_TCX_EGRESS, 0, NULL, ids, &count);

	if (err && (errno == EINVAL || errno == EOPNOTSUPP))
		return 0; /* a kernel without TCX has none */
	if (err)
		return fc_fail(-errno, "listing the TCX programs of ifindex %d", ifindex);
	return count;
}

long fc_agent_prog_id(struct fc_agent *agent, int which)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	int fd = fc_agent_prog_fd(agent, which);

	if (fd < 0)
		return fd;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return fc_fail(-errno, "reading the id of program %d", which);
	return info.id;
}

/* Sum slots 0..n of a per-CPU array of counters (of `size` slots) into out. */
static int sum_percpu_counters(struct fc_agent *agent, int fd, __u64 *out, __u32 n, __u32 size, const char *what)
{
	__u32 slot, cpu;

	if (n > size)
		return fc_fail(-EINVAL, "%u %s asked, %u exist", n, what, size);
	for (slot = 0; slot < n; slot++) {
		int err = bpf_map_lookup_elem(fd, &slot, agent->counter_values);

		if (err)
			return fc_fail(err, "reading %s slot %u", what, slot);
		out[slot] = 0;
		for (cpu = 0; cpu < agent->ncpus; cpu++)
			out[slot] += agent->counter_values[cpu];
	}
	return 0;
}

int fc_agent_read_counters(struct fc_agent *agent, __u64 *out, __u32 n)
{
	return sum_percpu_counters(agent, bpf_map__fd(agent->skel->maps.fc_counters), out, n, FC_COUNTER_MAX,
				   "counters");
}

int fc_agent_map_fd(struct fc_agent *agent, int which)
{
	switch (which) {
	case FC_MAP_FLOWS_A:
		return agent->flows.fd[0];
	case FC_MAP_FLOWS_B:
		return agent->flows.fd[1];
	case FC_MAP_FLOW_SLOT:
		return bpf_map__fd(agent->skel->maps.fc_flow_slot);
	case FC_MAP_RINGBUF:
		return bpf_map__fd(agent->skel->maps.fc_ringbuf);
	case FC_MAP_COUNTERS:
		return bpf_map__fd(agent->skel->maps.fc_counters);
	}
	return fc_fail(-EINVAL, "no map number %d", which);
}

int fc_agent_prog_fd(struct fc_agent *agent, int which)
{
	switch (which) {
	case FC_PROG_INGRESS:
		return bpf_program__fd(agent->skel->progs.fc_ingress);
	case FC_PROG_EGRESS:
		return bpf_program__fd(agent->skel->progs.fc_egress);
	}
	return fc_fail(-EINVAL, "no program number %d", which);
}

void fc_agent_close(struct fc_agent *agent)
{
	if (!agent)
		return;
	fc_agent_detach_all(agent);
	features_close(agent);
	ring_buffer__free(agent->ringbuf);
	flows_bpf__destroy(agent->skel);
	free(agent->attachments);
	close_swapped_map(&agent->flows);
	free(agent->counter_values);
	free(agent);
}


/* ---- Opt-in features (--features): their programs and maps, loaded only when asked for ---- */

/* The value of enumerator `name` of enum `type` in the kernel's BTF; `missing` when there is none. */
static __u32 btf_enum_value(const struct btf *vmlinux, const char *type, const char *name, __u32 missing)
{
	int id = btf__find_by_name_kind(vmlinux, type, BTF_KIND_ENUM);
	const struct btf_type *t = id > 0 ? btf__type_by_id(vmlinux, id) : NULL;
	const struct btf_enum *e;
	__u16 i;

	if (!t)
		return missing;
	for (i = 0, e = btf_enum(t); i < btf_vlen(t); i++, e++)
		if (!strcmp(btf__name_by_offset(vmlinux, e->name_off), name))
			return (__u32)e->val;
	return missing;
}

/* Fold the per-CPU values of one drop row (slots with first_seen_ns == 0 are empty). */
static void fold_drop_percpu(const void *values, __u32 ncpus, void *out)
{
	const struct fc_drop_metrics *percpu = values;
	struct fc_drop_metrics acc = { 0 };
	__u32 cpu;

	for (cpu = 0; cpu < ncpus; cpu++) {
		const struct fc_drop_metrics *m = &percpu[cpu];

		if (!m->first_seen_ns)
			continue;
		acc.packets += m->packets;
		acc.bytes += m->bytes;
		if (!acc.first_seen_ns || m->first_seen_ns < acc.first_seen_ns)
			acc.first_seen_ns = m->first_seen_ns;
		if (m->last_seen_ns >= acc.last_seen_ns) {
			/* The reason, device and state of the latest drop. */
			acc.last_seen_ns = m->last_seen_ns;
			acc.reason = m->reason;
			acc.if_index = m->if_index;
			acc.tcp_state = m->tcp_state;
		}
	}
	memcpy(out, &acc, sizeof(acc));
}

/* Fold the per-CPU values of one RTT row (slots with first_seen_ns == 0 are empty): the largest of each RTT. */
static void fold_rtt_percpu(const void *values, __u32 ncpus, void *out)
{
	const struct fc_rtt_metrics *percpu = values;
	struct fc_rtt_metrics acc = { 0 };
	__u32 cpu;

	for (cpu = 0; cpu < ncpus; cpu++) {
		const struct fc_rtt_metrics *m = &percpu[cpu];

		if (!m->first_seen_ns)
			continue;
		if (m->srtt_max_ns > acc.srtt_max_ns)
			acc.srtt_max_ns = m->srtt_max_ns;
		if (m->handshake_ns > acc.handshake_ns)
			acc.handshake_ns = m->handshake_ns;
		if (!acc.first_seen_ns || m->first_seen_ns < acc.first_seen_ns)
			acc.first_seen_ns = m->first_seen_ns;
		if (m->last_seen_ns > acc.last_seen_ns)
			acc.last_seen_ns = m->last_seen_ns;
	}
	memcpy(out, &acc, sizeof(acc));
}

static void copy_dns(const void *values, __u32 n, void *out)
{
	(void)n; /* one value: the DNS map is not per-CPU */
	memcpy(out, values, sizeof(struct fc_dns_metrics));
}

/* Can a program of this kernel run at the entry of tcp_rcv_established (fentry: BPF trampolines)?
 * Loaded and closed at once: "return 0", nothing attached. */
static bool fentry_loads(const struct btf *vmlinux)
{
	struct bpf_insn ret0[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int id = btf__find_by_name_kind(vmlinux, "tcp_rcv_established", BTF_KIND_FUNC), fd;
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_FENTRY, .attach_btf_id = id);

	if (id <= 0)
		return false;
	fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "fc_probe_fentry", "GPL", ret0, 2, &opts);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* How the RTT program can attach to tcp_rcv_established here: "fentry", "tracepoint" (tp_btf/tcp_probe,
 * which it calls), "kprobe" (CONFIG_KPROBES, the PMU libbpf uses), or "" (none). vmlinux may be NULL. */
static const char *rtt_attach_kind(const struct btf *vmlinux)
{
	if (vmlinux && fentry_loads(vmlinux))
		return "fentry";
	if (vmlinux && btf__find_by_name_kind(vmlinux, "btf_trace_tcp_probe", BTF_KIND_TYPEDEF) > 0)
		return "tracepoint";
	if (!access("/sys/bus/event_source/devices/kprobe/type", R_OK))
		return "kprobe";
	return "";
}

/* Size a feature's two maps: max_flows entries when on, one (the least a map takes) when off. */
static int size_swapped_maps(struct bpf_map *a, struct bpf_map *b, bool on, __u32 max_flows)
{
	int err = bpf_map__set_max_entries(a, on ? max_flows : 1);

	return err ? err : bpf_map__set_max_entries(b, on ? max_flows : 1);
}

static int features_before_load(struct fc_agent *agent, const struct fc_load_opts *opts)
{
	struct flows_bpf *skel = agent->skel;
	bool drops = opts->features & FC_FEATURE_DROPS, dns = opts->features & FC_FEATURE_DNS;
	bool rtt = opts->features & FC_FEATURE_RTT;
	/* Read once, for both features that need it (it is a few MB to parse). */
	struct btf *vmlinux = drops || rtt ? btf__load_vmlinux_btf() : NULL;
	int err;

	agent->features.enabled = opts->features;
	if (drops && !vmlinux)
		return fc_fail(-errno ? -errno : -ENOENT, "reading the kernel's BTF for the drops feature");
	/* Off: a program is not loaded (or, in the TC programs, its code is removed by the verifier:
	 * fc_dns is a constant of the loaded object) and its maps take one entry each. */
	bpf_program__set_autoload(skel->progs.fc_kfree_skb, drops);
	agent->features.rtt_attach = rtt ? rtt_attach_kind(vmlinux) : "";
	if (drops)
		skel->rodata->fc_drop_reason_consumed = btf_enum_value(vmlinux, "skb_drop_reason", "SKB_CONSUMED", ~0U);
	btf__free(vmlinux);
	bpf_program__set_autoload(skel->progs.fc_rtt_fentry, !strcmp(agent->features.rtt_attach, "fentry"));
	bpf_program__set_autoload(skel->progs.fc_rtt_tcp_probe, !strcmp(agent->features.rtt_attach, "tracepoint"));
	bpf_program__set_autoload(skel->progs.fc_rtt_kprobe, !strcmp(agent->features.rtt_attach, "kprobe"));
	skel->rodata->fc_dns = dns;
	skel->rodata->fc_rtt = rtt;
	if ((err = size_swapped_maps(skel->maps.fc_drops_a, skel->maps.fc_drops_b, drops, opts->max_flows)) ||
	    (err = size_swapped_maps(skel->maps.fc_dns_a, skel->maps.fc_dns_b, dns, opts->max_flows)) ||
	    (err = bpf_map__set_max_entries(skel->maps.fc_dns_pending, dns ? opts->max_flows : 1)) ||
	    (err = size_swapped_maps(skel->maps.fc_rtt_a, skel->maps.fc_rtt_b, rtt, opts->max_flows)) ||
	    (err = bpf_map__set_max_entries(skel->maps.fc_handshakes, rtt ? opts->max_flows : 1)))
		return fc_fail(err, "sizing the feature maps");
	/* Drops and sockets are global: only those of the agent's own network namespace are its flows. */
	skel->rodata->fc_agent_netns = (__u32)current_netns();
	return 0;
}

static int open_swapped_map(struct fc_agent *agent, struct fc_swapped_map *m, struct bpf_map *slot, struct bpf_map *a,
			    struct bpf_map *b, size_t key_size, size_t value_size, bool percpu,
			    void (*fold)(const void *, __u32, void *))
{
	size_t keys = (size_t)agent->batch * key_size, values;

	m->slot = slot;
	m->fd[0] = bpf_map__fd(a);
	m->fd[1] = bpf_map__fd(b);
	m->active = 0; /* the static slot initialiser points at the first map */
	m->key_size = key_size;
	m->value_size = value_size;
	m->values_per_key = percpu ? agent->ncpus : 1;
	m->fold = fold;
	values = (size_t)agent->batch * m->values_per_key * value_size;
	m->keys = malloc(keys);
	m->values = malloc(values);
	if (!m->keys || !m->values)
		return fc_fail(-ENOMEM, "allocating drain buffers for %u rows", agent->batch);
	/* Touched now, not by the first drain: a fresh mapping faults in page by page (~300 faults for
	 * the flows' default batch on 2 CPUs), which the first eviction would pay inside the kernel's copy. */
	prefault(m->keys, keys);
	prefault(m->values, values);
	return 0;
}

static void close_swapped_map(struct fc_swapped_map *m)
{
	free(m->keys);
	free(m->values);
	m->keys = m->values = NULL;
}

static int features_after_load(struct fc_agent *agent)
{
	struct fc_feature_state *f = &agent->features;
	struct flows_bpf *skel = agent->skel;
	int err;

	if (f->enabled & FC_FEATURE_DNS &&
	    (err = open_swapped_map(agent, &f->dns, skel->maps.fc_dns_slot, skel->maps.fc_dns_a, skel->maps.fc_dns_b,
				    sizeof(struct fc_flow_tuple), sizeof(struct fc_dns_metrics), false, copy_dns)))
		return err;
	if (f->enabled & FC_FEATURE_RTT) {
		if ((err = open_swapped_map(agent, &f->rtt, skel->maps.fc_rtt_slot, skel->maps.fc_rtt_a,
					    skel->maps.fc_rtt_b, sizeof(struct fc_flow_tuple), sizeof(struct fc_rtt_metrics),
					    true, fold_rtt_percpu)))
			return err;
		if (!strcmp(f->rtt_attach, "fentry"))
			skel->links.fc_rtt_fentry = bpf_program__attach(skel->progs.fc_rtt_fentry);
		else if (!strcmp(f->rtt_attach, "tracepoint"))
			skel->links.fc_rtt_tcp_probe = bpf_program__attach(skel->progs.fc_rtt_tcp_probe);
		else if (!strcmp(f->rtt_attach, "kprobe"))
			skel->links.fc_rtt_kprobe = bpf_program__attach(skel->progs.fc_rtt_kprobe);
		if (!skel->links.fc_rtt_fentry && !skel->links.fc_rtt_tcp_probe && !skel->links.fc_rtt_kprobe)
			return fc_fail(errno ? -errno : -EOPNOTSUPP, "attaching the RTT program to tcp_rcv_established (%s)",
				       f->rtt_attach[0] ? f->rtt_attach : "no way to attach: no fentry, tcp_probe or kprobes");
	}
	if (!(f->enabled & FC_FEATURE_DROPS))
		return 0;
	if ((err = open_swapped_map(agent, &f->drops, skel->maps.fc_drop_slot, skel->maps.fc_drops_a,
				    skel->maps.fc_drops_b, sizeof(struct fc_flow_tuple), sizeof(struct fc_drop_metrics),
				    true, fold_drop_percpu)))
		return err;
	/* The skeleton owns the link: flows_bpf__destroy() detaches it. */
	skel->links.fc_kfree_skb = bpf_program__attach(skel->progs.fc_kfree_skb);
	if (!skel->links.fc_kfree_skb)
		return fc_fail(-errno, "attaching the drops program to the kfree_skb tracepoint");
	return 0;
}

static void features_close(struct fc_agent *agent)
{
	struct fc_swapped_map *maps[] = { &agent->features.drops, &agent->features.dns, &agent->features.rtt };
	size_t i;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		close_swapped_map(maps[i]);
}

long fc_agent_swap_and_drain_drops(struct fc_agent *agent, struct fc_drop_record *out, __u64 capacity)
{
	if (!(agent->features.enabled & FC_FEATURE_DROPS))
		return 0;
	return swap_and_drain(agent, &agent->features.drops, out, capacity, NULL);
}

long fc_agent_swap_and_drain_dns(struct fc_agent *agent, struct fc_dns_record *out, __u64 capacity)
{
	if (!(agent->features.enabled & FC_FEATURE_DNS))
		return 0;
	int active = agent->features.dns.active;
	long n;

	/* Before the swap: queries seen from here on belong to the next period (bpf/dns.bpf.h). */
	__atomic_add_fetch(&agent->skel->bss->fc_dns_generation, 1, __ATOMIC_RELAXED);
	n = swap_and_drain(agent, &agent->features.dns, out, capacity, NULL);
	if (n < 0 && agent->features.dns.active == active) /* not swapped: the period goes on */
		__atomic_sub_fetch(&agent->skel->bss->fc_dns_generation, 1, __ATOMIC_RELAXED);
	return n;
}

long fc_agent_swap_and_drain_rtt(struct fc_agent *agent, struct fc_rtt_record *out, __u64 capacity)
{
	if (!(agent->features.enabled & FC_FEATURE_RTT))
		return 0;
	return swap_and_drain(agent, &agent->features.rtt, out, capacity, NULL);
}

const char *fc_agent_rtt_attach(struct fc_agent *agent)
{
	return agent->features.rtt_attach;
}

long fc_drop_reasons(struct fc_drop_reason *out, __u32 capacity)
{
	struct btf *vmlinux;
	const struct btf_type *t;
	const struct btf_enum *e;
	static const char prefix[] = "SKB_DROP_REASON_";
	int id;
	__u32 i, n = 0;

	libbpf_set_print(fc_libbpf_print);
	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux)
		return fc_fail(-errno ? -errno : -ENOENT, "reading the kernel's BTF for its drop reasons");
	id = btf__find_by_name_kind(vmlinux, "skb_drop_reason", BTF_KIND_ENUM);
	t = id > 0 ? btf__type_by_id(vmlinux, id) : NULL;
	for (i = 0, e = t ? btf_enum(t) : NULL; t && i < btf_vlen(t) && n < capacity; i++, e++) {
		const char *name = btf__name_by_offset(vmlinux, e->name_off);

		if (!strncmp(name, prefix, sizeof(prefix) - 1))
			name += sizeof(prefix) - 1; /* NETFILTER_DROP: the reason without the enum's prefix */
		out[n].value = (__u32)e->val;
		snprintf(out[n].name, sizeof(out[n].name), "%s", name);
		n++;
	}
	btf__free(vmlinux);
	return n;
}

int fc_agent_read_feature_counters(struct fc_agent *agent, __u64 *out, __u32 n)
{
	return sum_percpu_counters(agent, bpf_map__fd(agent->skel->maps.fc_feature_counters), out, n,
				   FC_FEATURE_COUNTER_MAX, "feature counters");
}
