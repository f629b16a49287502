//! Policy slots and the desired-state reconciler.
//!
//! Each policy in use on the node (namespace/name) holds one [`Slot`] while at least one pod refers
//! to it; freed slots are reused, lowest first. The [`Reconciler`] moves the kernel from what it
//! holds ([`Current`]: guarded cgroups, public ports, levels; and the rules this process installed)
//! to a [`Desired`] state with the fewest calls, ordered so that no process is ever governed by the
//! wrong rules and no pod's public port is confined:
//!
//! 1. set the levels (before any guard that needs them);
//! 2. unguard cgroups that are no longer wanted;
//! 3. close public ports no longer wanted, open new ones (before their cgroup is guarded);
//! 4. install rules that are new or changed (a reused slot gets its new rules here);
//! 5. guard cgroups that are new or move to another slot (after their slot's rules are in place);
//! 6. unguard the entries the new guards replace ([`Desired::retire`]), then close their ports;
//! 7. clear the rules of slots no cgroup uses any more.
//!
//! Every failed call is reported and left for the next reconcile to retry. What depends on a failed
//! call is not made either (and is retried with it): a cgroup whose slot's rules could not be
//! installed, or whose level ([`Desired::relies_on`]) could not be set, is not guarded, and an entry
//! is retired only once the guard replacing it is in place with its level set. A public port that
//! cannot be opened does not hold its cgroup back: the cgroup is guarded (its wildcard binds to
//! that port are confined, which fails closed) and the port is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::{EnforceError, Enforcer, Levels, MAX_SLOTS, Slot, SlotRules};

/// A policy: the namespace and name of its `McpGuardPolicy` (and ConfigMap).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl PolicyRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Every slot is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("all {max} policy slots are in use; {policy} cannot be enforced on this node")]
pub struct SlotsExhausted {
    pub policy: String,
    pub max: Slot,
}

/// Hands out slots to policies.
#[derive(Debug, Clone)]
pub struct SlotAllocator {
    slots: BTreeMap<PolicyRef, Slot>,
    taken: BTreeSet<Slot>,
    max: Slot,
}

impl Default for SlotAllocator {
    fn default() -> Self {
        Self::with_capacity(MAX_SLOTS)
    }
}

impl SlotAllocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An allocator of slots `0..max`.
    pub fn with_capacity(max: Slot) -> Self {
        Self {
            slots: BTreeMap::new(),
            taken: BTreeSet::new(),
            max,
        }
    }

    pub fn get(&self, policy: &PolicyRef) -> Option<Slot> {
        self.slots.get(policy).copied()
    }

    /// The policy's slot, allocating one if it has none: `hint` when it is free (the slot its
    /// cgroups already carry in the kernel, e.g. after a restart), else the lowest free slot.
    pub fn allocate(
        &mut self,
        policy: &PolicyRef,
        hint: Option<Slot>,
    ) -> Result<Slot, SlotsExhausted> {
        if let Some(slot) = self.get(policy) {
            return Ok(slot);
        }
        let slot = hint
            .filter(|h| *h < self.max && !self.taken.contains(h))
            .or_else(|| (0..self.max).find(|s| !self.taken.contains(s)))
            .ok_or_else(|| SlotsExhausted {
                policy: policy.to_string(),
                max: self.max,
            })?;
        self.taken.insert(slot);
        self.slots.insert(policy.clone(), slot);
        Ok(slot)
    }

    /// Frees the policy's slot for reuse.
    pub fn release(&mut self, policy: &PolicyRef) -> Option<Slot> {
        let slot = self.slots.remove(policy)?;
        self.taken.remove(&slot);
        Some(slot)
    }

    /// Frees the slots of every policy `keep` rejects.
    pub fn retain(&mut self, mut keep: impl FnMut(&PolicyRef) -> bool) {
        let gone: Vec<PolicyRef> = self.slots.keys().filter(|p| !keep(p)).cloned().collect();
        for p in gone {
            self.release(&p);
        }
    }

    /// The policies holding a slot.
    pub fn iter(&self) -> impl Iterator<Item = (&PolicyRef, Slot)> {
        self.slots.iter().map(|(p, s)| (p, *s))
    }
}

/// What the kernel should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Guarded cgroups and their slots.
    pub cgroups: BTreeMap<u64, Slot>,
    /// The rules of every slot a guarded cgroup uses.
    pub rules: BTreeMap<Slot, SlotRules>,
    /// Cgroups to leave exactly as they are (their policy is not loaded yet, e.g. just after a
    /// restart): neither unguarded nor moved, and their slots are not cleared.
    pub keep: BTreeSet<u64>,
    /// Guarded entries to unguard only once the cgroup replacing them is guarded: entry → its
    /// replacement, a cgroup above it with the same slot (container cgroups an older agent guarded,
    /// now covered by their pod's), so the processes in them are never unguarded in between.
    pub retire: BTreeMap<u64, u64>,
    /// Public ports: (guarded cgroup, port).
    pub ports: BTreeSet<(u64, u16)>,
    /// The cgroup levels at which processes' ancestors are looked up.
    pub levels: Levels,
    /// Guarded cgroups that cover what lies beneath them only through a level of `levels` (pod
    /// cgroups: their processes live in the containers' cgroups below), with that level. They are
    /// not guarded while the level cannot be set.
    pub relies_on: BTreeMap<u64, u32>,
}

/// What the kernel holds, as far as the [`Reconciler`] compares it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Current {
    pub cgroups: BTreeMap<u64, Slot>,
    pub ports: BTreeSet<(u64, u16)>,
    pub levels: Levels,
}

impl Current {
    /// Reads it from the enforcer.
    pub fn read<E: Enforcer + ?Sized>(enforcer: &E) -> Result<Self, EnforceError> {
        Ok(Self {
            cgroups: enforcer.guarded()?.into_iter().collect(),
            ports: enforcer.public_ports()?.into_iter().collect(),
            levels: enforcer.levels()?,
        })
    }
}

/// One call to the [`Enforcer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    SetLevels(Levels),
    Unguard(u64),
    ClosePort(u64, u16),
    OpenPort(u64, u16),
    SetRules(Slot, SlotRules),
    Guard(u64, Slot),
    /// Unguards a [`Desired::retire`] entry (after the guards).
    Retire(u64),
    ClearRules(Slot),
}

impl Op {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Op::SetLevels(_) => "set_levels",
            Op::Unguard(_) | Op::Retire(_) => "unguard",
            Op::ClosePort(..) => "close_port",
            Op::OpenPort(..) => "open_port",
            Op::SetRules(..) => "set_rules",
            Op::Guard(..) => "guard",
            Op::ClearRules(_) => "clear_rules",
        }
    }
}

/// The calls that move the kernel from `current` and `installed` (the rules this process wrote)
/// to `desired`, in a safe order: levels (before any guard that needs them; a level dropped only
/// served cgroups unguarded in the same pass), unguards, public ports (opened before the cgroup
/// they belong to is guarded), rules, guards, retired entries and then their ports, and last the
/// rules of slots no cgroup uses.
pub fn plan(
    current: &Current,
    installed: &BTreeMap<Slot, SlotRules>,
    desired: &Desired,
) -> Vec<Op> {
    let mut ops = Vec::new();
    if current.levels != desired.levels {
        ops.push(Op::SetLevels(desired.levels.clone()));
    }
    let wanted = |cg: &u64| {
        desired.cgroups.contains_key(cg)
            || desired.keep.contains(cg)
            || desired.retire.contains_key(cg)
    };
    for &cg in current.cgroups.keys() {
        if !wanted(&cg) {
            ops.push(Op::Unguard(cg));
        }
    }
    // A retired entry keeps its ports until it is unguarded (its processes match it first).
    let (closed_late, closed_now): (Vec<_>, Vec<_>) = current
        .ports
        .difference(&desired.ports)
        .partition(|(cg, _)| desired.retire.contains_key(cg));
    for &(cg, port) in closed_now {
        ops.push(Op::ClosePort(cg, port));
    }
    for &(cg, port) in desired.ports.difference(&current.ports) {
        ops.push(Op::OpenPort(cg, port));
    }
    for (&slot, rules) in &desired.rules {
        if installed.get(&slot) != Some(rules) {
            ops.push(Op::SetRules(slot, rules.clone()));
        }
    }
    for (&cg, &slot) in &desired.cgroups {
        if current.cgroups.get(&cg) != Some(&slot) && !desired.keep.contains(&cg) {
            ops.push(Op::Guard(cg, slot));
        }
    }
    for &cg in desired.retire.keys() {
        if current.cgroups.contains_key(&cg)
            && !desired.cgroups.contains_key(&cg)
            && !desired.keep.contains(&cg)
        {
            ops.push(Op::Retire(cg));
        }
    }
    for &(cg, port) in closed_late {
        ops.push(Op::ClosePort(cg, port));
    }
    let kept: BTreeSet<Slot> = desired
        .keep
        .iter()
        .filter_map(|cg| current.cgroups.get(cg).copied())
        .collect();
    let stale: BTreeSet<Slot> = installed
        .keys()
        .copied()
        .chain(current.cgroups.values().copied())
        .filter(|s| !desired.rules.contains_key(s) && !kept.contains(s))
        .collect();
    ops.extend(stale.into_iter().map(Op::ClearRules));
    ops
}

/// A call that failed.
#[derive(Debug)]
pub struct Failure {
    /// The call, or `None` when reading the kernel's state failed.
    pub op: Option<Op>,
    pub error: EnforceError,
}

impl Failure {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        self.op.as_ref().map_or("read_guarded", Op::label)
    }
}

/// What one reconcile did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Calls that succeeded.
    pub applied: Vec<Op>,
    pub failures: Vec<Failure>,
    /// Calls not made because a call they depend on failed (retried with it).
    pub deferred: Vec<Op>,
    /// Cgroups guarded once the calls are done (`None` when they could not be read).
    pub guarded: Option<usize>,
}

/// Keeps an [`Enforcer`] in step with a desired state. Remembers the rules it installed, since the
/// enforcer only reports the guarded cgroups (after a restart, every slot's rules are written once).
#[derive(Debug, Default)]
pub struct Reconciler {
    installed: BTreeMap<Slot, SlotRules>,
}

impl Reconciler {
    pub fn new() -> Self {
        Self::default()
    }

    /// The slots whose rules this process installed.
    pub fn installed(&self) -> &BTreeMap<Slot, SlotRules> {
        &self.installed
    }

    /// The cgroups the enforcer guards now.
    pub fn current<E: Enforcer + ?Sized>(
        enforcer: &E,
    ) -> Result<BTreeMap<u64, Slot>, EnforceError> {
        Ok(enforcer.guarded()?.into_iter().collect())
    }

    /// Applies the plan from the enforcer's current state to `desired`. A cgroup is not guarded
    /// while its slot's rules could not be written (its processes would run under no rules) or the
    /// level it relies on could not be set; an entry it retires then stays. A public port that
    /// could not be opened does not keep its cgroup unguarded.
    pub fn reconcile<E: Enforcer + ?Sized>(
        &mut self,
        enforcer: &mut E,
        desired: &Desired,
    ) -> Outcome {
        let mut current = match Current::read(enforcer) {
            Ok(c) => c,
            Err(error) => {
                return Outcome {
                    failures: vec![Failure { op: None, error }],
                    ..Outcome::default()
                };
            }
        };
        let mut outcome = Outcome::default();
        let mut unusable: BTreeSet<Slot> = BTreeSet::new();
        for op in plan(&current, &self.installed, desired) {
            let levels_set = |cg: &u64, levels: &Levels| {
                desired.relies_on.get(cg).is_none_or(|l| levels.contains(l))
            };
            let result = match &op {
                Op::SetLevels(levels) => enforcer.set_levels(levels).map(|()| {
                    current.levels = levels.clone();
                }),
                Op::Unguard(cg) => enforcer.unguard(*cg).map(|()| {
                    current.cgroups.remove(cg);
                }),
                Op::ClosePort(cg, _)
                    if desired.retire.contains_key(cg) && current.cgroups.contains_key(cg) =>
                {
                    outcome.deferred.push(op);
                    continue;
                }
                Op::ClosePort(cg, port) => enforcer.close_port(*cg, *port),
                Op::OpenPort(cg, port) => enforcer.open_port(*cg, *port),
                Op::SetRules(slot, rules) => match enforcer.set_rules(*slot, rules) {
                    Ok(()) => {
                        self.installed.insert(*slot, rules.clone());
                        Ok(())
                    }
                    Err(e) => {
                        unusable.insert(*slot);
                        Err(e)
                    }
                },
                Op::Guard(cg, slot)
                    if unusable.contains(slot) || !levels_set(cg, &current.levels) =>
                {
                    outcome.deferred.push(op);
                    continue;
                }
                Op::Guard(cg, slot) => enforcer.guard(*cg, *slot).map(|()| {
                    current.cgroups.insert(*cg, *slot);
                }),
                Op::Retire(cg) => {
                    let replaced = desired.retire.get(cg).is_some_and(|by| {
                        current.cgroups.get(by) == current.cgroups.get(cg)
                            && levels_set(by, &current.levels)
                    });
                    if !replaced {
                        outcome.deferred.push(op);
                        continue;
                    }
                    enforcer.unguard(*cg).map(|()| {
                        current.cgroups.remove(cg);
                    })
                }
                Op::ClearRules(slot) => enforcer.clear_rules(*slot).map(|()| {
                    self.installed.remove(slot);
                }),
            };
            match result {
                Ok(()) => outcome.applied.push(op),
                Err(error) => outcome.failures.push(Failure {
                    op: Some(op),
                    error,
                }),
            }
        }
        outcome.guarded = Some(current.cgroups.len());
        outcome
    }
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
