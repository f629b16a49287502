//! `http` transport: the proxy container takes over the server's port.
//!
//! The port entry the Service targets (P: name, number, protocol, hostPort, hostIP) moves, unchanged,
//! from the server container to the proxy container, so Services targeting it by name or number now
//! reach the proxy. The server container gets port S instead (`mcpguard.io/server-port`, default
//! P + 10000) and the env var `PORT=S`, which is how the server is told to move. Its `httpGet` and
//! `tcpSocket` probes that pointed at P (by number or name) keep P by number: the proxy forwards every
//! GET to the server, so an `httpGet` probe checks the server through the proxy (a `tcpSocket` one only
//! the proxy), which keeps working when the node-agent confines the server's listener to loopback.
//! `grpc` probes and lifecycle hooks of P point at S: a `postStart` hook runs before the proxy (the
//! next container) starts, so only the server itself can answer it. The proxy listens on 0.0.0.0:P
//! and forwards to http://127.0.0.1:S.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, LifecycleHandler, PodSpec, Probe,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_guard_crds::names::ANNOTATION_SERVER_PORT;

use super::annotations::PortRef;
use super::common::{
    Volumes, health_probe, pod_info_env, proxy_args, restricted_security_context, tcp_port,
};
use super::naming::Taken;
use super::ports;
use super::{
    InjectConfig, InjectError, METRICS_PORT_NAME, PORT_ENV, PROXY_CONTAINER, SERVER_PORT_NAME,
    SERVER_PORT_OFFSET,
};

/// Injects the proxy container into an `http` server's pod.
pub(super) fn inject(
    spec: &mut PodSpec,
    taken: &mut Taken,
    port: Option<PortRef>,
    server_port: Option<i32>,
    volumes: &Volumes,
    cfg: &InjectConfig,
) -> Result<(), InjectError> {
    let found = match &port {
        Some(port) => ports::find_one(&spec.containers, port)?,
        None => match ports::tcp(&spec.containers).as_slice() {
            [one] => *one,
            [] => return Err(InjectError::NoPort),
            several => {
                return Err(InjectError::SeveralPorts {
                    ports: ports::describe(&spec.containers, several.iter().copied()),
                });
            }
        },
    };
    ports::require_tcp(&spec.containers, found)?;
    let (ci, pi) = found;
    let (Some(moved), Some(server)) = (
        ports::get(&spec.containers, found).cloned(),
        spec.containers.get(ci),
    ) else {
        return Err(InjectError::NoPort);
    };
    let server_name = server.name.clone();
    let p = moved.container_port;

    let s = match server_port {
        Some(s) => s,
        None if p + SERVER_PORT_OFFSET > 65535 => {
            return Err(InjectError::ServerPortOutOfRange {
                port: p,
                moved: p + SERVER_PORT_OFFSET,
            });
        }
        None => p + SERVER_PORT_OFFSET,
    };
    if let Some(owner) = taken.port_owner(s) {
        return Err(InjectError::PortInUse {
            what: "where the MCP server would move to",
            port: s,
            owner: owner.to_owned(),
            annotation: ANNOTATION_SERVER_PORT,
        });
    }
    taken.reserve_port(s, &server_name);
    let proxy_name = taken.container(PROXY_CONTAINER);
    let m = taken
        .free_port(cfg.metrics_port, &proxy_name)
        .ok_or(InjectError::NoFreePort {
            from: cfg.metrics_port,
        })?;
    let server_port_name = taken.port_name(SERVER_PORT_NAME);
    let metrics_port_name = taken.port_name(METRICS_PORT_NAME);

    if let Some(server) = spec.containers.get_mut(ci) {
        if let Some(slot) = server.ports.as_mut().and_then(|ports| ports.get_mut(pi)) {
            *slot = tcp_port(server_port_name, s);
        }
        set_env(server, PORT_ENV, &s.to_string());
        retarget(server, p, moved.name.as_deref(), s);
    }
    let proxy = proxy_container(
        proxy_name,
        moved,
        tcp_port(metrics_port_name, m),
        s,
        volumes,
        cfg,
    );
    spec.containers.push(proxy);
    Ok(())
}

fn proxy_container(
    name: String,
    port: ContainerPort,
    metrics: ContainerPort,
    upstream: i32,
    volumes: &Volumes,
    cfg: &InjectConfig,
) -> Container {
    let listen = port.container_port;
    let m = metrics.container_port;
    Container {
        name,
        image: Some(cfg.proxy_image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        args: Some(proxy_args(listen, Some(upstream), m)),
        ports: Some(vec![port, metrics]),
        env: Some(pod_info_env()),
        volume_mounts: Some(volumes.proxy_mounts()),
        readiness_probe: Some(health_probe(m)),
        liveness_probe: Some(health_probe(m)),
        resources: Some(cfg.resources.clone()),
        security_context: Some(restricted_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// Sets `name=value`, replacing any existing `name` entries in place (the first one's position).
fn set_env(c: &mut Container, name: &str, value: &str) {
    let env = c.env.get_or_insert_with(Vec::new);
    let at = env.iter().position(|e| e.name == name).unwrap_or(env.len());
    env.retain(|e| e.name != name);
    env.insert(
        at.min(env.len()),
        EnvVar {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            ..EnvVar::default()
        },
    );
}

/// Retargets the container's probes and lifecycle hooks that target port `from` (by number, or by its
/// name `from_name`, which now belongs to the proxy container): `httpGet` and `tcpSocket` probes to
/// `from` by number (the proxy, which forwards GETs to the server), `grpc` probes and hooks to `to`
/// (the server itself; a `postStart` hook runs before the proxy container starts).
fn retarget(c: &mut Container, from: i32, from_name: Option<&str>, to: i32) {
    let hits = |port: &IntOrString| match port {
        IntOrString::Int(n) => *n == from,
        IntOrString::String(s) => Some(s.as_str()) == from_name || s.parse::<i32>() == Ok(from),
    };
    let fix = |port: &mut IntOrString, target: i32| {
        if hits(port) {
            *port = IntOrString::Int(target);
        }
    };
    let fix_actions =
        |http: Option<&mut HTTPGetAction>, tcp: Option<&mut TCPSocketAction>, target: i32| {
            if let Some(h) = http {
                fix(&mut h.port, target);
            }
            if let Some(t) = tcp {
                fix(&mut t.port, target);
            }
        };
    let probes: [&mut Option<Probe>; 3] = [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ];
    for probe in probes.into_iter().flatten() {
        fix_actions(probe.http_get.as_mut(), probe.tcp_socket.as_mut(), from);
        if let Some(grpc) = probe.grpc.as_mut()
            && grpc.port == from
        {
            grpc.port = to;
        }
    }
    if let Some(lifecycle) = c.lifecycle.as_mut() {
        let hooks: [&mut Option<LifecycleHandler>; 2] =
            [&mut lifecycle.post_start, &mut lifecycle.pre_stop];
        for hook in hooks.into_iter().flatten() {
            fix_actions(hook.http_get.as_mut(), hook.tcp_socket.as_mut(), to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_env_replaces_in_place() {
        let var = |n: &str, v: &str| EnvVar {
            name: n.into(),
            value: Some(v.into()),
            ..EnvVar::default()
        };
        let mut c = Container {
            env: Some(vec![
                var("A", "1"),
                var("PORT", "80"),
                var("B", "2"),
                var("PORT", "81"),
            ]),
            ..Container::default()
        };
        set_env(&mut c, "PORT", "18080");
        assert_eq!(
            c.env,
            Some(vec![var("A", "1"), var("PORT", "18080"), var("B", "2")])
        );
        let mut c = Container::default();
        set_env(&mut c, "PORT", "1");
        assert_eq!(c.env, Some(vec![var("PORT", "1")]));
    }
}
