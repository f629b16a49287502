//! Sliding-window rate limits, per tool and per session. Only calls that were forwarded count, so a
//! client that keeps retrying a blocked call is released once its window has passed.

use std::collections::{HashMap, VecDeque};

use mcp_guard_policy::compiled::{RateLimit, RateWindow};

use crate::decision::{Detector, Finding};

/// Timestamps (ms) of recent forwarded calls in one session.
#[derive(Debug, Default)]
pub struct RateState {
    per_tool: HashMap<String, VecDeque<u64>>,
    per_session: VecDeque<u64>,
}

/// Findings for a call to `tool` at `now_ms`.
pub fn check(
    policy: &RateLimit,
    state: &RateState,
    tool: &str,
    now_ms: u64,
    out: &mut Vec<Finding>,
) {
    if !policy.tools.is_match(tool) {
        return;
    }
    let mut over =
        |window: &RateWindow, log: Option<&VecDeque<u64>>, rule: &'static str, scope: String| {
            let recent = log.map_or(0, |l| in_window(l, window, now_ms));
            if recent >= window.max_calls as usize {
                out.push(Finding {
                    detector: Detector::RateLimit,
                    rule: rule.into(),
                    action: policy.action,
                    risk: policy.risk,
                    reason: format!(
                        "{scope}: {recent} calls within {} ms (limit {})",
                        window.window_ms, window.max_calls
                    ),
                });
            }
        };
    if let Some(w) = &policy.per_tool {
        over(
            w,
            state.per_tool.get(tool),
            "rate-limit.per-tool",
            format!("tool `{tool}`"),
        );
    }
    if let Some(w) = &policy.per_session {
        over(
            w,
            Some(&state.per_session),
            "rate-limit.per-session",
            "session".into(),
        );
    }
}

/// Records a forwarded call and drops timestamps older than every window.
pub fn record(policy: &RateLimit, state: &mut RateState, tool: &str, now_ms: u64) {
    if !policy.tools.is_match(tool) {
        return;
    }
    if let Some(w) = &policy.per_tool {
        let log = state.per_tool.entry(tool.to_owned()).or_default();
        push_bounded(log, w, now_ms);
    }
    if let Some(w) = &policy.per_session {
        push_bounded(&mut state.per_session, w, now_ms);
    }
}

/// Calls younger than the window: those at `t` with `now - t < window`. The log is in time order, so
/// this is a binary search: a policy with a large `maxCalls` does not make every call slower.
fn in_window(log: &VecDeque<u64>, w: &RateWindow, now_ms: u64) -> usize {
    log.len() - log.partition_point(|&t| now_ms.saturating_sub(t) >= w.window_ms)
}

/// Keeps at most `max_calls` entries: older ones can never matter again.
fn push_bounded(log: &mut VecDeque<u64>, w: &RateWindow, now_ms: u64) {
    let expired = |t: u64| now_ms.saturating_sub(t) >= w.window_ms;
    while log.front().is_some_and(|&t| expired(t)) || log.len() >= w.max_calls as usize {
        log.pop_front();
    }
    log.push_back(now_ms);
}

#[cfg(test)]
mod tests {
    use mcp_guard_policy::Action;
    use mcp_guard_policy::matcher::ToolGlobs;

    use super::*;

    fn policy(per_tool: Option<(u32, u64)>, per_session: Option<(u32, u64)>) -> RateLimit {
        let w = |(max_calls, window_ms)| RateWindow {
            max_calls,
            window_ms,
        };
        RateLimit {
            action: Action::Block,
            risk: 0.9,
            per_tool: per_tool.map(w),
            per_session: per_session.map(w),
            tools: ToolGlobs::new(&["*".into()]).unwrap(),
        }
    }

    /// Runs calls at the given times; returns which were over the limit.
    fn run(p: &RateLimit, calls: &[(&str, u64)]) -> Vec<bool> {
        let mut state = RateState::default();
        calls
            .iter()
            .map(|&(tool, t)| {
                let mut out = Vec::new();
                check(p, &state, tool, t, &mut out);
                if out.is_empty() {
                    record(p, &mut state, tool, t);
                }
                !out.is_empty()
            })
            .collect()
    }

    #[test]
    fn per_tool_window_slides() {
        let p = policy(Some((2, 1000)), None);
        let over = run(
            &p,
            &[
                ("a", 0),
                ("a", 100),
                ("a", 200),
                ("b", 300),
                ("a", 1001),
                ("a", 1050),
                ("a", 1101),
            ],
        );
        assert_eq!(over, [false, false, true, false, false, true, false]);
    }

    #[test]
    fn per_session_counts_every_tool() {
        let p = policy(None, Some((3, 10_000)));
        let over = run(&p, &[("a", 0), ("b", 1), ("c", 2), ("d", 3), ("a", 10_001)]);
        assert_eq!(over, [false, false, false, true, false]);
    }

    #[test]
    fn large_limits_count_exactly() {
        let p = policy(Some((1000, 1000)), None);
        let mut state = RateState::default();
        for t in 0..1000 {
            record(&p, &mut state, "a", t);
        }
        let over = |state: &RateState, now| {
            let mut out = Vec::new();
            check(&p, state, "a", now, &mut out);
            !out.is_empty()
        };
        assert!(over(&state, 999), "1000 calls within the window");
        assert!(!over(&state, 1000), "the call at t=0 has left the window");
        assert_eq!(
            in_window(&state.per_tool["a"], p.per_tool.as_ref().unwrap(), 1500),
            499
        );
    }

    #[test]
    fn blocked_calls_do_not_count() {
        let p = policy(Some((1, 1000)), None);
        // Hammering while blocked does not extend the block past the first call's window.
        let over = run(&p, &[("a", 0), ("a", 500), ("a", 900), ("a", 1001)]);
        assert_eq!(over, [false, true, true, false]);
    }
}
