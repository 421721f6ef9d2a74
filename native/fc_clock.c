// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The tick (FC_CLOCK_TICK, bpf/clock.bpf.h): a thread of the agent's process
 * that writes CLOCK_MONOTONIC into the programs' .bss every FC_CLOCK_TICK_NS,
 * so that they need not read the clock for every packet. It ticks only while
 * the programs run at least tick_min_runs times a second: every
 * FC_CLOCK_CHECK_NS it reads their runs (FC_COUNTER_PROGRAM_RUNS, one
 * syscall), starts ticking at that rate and rests again below half of it.
 * While it rests the copy goes stale and the programs read the fine clock.
 * Plain C: it never takes Python's lock, and it blocks every signal (they go
 * to Python's main thread). It keeps its own figures: how many ticks, the
 * latest one after its due time, how many times it started ticking.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include <bpf/bpf.h>

#include "fc_internal.h"

/* The programs' runs so far, all CPUs together. */
static __u64 program_runs(struct fc_agent *agent)
{
	__u32 slot = FC_COUNTER_PROGRAM_RUNS, cpu;
	__u64 runs = 0;

	if (bpf_map_lookup_elem(bpf_map__fd(agent->skel->maps.fc_counters), &slot, agent->clock.values))
		return 0; /* cannot fail on a loaded array; if it did, the tick would only rest */
	for (cpu = 0; cpu < agent->ncpus; cpu++)
		runs += agent->clock.values[cpu];
	return runs;
}

/* Sleep until due_ns (CLOCK_MONOTONIC) or until fc_clock_stop() says so; true when told to stop. */
static bool rest_until(struct fc_clock *clock, __u64 due_ns)
{
	struct timespec due = { .tv_sec = due_ns / 1000000000ull, .tv_nsec = due_ns % 1000000000ull };
	bool stop;

	pthread_mutex_lock(&clock->lock);
	while (!(stop = clock->stop) && pthread_cond_timedwait(&clock->wake, &clock->lock, &due) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&clock->lock);
	return stop;
}

static void *tick_loop(void *arg)
{
	struct fc_agent *agent = arg;
	struct fc_clock *clock = &agent->clock;
	__u64 now = fc_now_ns(), due_ns = now, checked_ns = now, check_ns = now + FC_CLOCK_CHECK_NS;
	__u64 runs = clock->min_runs ? program_runs(agent) : 0;
	bool ticking = !clock->min_runs;

	if (ticking)
		clock->starts = 1;
	for (;;) {
		now = fc_now_ns();
		if (clock->min_runs && now >= check_ns) {
			__u64 seen = program_runs(agent);
			double per_s = (double)(seen - runs) * 1e9 / (double)(now - checked_ns);
			bool tick = per_s >= (ticking ? clock->min_runs / 2.0 : clock->min_runs);

			if (tick && !ticking) {
				__atomic_add_fetch(&clock->starts, 1, __ATOMIC_RELAXED);
				due_ns = now; /* not late: it was resting */
			}
			ticking = tick;
			runs = seen;
			checked_ns = now;
			check_ns = now + FC_CLOCK_CHECK_NS;
		}
		if (!ticking) {
			if (rest_until(clock, check_ns))
				break;
			continue;
		}
		if (now > due_ns && now - due_ns > clock->late_max_ns)
			__atomic_store_n(&clock->late_max_ns, now - due_ns, __ATOMIC_RELAXED);
		__atomic_store_n(&agent->skel->bss->fc_clock_ns, now, __ATOMIC_RELEASE);
		__atomic_add_fetch(&clock->ticks, 1, __ATOMIC_RELAXED);
		due_ns += FC_CLOCK_TICK_NS;
		if (due_ns <= now) /* late by a tick or more: the next one is a tick from now, not a burst */
			due_ns = now + FC_CLOCK_TICK_NS;
		if (rest_until(clock, due_ns))
			break;
	}
	return NULL;
}

int fc_clock_start(struct fc_agent *agent, __u32 min_runs)
{
	struct fc_clock *clock = &agent->clock;
	pthread_condattr_t attr;
	sigset_t all, old;
	int err;

	clock->min_runs = min_runs;
	clock->values = calloc(agent->ncpus, sizeof(*clock->values));
	if (!clock->values)
		return fc_fail(-ENOMEM, "allocating the clock tick's counters");
	pthread_mutex_init(&clock->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* its waits' deadlines are fc_now_ns() times */
	pthread_cond_init(&clock->wake, &attr);
	pthread_condattr_destroy(&attr);
	clock->initialized = true;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits the mask: no signal is delivered to it */
	err = pthread_create(&clock->thread, NULL, tick_loop, agent);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return fc_fail(-err, "starting the clock tick's thread");
	clock->running = true;
	return 0;
}

void fc_clock_stop(struct fc_agent *agent)
{
	struct fc_clock *clock = &agent->clock;

	if (clock->running) {
		pthread_mutex_lock(&clock->lock);
		clock->stop = true;
		pthread_cond_signal(&clock->wake);
		pthread_mutex_unlock(&clock->lock);
		pthread_join(clock->thread, NULL);
		clock->running = false;
	}
	if (clock->initialized) {
		pthread_cond_destroy(&clock->wake);
		pthread_mutex_destroy(&clock->lock);
		clock->initialized = false;
	}
	free(clock->values);
	clock->values = NULL;
}

void fc_agent_clock_ticks(struct fc_agent *agent, __u64 *ticks, __u64 *late_max_ns, __u64 *starts)
{
	*ticks = __atomic_load_n(&agent->clock.ticks, __ATOMIC_RELAXED);
	*late_max_ns = __atomic_load_n(&agent->clock.late_max_ns, __ATOMIC_RELAXED);
	*starts = __atomic_load_n(&agent->clock.starts, __ATOMIC_RELAXED);
}
