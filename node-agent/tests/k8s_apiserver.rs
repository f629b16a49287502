//! Kubernetes mode against a real kube-apiserver (built from Debian's sources by the e2e harness).
//!
//! There is no kubelet: the test creates a pod bound to the node, writes the container status a
//! kubelet would (through the status subresource), and lays out the node's cgroup v2 tree and
//! `/proc/<pid>/root` in a tempdir, as containerd would with the cgroupfs driver. The enforcer is a
//! recording fake (the real one writes BPF maps and is tested against the kernel in the host and QEMU
//! tests); everything else is the real agent: watches, ConfigMap loading, cgroup lookup, path
//! resolution, reconciliation, the Node Event and the metrics.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mcp_guard_agent::cgroup::Layout;
use mcp_guard_agent::k8s::{self, Config};
use mcp_guard_agent::metrics::Metrics;
use mcp_guard_agent::model::{
    EnforceError, Enforcer, EventKind, KernelEvent, Slot, SlotRules, Verdict,
};
use mcp_guard_agent::otlp::EventSink;
use mcp_guard_agent::probe::{Capabilities, Probe, assess};
use mcp_guard_e2e::apiserver::ApiServer;
use mcp_guard_policy::compiled::{DeniedPath, Runtime};
use serde_json::json;
use tokio::sync::mpsc;

const NS: &str = "tools";
const NODE: &str = "node-1";
const CONTAINER: &str = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff";
const PID: u32 = 4242;

/// The kernel side, shared with the test so it can look while the agent runs.
#[derive(Clone, Debug, Default)]
struct Kernel(Arc<Mutex<KernelState>>);

/// Guarded cgroups and per-slot rules.
type KernelState = (BTreeMap<u64, Slot>, BTreeMap<Slot, SlotRules>);

impl Kernel {
    fn snapshot(&self) -> KernelState {
        self.0.lock().unwrap().clone()
    }
}

impl Enforcer for Kernel {
    fn set_rules(&mut self, slot: Slot, rules: &SlotRules) -> Result<(), EnforceError> {
        self.0.lock().unwrap().1.insert(slot, rules.clone());
        Ok(())
    }
    fn clear_rules(&mut self, slot: Slot) -> Result<(), EnforceError> {
        self.0.lock().unwrap().1.remove(&slot);
        Ok(())
    }
    fn guard(&mut self, cgroup_id: u64, slot: Slot) -> Result<(), EnforceError> {
        self.0.lock().unwrap().0.insert(cgroup_id, slot);
        Ok(())
    }
    fn unguard(&mut self, cgroup_id: u64) -> Result<(), EnforceError> {
        self.0.lock().unwrap().0.remove(&cgroup_id);
        Ok(())
    }
    fn guarded(&self) -> Result<Vec<(u64, Slot)>, EnforceError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .0
            .iter()
            .map(|(c, s)| (*c, *s))
            .collect())
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within 20s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn policy_json(port: u16) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/library/no-exec.yaml"),
    )
    .unwrap();
    let file = mcp_guard_policy::load::parse_documents(&text, "no-exec").unwrap();
    let mut compiled = file.policies[0].compile().unwrap();
    let mut runtime = Runtime::default();
    runtime.files.deny.push(DeniedPath {
        path: "/etc/shadow".into(),
        subtree: false,
    });
    runtime.network.egress.deny_ports.push(port);
    compiled.runtime = runtime;
    compiled.to_json()
}

fn config_map(port: u16) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": "mcp-guard-policy-no-exec", "namespace": NS},
        "data": {"policy.json": policy_json(port)},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_pods_and_policies_on_a_real_api_server() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("mcp_guard_agent=debug")
        .with_test_writer()
        .try_init();
    let api = ApiServer::start().unwrap();
    let client: Client = api.client().await.unwrap();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    // The guarded pod, bound to this node, and the status its kubelet would write.
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "fs-0", "labels": {"mcpguard.io/guarded": "true"},
                     "annotations": {"mcpguard.io/policy": "no-exec"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "server", "image": "server:1"}]},
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let qos = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .unwrap();
    assert_eq!(qos, "BestEffort", "set by the API server at creation");
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "server", "containerID": format!("containerd://{CONTAINER}"), "ready": true,
        "restartCount": 0, "image": "server:1", "imageID": "",
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}});
    pods.patch_status("fs-0", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    // The node: its cgroup v2 tree (cgroupfs driver) and the container's root.
    let host = tempfile::tempdir().unwrap();
    let cgroup = host
        .path()
        .join(format!("cgroup/kubepods/besteffort/pod{uid}/{CONTAINER}"));
    std::fs::create_dir_all(&cgroup).unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), format!("{PID}\n")).unwrap();
    let cgroup_id = std::fs::metadata(&cgroup).unwrap().ino();
    let root = host.path().join(format!("proc/{PID}/root"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/shadow"), "x").unwrap();

    // The agent, on a kernel without BPF LSM (like this machine's host kernel).
    let report = assess(&Capabilities {
        cgroup_v2: Probe::available(),
        bpf_lsm: Probe::unavailable("BPF_PROG_LOAD: Operation not permitted"),
        sock_addr: Probe::available(),
    });
    let mut config = Config::new(NODE, Layout::new(host.path().join("cgroup")), report);
    config.proc_root = host.path().join("proc");
    config.retry_interval = Duration::from_millis(200);
    let kernel = Kernel::default();
    let metrics = Arc::new(Metrics::new());
    let (events_tx, events_rx) = mpsc::unbounded_channel::<KernelEvent>();
    let events = Box::pin(futures::stream::unfold(events_rx, |mut rx| async move {
        rx.recv().await.map(|e| (e, rx))
    }));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(k8s::run(
        client.clone(),
        config,
        kernel.clone(),
        events,
        EventSink::new(metrics.clone(), None),
        metrics.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // No ConfigMap yet: nothing is guarded (the policy is missing).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(kernel.snapshot().0.is_empty());
    assert!(metrics.is_ready());

    // The operator writes the policy: the container's cgroup is guarded by it.
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    cms.create(&PostParams::default(), &config_map(25))
        .await
        .unwrap();
    let rules = eventually("the cgroup is guarded", || {
        let (guarded, rules) = kernel.snapshot();
        let slot = guarded.get(&cgroup_id)?;
        rules.get(slot).cloned()
    })
    .await
    .unwrap();
    assert_eq!(rules.deny_ports, vec![25]);
    assert!(
        rules.files.is_empty(),
        "file rules are not enforced without BPF LSM: {rules:?}"
    );

    // A kernel event is counted (and would be exported with its pod).
    events_tx
        .send(KernelEvent {
            kind: EventKind::Connect,
            verdict: Verdict::Denied,
            cgroup_id,
            slot: 0,
            pid: PID,
            comm: "curl".into(),
            path: None,
            inode: None,
            addr: Some("10.0.0.1".parse().unwrap()),
            port: Some(25),
        })
        .unwrap();

    // The policy changes: the rules follow.
    cms.replace("mcp-guard-policy-no-exec", &PostParams::default(), &{
        let mut cm = cms.get("mcp-guard-policy-no-exec").await.unwrap();
        cm.data = config_map(26).data;
        cm
    })
    .await
    .unwrap();
    eventually("the rules follow the ConfigMap", || {
        let (guarded, rules) = kernel.snapshot();
        let slot = guarded.get(&cgroup_id)?;
        (rules.get(slot)?.deny_ports == vec![26]).then_some(())
    })
    .await
    .unwrap();
    let text = metrics.encode();
    for needle in [
        "mcp_guard_agent_events_total{kind=\"connect\",verdict=\"denied\"} 1",
        "mcp_guard_agent_guarded_cgroups 1",
        "mcp_guard_agent_capability{feature=\"bpf_lsm\"} 0",
        "mcp_guard_agent_guarded_pods 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    // The capability Event on the Node.
    let events = Api::<KubeEvent>::all(client.clone());
    let node_events = events.list(&ListParams::default()).await.unwrap();
    let degraded = node_events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("EnforcementDegraded"))
        .expect("a Node Event");
    let regarding = degraded.regarding.as_ref().unwrap();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("Node"), Some(NODE))
    );
    assert!(
        degraded
            .note
            .as_deref()
            .unwrap()
            .contains("BPF LSM unavailable"),
        "{degraded:?}"
    );

    // The pod goes: its cgroup is released and the slot's rules cleared.
    pods.delete("fs-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually("the pod's cgroup is released", || {
        let (guarded, rules) = kernel.snapshot();
        (guarded.is_empty() && rules.is_empty()).then_some(())
    })
    .await
    .unwrap();

    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
