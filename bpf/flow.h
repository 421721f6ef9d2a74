/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one definition of every structure and constant shared by the kernel
 * program (flows.bpf.c), the native extension (native/) and the numpy dtypes
 * (flowcollect/records.py reads the layout from the compiled cffi module).
 *
 * Rules, because three compilers read this file:
 *   - fixed-width __u8/__u16/__u32/__u64 only, no kernel includes;
 *   - every struct naturally aligned, padding spelled out as named fields so
 *     that a hash-map key is fully initialised and no compiler adds holes;
 *   - only "#define NAME <integer>" lines: the cffi builder strips the
 *     include guard and keeps the rest.
 */
#ifndef FC_FLOW_H
#define FC_FLOW_H

/* Direction of a packet, numbered as IPFIX flowDirection (IE 61). */
enum fc_direction {
	FC_DIRECTION_INGRESS = 0,
	FC_DIRECTION_EGRESS = 1,
};

/* Load-time selection of the hooks that count (const volatile fc_direction_mask). */
enum fc_direction_mask {
	FC_TRACE_INGRESS = 1,
	FC_TRACE_EGRESS = 2,
	FC_TRACE_BOTH = 3,
};

/* Load-time choice of the clock the flows' times come from (const volatile fc_clock_mode, bpf/clock.bpf.h). */
enum fc_clock_mode {
	FC_CLOCK_FINE = 0, /* bpf_ktime_get_ns() for every packet */
	FC_CLOCK_TICK = 1, /* the tick's reading (native/fc_clock.c), the fine clock when it is stale */
};

/*
 * The tick (native/fc_clock.c): how often user space writes the time for the
 * programs, how old a reading may be, and how often it counts the programs'
 * runs to decide whether to tick at all.
 */
#define FC_CLOCK_TICK_NS 500000
#define FC_CLOCK_STALE_NS 1000000
#define FC_CLOCK_CHECK_NS 100000000

/*
 * TCP flags, OR-ed over every packet of a flow. The low byte is the TCP
 * header's flag byte as is (so it exports unchanged as IPFIX tcpControlBits);
 * the seed's synthetic bits mark a flag seen together with ACK in one segment.
 */
enum fc_tcp_flag {
	FC_TCP_FIN = 0x01,
	FC_TCP_SYN = 0x02,
	FC_TCP_RST = 0x04,
	FC_TCP_PSH = 0x08,
	FC_TCP_ACK = 0x10,
	FC_TCP_URG = 0x20,
	FC_TCP_ECE = 0x40,
	FC_TCP_CWR = 0x80,
	FC_TCP_SYN_ACK = 0x100,
	FC_TCP_FIN_ACK = 0x200,
	FC_TCP_RST_ACK = 0x400,
};

/* Slots of the per-CPU counters map: what the agent could not see otherwise. */
enum fc_counter {
	FC_COUNTER_PACKETS_SEEN = 0,       /* every frame the programs ran on (a GSO packet: its segments) */
	FC_COUNTER_SAMPLED_OUT = 1,        /* frames skipped by 1-in-N sampling */
	FC_COUNTER_PARSE_FAILED = 2,       /* truncated or malformed header; still counted by ethertype */
	FC_COUNTER_MAP_INSERT_FAILED = 3,  /* new flow refused by the table (cap reached, overflow map full): ring buffer */
	FC_COUNTER_RINGBUF_SUBMITTED = 4,  /* one-packet records sent through the ring buffer */
	FC_COUNTER_RINGBUF_RESERVE_FAILED = 5, /* ring buffer full too: packet lost to user space */
	FC_COUNTER_LOST_BYTES = 6,         /* bytes of those lost packets */
	FC_COUNTER_NO_FLOW_MAP = 7,        /* frames seen while the flow table was missing (never after load) */
	FC_COUNTER_OVERFLOW_PACKETS = 8,   /* frames counted in the overflow map: their flow's bucket was full */
	FC_COUNTER_PROGRAM_RUNS = 9,       /* runs of the flow programs (a GSO packet: one), with the tick only */
	FC_COUNTER_MAX = 10,
};

#define FC_MAC_LEN 6
#define FC_IP_LEN 16

/*
 * The flow key: one flow as the seed keys it, plus ICMP type/code and
 * VLAN id. IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d). Ports and
 * ethertype are in host byte order. 64 bytes.
 */
struct fc_flow_key {
	__u8 src_mac[FC_MAC_LEN];
	__u8 dst_mac[FC_MAC_LEN];
	__u16 eth_protocol;
	__u8 src_ip[FC_IP_LEN];
	__u8 dst_ip[FC_IP_LEN];
	__u16 src_port;
	__u16 dst_port;
	__u16 vlan_id;
	__u32 if_index;
	__u8 protocol;
	__u8 direction;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pad[4];
};

/*
 * What a flow counted on one CPU (a table slot, an overflow map's per-CPU
 * value), and folded over CPUs in a drained row. Times are CLOCK_MONOTONIC ns
 * (bpf/clock.bpf.h); a per-CPU value whose first_seen_ns is 0 was never
 * written on that CPU. 40 bytes.
 */
struct fc_flow_metrics {
	__u64 packets;
	__u64 bytes;
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u16 tcp_flags;
	__u8 dscp;
	__u8 errno_code; /* errno of the failed map insert, on ring-buffer records */
	__u32 pad;
};

/*
 * One flow: a ring-buffer record from the kernel, and one row of a drained
 * batch (metrics folded over CPUs) in user space. 104 bytes.
 */
struct fc_flow_record {
	struct fc_flow_key key;
	struct fc_flow_metrics metrics;
};

/* ---- The flow table (bpf/table.bpf.h, native/fc_table.c; docs/architecture.md) ---- */

/* Pairs of an index bucket: a flow's probes stay in its bucket, so one lookup finds them all. */
#define FC_BUCKET_PAIRS 16

/*
 * One flow in a CPU's region of the table, appended in the order flows
 * start: written only by that CPU's programs while its half is active, read
 * by user space once the half is retired. hash: of the key, compared before
 * the key, and reused by the drain's fold across CPUs. 128 bytes: two cache
 * lines, the key in the first.
 */
struct fc_table_entry {
	struct fc_flow_key key;
	struct fc_flow_metrics metrics;
	__u64 hash;
	__u8 pad_entry[16];
};

/* A slot of an index bucket: a flow's entry (its number in the region + 1; 0: free) and 32 bits of its hash. */
struct fc_table_pair {
	__u32 tag;
	__u32 entry;
};

/* An index bucket: 128 bytes, the size of an entry, so that both are elements of one array. */
struct fc_table_bucket {
	struct fc_table_pair pairs[FC_BUCKET_PAIRS];
};

/*
 * One CPU's part of one half of the table: its index buckets, then its
 * entries, elements of the half's array. The layout (first_bucket,
 * bucket_mask, first_entry, cap) is written by user space while the half is
 * idle; the counts by that CPU's programs only (plain adds), read by user
 * space through the mapping to swap before the region fills. 64 bytes.
 */
struct fc_table_region {
	__u32 first_bucket; /* element of the region's first index bucket */
	__u32 bucket_mask;  /* index buckets of the region - 1 (a power of two - 1) */
	__u32 first_entry;  /* element of its first entry: the region holds `cap` of them */
	__u32 cap;          /* flows this CPU may start in the half: entries and overflow-map flows */
	__u64 flows;        /* flows started in the half: entries, and overflow-map flows */
	__u64 overflowed;   /* of them, the ones in the overflow map (their bucket was full) */
	__u64 refused;      /* packets of new flows past the cap or the overflow map: sent to the ring buffer */
	__u8 pad_counts[24];
};

/* The value of fc_cpu_tables, one per possible CPU: its region in each half. 128 bytes. */
struct fc_cpu_table {
	struct fc_table_region half[2];
};

#define FC_DNS_NAME_LEN 64

/*
 * User space only: what the opt-in features (--features) add to an evicted
 * flow, zero when off. Drops: packets and bytes of the flow the kernel freed
 * as dropped (struct fc_drop_metrics joined on in user space), the reason
 * (enum skb_drop_reason: its names come from the kernel's BTF at run time)
 * and the socket's TCP state (0: no socket). DNS (struct fc_dns_metrics
 * joined on): the latest query's id, response code and latency, queries
 * still unanswered, enum fc_dns_flag, and the question's name as dotted text,
 * NUL-padded. RTT (struct fc_rtt_metrics joined on): the connection's largest
 * smoothed RTT and its handshake RTT. 120 bytes.
 */
struct fc_flow_features {
	__u64 drop_packets;
	__u64 drop_bytes;
	__u32 drop_reason;
	__u8 drop_tcp_state;
	__u8 pad_features[3];
	__u64 dns_latency_ns;
	__u32 dns_unanswered;
	__u16 dns_id;
	__u8 dns_rcode;
	__u8 dns_flags;
	__u8 dns_name[FC_DNS_NAME_LEN];
	__u64 rtt_ns;           /* largest smoothed RTT of the connection in the period */
	__u64 handshake_rtt_ns; /* its handshake's RTT, when the agent saw it */
};

/*
 * User space only: one evicted flow, as the pipeline stages pass it on and as
 * the binary ZeroMQ topic carries it (docs/wire.md). Times are wall clock,
 * nanoseconds since the Unix epoch, converted from first/last_seen_ns with one
 * (wall, monotonic) pair per eviction. 248 bytes.
 */
struct fc_flow_export {
	struct fc_flow_record record;
	__s64 time_flow_start_ns;
	__s64 time_flow_end_ns;
	__u32 sampling;  /* 1 in N packets were counted; 0 or 1 = every packet */
	__u8 duplicate;  /* set by the deduper in just-mark mode */
	__u8 pad_export[3];
	struct fc_flow_features features;
};

/* ---- Opt-in features (--features): maps of their own, joined onto the flows in user space ---- */

/* Slots of the per-CPU feature counters map: what a feature saw but could not record. */
enum fc_feature_counter {
	FC_FEATURE_COUNTER_DROPS_UNRECORDED = 0, /* dropped packets whose flow did not fit the drop map */
	FC_FEATURE_COUNTER_DNS_UNRECORDED = 1,   /* DNS messages whose flow did not fit the DNS map */
	FC_FEATURE_COUNTER_RTT_UNRECORDED = 2,   /* RTT samples whose connection did not fit the RTT map */
	FC_FEATURE_COUNTER_MAX = 3,
};

/*
 * The key of every feature map (drops, DNS, RTT and handshakes; bpf/drops.bpf.h and the others):
 * a flow without its interface, MACs or direction, which a packet freed deep
 * in the stack no longer has. Same address form and byte order as struct fc_flow_key. 40 bytes.
 */
struct fc_flow_tuple {
	__u8 src_ip[FC_IP_LEN];
	__u8 dst_ip[FC_IP_LEN];
	__u16 src_port;
	__u16 dst_port;
	__u8 protocol;
	__u8 pad_tuple[3];
};

/*
 * The per-CPU value of the drop map; a slot whose first_seen_ns is 0 was never
 * written on that CPU. bytes: the IP packet plus a 14-byte Ethernet header per
 * frame, as `bytes` of a flow counts it on Ethernet. 48 bytes.
 */
struct fc_drop_metrics {
	__u64 packets;
	__u64 bytes;
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u32 reason;     /* enum skb_drop_reason of the latest drop */
	__u32 if_index;   /* of the device the latest dropped packet was on (0: none) */
	__u8 tcp_state;   /* of its socket (TCP_ESTABLISHED = 1, ...), 0 when it had none */
	__u8 pad_drop[7];
};

/* One drained row of the drop map, per-CPU values folded. 88 bytes. */
struct fc_drop_record {
	struct fc_flow_tuple key;
	struct fc_drop_metrics metrics;
};

/* What a flow's DNS record saw (struct fc_dns_metrics.flags, fc_flow_features.dns_flags). */
enum fc_dns_flag {
	FC_DNS_SEEN_QUERY = 1, /* a query of the flow was seen this period */
	FC_DNS_ANSWERED = 2,   /* a response to one of its queries was seen: rcode and latency are set */
};

/* DNS (bpf/dns.bpf.h): a query waiting for its response, by its flow (client to server) and id. 44 bytes. */
struct fc_dns_query_key {
	struct fc_flow_tuple tuple;
	__u16 id;
	__u8 pad_query[2];
};

/*
 * One flow's DNS during an eviction period, keyed by the query's tuple
 * (client to server); not per-CPU, since a query and its response may be
 * seen on different CPUs. name: the latest query's question as on the wire
 * (length-prefixed labels), its first name_len bytes. 96 bytes.
 */
struct fc_dns_metrics {
	__u64 latency_ns;   /* latest response's time minus its query's */
	__u32 queries;
	__u32 answers;
	__u32 unanswered;   /* queries of this period with no response yet */
	__u16 id;
	__u8 rcode;
	__u8 flags;         /* enum fc_dns_flag */
	__u8 name_len;
	__u8 name[FC_DNS_NAME_LEN];
	__u8 pad_dns[7];
};

/*
 * RTT (bpf/rtt.bpf.h): one TCP connection during an eviction period, keyed
 * by its socket's tuple (local to remote) for the smoothed RTT and by the
 * client-to-server tuple for the handshake; per-CPU. 32 bytes.
 */
struct fc_rtt_metrics {
	__u64 srtt_max_ns;   /* the largest smoothed RTT the socket had */
	__u64 handshake_ns;  /* SYN to SYN-ACK, or SYN-ACK to ACK; 0 when not seen */
	__u64 first_seen_ns;
	__u64 last_seen_ns;
};

/* One drained row of the RTT map, per-CPU values folded. 72 bytes. */
struct fc_rtt_record {
	struct fc_flow_tuple key;
	struct fc_rtt_metrics metrics;
};

/* One drained row of the DNS map. 136 bytes. */
struct fc_dns_record {
	struct fc_flow_tuple key;
	struct fc_dns_metrics metrics;
};

#endif /* FC_FLOW_H */
