// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TC attachments: TCX links where the kernel has them, else clsact filters at
 * priority 1, always beside what other tools attached; detaching removes only
 * ours. The programs return TC_ACT_UNSPEC / TCX_NEXT, so foreign filters after
 * ours still decide.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>

#include "fc_internal.h"

#define FC_TC_PRIORITY 1
/*
 * TCX attach types (Linux 6.6). Debian 12's kernel headers (6.1) and libbpf
 * (1.1) predate them: the links are made with bpf_link_create and these
 * values of enum bpf_attach_type.
 */
#define FC_TCX_INGRESS 46
#define FC_TCX_EGRESS 47

/*
 * Does this kernel attach TCX links? Tried with a program that only passes
 * packets on (TCX_NEXT) on the loopback interface, detached at once: no
 * traffic is changed. 1: yes, 0: no, < 0: the probe itself failed.
 */
int fc_probe_tcx(void)
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
	struct fc_attachment att = { .netns = fc_current_netns(), .ifindex = ifindex,
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
	struct fc_attachment *att = find_attachment(agent, fc_current_netns(), ifindex);
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
	__u64 netns = fc_current_netns();
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

