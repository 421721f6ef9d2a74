// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Maps drained by batch syscalls: the features' pairs behind a one-slot
 * array-of-maps (the programs write the one the slot points at; user space
 * swaps in the other, and the slot update returns only after an RCU grace
 * period, so the retired map has no writer left), and the flow table's
 * overflow maps, which the table's swap retires (fc_table.c). libbpf-tools'
 * map_helpers.c is the model for the batch dump with a get-next-key fallback.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fc_internal.h"

int fc_swapped_open(struct fc_agent *agent, struct fc_swapped_map *m, struct bpf_map *slot, struct bpf_map *a,
		    struct bpf_map *b, size_t key_size, size_t value_size, bool percpu,
		    void (*fold)(const void *, __u32, void *))
{
	__u32 batch = agent->batch < bpf_map__max_entries(a) ? agent->batch : bpf_map__max_entries(a);
	size_t keys = (size_t)batch * key_size, values;

	m->slot = slot;
	m->batch = batch;
	m->fd[0] = bpf_map__fd(a);
	m->fd[1] = bpf_map__fd(b);
	m->active = 0; /* the static slot initialisers point at the first map */
	m->key_size = key_size;
	m->value_size = value_size;
	m->values_per_key = percpu ? agent->ncpus : 1;
	m->fold = fold;
	values = (size_t)batch * m->values_per_key * value_size;
	m->keys = malloc(keys);
	m->values = malloc(values);
	if (!m->keys || !m->values)
		return fc_fail(-ENOMEM, "allocating drain buffers for %u rows", batch);
	/* Touched now, not by the first drain: a fresh mapping faults in page by page, which the first
	 * eviction would pay inside the kernel's copy. */
	fc_prefault(m->keys, keys);
	fc_prefault(m->values, values);
	return 0;
}

void fc_swapped_close(struct fc_swapped_map *m)
{
	free(m->keys);
	free(m->values);
	m->keys = m->values = NULL;
}

long fc_swapped_drain(struct fc_agent *agent, struct fc_swapped_map *m, int fd, __u8 *out, __u64 capacity,
		      __u32 *batches)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	size_t row = m->key_size + m->value_size, values = m->value_size * m->values_per_key;
	__u64 in_batch = 0, out_batch = 0;
	void *prev = NULL;
	bool first = true;
	long n = 0, i;
	int err;

	while (agent->batch_ops) {
		__u32 count = m->batch;

		err = bpf_map_lookup_and_delete_batch(fd, first ? NULL : &in_batch, &out_batch, m->keys, m->values,
						      &count, &opts);
		if (err && err != -ENOENT)
			return fc_fail(err, "draining a retired map in batches of %u", m->batch);
		if (batches)
			(*batches)++;
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

long fc_swapped_swap_and_drain(struct fc_agent *agent, struct fc_swapped_map *m, void *out, __u64 capacity)
{
	int retired = m->active, next = !m->active;
	__u32 slot = 0;
	int err;

	if (capacity < agent->max_flows)
		return fc_fail(-EINVAL, "a drain needs room for %u rows, got %llu", agent->max_flows,
			       (unsigned long long)capacity);
	/* The kernel waits for running programs before it returns: the retired map has no writer. */
	err = bpf_map_update_elem(bpf_map__fd(m->slot), &slot, &m->fd[next], BPF_ANY);
	if (err)
		return fc_fail(err, "swapping a map (%s)", bpf_map__name(m->slot));
	m->active = next;
	return fc_swapped_drain(agent, m, m->fd[retired], out, capacity, NULL);
}
