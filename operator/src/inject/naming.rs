//! Names and port numbers already used in the pod, and picking free ones for what we add.
//!
//! * Container names are unique across containers, init containers and ephemeral containers.
//! * Volume names are unique in the pod.
//! * Port names we add are unique in the whole pod (Kubernetes only requires a container, but a
//!   Service or ServiceMonitor resolving a name picks the first container that declares it) and at
//!   most 15 characters.
//! * Port numbers are unique in the pod's network namespace, init containers included.
//!
//! A taken name gets a suffix: `mcp-guard-proxy` → `mcp-guard-proxy-1`, `-2`, ...

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// Longest container port name.
const MAX_PORT_NAME: usize = 15;
/// Longest container or volume name (a DNS-1123 label).
const MAX_LABEL: usize = 63;

/// What the pod already uses, plus what we reserved so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Taken {
    containers: BTreeSet<String>,
    volumes: BTreeSet<String>,
    port_names: BTreeSet<String>,
    /// Port number → the container declaring it (the first one).
    port_numbers: BTreeMap<i32, String>,
}

impl Taken {
    pub(super) fn of(spec: &PodSpec) -> Self {
        let mut taken = Taken::default();
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        for c in containers {
            taken.add_container(c);
        }
        for c in spec.ephemeral_containers.iter().flatten() {
            taken.containers.insert(c.name.clone());
        }
        for v in spec.volumes.iter().flatten() {
            taken.volumes.insert(v.name.clone());
        }
        taken
    }

    fn add_container(&mut self, c: &Container) {
        self.containers.insert(c.name.clone());
        for p in c.ports.iter().flatten() {
            if let Some(name) = &p.name {
                self.port_names.insert(name.clone());
            }
            self.port_numbers
                .entry(p.container_port)
                .or_insert_with(|| c.name.clone());
        }
    }

    /// A free container name based on `base`, now reserved.
    pub(super) fn container(&mut self, base: &str) -> String {
        reserve(&mut self.containers, base, MAX_LABEL)
    }

    /// A free volume name based on `base`, now reserved.
    pub(super) fn volume(&mut self, base: &str) -> String {
        reserve(&mut self.volumes, base, MAX_LABEL)
    }

    /// A free port name based on `base`, now reserved.
    pub(super) fn port_name(&mut self, base: &str) -> String {
        reserve(&mut self.port_names, base, MAX_PORT_NAME)
    }

    /// The container already declaring port `n`, if any.
    pub(super) fn port_owner(&self, n: i32) -> Option<&str> {
        self.port_numbers.get(&n).map(String::as_str)
    }

    /// Marks port `n` as used by `owner`.
    pub(super) fn reserve_port(&mut self, n: i32, owner: &str) {
        self.port_numbers
            .entry(n)
            .or_insert_with(|| owner.to_owned());
    }

    /// The first free port at or above `from`, now reserved for `owner`.
    pub(super) fn free_port(&mut self, from: u16, owner: &str) -> Option<i32> {
        let n = (i32::from(from).max(1)..=65535).find(|n| !self.port_numbers.contains_key(n))?;
        self.reserve_port(n, owner);
        Some(n)
    }
}

/// `base`, or `base-1`, `base-2`, ... (shortened to fit `max`), whichever is free first; inserted.
fn reserve(set: &mut BTreeSet<String>, base: &str, max: usize) -> String {
    let name = if set.contains(base) {
        // `set` is finite, so some suffix up to set.len() + 1 is free.
        (1..=set.len() + 1)
            .map(|i| {
                let suffix = format!("-{i}");
                let keep = base.len().min(max.saturating_sub(suffix.len()));
                let stem = base.get(..keep).unwrap_or(base).trim_end_matches('-');
                format!("{stem}{suffix}")
            })
            .find(|candidate| !set.contains(candidate))
            .unwrap_or_else(|| base.to_owned())
    } else {
        base.to_owned()
    };
    set.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        let mut set: BTreeSet<String> = ["guard-metrics".to_owned()].into();
        assert_eq!(reserve(&mut set, "guard-metrics", 15), "guard-metrics-1");
        for _ in 2..10 {
            reserve(&mut set, "guard-metrics", 15);
        }
        assert!(set.contains("guard-metrics-9"));
        // "-10" no longer fits after the full stem: the stem is shortened.
        assert_eq!(reserve(&mut set, "guard-metrics", 15), "guard-metric-10");
        assert_eq!(reserve(&mut set, "mcp", 15), "mcp");
        assert_eq!(reserve(&mut set, "mcp", 15), "mcp-1");
    }
}
