//! Sequences: ordered steps within a window, matched as a subsequence, so benign calls between the
//! steps do not hide the pattern. Only forwarded calls advance a sequence.
//!
//! State per sequence: `starts[k]` is the start time of the most recent partial match that has completed
//! steps `0..k` (the most recent start gives the best chance to finish within the window). A call
//! matching step `k` advances `starts[k]` to `starts[k + 1]`; a call completing the last step is a finding.

use mcp_guard_policy::compiled::Sequence;

use crate::decision::{Detector, Finding};

/// Progress of every sequence in one session.
#[derive(Debug, Default)]
pub struct SequenceState {
    starts: Vec<Vec<Option<u64>>>,
}

impl SequenceState {
    fn for_seq(&mut self, i: usize, steps: usize) -> &mut Vec<Option<u64>> {
        if self.starts.len() <= i {
            self.starts.resize_with(i + 1, Vec::new);
        }
        let s = &mut self.starts[i];
        if s.len() != steps {
            *s = vec![None; steps];
        }
        s
    }
}

/// Findings for a call to `tool` at `now_ms`: sequences this call would complete.
pub fn check(
    seqs: &[Sequence],
    state: &SequenceState,
    tool: &str,
    now_ms: u64,
    out: &mut Vec<Finding>,
) {
    for (i, seq) in seqs.iter().enumerate() {
        let last = seq.steps.len() - 1;
        let Some(started) = state
            .starts
            .get(i)
            .and_then(|s| s.get(last).copied().flatten())
        else {
            continue;
        };
        if now_ms.saturating_sub(started) <= seq.within_ms
            && seq.steps.matches(tool).contains(&last)
        {
            out.push(Finding {
                detector: Detector::Sequence,
                rule: seq.id.as_str().into(),
                action: seq.action,
                risk: seq.risk,
                reason: format!(
                    "sequence `{}` completed by `{tool}` ({} steps within {} ms)",
                    seq.id,
                    seq.steps.len(),
                    now_ms - started
                ),
            });
        }
    }
}

/// Advances every sequence with a forwarded call.
pub fn record(seqs: &[Sequence], state: &mut SequenceState, tool: &str, now_ms: u64) {
    for (i, seq) in seqs.iter().enumerate() {
        let matched = seq.steps.matches(tool);
        if matched.is_empty() {
            continue;
        }
        let steps = seq.steps.len();
        let starts = state.for_seq(i, steps);
        // Highest step first, so that one call never advances two steps of the same sequence.
        for &k in matched.iter().rev() {
            if k == 0 {
                starts[1.min(steps - 1)] = Some(now_ms);
            } else if k + 1 < steps
                && let Some(t0) = starts[k]
                && now_ms.saturating_sub(t0) <= seq.within_ms
            {
                starts[k + 1] = Some(starts[k + 1].map_or(t0, |t| t.max(t0)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mcp_guard_policy::Action;
    use mcp_guard_policy::matcher::ToolGlobs;

    use super::*;

    fn seq(steps: &[&str], within_ms: u64) -> Sequence {
        Sequence {
            id: "s".into(),
            action: Action::Block,
            risk: 0.9,
            steps: ToolGlobs::new(&steps.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap(),
            within_ms,
        }
    }

    /// Feeds forwarded calls; returns the indices of calls that completed the sequence.
    fn completions(s: &Sequence, calls: &[(&str, u64)]) -> Vec<usize> {
        let seqs = std::slice::from_ref(s);
        let mut state = SequenceState::default();
        let mut hits = Vec::new();
        for (i, &(tool, t)) in calls.iter().enumerate() {
            let mut out = Vec::new();
            check(seqs, &state, tool, t, &mut out);
            if out.is_empty() {
                record(seqs, &mut state, tool, t);
            } else {
                hits.push(i);
            }
        }
        hits
    }

    #[test]
    fn subsequence_with_benign_calls_between() {
        let s = seq(&["write_file", "exec*"], 60_000);
        let calls = [
            ("write_file", 0),
            ("read_file", 10),
            ("list", 20),
            ("exec_cmd", 30),
        ];
        assert_eq!(completions(&s, &calls), [3]);
    }

    #[test]
    fn order_and_window_matter() {
        let s = seq(&["write_file", "exec*"], 1000);
        assert!(
            completions(&s, &[("exec", 0), ("write_file", 1)]).is_empty(),
            "wrong order"
        );
        assert!(
            completions(&s, &[("write_file", 0), ("exec", 1001)]).is_empty(),
            "too late"
        );
        // A later start renews the window.
        assert_eq!(
            completions(
                &s,
                &[("write_file", 0), ("write_file", 900), ("exec", 1500)]
            ),
            [2]
        );
    }

    #[test]
    fn three_steps_and_one_call_per_step() {
        let s = seq(&["read_*", "read_*", "http_post"], 10_000);
        assert!(
            completions(&s, &[("read_a", 0), ("http_post", 1)]).is_empty(),
            "one read is not two"
        );
        assert_eq!(
            completions(
                &s,
                &[("read_a", 0), ("x", 1), ("read_b", 2), ("http_post", 3)]
            ),
            [3]
        );
    }
}
