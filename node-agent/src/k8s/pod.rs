//! What the agent reads from a guarded pod and from a policy's ConfigMap (pure).

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use mcp_guard_crds::names::{ANNOTATION_POLICY, ANNOTATION_POLICY_SHA256, POLICY_KEY};
use mcp_guard_policy::compiled::{CompiledPolicy, Runtime};

use crate::cgroup::{ContainerId, QosClass};

/// The sidecar the webhook injects (`mcp_guard_operator::inject::PROXY_CONTAINER`). It is the guard,
/// not the guarded: it must reach collectors and own the pod's public port, so the runtime policy,
/// which confines the MCP server, does not apply to it.
pub const PROXY_CONTAINER: &str = "mcp-guard-proxy";

/// A guarded pod, as far as the agent cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `status.qosClass`, when set.
    pub qos: Option<QosClass>,
    /// The `mcpguard.io/policy` annotation (a policy in the pod's namespace).
    pub policy: Option<String>,
    /// The running containers to confine (the proxy sidecar and init containers excluded).
    pub containers: Vec<ContainerInfo>,
    /// Containers whose ID the agent cannot read (reported, not guarded).
    pub unreadable: Vec<String>,
}

/// A running container of a guarded pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    pub id: ContainerId,
}

impl PodInfo {
    /// Reads a pod; `None` when it lacks a namespace, name or UID. Pods that finished have no
    /// containers to confine.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let finished = status
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let mut containers = Vec::new();
        let mut unreadable = Vec::new();
        let statuses = status.and_then(|s| s.container_statuses.as_deref());
        for cs in statuses.unwrap_or_default() {
            let running = cs.state.as_ref().is_some_and(|s| s.running.is_some());
            if finished || !running || cs.name == PROXY_CONTAINER {
                continue;
            }
            let Some(raw) = cs.container_id.as_deref() else {
                continue;
            };
            match ContainerId::parse(raw) {
                Ok(id) => containers.push(ContainerInfo {
                    name: cs.name.clone(),
                    id,
                }),
                Err(_) => unreadable.push(format!("{}: {raw}", cs.name)),
            }
        }
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            qos: status
                .and_then(|s| s.qos_class.as_deref())
                .and_then(QosClass::from_status),
            policy: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_POLICY))
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
            containers,
            unreadable,
        })
    }
}

/// A policy as loaded from its ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedPolicy {
    pub runtime: Runtime,
    /// The ConfigMap's `mcpguard.io/policy-sha256`, for logs.
    pub sha256: Option<String>,
}

/// Reads `policy.json` from a policy's ConfigMap.
pub fn load_policy(cm: &ConfigMap) -> Result<LoadedPolicy, String> {
    let json = cm
        .data
        .as_ref()
        .and_then(|d| d.get(POLICY_KEY))
        .ok_or_else(|| format!("no {POLICY_KEY} key"))?;
    let compiled = CompiledPolicy::from_json(json)?;
    Ok(LoadedPolicy {
        runtime: compiled.runtime,
        sha256: cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_POLICY_SHA256))
            .cloned(),
    })
}
