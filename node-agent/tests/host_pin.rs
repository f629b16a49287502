//! On the host kernel, as root: programs, links and maps pinned by the real agent keep enforcing
//! after it exits (SIGTERM); a restarted agent re-adopts the very same links (same link ids: never
//! detached, never re-attached) and maps, keeps enforcing, and delivers the events recorded while
//! it was down. `--unpin` then removes everything. Pins of the previous layout (no `public_ports`
//! map, version 1 in `meta`) are taken over: the missing map is created and the programs replaced.
//! When one of them cannot be replaced, the older program stays and the agent says so; in
//! Kubernetes mode the containers' own cgroups then stay guarded beside their pod's (the discovery
//! code against the real maps), until a later start replaces it. Also: `--probe` prints the
//! capability JSON.
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
        if e.file_type().unwrap().is_dir() {
            continue; // see block_link_pin
        }
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

/// Makes this build's link pin of `program` fail: a directory squats the temporary name it is
/// pinned under before it is renamed over the older link (bpffs has directories), so the new
/// program cannot replace the older one, as when the kernel refuses it. Removed when dropped (before
/// the test's pins are).
fn block_link_pin(pin_dir: &Path, program: &str) -> Squat {
    let squat = pin_dir.join("links").join(format!("{program}_new"));
    std::fs::create_dir(&squat).unwrap();
    Squat(squat)
}

struct Squat(std::path::PathBuf);

impl Drop for Squat {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn an_older_program_that_cannot_be_replaced_is_kept_and_reported() {
    if !root_or_skip("an_older_program_that_cannot_be_replaced_is_kept_and_reported") {
        return;
    }
    let env = TestEnv::new("kept");
    let guarded = env.cgroup("guarded");
    let policy = env.policy(POLICY);
    env.start_agent(&policy, &[&guarded]).stop();
    make_pins_look_like_version_1(&env.pin_dir);
    let before = link_ids(&env.pin_dir);
    let squat = block_link_pin(&env.pin_dir, "mg_bind6");

    let agent = env.start_agent(&policy, &[&guarded]);
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("program mg_bind6 (cgroup/bind6): kept_older: ")),
        "{log}"
    );
    assert!(
        log.contains(
            "warning: cgroup/bind6 still runs an older agent's program (pinned layout version 1)"
        ),
        "{log}"
    );
    let after = link_ids(&env.pin_dir);
    assert_eq!(
        after["mg_bind6"], before["mg_bind6"],
        "the older link stays"
    );
    assert_ne!(
        after["mg_connect4"], before["mg_connect4"],
        "the others are replaced"
    );
    let pid = denied_connect(&guarded);
    env.wait_event(|e| e["pid"] == pid && e["verdict"] == "denied");
    agent.stop();

    // The version the older program recorded stays in `meta` until it is replaced.
    drop(squat);
    let agent = env.start_agent(&policy, &[&guarded]);
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("program mg_bind6 (cgroup/bind6): replaced")),
        "{log}"
    );
    assert!(!log.contains("warning:"), "{log}");
    agent.stop();
}

/// Kills and reaps a process when dropped (before the test's cgroups are removed).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const POD_UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
const CONTAINER: &str = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff";
const PROXY_IMAGE: &str = "registry.test/mcp-guard-proxy:1";

/// The pod as the API server shows it: an `http` pod's server container, running.
fn pod_info() -> mcp_guard_agent::k8s::pod::PodInfo {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fs-0", "namespace": "tools", "uid": POD_UID,
                     "annotations": {"mcpguard.io/policy": "host-pin"}},
        "spec": {"containers": [
            {"name": "server", "image": "server:1"},
            {"name": "mcp-guard-proxy", "image": PROXY_IMAGE,
             "args": ["--listen", "0.0.0.0:8080", "--metrics", "0.0.0.0:9464"],
             "ports": [{"containerPort": 8080}, {"containerPort": 9464}]}]},
        "status": {"phase": "Running", "qosClass": "Burstable", "containerStatuses": [
            {"name": "server", "containerID": format!("containerd://{CONTAINER}"), "ready": true,
             "restartCount": 0, "image": "server:1", "imageID": "",
             "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]},
    }))
    .unwrap();
    mcp_guard_agent::k8s::pod::PodInfo::from_pod(&pod, Some(PROXY_IMAGE)).unwrap()
}

/// An upgrade from an agent that guarded container cgroups, where this build's `connect4` cannot
/// replace the older program (which looks up a process's own cgroup only). Kubernetes mode's
/// discovery code, on the real maps and a pod laid out as the kubelet and containerd do it: the
/// pod's cgroup is guarded, and the container entry the older agent left stays, with the pod's
/// public ports, so the older program still finds it. At the next start this build's program
/// replaces it, and the container entry is retired behind the pod's.
#[test]
fn while_an_older_program_remains_container_entries_stay_guarded() {
    use mcp_guard_agent::bpf::{self, LoadOptions};
    use mcp_guard_agent::cgroup::{HostCgroupFs, Layout};
    use mcp_guard_agent::k8s::pod::LoadedPolicy;
    use mcp_guard_agent::k8s::state::{NodeState, OlderPrograms, PolicyState};
    use mcp_guard_agent::model::{Enforcer, Levels};
    use mcp_guard_agent::probe::Enforcement;
    use mcp_guard_agent::rules::HostResolver;
    use mcp_guard_agent::slots::{PolicyRef, Reconciler};

    if !root_or_skip("while_an_older_program_remains_container_entries_stay_guarded") {
        return;
    }
    let env = TestEnv::new("older");
    let pod_dir = env.cgroup(&format!("kubepods/burstable/pod{POD_UID}"));
    let container_dir = pod_dir.join(CONTAINER);
    std::fs::create_dir(&container_dir).unwrap();
    let (pod_id, container_id) = (
        bpf::fs::cgroup_id(&pod_dir).unwrap(),
        bpf::fs::cgroup_id(&container_dir).unwrap(),
    );
    let sleeper = Reaped(
        std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap(),
    );
    std::fs::write(
        container_dir.join("cgroup.procs"),
        sleeper.0.id().to_string(),
    )
    .unwrap();
    let runtime = mcp_guard_agent::standalone::load_policy(&env.policy(POLICY))
        .unwrap()
        .runtime;
    let opts = LoadOptions {
        pin_dir: env.pin_dir.clone(),
        capabilities: None,
    };

    // The older agent: its programs pinned, the container's own cgroup guarded with slot 5.
    {
        let mut loaded = bpf::load(&opts).unwrap();
        let rules = mcp_guard_agent::rules::slot_rules(&runtime, &[], &HostResolver).rules;
        loaded.enforcer.set_rules(5, &rules).unwrap();
        loaded.enforcer.guard(container_id, 5).unwrap();
    }
    make_pins_look_like_version_1(&env.pin_dir);
    let before = link_ids(&env.pin_dir);
    let squat = block_link_pin(&env.pin_dir, "mg_connect4");

    let mut loaded = bpf::load(&opts).unwrap();
    let older: Vec<&str> = loaded
        .older_programs()
        .iter()
        .map(|p| p.hook.as_str())
        .collect();
    assert_eq!(older, ["cgroup/connect4"], "{:#?}", loaded.programs);
    assert_eq!(loaded.pinned_layout, Some(1));
    assert_eq!(link_ids(&env.pin_dir)["mg_connect4"], before["mg_connect4"]);

    let layout = Layout {
        mount: env.cgroup_root.clone(),
        parent: vec![env.name.clone()],
    };
    let pod_level = 4; // <test>/kubepods/burstable/pod<uid>
    let mut state = NodeState::new(layout, "/proc", Enforcement::all());
    state.set_older_programs(OlderPrograms::from_hooks(older));
    state.upsert_pod(pod_info());
    let policy = PolicyRef::new("tools", "host-pin");
    state.set_policy(
        policy,
        PolicyState::Loaded(LoadedPolicy {
            runtime,
            sha256: None,
        }),
    );
    let mut reconciler = Reconciler::new();
    let mut step = |enforcer: &mut bpf::BpfEnforcer, state: &mut NodeState| {
        let current = Reconciler::current(enforcer).unwrap();
        let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &current);
        assert!(
            summary.errors.is_empty() && summary.pending.is_empty(),
            "{summary:?}"
        );
        let out = reconciler.reconcile(enforcer, &desired);
        assert!(
            out.failures.is_empty() && out.deferred.is_empty(),
            "{out:?}"
        );
    };
    step(&mut loaded.enforcer, &mut state);
    let e = &loaded.enforcer;
    assert_eq!(e.guarded().unwrap(), {
        let mut v = vec![(pod_id, 5), (container_id, 5)];
        v.sort_unstable();
        v
    });
    assert_eq!(e.levels().unwrap(), Levels::from([pod_level]));
    let mut ports = e.public_ports().unwrap();
    ports.sort_unstable();
    let mut want = vec![
        (pod_id, 8080),
        (pod_id, 9464),
        (container_id, 8080),
        (container_id, 9464),
    ];
    want.sort_unstable();
    assert_eq!(
        ports, want,
        "the container entry has the pod's public ports"
    );
    denied_connect(&container_dir);

    // The next start: this build's connect4 replaces the older one; the container entry goes.
    drop(squat);
    drop(loaded);
    let mut loaded = bpf::load(&opts).unwrap();
    assert!(loaded.older_programs().is_empty(), "{:#?}", loaded.programs);
    assert_eq!(
        loaded.pinned_layout,
        Some(1),
        "recorded by the older program"
    );
    assert_ne!(link_ids(&env.pin_dir)["mg_connect4"], before["mg_connect4"]);
    state.set_older_programs(OlderPrograms::default());
    step(&mut loaded.enforcer, &mut state);
    let e = &loaded.enforcer;
    assert_eq!(e.guarded().unwrap(), vec![(pod_id, 5)]);
    let mut ports = e.public_ports().unwrap();
    ports.sort_unstable();
    assert_eq!(ports, vec![(pod_id, 8080), (pod_id, 9464)]);
    denied_connect(&container_dir);
    drop(loaded);
    assert_eq!(
        bpf::load(&opts).unwrap().pinned_layout,
        Some(mcp_guard_agent::bpf::layout::LAYOUT_VERSION),
        "meta is rewritten once no older program remains"
    );
    drop(sleeper);
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
