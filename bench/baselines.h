/* cdef of bench/baselines.c: fill a flow map, and drain it the two baseline ways. */
long fcb_fill(int fd, __u32 n, __u32 ncpus);
long fcb_raw_drain(int fd, __u32 batch, __u32 ncpus);
long fcb_per_key_drain(int fd, __u32 ncpus);
/* libbpf's per-key calls, for the seed-style loop written in Python. */
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
