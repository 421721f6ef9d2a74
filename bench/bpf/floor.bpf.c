// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The floor below which a flow program cannot go on this machine, for bench/kernel_cost.py and
 * bench/overhead.py: what bpf/flows.bpf.c must do for every packet before it touches a map. It
 * reads the clock once (flow times must stay true to the millisecond, and this kernel's coarse
 * clock ticks every 4 ms) and, when the headers are not in the linear area, copies them once, as
 * flows.bpf.c's frame_open() does.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define FLOOR_WINDOW 128

struct window {
	__u8 bytes[FLOOR_WINDOW];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct window);
} floor_scratch SEC(".maps");

SEC("tc")
int fc_floor(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 zero = 0, n = skb->len;
	__u64 now = bpf_ktime_get_ns();
	__u8 *scratch;

	if (data + FLOOR_WINDOW > data_end && data_end - data < n) {
		if (n > FLOOR_WINDOW)
			n = FLOOR_WINDOW;
		scratch = bpf_map_lookup_elem(&floor_scratch, &zero);
		if (n >= 1 && scratch && !bpf_skb_load_bytes(skb, 0, scratch, n))
			now += scratch[0];
	}
	/* Never true; it keeps the clock read and the copy from being optimised away. */
	return now == 1 ? TC_ACT_OK : TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
