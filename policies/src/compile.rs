//! `compile(spec)`: validate everything and precompile it into a [`CompiledPolicy`].
//!
//! Every error names its field path and its reason, and all of them are reported, not only the first.
//! Pure: no I/O, so the operator's webhook, the operator's reconciler, the checker and the tests all run
//! the same code.

mod detectors;
mod runtime;

use std::collections::HashMap;
use std::time::Duration;

use crate::compiled::{
    ArgMatcher, ArgTarget, Ask, Budgets, CompiledPolicy, FORMAT, PolicySource, Risk, Rule, Tools,
};
use crate::duration::DurationSpec;
use crate::error::{Errors, FieldPath, PolicyError};
use crate::matcher::{GlobList, Pattern};
use crate::spec::{Action, ArgMatcherSpec, AskSpec, BudgetsSpec, PolicySpec, RiskSpec, RuleSpec};

/// Longest id (rules, sequences, custom secrets): a Kubernetes label value fits 63 characters, and ids
/// become metric labels.
pub const MAX_ID_LEN: usize = 63;
/// Longest window a rate limit or sequence may span. Longer windows would keep per-session state for
/// longer than any MCP session plausibly lives.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Validates `spec` and compiles it. Returns every problem found.
pub fn compile(spec: &PolicySpec) -> Result<CompiledPolicy, Vec<PolicyError>> {
    let root = FieldPath::root("spec");
    let mut errs = Errors::default();
    let mut ids = IdRegistry::default();

    let tools = compile_tools(spec, &root.field("tools"), &mut errs);
    let rules: Vec<Rule> = spec
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| compile_rule(r, &root.field("rules").index(i), &mut ids, &mut errs))
        .collect();
    let detectors = detectors::compile_detectors(
        &spec.detectors,
        &root.field("detectors"),
        &mut ids,
        &mut errs,
    );
    let ask = compile_ask(&spec.ask, &root.field("ask"), &mut errs);
    let risk = compile_risk(&spec.risk, &root.field("risk"), &mut errs);
    let budgets = compile_budgets(&spec.budgets, &root.field("budgets"), &mut errs);
    let runtime = runtime::compile_runtime(&spec.runtime, &root.field("runtime"), &mut errs);

    if !errs.is_empty() {
        return Err(errs.into_vec());
    }
    // Every helper returns `Some` when it recorded no error, so these cannot fail here.
    match (tools, ask, runtime) {
        (Some(tools), Some(ask), Some(runtime)) => Ok(CompiledPolicy {
            format: FORMAT,
            source: PolicySource::default(),
            mode: spec.mode,
            tools,
            rules,
            detectors,
            ask,
            risk,
            budgets,
            runtime,
        }),
        _ => Err(vec![PolicyError::new(
            "spec",
            "internal error: a section failed without an error",
        )]),
    }
}

fn compile_tools(spec: &PolicySpec, path: &FieldPath, errs: &mut Errors) -> Option<Tools> {
    let allow = globs(&spec.tools.allow, &path.field("allow"), errs);
    let deny = globs(&spec.tools.deny, &path.field("deny"), errs);
    Some(Tools {
        allow: allow?,
        deny: deny?,
        block_undeclared: spec.tools.block_undeclared,
        pin_definitions: spec.tools.pin_definitions,
    })
}

fn compile_rule(
    rule: &RuleSpec,
    path: &FieldPath,
    ids: &mut IdRegistry,
    errs: &mut Errors,
) -> Option<Rule> {
    ids.register(&rule.id, path, errs);
    let tools = globs(&rule.tools, &path.field("tools"), errs);
    if rule.args.is_empty() {
        errs.push(
            &path.field("args"),
            "a rule needs at least one argument matcher (to block a tool outright, use spec.tools.deny)",
        );
    }
    let args: Vec<Option<ArgMatcher>> = rule
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| compile_arg(a, &path.field("args").index(i), errs))
        .collect();
    let risk = risk_weight(rule.risk, rule.action, &path.field("risk"), errs);
    if let Some(d) = &rule.description
        && d.len() > 512
    {
        errs.push(&path.field("description"), "longer than 512 bytes");
    }
    Some(Rule {
        id: rule.id.clone(),
        action: rule.action,
        risk: risk?,
        tools: tools?,
        args: args.into_iter().collect::<Option<Vec<_>>>()?,
        description: rule.description.clone(),
    })
}

fn compile_arg(arg: &ArgMatcherSpec, path: &FieldPath, errs: &mut Errors) -> Option<ArgMatcher> {
    let target = match (&arg.pointer, arg.any_string) {
        (Some(_), true) => {
            errs.push(path, "set either `pointer` or `anyString: true`, not both");
            None
        }
        (None, false) => {
            errs.push(
                path,
                "set `pointer` (a JSON pointer such as /path) or `anyString: true`",
            );
            None
        }
        (Some(p), false) => errs
            .take(&path.field("pointer"), check_json_pointer(p))
            .map(|()| ArgTarget::Pointer(p.clone())),
        (None, true) => Some(ArgTarget::AnyString),
    };
    let regex = pattern(&arg.regex, &path.field("regex"), errs);
    Some(ArgMatcher {
        target: target?,
        regex: regex?,
    })
}

fn compile_ask(ask: &AskSpec, path: &FieldPath, errs: &mut Errors) -> Option<Ask> {
    let timeout = duration_within(
        &ask.timeout,
        Duration::from_secs(1),
        Duration::from_secs(600),
        &path.field("timeout"),
        errs,
    )?;
    Some(Ask {
        via: ask.via,
        timeout_ms: millis(timeout),
        fallback: ask.fallback,
    })
}

fn compile_risk(risk: &RiskSpec, path: &FieldPath, errs: &mut Errors) -> Risk {
    for (name, v) in [
        ("askAbove", risk.ask_above),
        ("blockAbove", risk.block_above),
    ] {
        if let Some(v) = v
            && !(v > 0.0 && v <= 1.0)
        {
            errs.push(&path.field(name), format!("{v} is not in (0, 1]"));
        }
    }
    if let (Some(ask), Some(block)) = (risk.ask_above, risk.block_above)
        && ask >= block
    {
        errs.push(
            &path.field("askAbove"),
            format!("{ask} must be below blockAbove ({block})"),
        );
    }
    Risk {
        ask_above: risk.ask_above,
        block_above: risk.block_above,
    }
}

fn compile_budgets(b: &BudgetsSpec, path: &FieldPath, errs: &mut Errors) -> Budgets {
    for (name, v) in [
        ("maxCalls", b.max_calls),
        ("maxBytesIn", b.max_bytes_in),
        ("maxBytesOut", b.max_bytes_out),
    ] {
        if v == Some(0) {
            errs.push(
                &path.field(name),
                "must be at least 1 (omit it for no limit)",
            );
        }
    }
    Budgets {
        max_calls: b.max_calls,
        max_bytes_in: b.max_bytes_in,
        max_bytes_out: b.max_bytes_out,
    }
}

// === shared helpers ===

fn globs<const PATHS: bool>(
    patterns: &[String],
    path: &FieldPath,
    errs: &mut Errors,
) -> Option<GlobList<PATHS>> {
    match GlobList::new(patterns) {
        Ok(g) => Some(g),
        Err(bad) => {
            for (i, reason) in bad {
                errs.push(&path.index(i), reason);
            }
            None
        }
    }
}

fn pattern(source: &str, path: &FieldPath, errs: &mut Errors) -> Option<Pattern> {
    errs.take(path, Pattern::new(source))
}

fn risk_weight(
    risk: Option<f64>,
    action: Action,
    path: &FieldPath,
    errs: &mut Errors,
) -> Option<f64> {
    match risk {
        None => Some(action.default_risk()),
        Some(r) if (0.0..=1.0).contains(&r) => Some(r),
        Some(r) => {
            errs.push(path, format!("{r} is not between 0 and 1"));
            None
        }
    }
}

fn duration_within(
    d: &DurationSpec,
    min: Duration,
    max: Duration,
    path: &FieldPath,
    errs: &mut Errors,
) -> Option<Duration> {
    let parsed = errs.take(path, d.parse())?;
    if parsed < min || parsed > max {
        errs.push(
            path,
            format!(
                "{d} is out of range: between {} and {}",
                human(min),
                human(max)
            ),
        );
        return None;
    }
    Some(parsed)
}

fn human(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// RFC 6901: empty, or `/`-separated reference tokens where `~` is only ever `~0` or `~1`.
/// The empty pointer (the whole arguments object) is refused: it is not a string; use `anyString`.
fn check_json_pointer(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!(
            "`{p}` is not a JSON pointer: it must start with `/` (e.g. /path, /options/0/url)"
        ));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "`{p}` is not a JSON pointer: `~` must be followed by 0 (for ~) or 1 (for /)"
            ));
        }
    }
    Ok(())
}

/// Ids of rules and sequences: unique across both (findings name them alike), short, label-safe.
#[derive(Default)]
struct IdRegistry(HashMap<String, String>);

impl IdRegistry {
    fn register(&mut self, id: &str, path: &FieldPath, errs: &mut Errors) {
        let id_path = path.field("id");
        if let Err(e) = check_id(id) {
            errs.push(&id_path, e);
            return;
        }
        if let Some(first) = self.0.get(id) {
            errs.push(
                &id_path,
                format!("duplicate id `{id}` (first used at {first})"),
            );
        } else {
            self.0.insert(id.to_owned(), id_path.to_string());
        }
    }
}

/// Lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 bytes.
fn check_id(id: &str) -> Result<(), String> {
    let valid_chars = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || !valid_chars
        || id.starts_with('-')
        || id.ends_with('-')
    {
        return Err(format!(
            "`{id}` is not a valid id: use 1-{MAX_ID_LEN} lowercase letters, digits and `-`, \
             starting and ending with a letter or digit"
        ));
    }
    Ok(())
}
