//! [`BpfEnforcer`]: the [`Enforcer`] over the (pinned) maps.
//!
//! `set_rules` never opens a gap: it writes the slot's new entries first, then its flags, and only
//! then deletes the entries the new rules no longer have, so while it runs the old and new rules
//! apply together (a deny of either holds). `clear_rules` marks the slot inactive before deleting.
//! The levels share the `settings` entry with its flags; each setter rewrites only its own part.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aya::Pod;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};

use super::events::PathIndex;
use super::layout::{
    MAX_LEVELS, PathKey, PortKey, PublicPortKey, STAT_DEPTH_EXCEEDED, STAT_EVENTS_DROPPED,
    STAT_INACTIVE_SLOT, Settings, SlotConfig, V4Data, V6Data,
};
use super::rules::slot_entries;
use crate::model::{EnforceError, Enforcer, Levels, MAX_SLOTS, Slot, SlotRules};

/// The maps the agent writes, taken from a loaded (or re-adopted) object.
pub struct BpfEnforcer {
    pub(super) guarded: HashMap<MapData, u64, u32>,
    pub(super) slots: Array<MapData, SlotConfig>,
    pub(super) files: HashMap<MapData, PathKey, u32>,
    pub(super) exec: HashMap<MapData, PathKey, u32>,
    pub(super) v4: LpmTrie<MapData, V4Data, u32>,
    pub(super) v6: LpmTrie<MapData, V6Data, u32>,
    pub(super) ports: HashMap<MapData, PortKey, u32>,
    pub(super) public: HashMap<MapData, PublicPortKey, u32>,
    pub(super) settings: Array<MapData, Settings>,
    pub(super) stats: PerCpuArray<MapData, u64>,
    pub(super) paths: PathIndex,
}

impl fmt::Debug for BpfEnforcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpfEnforcer").finish_non_exhaustive()
    }
}

/// Counters the programs keep (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BpfStats {
    /// Verdicts whose event was lost because the ring buffer was full.
    pub events_dropped: u64,
    /// Opens denied because a directory rule applied and the file lay too deep to check.
    pub depth_exceeded: u64,
    /// Connects refused because the cgroup's slot had no rules (fail closed).
    pub inactive_slot: u64,
}

fn err(what: impl Into<String>, e: impl fmt::Display) -> EnforceError {
    EnforceError {
        what: what.into(),
        message: e.to_string(),
    }
}

fn check_slot(slot: Slot) -> Result<(), EnforceError> {
    if slot >= MAX_SLOTS {
        return Err(err(
            format!("slot {slot}"),
            format!("slots are 0..{MAX_SLOTS}"),
        ));
    }
    Ok(())
}

fn not_found(e: &MapError) -> bool {
    matches!(e, MapError::KeyNotFound | MapError::ElementNotFound)
        || matches!(e, MapError::SyscallError(s) if s.io_error.kind() == std::io::ErrorKind::NotFound)
}

/// Inserts `desired`, then (with `mine`) removes the keys `mine` selects that `desired` lacks.
fn sync_hash<K: Pod + Ord, V: Pod>(
    name: &str,
    map: &mut HashMap<MapData, K, V>,
    desired: &BTreeMap<K, V>,
    mine: Option<&dyn Fn(&K) -> bool>,
) -> Result<(), EnforceError> {
    for (k, v) in desired {
        map.insert(k, v, 0)
            .map_err(|e| err(format!("{name}: insert"), e))?;
    }
    let Some(mine) = mine else {
        return Ok(());
    };
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| mine(k) && !desired.contains_key(k))
        .collect();
    for k in stale {
        match map.remove(&k) {
            Err(e) if !not_found(&e) => return Err(err(format!("{name}: remove"), e)),
            _ => {}
        }
    }
    Ok(())
}

fn sync_lpm<K: Pod + Ord>(
    name: &str,
    map: &mut LpmTrie<MapData, K, u32>,
    desired: &BTreeMap<(u32, K), u32>,
    mine: Option<&dyn Fn(&K) -> bool>,
) -> Result<(), EnforceError> {
    for ((prefix, data), v) in desired {
        map.insert(&Key::new(*prefix, *data), v, 0)
            .map_err(|e| err(format!("{name}: insert"), e))?;
    }
    let Some(mine) = mine else {
        return Ok(());
    };
    let stale: Vec<(u32, K)> = map
        .keys()
        .filter_map(Result::ok)
        .map(|k| (k.prefix_len(), k.data()))
        .filter(|(p, d)| mine(d) && !desired.contains_key(&(*p, *d)))
        .collect();
    for (p, d) in stale {
        match map.remove(&Key::new(p, d)) {
            Err(e) if !not_found(&e) => return Err(err(format!("{name}: remove"), e)),
            _ => {}
        }
    }
    Ok(())
}

impl BpfEnforcer {
    /// The slots with rules installed.
    pub fn active_slots(&self) -> Result<Vec<Slot>, EnforceError> {
        let mut out = Vec::new();
        for slot in 0..MAX_SLOTS {
            let c = self
                .slots
                .get(&slot, 0)
                .map_err(|e| err("slot_config", e))?;
            if c.flags & super::layout::SLOT_ACTIVE != 0 {
                out.push(slot);
            }
        }
        Ok(out)
    }

    /// Brings the maps to exactly this state (after a restart, or a full resync): installs every
    /// slot's rules, the public ports and the levels, guards every cgroup, then unguards the
    /// cgroups, removes the public ports and clears the slots that are not listed. Guards are
    /// changed after rules, ports and levels so that no guarded cgroup meets a slot without rules,
    /// and no public port is rewritten while it is being opened.
    pub fn reconcile(
        &mut self,
        slots: &BTreeMap<Slot, SlotRules>,
        cgroups: &BTreeMap<u64, Slot>,
        ports: &BTreeSet<(u64, u16)>,
        levels: &Levels,
    ) -> Result<(), EnforceError> {
        for (slot, rules) in slots {
            self.set_rules(*slot, rules)?;
        }
        for (id, port) in ports {
            self.open_port(*id, *port)?;
        }
        self.set_levels(levels)?;
        for (id, slot) in cgroups {
            self.guard(*id, *slot)?;
        }
        for (id, _) in self.guarded()? {
            if !cgroups.contains_key(&id) {
                self.unguard(id)?;
            }
        }
        for (id, port) in self.public_ports()? {
            if !ports.contains(&(id, port)) {
                self.close_port(id, port)?;
            }
        }
        for slot in self.active_slots()? {
            if !slots.contains_key(&slot) {
                self.clear_rules(slot)?;
            }
        }
        Ok(())
    }

    fn settings(&self) -> Result<Settings, EnforceError> {
        self.settings.get(&0, 0).map_err(|e| err("settings", e))
    }

    fn write_settings(&mut self, s: Settings) -> Result<(), EnforceError> {
        self.settings.set(0, s, 0).map_err(|e| err("settings", e))
    }

    /// Enables or disables an event for every allowed non-loopback connect of a guarded cgroup.
    pub fn set_allowed_egress_events(&mut self, on: bool) -> Result<(), EnforceError> {
        let mut s = self.settings()?;
        let flag = super::layout::SET_EVENT_ALLOWED_EGRESS;
        s.flags = if on { s.flags | flag } else { s.flags & !flag };
        self.write_settings(s)
    }

    /// The programs' counters.
    pub fn stats(&self) -> Result<BpfStats, EnforceError> {
        let sum = |i: u32| -> Result<u64, EnforceError> {
            let v = self.stats.get(&i, 0).map_err(|e| err("stats", e))?;
            Ok(v.iter().sum())
        };
        Ok(BpfStats {
            events_dropped: sum(STAT_EVENTS_DROPPED)?,
            depth_exceeded: sum(STAT_DEPTH_EXCEEDED)?,
            inactive_slot: sum(STAT_INACTIVE_SLOT)?,
        })
    }
}

impl Enforcer for BpfEnforcer {
    fn set_rules(&mut self, slot: Slot, rules: &SlotRules) -> Result<(), EnforceError> {
        check_slot(slot)?;
        let e = slot_entries(slot, rules);
        let ports: BTreeMap<PortKey, u32> = e.ports.iter().map(|k| (*k, 1)).collect();
        // 1. add the new entries (old and new apply together)
        sync_hash("file_rules", &mut self.files, &e.files, None)?;
        sync_hash("exec_rules", &mut self.exec, &e.exec, None)?;
        sync_lpm("egress_v4", &mut self.v4, &e.v4, None)?;
        sync_lpm("egress_v6", &mut self.v6, &e.v6, None)?;
        sync_hash("deny_ports", &mut self.ports, &ports, None)?;
        // 2. switch the flags
        let cfg = SlotConfig {
            flags: e.flags,
            reserved: 0,
        };
        self.slots
            .set(slot, cfg, 0)
            .map_err(|er| err("slot_config", er))?;
        // 3. drop what the new rules no longer have
        sync_hash(
            "file_rules",
            &mut self.files,
            &e.files,
            Some(&|k: &_| k.slot == slot),
        )?;
        sync_hash(
            "exec_rules",
            &mut self.exec,
            &e.exec,
            Some(&|k: &_| k.slot == slot),
        )?;
        sync_lpm(
            "egress_v4",
            &mut self.v4,
            &e.v4,
            Some(&|d: &_| d.slot == slot),
        )?;
        sync_lpm(
            "egress_v6",
            &mut self.v6,
            &e.v6,
            Some(&|d: &_| d.slot == slot),
        )?;
        sync_hash(
            "deny_ports",
            &mut self.ports,
            &ports,
            Some(&|k: &_| k.slot == slot),
        )?;
        self.paths.set_slot(slot, rules);
        Ok(())
    }

    fn clear_rules(&mut self, slot: Slot) -> Result<(), EnforceError> {
        check_slot(slot)?;
        self.slots
            .set(slot, SlotConfig::default(), 0)
            .map_err(|e| err("slot_config", e))?;
        let (none_p, none_k, none_4, none_6) = (
            BTreeMap::<PathKey, u32>::new(),
            BTreeMap::<PortKey, u32>::new(),
            BTreeMap::new(),
            BTreeMap::new(),
        );
        sync_hash(
            "file_rules",
            &mut self.files,
            &none_p,
            Some(&|k: &_| k.slot == slot),
        )?;
        sync_hash(
            "exec_rules",
            &mut self.exec,
            &none_p,
            Some(&|k: &_| k.slot == slot),
        )?;
        sync_lpm(
            "egress_v4",
            &mut self.v4,
            &none_4,
            Some(&|d: &_| d.slot == slot),
        )?;
        sync_lpm(
            "egress_v6",
            &mut self.v6,
            &none_6,
            Some(&|d: &_| d.slot == slot),
        )?;
        sync_hash(
            "deny_ports",
            &mut self.ports,
            &none_k,
            Some(&|k: &_| k.slot == slot),
        )?;
        self.paths.set_slot(slot, &SlotRules::default());
        Ok(())
    }

    fn guard(&mut self, cgroup_id: u64, slot: Slot) -> Result<(), EnforceError> {
        check_slot(slot)?;
        self.guarded
            .insert(cgroup_id, slot, 0)
            .map_err(|e| err(format!("guard cgroup {cgroup_id}"), e))
    }

    fn unguard(&mut self, cgroup_id: u64) -> Result<(), EnforceError> {
        match self.guarded.remove(&cgroup_id) {
            Err(e) if !not_found(&e) => Err(err(format!("unguard cgroup {cgroup_id}"), e)),
            _ => Ok(()),
        }
    }

    fn guarded(&self) -> Result<Vec<(u64, Slot)>, EnforceError> {
        let mut out: BTreeSet<(u64, Slot)> = BTreeSet::new();
        for kv in self.guarded.iter() {
            out.insert(kv.map_err(|e| err("guarded_cgroups", e))?);
        }
        Ok(out.into_iter().collect())
    }

    fn open_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError> {
        self.public
            .insert(public_key(cgroup_id, port), 1, 0)
            .map_err(|e| err(format!("public port {port} of cgroup {cgroup_id}"), e))
    }

    fn close_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError> {
        match self.public.remove(&public_key(cgroup_id, port)) {
            Err(e) if !not_found(&e) => Err(err(
                format!("remove public port {port} of cgroup {cgroup_id}"),
                e,
            )),
            _ => Ok(()),
        }
    }

    fn public_ports(&self) -> Result<Vec<(u64, u16)>, EnforceError> {
        let mut out: BTreeSet<(u64, u16)> = BTreeSet::new();
        for k in self.public.keys() {
            let k = k.map_err(|e| err("public_ports", e))?;
            // Keys this build did not write (other ports or padding) are dropped by reconcile.
            out.insert((k.cgroup_id, u16::try_from(k.port).unwrap_or(0)));
        }
        Ok(out.into_iter().collect())
    }

    fn set_levels(&mut self, levels: &Levels) -> Result<(), EnforceError> {
        let mut s = self.settings()?;
        s.levels = encode_levels(levels)?;
        self.write_settings(s)
    }

    fn levels(&self) -> Result<Levels, EnforceError> {
        let s = self.settings()?;
        Ok(s.levels
            .iter()
            .take_while(|l| **l != 0)
            .map(|l| u32::from(*l))
            .collect())
    }
}

fn public_key(cgroup_id: u64, port: u16) -> PublicPortKey {
    PublicPortKey {
        cgroup_id,
        port: u32::from(port),
        pad: 0,
    }
}

/// `mg_settings.levels`: the levels, deepest first (a Burstable or BestEffort pod's, the usual
/// guarded pod, before a Guaranteed pod's: a hit through it takes one lookup), then zeros.
fn encode_levels(levels: &Levels) -> Result<[u8; MAX_LEVELS], EnforceError> {
    if levels.len() > MAX_LEVELS {
        return Err(err(
            "levels",
            format!("{levels:?}: the kernel looks up at most {MAX_LEVELS}"),
        ));
    }
    let mut out = [0u8; MAX_LEVELS];
    for (slot, level) in out.iter_mut().zip(levels.iter().rev()) {
        *slot = u8::try_from(*level)
            .ok()
            .filter(|l| *l != 0)
            .ok_or_else(|| err("levels", format!("level {level} is not in 1..=255")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_encode_in_order_then_zeros() {
        assert_eq!(encode_levels(&Levels::new()).unwrap_or_default(), [0; 4]);
        let levels = Levels::from([2, 3]);
        assert_eq!(encode_levels(&levels).unwrap_or_default(), [3, 2, 0, 0]);
        assert!(encode_levels(&Levels::from([1, 2, 3, 4, 5])).is_err());
        assert!(encode_levels(&Levels::from([0])).is_err());
        assert!(encode_levels(&Levels::from([256])).is_err());
    }
}
