// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* A stand-in for another tool's TC filter: drops UDP to port 9999, passes the rest. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("tc")
int foreign_drop(struct __sk_buff *skb)
{
	__u8 ip[20];
	__be16 dport;

	if (skb->protocol != bpf_htons(0x0800) || bpf_skb_load_bytes(skb, 14, ip, sizeof(ip)))
		return TC_ACT_OK;
	if (ip[9] != 17 || bpf_skb_load_bytes(skb, 14 + (ip[0] & 0x0f) * 4 + 2, &dport, sizeof(dport)))
		return TC_ACT_OK;
	return dport == bpf_htons(9999) ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
