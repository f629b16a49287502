//! On the host kernel, as root: programs, links and maps pinned by the real agent keep enforcing
//! after it exits (SIGTERM); a restarted agent re-adopts the very same links (same link ids: never
//! detached, never re-attached) and maps, keeps enforcing, and delivers the events recorded while
//! it was down. `--unpin` then removes everything. Pins of the previous layout (no `public_ports`
//! map, version 1 in `meta`) are taken over: the missing map is created and the programs replaced.
//! Also: `--probe` prints the capability JSON.
#![allow(clippy::unwrap_used)]

mod host_support;

use std::collections::BTreeMap;
use std::path::Path;

use aya::programs::links::{FdLink, PinnedLink};
use host_support::{AGENT, EPERM, TestEnv, root_or_skip, run_child};

#[test]
fn helper_child() {
    host_support::helper_main();
}

const POLICY: &str = r#"
apiVersion: mcpguard.io/v1alpha1
kind: McpGuardPolicy
metadata: {name: host-pin}
spec:
  runtime:
    network:
      egress:
        deny: ["192.0.2.78/32"]
"#;

/// Link id of every pinned link.
fn link_ids(pin_dir: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(pin_dir.join("links")).unwrap() {
        let e = e.unwrap();
        let link = FdLink::from(PinnedLink::from_pin(e.path()).unwrap());
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            link.info().unwrap().id(),
        );
    }
    out
}

fn denied_connect(cgroup: &Path) -> u32 {
    let plan = vec![
        "listen 192.0.2.78:8080".to_owned(),
        format!("enter {}", cgroup.display()),
        "connect 192.0.2.78:8080".to_owned(),
    ];
    let child = run_child(&plan);
    assert_eq!(child.result("connect 192.0.2.78:8080"), EPERM, "{child:#?}");
    child.pid
}

#[test]
fn pins_outlive_the_agent_and_a_restart_readopts_them() {
    if !root_or_skip("pins_outlive_the_agent_and_a_restart_readopts_them") {
        return;
    }
    let env = TestEnv::new("pin");
    let guarded = env.cgroup("guarded");
    let policy = env.policy(POLICY);

    let agent = env.start_agent(&policy, &[&guarded]);
    assert!(agent.log().contains("maps created"), "{}", agent.log());
    let first = link_ids(&env.pin_dir);
    for p in ["mg_connect4", "mg_connect6", "mg_bind4", "mg_bind6"] {
        assert!(first.contains_key(p), "{p} not pinned: {first:?}");
        assert!(
            env.pin_dir.join("progs").join(p).exists(),
            "{p} program pin"
        );
    }
    let pid = denied_connect(&guarded);
    env.wait_event(|e| e["pid"] == pid && e["verdict"] == "denied");
    let log = agent.stop();
    assert!(log.contains("keep enforcing"), "{log}");

    // The agent is gone: the pinned links still hold, and the ring buffer keeps the event.
    assert_eq!(link_ids(&env.pin_dir), first);
    let down_pid = denied_connect(&guarded);

    let agent = env.start_agent(&policy, &[&guarded]);
    let log = agent.log();
    assert!(log.contains("maps re-adopted"), "{log}");
    for p in ["mg_connect4", "mg_connect6", "mg_bind4", "mg_bind6"] {
        assert!(log.contains(&format!("program {p} (")), "{log}");
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("program {p} (")) && l.ends_with(": adopted")),
            "{p} not adopted:\n{log}"
        );
    }
    assert_eq!(link_ids(&env.pin_dir), first, "links were re-attached");
    env.wait_event(|e| e["pid"] == down_pid);
    let after_pid = denied_connect(&guarded);
    let ev = env.wait_event(|e| e["pid"] == after_pid);
    assert_eq!(ev["addr"], "192.0.2.78");
    agent.stop();

    // --unpin removes every pin, and the connect passes again.
    let out = std::process::Command::new(AGENT)
        .arg("--unpin")
        .arg("--pin-dir")
        .arg(&env.pin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!env.pin_dir.exists());
    let plan = vec![
        "listen 192.0.2.78:8080".to_owned(),
        format!("enter {}", guarded.display()),
        "connect 192.0.2.78:8080".to_owned(),
    ];
    assert_eq!(run_child(&plan).result("connect 192.0.2.78:8080"), "ok");
}

/// What an agent of layout version 1 leaves pinned, simulated from this build's pins: no
/// `public_ports` map, and `meta` naming another object of version 1.
fn make_pins_look_like_version_1(pin_dir: &Path) {
    use aya::maps::{Array, Map, MapData};
    use mcp_guard_agent::bpf::layout::{Meta, PUBLIC_PORTS};
    std::fs::remove_file(pin_dir.join("maps").join(PUBLIC_PORTS)).unwrap();
    let data = MapData::from_pin(pin_dir.join("maps/meta")).unwrap();
    let mut meta: Array<MapData, Meta> = Array::try_from(Map::Array(data)).unwrap();
    let old = Meta {
        object_hash: 1,
        layout_version: 1,
        reserved: 0,
    };
    meta.set(0, old, 0).unwrap();
}

#[test]
fn pins_of_the_previous_layout_are_taken_over() {
    if !root_or_skip("pins_of_the_previous_layout_are_taken_over") {
        return;
    }
    let env = TestEnv::new("upgrade");
    let guarded = env.cgroup("guarded");
    let policy = env.policy(POLICY);
    env.start_agent(&policy, &[&guarded]).stop();
    make_pins_look_like_version_1(&env.pin_dir);
    let before = link_ids(&env.pin_dir);

    let agent = env.start_agent(&policy, &[&guarded]);
    let log = agent.log();
    assert!(log.contains("maps re-adopted"), "{log}");
    for p in ["mg_connect4", "mg_connect6", "mg_bind4", "mg_bind6"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("program {p} (")) && l.ends_with(": replaced")),
            "{p} not replaced:\n{log}"
        );
    }
    assert!(env.pin_dir.join("maps/public_ports").exists());
    let after = link_ids(&env.pin_dir);
    assert_eq!(after.len(), before.len());
    assert_ne!(after, before, "new links replace the old ones");
    let pid = denied_connect(&guarded);
    env.wait_event(|e| e["pid"] == pid && e["verdict"] == "denied");
    agent.stop();
}

#[test]
fn probe_mode_prints_the_capabilities() {
    if !root_or_skip("probe_mode_prints_the_capabilities") {
        return;
    }
    let out = std::process::Command::new(AGENT)
        .arg("--probe")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let caps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for feature in ["cgroup_v2", "bpf_lsm", "sock_addr"] {
        assert!(caps[feature]["available"].is_boolean(), "{caps}");
        assert!(caps[feature]["detail"].is_string(), "{caps}");
    }
    // This host has cgroup v2 and sock_addr; whether BPF LSM runs depends on its boot options.
    assert_eq!(caps["cgroup_v2"]["available"], true, "{caps}");
    assert_eq!(caps["sock_addr"]["available"], true, "{caps}");
}
