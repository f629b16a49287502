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
    /// `spec.risk` thresholds over the combined risk of a call's findings.
    Risk,
    /// `spec.budgets`: calls and bytes per session.
    Budget,
    /// The operator's kill switch: deny every `tools/call`.
    KillSwitch,
    /// The session lifecycle: calls before `initialize` completes.
    Session,
    /// A value from a taint source in the arguments of a sink tool.
    Taint,
    /// Prompt injection or tool poisoning in a description or a result.
    PromptInjection,
    /// A tool definition that changed within the session.
    RugPull,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Tools => "tools",
            Detector::Rules => "rules",
            Detector::CredentialLeak => "credentialLeak",
            Detector::RateLimit => "rateLimit",
            Detector::Sequence => "sequence",
            Detector::Risk => "risk",
            Detector::Budget => "budget",
            Detector::KillSwitch => "killSwitch",
            Detector::Session => "session",
            Detector::Taint => "taint",
            Detector::PromptInjection => "promptInjection",
            Detector::RugPull => "rugPull",
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

    /// Applies `spec.risk`: when the combined risk reaches `block_above` (or `ask_above`), the decision
    /// becomes at least block (or ask), with a finding that says so. Several weak findings can thus stop a
    /// call that none of them would stop alone.
    pub fn with_thresholds(mut self, ask_above: Option<f64>, block_above: Option<f64>) -> Self {
        let crossed = [
            (block_above, Action::Block, "risk.blockAbove"),
            (ask_above, Action::Ask, "risk.askAbove"),
        ]
        .into_iter()
        .find_map(|(limit, action, rule)| {
            limit.filter(|l| self.risk >= *l).map(|l| (l, action, rule))
        });
        if let Some((limit, action, rule)) = crossed
            && Verdict::from(action) > self.verdict
        {
            self.findings.push(Finding {
                detector: Detector::Risk,
                rule: rule.into(),
                action,
                risk: 0.0,
                reason: format!(
                    "combined risk {:.2} of {} findings reaches {limit}",
                    self.risk,
                    self.findings.len()
                ),
            });
            self.verdict = Verdict::from(action);
        }
        self
    }

    /// Adds a finding, keeping the verdict and the combined risk consistent.
    pub fn with_finding(mut self, f: Finding) -> Self {
        self.verdict = self.verdict.max(Verdict::from(f.action));
        self.risk = 1.0 - (1.0 - self.risk) * (1.0 - f.risk.clamp(0.0, 1.0));
        self.findings.insert(0, f);
        self
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

    #[test]
    fn thresholds_turn_accumulated_weak_findings_into_ask_or_block() {
        let weak = || {
            vec![
                finding(Action::Log, 0.3, "a"),
                finding(Action::Log, 0.3, "b"),
                finding(Action::Log, 0.3, "c"),
            ]
        };
        // 1 - 0.7^3 = 0.657
        let d = Decision::from_findings(weak()).with_thresholds(Some(0.5), Some(0.9));
        assert_eq!(d.verdict, Verdict::Ask);
        assert_eq!(d.deciding().map(|f| &*f.rule), Some("risk.askAbove"));
        let d = Decision::from_findings(weak()).with_thresholds(Some(0.5), Some(0.6));
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.findings.last().map(|f| &*f.rule), Some("risk.blockAbove"));
        let d = Decision::from_findings(weak()).with_thresholds(None, Some(0.7));
        assert_eq!(
            d.verdict,
            Verdict::Log,
            "below the threshold nothing changes"
        );
        // A threshold never weakens a decision.
        let strong = Decision::from_findings(vec![finding(Action::Block, 0.9, "x")])
            .with_thresholds(Some(0.5), None);
        assert_eq!((strong.verdict, strong.findings.len()), (Verdict::Block, 1));
        assert_eq!(
            Decision::allow()
                .with_thresholds(Some(0.1), Some(0.2))
                .verdict,
            Verdict::Allow
        );
    }
}
