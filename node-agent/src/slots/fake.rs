//! A recording fake [`Enforcer`] for tests of the discovery code.

use std::collections::{BTreeMap, BTreeSet};

use super::Op;
use crate::model::{EnforceError, Enforcer, Levels, Slot, SlotRules};

/// A recording fake of the kernel side. This is a legitimate fake: the real [`Enforcer`] writes BPF
/// maps and is tested against the kernel elsewhere (host and QEMU tests); here only the calls the
/// discovery code makes, and their order, are under test.
#[derive(Debug, Default)]
pub(crate) struct RecordingEnforcer {
    pub calls: Vec<Op>,
    pub guarded: BTreeMap<u64, Slot>,
    pub rules: BTreeMap<Slot, SlotRules>,
    pub ports: BTreeSet<(u64, u16)>,
    pub levels: Levels,
    /// Slots whose `set_rules` fails.
    pub fail_set_rules: BTreeSet<Slot>,
    /// Cgroups whose `open_port` fails.
    pub fail_open_port: BTreeSet<u64>,
    /// `set_levels` fails.
    pub fail_set_levels: bool,
    /// Cgroups whose `guard` fails.
    pub fail_guard: BTreeSet<u64>,
}

impl RecordingEnforcer {
    fn err(what: &str) -> EnforceError {
        EnforceError {
            what: what.to_owned(),
            message: "injected failure".to_owned(),
        }
    }
}

impl Enforcer for RecordingEnforcer {
    fn set_rules(&mut self, slot: Slot, rules: &SlotRules) -> Result<(), EnforceError> {
        if self.fail_set_rules.contains(&slot) {
            return Err(Self::err("set_rules"));
        }
        self.calls.push(Op::SetRules(slot, rules.clone()));
        self.rules.insert(slot, rules.clone());
        Ok(())
    }
    fn clear_rules(&mut self, slot: Slot) -> Result<(), EnforceError> {
        self.calls.push(Op::ClearRules(slot));
        self.rules.remove(&slot);
        Ok(())
    }
    fn guard(&mut self, cgroup_id: u64, slot: Slot) -> Result<(), EnforceError> {
        if self.fail_guard.contains(&cgroup_id) {
            return Err(Self::err("guard"));
        }
        self.calls.push(Op::Guard(cgroup_id, slot));
        self.guarded.insert(cgroup_id, slot);
        Ok(())
    }
    fn unguard(&mut self, cgroup_id: u64) -> Result<(), EnforceError> {
        self.calls.push(Op::Unguard(cgroup_id));
        self.guarded.remove(&cgroup_id);
        Ok(())
    }
    fn guarded(&self) -> Result<Vec<(u64, Slot)>, EnforceError> {
        Ok(self.guarded.iter().map(|(c, s)| (*c, *s)).collect())
    }
    fn open_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError> {
        if self.fail_open_port.contains(&cgroup_id) {
            return Err(Self::err("open_port"));
        }
        self.calls.push(Op::OpenPort(cgroup_id, port));
        self.ports.insert((cgroup_id, port));
        Ok(())
    }
    fn close_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError> {
        self.calls.push(Op::ClosePort(cgroup_id, port));
        self.ports.remove(&(cgroup_id, port));
        Ok(())
    }
    fn public_ports(&self) -> Result<Vec<(u64, u16)>, EnforceError> {
        Ok(self.ports.iter().copied().collect())
    }
    fn set_levels(&mut self, levels: &Levels) -> Result<(), EnforceError> {
        if self.fail_set_levels {
            return Err(Self::err("set_levels"));
        }
        self.calls.push(Op::SetLevels(levels.clone()));
        self.levels = levels.clone();
        Ok(())
    }
    fn levels(&self) -> Result<Levels, EnforceError> {
        Ok(self.levels.clone())
    }
}
