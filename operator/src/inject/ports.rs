//! Finding the MCP server's port among the containers' declared ports (`mcpguard.io/port`).

use k8s_openapi::api::core::v1::{Container, ContainerPort};

use super::InjectError;
use super::annotations::PortRef;

/// A declared port: (container index, port index) in `spec.containers`.
pub(super) type Found = (usize, usize);

/// Every declared port of `containers` that `port` names (by name or by number).
pub(super) fn find(containers: &[Container], port: &PortRef) -> Vec<Found> {
    declared(containers)
        .filter(|(_, _, p)| match port {
            PortRef::Number(n) => p.container_port == *n,
            PortRef::Name(name) => p.name.as_deref() == Some(name),
        })
        .map(|(ci, pi, _)| (ci, pi))
        .collect()
}

/// The one port `port` names; errors if none or several do.
pub(super) fn find_one(containers: &[Container], port: &PortRef) -> Result<Found, InjectError> {
    match find(containers, port).as_slice() {
        [one] => Ok(*one),
        [] => Err(InjectError::PortNotFound {
            port: port.to_string(),
            declared: describe(containers, declared(containers).map(|(ci, pi, _)| (ci, pi))),
        }),
        several => Err(InjectError::AmbiguousPort {
            port: port.to_string(),
            matches: describe(containers, several.iter().copied()),
        }),
    }
}

/// The TCP ports declared by `containers`.
pub(super) fn tcp(containers: &[Container]) -> Vec<Found> {
    declared(containers)
        .filter(|(_, _, p)| is_tcp(p))
        .map(|(ci, pi, _)| (ci, pi))
        .collect()
}

/// Errors unless the port is TCP (the default protocol).
pub(super) fn require_tcp(containers: &[Container], (ci, pi): Found) -> Result<(), InjectError> {
    match get(containers, (ci, pi)) {
        Some(p) if !is_tcp(p) => Err(InjectError::PortNotTcp {
            port: describe(containers, [(ci, pi)]),
            protocol: p.protocol.clone().unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

pub(super) fn get(containers: &[Container], (ci, pi): Found) -> Option<&ContainerPort> {
    containers.get(ci)?.ports.as_ref()?.get(pi)
}

fn is_tcp(p: &ContainerPort) -> bool {
    matches!(p.protocol.as_deref(), None | Some("TCP"))
}

fn declared(containers: &[Container]) -> impl Iterator<Item = (usize, usize, &ContainerPort)> {
    containers.iter().enumerate().flat_map(|(ci, c)| {
        c.ports
            .iter()
            .flatten()
            .enumerate()
            .map(move |(pi, p)| (ci, pi, p))
    })
}

/// `container/name:number` (with `/protocol` when not TCP), comma-separated; `none` when empty.
pub(super) fn describe(containers: &[Container], found: impl IntoIterator<Item = Found>) -> String {
    let parts: Vec<String> = found
        .into_iter()
        .filter_map(|(ci, pi)| {
            let c = containers.get(ci)?;
            let p = get(containers, (ci, pi))?;
            let mut s = c.name.clone();
            s.push('/');
            if let Some(name) = &p.name {
                s.push_str(name);
                s.push(':');
            }
            s.push_str(&p.container_port.to_string());
            if !is_tcp(p) {
                s.push('/');
                s.push_str(p.protocol.as_deref().unwrap_or_default());
            }
            Some(s)
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The containers' names, comma-separated.
pub(super) fn container_names(containers: &[Container]) -> String {
    containers
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
