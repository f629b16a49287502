//! Argument rules. Every `anyString` matcher of every rule is in one `RegexSet`, run once over each string
//! of the arguments; `pointer` matchers look up their one value directly.

use mcp_guard_policy::compiled::{ArgTarget, Rule};
use regex::RegexSet;
use serde_json::Value;

use crate::decision::{Detector, Finding};
use crate::detect::for_each_string;

/// The policy's rules, precompiled for one-pass evaluation.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// All `anyString` regexes; `slots[rule][matcher]` is the index into this set.
    any_string: RegexSet,
    slots: Vec<Vec<Option<usize>>>,
}

impl RuleSet {
    pub fn new(rules: &[Rule]) -> Result<Self, regex::Error> {
        let mut patterns = Vec::new();
        let slots = rules
            .iter()
            .map(|r| {
                r.args
                    .iter()
                    .map(|m| match m.target {
                        ArgTarget::AnyString => {
                            patterns.push(m.regex.as_str().to_owned());
                            Some(patterns.len() - 1)
                        }
                        ArgTarget::Pointer(_) => None,
                    })
                    .collect()
            })
            .collect();
        let any_string = regex::RegexSetBuilder::new(patterns)
            .size_limit(mcp_guard_policy::matcher::REGEX_SIZE_LIMIT * 8)
            .build()?;
        Ok(Self {
            rules: rules.to_vec(),
            any_string,
            slots,
        })
    }

    /// Findings of the rules that apply to `tool` and whose matchers all match `args`.
    pub fn check(&self, tool: &str, args: &Value, out: &mut Vec<Finding>) {
        let applicable: Vec<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].tools.is_match(tool))
            .collect();
        if applicable.is_empty() {
            return;
        }
        let mut hits = vec![false; self.any_string.len()];
        let needs_strings = applicable
            .iter()
            .any(|&i| self.slots[i].iter().any(Option::is_some));
        if needs_strings {
            for_each_string(args, &mut |s| {
                for idx in self.any_string.matches(s).iter() {
                    hits[idx] = true;
                }
            });
        }
        for i in applicable {
            let rule = &self.rules[i];
            let all =
                rule.args
                    .iter()
                    .zip(&self.slots[i])
                    .all(|(m, slot)| match (&m.target, slot) {
                        (ArgTarget::AnyString, Some(idx)) => hits[*idx],
                        (ArgTarget::Pointer(p), _) => args
                            .pointer(p)
                            .and_then(scalar_text)
                            .is_some_and(|text| m.regex.regex().is_match(&text)),
                        (ArgTarget::AnyString, None) => false,
                    });
            if all {
                out.push(Finding {
                    detector: Detector::Rules,
                    rule: rule.id.as_str().into(),
                    action: rule.action,
                    risk: rule.risk,
                    reason: rule
                        .description
                        .clone()
                        .unwrap_or_else(|| format!("arguments match rule `{}`", rule.id)),
                });
            }
        }
    }
}

/// Strings as they are; numbers and booleans as their JSON text; containers and null do not match.
fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(b.to_string().into()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use mcp_guard_policy::load::parse_spec;
    use serde_json::json;

    use super::*;

    fn ruleset(rules: Value) -> RuleSet {
        let spec = parse_spec(json!({ "rules": rules })).unwrap();
        RuleSet::new(&mcp_guard_policy::compile(&spec).unwrap().rules).unwrap()
    }

    fn hits(rs: &RuleSet, tool: &str, args: Value) -> Vec<String> {
        let mut out = Vec::new();
        rs.check(tool, &args, &mut out);
        out.into_iter().map(|f| f.rule.to_string()).collect()
    }

    #[test]
    fn pointer_and_any_string_matchers() {
        let rs = ruleset(json!([
            {"id": "paths", "action": "block", "args": [{"pointer": "/path", "regex": "^/etc/"}]},
            {"id": "sql", "action": "ask", "tools": ["query"], "args": [{"anyString": true, "regex": "(?i)drop\\s+table"}]},
            {"id": "both", "action": "log", "args": [
                {"pointer": "/n", "regex": "^4[0-9]$"},
                {"anyString": true, "regex": "needle"}
            ]}
        ]));
        assert_eq!(hits(&rs, "read", json!({"path": "/etc/passwd"})), ["paths"]);
        assert!(hits(&rs, "read", json!({"path": "/srv/etc/x"})).is_empty());
        assert!(
            hits(&rs, "read", json!({"other": "/etc/passwd"})).is_empty(),
            "pointer looks at /path only"
        );
        assert_eq!(
            hits(
                &rs,
                "query",
                json!({"q": ["x", {"deep": "1; DROP  TABLE t"}]})
            ),
            ["sql"]
        );
        assert!(
            hits(&rs, "other", json!({"q": "drop table"})).is_empty(),
            "rule scoped to `query`"
        );
        assert_eq!(hits(&rs, "t", json!({"n": 42, "s": "a needle"})), ["both"]);
        assert!(
            hits(&rs, "t", json!({"n": 42, "s": "hay"})).is_empty(),
            "all matchers must match"
        );
        assert!(hits(&rs, "t", json!({"n": "x", "s": "needle"})).is_empty());
    }

    #[test]
    fn keys_count_as_strings() {
        let rs = ruleset(
            json!([{"id": "k", "action": "block", "args": [{"anyString": true, "regex": "^__proto__$"}]}]),
        );
        assert_eq!(hits(&rs, "t", json!({"a": {"__proto__": 1}})), ["k"]);
    }
}
