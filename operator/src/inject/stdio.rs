//! `stdio` transport: the server container runs the proxy, which runs the server as its child.
//!
//! The init container [`INSTALL_CONTAINER`](super::INSTALL_CONTAINER) copies the proxy binary into the
//! emptyDir mounted at [`BIN_MOUNT`]; the server container's command becomes
//! `/mcp-guard/bin/mcp-guard-proxy --policy ... --listen 0.0.0.0:P --metrics 0.0.0.0:M --log /dev/stdout
//! -- <command...> <args...>` (args cleared), so clients reach the server as Streamable HTTP on port P.
//! The server's stdout is piped to the proxy, so the container's stdout carries only audit records.
//! The server container's own security context, resources and probes are kept; it only gains the
//! metrics port, `POD_NAME`/`POD_NAMESPACE`, the mounts, and `/healthz` probes where it had none.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use mcp_guard_crds::names::ANNOTATION_PORT;

use super::annotations::PortRef;
use super::common::{
    Volumes, health_probe, pod_info_env, proxy_args, restricted_security_context, tcp_port,
};
use super::naming::Taken;
use super::ports;
use super::{
    BIN_MOUNT, DEFAULT_STDIO_PORT, INSTALL_CONTAINER, InjectConfig, InjectError, METRICS_PORT_NAME,
    POLICY_MOUNT, PROXY_PATH_IN_BIN, PROXY_PATH_IN_IMAGE, STDIO_PORT_NAME,
};

/// The port the proxy serves the stdio server on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    /// The server container's declared port at this index.
    Declared(usize),
    /// A port to declare (`mcpguard.io/port` names an undeclared number, or the default).
    Add { port: i32, what: &'static str },
}

/// Wraps a `stdio` server's command with the proxy.
pub(super) fn inject(
    spec: &mut PodSpec,
    taken: &mut Taken,
    port: Option<PortRef>,
    volumes: &Volumes,
    cfg: &InjectConfig,
) -> Result<(), InjectError> {
    let (ci, listen) = server(&spec.containers, port.as_ref())?;
    let Some(server) = spec.containers.get(ci) else {
        return Err(InjectError::NoContainers);
    };
    let Some(command) = server.command.as_ref().filter(|c| !c.is_empty()) else {
        return Err(InjectError::StdioWithoutCommand {
            container: server.name.clone(),
        });
    };
    for path in [BIN_MOUNT, POLICY_MOUNT] {
        let clash = server
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path.trim_end_matches('/') == path);
        if clash {
            return Err(InjectError::MountPathInUse {
                container: server.name.clone(),
                path: path.to_owned(),
            });
        }
    }
    let server_name = server.name.clone();

    let (p, added) = match listen {
        Listen::Declared(pi) => {
            ports::require_tcp(&spec.containers, (ci, pi))?;
            let p = ports::get(&spec.containers, (ci, pi)).map_or(0, |p| p.container_port);
            (p, None)
        }
        Listen::Add { port, what } => {
            if let Some(owner) = taken.port_owner(port) {
                return Err(InjectError::PortInUse {
                    what,
                    port,
                    owner: owner.to_owned(),
                    annotation: ANNOTATION_PORT,
                });
            }
            taken.reserve_port(port, &server_name);
            (port, Some(tcp_port(taken.port_name(STDIO_PORT_NAME), port)))
        }
    };
    let m = taken
        .free_port(cfg.metrics_port, &server_name)
        .ok_or(InjectError::NoFreePort {
            from: cfg.metrics_port,
        })?;
    let metrics = tcp_port(taken.port_name(METRICS_PORT_NAME), m);
    let install_name = taken.container(INSTALL_CONTAINER);

    let mut wrapped = vec![PROXY_PATH_IN_BIN.to_owned()];
    wrapped.extend(proxy_args(p, None, m));
    wrapped.push("--".to_owned());
    wrapped.extend(command.iter().cloned());
    wrapped.extend(server.args.iter().flatten().cloned());

    if let Some(server) = spec.containers.get_mut(ci) {
        server.command = Some(wrapped);
        server.args = None;
        let ports = server.ports.get_or_insert_with(Vec::new);
        ports.extend(added);
        ports.push(metrics);
        let env = server.env.get_or_insert_with(Vec::new);
        for var in pod_info_env() {
            if !env.iter().any(|e| e.name == var.name) {
                env.push(var);
            }
        }
        let mounts = server.volume_mounts.get_or_insert_with(Vec::new);
        mounts.extend(volumes.bin_mount(true));
        mounts.extend(volumes.proxy_mounts());
        server
            .readiness_probe
            .get_or_insert_with(|| health_probe(m));
        server.liveness_probe.get_or_insert_with(|| health_probe(m));
    }
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .push(install_container(install_name, volumes, cfg));
    Ok(())
}

/// Which container runs the server, and on which port the proxy serves it.
fn server(
    containers: &[Container],
    port: Option<&PortRef>,
) -> Result<(usize, Listen), InjectError> {
    match port {
        Some(PortRef::Number(n)) if ports::find(containers, &PortRef::Number(*n)).is_empty() => {
            if containers.len() == 1 {
                Ok((
                    0,
                    Listen::Add {
                        port: *n,
                        what: "named by mcpguard.io/port",
                    },
                ))
            } else {
                Err(InjectError::StdioUndeclaredPort {
                    port: *n,
                    containers: ports::container_names(containers),
                })
            }
        }
        Some(port) => {
            let (ci, pi) = ports::find_one(containers, port)?;
            Ok((ci, Listen::Declared(pi)))
        }
        None if containers.len() != 1 => Err(InjectError::StdioWhichContainer {
            containers: ports::container_names(containers),
        }),
        None => match ports::tcp(containers).as_slice() {
            [(ci, pi)] => Ok((*ci, Listen::Declared(*pi))),
            [] => Ok((
                0,
                Listen::Add {
                    port: i32::from(DEFAULT_STDIO_PORT),
                    what: "the default for a stdio server that declares no port",
                },
            )),
            several => Err(InjectError::SeveralPorts {
                ports: ports::describe(containers, several.iter().copied()),
            }),
        },
    }
}

fn install_container(name: String, volumes: &Volumes, cfg: &InjectConfig) -> Container {
    Container {
        name,
        image: Some(cfg.proxy_image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        command: Some(vec![
            PROXY_PATH_IN_IMAGE.to_owned(),
            "--install-to".to_owned(),
            BIN_MOUNT.to_owned(),
        ]),
        volume_mounts: Some(volumes.bin_mount(false).into_iter().collect()),
        resources: Some(cfg.resources.clone()),
        security_context: Some(restricted_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}
