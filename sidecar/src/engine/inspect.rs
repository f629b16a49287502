//! What the engine reads in the server's messages: tool results (credential leaks, prompt injection,
//! taint sources) and tool lists (poisoned descriptions, rug pulls); and the taint check on sink calls.

use std::sync::Arc;

use mcp_guard_policy::Action;
use serde_json::Value;

use super::{DetectState, Engine};
use crate::decision::{Decision, Detector, Finding, Verdict};
use crate::detect::for_each_string;
use crate::detect::injection::{self, ScanContext};
use crate::detect::rugpull::{ChangeRisk, ToolDef};
use crate::detect::taint::{TaintOrigin, TaintState};

/// A tool result judged.
#[derive(Debug)]
pub struct ResultJudgement {
    pub decision: Decision,
    /// The result with injected spans removed, when the policy strips instead of blocking.
    pub stripped: Option<Value>,
}

/// A `tools/list` result judged.
#[derive(Debug)]
pub struct ListJudgement {
    pub decision: Decision,
    /// Tools with a finding whose action is block: removed from the list in enforce mode, and
    /// quarantined (their calls blocked) for the rest of the session.
    pub blocked_tools: Vec<String>,
}

impl Engine {
    /// Whether tool results must be parsed at all (so the proxy can skip it).
    pub fn inspects_results(&self) -> bool {
        let d = &self.policy.detectors;
        d.credential_leak.as_ref().is_some_and(|c| c.scan_results)
            || d.prompt_injection.as_ref().is_some_and(|p| p.scan_results)
            || d.taint.is_some()
    }

    /// Whether `tools/list` results must be parsed.
    pub fn inspects_tool_lists(&self) -> bool {
        self.policy.tools.pin_definitions
            || self
                .policy
                .detectors
                .prompt_injection
                .as_ref()
                .is_some_and(|p| p.scan_descriptions)
    }

    /// Whether a call reads from a taint source: its tool is a source, or an argument names a path
    /// matching `sources.paths`.
    pub fn is_taint_source(&self, tool: &str, args: &Value) -> bool {
        let Some(t) = &self.policy.detectors.taint else {
            return false;
        };
        if t.source_tools.is_match(tool) {
            return true;
        }
        let mut hit = false;
        if !t.source_paths.is_empty() {
            for_each_string(args, &mut |s| {
                hit |= s.starts_with('/') && t.source_paths.is_match(s)
            });
        }
        hit
    }

    /// Taint findings for a call to a sink tool.
    pub(super) fn taint_findings(
        &self,
        state: &DetectState,
        tool: &str,
        args: &Value,
        out: &mut Vec<Finding>,
    ) {
        let (Some(t), Some(tainted)) = (&self.policy.detectors.taint, &state.taint) else {
            return;
        };
        if !t.sink_tools.is_match(tool) || tainted.is_empty() {
            return;
        }
        let mut strings = Vec::new();
        for_each_string(args, &mut |s| strings.push(s));
        if let Some(hit) = tainted.check(&strings) {
            out.push(Finding {
                detector: Detector::Taint,
                rule: "taint".into(),
                action: t.action,
                risk: t.risk,
                reason: format!(
                    "the arguments carry a value from the result of call {} ({}), {:?}",
                    hit.origin.call_id, hit.origin.tool, hit.carrier
                ),
            });
        }
    }

    /// A tool result on its way back: credential leaks and prompt injection, per the policy.
    pub fn judge_result(&self, result: &Value) -> ResultJudgement {
        let d = &self.policy.detectors;
        let mut findings = Vec::new();
        if let Some(c) = d.credential_leak.as_ref().filter(|c| c.scan_results) {
            for kind in self.secret_kinds(result) {
                findings.push(Finding {
                    detector: Detector::CredentialLeak,
                    rule: kind.clone(),
                    action: c.action,
                    risk: c.risk,
                    reason: format!("the tool result carries a secret ({kind})"),
                });
            }
        }
        let mut stripped = None;
        if let Some(p) = d.prompt_injection.as_ref().filter(|p| p.scan_results) {
            let ctx = ScanContext { other_tools: &[] };
            let mut injected = false;
            for_each_string(result, &mut |s| {
                for f in injection::scan(s, &ctx) {
                    injected = true;
                    findings.push(Finding {
                        detector: Detector::PromptInjection,
                        rule: f.kind.as_str().into(),
                        action: p.action,
                        risk: p.risk,
                        reason: format!("the tool result {}", f.reason),
                    });
                }
            });
            if injected && p.strip && p.action != Action::Block {
                stripped = Some(map_strings(result, &|s| {
                    let found = injection::scan(s, &ctx);
                    if found.is_empty() {
                        s.to_owned()
                    } else {
                        injection::strip(s, &found)
                    }
                }));
            }
        }
        ResultJudgement {
            decision: Decision::from_findings(findings),
            stripped,
        }
    }

    /// Records what a result taints: all its text when the call read a source, and every secret the
    /// credential scanner recognises in it when `sources.secrets` is on.
    pub fn record_result(
        &self,
        state: &mut DetectState,
        call_id: &str,
        tool: &str,
        from_source: bool,
        result: &Value,
    ) {
        let Some(t) = &self.policy.detectors.taint else {
            return;
        };
        if !from_source && !t.source_secrets {
            return;
        }
        let origin = TaintOrigin {
            call_id: Arc::from(call_id),
            tool: Arc::from(tool),
        };
        let tainted = state.taint.get_or_insert_with(|| {
            TaintState::new(t.min_match as usize, t.max_fingerprints as usize)
        });
        for_each_string(result, &mut |s| {
            if from_source {
                tainted.add_secret(s, origin.clone());
            } else {
                // Scanner-found secrets are tainted whatever they look like (plain `add` skips text
                // without an opaque word, to keep prose and boilerplate out).
                for m in self.secrets.find(s) {
                    tainted.add_secret(&s[m.range.clone()], origin.clone());
                }
            }
        });
    }

    /// Taint fingerprints evicted, and values only partly fingerprinted, in this session so far
    /// (exported as metrics: neither is ever silent).
    pub fn taint_losses(state: &DetectState) -> (u64, u64) {
        state
            .taint
            .as_ref()
            .map_or((0, 0), |t| (t.evictions(), t.truncated()))
    }

    /// A `tools/list` result: poisoned descriptions and rug pulls. Tools with a blocking finding are
    /// quarantined for the session, whatever the mode (in audit mode the guard still forwards them).
    pub fn judge_tools_list(&self, state: &mut DetectState, result: &Value) -> ListJudgement {
        let defs: Vec<ToolDef> = result["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(ToolDef::from_json)
            .collect();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        let mut findings: Vec<(String, Finding)> = Vec::new();
        if let Some(p) = self
            .policy
            .detectors
            .prompt_injection
            .as_ref()
            .filter(|p| p.scan_descriptions)
        {
            for def in &defs {
                let others: Vec<&str> = names.iter().copied().filter(|n| *n != def.name).collect();
                let ctx = ScanContext {
                    other_tools: &others,
                };
                let mut texts = vec![def.description.clone()];
                for_each_string(&def.input_schema, &mut |s| texts.push(s.to_owned()));
                for text in &texts {
                    for f in injection::scan(text, &ctx) {
                        findings.push((
                            def.name.clone(),
                            Finding {
                                detector: Detector::PromptInjection,
                                rule: f.kind.as_str().into(),
                                action: p.action,
                                risk: p.risk,
                                reason: format!(
                                    "the description of tool `{}` {}",
                                    def.name, f.reason
                                ),
                            },
                        ));
                    }
                }
            }
        }
        if self.policy.tools.pin_definitions {
            for pull in state.pins.observe(&defs) {
                let action = match pull.risk {
                    ChangeRisk::High => Action::Block,
                    ChangeRisk::Low => Action::Log,
                };
                findings.push((
                    pull.tool.clone(),
                    Finding {
                        detector: Detector::RugPull,
                        rule: "rug-pull".into(),
                        action,
                        risk: action.default_risk(),
                        reason: format!(
                            "tool `{}` changed mid-session: {}",
                            pull.tool,
                            pull.changes.join("; ")
                        ),
                    },
                ));
            }
        }
        let mut blocked_tools: Vec<String> = Vec::new();
        for (tool, f) in &findings {
            if Verdict::from(f.action) == Verdict::Block && !blocked_tools.contains(tool) {
                blocked_tools.push(tool.clone());
                state
                    .quarantined
                    .entry(tool.clone())
                    .or_insert_with(|| Finding {
                        reason: format!("tool `{tool}` is quarantined: {}", f.reason),
                        ..f.clone()
                    });
            }
        }
        ListJudgement {
            decision: Decision::from_findings(findings.into_iter().map(|(_, f)| f).collect()),
            blocked_tools,
        }
    }
}

/// The value with every string passed through `f` (object keys unchanged).
fn map_strings(v: &Value, f: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(f(s)),
        Value::Array(items) => Value::Array(items.iter().map(|i| map_strings(i, f)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), map_strings(v, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}
