//! What the agent enforces, independent of the BPF maps that hold it.
//!
//! A *slot* is a small integer naming one compiled policy on this node; rule maps are keyed by slot,
//! and `guarded_cgroups` maps a cgroup id to the slot of the policy that governs it. Kubernetes
//! discovery (pods, ConfigMaps) and standalone mode both produce these values and hand them to an
//! [`Enforcer`]; the BPF implementation writes them into the kernel.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// A policy slot (index into the per-slot rule maps).
pub type Slot = u32;

/// The most policies one node can hold at once.
pub const MAX_SLOTS: Slot = 256;

/// Cgroup levels (depths below the cgroup v2 root: 1 for its children) at which a process's
/// ancestors are looked up among the guarded cgroups when its own cgroup is not guarded. Guarding a
/// cgroup at one of these levels guards everything beneath it, including cgroups created later.
pub type Levels = BTreeSet<u32>;

/// The most [`Levels`] the kernel looks up (`MG_MAX_LEVELS`); each level is at most 255.
pub const MAX_LEVELS: usize = 4;

/// A file or directory the kernel identifies by device and inode (as the LSM hooks see them: `dev`
/// is the kernel's `s_dev` encoding, `major << 20 | minor`, not userspace `st_dev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Inode {
    pub dev: u64,
    pub ino: u64,
}

/// One denied path, resolved on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeniedInode {
    /// The path as the policy wrote it (for events and logs).
    pub path: String,
    pub inode: Inode,
    /// A directory rule: everything beneath it is denied too.
    pub subtree: bool,
}

/// Everything the kernel enforces for one policy slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotRules {
    /// `runtime.files.deny`, resolved to inodes (paths that do not exist on the node are skipped).
    pub files: Vec<DeniedInode>,
    /// `runtime.exec.deny`, resolved to inodes.
    pub exec: Vec<DeniedInode>,
    /// `runtime.network.egress.allow` (longest prefix wins; deny wins ties).
    pub egress_allow: Vec<IpNet>,
    /// `runtime.network.egress.deny`.
    pub egress_deny: Vec<IpNet>,
    /// `runtime.network.egress.denyPorts`.
    pub deny_ports: Vec<u16>,
    /// `runtime.network.confineListeners`: wildcard binds are rewritten to loopback.
    pub confine_listeners: bool,
}

/// The kernel side: implemented over BPF maps, and by a recording fake in tests of the discovery code.
pub trait Enforcer: Send {
    /// Installs or replaces the rules of `slot`.
    fn set_rules(&mut self, slot: Slot, rules: &SlotRules) -> Result<(), EnforceError>;
    /// Removes the rules of `slot` (no cgroup refers to it any more).
    fn clear_rules(&mut self, slot: Slot) -> Result<(), EnforceError>;
    /// Guards the cgroup with this id (the inode of its cgroup v2 directory) by `slot`.
    fn guard(&mut self, cgroup_id: u64, slot: Slot) -> Result<(), EnforceError>;
    /// Stops guarding a cgroup.
    fn unguard(&mut self, cgroup_id: u64) -> Result<(), EnforceError>;
    /// The cgroups currently guarded, with their slots (to reconcile after a restart).
    fn guarded(&self) -> Result<Vec<(u64, Slot)>, EnforceError>;
    /// Makes `port` a public port of the guarded cgroup `cgroup_id`: a TCP bind of a wildcard
    /// address to it, by a process guarded through that cgroup, is left as it is.
    fn open_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError>;
    /// Removes a public port.
    fn close_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError>;
    /// The public ports, as (guarded cgroup, port).
    fn public_ports(&self) -> Result<Vec<(u64, u16)>, EnforceError>;
    /// Sets the [`Levels`] (at most [`MAX_LEVELS`], each in 1..=255).
    fn set_levels(&mut self, levels: &Levels) -> Result<(), EnforceError>;
    /// The [`Levels`] in force.
    fn levels(&self) -> Result<Levels, EnforceError>;
}

/// A failure to update the kernel's state.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct EnforceError {
    pub what: String,
    pub message: String,
}

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    FileOpen,
    Exec,
    Connect,
    Bind,
}

/// The kernel's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Denied,
    Allowed,
    /// A wildcard bind rewritten to loopback.
    Rewritten,
}

/// One event from the kernel, decoded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelEvent {
    pub kind: EventKind,
    pub verdict: Verdict,
    /// The cgroup of the process.
    pub cgroup_id: u64,
    /// The guarded cgroup whose entry matched: `cgroup_id` itself, or the pod cgroup above it.
    pub guard_cgroup_id: u64,
    pub slot: Slot,
    pub pid: u32,
    pub comm: String,
    /// For file and exec events: the denied rule's path (or the inode when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<(u64, u64)>,
    /// For network events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}
