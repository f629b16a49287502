/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The maps of mcp_guard.bpf.c (included once, by it). Layouts: common.h. The loader pins each one
 * under <pin dir>/maps/<name> and checks its key size, value size and max_entries on every load.
 */
#ifndef MCP_GUARD_MAPS_H
#define MCP_GUARD_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_CGROUPS);
	__type(key, __u64);   /* cgroup id: inode of the cgroup v2 directory */
	__type(value, __u32); /* slot */
} guarded_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MG_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct mg_slot_config);
} slot_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_PATH_RULES);
	__type(key, struct mg_path_key);
	__type(value, __u32); /* MG_PATH_* */
} file_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_PATH_RULES);
	__type(key, struct mg_path_key);
	__type(value, __u32); /* MG_PATH_* */
} exec_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_v4_key);
	__type(value, __u32); /* MG_CIDR_* */
} egress_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MG_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mg_v6_key);
	__type(value, __u32); /* MG_CIDR_* */
} egress_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_PORT_RULES);
	__type(key, struct mg_port_key);
	__type(value, __u32);
} deny_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MG_MAX_PUBLIC_PORTS);
	__type(key, struct mg_public_port_key);
	__type(value, __u32);
} public_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_settings);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_meta);
} meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MG_STATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MG_RINGBUF_BYTES);
} events SEC(".maps");

#endif /* MCP_GUARD_MAPS_H */
