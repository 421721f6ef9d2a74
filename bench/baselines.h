/* cdef of bench/baselines.c: fill a flow map, and drain it the two baseline ways. */
long fcb_fill(int fd, __u32 n, __u32 ncpus);
/* A per-CPU hash of max_entries (the old flow maps' type), for the old drain's figures; its fd, or -errno. */
int fcb_percpu_hash(__u32 key_size, __u32 value_size, __u32 max_entries);
/* Flows first .. first + n - 1 (fcb_fill is first = 0): distinct key sets for distinct ranges. */
long fcb_fill_from(int fd, __u32 first, __u32 n, __u32 ncpus);
long fcb_raw_drain(int fd, __u32 batch, __u32 ncpus);
long fcb_per_key_drain(int fd, __u32 ncpus);
/* libbpf's per-key calls, for the seed-style loop written in Python. */
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
/* BPF_PROG_TEST_RUN: program return code (or -errno); *total_ns = kernel-timed ns over all repeats. */
long fcb_test_run(int prog_fd, const void *frame, __u32 len, __u32 repeat, __u64 *total_ns);
/* n test runs of one repeat each, the IPv4 source address at src_ip_offset set to
 * 10.0.0.0 + first + i for run i: every run a flow the map has not seen. 0 or -errno. */
long fcb_test_run_new_flows(int prog_fd, void *frame, __u32 len, __u32 src_ip_offset, __u32 first, __u32 n,
			    __u64 *total_ns);
/* n test runs of one repeat each of the same frame (an existing flow, one frame per run, as a new flow
 * is measured). 0 or -errno. */
long fcb_test_run_each(int prog_fd, const void *frame, __u32 len, __u32 n, __u64 *total_ns);
/* Open and load a BPF object file; an fd of its first program (close it), or -errno. */
int fcb_load_first_prog(const char *object_path);
/* The same for the program called `name`, the object's others not loaded; flow_map_entries, when not 0,
 * sizes the maps named fc_flows_* (the old datapath's flow maps). */
int fcb_load_prog(const char *object_path, const char *name, __u32 flow_map_entries);
/* The kernel's id of the program at prog_fd, or -errno. */
int fcb_prog_id(int prog_fd);
/* A TCX link of the program on ifindex (the caller's network namespace): its fd (close it to detach), or -errno. */
int fcb_tcx_attach(int prog_fd, int ifindex, int ingress);
/* For bench/lab.py AgentTable: reach a running agent's maps and programs by id, by name. */
int bpf_map_get_fd_by_id(__u32 id);
int bpf_prog_get_fd_by_id(__u32 id);
/* The name (16 bytes, as the kernel keeps it) and value size of the map at fd; 0 or -errno. */
int fcb_map_name(int fd, char *name, __u32 *value_size);
/* The offset of global variable `var` in the value of the .bss/.data map at fd, from its BTF; or -errno. */
long fcb_global_offset(int map_fd, const char *var);
/* For bench/overhead.py: the kernel's run-time statistics of programs on real traffic.
 * fcb_enable_stats: an fd that keeps them on until closed (BPF_ENABLE_STATS), or -errno.
 * fcb_prog_run_stats: total run time (ns), run count and name (16 bytes) of program `id`; 0 or -errno. */
int fcb_enable_stats(void);
int fcb_prog_run_stats(__u32 id, __u64 *run_time_ns, __u64 *run_cnt, char *name);
/* For bench/kernel_cost.py: delete every entry of every map program prog_fd uses, and of the maps its
 * array-of-maps hold (keys up to 64 bytes); the number deleted, or -errno. */
long fcb_clear_prog_maps(int prog_fd);
