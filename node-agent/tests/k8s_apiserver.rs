//! Kubernetes mode against a real kube-apiserver (built from Debian's sources by the e2e harness).
//!
//! There is no kubelet: the test creates a pod bound to the node, then does what a kubelet and
//! containerd (cgroupfs driver) would, in order: the pod's cgroup v2 directory in a tempdir, the
//! container's directory beneath it with its `/proc/<pid>/root`, and the container status (through
//! the status subresource). The enforcer is a
//! recording fake (the real one writes BPF maps and is tested against the kernel in the host and QEMU
//! tests); everything else is the real agent: watches, ConfigMap loading, cgroup lookup, path
//! resolution, reconciliation, the Node Event and the metrics.
#![allow(clippy::unwrap_used)] // in tests, a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
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
    EnforceError, Enforcer, EventKind, KernelEvent, Levels, Slot, SlotRules, Verdict,
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

/// Guarded cgroups, per-slot rules, public ports and levels.
#[derive(Clone, Debug, Default)]
struct KernelState {
    guarded: BTreeMap<u64, Slot>,
    rules: BTreeMap<Slot, SlotRules>,
    ports: BTreeSet<(u64, u16)>,
    levels: Levels,
}

impl Kernel {
    fn snapshot(&self) -> KernelState {
        self.0.lock().unwrap().clone()
    }
}

impl Enforcer for Kernel {
    fn set_rules(&mut self, slot: Slot, rules: &SlotRules) -> Result<(), EnforceError> {
        self.0.lock().unwrap().rules.insert(slot, rules.clone());
        Ok(())
    }
    fn clear_rules(&mut self, slot: Slot) -> Result<(), EnforceError> {
        self.0.lock().unwrap().rules.remove(&slot);
        Ok(())
    }
    fn guard(&mut self, cgroup_id: u64, slot: Slot) -> Result<(), EnforceError> {
        self.0.lock().unwrap().guarded.insert(cgroup_id, slot);
        Ok(())
    }
    fn unguard(&mut self, cgroup_id: u64) -> Result<(), EnforceError> {
        self.0.lock().unwrap().guarded.remove(&cgroup_id);
        Ok(())
    }
    fn guarded(&self) -> Result<Vec<(u64, Slot)>, EnforceError> {
        let k = self.0.lock().unwrap();
        Ok(k.guarded.iter().map(|(c, s)| (*c, *s)).collect())
    }
    fn open_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError> {
        self.0.lock().unwrap().ports.insert((cgroup_id, port));
        Ok(())
    }
    fn close_port(&mut self, cgroup_id: u64, port: u16) -> Result<(), EnforceError> {
        self.0.lock().unwrap().ports.remove(&(cgroup_id, port));
        Ok(())
    }
    fn public_ports(&self) -> Result<Vec<(u64, u16)>, EnforceError> {
        Ok(self.0.lock().unwrap().ports.iter().copied().collect())
    }
    fn set_levels(&mut self, levels: &Levels) -> Result<(), EnforceError> {
        self.0.lock().unwrap().levels = levels.clone();
        Ok(())
    }
    fn levels(&self) -> Result<Levels, EnforceError> {
        Ok(self.0.lock().unwrap().levels.clone())
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

    // The guarded pod as the webhook leaves it (an `http` server and the proxy container), bound to
    // this node: the scheduler's work is done, the kubelet's not begun.
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "fs-0", "labels": {"mcpguard.io/guarded": "true"},
                     "annotations": {"mcpguard.io/policy": "no-exec"}},
        "spec": {"nodeName": NODE, "containers": [
            {"name": "server", "image": "server:1", "env": [{"name": "PORT", "value": "18080"}]},
            {"name": "mcp-guard-proxy", "image": "proxy:1", "args": [
                "--policy", "/etc/mcp-guard/policy/policy.json", "--listen", "0.0.0.0:8080",
                "--upstream", "http://127.0.0.1:18080", "--metrics", "0.0.0.0:9464",
                "--log", "/dev/stdout"],
             "ports": [{"containerPort": 8080}, {"containerPort": 9464}]},
        ]},
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

    // A real cluster always has the namespace `default`, where the agent's Node Event goes; a
    // freshly started API server creates it a moment after it starts serving.
    let namespaces = Api::<Namespace>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces.get_opt("default").await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "no namespace default");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The agent, on a kernel without BPF LSM (like this machine's host kernel). Its retries are
    // slow here, so that only its pod polling can guard the pod in time.
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("cgroup/kubepods/besteffort")).unwrap();
    let report = assess(&Capabilities {
        cgroup_v2: Probe::available(),
        bpf_lsm: Probe::unavailable("BPF_PROG_LOAD: Operation not permitted"),
        sock_addr: Probe::available(),
    });
    let mut config = Config::new(NODE, Layout::new(host.path().join("cgroup")), report);
    config.proc_root = host.path().join("proc");
    config.retry_interval = Duration::from_secs(600);
    config.pod_poll_interval = Duration::from_millis(20);
    // The image the operator injects: its container's --listen and --metrics are public ports.
    config.proxy_image = Some("proxy:1".to_owned());
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

    // No ConfigMap yet, no pod cgroup yet: nothing is guarded.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(kernel.snapshot().guarded.is_empty());
    assert!(metrics.is_ready());
    let cms = Api::<ConfigMap>::namespaced(client.clone(), NS);
    cms.create(&PostParams::default(), &config_map(25))
        .await
        .unwrap();
    eventually("the pod's cgroup is polled for", || {
        metrics
            .encode()
            .contains("mcp_guard_agent_pending_pods 1")
            .then_some(())
    })
    .await
    .unwrap();
    assert!(kernel.snapshot().guarded.is_empty());

    // The kubelet creates the pod's cgroup (cgroupfs driver), before anything of the pod runs: the
    // agent guards it at once, with the proxy's public ports and the pod cgroups' level.
    let pod_cgroup = host
        .path()
        .join(format!("cgroup/kubepods/besteffort/pod{uid}"));
    std::fs::create_dir(&pod_cgroup).unwrap();
    let pod_cgroup_id = std::fs::metadata(&pod_cgroup).unwrap().ino();
    let created = Instant::now();
    let (slot, rules) = loop {
        let k = kernel.snapshot();
        if let Some(slot) = k.guarded.get(&pod_cgroup_id).copied() {
            break (slot, k.rules[&slot].clone());
        }
        assert!(
            created.elapsed() < Duration::from_secs(20),
            "the pod's cgroup is not guarded"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let took = created.elapsed();
    eprintln!("the pod was guarded {took:?} after its cgroup appeared");
    assert!(
        took < Duration::from_secs(2),
        "guarded {took:?} after its cgroup appeared (retries are 600 s apart: polling did it)"
    );
    assert_eq!(rules.deny_ports, vec![25]);
    let k = kernel.snapshot();
    assert_eq!(
        k.ports,
        BTreeSet::from([(pod_cgroup_id, 8080), (pod_cgroup_id, 9464)])
    );
    assert_eq!(k.levels, Levels::from([3]), "kubepods/besteffort/pod<uid>");
    assert_eq!(k.guarded.len(), 1, "the pod's cgroup only: {:?}", k.guarded);

    // Its container starts (beneath the pod's cgroup) and the kubelet reports it.
    let cgroup = pod_cgroup.join(CONTAINER);
    std::fs::create_dir_all(&cgroup).unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), format!("{PID}\n")).unwrap();
    let cgroup_id = std::fs::metadata(&cgroup).unwrap().ino();
    let root = host.path().join(format!("proc/{PID}/root"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/shadow"), "x").unwrap();
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "server", "containerID": format!("containerd://{CONTAINER}"), "ready": true,
        "restartCount": 0, "image": "server:1", "imageID": "",
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}});
    pods.patch_status("fs-0", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(
        rules.files.is_empty(),
        "file rules are not enforced without BPF LSM: {rules:?}"
    );

    // A kernel event from the container, guarded through its pod, is counted (and would be
    // exported with its pod).
    events_tx
        .send(KernelEvent {
            kind: EventKind::Connect,
            verdict: Verdict::Denied,
            cgroup_id,
            guard_cgroup_id: pod_cgroup_id,
            slot,
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
        let k = kernel.snapshot();
        let slot = k.guarded.get(&pod_cgroup_id)?;
        (k.rules.get(slot)?.deny_ports == vec![26]).then_some(())
    })
    .await
    .unwrap();
    let text = metrics.encode();
    for needle in [
        "mcp_guard_agent_events_total{kind=\"connect\",verdict=\"denied\"} 1",
        "mcp_guard_agent_guarded_cgroups 1",
        "mcp_guard_agent_capability{feature=\"bpf_lsm\"} 0",
        "mcp_guard_agent_guarded_pods 1",
        "mcp_guard_agent_pending_pods 0",
        "mcp_guard_agent_late_pods_total 0",
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

    // The pod goes: its cgroup and public ports are released, the slot's rules and the levels
    // cleared.
    pods.delete("fs-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually("the pod's cgroup is released", || {
        let k = kernel.snapshot();
        (k.guarded.is_empty() && k.rules.is_empty() && k.ports.is_empty() && k.levels.is_empty())
            .then_some(())
    })
    .await
    .unwrap();

    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
