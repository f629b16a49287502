/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Map keys, map values, event records and constants shared by the BPF programs (mcp_guard.bpf.c)
 * and the Rust loader (node-agent/src/bpf/layout.rs). Every struct here has a #[repr(C)] twin on
 * the Rust side with the same size; the loader checks the sizes of every map against these when it
 * loads or re-adopts pinned maps. Changing a layout here means changing MG_LAYOUT_VERSION too.
 *
 * All names carry an `mg_` prefix: vmlinux.h declares thousands of kernel identifiers.
 */
#ifndef MCP_GUARD_COMMON_H
#define MCP_GUARD_COMMON_H

/* Bumped on any incompatible change to a map below. Version 2: mg_event gained guard_id (the
 * loader still decodes version 1's 96-byte records), mg_settings.reserved became levels (a version 1
 * map holds zeros there: no levels), and the public_ports map was added (created when missing). */
#define MG_LAYOUT_VERSION 2

/* The most policy slots (model::MAX_SLOTS) and guarded cgroups per node. */
#define MG_MAX_SLOTS 256
#define MG_MAX_CGROUPS 16384
/* Public ports (wildcard binds left alone), summed over guarded cgroups. */
#define MG_MAX_PUBLIC_PORTS 16384
/* Cgroup levels at which the ancestors of the current task are looked up in guarded_cgroups. */
#define MG_MAX_LEVELS 4
/* File and exec rule entries, summed over slots (256 paths per list per policy). */
#define MG_MAX_PATH_RULES 16384
/* CIDR entries per address family, summed over slots. */
#define MG_MAX_CIDRS 32768
#define MG_MAX_PORT_RULES 8192
/* Parent directories examined above an opened file for directory ("subtree") rules. */
#define MG_MAX_DEPTH 64
#define MG_RINGBUF_BYTES (1024 * 1024)

/* mg_slot_config.flags */
#define MG_SLOT_ACTIVE (1u << 0)            /* rules installed for this slot */
#define MG_SLOT_CONFINE_LISTENERS (1u << 1) /* rewrite wildcard binds to loopback */
#define MG_SLOT_EGRESS_DEFAULT_DENY (1u << 2) /* `allow` non-empty: unmatched addresses refused */
#define MG_SLOT_FILES (1u << 3)             /* any file rule */
#define MG_SLOT_FILES_SUBTREE (1u << 4)     /* any directory (subtree) file rule */
#define MG_SLOT_EXEC (1u << 5)              /* any exec rule */
#define MG_SLOT_EXEC_SUBTREE (1u << 6)      /* any directory (subtree) exec rule */
#define MG_SLOT_DENY_PORTS (1u << 7)        /* any denied port */

/* mg_path_key values (bit set) */
#define MG_PATH_SELF (1u << 0)    /* the file or directory itself */
#define MG_PATH_SUBTREE (1u << 1) /* everything beneath the directory */

/* LPM trie values */
#define MG_CIDR_ALLOW 1u
#define MG_CIDR_DENY 2u

/* mg_settings.flags (index 0 of mg_settings) */
#define MG_SET_EVENT_ALLOWED_EGRESS (1u << 0) /* an event for every allowed non-loopback connect */

/* mg_stats indexes (per-CPU u64 counters) */
#define MG_STAT_EVENTS_DROPPED 0 /* ring buffer full: a verdict without its event */
#define MG_STAT_DEPTH_EXCEEDED 1 /* file deeper than MG_MAX_DEPTH under a subtree rule: denied */
#define MG_STAT_INACTIVE_SLOT 2  /* guarded cgroup whose slot has no rules (network fails closed) */
#define MG_STATS 4

/* mg_event.kind (model::EventKind) */
#define MG_KIND_FILE_OPEN 1
#define MG_KIND_EXEC 2
#define MG_KIND_CONNECT 3
#define MG_KIND_BIND 4

/* mg_event.verdict (model::Verdict) */
#define MG_VERDICT_DENIED 1
#define MG_VERDICT_ALLOWED 2
#define MG_VERDICT_REWRITTEN 3

/* mg_event.reason */
#define MG_REASON_RULE 0          /* a rule matched (rule_dev/rule_ino for files) */
#define MG_REASON_DEPTH 1         /* subtree walk exhausted MG_MAX_DEPTH: denied (fails closed) */
#define MG_REASON_INACTIVE_SLOT 2 /* slot has no rules: network fails closed */
#define MG_REASON_DEFAULT_DENY 3  /* address in no block while `allow` is non-empty */
#define MG_REASON_PORT 4          /* destination port in denyPorts */
#define MG_REASON_BIND_ADDR 5     /* bind to a specific non-loopback address while confined */

/* guarded_cgroups: key __u64 cgroup id, value __u32 slot. A task is guarded when its own cgroup is a
 * key, or (levels in mg_settings) its ancestor at one of the levels is: a guarded pod cgroup covers
 * every container cgroup beneath it, from the container's first instruction. */

/* mg_slot_config: ARRAY indexed by slot. */
struct mg_slot_config {
	__u32 flags;
	__u32 reserved;
};

/* mg_settings: ARRAY of one. `levels`: the cgroup levels (0 is the root, 1 its children, ...) at
 * which bpf_get_current_ancestor_cgroup_id() is looked up in guarded_cgroups when the task's own
 * cgroup is not there, in this order (the agent writes the deepest first), ended by the first 0 (all
 * 0: none, and the miss path stops there). */
struct mg_settings {
	__u32 flags;
	__u8 levels[MG_MAX_LEVELS];
};

/* mg_meta: ARRAY of one, written by the loader (which object created the pinned programs). */
struct mg_meta {
	__u64 object_hash;
	__u32 layout_version;
	__u32 reserved;
};

/* file_rules / exec_rules: HASH key (slot, kernel s_dev, inode), value MG_PATH_* bits. */
struct mg_path_key {
	__u32 slot;
	__u32 pad; /* always 0 */
	__u64 dev; /* super_block->s_dev: major << 20 | minor */
	__u64 ino;
};

/* egress_v4 / egress_v6: LPM_TRIE. prefixlen = 32 (slot) + CIDR prefix length. The slot occupies
 * the leading 32 bits so one trie holds every slot's rules; value MG_CIDR_ALLOW or MG_CIDR_DENY. */
struct mg_v4_key {
	__u32 prefixlen;
	__u32 slot;
	__u8 addr[4]; /* network byte order */
};

struct mg_v6_key {
	__u32 prefixlen;
	__u32 slot;
	__u8 addr[16]; /* network byte order */
};

/* deny_ports: HASH key (slot, port in host order), value 1. */
struct mg_port_key {
	__u32 slot;
	__u32 port;
};

/* public_ports: HASH key (guard key, port in host order), value 1. A guard key is a guarded_cgroups
 * key (in Kubernetes mode a pod cgroup): a TCP bind of a wildcard address to such a port by a task
 * guarded through that key is left as it is (the pod's public ports: the proxy's listeners). */
struct mg_public_port_key {
	__u64 cgroup_id;
	__u32 port;
	__u32 pad; /* always 0 */
};

/* One ring buffer record (`events`). */
struct mg_event {
	__u64 cgroup_id;
	__u64 dev;      /* file/exec: the opened file */
	__u64 ino;
	__u64 rule_dev; /* file/exec: the rule that matched (the file itself or an ancestor) */
	__u64 rule_ino;
	__u32 kind;     /* MG_KIND_* */
	__u32 verdict;  /* MG_VERDICT_* */
	__u32 slot;
	__u32 pid;      /* thread group id */
	__u32 reason;   /* MG_REASON_* */
	__u16 family;   /* network: 4 or 6 (0 otherwise) */
	__u16 port;     /* network: host byte order */
	__u8 addr[16];  /* network: address (v4 in the first 4 bytes), network byte order */
	char comm[16];
	__u64 guard_id; /* the guarded_cgroups key that matched: cgroup_id or its ancestor (version 2) */
};

#endif /* MCP_GUARD_COMMON_H */
