//! What the agent reads from a guarded pod and from a policy's ConfigMap (pure).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, ContainerStatus, Pod, PodSpec};
use mcp_guard_crds::names::{ANNOTATION_POLICY, ANNOTATION_POLICY_SHA256, POLICY_KEY};
use mcp_guard_policy::compiled::{CompiledPolicy, Runtime};

use crate::cgroup::{ContainerId, QosClass};

/// The name the webhook gives the proxy container of `http` pods, suffixed `-1`, `-2`, ... when the
/// pod already has one (`mcp_guard_operator::inject::PROXY_CONTAINER`). Used only to find the
/// proxy's public ports: the proxy is confined like every other container of its pod.
pub const PROXY_CONTAINER: &str = "mcp-guard-proxy";

/// The proxy binary as the server container of a `stdio` pod runs it
/// (`mcp_guard_operator::inject::PROXY_PATH_IN_BIN`).
pub const PROXY_PATH_IN_BIN: &str = "/mcp-guard/bin/mcp-guard-proxy";

/// The proxy flags whose address is a public port of the pod when it is a wildcard address.
const PUBLIC_FLAGS: [&str; 2] = ["--listen", "--metrics"];

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
    /// The pod is done (`Succeeded` or `Failed`): nothing of it runs any more.
    pub finished: bool,
    /// Its running containers, every kind (containers, init containers and native sidecars,
    /// ephemeral containers): file and exec rules resolve inside each one's root, and events name
    /// them.
    pub containers: Vec<ContainerInfo>,
    /// Containers whose ID the agent cannot read (reported; their rules do not resolve).
    pub unreadable: Vec<String>,
    /// The pod's public ports: the injected proxy's wildcard `--listen` and `--metrics` ports,
    /// which its binds keep (the pod serves clients and Prometheus there).
    pub public_ports: BTreeSet<u16>,
}

/// A running container of a guarded pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    pub id: ContainerId,
}

impl PodInfo {
    /// Reads a pod; `None` when it lacks a namespace, name or UID.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let finished = status
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let mut containers = Vec::new();
        let mut unreadable = Vec::new();
        let statuses = status.into_iter().flat_map(|s| {
            let lists = [
                &s.container_statuses,
                &s.init_container_statuses,
                &s.ephemeral_container_statuses,
            ];
            lists.into_iter().flat_map(|l| l.iter().flatten())
        });
        for cs in statuses.filter(|cs| !finished && running(cs)) {
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
            finished,
            containers,
            unreadable,
            public_ports: pod.spec.as_ref().map(public_ports).unwrap_or_default(),
        })
    }
}

fn running(cs: &ContainerStatus) -> bool {
    cs.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// The pod's public ports: the wildcard (`0.0.0.0` or `[::]`) addresses of `--listen` and
/// `--metrics` in the command line of each container that runs the injected proxy: the proxy
/// container of an `http` pod (named [`PROXY_CONTAINER`]…, the image's entrypoint with these args),
/// or the server container of a `stdio` pod (its command starts with [`PROXY_PATH_IN_BIN`]; the
/// server's own arguments after `--` are not read).
pub fn public_ports(spec: &PodSpec) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for c in &spec.containers {
        let Some(flags) = proxy_flags(c) else {
            continue;
        };
        let mut flags = flags.take_while(|a| *a != "--");
        while let Some(flag) = flags.next() {
            let value = match flag.split_once('=') {
                Some((name, value)) if PUBLIC_FLAGS.contains(&name) => Some(value),
                None if PUBLIC_FLAGS.contains(&flag) => flags.next(),
                _ => None,
            };
            let addr = value.and_then(|v| v.parse::<SocketAddr>().ok());
            if let Some(addr) = addr.filter(|a| a.ip().is_unspecified() && a.port() != 0) {
                ports.insert(addr.port());
            }
        }
    }
    ports
}

/// The proxy's flags (and what follows them) when `c` runs the proxy.
fn proxy_flags(c: &Container) -> Option<impl Iterator<Item = &str>> {
    let leading: &[String] = match c.command.as_deref() {
        Some([exe, rest @ ..]) if exe == PROXY_PATH_IN_BIN => rest,
        None if c.name.starts_with(PROXY_CONTAINER) => &[],
        _ => return None,
    };
    let args = c.args.iter().flatten();
    Some(leading.iter().chain(args).map(String::as_str))
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

#[cfg(test)]
mod tests;
