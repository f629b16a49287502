//! What the agent reads from a guarded pod and from a policy's ConfigMap (pure).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerStatus, Pod, PodSpec, VolumeMount,
};
use mcp_guard_crds::names::{ANNOTATION_POLICY, ANNOTATION_POLICY_SHA256, POLICY_KEY};
use mcp_guard_policy::compiled::{CompiledPolicy, Runtime};

use crate::cgroup::{ContainerId, QosClass};

/// The name the webhook gives the proxy container of `http` pods, suffixed `-1`, `-2`, ... when the
/// pod already has one (`mcp_guard_operator::inject::PROXY_CONTAINER`). Used only to find the
/// proxy's public ports: the proxy is confined like every other container of its pod.
pub const PROXY_CONTAINER: &str = "mcp-guard-proxy";

/// The init container that copies the proxy binary into a `stdio` pod, suffixed like
/// [`PROXY_CONTAINER`] (`mcp_guard_operator::inject::INSTALL_CONTAINER`).
pub const INSTALL_CONTAINER: &str = "mcp-guard-install";

/// Where the install init container copies the proxy binary to (an emptyDir volume mounted there,
/// read-only in the server container; `mcp_guard_operator::inject::BIN_MOUNT`).
pub const BIN_MOUNT: &str = "/mcp-guard/bin";

/// The proxy binary in the proxy image (`mcp_guard_operator::inject::PROXY_PATH_IN_IMAGE`).
pub const PROXY_PATH_IN_IMAGE: &str = "/usr/local/bin/mcp-guard-proxy";

/// The proxy binary as the server container of a `stdio` pod runs it
/// (`mcp_guard_operator::inject::PROXY_PATH_IN_BIN`).
pub const PROXY_PATH_IN_BIN: &str = "/mcp-guard/bin/mcp-guard-proxy";

/// The proxy flags whose address is a public port of the pod when it is a wildcard address: at most
/// one port each, so a pod has at most two public ports.
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
    /// which its binds keep (the pod serves clients and Prometheus there). At most two.
    pub public_ports: BTreeSet<u16>,
    /// The injected proxy container of an `http` pod (it runs the proxy image), by name.
    pub proxy_container: Option<String>,
    /// Why the spec's proxy-like containers or flags opened no public port (logged).
    pub refused_ports: Vec<String>,
}

/// A running container of a guarded pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    pub id: ContainerId,
}

impl PodInfo {
    /// Reads a pod; `None` when it lacks a namespace, name or UID. `proxy_image` is the image the
    /// operator injects (`--proxy-image`): only the proxy it injects opens public ports.
    pub fn from_pod(pod: &Pod, proxy_image: Option<&str>) -> Option<Self> {
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
        let proxy = pod
            .spec
            .as_ref()
            .map(|s| public_ports(s, proxy_image))
            .unwrap_or_default();
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
            public_ports: proxy.ports,
            proxy_container: proxy.proxy_container,
            refused_ports: proxy.refused,
        })
    }
}

fn running(cs: &ContainerStatus) -> bool {
    cs.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// The public ports of a pod, and what was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyPorts {
    /// At most two: the proxy's wildcard `--listen` and `--metrics` ports.
    pub ports: BTreeSet<u16>,
    /// The `http` proxy container, by name.
    pub proxy_container: Option<String>,
    /// Why a proxy-like container or one of its flags opened nothing.
    pub refused: Vec<String>,
}

/// The pod's public ports: the wildcard (`0.0.0.0` or `[::]`) addresses of `--listen` and
/// `--metrics` in the command line of the one container that runs the proxy the operator injected,
/// when that container declares the port (TCP) in its `ports`:
///
/// * `http` pods: the proxy container, named [`PROXY_CONTAINER`] (or `…-N`), running `proxy_image`
///   with its entrypoint (no `command`); its args are the proxy's flags.
/// * `stdio` pods: the container whose command starts with [`PROXY_PATH_IN_BIN`] (the server's own
///   arguments after `--` are not read), only when the binary there is the one the install init
///   container ([`INSTALL_CONTAINER`], running `proxy_image` with `--install-to /mcp-guard/bin`)
///   copied into an emptyDir that nothing else writes and that this container mounts at
///   [`BIN_MOUNT`] with nothing mounted beneath.
///
/// Names, commands and flags are the pod author's to write: without the image the operator injects
/// (`proxy_image` `None`) nothing is public, and a pod with more than one such container gets none.
pub fn public_ports(spec: &PodSpec, proxy_image: Option<&str>) -> ProxyPorts {
    let mut out = ProxyPorts::default();
    let Some(image) = proxy_image else {
        return out;
    };
    let mut proxies: Vec<(&Container, Vec<&str>, bool)> = Vec::new();
    for c in &spec.containers {
        match proxy_flags(spec, c, image) {
            Ok(Some((flags, http))) => proxies.push((c, flags, http)),
            Ok(None) => {}
            Err(why) => out.refused.push(format!("container {}: {why}", c.name)),
        }
    }
    let [(c, flags, http)] = proxies.as_slice() else {
        if proxies.len() > 1 {
            let names: Vec<&str> = proxies.iter().map(|(c, ..)| c.name.as_str()).collect();
            out.refused.push(format!(
                "{} containers run the injected proxy ({}); the webhook injects one: no public port",
                names.len(),
                names.join(", ")
            ));
        }
        return out;
    };
    if *http {
        out.proxy_container = Some(c.name.clone());
    }
    for flag in PUBLIC_FLAGS {
        let values = flag_values(flags, flag);
        let value = match values.as_slice() {
            [] => continue,
            [one] => *one,
            many => {
                out.refused.push(format!(
                    "container {}: {flag} is given {} times: no public port for it",
                    c.name,
                    many.len()
                ));
                continue;
            }
        };
        let Some(addr) = value.parse::<SocketAddr>().ok() else {
            continue;
        };
        if !addr.ip().is_unspecified() || addr.port() == 0 {
            continue;
        }
        if declares_tcp(c, addr.port()) {
            out.ports.insert(addr.port());
        } else {
            out.refused.push(format!(
                "container {}: port {} of {flag} is not declared (TCP) in its ports: not public",
                c.name,
                addr.port()
            ));
        }
    }
    out
}

/// Whether `name` is `base` or `base-N`, as the webhook names what it adds.
fn injected_name(name: &str, base: &str) -> bool {
    name.strip_prefix(base).is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn declares_tcp(c: &Container, port: u16) -> bool {
    c.ports.iter().flatten().any(|p| {
        p.container_port == i32::from(port) && p.protocol.as_deref().is_none_or(|p| p == "TCP")
    })
}

/// The values of `flag` (`--flag V` or `--flag=V`) among the proxy's flags.
fn flag_values<'a>(flags: &[&'a str], flag: &str) -> Vec<&'a str> {
    let mut values = Vec::new();
    let mut it = flags.iter();
    while let Some(arg) = it.next() {
        if *arg == flag {
            values.extend(it.next().copied());
        } else if let Some(v) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            values.push(v);
        }
    }
    values
}

/// The proxy's flags when `c` runs the injected proxy (`Some((flags, http))`), `None` when it does
/// not look like it does, or why it looks like it but is not.
fn proxy_flags<'a>(
    spec: &PodSpec,
    c: &'a Container,
    image: &str,
) -> Result<Option<(Vec<&'a str>, bool)>, String> {
    let args = || c.args.iter().flatten().map(String::as_str);
    if injected_name(&c.name, PROXY_CONTAINER) && c.command.is_none() {
        if c.image.as_deref() != Some(image) {
            return Err(format!(
                "named like the proxy, but its image {:?} is not the proxy image the agent was \
                 given (--proxy-image): no public port",
                c.image.as_deref().unwrap_or_default()
            ));
        }
        return Ok(Some((args().take_while(|a| *a != "--").collect(), true)));
    }
    let Some([exe, rest @ ..]) = c.command.as_deref() else {
        return Ok(None);
    };
    if exe != PROXY_PATH_IN_BIN {
        if injected_name(&c.name, PROXY_CONTAINER) {
            return Err(format!(
                "named like the proxy, but runs its own command {exe:?}: no public port"
            ));
        }
        return Ok(None);
    }
    installed_proxy(spec, c, image)
        .map_err(|why| format!("runs {PROXY_PATH_IN_BIN}, but {why}: no public port"))?;
    let flags = rest.iter().map(String::as_str).chain(args());
    Ok(Some((flags.take_while(|a| *a != "--").collect(), false)))
}

fn at_bin(m: &VolumeMount) -> bool {
    m.mount_path.trim_end_matches('/') == BIN_MOUNT
}

fn plain(m: &VolumeMount) -> bool {
    m.sub_path.as_deref().is_none_or(str::is_empty)
        && m.sub_path_expr.as_deref().is_none_or(str::is_empty)
}

/// Whether the binary at [`PROXY_PATH_IN_BIN`] in `server` is the one the install init container
/// copies from the proxy image (as `mcp_guard_operator::inject::stdio` lays the pod out).
fn installed_proxy(spec: &PodSpec, server: &Container, image: &str) -> Result<(), String> {
    let install_command = [PROXY_PATH_IN_IMAGE, "--install-to", BIN_MOUNT];
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let installer = inits.iter().find_map(|c| {
        let shaped = injected_name(&c.name, INSTALL_CONTAINER)
            && c.image.as_deref() == Some(image)
            && c.command
                .as_deref()
                .is_some_and(|cmd| cmd == install_command)
            && c.args.as_deref().is_none_or(<[String]>::is_empty);
        let mounts = c.volume_mounts.iter().flatten();
        let target = mounts
            .filter(|m| at_bin(m) && plain(m) && m.read_only != Some(true))
            .map(|m| m.name.as_str())
            .next();
        shaped.then_some(target).flatten().map(|v| (c, v))
    });
    let Some((installer, volume)) = installer else {
        return Err(format!(
            "the pod has no {INSTALL_CONTAINER} init container running the proxy image that \
             installs it"
        ));
    };
    let empty_dir = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == volume && v.empty_dir.is_some());
    if !empty_dir {
        return Err(format!("the install volume {volume} is not an emptyDir"));
    }
    let mounts: Vec<&VolumeMount> = server.volume_mounts.iter().flatten().collect();
    let at: Vec<&&VolumeMount> = mounts.iter().filter(|m| at_bin(m)).collect();
    if !matches!(at.as_slice(), [m] if m.name == volume && plain(m)) {
        return Err(format!(
            "it does not mount the install volume {volume} at {BIN_MOUNT}"
        ));
    }
    let beneath = format!("{BIN_MOUNT}/");
    if mounts
        .iter()
        .any(|m| m.mount_path.starts_with(&beneath) && !at_bin(m))
    {
        return Err(format!("it mounts something else beneath {BIN_MOUNT}"));
    }
    let ephemeral = spec.ephemeral_containers.iter().flatten().flat_map(|c| {
        c.volume_mounts
            .iter()
            .flatten()
            .map(move |m| (c.name.as_str(), m))
    });
    let writers = spec
        .containers
        .iter()
        .chain(inits)
        .filter(|c| !std::ptr::eq(*c, installer))
        .flat_map(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .map(move |m| (c.name.as_str(), m))
        })
        .chain(ephemeral)
        .find(|(_, m)| m.name == volume && m.read_only != Some(true));
    if let Some((writer, _)) = writers {
        return Err(format!(
            "container {writer} can write the install volume {volume}"
        ));
    }
    Ok(())
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
