/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The time a packet is counted at (CLOCK_MONOTONIC ns): the flows' first and
 * last seen times.
 *
 * Reading the clock is the largest single cost of counting a packet: a
 * bpf_ktime_get_ns() call is a serialized TSC read (~25 ns here; bench/
 * kernel_cost.py). With fc_clock_mode FC_CLOCK_TICK a BPF timer reads it
 * every FC_CLOCK_TICK_NS into .bss and the programs read that copy, so a
 * flow's times are at most one tick (plus the timer's slack) before its
 * packets' (bench/clock.py measures it: docs/architecture.md has the
 * figures). The tick runs in softirq context and can be late when softirqs
 * are starved or the host's scheduler holds the CPU: a packet that finds the
 * copy older than one jiffy past its tick reads the fine clock itself, so no
 * time is ever more than two jiffies (8 ms at HZ=250) early. The timer costs
 * a wake-up of one CPU every tick, idle or not. FC_CLOCK_FINE reads the clock
 * for every packet. Replay takes the frame's capture time (fc_replay).
 */
#ifndef FC_CLOCK_BPF_H
#define FC_CLOCK_BPF_H

#define FC_CLOCK_TICK_NS 500000ULL /* a flow time is at most this (plus the timer's slack) early */

/* Load-time: FC_CLOCK_FINE or FC_CLOCK_TICK (enum fc_clock_mode in flow.h). */
const volatile __u8 fc_clock_mode = FC_CLOCK_FINE;

/* Written by the tick only; read by every program and, for its metrics, by user space (the mapped .bss). */
__u64 fc_clock_ns = 0;
__u64 fc_clock_jiffies = 0;
__u64 fc_clock_ticks = 0;
__u64 fc_clock_late_max_ns = 0; /* the latest a tick has fired after its due time */

struct fc_clock_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fc_clock_timer);
} fc_clock_timers SEC(".maps");

static int clock_tick(void *map, __u32 *key, struct fc_clock_timer *t)
{
	__u64 now = bpf_ktime_get_ns(), due = fc_clock_ns + FC_CLOCK_TICK_NS;

	if (fc_clock_ns && now > due && now - due > fc_clock_late_max_ns)
		fc_clock_late_max_ns = now - due;
	fc_clock_jiffies = bpf_jiffies64();
	*(volatile __u64 *)&fc_clock_ns = now;
	fc_clock_ticks++;
	bpf_timer_start(&t->timer, FC_CLOCK_TICK_NS, 0);
	return 0;
}

/* Run once by user space (BPF_PROG_TEST_RUN, native/fc_load.c) to start the tick; it runs until the map goes. */
SEC("tc")
int fc_clock_start(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct fc_clock_timer *t = bpf_map_lookup_elem(&fc_clock_timers, &zero);

	if (!t)
		return 1;
	if (bpf_timer_init(&t->timer, &fc_clock_timers, 1 /* CLOCK_MONOTONIC */) ||
	    bpf_timer_set_callback(&t->timer, clock_tick) || bpf_timer_start(&t->timer, 0, 0))
		return 2;
	return 0;
}

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

		if (bpf_jiffies64() - *(volatile __u64 *)&fc_clock_jiffies <= 1 && now)
			return now;
	}
	return fine_clock(skb);
}

#endif /* FC_CLOCK_BPF_H */
