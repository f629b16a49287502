use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;

/// How a human is asked about a call whose decision is `ask`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AskSpec {
    /// `elicitation` asks through the MCP client (an `elicitation/create` request) when the client
    /// declared that capability; `none` never asks and always applies `fallback`.
    #[serde(default)]
    pub via: AskVia,
    /// How long to wait for an answer, between 1s and 10m. Defaults to 60s.
    #[serde(default = "default_timeout")]
    pub timeout: DurationSpec,
    /// What happens when nobody can be asked, or nobody answers in time: `block` (the default)
    /// or `allow`.
    #[serde(default)]
    pub fallback: AskFallback,
}

impl Default for AskSpec {
    fn default() -> Self {
        Self {
            via: AskVia::default(),
            timeout: default_timeout(),
            fallback: AskFallback::default(),
        }
    }
}

fn default_timeout() -> DurationSpec {
    DurationSpec::from_static("60s")
}

/// The channel used to ask.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AskVia {
    /// MCP elicitation (`elicitation/create`), for clients that declare the capability.
    #[default]
    Elicitation,
    /// Never ask; apply `fallback` at once.
    None,
}

/// The decision applied when asking is impossible or times out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AskFallback {
    /// Refuse the call.
    #[default]
    Block,
    /// Let the call through (and record that nobody approved it).
    Allow,
}
