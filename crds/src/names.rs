//! Stable names shared by the operator, the proxy and the node-agent: annotations, labels and the
//! ConfigMap a policy compiles into. Changing one is a breaking change for running clusters.

/// Pod annotation opting a pod in (`"true"`) or out (`"false"`) of sidecar injection.
pub const ANNOTATION_INJECT: &str = "mcpguard.io/inject";
/// Pod (or namespace) annotation naming the `McpGuardPolicy`, in the pod's namespace.
pub const ANNOTATION_POLICY: &str = "mcpguard.io/policy";
/// Pod annotation: how the MCP server speaks, `http` (the default) or `stdio`.
pub const ANNOTATION_TRANSPORT: &str = "mcpguard.io/transport";
/// Pod annotation: the container port (name or number) clients reach the MCP server on.
pub const ANNOTATION_PORT: &str = "mcpguard.io/port";
/// Pod annotation: where an HTTP server listens once the proxy has taken over its port.
pub const ANNOTATION_SERVER_PORT: &str = "mcpguard.io/server-port";
/// Pod annotation set by the webhook: the mcp-guard version that injected the sidecar.
pub const ANNOTATION_INJECTED: &str = "mcpguard.io/injected";
/// Pod label set by the webhook on injected pods (`"true"`); the node-agent watches it.
pub const LABEL_GUARDED: &str = "mcpguard.io/guarded";
/// Namespace label opting every pod of the namespace in (`enabled`) or out (`disabled`).
pub const LABEL_INJECTION: &str = "mcpguard.io/injection";

/// ConfigMap annotation: the `metadata.generation` of the policy it was compiled from.
pub const ANNOTATION_POLICY_GENERATION: &str = "mcpguard.io/policy-generation";
/// ConfigMap annotation: hex SHA-256 of the `policy.json` value.
pub const ANNOTATION_POLICY_SHA256: &str = "mcpguard.io/policy-sha256";
/// The ConfigMap key holding the compiled policy.
pub const POLICY_KEY: &str = "policy.json";

/// The ConfigMap a policy named `policy` compiles into.
pub fn config_map_name(policy: &str) -> String {
    format!("mcp-guard-policy-{policy}")
}
