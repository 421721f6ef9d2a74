/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The flow table's hash of a flow key, one definition for the kernel program
 * (bpf/table.bpf.h: bucket and first slot) and the native drain
 * (native/fc_table.c: the fold of one flow's rows across CPUs, which must find
 * an overflow-map row by the hash its table rows carry). Fixed-width types
 * only, like flow.h; not read by the cffi builder.
 */
#ifndef FC_FLOW_HASH_H
#define FC_FLOW_HASH_H

/*
 * 64 bits of the 64-byte key: its eight words mixed in two independent lanes
 * (half the multiply chain's latency), then finished so that every bit of the
 * result depends on every bit of the key. The low bits pick the bucket, bits
 * 40-43 the first slot.
 */
static __always_inline __u64 fc_flow_hash(const struct fc_flow_key *key)
{
	const __u64 *w = (const __u64 *)key;
	__u64 a = 0x243f6a8885a308d3ULL, b = 0x13198a2e03707344ULL, h;

	a = (a ^ w[0]) * 0x9e3779b97f4a7c15ULL;
	b = (b ^ w[4]) * 0xc2b2ae3d27d4eb4fULL;
	a = (a ^ w[1]) * 0x9e3779b97f4a7c15ULL;
	b = (b ^ w[5]) * 0xc2b2ae3d27d4eb4fULL;
	a = (a ^ w[2]) * 0x9e3779b97f4a7c15ULL;
	b = (b ^ w[6]) * 0xc2b2ae3d27d4eb4fULL;
	a = (a ^ w[3]) * 0x9e3779b97f4a7c15ULL;
	b = (b ^ w[7]) * 0xc2b2ae3d27d4eb4fULL;
	h = a ^ ((b << 32) | (b >> 32));
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

#endif /* FC_FLOW_HASH_H */
