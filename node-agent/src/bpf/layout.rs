//! The Rust twins of `ebpf/common.h`: map names, key and value layouts, flags and event codes.
//!
//! Each struct is `#[repr(C)]` with explicit padding fields, so its size equals the C struct's;
//! [`MAP_SPECS`] records the sizes the loader checks every map against (created or re-adopted).

use aya::Pod;

/// `MG_LAYOUT_VERSION`: bumped with any incompatible map change.
pub const LAYOUT_VERSION: u32 = 2;

/// `MG_MAX_LEVELS`: cgroup levels at which a task's ancestors are looked up.
pub const MAX_LEVELS: usize = 4;

pub const SLOT_ACTIVE: u32 = 1 << 0;
pub const SLOT_CONFINE_LISTENERS: u32 = 1 << 1;
pub const SLOT_EGRESS_DEFAULT_DENY: u32 = 1 << 2;
pub const SLOT_FILES: u32 = 1 << 3;
pub const SLOT_FILES_SUBTREE: u32 = 1 << 4;
pub const SLOT_EXEC: u32 = 1 << 5;
pub const SLOT_EXEC_SUBTREE: u32 = 1 << 6;
pub const SLOT_DENY_PORTS: u32 = 1 << 7;

pub const PATH_SELF: u32 = 1 << 0;
pub const PATH_SUBTREE: u32 = 1 << 1;

pub const CIDR_ALLOW: u32 = 1;
pub const CIDR_DENY: u32 = 2;

/// `MG_SET_EVENT_ALLOWED_EGRESS`.
pub const SET_EVENT_ALLOWED_EGRESS: u32 = 1 << 0;

pub const STAT_EVENTS_DROPPED: u32 = 0;
pub const STAT_DEPTH_EXCEEDED: u32 = 1;
pub const STAT_INACTIVE_SLOT: u32 = 2;

pub const KIND_FILE_OPEN: u32 = 1;
pub const KIND_EXEC: u32 = 2;
pub const KIND_CONNECT: u32 = 3;
pub const KIND_BIND: u32 = 4;

pub const VERDICT_DENIED: u32 = 1;
pub const VERDICT_ALLOWED: u32 = 2;
pub const VERDICT_REWRITTEN: u32 = 3;

pub const REASON_DEPTH: u32 = 1;

/// `MG_MAX_DEPTH`: parent directories examined for directory rules.
pub const MAX_DEPTH: u32 = 64;

/// Map names in the object (and file names under `<pin dir>/maps`).
pub const GUARDED_CGROUPS: &str = "guarded_cgroups";
pub const SLOT_CONFIG: &str = "slot_config";
pub const FILE_RULES: &str = "file_rules";
pub const EXEC_RULES: &str = "exec_rules";
pub const EGRESS_V4: &str = "egress_v4";
pub const EGRESS_V6: &str = "egress_v6";
pub const DENY_PORTS: &str = "deny_ports";
pub const PUBLIC_PORTS: &str = "public_ports";
pub const SETTINGS: &str = "settings";
pub const META: &str = "meta";
pub const STATS: &str = "stats";
pub const EVENTS: &str = "events";

/// One map as the object defines it: name, key size, value size, max entries (0: not checked).
#[derive(Clone, Copy, Debug)]
pub struct MapSpec {
    pub name: &'static str,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

const fn spec<K, V>(name: &'static str, max_entries: u32) -> MapSpec {
    MapSpec {
        name,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
    }
}

/// Every map of `mcp_guard.bpf.o`, with the layout this build expects.
pub const MAP_SPECS: [MapSpec; 12] = [
    spec::<u64, u32>(GUARDED_CGROUPS, 16384),
    spec::<u32, SlotConfig>(SLOT_CONFIG, 256),
    spec::<PathKey, u32>(FILE_RULES, 16384),
    spec::<PathKey, u32>(EXEC_RULES, 16384),
    spec::<aya::maps::lpm_trie::Key<V4Data>, u32>(EGRESS_V4, 32768),
    spec::<aya::maps::lpm_trie::Key<V6Data>, u32>(EGRESS_V6, 32768),
    spec::<PortKey, u32>(DENY_PORTS, 8192),
    spec::<PublicPortKey, u32>(PUBLIC_PORTS, 16384),
    spec::<u32, Settings>(SETTINGS, 1),
    spec::<u32, Meta>(META, 1),
    spec::<u32, u64>(STATS, 4),
    // A ring buffer has no key or value; max_entries is its size in bytes.
    MapSpec {
        name: EVENTS,
        key_size: 0,
        value_size: 0,
        max_entries: 1024 * 1024,
    },
];

/// `struct mg_slot_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotConfig {
    pub flags: u32,
    pub reserved: u32,
}

/// `struct mg_settings`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub flags: u32,
    /// Cgroup levels at which a task's ancestors are looked up, ended by the first 0.
    pub levels: [u8; MAX_LEVELS],
}

/// `struct mg_meta`: which object created the pinned programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub object_hash: u64,
    pub layout_version: u32,
    pub reserved: u32,
}

/// `struct mg_path_key`: (slot, kernel `s_dev`, inode).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathKey {
    pub slot: u32,
    pub pad: u32,
    pub dev: u64,
    pub ino: u64,
}

/// The data of `struct mg_v4_key` after its prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct V4Data {
    pub slot: u32,
    pub addr: [u8; 4],
}

/// The data of `struct mg_v6_key` after its prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct V6Data {
    pub slot: u32,
    pub addr: [u8; 16],
}

/// `struct mg_port_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub slot: u32,
    pub port: u32,
}

/// `struct mg_public_port_key`: (guard key, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicPortKey {
    pub cgroup_id: u64,
    pub port: u32,
    pub pad: u32,
}

/// `struct mg_event`: one ring buffer record (read with `read_unaligned`, never referenced in place).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEvent {
    pub cgroup_id: u64,
    pub dev: u64,
    pub ino: u64,
    pub rule_dev: u64,
    pub rule_ino: u64,
    pub kind: u32,
    pub verdict: u32,
    pub slot: u32,
    pub pid: u32,
    pub reason: u32,
    pub family: u16,
    pub port: u16,
    pub addr: [u8; 16],
    pub comm: [u8; 16],
    /// The `guarded_cgroups` key that matched: `cgroup_id`, or an ancestor of it.
    pub guard_id: u64,
}

// SAFETY (all impls below): each type is `#[repr(C)]`, `Copy`, made only of integers and byte
// arrays with explicit padding fields (no implicit padding, no pointers), so every bit pattern is a
// valid value and the bytes aya copies to and from the kernel are exactly the C struct's.
#[allow(unsafe_code)]
unsafe impl Pod for SlotConfig {}
#[allow(unsafe_code)]
unsafe impl Pod for Settings {}
#[allow(unsafe_code)]
unsafe impl Pod for Meta {}
#[allow(unsafe_code)]
unsafe impl Pod for PathKey {}
#[allow(unsafe_code)]
unsafe impl Pod for V4Data {}
#[allow(unsafe_code)]
unsafe impl Pod for V6Data {}
#[allow(unsafe_code)]
unsafe impl Pod for PortKey {}
#[allow(unsafe_code)]
unsafe impl Pod for PublicPortKey {}

/// FNV-1a over the object's bytes: tells whether pinned programs came from this build's object.
pub fn object_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_common_h() {
        assert_eq!(size_of::<SlotConfig>(), 8);
        assert_eq!(size_of::<PathKey>(), 24);
        assert_eq!(size_of::<aya::maps::lpm_trie::Key<V4Data>>(), 12);
        assert_eq!(size_of::<aya::maps::lpm_trie::Key<V6Data>>(), 24);
        assert_eq!(size_of::<PortKey>(), 8);
        assert_eq!(size_of::<Meta>(), 16);
        assert_eq!(size_of::<Settings>(), 8);
        assert_eq!(size_of::<PublicPortKey>(), 16);
        assert_eq!(size_of::<RawEvent>(), 104);
    }
}
