// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The opt-in features (--features drops, rtt, dns): what this kernel can do
 * (from its BTF), their programs (loaded only when asked for) and their maps,
 * swapped and drained beside the flow table (fc_swapped.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/btf.h>

#include "fc_internal.h"

static const char *rtt_attach_kind(const struct btf *vmlinux);

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

	fc_capture_libbpf_log(); /* libbpf's own lines would be a second line on stderr */
	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		if (wanted & FC_FEATURE_DROPS)
			append_missing(missing, sizeof(missing),
				       "drops needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)");
		if (wanted & FC_FEATURE_RTT)
			append_missing(missing, sizeof(missing),
				       "rtt needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)");
		fc_set_error(missing);
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
	fc_set_error(missing);
	return supported;
}


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

int fc_features_before_load(struct fc_agent *agent, const struct fc_load_opts *opts)
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
	skel->rodata->fc_agent_netns = (__u32)fc_current_netns();
	return 0;
}

int fc_features_after_load(struct fc_agent *agent)
{
	struct fc_feature_state *f = &agent->features;
	struct flows_bpf *skel = agent->skel;
	int err;

	if (f->enabled & FC_FEATURE_DNS &&
	    (err = fc_swapped_open(agent, &f->dns, skel->maps.fc_dns_slot, skel->maps.fc_dns_a, skel->maps.fc_dns_b,
				    sizeof(struct fc_flow_tuple), sizeof(struct fc_dns_metrics), false, copy_dns)))
		return err;
	if (f->enabled & FC_FEATURE_RTT) {
		if ((err = fc_swapped_open(agent, &f->rtt, skel->maps.fc_rtt_slot, skel->maps.fc_rtt_a,
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
	if ((err = fc_swapped_open(agent, &f->drops, skel->maps.fc_drop_slot, skel->maps.fc_drops_a,
				    skel->maps.fc_drops_b, sizeof(struct fc_flow_tuple), sizeof(struct fc_drop_metrics),
				    true, fold_drop_percpu)))
		return err;
	/* The skeleton owns the link: flows_bpf__destroy() detaches it. */
	skel->links.fc_kfree_skb = bpf_program__attach(skel->progs.fc_kfree_skb);
	if (!skel->links.fc_kfree_skb)
		return fc_fail(-errno, "attaching the drops program to the kfree_skb tracepoint");
	return 0;
}

void fc_features_close(struct fc_agent *agent)
{
	struct fc_swapped_map *maps[] = { &agent->features.drops, &agent->features.dns, &agent->features.rtt };
	size_t i;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		fc_swapped_close(maps[i]);
}

long fc_agent_swap_and_drain_drops(struct fc_agent *agent, struct fc_drop_record *out, __u64 capacity)
{
	if (!(agent->features.enabled & FC_FEATURE_DROPS))
		return 0;
	return fc_swapped_swap_and_drain(agent, &agent->features.drops, out, capacity);
}

long fc_agent_swap_and_drain_dns(struct fc_agent *agent, struct fc_dns_record *out, __u64 capacity)
{
	if (!(agent->features.enabled & FC_FEATURE_DNS))
		return 0;
	int active = agent->features.dns.active;
	long n;

	/* Before the swap: queries seen from here on belong to the next period (bpf/dns.bpf.h). */
	__atomic_add_fetch(&agent->skel->bss->fc_dns_generation, 1, __ATOMIC_RELAXED);
	n = fc_swapped_swap_and_drain(agent, &agent->features.dns, out, capacity);
	if (n < 0 && agent->features.dns.active == active) /* not swapped: the period goes on */
		__atomic_sub_fetch(&agent->skel->bss->fc_dns_generation, 1, __ATOMIC_RELAXED);
	return n;
}

long fc_agent_swap_and_drain_rtt(struct fc_agent *agent, struct fc_rtt_record *out, __u64 capacity)
{
	if (!(agent->features.enabled & FC_FEATURE_RTT))
		return 0;
	return fc_swapped_swap_and_drain(agent, &agent->features.rtt, out, capacity);
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

	fc_capture_libbpf_log();
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
	return fc_sum_percpu_counters(agent, bpf_map__fd(agent->skel->maps.fc_feature_counters), out, n,
				   FC_FEATURE_COUNTER_MAX, "feature counters");
}
