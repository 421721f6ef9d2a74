// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The ring buffer: one-packet records of the flows the table refused
 * (bpf/table.bpf.h refuse()), copied into a caller-owned array.
 *
 * It is mapped into this process only while it carries records: a mapping
 * of the ring (twice its size, for records that wrap) is resident from the
 * moment it is made, 32 MiB for the default 16 MiB ring, and the table's
 * fallbacks leave the ring empty nearly always. At rest the map's fd is
 * polled (it is readable when records wait, mapped or not); the first
 * record maps it (~0.4 ms for 16 MiB), and FC_RINGBUF_IDLE_NS without a
 * record unmaps it (by time, not by empty reads: a burst's reads come a
 * millisecond apart, and mapping and unmapping between them cost more than
 * the records).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "fc_internal.h"

#define FC_RINGBUF_IDLE_NS 2000000000ULL

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

static int map_ringbuf(struct fc_agent *agent)
{
	agent->ringbuf = ring_buffer__new(bpf_map__fd(agent->skel->maps.fc_ringbuf), on_ringbuf_record,
					  &agent->sink, NULL);
	agent->ringbuf_last_record_ns = fc_now_ns();
	return agent->ringbuf ? 0 : fc_fail(-errno, "mapping the ring buffer");
}

void fc_ringbuf_close(struct fc_agent *agent)
{
	ring_buffer__free(agent->ringbuf);
	agent->ringbuf = NULL;
}

long fc_agent_ringbuf_consume(struct fc_agent *agent, struct fc_flow_record *out, __u64 capacity,
			      int timeout_ms)
{
	int err;

	if (!capacity)
		return fc_fail(-EINVAL, "consuming the ring buffer into 0 rows");
	if (!agent->ringbuf) {
		struct pollfd ready = { .fd = bpf_map__fd(agent->skel->maps.fc_ringbuf), .events = POLLIN };

		err = poll(&ready, 1, timeout_ms > 0 ? timeout_ms : 0);
		if (err < 0 && errno != EINTR)
			return fc_fail(-errno, "waiting for ring-buffer records");
		if (err <= 0)
			return 0;
		if ((err = map_ringbuf(agent)))
			return err;
		timeout_ms = 0; /* records are waiting */
	}
	agent->sink.out = out;
	agent->sink.capacity = capacity;
	agent->sink.n = 0;
	err = timeout_ms > 0 ? ring_buffer__poll(agent->ringbuf, timeout_ms) : ring_buffer__consume(agent->ringbuf);
	if (err < 0 && err != -ENOBUFS && err != -EINTR)
		return fc_fail(err, "consuming the ring buffer");
	if (agent->sink.n)
		agent->ringbuf_last_record_ns = fc_now_ns();
	else if (fc_now_ns() - agent->ringbuf_last_record_ns > FC_RINGBUF_IDLE_NS)
		fc_ringbuf_close(agent);
	return (long)agent->sink.n;
}
