//! On the host kernel, as root: [`BpfEnforcer`] through the library API. Rules replaced with
//! `set_rules` take effect at once (old denials go, new ones come), a slot whose rules are cleared
//! fails closed for the network, `unguard` frees a cgroup, the allowed-egress events switch works,
//! and the programs' counters count. Levels and public ports round-trip through the maps, and a
//! process in a cgroup created beneath a guarded one after it was guarded is confined, its events
//! naming both cgroups.
#![allow(clippy::unwrap_used)]

mod host_support;

use std::collections::{BTreeMap, BTreeSet};

use host_support::{EPERM, TestEnv, root_or_skip, run_child};
use mcp_guard_agent::bpf::{self, LoadOptions};
use mcp_guard_agent::model::{Enforcer, Levels, SlotRules};

#[test]
fn helper_child() {
    host_support::helper_main();
}

fn rules(deny: &[&str]) -> SlotRules {
    SlotRules {
        egress_deny: deny.iter().map(|c| c.parse().unwrap()).collect(),
        ..SlotRules::default()
    }
}

/// Connects to .77 and .78 from inside `cgroup`; returns both results.
fn probe(cgroup: &std::path::Path) -> (String, String) {
    let plan = vec![
        "listen 192.0.2.77:8080".to_owned(),
        "listen 192.0.2.78:8080".to_owned(),
        format!("enter {}", cgroup.display()),
        "connect 192.0.2.77:8080".to_owned(),
        "connect 192.0.2.78:8080".to_owned(),
    ];
    let r = run_child(&plan);
    (
        r.result("connect 192.0.2.77:8080").to_owned(),
        r.result("connect 192.0.2.78:8080").to_owned(),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn set_rules_replaces_clear_rules_fails_closed_and_unguard_frees() {
    if !root_or_skip("set_rules_replaces_clear_rules_fails_closed_and_unguard_frees") {
        return;
    }
    let env = TestEnv::new("enforcer");
    let cg = env.cgroup("guarded");
    let id = bpf::fs::cgroup_id(&cg).unwrap();
    let mut loaded = bpf::load(&LoadOptions {
        pin_dir: env.pin_dir.clone(),
        capabilities: None,
    })
    .unwrap();
    assert!(loaded.enforcing("cgroup/connect4"), "{:?}", loaded.programs);
    let e = &mut loaded.enforcer;

    let slots = BTreeMap::from([(3, rules(&["192.0.2.77/32"]))]);
    e.reconcile(
        &slots,
        &BTreeMap::from([(id, 3)]),
        &BTreeSet::new(),
        &Levels::new(),
    )
    .unwrap();
    assert_eq!(e.guarded().unwrap(), vec![(id, 3)]);
    assert_eq!(e.active_slots().unwrap(), vec![3]);
    assert_eq!(probe(&cg), (EPERM.to_owned(), "ok".to_owned()));

    // Replaced: .77 is allowed again, .78 denied.
    e.set_rules(3, &rules(&["192.0.2.78/32"])).unwrap();
    assert_eq!(probe(&cg), ("ok".to_owned(), EPERM.to_owned()));

    // An allow list: everything else is refused.
    let allow = SlotRules {
        egress_allow: vec!["192.0.2.77/32".parse().unwrap()],
        ..SlotRules::default()
    };
    e.set_rules(3, &allow).unwrap();
    assert_eq!(probe(&cg), ("ok".to_owned(), EPERM.to_owned()));

    // Allowed-egress events.
    e.set_allowed_egress_events(true).unwrap();
    probe(&cg);
    e.set_allowed_egress_events(false).unwrap();

    // Cleared while still guarded: the network fails closed.
    let before = e.stats().unwrap().inactive_slot;
    e.clear_rules(3).unwrap();
    assert_eq!(e.active_slots().unwrap(), Vec::<u32>::new());
    assert_eq!(probe(&cg), (EPERM.to_owned(), EPERM.to_owned()));
    assert!(e.stats().unwrap().inactive_slot >= before + 2);

    // Unguarded: nothing applies.
    e.unguard(id).unwrap();
    e.unguard(id).unwrap(); // idempotent
    assert_eq!(probe(&cg), ("ok".to_owned(), "ok".to_owned()));
    assert!(e.guarded().unwrap().is_empty());

    let events = loaded.events.drain();
    let allowed: Vec<_> = events
        .iter()
        .filter(|ev| ev.verdict == mcp_guard_agent::model::Verdict::Allowed)
        .collect();
    assert_eq!(
        allowed.len(),
        1,
        "one allowed connect reported: {events:#?}"
    );
    assert_eq!(allowed[0].addr, Some("192.0.2.77".parse().unwrap()));
    let denied = events
        .iter()
        .filter(|ev| ev.verdict == mcp_guard_agent::model::Verdict::Denied)
        .count();
    assert_eq!(denied, 6, "{events:#?}");

    // The async reader delivers too.
    e.set_rules(1, &rules(&["192.0.2.78/32"])).unwrap();
    e.guard(id, 1).unwrap();
    let (mut rx, task) = loaded.events.spawn(16);
    let cg2 = cg.clone();
    let result = tokio::task::spawn_blocking(move || probe(&cg2))
        .await
        .unwrap();
    assert_eq!(result, ("ok".to_owned(), EPERM.to_owned()));
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within 10 s")
        .expect("channel open");
    assert_eq!((ev.cgroup_id, ev.slot, ev.port), (id, 1, Some(8080)));
    assert_eq!(ev.addr, Some("192.0.2.78".parse().unwrap()));
    task.abort();
}

#[test]
fn levels_and_public_ports_round_trip_and_guard_what_lies_beneath() {
    if !root_or_skip("levels_and_public_ports_round_trip_and_guard_what_lies_beneath") {
        return;
    }
    let env = TestEnv::new("levels");
    let pod = env.cgroup("pod");
    let pod_id = bpf::fs::cgroup_id(&pod).unwrap();
    let level = u32::try_from(
        pod.strip_prefix(&env.cgroup_root)
            .unwrap()
            .components()
            .count(),
    )
    .unwrap();
    let mut loaded = bpf::load(&LoadOptions {
        pin_dir: env.pin_dir.clone(),
        capabilities: None,
    })
    .unwrap();
    let e = &mut loaded.enforcer;
    assert!(e.levels().unwrap().is_empty(), "a fresh map has no levels");
    assert!(e.public_ports().unwrap().is_empty());

    e.set_rules(2, &rules(&["192.0.2.78/32"])).unwrap();
    e.open_port(pod_id, 8080).unwrap();
    e.open_port(pod_id, 9464).unwrap();
    e.set_levels(&Levels::from([level])).unwrap();
    // The settings entry holds the flags too: each setter keeps the other's part.
    e.set_allowed_egress_events(true).unwrap();
    assert_eq!(e.levels().unwrap(), Levels::from([level]));
    e.set_allowed_egress_events(false).unwrap();
    e.guard(pod_id, 2).unwrap();
    assert_eq!(
        e.public_ports().unwrap(),
        vec![(pod_id, 8080), (pod_id, 9464)]
    );
    assert!(e.set_levels(&Levels::from([1, 2, 3, 4, 5])).is_err());
    assert!(e.set_levels(&Levels::from([0])).is_err());
    assert_eq!(e.levels().unwrap(), Levels::from([level]), "unchanged");

    // A container cgroup created after the pod was guarded: confined from the start.
    let container = env.cgroup("pod/container");
    let container_id = bpf::fs::cgroup_id(&container).unwrap();
    assert_eq!(probe(&container), ("ok".to_owned(), EPERM.to_owned()));
    let events = loaded.events.drain();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (
            events[0].cgroup_id,
            events[0].guard_cgroup_id,
            events[0].slot
        ),
        (container_id, pod_id, 2),
        "the process's own cgroup, and the pod cgroup that guarded it"
    );

    // Without the level, only the pod cgroup itself is guarded.
    let e = &mut loaded.enforcer;
    e.set_levels(&Levels::new()).unwrap();
    assert_eq!(probe(&container), ("ok".to_owned(), "ok".to_owned()));
    e.close_port(pod_id, 8080).unwrap();
    e.close_port(pod_id, 8080).unwrap(); // idempotent
    assert_eq!(e.public_ports().unwrap(), vec![(pod_id, 9464)]);
}
