//! Sidecar injection: the pure function behind the pod-mutating webhook.
//!
//! [`inject`] looks at a pod being created (and what the webhook knows about its namespace and the
//! policies there) and answers [`Outcome::Skip`] (not opted in), [`Outcome::AlreadyInjected`]
//! (re-admission of a pod we injected) or [`Outcome::Inject`] with the pod to admit instead; the
//! handler diffs that pod into a JSON patch. It does no I/O, reads no clock and draws no random
//! numbers: the same input always gives the same pod.
//!
//! * `http` servers (the default): the proxy container [`PROXY_CONTAINER`] takes over the container port
//!   the Service targets (name, number, protocol, hostPort), the server moves to another port (told by
//!   the env var `PORT`), and the server's own probes are pointed at the new port.
//! * `stdio` servers: the init container [`INSTALL_CONTAINER`] copies the proxy binary into a shared
//!   emptyDir, and the server container's command becomes `mcp-guard-proxy ... -- <original command>`.
//!
//! Both get the compiled policy (ConfigMap `mcp-guard-policy-<policy>`) mounted at [`POLICY_MOUNT`],
//! the proxy writing its audit log to its stdout ([`AUDIT_LOG`], so it is the container's log), the
//! label `mcpguard.io/guarded: "true"` and the annotation `mcpguard.io/injected: <version>`. Everything else in the pod is left exactly as it was.
//! `docs/injection.md` is the user-facing description; keep the two in step.

mod annotations;
mod common;
mod error;
mod http;
mod naming;
mod ports;
mod stdio;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use mcp_guard_crds::names::{ANNOTATION_INJECTED, ANNOTATION_POLICY, LABEL_GUARDED};

pub use annotations::is_dns1123_subdomain;
pub use error::InjectError;

/// Name of the proxy container added to `http` pods (suffixed `-1`, `-2`, ... if the pod already has one).
pub const PROXY_CONTAINER: &str = "mcp-guard-proxy";
/// Name of the init container that copies the proxy binary into `stdio` pods.
pub const INSTALL_CONTAINER: &str = "mcp-guard-install";
/// Volume holding the compiled policy (the ConfigMap `mcp-guard-policy-<policy>`).
pub const POLICY_VOLUME: &str = "mcp-guard-policy";
/// Volume (emptyDir) the proxy binary is copied into for `stdio` pods.
pub const BIN_VOLUME: &str = "mcp-guard-bin";
/// Where the policy volume is mounted (read-only) in the container running the proxy.
pub const POLICY_MOUNT: &str = "/etc/mcp-guard/policy";
/// The compiled policy file the proxy reads (and hot-reloads).
pub const POLICY_FILE: &str = "/etc/mcp-guard/policy/policy.json";
/// The proxy's `--log`: its stdout, which the container runtime collects (`kubectl logs`). In a
/// `stdio` pod the server's stdout is piped to the proxy, so this stream holds only audit records.
pub const AUDIT_LOG: &str = "/dev/stdout";
/// Where the bin volume is mounted (read-only in the server container of `stdio` pods).
pub const BIN_MOUNT: &str = "/mcp-guard/bin";
/// The proxy binary inside the proxy image.
pub const PROXY_PATH_IN_IMAGE: &str = "/usr/local/bin/mcp-guard-proxy";
/// The proxy binary once copied into the bin volume (`stdio` pods).
pub const PROXY_PATH_IN_BIN: &str = "/mcp-guard/bin/mcp-guard-proxy";
/// Name of the container port on which the proxy serves `/metrics` and `/healthz`.
pub const METRICS_PORT_NAME: &str = "guard-metrics";
/// Name given to the port the `http` server moves to.
pub const SERVER_PORT_NAME: &str = "mcp-server";
/// Name given to the port added for a `stdio` server that did not declare it.
pub const STDIO_PORT_NAME: &str = "mcp";
/// Health endpoint of the proxy (on the metrics port).
pub const HEALTH_PATH: &str = "/healthz";
/// Env var telling an `http` server which port to listen on after the proxy took its port.
pub const PORT_ENV: &str = "PORT";
/// Port a `stdio` server is served on when it declares no port and has no `mcpguard.io/port`.
pub const DEFAULT_STDIO_PORT: u16 = 8080;
/// Added to the Service's port to get the port an `http` server moves to, unless
/// `mcpguard.io/server-port` says otherwise.
pub const SERVER_PORT_OFFSET: i32 = 10000;
/// Default metrics port of the proxy (the next free one is used when the pod already uses it).
pub const DEFAULT_METRICS_PORT: u16 = 9464;
/// User and group the proxy runs as (the distroless `nonroot` user).
pub const PROXY_UID: i64 = 65532;

/// How the operator's webhook injects: the proxy image and the proxy container's resources.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectConfig {
    /// The mcp-guard-proxy image (its entrypoint is the proxy; it holds [`PROXY_PATH_IN_IMAGE`]).
    pub proxy_image: String,
    /// `imagePullPolicy` of the injected containers; `None` leaves Kubernetes' default.
    pub image_pull_policy: Option<String>,
    /// Written into the pod's `mcpguard.io/injected` annotation.
    pub version: String,
    /// Resources of the proxy container (and of the `stdio` install init container).
    pub resources: ResourceRequirements,
    /// Preferred metrics/health port of the proxy; the next free port when the pod already uses it.
    pub metrics_port: u16,
}

impl InjectConfig {
    /// Defaults: requests cpu 10m and memory 32Mi, limit memory 128Mi (no cpu limit, so the proxy is
    /// never throttled on a burst), Kubernetes' default pull policy, metrics on port 9464.
    pub fn new(proxy_image: impl Into<String>, version: impl Into<String>) -> Self {
        let q = |s: &str| Quantity(s.to_owned());
        InjectConfig {
            proxy_image: proxy_image.into(),
            image_pull_policy: None,
            version: version.into(),
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), q("10m")),
                    ("memory".to_owned(), q("32Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_owned(), q("128Mi"))])),
                ..ResourceRequirements::default()
            },
            metrics_port: DEFAULT_METRICS_PORT,
        }
    }
}

/// What the handler knows about the pod's namespace (from a cache).
#[derive(Debug, Clone, Copy)]
pub struct Namespace<'a> {
    /// The namespace the pod is created in (the admission request's namespace).
    pub name: &'a str,
    /// Its labels (`mcpguard.io/injection`).
    pub labels: &'a BTreeMap<String, String>,
    /// Its annotations (`mcpguard.io/policy`, the default policy of its pods).
    pub annotations: &'a BTreeMap<String, String>,
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not opted in: leave the pod alone.
    Skip,
    /// Already injected by us (it carries `mcpguard.io/injected`): re-admission changes nothing.
    AlreadyInjected,
    /// The pod to admit instead (the handler diffs it into a JSON patch).
    Inject(Box<Pod>),
}

/// The MCP server's transport (annotation `mcpguard.io/transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    Stdio,
}

/// Whether `pod` runs the proxy: a container named like ours running the configured proxy image,
/// or a stdio container whose command is the proxy copied in by an install init container that runs
/// that image. (Names and commands alone are the pod author's to choose.)
fn carries_proxy(pod: &Pod, cfg: &InjectConfig) -> bool {
    let ours = |name: &str, prefix: &str, image: Option<&String>| {
        name.starts_with(prefix) && image.is_some_and(|i| *i == cfg.proxy_image)
    };
    pod.spec.as_ref().is_some_and(|spec| {
        let sidecar = spec
            .containers
            .iter()
            .any(|c| ours(&c.name, PROXY_CONTAINER, c.image.as_ref()));
        let installer = spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| ours(&c.name, INSTALL_CONTAINER, c.image.as_ref()));
        let wrapped = spec.containers.iter().any(|c| {
            c.command
                .as_ref()
                .and_then(|cmd| cmd.first())
                .is_some_and(|exe| exe == PROXY_PATH_IN_BIN)
        });
        sidecar || (installer && wrapped)
    })
}

/// Decides whether and how to inject the mcp-guard proxy into `pod`, created in namespace `ns`.
/// `policy_exists` says whether an `McpGuardPolicy` of that name exists in `ns`.
pub fn inject(
    pod: &Pod,
    ns: &Namespace<'_>,
    policy_exists: &dyn Fn(&str) -> bool,
    cfg: &InjectConfig,
) -> Result<Outcome, InjectError> {
    let empty = BTreeMap::new();
    let pod_annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    // The annotation alone proves nothing (anyone creating the pod can set it): a pod is injected
    // when it also carries the proxy, as a sidecar or as the wrapper of a stdio server's command.
    if pod_annotations.contains_key(ANNOTATION_INJECTED) && carries_proxy(pod, cfg) {
        return Ok(Outcome::AlreadyInjected);
    }
    if !annotations::opted_in(pod_annotations, ns)? {
        return Ok(Outcome::Skip);
    }
    let policy = annotations::policy(pod_annotations, ns)?;
    if !policy_exists(&policy) {
        return Err(InjectError::PolicyNotFound {
            policy,
            namespace: ns.name.to_owned(),
        });
    }
    let transport = annotations::transport(pod_annotations)?;
    let port = annotations::port(pod_annotations)?;
    let server_port = annotations::server_port(pod_annotations)?;

    let mut out = pod.clone();
    let spec = match out.spec.as_mut() {
        Some(spec) if !spec.containers.is_empty() => spec,
        _ => return Err(InjectError::NoContainers),
    };
    let mut taken = naming::Taken::of(spec);
    let volumes = common::Volumes::new(&mut taken, &policy, transport == Transport::Stdio);
    match transport {
        Transport::Http => http::inject(spec, &mut taken, port, server_port, &volumes, cfg)?,
        Transport::Stdio => {
            if server_port.is_some() {
                return Err(InjectError::ServerPortWithStdio);
            }
            stdio::inject(spec, &mut taken, port, &volumes, cfg)?;
        }
    }
    volumes.append_to(spec);

    let meta = &mut out.metadata;
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(LABEL_GUARDED.to_owned(), "true".to_owned());
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_POLICY.to_owned(), policy);
    annotations.insert(ANNOTATION_INJECTED.to_owned(), cfg.version.clone());
    Ok(Outcome::Inject(Box::new(out)))
}
