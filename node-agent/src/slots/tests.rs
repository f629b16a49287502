#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use super::fake::RecordingEnforcer;
use super::*;
use crate::model::{Levels, Slot, SlotRules};

fn rules(port: u16) -> SlotRules {
    SlotRules {
        deny_ports: vec![port],
        ..SlotRules::default()
    }
}

fn desired(cgroups: &[(u64, Slot)], slot_rules: &[(Slot, SlotRules)]) -> Desired {
    Desired {
        cgroups: cgroups.iter().copied().collect(),
        rules: slot_rules.iter().cloned().collect(),
        ..Desired::default()
    }
}

#[test]
fn slots_are_allocated_lowest_first_reused_and_bounded() {
    let (a, b, c) = (
        PolicyRef::new("ns", "a"),
        PolicyRef::new("ns", "b"),
        PolicyRef::new("other", "a"),
    );
    let mut slots = SlotAllocator::with_capacity(2);
    assert_eq!(slots.allocate(&a, None).unwrap(), 0);
    assert_eq!(slots.allocate(&b, None).unwrap(), 1);
    assert_eq!(slots.allocate(&a, Some(1)).unwrap(), 0, "a keeps its slot");
    let err = slots.allocate(&c, None).unwrap_err();
    assert_eq!(err.max, 2);
    assert!(err.to_string().contains("other/a"), "{err}");
    assert_eq!(slots.release(&a), Some(0));
    assert_eq!(
        slots.allocate(&c, None).unwrap(),
        0,
        "a freed slot is reused"
    );
    slots.retain(|p| p.namespace == "ns");
    assert_eq!(slots.iter().collect::<Vec<_>>(), vec![(&b, 1)]);
}

#[test]
fn a_free_hint_is_honoured() {
    let mut slots = SlotAllocator::new();
    let (a, b) = (PolicyRef::new("ns", "a"), PolicyRef::new("ns", "b"));
    assert_eq!(slots.allocate(&a, Some(7)).unwrap(), 7);
    assert_eq!(slots.allocate(&b, Some(7)).unwrap(), 0, "taken hint");
    let mut small = SlotAllocator::with_capacity(4);
    assert_eq!(small.allocate(&a, Some(9)).unwrap(), 0, "out-of-range hint");
}

#[test]
fn from_empty_rules_come_before_guards() {
    let mut kernel = RecordingEnforcer::default();
    let mut rec = Reconciler::new();
    let want = desired(
        &[(100, 0), (101, 0), (200, 1)],
        &[(0, rules(25)), (1, rules(80))],
    );
    let out = rec.reconcile(&mut kernel, &want);
    assert!(out.failures.is_empty());
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetRules(0, rules(25)),
            Op::SetRules(1, rules(80)),
            Op::Guard(100, 0),
            Op::Guard(101, 0),
            Op::Guard(200, 1),
        ]
    );
    assert_eq!(out.guarded, Some(3));

    kernel.calls.clear();
    let out = rec.reconcile(&mut kernel, &want);
    assert!(kernel.calls.is_empty(), "in step: no calls");
    assert!(out.applied.is_empty());
}

#[test]
fn pods_going_and_policies_changing_make_minimal_calls() {
    let mut kernel = RecordingEnforcer::default();
    let mut rec = Reconciler::new();
    rec.reconcile(
        &mut kernel,
        &desired(
            &[(100, 0), (101, 0), (200, 1)],
            &[(0, rules(25)), (1, rules(80))],
        ),
    );
    kernel.calls.clear();

    // Pod 101 went away; policy 0's ConfigMap changed.
    rec.reconcile(
        &mut kernel,
        &desired(&[(100, 0), (200, 1)], &[(0, rules(26)), (1, rules(80))]),
    );
    assert_eq!(
        kernel.calls,
        vec![Op::Unguard(101), Op::SetRules(0, rules(26))]
    );
    kernel.calls.clear();

    // Every pod of policy 1 went: its cgroup is unguarded, then its rules cleared.
    rec.reconcile(&mut kernel, &desired(&[(100, 0)], &[(0, rules(26))]));
    assert_eq!(kernel.calls, vec![Op::Unguard(200), Op::ClearRules(1)]);
    assert_eq!(kernel.rules.keys().copied().collect::<Vec<_>>(), vec![0]);
}

#[test]
fn a_reused_slot_gets_its_new_rules_before_new_cgroups_join_it() {
    let mut kernel = RecordingEnforcer::default();
    let mut rec = Reconciler::new();
    rec.reconcile(&mut kernel, &desired(&[(100, 0)], &[(0, rules(25))]));
    kernel.calls.clear();
    // Policy A (slot 0) went; policy B was given the freed slot 0.
    rec.reconcile(&mut kernel, &desired(&[(300, 0)], &[(0, rules(443))]));
    assert_eq!(
        kernel.calls,
        vec![
            Op::Unguard(100),
            Op::SetRules(0, rules(443)),
            Op::Guard(300, 0)
        ]
    );
}

#[test]
fn after_a_restart_pinned_state_is_adopted_and_stale_entries_removed() {
    // The previous agent left cgroups 100 (slot 3) and 999 (slot 5, its pod is gone) guarded.
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(100, 3), (999, 5)]),
        rules: BTreeMap::from([(3, rules(25)), (5, rules(1))]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    rec.reconcile(&mut kernel, &desired(&[(100, 3)], &[(3, rules(25))]));
    assert_eq!(
        kernel.calls,
        vec![
            Op::Unguard(999),
            Op::SetRules(3, rules(25)),
            Op::ClearRules(5)
        ],
        "cgroup 100 stays guarded throughout; its slot's rules are rewritten once"
    );
}

#[test]
fn cgroups_whose_policy_is_pending_are_kept() {
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(100, 3), (200, 4)]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let mut want = desired(&[], &[]);
    want.keep.insert(100);
    rec.reconcile(&mut kernel, &want);
    assert_eq!(kernel.calls, vec![Op::Unguard(200), Op::ClearRules(4)]);
    assert_eq!(kernel.guarded, BTreeMap::from([(100, 3)]));
}

#[test]
fn a_failed_rules_update_keeps_cgroups_out_and_is_retried() {
    let mut kernel = RecordingEnforcer {
        fail_set_rules: BTreeSet::from([1]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let want = desired(&[(100, 0), (200, 1)], &[(0, rules(25)), (1, rules(80))]);
    let out = rec.reconcile(&mut kernel, &want);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].label(), "set_rules");
    assert_eq!(
        kernel.calls,
        vec![Op::SetRules(0, rules(25)), Op::Guard(100, 0)],
        "cgroup 200 is not guarded by a slot without rules"
    );
    kernel.fail_set_rules.clear();
    kernel.calls.clear();
    let out = rec.reconcile(&mut kernel, &want);
    assert!(out.failures.is_empty());
    assert_eq!(
        kernel.calls,
        vec![Op::SetRules(1, rules(80)), Op::Guard(200, 1)]
    );
}

#[test]
fn a_cgroup_moving_to_another_policy_is_guarded_again() {
    let mut kernel = RecordingEnforcer::default();
    let mut rec = Reconciler::new();
    rec.reconcile(&mut kernel, &desired(&[(100, 0)], &[(0, rules(25))]));
    kernel.calls.clear();
    rec.reconcile(&mut kernel, &desired(&[(100, 1)], &[(1, rules(80))]));
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetRules(1, rules(80)),
            Op::Guard(100, 1),
            Op::ClearRules(0)
        ]
    );
}

/// A pod: its levels are set and its public ports opened before it is guarded, so its proxy's
/// first bind already passes; when it goes, its guard goes before its ports.
#[test]
fn levels_and_public_ports_come_before_the_guard_and_go_after_it() {
    let mut kernel = RecordingEnforcer::default();
    let mut rec = Reconciler::new();
    let mut want = desired(&[(100, 0)], &[(0, rules(25))]);
    want.ports = BTreeSet::from([(100, 8080), (100, 9464)]);
    want.levels = Levels::from([3]);
    let out = rec.reconcile(&mut kernel, &want);
    assert!(out.failures.is_empty());
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetLevels(Levels::from([3])),
            Op::OpenPort(100, 8080),
            Op::OpenPort(100, 9464),
            Op::SetRules(0, rules(25)),
            Op::Guard(100, 0),
        ]
    );

    kernel.calls.clear();
    rec.reconcile(&mut kernel, &Desired::default());
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetLevels(Levels::new()),
            Op::Unguard(100),
            Op::ClosePort(100, 8080),
            Op::ClosePort(100, 9464),
            Op::ClearRules(0),
        ]
    );
    assert!(kernel.ports.is_empty() && kernel.levels.is_empty());
}

/// A public port that cannot be opened (a full map) does not keep its pod unguarded: the pod is
/// guarded (its wildcard bind to the port is then confined: fail closed), so are the pods after it,
/// and the port is opened on a later reconcile.
#[test]
fn a_cgroup_whose_public_port_cannot_be_opened_is_guarded_all_the_same() {
    let mut kernel = RecordingEnforcer {
        fail_open_port: BTreeSet::from([100]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let mut want = desired(&[(100, 0), (200, 0)], &[(0, rules(25))]);
    want.ports = BTreeSet::from([(100, 8080), (200, 8080)]);
    let out = rec.reconcile(&mut kernel, &want);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].label(), "open_port");
    assert!(out.deferred.is_empty(), "{:?}", out.deferred);
    assert_eq!(kernel.guarded, BTreeMap::from([(100, 0), (200, 0)]));
    assert_eq!(out.guarded, Some(2));
    assert_eq!(kernel.ports, BTreeSet::from([(200, 8080)]));
    kernel.fail_open_port.clear();
    kernel.calls.clear();
    let out = rec.reconcile(&mut kernel, &want);
    assert!(out.failures.is_empty());
    assert_eq!(kernel.calls, vec![Op::OpenPort(100, 8080)]);
}

/// An older agent guarded a container cgroup; its pod's cgroup now covers it with the same slot:
/// the container entry goes only once the pod's is in place.
#[test]
fn retired_entries_are_unguarded_after_the_guards_that_replace_them() {
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(101, 2), (999, 4)]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let mut want = desired(&[(100, 2)], &[(2, rules(25))]);
    want.retire.insert(101, 100);
    want.levels = Levels::from([3]);
    want.relies_on.insert(100, 3);
    rec.reconcile(&mut kernel, &want);
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetLevels(Levels::from([3])),
            Op::Unguard(999),
            Op::SetRules(2, rules(25)),
            Op::Guard(100, 2),
            Op::Unguard(101),
            Op::ClearRules(4),
        ]
    );
    assert_eq!(kernel.guarded, BTreeMap::from([(100, 2)]));

    // When the replacing guard cannot be made, the old entry stays.
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(101, 2)]),
        fail_set_rules: BTreeSet::from([2]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    rec.reconcile(&mut kernel, &want);
    assert_eq!(kernel.guarded, BTreeMap::from([(101, 2)]));
}

/// One pod's guard failing keeps only the entries that pod would replace: another pod's old
/// container entries are retired once its own guard is in place.
#[test]
fn a_failed_guard_keeps_only_the_entries_it_would_replace() {
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(101, 2), (201, 2)]),
        fail_guard: BTreeSet::from([100]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let mut want = desired(&[(100, 2), (200, 2)], &[(2, rules(25))]);
    want.retire = BTreeMap::from([(101, 100), (201, 200)]);
    // The container entries had the public port too (as entries kept for older programs do).
    kernel.ports = BTreeSet::from([(101, 8080), (201, 8080)]);
    want.ports = BTreeSet::from([(100, 8080), (200, 8080)]);
    let out = rec.reconcile(&mut kernel, &want);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].label(), "guard");
    assert_eq!(
        out.deferred,
        vec![Op::Retire(101), Op::ClosePort(101, 8080)]
    );
    assert_eq!(kernel.guarded, BTreeMap::from([(101, 2), (200, 2)]));
    assert_eq!(
        kernel.ports,
        BTreeSet::from([(100, 8080), (101, 8080), (200, 8080)]),
        "a retired entry's port is closed after it, a kept one's stays"
    );
    let retire = kernel.calls.iter().position(|c| *c == Op::Unguard(201));
    let close = kernel
        .calls
        .iter()
        .position(|c| *c == Op::ClosePort(201, 8080));
    assert!(retire < close && retire.is_some(), "{:?}", kernel.calls);

    kernel.fail_guard.clear();
    kernel.calls.clear();
    let out = rec.reconcile(&mut kernel, &want);
    assert!(out.failures.is_empty() && out.deferred.is_empty());
    assert_eq!(
        kernel.calls,
        vec![
            Op::Guard(100, 2),
            Op::Unguard(101),
            Op::ClosePort(101, 8080)
        ]
    );
    assert_eq!(kernel.guarded, BTreeMap::from([(100, 2), (200, 2)]));
}

/// When the levels cannot be set, a pod cgroup that needs a new level covers nothing beneath it:
/// it is not guarded (deferred, retried), and the container entries it would replace stay. Pods at
/// levels already set are guarded meanwhile.
#[test]
fn a_failed_set_levels_defers_the_guards_that_need_them_and_retires_nothing() {
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(101, 2), (201, 2)]),
        levels: Levels::from([2]),
        fail_set_levels: true,
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let mut want = desired(&[(100, 2), (200, 2)], &[(2, rules(25))]);
    want.levels = Levels::from([2, 3]);
    want.relies_on = BTreeMap::from([(100, 3), (200, 2)]);
    want.retire = BTreeMap::from([(101, 100), (201, 200)]);
    let out = rec.reconcile(&mut kernel, &want);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].label(), "set_levels");
    assert_eq!(out.deferred, vec![Op::Guard(100, 2), Op::Retire(101)]);
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetRules(2, rules(25)),
            Op::Guard(200, 2),
            Op::Unguard(201)
        ],
        "the pod at level 2 is guarded and replaces its container entry; the one at 3 waits"
    );
    assert_eq!(kernel.guarded, BTreeMap::from([(101, 2), (200, 2)]));
    assert_eq!(out.guarded, Some(2));

    kernel.fail_set_levels = false;
    kernel.calls.clear();
    let out = rec.reconcile(&mut kernel, &want);
    assert!(out.failures.is_empty() && out.deferred.is_empty());
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetLevels(Levels::from([2, 3])),
            Op::Guard(100, 2),
            Op::Unguard(101)
        ]
    );
}
