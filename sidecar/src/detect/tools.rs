//! `tools.allow`, `tools.deny` and `tools.blockUndeclared`.

use std::collections::HashSet;

use mcp_guard_policy::Action;
use mcp_guard_policy::compiled::Tools;

use crate::decision::{Detector, Finding};

/// Findings for a call to `tool`. `declared` is the set of tools the server declared in this session's
/// `tools/list` responses, `None` when no listing has been seen.
pub fn check(
    policy: &Tools,
    tool: &str,
    declared: Option<&HashSet<String>>,
    out: &mut Vec<Finding>,
) {
    let block = |rule: &'static str, reason: String| Finding {
        detector: Detector::Tools,
        rule: rule.into(),
        action: Action::Block,
        risk: Action::Block.default_risk(),
        reason,
    };
    if policy.deny.is_match(tool) {
        out.push(block(
            "tools.deny",
            format!("tool `{tool}` is denied by the policy"),
        ));
    } else if !policy.allow.is_match(tool) {
        out.push(block(
            "tools.allow",
            format!("tool `{tool}` is not in the policy's allow list"),
        ));
    }
    if policy.block_undeclared {
        let reason = match declared {
            None => Some(format!(
                "tool `{tool}` was called before the server listed its tools in this session"
            )),
            Some(set) if !set.contains(tool) => Some(format!(
                "tool `{tool}` was never declared by the server in this session"
            )),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            out.push(block("tools.undeclared", reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use mcp_guard_policy::matcher::ToolGlobs;

    use super::*;

    fn tools(allow: &[&str], deny: &[&str], block_undeclared: bool) -> Tools {
        let globs = |v: &[&str]| {
            ToolGlobs::new(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
        };
        Tools {
            allow: globs(allow),
            deny: globs(deny),
            block_undeclared,
            pin_definitions: false,
        }
    }

    fn rules_hit(t: &Tools, tool: &str, declared: Option<&HashSet<String>>) -> Vec<String> {
        let mut out = Vec::new();
        check(t, tool, declared, &mut out);
        out.into_iter().map(|f| f.rule.to_string()).collect()
    }

    #[test]
    fn deny_beats_allow_and_allow_is_a_list() {
        let t = tools(&["read_*", "list_*"], &["read_secret"], false);
        assert!(rules_hit(&t, "read_file", None).is_empty());
        assert_eq!(rules_hit(&t, "read_secret", None), ["tools.deny"]);
        assert_eq!(rules_hit(&t, "write_file", None), ["tools.allow"]);
    }

    #[test]
    fn undeclared_tools_are_blocked_when_asked() {
        let t = tools(&["*"], &[], true);
        let declared: HashSet<String> = ["echo".to_owned()].into();
        assert!(rules_hit(&t, "echo", Some(&declared)).is_empty());
        assert_eq!(
            rules_hit(&t, "ghost", Some(&declared)),
            ["tools.undeclared"]
        );
        assert_eq!(rules_hit(&t, "echo", None), ["tools.undeclared"]);
        let lax = tools(&["*"], &[], false);
        assert!(rules_hit(&lax, "ghost", Some(&declared)).is_empty());
    }
}
