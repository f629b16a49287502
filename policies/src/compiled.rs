//! The compiled policy: validated, normalized and precompiled. This is the `policy.json` that the
//! operator writes into the policy's ConfigMap and that the sidecar and node-agent load.
//!
//! Durations are milliseconds, CIDRs are parsed, paths are normalized, regexes and globs are compiled
//! (and recompiled with the same limits when the JSON is loaded, see [`crate::matcher`]). Loading it
//! never goes back to the [`PolicySpec`](crate::PolicySpec). The format is versioned by [`FORMAT`].

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::matcher::{PathGlobs, Pattern, ToolGlobs};
use crate::spec::{Action, AskFallback, AskVia, Mode};

/// The version of the `policy.json` format. Bumped on any incompatible change; loaders refuse versions
/// they do not know rather than misread them.
pub const FORMAT: u32 = 1;

/// A policy ready to enforce.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompiledPolicy {
    /// Always [`FORMAT`].
    pub format: u32,
    /// Which McpGuardPolicy this came from, when it came from one.
    #[serde(default)]
    pub source: PolicySource,
    pub mode: Mode,
    pub tools: Tools,
    pub rules: Vec<Rule>,
    pub detectors: Detectors,
    pub ask: Ask,
    pub risk: Risk,
    pub budgets: Budgets,
    pub runtime: Runtime,
}

impl CompiledPolicy {
    /// Loads `policy.json`, rebuilding every matcher. Refuses unknown format versions.
    pub fn from_json(json: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        let header: Header =
            serde_json::from_str(json).map_err(|e| format!("not a compiled policy: {e}"))?;
        if header.format != FORMAT {
            return Err(format!(
                "compiled policy format {} is not supported (this build reads format {FORMAT})",
                header.format
            ));
        }
        serde_json::from_str(json).map_err(|e| format!("invalid compiled policy: {e}"))
    }

    /// The JSON written to the ConfigMap: stable field order, pretty-printed for humans who
    /// `kubectl get configmap -o yaml`.
    pub fn to_json(&self) -> String {
        let mut s =
            serde_json::to_string_pretty(self).expect("a compiled policy always serializes");
        s.push('\n');
        s
    }

    /// Records which McpGuardPolicy this was compiled from.
    pub fn with_source(mut self, source: PolicySource) -> Self {
        self.source = source;
        self
    }
}

/// The McpGuardPolicy a compiled policy came from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tools {
    pub allow: ToolGlobs,
    pub deny: ToolGlobs,
    pub block_undeclared: bool,
    pub pin_definitions: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub action: Action,
    /// In [0, 1]; the action's default when the policy set none.
    pub risk: f64,
    pub tools: ToolGlobs,
    /// All must match.
    pub args: Vec<ArgMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgMatcher {
    pub target: ArgTarget,
    pub regex: Pattern,
}

/// Which values of the arguments a matcher looks at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ArgTarget {
    /// The value at this RFC 6901 pointer (validated).
    Pointer(String),
    /// Every string value and object key, at any depth.
    AnyString,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Detectors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_leak: Option<CredentialLeak>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<Sequence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taint: Option<Taint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_injection: Option<PromptInjection>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialLeak {
    pub action: Action,
    pub risk: f64,
    pub scan_results: bool,
    pub redact: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<NamedPattern>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedPattern {
    pub id: String,
    pub regex: Pattern,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub action: Action,
    pub risk: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_tool: Option<RateWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_session: Option<RateWindow>,
    pub tools: ToolGlobs,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateWindow {
    pub max_calls: u32,
    pub window_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sequence {
    pub id: String,
    pub action: Action,
    pub risk: f64,
    /// Step `i` is pattern `i`; `steps.matches(tool)` tells which steps a call can advance.
    pub steps: ToolGlobs,
    pub within_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub action: Action,
    pub risk: f64,
    pub source_tools: ToolGlobs,
    pub source_paths: PathGlobs,
    pub source_secrets: bool,
    pub sink_tools: ToolGlobs,
    pub min_match: u32,
    pub max_fingerprints: u32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptInjection {
    pub action: Action,
    pub risk: f64,
    pub scan_descriptions: bool,
    pub scan_results: bool,
    pub strip: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ask {
    pub via: AskVia,
    pub timeout_ms: u64,
    pub fallback: AskFallback,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Risk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_above: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budgets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_out: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Runtime {
    pub files: PathRules,
    pub exec: PathRules,
    pub network: Network,
}

impl Runtime {
    /// Whether the node-agent has anything to enforce.
    pub fn is_empty(&self) -> bool {
        self == &Runtime::default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathRules {
    pub deny: Vec<DeniedPath>,
}

/// A normalized absolute path (no trailing `/`, no `.` or `..`), and whether everything beneath it is
/// covered too.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeniedPath {
    pub path: String,
    pub subtree: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    pub egress: Egress,
    pub confine_listeners: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Egress {
    /// Longest prefix match over `allow` and `deny` decides; deny wins a tie; with `allow` empty,
    /// an address in no block is allowed (see `EgressSpec`). Empty: every address not denied.
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub deny_ports: Vec<u16>,
}
