//! Parts both transports share: volumes and their mounts, the proxy's flags, env, probes and the
//! restricted security context.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSpec, Probe, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_guard_crds::names::config_map_name;

use super::naming::Taken;
use super::{
    AUDIT_LOG, BIN_MOUNT, BIN_VOLUME, HEALTH_PATH, POLICY_FILE, POLICY_MOUNT, POLICY_VOLUME,
    PROXY_UID,
};

/// The volumes we add, with the names picked for them.
#[derive(Debug, Clone)]
pub(super) struct Volumes {
    policy: String,
    bin: Option<String>,
    config_map: String,
}

impl Volumes {
    /// Picks a free name for the policy volume, and for the bin volume with `stdio`.
    pub(super) fn new(taken: &mut Taken, policy: &str, stdio: bool) -> Self {
        Volumes {
            policy: taken.volume(POLICY_VOLUME),
            bin: stdio.then(|| taken.volume(BIN_VOLUME)),
            config_map: config_map_name(policy),
        }
    }

    /// Appends the volumes to the pod, after its own.
    pub(super) fn append_to(&self, spec: &mut PodSpec) {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        volumes.push(Volume {
            name: self.policy.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: self.config_map.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        if let Some(bin) = &self.bin {
            volumes.push(empty_dir(bin));
        }
    }

    /// The mounts of the container running the proxy: the policy (read-only).
    pub(super) fn proxy_mounts(&self) -> Vec<VolumeMount> {
        vec![mount(&self.policy, POLICY_MOUNT, true)]
    }

    /// The bin volume's mount, writable for the install init container, read-only elsewhere.
    pub(super) fn bin_mount(&self, read_only: bool) -> Option<VolumeMount> {
        self.bin
            .as_deref()
            .map(|bin| mount(bin, BIN_MOUNT, read_only))
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The proxy's flags up to (not including) a stdio server's `--`: `upstream` is the `http` server's
/// new port.
pub(super) fn proxy_args(listen: i32, upstream: Option<i32>, metrics: i32) -> Vec<String> {
    let mut args = vec![
        "--policy".to_owned(),
        POLICY_FILE.to_owned(),
        "--listen".to_owned(),
        format!("0.0.0.0:{listen}"),
    ];
    if let Some(upstream) = upstream {
        args.push("--upstream".to_owned());
        args.push(format!("http://127.0.0.1:{upstream}"));
    }
    args.extend([
        "--metrics".to_owned(),
        format!("0.0.0.0:{metrics}"),
        "--log".to_owned(),
        AUDIT_LOG.to_owned(),
    ]);
    args
}

/// `POD_NAME` and `POD_NAMESPACE` from the downward API (the proxy puts them in audit records).
pub(super) fn pod_info_env() -> Vec<EnvVar> {
    [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ]
    .into_iter()
    .map(|(name, field)| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    })
    .collect()
}

/// `GET /healthz` on the proxy's metrics port.
pub(super) fn health_probe(metrics: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(HEALTH_PATH.to_owned()),
            port: IntOrString::Int(metrics),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

/// A TCP container port.
pub(super) fn tcp_port(name: String, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// What the Pod Security Standard `restricted` asks for, as the distroless `nonroot` user, with a
/// read-only root filesystem.
pub(super) fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(PROXY_UID),
        run_as_group: Some(PROXY_UID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}
