use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Risk thresholds. A call's risk combines its findings as `1 - Π(1 - riskᵢ)`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RiskSpec {
    /// Ask a human when the combined risk reaches this value (0 < value <= 1), whatever the
    /// findings' own actions are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub ask_above: Option<f64>,
    /// Block when the combined risk reaches this value (0 < value <= 1). Must be above `askAbove`
    /// when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub block_above: Option<f64>,
}

/// Per-session budgets. Unset means unlimited.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetsSpec {
    /// Most `tools/call` requests one session may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_calls: Option<u64>,
    /// Most bytes the client may send to the server in one session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes_in: Option<u64>,
    /// Most bytes the server may send to the client in one session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes_out: Option<u64>,
}
