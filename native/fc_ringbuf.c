// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The ring buffer: one-packet records of the flows the table refused
 * (bpf/table.bpf.h refuse()), copied into a caller-owned array.
 */
#include <errno.h>
#include <string.h>

#include "fc_internal.h"

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

int fc_ringbuf_open(struct fc_agent *agent)
{
	agent->ringbuf = ring_buffer__new(bpf_map__fd(agent->skel->maps.fc_ringbuf), on_ringbuf_record,
					  &agent->sink, NULL);
	return agent->ringbuf ? 0 : fc_fail(-errno, "opening the ring buffer");
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
