// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowcollect's native core: open and load the kernel programs of
 * bpf/flows.bpf.c with their sizes, probe what this kernel can do, read the
 * counters, close. The other files of native/ do the rest (fc_internal.h says
 * which); fc_native.h is the contract with Python.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "fc_internal.h"

#define FC_DEFAULT_DRAIN_BATCH 8192

__u64 fc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Write every page of a new buffer (a memset of zeros after malloc may become calloc, which
 * leaves the pages unmapped). */
void fc_prefault(void *buffer, size_t size)
{
	volatile char *p = buffer;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), at;

	for (at = 0; at < size; at += page)
		p[at] = 0;
}

__u64 fc_current_netns(void)
{
	struct stat st;

	return stat("/proc/thread-self/ns/net", &st) ? 0 : st.st_ino;
}

int fc_num_possible_cpus(void)
{
	return libbpf_num_possible_cpus();
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
	fc_capture_libbpf_log();
	if (!opts->max_flows)
		return fc_fail(-EINVAL, "cache_max_flows must be at least 1");
	if (!opts->region_caps)
		return fc_fail(-EINVAL, "no caps given for the flow table's regions");
	if (!opts->overflow_flows)
		return fc_fail(-EINVAL, "the overflow map needs at least one entry");
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
	agent->table.half[0].fd = agent->table.half[1].fd = -1;

	agent->skel = flows_bpf__open();
	if (!agent->skel) {
		err = fc_fail(-errno, "opening the embedded BPF object");
		goto fail;
	}
	agent->skel->rodata->fc_sampling = opts->sampling;
	agent->skel->rodata->fc_direction_mask = opts->direction_mask;
	agent->skel->rodata->fc_debug = opts->debug;
	agent->skel->rodata->fc_replay = opts->replay;
	agent->skel->rodata->fc_clock_mode = opts->clock;
	if ((err = bpf_map__set_max_entries(agent->skel->maps.fc_cpu_tables, ncpus)) ||
	    (err = bpf_map__set_max_entries(agent->skel->maps.fc_overflow_a, opts->overflow_flows)) ||
	    (err = bpf_map__set_max_entries(agent->skel->maps.fc_overflow_b, opts->overflow_flows)) ||
	    (err = bpf_map__set_max_entries(agent->skel->maps.fc_ringbuf, opts->ringbuf_bytes))) {
		err = fc_fail(err, "sizing the BPF maps");
		goto fail;
	}
	if ((err = fc_features_before_load(agent, opts)))
		goto fail;
	err = flows_bpf__load(agent->skel);
	if (err) {
		size_t used;

		char message[FC_ERROR_LEN];

		fc_fail(err, "loading the BPF programs");
		used = strlen(fc_last_error());
		if (fc_libbpf_log()[0] && used + 4 < sizeof(message)) {
			snprintf(message, sizeof(message), "%s\nlibbpf: %s", fc_last_error(), fc_libbpf_log());
			fc_set_error(message);
		}
		goto fail;
	}
	err = probe_batch_ops();
	if (err < 0) {
		fc_fail(err, "probing BPF batch map operations");
		goto fail;
	}
	agent->batch_ops = err == 1;
	if (opts->attach_mode != FC_ATTACH_TC) {
		err = fc_probe_tcx();
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

	if ((err = fc_table_open(agent, opts)))
		goto fail;
	agent->counter_values = calloc(ncpus, sizeof(__u64));
	if (!agent->counter_values) {
		err = fc_fail(-ENOMEM, "allocating the counters' buffer");
		goto fail;
	}
	if ((err = fc_features_after_load(agent)) ||
	    (opts->clock == FC_CLOCK_TICK && !opts->replay && (err = fc_clock_start(agent, opts->tick_min_runs))))
		goto fail;
	*out = agent;
	return 0;
fail:
	fc_agent_close(agent);
	return err;
}

/* Sum slots 0..n of a per-CPU array of counters (of `size` slots) into out. */
int fc_sum_percpu_counters(struct fc_agent *agent, int fd, __u64 *out, __u32 n, __u32 size, const char *what)
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
	return fc_sum_percpu_counters(agent, bpf_map__fd(agent->skel->maps.fc_counters), out, n, FC_COUNTER_MAX,
				   "counters");
}

int fc_agent_map_fd(struct fc_agent *agent, int which)
{
	switch (which) {
	case FC_MAP_TABLE:
		return bpf_map__fd(agent->skel->maps.fc_table);
	case FC_MAP_CPU_TABLES:
		return bpf_map__fd(agent->skel->maps.fc_cpu_tables);
	case FC_MAP_OVERFLOW:
		return bpf_map__fd(agent->skel->maps.fc_overflow);
	case FC_MAP_BSS:
		return bpf_map__fd(agent->skel->maps.bss);
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
	fc_clock_stop(agent);
	fc_features_close(agent);
	fc_ringbuf_close(agent);
	fc_table_close(agent);
	flows_bpf__destroy(agent->skel);
	free(agent->attachments);
	free(agent->counter_values);
	free(agent);
}


