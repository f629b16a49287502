// SPDX-License-Identifier: GPL-2.0
/*
 * mcp-guard's kernel side: BPF LSM (file_open, bprm_check_security) and cgroup sock_addr programs
 * (connect4/6, bind4/6), scoped to guarded cgroups. Loaded and pinned by node-agent/src/bpf.rs.
 *
 * Every program first finds the task's guard (mg_guard_of): bpf_get_current_cgroup_id() in
 * `guarded_cgroups`, then, only when the agent configured levels (mg_settings.levels: it guards pod
 * cgroups), the task's ancestor cgroup at each level. Unguarded processes pay one hash lookup and one
 * array read when no level is configured, plus one helper call and one hash lookup per level when
 * some are. A guard maps to a policy slot; every rule map is keyed by slot. Each denial (and each
 * bind rewrite) is one `events` record.
 *
 * Failure behaviour, per program (see the comment above each):
 *   - LSM hooks fail OPEN when the slot has no rules installed (denying every open or exec would
 *     stop the guarded container from running at all), and CLOSED when a directory rule applies
 *     but the file lies deeper than MG_MAX_DEPTH directories (its ancestors cannot all be checked).
 *   - connect4/6 fail CLOSED when the slot has no rules installed (only loopback stays reachable).
 *   - bind4/6 fail CLOSED the same way: an inactive slot is treated as confineListeners.
 *   - A full ring buffer never changes a verdict: the event is counted in mg_stats and dropped.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "common.h"
#include "maps.h"

#define EPERM 1

char LICENSE[] SEC("license") = "GPL";

static __always_inline void mg_count(__u32 idx)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &idx);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* What guards the current task: its own cgroup id, the guarded_cgroups key that matched (the same
 * id, or an ancestor's) and that key's slot. */
struct mg_guard {
	__u64 cgid;
	__u64 key;
	__u32 slot;
};

/*
 * Whether the current task is guarded (1, `g` filled) or not (0). Its own cgroup first (standalone
 * mode's --cgroup directories, and container entries pinned by older agents); then, when levels are
 * configured, its ancestor at each level (Kubernetes mode's pod cgroups: a container's cgroup
 * created after its pod was guarded is covered from its first instruction). An ancestor level
 * deeper than the task's own cgroup yields id 0, never a key.
 */
static __always_inline int mg_guard_of(struct mg_guard *g)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	__u32 *slotp = bpf_map_lookup_elem(&guarded_cgroups, &cgid);
	g->cgid = cgid;
	if (slotp) {
		g->key = cgid;
		g->slot = *slotp;
		return 1;
	}
	__u32 zero = 0;
	struct mg_settings *s = bpf_map_lookup_elem(&settings, &zero);
	if (!s || !s->levels[0])
		return 0;
	for (int i = 0; i < MG_MAX_LEVELS; i++) {
		int level = s->levels[i];
		if (!level)
			return 0;
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id || id == cgid)
			continue;
		slotp = bpf_map_lookup_elem(&guarded_cgroups, &id);
		if (slotp) {
			g->key = id;
			g->slot = *slotp;
			return 1;
		}
	}
	return 0;
}

/* A zeroed event with the fields every kind has, or NULL (counted) when the ring buffer is full. */
static __always_inline struct mg_event *mg_event_new(__u32 kind, __u32 verdict, __u32 reason,
						     const struct mg_guard *g)
{
	struct mg_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		mg_count(MG_STAT_EVENTS_DROPPED);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->verdict = verdict;
	e->reason = reason;
	e->cgroup_id = g->cgid;
	e->guard_id = g->key;
	e->slot = g->slot;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/* ---- files and exec (BPF LSM) ---- */

struct mg_match {
	__u64 dev, ino, rule_dev, rule_ino;
	__u32 reason;
};

/*
 * Whether `file` is denied by `rules` for `slot`: 1 when the file itself or (with `subtree`) one of
 * its ancestors carries a rule, 2 when the ancestors could not all be checked (fails closed), 0
 * otherwise. The walk follows the dentry chain and crosses mount points (a directory rule covers
 * file systems mounted beneath it) up to the root of the caller's mount namespace.
 */
static __always_inline int mg_match_file(void *rules, __u32 slot, struct file *file, int subtree,
					 struct mg_match *m)
{
	struct mg_path_key key = { .slot = slot };
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key.ino = BPF_CORE_READ(inode, i_ino);
	m->dev = key.dev;
	m->ino = key.ino;
	if (bpf_map_lookup_elem(rules, &key)) {
		m->rule_dev = key.dev;
		m->rule_ino = key.ino;
		return 1;
	}
	if (!subtree)
		return 0;

	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	struct mount *mnt = (struct mount *)((void *)vfsmnt - bpf_core_field_offset(struct mount, mnt));

	for (int i = 0; i < MG_MAX_DEPTH; i++) {
		struct dentry *mnt_root = BPF_CORE_READ(mnt, mnt.mnt_root);
		struct dentry *next;

		if (dentry == mnt_root) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt)
				return 0; /* the root of the mount namespace: every ancestor checked */
			next = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
		} else {
			next = BPF_CORE_READ(dentry, d_parent);
			if (next == dentry)
				return 0; /* root of a detached tree */
		}
		dentry = next;
		struct inode *di = BPF_CORE_READ(dentry, d_inode);
		if (!di)
			return 0;
		key.dev = BPF_CORE_READ(di, i_sb, s_dev);
		key.ino = BPF_CORE_READ(di, i_ino);
		__u32 *v = bpf_map_lookup_elem(rules, &key);
		if (v && (*v & MG_PATH_SUBTREE)) {
			m->rule_dev = key.dev;
			m->rule_ino = key.ino;
			return 1;
		}
	}
	mg_count(MG_STAT_DEPTH_EXCEEDED);
	m->reason = MG_REASON_DEPTH;
	return 2;
}

static __always_inline int mg_file_verdict(void *rules, __u32 kind, __u32 any_flag,
					   __u32 subtree_flag, struct file *file)
{
	struct mg_guard g;
	if (!mg_guard_of(&g))
		return 0;
	__u32 slot = g.slot;
	struct mg_slot_config *cfg = bpf_map_lookup_elem(&slot_config, &slot);
	if (!cfg)
		return 0;
	__u32 flags = cfg->flags;
	if (!(flags & MG_SLOT_ACTIVE) || !(flags & any_flag))
		return 0;

	struct mg_match m = {};
	if (!mg_match_file(rules, slot, file, flags & subtree_flag, &m))
		return 0;
	struct mg_event *e = mg_event_new(kind, MG_VERDICT_DENIED, m.reason, &g);
	if (e) {
		e->dev = m.dev;
		e->ino = m.ino;
		e->rule_dev = m.rule_dev;
		e->rule_ino = m.rule_ino;
		bpf_ringbuf_submit(e, 0);
	}
	return -EPERM;
}

/* Denies opening `runtime.files.deny`. Fails open for a slot without rules; fails closed when a
 * directory rule applies and the file is deeper than MG_MAX_DEPTH. Keeps an earlier hook's denial. */
SEC("lsm/file_open")
int BPF_PROG(mg_file_open, struct file *file, int ret)
{
	if (ret != 0)
		return ret;
	return mg_file_verdict(&file_rules, MG_KIND_FILE_OPEN, MG_SLOT_FILES, MG_SLOT_FILES_SUBTREE,
			       file);
}

/* Denies executing `runtime.exec.deny` (also each interpreter a script names). Same failure
 * behaviour as mg_file_open. */
SEC("lsm/bprm_check_security")
int BPF_PROG(mg_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret != 0)
		return ret;
	struct file *file = BPF_CORE_READ(bprm, file);
	return mg_file_verdict(&exec_rules, MG_KIND_EXEC, MG_SLOT_EXEC, MG_SLOT_EXEC_SUBTREE, file);
}

/* ---- network (cgroup sock_addr; return 1 = proceed, 0 = EPERM) ---- */

static __always_inline void mg_net_event(__u32 kind, __u32 verdict, __u32 reason,
					 const struct mg_guard *g, __u16 family, const __u32 *addr,
					 __u16 port)
{
	struct mg_event *e = mg_event_new(kind, verdict, reason, g);
	if (!e)
		return;
	e->family = family;
	e->port = port;
	if (family == 4)
		__builtin_memcpy(e->addr, addr, 4);
	else
		__builtin_memcpy(e->addr, addr, 16);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int mg_is_loopback4(__u32 ip_be)
{
	return (bpf_ntohl(ip_be) >> 24) == 127;
}

static __always_inline int mg_is_v4_mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

static __always_inline int mg_is_loopback6(const __u32 *a)
{
	if (mg_is_v4_mapped(a))
		return mg_is_loopback4(a[3]);
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

/*
 * The egress verdict for a non-loopback destination (policies: EgressSpec): a denied port is
 * refused on any address; otherwise the longest matching block of the slot decides (deny wins a tie,
 * resolved by the loader, which stores one value per block); an address in no block is refused when
 * `allow` is non-empty. An inactive slot is refused (fails closed). Returns 1 = allow, 0 = deny.
 */
static __always_inline int mg_egress(__u32 slot, int v6, const __u32 *addr, __u16 port,
				     __u32 *reason)
{
	struct mg_slot_config *cfg = bpf_map_lookup_elem(&slot_config, &slot);
	if (!cfg || !(cfg->flags & MG_SLOT_ACTIVE)) {
		mg_count(MG_STAT_INACTIVE_SLOT);
		*reason = MG_REASON_INACTIVE_SLOT;
		return 0;
	}
	__u32 flags = cfg->flags;
	if (flags & MG_SLOT_DENY_PORTS) {
		struct mg_port_key pk = { .slot = slot, .port = port };
		if (bpf_map_lookup_elem(&deny_ports, &pk)) {
			*reason = MG_REASON_PORT;
			return 0;
		}
	}
	__u32 *v;
	if (v6) {
		struct mg_v6_key k = { .prefixlen = 32 + 128, .slot = slot };
		__builtin_memcpy(k.addr, addr, 16);
		v = bpf_map_lookup_elem(&egress_v6, &k);
	} else {
		struct mg_v4_key k = { .prefixlen = 32 + 32, .slot = slot };
		__builtin_memcpy(k.addr, addr, 4);
		v = bpf_map_lookup_elem(&egress_v4, &k);
	}
	if (v) {
		*reason = MG_REASON_RULE;
		return *v != MG_CIDR_DENY;
	}
	*reason = MG_REASON_DEFAULT_DENY;
	return !(flags & MG_SLOT_EGRESS_DEFAULT_DENY);
}

static __always_inline int mg_allowed_events(void)
{
	__u32 zero = 0;
	struct mg_settings *s = bpf_map_lookup_elem(&settings, &zero);
	return s && (s->flags & MG_SET_EVENT_ALLOWED_EGRESS);
}

static __always_inline int mg_connect(struct bpf_sock_addr *ctx, int v6)
{
	struct mg_guard g;
	if (!mg_guard_of(&g))
		return 1;
	__u32 slot = g.slot;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u32 addr[4] = {};
	int family = 4;
	if (v6) {
		addr[0] = ctx->user_ip6[0];
		addr[1] = ctx->user_ip6[1];
		addr[2] = ctx->user_ip6[2];
		addr[3] = ctx->user_ip6[3];
		family = 6;
		if (mg_is_loopback6(addr))
			return 1;
	} else {
		addr[0] = ctx->user_ip4;
		if (mg_is_loopback4(addr[0]))
			return 1;
	}
	__u32 reason = 0;
	int ok;
	if (v6 && mg_is_v4_mapped(addr))
		ok = mg_egress(slot, 0, &addr[3], port, &reason);
	else
		ok = mg_egress(slot, v6, addr, port, &reason);
	if (!ok)
		mg_net_event(MG_KIND_CONNECT, MG_VERDICT_DENIED, reason, &g, family, addr, port);
	else if (mg_allowed_events())
		mg_net_event(MG_KIND_CONNECT, MG_VERDICT_ALLOWED, reason, &g, family, addr, port);
	return ok;
}

/* Egress for IPv4 (TCP connect, UDP connect). Loopback always passes; fails closed for a guarded
 * cgroup whose slot has no rules. */
SEC("cgroup/connect4")
int mg_connect4(struct bpf_sock_addr *ctx)
{
	return mg_connect(ctx, 0);
}

/* Egress for IPv6; v4-mapped destinations are judged by the IPv4 rules. Fails closed like
 * mg_connect4. */
SEC("cgroup/connect6")
int mg_connect6(struct bpf_sock_addr *ctx)
{
	return mg_connect(ctx, 1);
}

/*
 * Whether the IPv6 socket being bound is IPv6-only (IPV6_V6ONLY, or net.ipv6.bindv6only when it was
 * created): such a socket cannot take a v4-mapped address (bind fails with EINVAL). bpf_getsockopt
 * does not offer IPV6_V6ONLY, so the bit is read from the socket through the BTF casts of TCP and
 * UDP sockets. Any other socket whose bind reaches cgroup/bind6 (SCTP, UDP-Lite, ...) counts as
 * IPv6-only: its `::` becomes ::1, which both kinds of socket can bind (a v4-mapped address fails on
 * an IPv6-only one). The casts and the read need CAP_PERFMON at load time (the DaemonSet grants it);
 * checked on Debian's 6.1 (tests/kernel_qemu.rs) and newer kernels.
 */
static __always_inline int mg_v6only(struct bpf_sock_addr *ctx)
{
	struct sock *sk = (struct sock *)bpf_skc_to_tcp6_sock(ctx->sk);
	if (!sk)
		sk = (struct sock *)bpf_skc_to_udp6_sock(ctx->sk);
	if (!sk)
		return 1;
	return BPF_CORE_READ_BITFIELD(sk, __sk_common.skc_ipv6only);
}

/* Whether `port` is a public port of the task's guard: a TCP listener the pod serves on every
 * address (the injected proxy's --listen and --metrics ports). Only a TCP socket qualifies: a
 * stream socket of another protocol (SCTP) binding a public port is confined like any other. (An
 * MPTCP socket binds through its first subflow, a TCP socket, which the hook sees.) */
static __always_inline int mg_public_port(struct bpf_sock_addr *ctx, const struct mg_guard *g,
					  __u16 port)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 0;
	struct mg_public_port_key k = { .cgroup_id = g->key, .port = port };
	return bpf_map_lookup_elem(&public_ports, &k) != 0;
}

/*
 * confineListeners. A wildcard bind is rewritten to loopback (event: rewritten, with the address
 * asked for), unless it is a TCP bind to one of the guard's public ports, which passes untouched; a
 * bind to loopback passes; a bind to any other address is refused (event: denied).
 * 0.0.0.0 becomes 127.0.0.1. For IPv6, `::` of a dual-stack socket (the default, and what Node's
 * listen(port) and Go's Listen(":port") bind) becomes the v4-mapped ::ffff:127.0.0.1, so the proxy's
 * connection to 127.0.0.1 reaches it (an IPv6 client on ::1 does not); `::` of an IPv6-only socket,
 * or of a socket neither TCP nor UDP, becomes ::1; ::ffff:0.0.0.0 becomes ::ffff:127.0.0.1. Datagram
 * sockets binding port 0 are clients picking an ephemeral port and pass untouched. Fails closed: a
 * slot without rules is treated as confined.
 */
static __always_inline int mg_bind(struct bpf_sock_addr *ctx, int v6)
{
	struct mg_guard g;
	if (!mg_guard_of(&g))
		return 1;
	__u32 slot = g.slot;
	struct mg_slot_config *cfg = bpf_map_lookup_elem(&slot_config, &slot);
	if (cfg && (cfg->flags & MG_SLOT_ACTIVE) && !(cfg->flags & MG_SLOT_CONFINE_LISTENERS))
		return 1;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	if (port == 0 && ctx->type != SOCK_STREAM)
		return 1;
	__u32 addr[4] = {};
	if (v6) {
		addr[0] = ctx->user_ip6[0];
		addr[1] = ctx->user_ip6[1];
		addr[2] = ctx->user_ip6[2];
		addr[3] = ctx->user_ip6[3];
		if (mg_is_loopback6(addr))
			return 1;
		int mapped = mg_is_v4_mapped(addr);
		if ((mapped || (addr[0] == 0 && addr[1] == 0 && addr[2] == 0)) && addr[3] == 0) {
			if (mg_public_port(ctx, &g, port))
				return 1;
			/* the event carries the address asked for */
			mg_net_event(MG_KIND_BIND, MG_VERDICT_REWRITTEN, MG_REASON_RULE, &g, 6, addr,
				     port);
			if (!mapped && mg_v6only(ctx)) {
				ctx->user_ip6[3] = bpf_htonl(1);
			} else {
				ctx->user_ip6[2] = bpf_htonl(0xffff);
				ctx->user_ip6[3] = bpf_htonl(0x7f000001);
			}
			return 1;
		}
		mg_net_event(MG_KIND_BIND, MG_VERDICT_DENIED, MG_REASON_BIND_ADDR, &g, 6, addr, port);
		return 0;
	}
	addr[0] = ctx->user_ip4;
	if (mg_is_loopback4(addr[0]))
		return 1;
	if (addr[0] == 0) {
		if (mg_public_port(ctx, &g, port))
			return 1;
		mg_net_event(MG_KIND_BIND, MG_VERDICT_REWRITTEN, MG_REASON_RULE, &g, 4, addr, port);
		ctx->user_ip4 = bpf_htonl(0x7f000001);
		return 1;
	}
	mg_net_event(MG_KIND_BIND, MG_VERDICT_DENIED, MG_REASON_BIND_ADDR, &g, 4, addr, port);
	return 0;
}

SEC("cgroup/bind4")
int mg_bind4(struct bpf_sock_addr *ctx)
{
	return mg_bind(ctx, 0);
}

SEC("cgroup/bind6")
int mg_bind6(struct bpf_sock_addr *ctx)
{
	return mg_bind(ctx, 1);
}
