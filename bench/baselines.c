// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Baselines for bench/drain.py, in plain C over the same kernel maps:
 *   - fcb_raw_drain: the limit, the batch syscalls alone (no fold, no output);
 *   - fcb_per_key_drain: the seed's way, iterate + lookup + delete per key;
 *   - fcb_fill: load a map with n distinct flows, every CPU slot written.
 * and for bench/kernel_cost.py, BPF_PROG_TEST_RUN of a TC program over one
 * frame, repeated, or over a run of frames that are each a new flow.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "flow.h"
#include "baselines.h"

static void make_key(struct fc_flow_key *key, __u32 i)
{
	memset(key, 0, sizeof(*key));
	key->eth_protocol = 0x0800;
	key->src_ip[10] = key->src_ip[11] = 0xff;
	key->src_ip[12] = 10;
	memcpy(&key->src_ip[13], &i, 3);
	key->dst_ip[10] = key->dst_ip[11] = 0xff;
	key->dst_ip[12] = 10;
	key->src_port = (__u16)(i >> 24) + 1024;
	key->dst_port = 443;
	key->protocol = 6;
	key->if_index = 2;
}

int fcb_percpu_hash(__u32 key_size, __u32 value_size, __u32 max_entries)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "fcb_old_flows", key_size, value_size, max_entries, NULL);

	return fd < 0 ? -errno : fd;
}

long fcb_fill(int fd, __u32 n, __u32 ncpus)
{
	return fcb_fill_from(fd, 0, n, ncpus);
}

long fcb_fill_from(int fd, __u32 first, __u32 n, __u32 ncpus)
{
	const __u32 chunk = 8192;
	struct fc_flow_key *keys = calloc(chunk, sizeof(*keys));
	struct fc_flow_metrics *values = calloc((size_t)chunk * ncpus, sizeof(*values));
	long err = 0;
	__u32 done = 0;

	if (!keys || !values) {
		err = -ENOMEM;
		goto out;
	}
	while (done < n) {
		__u32 count = n - done < chunk ? n - done : chunk, i, cpu;

		for (i = 0; i < count; i++) {
			make_key(&keys[i], first + done + i);
			for (cpu = 0; cpu < ncpus; cpu++) {
				struct fc_flow_metrics *m = &values[(size_t)i * ncpus + cpu];

				m->packets = 3 + cpu;
				m->bytes = 1500 * (3 + cpu);
				m->first_seen_ns = 1000 + cpu + i; /* never 0: a 0 slot is empty */
				m->last_seen_ns = 2000 + cpu + i;
				m->tcp_flags = 0x10;
			}
		}
		err = bpf_map_update_batch(fd, keys, values, &count, NULL);
		if (err)
			goto out;
		done += count;
	}
out:
	free(keys);
	free(values);
	return err ? err : (long)done;
}

long fcb_raw_drain(int fd, __u32 batch, __u32 ncpus)
{
	struct fc_flow_key *keys = calloc(batch, sizeof(*keys));
	struct fc_flow_metrics *values = calloc((size_t)batch * ncpus, sizeof(*values));
	__u64 in_batch = 0, out_batch = 0;
	long n = 0, err = 0;
	int first = 1;

	if (!keys || !values) {
		err = -ENOMEM;
		goto out;
	}
	for (;;) {
		__u32 count = batch;

		err = bpf_map_lookup_and_delete_batch(fd, first ? NULL : &in_batch, &out_batch, keys, values,
						      &count, NULL);
		if (err && err != -ENOENT)
			goto out;
		n += count;
		if (err == -ENOENT) {
			err = 0;
			break;
		}
		in_batch = out_batch;
		first = 0;
	}
out:
	free(keys);
	free(values);
	return err ? err : n;
}

long fcb_per_key_drain(int fd, __u32 ncpus)
{
	struct fc_flow_metrics *values = calloc(ncpus, sizeof(*values));
	struct fc_flow_key key, next;
	struct fc_flow_key *prev = NULL;
	long n = 0, err;

	if (!values)
		return -ENOMEM;
	/* The seed's loop: next key, look it up, delete it, fold its per-CPU values. */
	while (!(err = bpf_map_get_next_key(fd, prev, &next))) {
		struct fc_flow_metrics folded = {};
		__u32 cpu;

		if (prev)
			bpf_map_delete_elem(fd, &key);
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, values))
			continue;
		for (cpu = 0; cpu < ncpus; cpu++) {
			folded.packets += values[cpu].packets;
			folded.bytes += values[cpu].bytes;
		}
		n += folded.packets ? 1 : 0;
	}
	if (prev)
		bpf_map_delete_elem(fd, &key);
	free(values);
	return err == -ENOENT ? n : err;
}

long fcb_test_run(int prog_fd, const void *frame, __u32 len, __u32 repeat, __u64 *total_ns)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = len, .repeat = (int)repeat);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err)
		return err;
	/* The kernel reports the mean over the repeats, in whole ns. */
	*total_ns = (__u64)opts.duration * repeat;
	return opts.retval;
}

long fcb_test_run_new_flows(int prog_fd, void *frame, __u32 len, __u32 src_ip_offset, __u32 first, __u32 n,
			    __u64 *total_ns)
{
	__u32 i;

	*total_ns = 0;
	if (src_ip_offset + 4 > len)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		/* A source address never seen before: a new flow key, one run each. */
		__u32 ip = htonl(0x0a000000u + first + i);
		__u64 ns;
		long ret;

		memcpy((char *)frame + src_ip_offset, &ip, 4);
		ret = fcb_test_run(prog_fd, frame, len, 1, &ns);
		if (ret < 0)
			return ret;
		*total_ns += ns;
	}
	return 0;
}

long fcb_test_run_each(int prog_fd, const void *frame, __u32 len, __u32 n, __u64 *total_ns)
{
	__u32 i;

	*total_ns = 0;
	for (i = 0; i < n; i++) {
		__u64 ns;
		long ret = fcb_test_run(prog_fd, frame, len, 1, &ns);

		if (ret < 0)
			return ret;
		*total_ns += ns;
	}
	return 0;
}

int fcb_load_first_prog(const char *object_path)
{
	struct bpf_object *obj = bpf_object__open_file(object_path, NULL);
	struct bpf_program *prog;
	int fd;

	if (!obj)
		return -errno;
	if (bpf_object__load(obj)) {
		fd = -errno;
		goto out;
	}
	prog = bpf_object__next_program(obj, NULL);
	/* Our own reference keeps the program loaded once the object is closed. */
	fd = prog ? dup(bpf_program__fd(prog)) : -ENOENT;
	if (fd < 0 && prog)
		fd = -errno;
out:
	bpf_object__close(obj);
	return fd;
}

int fcb_load_prog(const char *object_path, const char *name, __u32 flow_map_entries)
{
	struct bpf_object *obj = bpf_object__open_file(object_path, NULL);
	struct bpf_program *prog, *wanted = NULL;
	struct bpf_map *map;
	int fd;

	if (!obj)
		return -errno;
	bpf_object__for_each_map(map, obj)
		if (flow_map_entries && !strncmp(bpf_map__name(map), "fc_flows_", 9))
			bpf_map__set_max_entries(map, flow_map_entries);
	/* Only the named program: an object's others (tracing programs, say) may not load on this kernel. */
	bpf_object__for_each_program(prog, obj) {
		bool it = !strcmp(bpf_program__name(prog), name);

		bpf_program__set_autoload(prog, it);
		if (it)
			wanted = prog;
	}
	if (!wanted) {
		fd = -ENOENT;
		goto out;
	}
	if (bpf_object__load(obj)) {
		fd = -errno;
		goto out;
	}
	/* Our own reference keeps the program (and the maps it uses) loaded once the object is closed. */
	fd = dup(bpf_program__fd(wanted));
	if (fd < 0)
		fd = -errno;
out:
	bpf_object__close(obj);
	return fd;
}

int fcb_map_name(int fd, char *name, __u32 *value_size)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	memcpy(name, info.name, sizeof(info.name));
	*value_size = info.value_size;
	return 0;
}

long fcb_global_offset(int map_fd, const char *var)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), i;
	const struct btf_type *section;
	const struct btf_var_secinfo *vars;
	struct btf *btf;
	long offset = -ENOENT;

	if (bpf_obj_get_info_by_fd(map_fd, &info, &len))
		return -errno;
	btf = btf__load_from_kernel_by_id(info.btf_id);
	if (!btf)
		return -errno;
	section = btf__type_by_id(btf, info.btf_value_type_id);
	if (section && btf_is_datasec(section)) {
		vars = btf_var_secinfos(section);
		for (i = 0; i < btf_vlen(section); i++) {
			const struct btf_type *v = btf__type_by_id(btf, vars[i].type);

			if (v && !strcmp(btf__name_by_offset(btf, v->name_off), var)) {
				offset = vars[i].offset;
				break;
			}
		}
	}
	btf__free(btf);
	return offset;
}

int fcb_prog_id(int prog_fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(prog_fd, &info, &len) ? -errno : (int)info.id;
}

int fcb_tcx_attach(int prog_fd, int ifindex, int ingress)
{
	int link = bpf_link_create(prog_fd, ifindex, ingress ? 46 /* BPF_TCX_INGRESS */ : 47 /* BPF_TCX_EGRESS */, NULL);

	return link < 0 ? -errno : link;
}

int fcb_enable_stats(void)
{
	int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);

	return fd < 0 ? -errno : fd;
}

int fcb_prog_run_stats(__u32 id, __u64 *run_time_ns, __u64 *run_cnt, char *name)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id), err;

	if (fd < 0)
		return -errno;
	err = bpf_obj_get_info_by_fd(fd, &info, &len);
	err = err ? -errno : 0;
	close(fd);
	*run_time_ns = info.run_time_ns;
	*run_cnt = info.run_cnt;
	memcpy(name, info.name, sizeof(info.name));
	return err;
}

/* Delete every entry of the map with this id, and of the maps an array-of-maps holds; how many. */
static long clear_map(__u32 id)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), slot, inner;
	char key[64];
	long n = 0;
	int fd = bpf_map_get_fd_by_id(id);

	if (fd < 0)
		return -errno;
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		n = -errno;
	} else if (info.type == BPF_MAP_TYPE_ARRAY_OF_MAPS) {
		for (slot = 0; slot < info.max_entries; slot++)
			if (!bpf_map_lookup_elem(fd, &slot, &inner))
				n += clear_map(inner);
	} else if (info.type == BPF_MAP_TYPE_ARRAY) {
		/* Only a program's .bss (bench/bpf/least_table.bpf.c's table): zeroed whole, counted as one. */
		void *zeros = strstr(info.name, ".bss") ? calloc(1, info.value_size) : NULL;

		slot = 0;
		if (zeros && !bpf_map_update_elem(fd, &slot, zeros, BPF_ANY))
			n = 1;
		free(zeros);
	} else {
		/* Always the first key: each delete makes the next one first. */
		while (!bpf_map_get_next_key(fd, NULL, key) && !bpf_map_delete_elem(fd, key))
			n++;
	}
	close(fd);
	return n;
}

long fcb_clear_prog_maps(int prog_fd)
{
	__u32 ids[16], len, i;
	struct bpf_prog_info info = {};
	long n = 0, cleared;

	info.nr_map_ids = sizeof(ids) / sizeof(ids[0]);
	info.map_ids = (__u64)(unsigned long)ids;
	len = sizeof(info);
	if (bpf_obj_get_info_by_fd(prog_fd, &info, &len))
		return -errno;
	for (i = 0; i < info.nr_map_ids && i < sizeof(ids) / sizeof(ids[0]); i++) {
		if ((cleared = clear_map(ids[i])) < 0)
			return cleared;
		n += cleared;
	}
	return n;
}
