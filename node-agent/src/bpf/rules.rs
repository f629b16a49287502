//! From [`SlotRules`] to the exact map entries of one slot: pure, so it is tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::layout::{
    CIDR_ALLOW, CIDR_DENY, PATH_SELF, PATH_SUBTREE, PathKey, PortKey, SLOT_ACTIVE,
    SLOT_CONFINE_LISTENERS, SLOT_DENY_PORTS, SLOT_EGRESS_DEFAULT_DENY, SLOT_EXEC,
    SLOT_EXEC_SUBTREE, SLOT_FILES, SLOT_FILES_SUBTREE, V4Data, V6Data,
};
use crate::model::{DeniedInode, Slot, SlotRules};

/// Everything one slot puts into the maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotEntries {
    pub flags: u32,
    pub files: BTreeMap<PathKey, u32>,
    pub exec: BTreeMap<PathKey, u32>,
    /// (LPM prefix length including the 32 slot bits, data) -> CIDR_ALLOW | CIDR_DENY.
    pub v4: BTreeMap<(u32, V4Data), u32>,
    pub v6: BTreeMap<(u32, V6Data), u32>,
    pub ports: BTreeSet<PortKey>,
}

/// The entries for `rules` in `slot`. Egress: one value per block; a block in both lists is
/// denied (deny wins a tie). Loopback needs no entry: the programs always let it through.
pub fn slot_entries(slot: Slot, rules: &SlotRules) -> SlotEntries {
    let mut e = SlotEntries {
        flags: SLOT_ACTIVE,
        files: path_entries(slot, &rules.files),
        exec: path_entries(slot, &rules.exec),
        ..SlotEntries::default()
    };
    for (list, verdict) in [
        (&rules.egress_allow, CIDR_ALLOW),
        (&rules.egress_deny, CIDR_DENY),
    ] {
        for net in list {
            let (prefix, net) = (u32::from(net.prefix_len()), net.trunc());
            match net {
                IpNet::V4(n) => {
                    let data = V4Data {
                        slot,
                        addr: n.addr().octets(),
                    };
                    e.v4.insert((32 + prefix, data), verdict);
                }
                IpNet::V6(n) => {
                    let data = V6Data {
                        slot,
                        addr: n.addr().octets(),
                    };
                    e.v6.insert((32 + prefix, data), verdict);
                }
            }
        }
    }
    e.ports = rules
        .deny_ports
        .iter()
        .map(|p| PortKey {
            slot,
            port: u32::from(*p),
        })
        .collect();
    let any_subtree = |l: &[DeniedInode]| l.iter().any(|d| d.subtree);
    for (cond, flag) in [
        (rules.confine_listeners, SLOT_CONFINE_LISTENERS),
        (!rules.egress_allow.is_empty(), SLOT_EGRESS_DEFAULT_DENY),
        (!e.files.is_empty(), SLOT_FILES),
        (any_subtree(&rules.files), SLOT_FILES_SUBTREE),
        (!e.exec.is_empty(), SLOT_EXEC),
        (any_subtree(&rules.exec), SLOT_EXEC_SUBTREE),
        (!e.ports.is_empty(), SLOT_DENY_PORTS),
    ] {
        if cond {
            e.flags |= flag;
        }
    }
    e
}

fn path_entries(slot: Slot, list: &[DeniedInode]) -> BTreeMap<PathKey, u32> {
    let mut out = BTreeMap::new();
    for d in list {
        let key = PathKey {
            slot,
            pad: 0,
            dev: d.inode.dev,
            ino: d.inode.ino,
        };
        let bits = if d.subtree {
            PATH_SELF | PATH_SUBTREE
        } else {
            PATH_SELF
        };
        *out.entry(key).or_insert(0) |= bits;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Inode;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    #[test]
    fn deny_wins_a_tie_and_prefix_includes_the_slot() {
        let rules = SlotRules {
            egress_allow: vec![net("10.96.0.10/32"), net("10.0.0.0/8")],
            egress_deny: vec![net("10.0.0.0/8"), net("fd00::/8")],
            ..SlotRules::default()
        };
        let e = slot_entries(7, &rules);
        let k = |p, a: [u8; 4]| (p, V4Data { slot: 7, addr: a });
        assert_eq!(e.v4.get(&k(64, [10, 96, 0, 10])), Some(&CIDR_ALLOW));
        assert_eq!(e.v4.get(&k(40, [10, 0, 0, 0])), Some(&CIDR_DENY));
        assert_eq!(e.v6.len(), 1);
        assert_eq!(e.v6.keys().next().map(|k| k.0), Some(40));
        assert_ne!(e.flags & SLOT_EGRESS_DEFAULT_DENY, 0);
    }

    #[test]
    fn host_bits_are_cleared() {
        let rules = SlotRules {
            egress_deny: vec![net("192.168.1.77/16")],
            ..SlotRules::default()
        };
        let e = slot_entries(0, &rules);
        let (p, d) = e.v4.keys().next().copied().expect("one entry");
        assert_eq!((p, d.addr), (48, [192, 168, 0, 0]));
        assert_eq!(e.flags & SLOT_EGRESS_DEFAULT_DENY, 0);
    }

    #[test]
    fn path_flags() {
        let d = |ino, subtree| DeniedInode {
            path: format!("/p{ino}"),
            inode: Inode { dev: 1, ino },
            subtree,
        };
        let rules = SlotRules {
            files: vec![d(1, false), d(2, true), d(2, false)],
            exec: vec![d(3, false)],
            deny_ports: vec![22],
            confine_listeners: true,
            ..SlotRules::default()
        };
        let e = slot_entries(3, &rules);
        let key = |ino| PathKey {
            slot: 3,
            pad: 0,
            dev: 1,
            ino,
        };
        assert_eq!(e.files[&key(1)], PATH_SELF);
        assert_eq!(e.files[&key(2)], PATH_SELF | PATH_SUBTREE);
        assert_eq!(e.exec[&key(3)], PATH_SELF);
        let want = SLOT_ACTIVE
            | SLOT_CONFINE_LISTENERS
            | SLOT_FILES
            | SLOT_FILES_SUBTREE
            | SLOT_EXEC
            | SLOT_DENY_PORTS;
        assert_eq!(e.flags, want);
        assert!(e.ports.contains(&PortKey { slot: 3, port: 22 }));
    }
}
