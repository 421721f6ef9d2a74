/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The time a packet is counted at (CLOCK_MONOTONIC ns): the flows' first and
 * last seen times.
 *
 * Reading the clock is the largest single cost of counting a packet: a
 * bpf_ktime_get_ns() call is a serialized TSC read (~25 ns here; bench/
 * kernel_cost.py). With fc_clock_mode FC_CLOCK_TICK a thread of the
 * collector (native/fc_clock.c) writes the time into fc_clock_ns every
 * FC_CLOCK_TICK_NS, and the programs read that copy: a flow's times are then
 * at most a tick (plus the thread's wake-up latency) before its packets'
 * (bench/clock.py measures it; docs/architecture.md has the figures). A copy
 * older than FC_CLOCK_STALE_NS by the kernel's coarse clock (a helper call
 * of a few ns, which lags the fine clock by at most a jiffy) is not used:
 * the packet reads the fine clock, so no time is ever more than
 * FC_CLOCK_STALE_NS and a jiffy (5 ms at HZ=250) early, however late the
 * thread is, or while it rests. FC_CLOCK_FINE reads the clock for every
 * packet. Replay takes the frame's capture time (fc_replay).
 *
 * The thread rests while the programs run less than its tick_min_runs a
 * second (it counts FC_COUNTER_PROGRAM_RUNS, added here): waking every
 * 0.5 ms has a cost of its own, which only a high packet rate pays back
 * (docs/architecture.md, the clock, has the figures; they make the fine
 * clock the default).
 */
#ifndef FC_CLOCK_BPF_H
#define FC_CLOCK_BPF_H

/* Load-time: FC_CLOCK_FINE or FC_CLOCK_TICK (enum fc_clock_mode in flow.h). */
const volatile __u8 fc_clock_mode = FC_CLOCK_FINE;

/* Written by native/fc_clock.c through the mapped .bss; 0 until its first tick. */
__u64 fc_clock_ns = 0;

/* The fine clock, or the capture time of a replayed frame. */
static __always_inline __u64 fine_clock(const struct __sk_buff *skb)
{
	return fc_replay ? skb->tstamp : bpf_ktime_get_ns();
}

/* The time a packet is counted at, as fc_clock_mode says. */
static __always_inline __u64 packet_clock(const struct __sk_buff *skb)
{
	if (fc_clock_mode == FC_CLOCK_TICK && !fc_replay) {
		__u64 now = *(volatile __u64 *)&fc_clock_ns;

		count(FC_COUNTER_PROGRAM_RUNS, 1); /* what the thread decides on */
		if (now && bpf_ktime_get_coarse_ns() <= now + FC_CLOCK_STALE_NS)
			return now;
	}
	return fine_clock(skb);
}

#endif /* FC_CLOCK_BPF_H */
