// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The flow table (bpf/table.bpf.h): its two halves, laid out per CPU; the
 * swap; and the drain, which reads the retired half through its mapping (no
 * syscall), folds each flow's entries from every CPU region and its
 * overflow-map values into one output row, and clears the index.
 *
 * A half is one BPF_F_MMAPABLE array of 128-byte elements, made here at the
 * size its CPUs' caps need and put into the fc_table array-of-maps while idle.
 * A CPU's region is a power of two of index buckets (16 pairs each) that
 * keeps the index at most half full at its cap, then as many entries as
 * those buckets serve at that fill (8 per bucket), so that a flow's bucket is
 * rarely full and a cap can move within the same buckets without a new array
 * (docs/architecture.md has the figures and the memory formula).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "fc_internal.h"
#include "flow_hash.h"

/* A half is one map of 128-byte elements: 2^26 of them, 8 GiB, is more than any host gives it. */
#define FC_MAX_HALF_ELEMENTS (1u << 26)
/* Entries a bucket serves: its pairs at the fill the index is sized for (half full at the cap). */
#define FC_ENTRIES_PER_BUCKET (FC_BUCKET_PAIRS / 2)

static size_t page_round(size_t bytes)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (bytes + page - 1) / page * page;
}

static __u32 next_pow2(__u64 v)
{
	__u32 p = 1;

	while (p < v && p < (1u << 31))
		p <<= 1;
	return p;
}

/* Index buckets of a region whose cap is `cap` flows: 2 x cap pairs, a power of two, at least one bucket. */
static __u32 region_buckets(__u32 cap)
{
	return next_pow2(((__u64)cap + FC_ENTRIES_PER_BUCKET - 1) / FC_ENTRIES_PER_BUCKET);
}

/* Add one CPU's (or one overflow value's) count of a flow to its folded row. */
static void fold_into(struct fc_flow_metrics *acc, const struct fc_flow_metrics *m)
{
	acc->packets += m->packets;
	acc->bytes += m->bytes;
	if (!acc->first_seen_ns || m->first_seen_ns < acc->first_seen_ns)
		acc->first_seen_ns = m->first_seen_ns;
	if (m->last_seen_ns >= acc->last_seen_ns) {
		/* DSCP of the most recent packet, as the seed reports it. */
		acc->last_seen_ns = m->last_seen_ns;
		acc->dscp = m->dscp;
	}
	acc->tcp_flags |= m->tcp_flags;
	if (!acc->errno_code)
		acc->errno_code = m->errno_code;
}

void fc_fold_percpu(const struct fc_flow_metrics *percpu, __u32 ncpus, struct fc_flow_metrics *out)
{
	/* Folded in a local and stored once: the row in `out` is written exactly
	 * one time, and the compiler need not assume it aliases `percpu`. */
	struct fc_flow_metrics acc = { 0 };
	__u32 cpu;

	for (cpu = 0; cpu < ncpus; cpu++)
		if (percpu[cpu].first_seen_ns) /* else this CPU never saw the flow */
			fold_into(&acc, &percpu[cpu]);
	*out = acc;
}

/* The overflow maps' fold, in the shape every drained map's fold has. */
static void fold_flow(const void *values, __u32 ncpus, void *out)
{
	fc_fold_percpu(values, ncpus, out);
}

/* Unmap and close a half's array (its caps stay: they are the half's, not the array's). */
static void unmap_half(struct fc_table_half *half)
{
	if (half->elements)
		munmap(half->elements, page_round(half->bytes));
	if (half->fd >= 0)
		close(half->fd);
	half->elements = NULL;
	half->fd = -1;
	half->bytes = 0;
	half->n_elements = 0;
}

/*
 * Lay out idle half h for caps (one per possible CPU). When every region keeps its bucket count only the
 * caps change; else an array of the new size is made, mapped and put into fc_table[h] (the update waits
 * an RCU grace period, harmless: no program reads an idle half) and the old one goes. *resized: 1 then.
 */
static int lay_out_half(struct fc_agent *agent, int h, const __u32 *caps, bool *resized)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE | BPF_F_INNER_MAP);
	struct fc_table *t = &agent->table;
	struct fc_table_half *half = &t->half[h];
	__u64 total = 0;
	__u32 cpu, at, key = h;
	bool same = half->fd >= 0;
	size_t bytes;
	void *mem;
	int fd;

	for (cpu = 0; cpu < agent->ncpus; cpu++) {
		__u32 buckets = region_buckets(caps[cpu]);

		same = same && t->cpus[cpu].half[h].bucket_mask + 1 == buckets;
		total += (__u64)buckets * (1 + FC_ENTRIES_PER_BUCKET);
	}
	if (total > FC_MAX_HALF_ELEMENTS)
		return fc_fail(-E2BIG, "a flow table half of %llu MiB (caps too large)",
			       (unsigned long long)total * sizeof(struct fc_table_entry) >> 20);
	*resized = !same;
	if (!same) {
		fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "fc_table_half", sizeof(__u32), sizeof(struct fc_table_entry),
				    (__u32)total, &opts);
		if (fd < 0)
			return fc_fail(-errno, "making a flow table half of %llu KiB",
				       (unsigned long long)total * sizeof(struct fc_table_entry) / 1024);
		bytes = (size_t)total * sizeof(struct fc_table_entry);
		mem = mmap(NULL, page_round(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (mem == MAP_FAILED || bpf_map_update_elem(bpf_map__fd(agent->skel->maps.fc_table), &key, &fd, BPF_ANY)) {
			int err = fc_fail(-errno, "%s a flow table half", mem == MAP_FAILED ? "mapping" : "putting in place");

			if (mem != MAP_FAILED)
				munmap(mem, page_round(bytes));
			close(fd);
			return err;
		}
		unmap_half(half);
		half->fd = fd;
		half->elements = mem;
		half->bytes = bytes;
		half->n_elements = (__u32)total;
		for (cpu = 0, at = 0; cpu < agent->ncpus; cpu++) {
			struct fc_table_region *region = &t->cpus[cpu].half[h];
			__u32 buckets = region_buckets(caps[cpu]);

			region->first_bucket = at;
			region->bucket_mask = buckets - 1;
			region->first_entry = at + buckets;
			at += buckets * (1 + FC_ENTRIES_PER_BUCKET);
		}
	}
	for (cpu = 0; cpu < agent->ncpus; cpu++)
		t->cpus[cpu].half[h].cap = caps[cpu];
	memcpy(half->caps, caps, agent->ncpus * sizeof(*caps));
	return 0;
}

int fc_table_open(struct fc_agent *agent, const struct fc_load_opts *opts)
{
	struct fc_table *t = &agent->table;
	struct flows_bpf *skel = agent->skel;
	__u32 overflow = bpf_map__max_entries(skel->maps.fc_overflow_a);
	bool resized;
	void *mem;
	int err, h;

	t->cpus_bytes = (size_t)agent->ncpus * sizeof(struct fc_cpu_table);
	mem = mmap(NULL, page_round(t->cpus_bytes), PROT_READ | PROT_WRITE, MAP_SHARED,
		   bpf_map__fd(skel->maps.fc_cpu_tables), 0);
	if (mem == MAP_FAILED)
		return fc_fail(-errno, "mapping the flow table's regions");
	t->cpus = mem;
	if ((err = fc_swapped_open(agent, &t->overflow, NULL, skel->maps.fc_overflow_a, skel->maps.fc_overflow_b,
				   sizeof(struct fc_flow_key), sizeof(struct fc_flow_metrics), true, fold_flow)))
		return err;
	t->overflow_capacity = overflow;
	t->overflow_rows = malloc((size_t)overflow * sizeof(*t->overflow_rows));
	for (h = 0; h < 2; h++)
		t->half[h].caps = calloc(agent->ncpus, sizeof(__u32));
	if (!t->overflow_rows || !t->half[0].caps || !t->half[1].caps)
		return fc_fail(-ENOMEM, "allocating the flow table's buffers");
	fc_prefault(t->overflow_rows, (size_t)overflow * sizeof(*t->overflow_rows));
	for (h = 0, err = 0; h < 2 && !err; h++)
		err = lay_out_half(agent, h, opts->region_caps, &resized);
	t->active = 0; /* fc_table_active starts at 0 */
	return err;
}

void fc_table_close(struct fc_agent *agent)
{
	struct fc_table *t = &agent->table;
	int h;

	for (h = 0; h < 2; h++) {
		unmap_half(&t->half[h]);
		free(t->half[h].caps);
		t->half[h].caps = NULL;
	}
	if (t->cpus)
		munmap(t->cpus, page_round(t->cpus_bytes));
	t->cpus = NULL;
	fc_swapped_close(&t->overflow);
	free(t->overflow_rows);
	free(t->index);
	t->overflow_rows = NULL;
	t->index = NULL;
}

/* Where the drain writes: rows, and the index that finds a row by its key when rows must be folded. */
struct fc_drain_out {
	struct fc_flow_record *rows;
	__u64 capacity, n;
	__u32 *index; /* NULL: every key comes once (one source), no fold needed */
	__u64 mask;
};

static int emit(struct fc_drain_out *o, const struct fc_flow_key *key, const struct fc_flow_metrics *m, __u64 hash)
{
	struct fc_flow_record *row;

	if (o->index) {
		__u64 pos = hash & o->mask;

		for (; o->index[pos]; pos = (pos + 1) & o->mask) {
			row = &o->rows[o->index[pos] - 1];
			if (!memcmp(&row->key, key, sizeof(*key))) {
				fold_into(&row->metrics, m);
				return 0;
			}
		}
		o->index[pos] = (__u32)(o->n + 1);
	}
	if (o->n >= o->capacity)
		return fc_fail(-ENOBUFS, "drained more flows than the %llu rows given", (unsigned long long)o->capacity);
	row = &o->rows[o->n++];
	row->key = *key;
	row->metrics = *m;
	row->metrics.errno_code = 0;
	row->metrics.pad = 0;
	return 0;
}

/*
 * The entries of one CPU's region of a retired half, in the order their flows started: emitted; then its
 * index cleared, bucket by bucket where the flows were few, else whole.
 */
static int drain_region(struct fc_table_half *half, const struct fc_table_region *region, struct fc_drain_out *o)
{
	const struct fc_table_entry *entry = half->elements + region->first_entry;
	struct fc_table_bucket *index = (struct fc_table_bucket *)(half->elements + region->first_bucket);
	__u64 used = region->flows - region->overflowed, i;
	int err;

	for (i = 0; i < used; i++, entry++)
		if ((err = emit(o, &entry->key, &entry->metrics, entry->hash)))
			return err;
	if (used * 8 >= (__u64)region->bucket_mask + 1) {
		memset(index, 0, ((size_t)region->bucket_mask + 1) * sizeof(*index));
		return 0;
	}
	for (i = 0, entry = half->elements + region->first_entry; i < used; i++, entry++)
		memset(&index[entry->hash & region->bucket_mask], 0, sizeof(*index));
	return 0;
}

static long drain_half(struct fc_agent *agent, int h, struct fc_flow_record *out, __u64 capacity,
		       struct fc_drain_stats *stats)
{
	struct fc_table *t = &agent->table;
	struct fc_drain_out o = { .rows = out, .capacity = capacity };
	__u64 flows = 0, overflowed = 0;
	__u32 cpu, sources = 0;
	long rows, i;
	int err = 0;

	for (cpu = 0; cpu < agent->ncpus; cpu++) {
		const struct fc_table_region *region = &t->cpus[cpu].half[h];

		flows += region->flows;
		overflowed += region->overflowed;
		sources += region->flows > region->overflowed;
	}
	sources += overflowed > 0;
	if (sources > 1) {
		/* The same flow may come from several CPUs and the overflow map: fold by key. */
		__u64 size = next_pow2(flows * 2 + 1);

		if (size > t->index_size) {
			__u32 *grown = realloc(t->index, size * sizeof(*grown));

			if (!grown)
				return fc_fail(-ENOMEM, "allocating the drain's index of %llu rows", (unsigned long long)flows);
			t->index = grown;
			t->index_size = size;
		}
		memset(t->index, 0, size * sizeof(*t->index));
		o.index = t->index;
		o.mask = size - 1;
	}
	for (cpu = 0; cpu < agent->ncpus && !err; cpu++) {
		const struct fc_table_region *region = &t->cpus[cpu].half[h];

		if (region->flows > region->overflowed)
			err = drain_region(&t->half[h], region, &o);
	}
	if (!err && overflowed) {
		rows = fc_swapped_drain(agent, &t->overflow, t->overflow.fd[h], (__u8 *)t->overflow_rows,
					t->overflow_capacity, &stats->batches);
		if (rows < 0)
			return rows;
		stats->overflow_rows = (__u32)rows;
		for (i = 0; i < rows && !err; i++)
			err = emit(&o, &t->overflow_rows[i].key, &t->overflow_rows[i].metrics,
				   fc_flow_hash(&t->overflow_rows[i].key));
	}
	if (err)
		return err;
	/* The half is idle and read: its counts start again from zero for its next turn. */
	for (cpu = 0; cpu < agent->ncpus; cpu++) {
		struct fc_table_region *region = &t->cpus[cpu].half[h];

		region->flows = 0;
		region->overflowed = 0;
		region->refused = 0;
	}
	return (long)o.n;
}

long fc_agent_swap_and_drain(struct fc_agent *agent, const __u32 *next_caps, struct fc_flow_record *out,
			     __u64 capacity, struct fc_drain_stats *stats)
{
	struct fc_table *t = &agent->table;
	int retired = t->active, next = !t->active;
	__u32 key = next, cpu;
	__u64 t0 = fc_now_ns(), t1, needed = 0;
	bool resized = false;
	long n;
	int err;

	memset(stats, 0, sizeof(*stats));
	for (cpu = 0; cpu < agent->ncpus; cpu++)
		needed += t->half[retired].caps[cpu];
	if (capacity < needed)
		return fc_fail(-EINVAL, "a drain needs room for %llu rows (the caps of the half), got %llu",
			       (unsigned long long)needed, (unsigned long long)capacity);
	if ((err = lay_out_half(agent, next, next_caps, &resized)))
		return err;
	__atomic_store_n(&agent->skel->bss->fc_table_active, (__u32)next, __ATOMIC_RELEASE);
	t->active = next;
	/*
	 * Any update of an array-of-maps element returns only after an RCU grace period: every program that
	 * read the old index has finished. The element put back is the one already there.
	 */
	err = bpf_map_update_elem(bpf_map__fd(agent->skel->maps.fc_overflow), &key, &t->overflow.fd[next], BPF_ANY);
	if (err)
		return fc_fail(-errno, "waiting for the programs to leave the retired flow table half");
	t1 = fc_now_ns();
	n = drain_half(agent, retired, out, capacity, stats);
	stats->swap_ns = t1 - t0;
	stats->drain_ns = fc_now_ns() - t1;
	stats->resized = resized;
	stats->table_bytes = t->half[0].bytes + t->half[1].bytes;
	return n;
}

long fc_agent_table_regions(struct fc_agent *agent, struct fc_table_region *out, __u32 capacity)
{
	struct fc_table *t = &agent->table;
	__u32 cpu;

	if (capacity < agent->ncpus)
		return fc_fail(-EINVAL, "%u regions asked, %u CPUs", capacity, agent->ncpus);
	for (cpu = 0; cpu < agent->ncpus; cpu++)
		out[cpu] = t->cpus[cpu].half[t->active];
	return agent->ncpus;
}

double fc_table_fill(struct fc_agent *agent)
{
	struct fc_table *t = &agent->table;
	double fill = 0;
	__u32 cpu;

	for (cpu = 0; cpu < agent->ncpus; cpu++) {
		const struct fc_table_region *region = &t->cpus[cpu].half[t->active];
		double f = region->cap ? (double)region->flows / region->cap : (region->refused ? 1.0 : 0.0);

		if (f > fill)
			fill = f;
	}
	return fill;
}

__u64 fc_key_hash(const struct fc_flow_key *key)
{
	return fc_flow_hash(key);
}

void fc_export_rows(const struct fc_flow_record *in, __u64 n, __s64 wall_minus_mono_ns, __u32 sampling,
		    struct fc_flow_export *out)
{
	__u64 i;

	for (i = 0; i < n; i++) {
		struct fc_flow_export *row = &out[i];

		/* Whole rows, written once each and in order: every byte of `out` is set, padding included. */
		memset(row, 0, sizeof(*row));
		row->record = in[i];
		row->time_flow_start_ns = (__s64)in[i].metrics.first_seen_ns + wall_minus_mono_ns;
		row->time_flow_end_ns = (__s64)in[i].metrics.last_seen_ns + wall_minus_mono_ns;
		row->sampling = sampling;
	}
}
