//! The detection engine for one compiled policy: runs the detectors on a call and combines their
//! findings into a [`Decision`]. Pure: the caller passes the session's detector state and the time.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use mcp_guard_policy::{CompiledPolicy, Mode};
use serde_json::Value;

use crate::decision::{Decision, Detector, Finding};
use crate::detect::rules::RuleSet;
use crate::detect::secrets::SecretScanner;
use crate::detect::{for_each_string, rate, sequence, tools};

mod inspect;

pub use inspect::{ListJudgement, ResultJudgement};

/// Per-session state the detectors keep.
#[derive(Debug, Default)]
pub struct DetectState {
    rate: rate::RateState,
    sequences: sequence::SequenceState,
    /// Fingerprints of tainted values, created with the first source result.
    taint: Option<crate::detect::taint::TaintState>,
    /// Tool definitions pinned at their first listing.
    pins: crate::detect::rugpull::Pins,
    /// Tools whose definition was poisoned or pulled: calls to them are blocked for the session.
    quarantined: HashMap<String, Finding>,
    /// What the session has used, for `spec.budgets`.
    pub usage: Usage,
}

/// A session's consumption: forwarded calls, and bytes each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub calls: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Budget findings: a call is refused once the session has used up a budget.
fn budget_findings(b: &mcp_guard_policy::compiled::Budgets, used: &Usage, out: &mut Vec<Finding>) {
    let mut over = |limit: Option<u64>, used: u64, rule: &'static str, what: &str| {
        if let Some(limit) = limit.filter(|l| used >= *l) {
            out.push(Finding {
                detector: Detector::Budget,
                rule: rule.into(),
                action: mcp_guard_policy::Action::Block,
                risk: mcp_guard_policy::Action::Block.default_risk(),
                reason: format!("the session has used its budget of {limit} {what} ({used})"),
            });
        }
    };
    over(b.max_calls, used.calls, "budget.maxCalls", "tool calls");
    over(
        b.max_bytes_in,
        used.bytes_in,
        "budget.maxBytesIn",
        "bytes sent to the server",
    );
    over(
        b.max_bytes_out,
        used.bytes_out,
        "budget.maxBytesOut",
        "bytes received from the server",
    );
}

/// A compiled policy ready to judge calls.
#[derive(Debug)]
pub struct Engine {
    policy: Arc<CompiledPolicy>,
    rules: RuleSet,
    /// Built-in and custom secret patterns; always used for redaction, used for detection when the
    /// policy enables `credentialLeak`.
    secrets: SecretScanner,
}

impl Engine {
    pub fn new(policy: CompiledPolicy) -> Result<Self, String> {
        let rules = RuleSet::new(&policy.rules)
            .map_err(|e| format!("argument rules do not fit in one regex set: {e}"))?;
        let custom: Vec<(String, regex::Regex)> = policy
            .detectors
            .credential_leak
            .iter()
            .flat_map(|c| &c.custom)
            .map(|p| (p.id.clone(), p.regex.regex().clone()))
            .collect();
        Ok(Self {
            policy: Arc::new(policy),
            rules,
            secrets: SecretScanner::with_custom(&custom),
        })
    }

    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }

    pub fn mode(&self) -> Mode {
        self.policy.mode
    }

    /// Judges a `tools/call` before it is forwarded. `declared` is the session's declared tools, `None`
    /// when the server has not listed them yet.
    pub fn judge_call(
        &self,
        state: &DetectState,
        tool: &str,
        args: &Value,
        declared: Option<&HashSet<String>>,
        now_ms: u64,
    ) -> Decision {
        let p = &self.policy;
        let mut findings = Vec::new();
        tools::check(&p.tools, tool, declared, &mut findings);
        if let Some(why) = state.quarantined.get(tool) {
            findings.push(why.clone());
        }
        self.rules.check(tool, args, &mut findings);
        if let Some(c) = &p.detectors.credential_leak {
            for kind in self.secret_kinds(args) {
                findings.push(Finding {
                    detector: Detector::CredentialLeak,
                    rule: kind.clone(),
                    action: c.action,
                    risk: c.risk,
                    reason: format!("the arguments carry a secret ({kind})"),
                });
            }
        }
        if let Some(r) = &p.detectors.rate_limit {
            rate::check(r, &state.rate, tool, now_ms, &mut findings);
        }
        sequence::check(
            &p.detectors.sequences,
            &state.sequences,
            tool,
            now_ms,
            &mut findings,
        );
        budget_findings(&p.budgets, &state.usage, &mut findings);
        self.taint_findings(state, tool, args, &mut findings);
        Decision::from_findings(findings).with_thresholds(p.risk.ask_above, p.risk.block_above)
    }

    /// Records a call that was forwarded (rate windows and sequence progress).
    pub fn record_call(&self, state: &mut DetectState, tool: &str, now_ms: u64) {
        let p = &self.policy;
        state.usage.calls += 1;
        if let Some(r) = &p.detectors.rate_limit {
            rate::record(r, &mut state.rate, tool, now_ms);
        }
        sequence::record(&p.detectors.sequences, &mut state.sequences, tool, now_ms);
    }

    /// The value with every secret in its strings redacted, unless the policy turned redaction off.
    pub fn redact_value(&self, value: &Value) -> Value {
        let redact = self
            .policy
            .detectors
            .credential_leak
            .as_ref()
            .is_none_or(|c| c.redact);
        if !redact {
            return value.clone();
        }
        match value {
            Value::String(s) => match self.secrets.redact(s) {
                Cow::Borrowed(_) => value.clone(),
                Cow::Owned(r) => Value::String(r),
            },
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.secrets.redact(k).into_owned(), self.redact_value(v)))
                    .collect(),
            ),
            Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        }
    }

    /// Distinct secret kinds in the strings of a value, in a stable order.
    fn secret_kinds(&self, value: &Value) -> BTreeSet<Arc<str>> {
        let mut kinds = BTreeSet::new();
        for_each_string(value, &mut |s| {
            if self.secrets.contains_secret(s) {
                kinds.extend(self.secrets.find(s).into_iter().map(|m| m.kind));
            }
        });
        kinds
    }
}
