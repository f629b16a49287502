use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kernel-level confinement, enforced by the node-agent for the guarded pod's processes (BPF LSM for
/// files and exec, cgroup socket programs for the network). Where a node's kernel cannot enforce a
/// section, the agent reports it (metric, log, Kubernetes Event) and enforces the rest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeSpec {
    /// Files the server's processes may not open.
    #[serde(default)]
    pub files: FilesSpec,
    /// Programs the server's processes may not execute.
    #[serde(default)]
    pub exec: ExecSpec,
    /// Network connections and listening sockets.
    #[serde(default)]
    pub network: NetworkSpec,
}

/// File access rules.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesSpec {
    /// Absolute paths that may not be opened. A path ending in `/` denies the directory and
    /// everything beneath it. Paths are resolved inside the container when the rule is applied
    /// (the kernel matches the file itself, so links and bind mounts do not bypass it); no globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Program execution rules.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecSpec {
    /// Absolute paths of programs that may not be executed. A path ending in `/` denies every
    /// program beneath that directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Network rules.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// Outgoing connections (TCP connect and UDP sends to a connected address).
    #[serde(default)]
    pub egress: EgressSpec,
    /// Rewrite the server's wildcard binds (`0.0.0.0`, `::`) to loopback, so that nothing outside
    /// the pod can reach the server except through the mcp-guard proxy.
    #[serde(default)]
    pub confine_listeners: bool,
}

/// Egress rules. Loopback is always reachable (the proxy talks to the server over it). For a destination
/// address, the most specific block in `allow` or `deny` that contains it decides (longest prefix
/// match; when both lists hold the same block, `deny` wins). An address in no block is allowed when
/// `allow` is empty and refused otherwise. A destination port in `denyPorts` is refused on any address.
/// So `deny: [10.0.0.0/8]` with `allow: [10.96.0.10/32]` keeps the cluster DNS reachable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressSpec {
    /// CIDR blocks (IPv4 or IPv6, e.g. `10.0.0.0/8`, `fd00::/8`; a bare address means that one
    /// address) that may be reached. When empty, every address not denied may be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// CIDR blocks that may not be reached, except for more specific blocks listed in `allow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Destination ports (1-65535) that may never be reached, on any address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(range(min = 1, max = 65535)))]
    pub deny_ports: Vec<u32>,
}
