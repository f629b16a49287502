use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Action;

/// One argument rule: when a call to one of `tools` has arguments matching every matcher in `args`,
/// the rule's `action` applies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name of the rule within the policy: lowercase letters, digits and `-`, at most 63
    /// characters. Blocked calls, audit records and metrics name it.
    pub id: String,
    /// What happens when the rule matches: `block`, `ask` or `log`.
    pub action: Action,
    /// Glob patterns of the tool names the rule applies to. Defaults to `["*"]` (every tool).
    #[serde(default = "super::all_tools")]
    pub tools: Vec<String>,
    /// Argument matchers; the rule matches when all of them match. At least one is required.
    pub args: Vec<ArgMatcherSpec>,
    /// Risk weight of a finding from this rule, between 0 and 1. Defaults by action:
    /// block 0.9, ask 0.6, log 0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub risk: Option<f64>,
    /// Human-readable reason, shown in audit records and in the error a blocked client receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A regular expression applied to part of a call's arguments. Set exactly one of `pointer` and
/// `anyString`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgMatcherSpec {
    /// JSON pointer (RFC 6901) into the call's `arguments` object, e.g. `/path` or `/options/0/url`.
    /// The matcher matches when the value there is a string (or number or boolean, as text) matching
    /// `regex`. A missing value does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Match `regex` against every string value anywhere in the arguments, at any depth, including
    /// object keys.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_string: bool,
    /// Regular expression (Rust `regex` syntax: no look-around or back-references; matching time is
    /// linear). Unanchored: use `^` and `$` to match whole values. Prefix `(?i)` for case-insensitive.
    pub regex: String,
}
