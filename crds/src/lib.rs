use kube::CustomResource;
use mcp_guard_policy::PolicySpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "mcpguard.io",
    version = "v1alpha1",
    kind = "McpGuardPolicy",
    namespaced
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct McpGuardPolicySpec(pub PolicySpec);
