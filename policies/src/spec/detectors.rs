use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Action;
use crate::duration::DurationSpec;

/// The built-in detectors. Each runs only when its section is present.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectorsSpec {
    /// Secrets (cloud keys, tokens, private keys, passwords in connection strings, ...) in call
    /// arguments and, with `scanResults`, in tool results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_leak: Option<CredentialLeakSpec>,
    /// Sliding-window call limits per tool and per session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// Ordered call patterns within a time window (for example write a file, then execute it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<SequenceSpec>,
    /// Secret taint tracking: values read from sensitive sources that later appear in the arguments
    /// of egress tools, exact, encoded or partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taint: Option<TaintSpec>,
    /// Prompt injection and tool poisoning in tool descriptions and tool results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_injection: Option<PromptInjectionSpec>,
}

/// Credential leak detection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialLeakSpec {
    /// What happens to a call whose arguments (or, with `scanResults`, whose result) carry a secret.
    pub action: Action,
    /// Also scan tool results; a result carrying a secret is decided by `action` (a blocked result is
    /// replaced by a JSON-RPC error). Defaults to false.
    #[serde(default)]
    pub scan_results: bool,
    /// Replace detected secrets by `[REDACTED:<type>]` in audit records, logs and telemetry.
    /// Defaults to true; turning it off writes secrets into logs.
    #[serde(default = "super::default_true")]
    pub redact: bool,
    /// Extra secret patterns, for organisation-specific tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomSecretSpec>,
}

/// An organisation-specific secret pattern.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomSecretSpec {
    /// Name of the secret type, reported in findings and redactions: lowercase letters, digits and
    /// `-`, at most 63 characters.
    pub id: String,
    /// Regular expression matching the secret.
    pub regex: String,
}

/// Sliding-window rate limits. Set `perTool`, `perSession`, or both.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// What happens to a call over a limit.
    pub action: Action,
    /// Limit for calls to each single tool within one session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_tool: Option<RateWindowSpec>,
    /// Limit for all tool calls within one session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_session: Option<RateWindowSpec>,
    /// Glob patterns of the tools that count towards the limits. Defaults to `["*"]`.
    #[serde(default = "super::all_tools")]
    pub tools: Vec<String>,
}

/// At most `maxCalls` calls within any `window`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateWindowSpec {
    /// Calls allowed within one window; the next one is over the limit. At least 1.
    #[schemars(range(min = 1))]
    pub max_calls: u32,
    /// Length of the sliding window, a duration such as `10s`, `5m` or `1h30m`.
    pub window: DurationSpec,
}

/// An ordered pattern of tool calls within one session. It matches as a subsequence: other calls
/// between the steps do not hide it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SequenceSpec {
    /// Unique name of the sequence: lowercase letters, digits and `-`, at most 63 characters.
    pub id: String,
    /// What happens to the call that completes the sequence.
    pub action: Action,
    /// Glob patterns of tool names, in order; at least 2 and at most 16.
    pub steps: Vec<String>,
    /// The whole sequence must happen within this duration, from the first step to the last.
    pub within: DurationSpec,
    /// Risk weight of a finding, between 0 and 1. Defaults by action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub risk: Option<f64>,
}

/// Secret taint tracking.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaintSpec {
    /// What happens to a sink call whose arguments carry a tainted value.
    pub action: Action,
    /// Where tainted values come from.
    pub sources: TaintSourcesSpec,
    /// Where tainted values must not go.
    pub sinks: TaintSinksSpec,
    /// Shortest run of characters of a tainted value that counts as a partial leak. At least 8;
    /// defaults to 16.
    #[serde(default = "default_min_match")]
    #[schemars(range(min = 8, max = 256))]
    pub min_match: u32,
    /// Most fingerprints kept per session; the oldest are evicted first, and every eviction is
    /// counted in a metric. Defaults to 4096.
    #[serde(default = "default_max_fingerprints")]
    #[schemars(range(min = 16, max = 1048576))]
    pub max_fingerprints: u32,
}

fn default_min_match() -> u32 {
    16
}

fn default_max_fingerprints() -> u32 {
    4096
}

/// Sources of tainted values. At least one of `tools`, `paths` or `secrets` must be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaintSourcesSpec {
    /// Glob patterns of tools whose results are tainted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Glob patterns of file paths (`**` crosses directories) whose contents are tainted when a tool
    /// call reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Taint every secret the credential detector recognises in any tool result.
    #[serde(default)]
    pub secrets: bool,
}

/// Sinks: tools through which data can leave.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaintSinksSpec {
    /// Glob patterns of egress tool names (HTTP requests, messages, uploads, ...). At least one.
    pub tools: Vec<String>,
}

/// Prompt injection and tool poisoning detection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptInjectionSpec {
    /// What happens when injected instructions are found.
    pub action: Action,
    /// Scan tool descriptions and input schemas in `tools/list` results (tool poisoning).
    #[serde(default = "super::default_true")]
    pub scan_descriptions: bool,
    /// Scan tool results for injected instructions.
    #[serde(default)]
    pub scan_results: bool,
    /// When a result is not blocked, pass it with the offending spans removed instead of unchanged.
    #[serde(default)]
    pub strip: bool,
}
