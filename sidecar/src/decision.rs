//! Findings and decisions. Each detector returns findings; the decision takes the strongest action
//! (block > ask > log > allow) and combines their risks as `1 - Π(1 - rᵢ)`.

use std::fmt;
use std::sync::Arc;

use mcp_guard_policy::Action;
use serde::Serialize;

/// Which detector produced a finding. The names are metric labels and audit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Detector {
    /// `tools.allow`, `tools.deny`, `tools.blockUndeclared`.
    Tools,
    /// Argument rules.
    Rules,
    CredentialLeak,
    RateLimit,
    Sequence,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Tools => "tools",
            Detector::Rules => "rules",
            Detector::CredentialLeak => "credentialLeak",
            Detector::RateLimit => "rateLimit",
            Detector::Sequence => "sequence",
        }
    }
}

/// One reason to act on a message. `reason` never contains a secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub detector: Detector,
    /// The rule's id (a policy rule, a sequence, a secret type, or a fixed name like `tools.deny`).
    pub rule: Arc<str>,
    pub action: Action,
    pub risk: f64,
    pub reason: String,
}

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Allow,
    Log,
    Ask,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Log => "log",
            Verdict::Ask => "ask",
            Verdict::Block => "block",
        }
    }
}

impl From<Action> for Verdict {
    fn from(a: Action) -> Self {
        match a {
            Action::Log => Verdict::Log,
            Action::Ask => Verdict::Ask,
            Action::Block => Verdict::Block,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The combined judgement of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub risk: f64,
    pub findings: Vec<Finding>,
}

impl Decision {
    pub fn allow() -> Self {
        Self {
            verdict: Verdict::Allow,
            risk: 0.0,
            findings: Vec::new(),
        }
    }

    pub fn from_findings(findings: Vec<Finding>) -> Self {
        let verdict = findings
            .iter()
            .map(|f| Verdict::from(f.action))
            .max()
            .unwrap_or(Verdict::Allow);
        let keep = findings
            .iter()
            .fold(1.0, |acc, f| acc * (1.0 - f.risk.clamp(0.0, 1.0)));
        Self {
            verdict,
            risk: 1.0 - keep,
            findings,
        }
    }

    /// The finding that decided the verdict (the first one with the strongest action).
    pub fn deciding(&self) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|f| Verdict::from(f.action) == self.verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(action: Action, risk: f64, rule: &str) -> Finding {
        Finding {
            detector: Detector::Rules,
            rule: rule.into(),
            action,
            risk,
            reason: String::new(),
        }
    }

    #[test]
    fn strongest_action_wins_and_risks_combine() {
        let d = Decision::from_findings(vec![
            finding(Action::Log, 0.3, "a"),
            finding(Action::Block, 0.9, "b"),
            finding(Action::Ask, 0.6, "c"),
        ]);
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.deciding().map(|f| &*f.rule), Some("b"));
        let expected = 1.0 - (0.7 * 0.1 * 0.4);
        assert!((d.risk - expected).abs() < 1e-12, "{}", d.risk);
        assert_eq!(Decision::from_findings(vec![]), Decision::allow());
    }
}
