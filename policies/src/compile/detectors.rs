//! Compiling `spec.detectors`.

use std::collections::HashSet;
use std::time::Duration;

use super::{
    IdRegistry, MAX_WINDOW, check_id, duration_within, globs, millis, pattern, risk_weight,
};
use crate::compiled::{
    CredentialLeak, Detectors, NamedPattern, PromptInjection, RateLimit, RateWindow, Sequence,
    Taint,
};
use crate::error::{Errors, FieldPath};
use crate::spec::{
    CredentialLeakSpec, DetectorsSpec, PromptInjectionSpec, RateLimitSpec, RateWindowSpec,
    SequenceSpec, TaintSpec,
};

/// Most steps in one sequence: the matcher keeps per-session progress for each step.
pub const MAX_SEQUENCE_STEPS: usize = 16;

pub(super) fn compile_detectors(
    d: &DetectorsSpec,
    path: &FieldPath,
    ids: &mut IdRegistry,
    errs: &mut Errors,
) -> Detectors {
    Detectors {
        credential_leak: d
            .credential_leak
            .as_ref()
            .and_then(|c| credential_leak(c, &path.field("credentialLeak"), errs)),
        rate_limit: d
            .rate_limit
            .as_ref()
            .and_then(|r| rate_limit(r, &path.field("rateLimit"), errs)),
        sequences: d
            .sequences
            .iter()
            .enumerate()
            .filter_map(|(i, s)| sequence(s, &path.field("sequences").index(i), ids, errs))
            .collect(),
        taint: d
            .taint
            .as_ref()
            .and_then(|t| taint(t, &path.field("taint"), errs)),
        prompt_injection: d
            .prompt_injection
            .as_ref()
            .and_then(|p| prompt_injection(p, &path.field("promptInjection"), errs)),
    }
}

fn credential_leak(
    c: &CredentialLeakSpec,
    path: &FieldPath,
    errs: &mut Errors,
) -> Option<CredentialLeak> {
    let mut seen = HashSet::new();
    let mut custom = Vec::new();
    let mut ok = true;
    for (i, s) in c.custom.iter().enumerate() {
        let p = path.field("custom").index(i);
        if let Err(e) = check_id(&s.id) {
            errs.push(&p.field("id"), e);
            ok = false;
        } else if !seen.insert(s.id.as_str()) {
            errs.push(&p.field("id"), format!("duplicate secret type `{}`", s.id));
            ok = false;
        }
        match pattern(&s.regex, &p.field("regex"), errs) {
            Some(regex) => custom.push(NamedPattern {
                id: s.id.clone(),
                regex,
            }),
            None => ok = false,
        }
    }
    ok.then(|| CredentialLeak {
        action: c.action,
        risk: c.action.default_risk(),
        scan_results: c.scan_results,
        redact: c.redact,
        custom,
    })
}

fn rate_limit(r: &RateLimitSpec, path: &FieldPath, errs: &mut Errors) -> Option<RateLimit> {
    if r.per_tool.is_none() && r.per_session.is_none() {
        errs.push(path, "set `perTool`, `perSession`, or both");
    }
    let per_tool = r
        .per_tool
        .as_ref()
        .map(|w| rate_window(w, &path.field("perTool"), errs));
    let per_session = r
        .per_session
        .as_ref()
        .map(|w| rate_window(w, &path.field("perSession"), errs));
    let tools = globs(&r.tools, &path.field("tools"), errs);
    Some(RateLimit {
        action: r.action,
        risk: r.action.default_risk(),
        per_tool: present_or_failed(per_tool)?,
        per_session: present_or_failed(per_session)?,
        tools: tools?,
    })
}

/// An optional section's result: absent (`Some(None)`), compiled (`Some(Some(_))`), or failed (`None`).
fn present_or_failed<T>(section: Option<Option<T>>) -> Option<Option<T>> {
    section.map_or(Some(None), |compiled| compiled.map(Some))
}

/// The compiled window, or `None` when an error was recorded.
fn rate_window(w: &RateWindowSpec, path: &FieldPath, errs: &mut Errors) -> Option<RateWindow> {
    if w.max_calls == 0 {
        errs.push(&path.field("maxCalls"), "must be at least 1");
    }
    let window = duration_within(
        &w.window,
        Duration::from_millis(1),
        MAX_WINDOW,
        &path.field("window"),
        errs,
    )?;
    (w.max_calls > 0).then(|| RateWindow {
        max_calls: w.max_calls,
        window_ms: millis(window),
    })
}

fn sequence(
    s: &SequenceSpec,
    path: &FieldPath,
    ids: &mut IdRegistry,
    errs: &mut Errors,
) -> Option<Sequence> {
    ids.register(&s.id, path, errs);
    let steps_path = path.field("steps");
    let count_ok = match s.steps.len() {
        0 => {
            errs.push(&steps_path, "empty: a sequence needs at least 2 steps");
            false
        }
        1 => {
            errs.push(
                &steps_path,
                "a sequence needs at least 2 steps (for a single tool, use a rule or spec.tools.deny)",
            );
            false
        }
        n if n > MAX_SEQUENCE_STEPS => {
            errs.push(
                &steps_path,
                format!("{n} steps; at most {MAX_SEQUENCE_STEPS} are supported"),
            );
            false
        }
        _ => true,
    };
    let steps = globs(&s.steps, &steps_path, errs);
    let within = duration_within(
        &s.within,
        Duration::from_millis(1),
        MAX_WINDOW,
        &path.field("within"),
        errs,
    );
    let risk = risk_weight(s.risk, s.action, &path.field("risk"), errs);
    count_ok.then_some(())?;
    Some(Sequence {
        id: s.id.clone(),
        action: s.action,
        risk: risk?,
        steps: steps?,
        within_ms: millis(within?),
    })
}

fn taint(t: &TaintSpec, path: &FieldPath, errs: &mut Errors) -> Option<Taint> {
    let sources = path.field("sources");
    if t.sources.tools.is_empty() && t.sources.paths.is_empty() && !t.sources.secrets {
        errs.push(
            &sources,
            "no sources: set `tools`, `paths`, or `secrets: true`",
        );
    }
    let sinks = path.field("sinks");
    if t.sinks.tools.is_empty() {
        errs.push(&sinks.field("tools"), "empty: name at least one sink tool");
    }
    let mut bounds_ok = true;
    if !(8..=256).contains(&t.min_match) {
        errs.push(
            &path.field("minMatch"),
            format!("{} is not between 8 and 256", t.min_match),
        );
        bounds_ok = false;
    }
    if !(16..=1_048_576).contains(&t.max_fingerprints) {
        errs.push(
            &path.field("maxFingerprints"),
            format!("{} is not between 16 and 1048576", t.max_fingerprints),
        );
        bounds_ok = false;
    }
    let source_tools = globs(&t.sources.tools, &sources.field("tools"), errs);
    let source_paths = globs(&t.sources.paths, &sources.field("paths"), errs);
    let sink_tools = globs(&t.sinks.tools, &sinks.field("tools"), errs);
    bounds_ok.then_some(())?;
    Some(Taint {
        action: t.action,
        risk: t.action.default_risk(),
        source_tools: source_tools?,
        source_paths: source_paths?,
        source_secrets: t.sources.secrets,
        sink_tools: sink_tools?,
        min_match: t.min_match,
        max_fingerprints: t.max_fingerprints,
    })
}

fn prompt_injection(
    p: &PromptInjectionSpec,
    path: &FieldPath,
    errs: &mut Errors,
) -> Option<PromptInjection> {
    if !p.scan_descriptions && !p.scan_results {
        errs.push(
            path,
            "nothing to scan: set `scanDescriptions`, `scanResults`, or both",
        );
        return None;
    }
    Some(PromptInjection {
        action: p.action,
        risk: p.action.default_risk(),
        scan_descriptions: p.scan_descriptions,
        scan_results: p.scan_results,
        strip: p.strip,
    })
}
