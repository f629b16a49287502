#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use mcp_guard_policy::CompiledPolicy;
use mcp_guard_policy::compiled::{DeniedPath, Runtime};
use serde_json::json;

use super::fixtures::{PROXY, PROXY_IMAGE, SERVER, UID, http_containers, pod, pod_with, running};
use super::pod::{LoadedPolicy, PROXY_CONTAINER, PodInfo, load_policy};
use super::state::{NodeState, OlderPrograms, PolicyState, Summary};
use super::*;
use crate::cgroup::{HostCgroupFs, Layout};
use crate::model::{Inode, KernelEvent, Levels, SlotRules};
use crate::probe::Enforcement;
use crate::rules::{HostResolver, kernel_dev};
use crate::slots::fake::RecordingEnforcer;
use crate::slots::{Op, Reconciler};

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
        let node = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(node.mount().join("kubepods/burstable")).unwrap();
        node
    }
    fn mount(&self) -> PathBuf {
        self.dir.path().join("cgroup")
    }
    fn proc(&self) -> PathBuf {
        self.dir.path().join("proc")
    }
    fn pod_dir(&self) -> PathBuf {
        self.mount().join(format!("kubepods/burstable/pod{UID}"))
    }
    /// The kubelet creates the pod's cgroup; returns its id.
    fn create_pod(&self) -> u64 {
        std::fs::create_dir_all(self.pod_dir()).unwrap();
        std::fs::metadata(self.pod_dir()).unwrap().ino()
    }
    /// Starts a container: its cgroup (beneath the pod's) with one process, and a root with
    /// /etc/shadow and /bin/sh.
    fn start(&self, id: &str, pid: u32) -> u64 {
        let cg = self.pod_dir().join(id);
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

/// The injected `http` pod, scheduled on the node: nothing of it runs yet.
fn scheduled_pod() -> PodInfo {
    PodInfo::from_pod(
        &pod_with("fs-0", Some("no-exec"), http_containers(), None),
        Some(PROXY_IMAGE),
    )
    .unwrap()
}

/// The same pod with its server container running.
fn server_pod() -> PodInfo {
    PodInfo::from_pod(
        &pod(
            "fs-0",
            Some("no-exec"),
            json!([running("server", &format!("containerd://{SERVER}"))]),
        ),
        Some(PROXY_IMAGE),
    )
    .unwrap()
}

struct Step {
    rec: Reconciler,
}

impl Step {
    fn new() -> Self {
        Self {
            rec: Reconciler::new(),
        }
    }
    /// One reconcile, as the agent's loop makes it; the calls it made are in `kernel.calls`.
    fn run(&mut self, state: &mut NodeState, kernel: &mut RecordingEnforcer) -> Summary {
        kernel.calls.clear();
        let current = Reconciler::current(kernel).unwrap();
        let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &current);
        self.rec.reconcile(kernel, &desired);
        summary
    }
}

/// Pods scheduled, starting, policies arriving and changing, pods going: the calls the enforcer
/// receives. The pod's cgroup is guarded as soon as it exists, before any container of the pod
/// runs, with its public ports and its level; file rules follow once a container runs.
#[test]
fn the_kernel_follows_pods_and_policies() {
    let node = Node::new();
    let mut state = node.state(Enforcement::all());
    let mut kernel = RecordingEnforcer::default();
    let mut step = Step::new();
    let policy = PolicyRef::new("tools", "no-exec");

    // Scheduled on this node; the kubelet has not created its cgroup yet: pending, polled.
    state.upsert_pod(scheduled_pod());
    state.set_policy(policy.clone(), loaded(25));
    let summary = step.run(&mut state, &mut kernel);
    assert_eq!(summary.pending_pods, vec!["tools/fs-0".to_owned()]);
    assert!(kernel.calls.is_empty());
    assert!(!state.pods_appeared(&HostCgroupFs));

    // The kubelet creates the pod's cgroup: the poll sees it, and the pod is guarded before its
    // sandbox or any container exists. Network rules apply; no root to resolve paths in yet.
    let pod_cg = node.create_pod();
    assert!(state.pods_appeared(&HostCgroupFs));
    let summary = step.run(&mut state, &mut kernel);
    assert!(summary.pending_pods.is_empty() && summary.late.is_empty());
    let network_only = SlotRules {
        deny_ports: vec![25],
        ..SlotRules::default()
    };
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetLevels(Levels::from([3])),
            Op::OpenPort(pod_cg, 8080),
            Op::OpenPort(pod_cg, 9464),
            Op::SetRules(0, network_only),
            Op::Guard(pod_cg, 0),
        ]
    );
    let owner = state.owner(pod_cg).unwrap();
    assert_eq!(
        (owner.pod.as_deref(), owner.container.as_deref()),
        (Some("fs-0"), None)
    );

    // Its container starts: the file and exec rules resolve in its root, into the same slot; the
    // pod's entry covers it, so it gets no entry of its own.
    let cg = node.start(SERVER, 4242);
    state.upsert_pod(server_pod());
    let summary = step.run(&mut state, &mut kernel);
    assert!(summary.pending.is_empty());
    let rules = kernel.rules[&0].clone();
    assert_eq!(rules.files[0].inode, node.inode(4242, "/etc/shadow"));
    assert_eq!(rules.exec[0].inode, node.inode(4242, "/bin/sh"));
    assert_eq!(rules.deny_ports, vec![25]);
    assert_eq!(kernel.calls, vec![Op::SetRules(0, rules.clone())]);
    assert_eq!(kernel.guarded, BTreeMap::from([(pod_cg, 0)]));
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
    step.run(&mut state, &mut kernel);
    assert!(kernel.calls.is_empty());

    // The ConfigMap changes: only the rules are rewritten.
    state.set_policy(policy.clone(), loaded(26));
    step.run(&mut state, &mut kernel);
    assert!(matches!(kernel.calls.as_slice(), [Op::SetRules(0, r)] if r.deny_ports == vec![26]));

    // The policy is deleted: the pod is released, its ports closed.
    state.set_policy(policy.clone(), PolicyState::Missing);
    let summary = step.run(&mut state, &mut kernel);
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetLevels(Levels::new()),
            Op::Unguard(pod_cg),
            Op::ClosePort(pod_cg, 8080),
            Op::ClosePort(pod_cg, 9464),
            Op::ClearRules(0)
        ]
    );
    assert!(summary.missing_policies.contains(&policy));

    // Back again, then the pod goes.
    state.set_policy(policy.clone(), loaded(26));
    step.run(&mut state, &mut kernel);
    assert_eq!(kernel.guarded, BTreeMap::from([(pod_cg, 0)]));
    state.remove_pod("tools", "fs-0");
    step.run(&mut state, &mut kernel);
    assert_eq!(
        kernel.calls,
        vec![
            Op::SetLevels(Levels::new()),
            Op::Unguard(pod_cg),
            Op::ClosePort(pod_cg, 8080),
            Op::ClosePort(pod_cg, 9464),
            Op::ClearRules(0)
        ]
    );
    assert!(kernel.guarded.is_empty() && kernel.rules.is_empty() && kernel.ports.is_empty());
    assert!(state.wanted_policies().is_empty());
}

/// Events name the container when the agent has seen it running, else the pod that guarded it
/// (a process of a container not reported yet).
#[test]
fn events_are_owned_by_their_container_or_else_their_pod() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    let cg = node.start(SERVER, 4242);
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(server_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    let event = |cgroup_id| KernelEvent {
        kind: crate::model::EventKind::Bind,
        verdict: crate::model::Verdict::Rewritten,
        cgroup_id,
        guard_cgroup_id: pod_cg,
        slot: 0,
        pid: 1,
        comm: "node".into(),
        path: None,
        inode: None,
        addr: None,
        port: Some(18080),
    };
    let known = state.owner_of(&event(cg)).unwrap();
    assert_eq!(known.container.as_deref(), Some("server"));
    let unseen = state.owner_of(&event(987_654)).unwrap();
    assert_eq!(
        (unseen.pod.as_deref(), unseen.container.as_deref()),
        (Some("fs-0"), None)
    );
}

/// After a restart: pinned entries stay while the policy's ConfigMap is not listed yet, and the
/// policy gets back the slot its cgroups carry.
#[test]
fn a_restarted_agent_adopts_the_pinned_state_without_a_gap() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    node.start(SERVER, 4242);
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(pod_cg, 7), (999_999, 3)]),
        ports: BTreeSet::from([(pod_cg, 8080), (pod_cg, 9464), (999_999, 80)]),
        levels: Levels::from([3]),
        ..RecordingEnforcer::default()
    };
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(server_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), PolicyState::Pending);
    let mut step = Step::new();
    step.run(&mut state, &mut kernel);
    assert_eq!(
        kernel.calls,
        vec![
            Op::Unguard(999_999),
            Op::ClosePort(999_999, 80),
            Op::ClearRules(3)
        ],
        "the gone pod's entry is removed, the pending one kept with its ports and level"
    );

    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    step.run(&mut state, &mut kernel);
    assert!(
        matches!(kernel.calls.as_slice(), [Op::SetRules(7, _)]),
        "same slot, so the pod needs no new guard call: {:?}",
        kernel.calls
    );
}

/// An older agent guarded the container cgroups themselves. The new one takes the slot they carry,
/// guards the pod's cgroup, and only then drops the container entries: no gap.
#[test]
fn container_entries_of_an_older_agent_are_replaced_by_the_pod_without_a_gap() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    let cg = node.start(SERVER, 4242);
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(cg, 5)]),
        ..RecordingEnforcer::default()
    };
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(server_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let summary = Step::new().run(&mut state, &mut kernel);
    assert!(summary.late.is_empty(), "it was confined all along");
    let calls: Vec<_> = kernel
        .calls
        .iter()
        .filter(|c| !matches!(c, Op::SetRules(..) | Op::OpenPort(..)))
        .cloned()
        .collect();
    assert_eq!(
        calls,
        vec![
            Op::SetLevels(Levels::from([3])),
            Op::Guard(pod_cg, 5),
            Op::Unguard(cg)
        ]
    );
    assert_eq!(kernel.guarded, BTreeMap::from([(pod_cg, 5)]));
}

/// A pod whose containers already ran before it could be guarded (the agent was down when it
/// started) is reported; one guarded before anything ran, or a finished one, is not.
#[test]
fn a_pod_guarded_after_its_containers_started_is_reported_late() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    node.start(SERVER, 4242);
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(server_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (_, summary) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert_eq!(summary.late, vec![("tools/fs-0".to_owned(), pod_cg)]);

    let mut state = node.state(Enforcement::all());
    state.upsert_pod(scheduled_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert!(summary.late.is_empty());
    assert_eq!(desired.cgroups.len(), 1);

    let mut done = pod("fs-0", Some("no-exec"), json!([]));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(PodInfo::from_pod(&done, Some(PROXY_IMAGE)).unwrap());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert!(desired.cgroups.is_empty(), "nothing of a finished pod runs");
    assert!(summary.pending_pods.is_empty() && summary.late.is_empty());
}

/// A server container named like the proxy gets no exemption: the pod's cgroup confines every
/// container whatever its name, and the name alone opens no port.
#[test]
fn a_container_named_like_the_proxy_is_confined_like_any_other() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    node.start(SERVER, 4242);
    let mut state = node.state(Enforcement::all());
    let p = pod_with(
        "fs-0",
        Some("no-exec"),
        json!([{"name": PROXY_CONTAINER, "image": "evil", "command": ["/bin/server"],
                "args": ["--listen", "0.0.0.0:8080"]}]),
        Some(json!([running(
            PROXY_CONTAINER,
            &format!("containerd://{SERVER}")
        )])),
    );
    state.upsert_pod(PodInfo::from_pod(&p, Some(PROXY_IMAGE)).unwrap());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, _) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert_eq!(desired.cgroups, BTreeMap::from([(pod_cg, 0)]));
    assert!(desired.ports.is_empty());
    let rules = &desired.rules[&0];
    assert_eq!(
        rules.files[0].inode,
        node.inode(4242, "/etc/shadow"),
        "its root is resolved like any container's"
    );
}

/// Burstable and Guaranteed pods sit at different levels (`kubepods/burstable/pod<uid>`,
/// `kubepods/pod<uid>`): both levels are looked up.
#[test]
fn levels_follow_the_pods_qos_classes() {
    let node = Node::new();
    let mut state = node.state(Enforcement::all());
    let burstable = node.create_pod();
    state.upsert_pod(scheduled_pod());
    // A Guaranteed pod sits one level higher (kubepods/pod<uid>).
    let uid2 = "99999999-1111-2222-3333-444455556666";
    let dir2 = node.mount().join(format!("kubepods/pod{uid2}"));
    std::fs::create_dir_all(&dir2).unwrap();
    let guaranteed = std::fs::metadata(&dir2).unwrap().ino();
    let mut p2 = pod_with("fs-1", Some("no-exec"), http_containers(), None);
    p2.metadata.uid = Some(uid2.to_owned());
    p2.status.as_mut().unwrap().qos_class = Some("Guaranteed".into());
    state.upsert_pod(PodInfo::from_pod(&p2, Some(PROXY_IMAGE)).unwrap());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(desired.levels, Levels::from([2, 3]));
    assert_eq!(
        desired.cgroups,
        BTreeMap::from([(burstable, 0), (guaranteed, 0)])
    );
}

#[test]
fn without_bpf_lsm_paths_are_neither_resolved_nor_enforced() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    node.start(SERVER, 4242);
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
    assert_eq!(desired.cgroups, BTreeMap::from([(pod_cg, 0)]));
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
    node.create_pod();
    node.start(SERVER, 4242);
    let mut state = node.state(Enforcement::all());
    let p = PodInfo::from_pod(
        &pod(
            "plain",
            None,
            json!([running("server", &format!("containerd://{SERVER}"))]),
        ),
        Some(PROXY_IMAGE),
    )
    .unwrap();
    state.upsert_pod(p);
    assert!(state.wanted_policies().is_empty());
    let (desired, _) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert_eq!(desired, crate::slots::Desired::default());
}

/// The `http` pod with its server and proxy containers running.
fn server_and_proxy_pod() -> PodInfo {
    PodInfo::from_pod(
        &pod(
            "fs-0",
            Some("no-exec"),
            json!([
                running("server", &format!("containerd://{SERVER}")),
                running(PROXY_CONTAINER, &format!("containerd://{PROXY}")),
            ]),
        ),
        Some(PROXY_IMAGE),
    )
    .unwrap()
}

/// While programs of an older agent stay attached (this build's could not replace them at load),
/// those hooks look up a process's own cgroup only: the container entries the older agent left are
/// kept, and each running container gets one, with the pod's slot and public ports, beside the pod's
/// entry. An older bind program knows no public ports, so the proxy container then gets no entry
/// (as the older agent did). Once this build's programs are in, the container entries are retired.
#[test]
fn while_older_programs_remain_containers_keep_entries_of_their_own() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    let server_cg = node.start(SERVER, 4242);
    let proxy_cg = node.start(PROXY, 4343);
    // The older agent guarded the server's container (not the proxy's).
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(server_cg, 5)]),
        ..RecordingEnforcer::default()
    };
    let mut state = node.state(Enforcement::all());
    state.set_older_programs(OlderPrograms::from_hooks([
        "cgroup/connect4",
        "lsm/file_open",
    ]));
    state.upsert_pod(server_and_proxy_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let mut step = Step::new();
    let summary = step.run(&mut state, &mut kernel);
    assert!(summary.late.is_empty(), "it was confined all along");
    assert!(
        !kernel.calls.iter().any(|c| matches!(c, Op::Unguard(_))),
        "nothing is retired: {:?}",
        kernel.calls
    );
    assert_eq!(
        kernel.guarded,
        BTreeMap::from([(pod_cg, 5), (server_cg, 5), (proxy_cg, 5)])
    );
    let ports = |cgs: &[u64]| -> BTreeSet<(u64, u16)> {
        cgs.iter()
            .flat_map(|cg| [(*cg, 8080), (*cg, 9464)])
            .collect()
    };
    assert_eq!(kernel.ports, ports(&[pod_cg, server_cg, proxy_cg]));
    assert_eq!(kernel.levels, Levels::from([3]));

    // An older bind program: the proxy container's own entry goes (its listeners stay public
    // through the pod's entry, which this build's programs use).
    state.set_older_programs(OlderPrograms::from_hooks(["cgroup/bind6"]));
    step.run(&mut state, &mut kernel);
    assert_eq!(
        kernel.guarded,
        BTreeMap::from([(pod_cg, 5), (server_cg, 5)])
    );
    assert_eq!(kernel.ports, ports(&[pod_cg, server_cg]));

    // The next start replaced every older program: the pod's entry alone guards the pod.
    state.set_older_programs(OlderPrograms::default());
    step.run(&mut state, &mut kernel);
    assert_eq!(
        kernel.calls,
        vec![
            Op::Unguard(server_cg),
            Op::ClosePort(server_cg, 8080),
            Op::ClosePort(server_cg, 9464)
        ],
        "the container entry goes before its ports, which its processes match until then"
    );
    assert_eq!(kernel.guarded, BTreeMap::from([(pod_cg, 5)]));
    assert_eq!(kernel.ports, ports(&[pod_cg]));
}

#[test]
fn older_programs_are_told_from_their_hooks() {
    assert_eq!(OlderPrograms::from_hooks([]), OlderPrograms::default());
    let lsm = OlderPrograms::from_hooks(["lsm/file_open", "cgroup/connect6"]);
    assert!(lsm.any && !lsm.bind);
    let bind = OlderPrograms::from_hooks(["cgroup/bind4"]);
    assert!(bind.any && bind.bind);
}

/// A pod whose cgroup lies beyond the levels the kernel looks up is not counted as guarded: its pod
/// cgroup gets no entry (it would cover nothing beneath it), its running containers get their own,
/// and the metric and a warning say so. Here the kernel looks up one level: the Guaranteed pod's (2);
/// the Burstable pod sits at 3.
#[test]
fn pods_beyond_the_looked_up_levels_are_not_counted_as_guarded() {
    let node = Node::new();
    let burstable = node.create_pod();
    let server_cg = node.start(SERVER, 4242);
    let uid2 = "99999999-1111-2222-3333-444455556666";
    let dir2 = node.mount().join(format!("kubepods/pod{uid2}"));
    std::fs::create_dir_all(&dir2).unwrap();
    let guaranteed = std::fs::metadata(&dir2).unwrap().ino();
    let mut p2 = pod_with("fs-1", Some("no-exec"), http_containers(), None);
    p2.metadata.uid = Some(uid2.to_owned());
    p2.status.as_mut().unwrap().qos_class = Some("Guaranteed".into());

    let mut state = node.state(Enforcement::all());
    state.set_max_levels(1);
    state.upsert_pod(server_pod());
    state.upsert_pod(PodInfo::from_pod(&p2, Some(PROXY_IMAGE)).unwrap());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, summary) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert_eq!(summary.beyond_levels, vec![("tools/fs-0".to_owned(), 3)]);
    assert_eq!(desired.levels, Levels::from([2]));
    assert_eq!(
        desired.cgroups,
        BTreeMap::from([(guaranteed, 0), (server_cg, 0)]),
        "no entry for the Burstable pod's cgroup"
    );
    assert!(!desired.cgroups.contains_key(&burstable));
    assert!(desired.ports.contains(&(server_cg, 8080)));

    let metrics = Metrics::new();
    let mut kernel = RecordingEnforcer::default();
    let left = reconcile(&mut state, &mut Reconciler::new(), &mut kernel, &metrics);
    assert!(!left.retry);
    assert_eq!(
        kernel.guarded,
        BTreeMap::from([(guaranteed, 0), (server_cg, 0)])
    );
    let text = metrics.encode();
    assert!(
        text.contains("mcp_guard_agent_pods_beyond_levels 1"),
        "{text}"
    );
    assert!(text.contains("mcp_guard_agent_guarded_cgroups 2"), "{text}");
}

/// A public port that cannot be opened (the map is full) neither keeps the pod nor the pods after
/// it unguarded: they are guarded (a wildcard bind to the port is confined: fail closed), the
/// failure is counted, and the port is retried.
#[test]
fn a_pod_whose_public_port_cannot_be_opened_is_guarded_and_the_failure_counted() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(scheduled_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let metrics = Metrics::new();
    let mut kernel = RecordingEnforcer {
        fail_open_port: BTreeSet::from([pod_cg]),
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let left = reconcile(&mut state, &mut rec, &mut kernel, &metrics);
    assert!(left.retry, "the port is retried");
    assert_eq!(kernel.guarded, BTreeMap::from([(pod_cg, 0)]));
    assert!(kernel.ports.is_empty());
    let text = metrics.encode();
    assert!(
        text.contains("mcp_guard_agent_map_update_errors_total{op=\"open_port\"} 2"),
        "{text}"
    );
    assert!(text.contains("mcp_guard_agent_guarded_cgroups 1"), "{text}");

    kernel.fail_open_port.clear();
    let left = reconcile(&mut state, &mut rec, &mut kernel, &metrics);
    assert!(!left.retry);
    assert_eq!(
        kernel.ports,
        BTreeSet::from([(pod_cg, 8080), (pod_cg, 9464)])
    );
}

/// The levels cannot be set: the pod, whose cgroup covers its containers only through its level,
/// is not counted as guarded, and the container entries an older agent left stay; both are retried.
#[test]
fn a_pod_whose_level_cannot_be_set_keeps_its_container_entries() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    let cg = node.start(SERVER, 4242);
    let mut state = node.state(Enforcement::all());
    state.upsert_pod(server_pod());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let metrics = Metrics::new();
    let mut kernel = RecordingEnforcer {
        guarded: BTreeMap::from([(cg, 0)]),
        fail_set_levels: true,
        ..RecordingEnforcer::default()
    };
    let mut rec = Reconciler::new();
    let left = reconcile(&mut state, &mut rec, &mut kernel, &metrics);
    assert!(left.retry);
    assert_eq!(kernel.guarded, BTreeMap::from([(cg, 0)]));
    let text = metrics.encode();
    assert!(
        text.contains("mcp_guard_agent_map_update_errors_total{op=\"set_levels\"} 1"),
        "{text}"
    );

    kernel.fail_set_levels = false;
    reconcile(&mut state, &mut rec, &mut kernel, &metrics);
    assert_eq!(kernel.guarded, BTreeMap::from([(pod_cg, 0)]));
    assert_eq!(kernel.levels, Levels::from([3]));
}

/// Without `--proxy-image`, the injected proxy's ports are not public (the agent cannot tell it
/// from a forged one): the pod is guarded with no public port.
#[test]
fn without_the_proxy_image_no_port_is_public() {
    let node = Node::new();
    let pod_cg = node.create_pod();
    let mut state = node.state(Enforcement::all());
    let p = pod_with("fs-0", Some("no-exec"), http_containers(), None);
    state.upsert_pod(PodInfo::from_pod(&p, None).unwrap());
    state.set_policy(PolicyRef::new("tools", "no-exec"), loaded(25));
    let (desired, _) = state.desired(&HostCgroupFs, &HostResolver, &BTreeMap::new());
    assert_eq!(desired.cgroups, BTreeMap::from([(pod_cg, 0)]));
    assert!(desired.ports.is_empty());
}
