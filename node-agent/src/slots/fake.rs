//! A recording fake [`Enforcer`] for tests of the discovery code.

use std::collections::{BTreeMap, BTreeSet};

use super::Op;
use crate::model::{EnforceError, Enforcer, Slot, SlotRules};

/// A recording fake of the kernel side. This is a legitimate fake: the real [`Enforcer`] writes BPF
/// maps and is tested against the kernel elsewhere (host and QEMU tests); here only the calls the
/// discovery code makes, and their order, are under test.
#[derive(Debug, Default)]
pub(crate) struct RecordingEnforcer {
    pub calls: Vec<Op>,
    pub guarded: BTreeMap<u64, Slot>,
    pub rules: BTreeMap<Slot, SlotRules>,
    /// Slots whose `set_rules` fails.
    pub fail_set_rules: BTreeSet<Slot>,
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
}
