// SPDX-License-Identifier: GPL-2.0
/*
 * Capability probe (node-agent/src/bpf/probe.rs). `mg_probe_file_open` counts the file opens of one
 * process (`probe_state.pid`, set by the agent) and never denies anything: the agent attaches it,
 * opens a file, and only calls BPF LSM usable when the count moved. A kernel whose `lsm=` list lacks
 * `bpf` loads and attaches LSM programs without ever running them, so loading alone proves nothing.
 * `mg_probe_connect4` (always allows) checks that a sock_addr program attaches at the cgroup v2 root.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct mg_probe_state {
	__u32 pid;
	__u32 hits;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_probe_state);
} probe_state SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(mg_probe_file_open, struct file *file, int ret)
{
	__u32 zero = 0;
	struct mg_probe_state *s = bpf_map_lookup_elem(&probe_state, &zero);
	if (s && s->pid == (__u32)(bpf_get_current_pid_tgid() >> 32))
		__sync_fetch_and_add(&s->hits, 1);
	return ret;
}

SEC("cgroup/connect4")
int mg_probe_connect4(struct bpf_sock_addr *ctx)
{
	return 1;
}
