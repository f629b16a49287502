//! The policy as users write it: the `spec` of an `McpGuardPolicy`.
//!
//! These types are the contract. They deserialize the YAML users apply (camelCase, unknown fields
//! rejected everywhere), and their doc comments are the user documentation: the CRD schema is generated
//! from them, so `kubectl explain mcpguardpolicy.spec.<field>` prints what is written here.
//! Validation beyond types (regexes, globs, CIDRs, durations, cross-field rules) happens in
//! [`crate::compile`], which reports every problem with its field path.

mod ask;
mod detectors;
mod limits;
mod rules;
mod runtime;
mod tools;

pub use ask::{AskFallback, AskSpec, AskVia};
pub use detectors::{
    CredentialLeakSpec, CustomSecretSpec, DetectorsSpec, PromptInjectionSpec, RateLimitSpec,
    RateWindowSpec, SequenceSpec, TaintSinksSpec, TaintSourcesSpec, TaintSpec,
};
pub use limits::{BudgetsSpec, RiskSpec};
pub use rules::{ArgMatcherSpec, RuleSpec};
pub use runtime::{EgressSpec, ExecSpec, FilesSpec, NetworkSpec, RuntimeSpec};
pub use tools::ToolsSpec;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an MCP guard policy allows, asks about and blocks. The proxy sidecar enforces `tools`, `rules`,
/// `detectors`, `ask`, `risk` and `budgets` on every JSON-RPC message; the node-agent enforces `runtime`
/// in the kernel for the guarded pod's processes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// `enforce` applies decisions (blocked calls are refused, asked calls wait for a human);
    /// `audit` passes every message and records what would have been blocked or asked.
    /// Defaults to `enforce`.
    #[serde(default)]
    pub mode: Mode,
    /// Which tools may be called at all, and how tool declarations are pinned.
    #[serde(default)]
    pub tools: ToolsSpec,
    /// Argument rules: regular expressions over a tool call's arguments, each with an action.
    /// Every rule is evaluated for every call; the strongest action wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
    /// Built-in detectors. A detector runs only when its section is present.
    #[serde(default)]
    pub detectors: DetectorsSpec,
    /// How a human is asked when a decision is `ask`, and what happens when nobody answers.
    #[serde(default)]
    pub ask: AskSpec,
    /// Thresholds that turn the combined risk of a call's findings into `ask` or `block`, so that
    /// several weak findings together can stop a call that none of them would stop alone.
    #[serde(default)]
    pub risk: RiskSpec,
    /// Per-session budgets: how many calls and bytes one MCP session may use before further calls
    /// are refused.
    #[serde(default)]
    pub budgets: BudgetsSpec,
    /// Kernel-level confinement of the MCP server's processes, enforced by the node-agent with BPF:
    /// files they may not open, programs they may not execute, addresses they may not connect to,
    /// and whether their listening sockets are confined to loopback.
    #[serde(default)]
    pub runtime: RuntimeSpec,
}

/// Whether decisions are applied or only recorded.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Apply decisions: blocked calls get a JSON-RPC error and are never forwarded.
    #[default]
    Enforce,
    /// Forward everything; audit records carry the decision that enforce mode would have made.
    Audit,
}

/// What happens to a tool call when a rule or detector matches it. When several match, the strongest
/// wins: `block` > `ask` > `log`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Record the finding and let the call through.
    Log,
    /// Ask a human (see `spec.ask`); the call proceeds only when approved.
    Ask,
    /// Refuse the call with a JSON-RPC error naming the rule; it never reaches the server.
    Block,
}

impl Action {
    /// The risk weight a finding with this action carries when its rule sets none.
    pub fn default_risk(self) -> f64 {
        match self {
            Action::Log => 0.3,
            Action::Ask => 0.6,
            Action::Block => 0.9,
        }
    }
}

fn default_true() -> bool {
    true
}

fn all_tools() -> Vec<String> {
    vec!["*".to_owned()]
}
