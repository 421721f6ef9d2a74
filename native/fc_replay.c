// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Replay: captured frames through the programs with BPF_PROG_TEST_RUN, in
 * order, each with its capture time in the test context's tstamp
 * (bpf/flows.bpf.c fc_replay). flowcollect/agent/replay.py drives it.
 */
#include <errno.h>

#include "fc_internal.h"

long fc_agent_replay(struct fc_agent *agent, const __u8 *data, const struct fc_replay_frame *frames, __u64 n,
		     double stop_at_fill)
{
	int progs[2] = { bpf_program__fd(agent->skel->progs.fc_ingress), bpf_program__fd(agent->skel->progs.fc_egress) };
	__u64 i;

	if (!agent->skel->rodata->fc_replay)
		return fc_fail(-EINVAL, "replaying frames into an agent not opened for replay (its table has live writers)");
	for (i = 0; i < n; i++) {
		const struct fc_replay_frame *frame = &frames[i];
		/* The skb's timestamp carries the capture time to the program (bpf/flows.bpf.c, fc_replay). */
		struct __sk_buff ctx = { .tstamp = frame->tstamp_ns };
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data + frame->offset, .data_size_in = frame->length,
			    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = 1);
		int err;

		if (stop_at_fill > 0 && fc_table_fill(agent) >= stop_at_fill)
			break;
		err = bpf_prog_test_run_opts(progs[frame->egress ? 1 : 0], &opts);
		if (err)
			return fc_fail(err, "running frame %llu of the capture through the programs",
				       (unsigned long long)i);
	}
	return (long)i;
}
