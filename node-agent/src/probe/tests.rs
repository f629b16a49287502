#![allow(clippy::unwrap_used)]

use crate::model::{DeniedInode, Inode};

use super::*;

fn all() -> Capabilities {
    Capabilities {
        cgroup_v2: Probe::available(),
        bpf_lsm: Probe::available(),
        sock_addr: Probe::available(),
    }
}

#[test]
fn a_full_kernel_enforces_everything_and_raises_no_event() {
    let report = assess(&all());
    assert_eq!(report.enforcement, Enforcement::all());
    assert_eq!(report.event, None);
    assert_eq!(report.lines.len(), 3);
    assert!(report.lines.iter().all(|(l, _)| *l == Level::Info));
}

/// The host kernel of the build machine: LSM programs fail to load with EPERM.
#[test]
fn without_bpf_lsm_network_rules_are_still_enforced() {
    let caps = Capabilities {
        bpf_lsm: Probe::unavailable(
            "BPF_PROG_LOAD lsm/file_open: Operation not permitted (os error 1)",
        ),
        ..all()
    };
    let report = assess(&caps);
    assert_eq!(
        report.enforcement,
        Enforcement {
            files: false,
            exec: false,
            egress: true,
            listeners: true
        }
    );
    let warn: Vec<_> = report
        .lines
        .iter()
        .filter(|(l, _)| *l == Level::Warn)
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(
        warn,
        vec![
            "BPF LSM unavailable (BPF_PROG_LOAD lsm/file_open: Operation not permitted (os error 1)): \
             runtime.files.deny and runtime.exec.deny not enforced on this node"
        ]
    );
    let event = report.event.clone().unwrap();
    assert_eq!(event.reason, "EnforcementDegraded");
    assert!(
        event
            .note
            .starts_with("mcp-guard-agent: BPF LSM unavailable"),
        "{}",
        event.note
    );
    assert!(
        event.note.contains("Operation not permitted"),
        "{}",
        event.note
    );

    let metrics = Metrics::new();
    report.record(&metrics);
    let text = metrics.encode();
    assert!(
        text.contains("mcp_guard_agent_capability{feature=\"bpf_lsm\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("mcp_guard_agent_capability{feature=\"cgroup_v2\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mcp_guard_agent_capability{feature=\"cgroup_sock_addr\"} 1"),
        "{text}"
    );
}

#[test]
fn without_cgroup_v2_nothing_is_enforced_but_nothing_fails() {
    let caps = Capabilities {
        cgroup_v2: Probe::unavailable("no cgroup2 mount"),
        ..all()
    };
    let report = assess(&caps);
    assert!(!report.enforcement.any());
    assert!(
        report
            .event
            .unwrap()
            .note
            .contains("cgroup v2 unavailable (no cgroup2 mount)")
    );
}

#[test]
fn long_errors_keep_the_note_under_a_kilobyte() {
    let caps = Capabilities {
        cgroup_v2: Probe::unavailable("é".repeat(700)),
        bpf_lsm: Probe::unavailable("x".repeat(700)),
        sock_addr: Probe::default(),
    };
    let note = assess(&caps).event.unwrap().note;
    assert!(note.len() <= 1000, "{}", note.len());
    assert!(note.ends_with('…'));
}

#[test]
fn restrict_drops_what_cannot_be_enforced() {
    let rules = SlotRules {
        files: vec![DeniedInode {
            path: "/etc/shadow".to_owned(),
            inode: Inode { dev: 1, ino: 2 },
            subtree: false,
        }],
        exec: vec![],
        egress_allow: vec!["10.0.0.0/8".parse().unwrap()],
        egress_deny: vec![],
        deny_ports: vec![25],
        confine_listeners: true,
    };
    let network_only = assess(&Capabilities {
        bpf_lsm: Probe::unavailable("EPERM"),
        ..all()
    })
    .enforcement;
    let r = network_only.restrict(rules.clone());
    assert!(r.files.is_empty());
    assert_eq!(r.deny_ports, vec![25]);
    assert!(r.confine_listeners);
    let lsm_only = Enforcement {
        egress: false,
        listeners: false,
        ..Enforcement::all()
    };
    let r = lsm_only.restrict(rules.clone());
    assert_eq!(r.files.len(), 1);
    assert!(r.egress_allow.is_empty() && r.deny_ports.is_empty() && !r.confine_listeners);
    assert_eq!(Enforcement::all().restrict(rules.clone()), rules);
}

/// Older programs kept at load degrade a full kernel's report: a warning line and a Node Event;
/// a missing feature's Event gets the sentence appended.
#[test]
fn a_degradation_found_at_load_raises_the_node_event() {
    let mut report = assess(&all());
    report.degrade("cgroup/connect4 still runs the program of an older agent");
    let event = report.event.clone().unwrap();
    assert_eq!(event.reason, "EnforcementDegraded");
    assert_eq!(
        event.note,
        "mcp-guard-agent: cgroup/connect4 still runs the program of an older agent."
    );
    assert!(
        report
            .lines
            .iter()
            .any(|(l, t)| *l == Level::Warn && t.contains("older agent")),
        "{:?}",
        report.lines
    );
    assert_eq!(report.enforcement, Enforcement::all(), "enforced, degraded");

    let mut caps = all();
    caps.bpf_lsm = Probe::unavailable("Operation not permitted");
    let mut report = assess(&caps);
    report.degrade("lsm/file_open keeps an older program");
    let note = report.event.unwrap().note;
    assert!(
        note.contains("BPF LSM unavailable") && note.ends_with("keeps an older program."),
        "{note}"
    );
}
