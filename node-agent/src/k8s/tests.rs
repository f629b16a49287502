#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use mcp_guard_policy::CompiledPolicy;
use mcp_guard_policy::compiled::{DeniedPath, Runtime};
use serde_json::json;

use super::pod::{LoadedPolicy, PROXY_CONTAINER, PodInfo, load_policy};
use super::state::{NodeState, PolicyState};
use super::*;
use crate::cgroup::{HostCgroupFs, Layout, QosClass};
use crate::model::Inode;
use crate::probe::Enforcement;
use crate::rules::{HostResolver, kernel_dev};
use crate::slots::fake::RecordingEnforcer;
use crate::slots::{Op, Reconciler};

const UID: &str = "0a1b2c3d-1111-2222-3333-444455556666";
const SERVER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const PROXY: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn pod(name: &str, policy: Option<&str>, containers: serde_json::Value) -> Pod {
    let mut annotations = serde_json::Map::new();
    if let Some(p) = policy {
        annotations.insert("mcpguard.io/policy".into(), json!(p));
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "tools", "uid": UID,
                     "labels": {"mcpguard.io/guarded": "true"}, "annotations": annotations},
        "spec": {"nodeName": "node-1", "containers": [{"name": "server"}]},
        "status": {"phase": "Running", "qosClass": "Burstable", "containerStatuses": containers},
    }))
    .unwrap()
}

fn running(name: &str, id: &str) -> serde_json::Value {
    json!({"name": name, "containerID": id, "ready": true, "restartCount": 0, "image": "i",
           "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
}

#[test]
fn a_pod_yields_its_running_containers_but_not_the_proxy() {
    let p = pod(
        "fs-0",
        Some("no-exec"),
        json!([
            running("server", &format!("containerd://{SERVER}")),
            running(PROXY_CONTAINER, &format!("containerd://{PROXY}")),
            running("weird", "rkt://abc"),
            {"name": "starting", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]),
    );
    let info = PodInfo::from_pod(&p).unwrap();
    assert_eq!(
        (
            info.namespace.as_str(),
            info.name.as_str(),
            info.uid.as_str()
        ),
        ("tools", "fs-0", UID)
    );
    assert_eq!(info.qos, Some(QosClass::Burstable));
    assert_eq!(info.policy.as_deref(), Some("no-exec"));
    let names: Vec<_> = info.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["server"]);
    assert_eq!(info.containers[0].id.id, SERVER);
    assert_eq!(info.unreadable, vec!["weird: rkt://abc".to_owned()]);

    let mut done = p.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert!(PodInfo::from_pod(&done).unwrap().containers.is_empty());
    let mut anonymous = p;
    anonymous.metadata.uid = None;
    assert!(PodInfo::from_pod(&anonymous).is_none());
}

fn policy_json(runtime: Runtime) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/library/no-exec.yaml"),
    )
    .unwrap();
    let file = mcp_guard_policy::load::parse_documents(&text, "no-exec").unwrap();
    let mut compiled: CompiledPolicy = file.policies[0].compile().unwrap();
    compiled.runtime = runtime;
    compiled.to_json()
}

fn config_map(json: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": "mcp-guard-policy-no-exec", "namespace": "tools",
                     "annotations": {"mcpguard.io/policy-sha256": "abc"}},
        "data": {"policy.json": json},
    }))
    .unwrap()
}

fn runtime(port: u16) -> Runtime {
    let mut r = Runtime::default();
    r.files.deny.push(DeniedPath {
        path: "/etc/shadow".into(),
        subtree: false,
    });
    r.exec.deny.push(DeniedPath {
        path: "/bin/sh".into(),
        subtree: false,
    });
    r.exec.deny.push(DeniedPath {
        path: "/usr/bin/curl".into(),
        subtree: false,
    });
    r.network.egress.deny_ports.push(port);
    r
}

#[test]
fn policies_load_from_their_config_map() {
    let loaded = load_policy(&config_map(&policy_json(runtime(25)))).unwrap();
    assert_eq!(loaded.runtime, runtime(25));
    assert_eq!(loaded.sha256.as_deref(), Some("abc"));
    assert!(load_policy(&config_map("{\"format\": 99}")).is_err());
    assert!(load_policy(&ConfigMap::default()).is_err());
}

#[test]
fn an_invalid_config_map_keeps_the_last_good_policy() {
    let mut state = NodeState::new(Layout::new("/nonexistent"), "/proc", Enforcement::all());
    let metrics = Metrics::new();
    let p = PolicyRef::new("tools", "no-exec");
    let good = config_map(&policy_json(runtime(25)));
    assert!(policy_changed(&mut state, &metrics, p.clone(), Some(&good)));
    assert!(
        !policy_changed(&mut state, &metrics, p.clone(), Some(&good)),
        "unchanged"
    );
    let bad = config_map("not json");
    assert!(!policy_changed(&mut state, &metrics, p.clone(), Some(&bad)));
    assert!(matches!(state.policy(&p), Some(PolicyState::Loaded(l)) if l.runtime == runtime(25)));
    assert!(
        metrics
            .encode()
            .contains("policy_errors_total{reason=\"invalid\"} 1")
    );
    assert!(policy_changed(&mut state, &metrics, p.clone(), None));
    assert_eq!(state.policy(&p), Some(&PolicyState::Missing));
}

/// A node in a tempdir: a cgroup v2 tree (cgroupfs driver) and `/proc/<pid>/root` of each container.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn mount(&self) -> PathBuf {
        self.dir.path().join("cgroup")
    }
    fn proc(&self) -> PathBuf {
        self.dir.path().join("proc")
    }
    /// Starts a container: its cgroup with one process, and a root with /etc/shadow and /bin/sh.
    fn start(&self, id: &str, pid: u32) -> u64 {
        let cg = self
            .mount()
            .join(format!("kubepods/burstable/pod{UID}/{id}"));
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cgroup.procs"), format!("{pid}\n")).unwrap();
        let root = self.proc().join(format!("{pid}/root"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("etc/shadow"), "x").unwrap();
        std::fs::write(root.join("bin/sh"), "x").unwrap();
        std::fs::metadata(&cg).unwrap().ino()
    }
    fn inode(&self, pid: u32, path: &str) -> Inode {
        let m = std::fs::metadata(self.proc().join(format!("{pid}/root{path}"))).unwrap();
        Inode {
            dev: kernel_dev(m.dev()),
            ino: m.ino(),
        }
    }
    fn state(&self, enforcement: Enforcement) -> NodeState {
        NodeState::new(Layout::new(self.mount()), self.proc(), enforcement)
    }
}

fn loaded(port: u16) -> PolicyState {
    PolicyState::Loaded(LoadedPolicy {
        runtime: runtime(port),
        sha256: None,
    })
}

fn server_pod() -> PodInfo {
    PodInfo::from_pod(&pod(
        "fs-0",
        Some("no-exec"),
        json!([running("server", &format!("containerd://{SERVER}"))]),
    ))
    .unwrap()
}

/// Pods starting, policies arriving and changing, pods going: the calls the enforcer receives.
#[test]
fn the_kernel_follows_pods_and_policies() {
    let node = Node::new();
    let mut state = node.state(Enforcement::all());
    let mut kernel = RecordingEnforcer::default();
    let mut rec = Reconciler::new();
    let policy = PolicyRef::new("tools", "no-exec");
    let mut step = |state: &mut NodeState, kernel: &mut RecordingEnforcer| {
        kernel.calls.clear();
        let current = Reconciler::current(kernel).unwrap();
        let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &current);
        rec.reconcile(kernel, &desired);
        summary
    };

    // The pod is running per its status, but its cgroup is not there yet: pending, retried.
    state.upsert_pod(server_pod());
    state.set_policy(policy.clone(), loaded(25));
    let summary = step(&mut state, &mut kernel);
    assert_eq!(summary.pending, vec![format!("tools/fs-0/server")]);
    assert!(kernel.calls.is_empty());

    // The container starts: its cgroup is guarded, its paths resolved under its own root.
    let cg = node.start(SERVER, 4242);
    let summary = step(&mut state, &mut kernel);
    assert!(summary.pending.is_empty());
    let rules = kernel.rules[&0].clone();
    assert_eq!(rules.files[0].inode, node.inode(4242, "/etc/shadow"));
    assert_eq!(rules.exec[0].inode, node.inode(4242, "/bin/sh"));
    assert_eq!(rules.deny_ports, vec![25]);
    assert_eq!(
        kernel.calls,
        vec![Op::SetRules(0, rules.clone()), Op::Guard(cg, 0)]
    );
    let skipped: Vec<_> = summary.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(skipped, vec!["/usr/bin/curl"], "missing paths are reported");
    let owner = state.owner(cg).unwrap();
    assert_eq!(
        (
            owner.namespace.as_deref(),
            owner.pod.as_deref(),
            owner.container.as_deref()
        ),
        (Some("tools"), Some("fs-0"), Some("server"))
    );
    assert_eq!(owner.policy.as_deref(), Some("no-exec"));

    // Nothing changed: no calls.
    step(&mut state, &mut kernel);
    assert!(kernel.calls.is_empty());

    // The ConfigMap changes: only the rules are rewritten.
    state.set_policy(policy.clone(), loaded(26));
    step(&mut state, &mut kernel);
    assert!(matches!(kernel.calls.as_slice(), [Op::SetRules(0, r)] if r.deny_ports == vec![26]));

    // The policy is deleted: the cgroup is released.
    state.set_policy(policy.clone(), PolicyState::Missing);
    let summary = step(&mut state, &mut kernel);
    assert_eq!(kernel.calls, vec![Op::Unguard(cg), Op::ClearRules(0)]);
    assert!(summary.missing_policies.contains(&policy));

    // Back again, then the pod goes.
    state.set_policy(policy.clone(), loaded(26));
    step(&mut state, &mut kernel);
    assert_eq!(kernel.guarded, BTreeMap::from([(cg, 0)]));
    state.remove_pod("tools", "fs-0");
    step(&mut state, &mut kernel);
    assert_eq!(kernel.calls, vec![Op::Unguard(cg), Op::ClearRules(0)]);
    assert!(kernel.guarded.is_empty() && kernel.rules.is_empty());
    assert!(state.wanted_policies().is_empty());
}

/// After a restart: pinned entries stay while the policy's ConfigMap is not listed yet, and the
/// policy gets back the slot its cgroups carry.
#[test]
fn a_restarted_agent_adopts_the_pinned_state_without_a_gap() {
    let node = Node::new();
    let cg = node.start(SERVER, 4242);
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(cg, 7), (999_999, 3)]),
        ..RecordingEnforcer::default()
    };
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(server_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), PolicyState::Pending);
    let mut rec = Reconciler::new();
    let current = Reconciler::current(&kernel).unwrap();
    let (desired, _) = state.desired(&HostCgroupFs, &HostResolver, &current);
    rec.reconcile(&mut kernel, &desired);
    assert_eq!(
        kernel.calls,
        vec![Op::Unguard(999_999), Op::ClearRules(3)],
        "the gone pod's entry is removed, the pending one kept"
    );

    kernel.calls.clear();
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let current = Reconciler::current(&kernel).unwrap();
    let (desired, _) = state.desired(&HostCgroupFs, &HostResolver, &current);
    rec.reconcile(&mut kernel, &desired);
    assert!(
        matches!(kernel.calls.as_slice(), [Op::SetRules(7, _)]),
        "same slot, so the cgroup needs no new guard call: {:?}",
        kernel.calls
    );
}

#[test]
fn without_bpf_lsm_paths_are_neither_resolved_nor_enforced() {
    let node = Node::new();
    let cg = node.start(SERVER, 4242);
    let network_only = Enforcement {
        files: false,
        exec: false,
        ..Enforcement::all()
    };
    let mut state = node.state(network_only);
    state.upsert_pod(server_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert!(summary.skipped.is_empty());
    assert_eq!(desired.cgroups, BTreeMap::from([(cg, 0)]));
    let rules = &desired.rules[&0];
    assert!(rules.files.is_empty() && rules.exec.is_empty());
    assert_eq!(rules.deny_ports, vec![25]);

    // A policy with nothing this node can enforce guards nothing.
    let mut nothing = node.state(Enforcement::default());
    nothing.upsert_pod(server_pod());
    nothing.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, _) = nothing.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert!(desired.cgroups.is_empty() && desired.rules.is_empty());
}

#[test]
fn pods_without_a_policy_are_not_guarded() {
    let node = Node::new();
    node.start(SERVER, 4242);
    let mut state = node.state(Enforcement::all());
    let p = PodInfo::from_pod(&pod(
        "plain",
        None,
        json!([running("server", &format!("containerd://{SERVER}"))]),
    ))
    .unwrap();
    state.upsert_pod(p);
    assert!(state.wanted_policies().is_empty());
    let (desired, _) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert_eq!(desired, crate::slots::Desired::default());
}
