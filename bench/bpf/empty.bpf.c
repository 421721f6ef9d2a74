// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The floor of bench/kernel_cost.py: a TC program that does nothing but pass the packet on. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int fc_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
