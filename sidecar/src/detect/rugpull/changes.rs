//! Comparison of a pin with a new listing of the same tool, and classification of each change
//! (see the module docs of the parent for the rules).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::diff::{
    WordDiff, added_region, clause_start, clip, collapse_ws, is_email, is_phone, mentions,
    normalise, occurrences, other_tool, sensitive_name, versionish,
};
use super::snapshot::{Param, Snapshot, prefix};
use super::{ChangeRisk, RugPull};
use crate::detect::injection::{self, InjectionFinding, InjectionKind, ScanContext};

/// Collects changes and the overall risk.
#[derive(Debug, Default)]
struct Changes {
    risk: Option<ChangeRisk>,
    list: Vec<String>,
}

impl Changes {
    fn push(&mut self, risk: ChangeRisk, change: String) {
        self.risk = self.risk.max(Some(risk));
        self.list.push(change);
    }
}

/// Compares a pin with a new snapshot of the same tool.
pub(super) fn compare(old: &Snapshot, new: &Snapshot, others: &[&str]) -> Option<RugPull> {
    if old.hash == new.hash {
        return None;
    }
    let mut changes = Changes::default();
    if old.description_hash != new.description_hash {
        if old.complete {
            text_changes(
                "description",
                &old.description,
                &new.description,
                others,
                &mut changes,
            );
        } else {
            let new_prefix = prefix(&new.description, old.description.len());
            if new_prefix != old.description {
                text_changes(
                    "description",
                    &old.description,
                    new_prefix,
                    others,
                    &mut changes,
                );
            }
            changes.push(
                ChangeRisk::High,
                format!(
                    "description changes beyond its first {} bytes, which are all that was \
                     retained",
                    old.description.len()
                ),
            );
        }
    }
    if old.schema_hash != new.schema_hash {
        match (&old.params, &new.params) {
            (Some(a), Some(b)) => schema_changes(a, b, others, &mut changes),
            _ => changes.push(
                ChangeRisk::High,
                "input schema changes (the pinned schema was not retained for comparison)"
                    .to_owned(),
            ),
        }
    }
    if changes.list.is_empty() {
        changes.push(ChangeRisk::Low, "definition changes".to_owned());
    }
    Some(RugPull {
        tool: new.name.clone(),
        risk: changes.risk.unwrap_or(ChangeRisk::Low),
        changes: changes.list,
    })
}

/// Changes between two parameter summaries.
fn schema_changes(
    old: &BTreeMap<String, Param>,
    new: &BTreeMap<String, Param>,
    others: &[&str],
    out: &mut Changes,
) {
    let before = out.list.len();
    for (name, p) in new {
        let Some(o) = old.get(name) else {
            let free = if (p.ty.contains("string") && !p.restricted) || p.ty == "any" {
                "free-text "
            } else {
                ""
            };
            let req = if p.required { "required " } else { "optional " };
            let mut change = format!("schema adds {req}parameter `{name}` ({free}{})", p.ty);
            if let Some(d) = &p.default {
                change.push_str(&format!(", default {}", clip(d)));
            }
            out.push(ChangeRisk::High, change);
            continue;
        };
        if o.ty != p.ty {
            // Becoming nullable (`string` → `null|string`) widens nothing that matters.
            let mut widened: Vec<&str> = p.ty.split('|').filter(|t| *t != "null").collect();
            widened.sort_unstable();
            let mut before: Vec<&str> = o.ty.split('|').collect();
            before.sort_unstable();
            if widened == before {
                out.push(
                    ChangeRisk::Low,
                    format!("parameter `{name}` becomes nullable"),
                );
            } else {
                out.push(
                    ChangeRisk::High,
                    format!("parameter `{name}` changes type from {} to {}", o.ty, p.ty),
                );
            }
        }
        if o.choices != p.choices {
            if o.choices.is_some() && p.choices.is_none() {
                out.push(
                    ChangeRisk::High,
                    format!("parameter `{name}` is no longer limited to fixed values"),
                );
            } else {
                out.push(
                    ChangeRisk::Low,
                    format!("parameter `{name}` changes its allowed values"),
                );
            }
        }
        if o.default != p.default {
            let risky = p.default.as_deref().is_some_and(|d| {
                d.contains("://") || d.contains('@') || d.contains("~/") || d.contains("/.")
            });
            let risk = if risky {
                ChangeRisk::High
            } else {
                ChangeRisk::Low
            };
            let to = p.default.as_deref().map_or("none".to_owned(), clip);
            out.push(
                risk,
                format!("parameter `{name}` changes its default to {to}"),
            );
        }
        if o.required != p.required {
            let what = if p.required { "required" } else { "optional" };
            out.push(
                ChangeRisk::Low,
                format!("parameter `{name}` becomes {what}"),
            );
        }
        if o.description != p.description {
            text_changes(
                &format!("parameter `{name}` description"),
                &o.description,
                &p.description,
                others,
                out,
            );
        }
    }
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(
            ChangeRisk::Low,
            format!("schema removes parameter `{name}`"),
        );
    }
    if out.list.len() == before {
        out.push(
            ChangeRisk::Low,
            "input schema changes (no parameter added, removed or retyped)".to_owned(),
        );
    }
}

/// Words that turn an edit into an instruction to the model.
const INSTRUCTION_WORDS: &[&str] = &[
    "must",
    "always",
    "never",
    "ignore",
    "disregard",
    "forget",
    "instead",
    "important",
    "silently",
    "secretly",
    "quietly",
    "don't",
    "dont",
    "mention",
    "tell",
    "notify",
    "bypass",
    "override",
    "mandatory",
    "immediately",
    "send",
    "forward",
    "bcc",
    "cc",
    "recipient",
    "recipients",
    "sidenote",
    "password",
    "passwords",
    "credentials",
    "secret",
    "secrets",
    "conversation",
    "exfiltrate",
    "upload",
    "confidential",
];

/// An imperative clause aimed at the model: "read …", "include …", "first send …", "do not …".
static IMPERATIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:^|[.!?:;,]\s+|\n\s*)(?:(?:then|also|first|please|just|now|and)\s+)*(?P<verb>read|include|send|call|pass|append|attach|forward|fetch|upload|post|email|copy|ignore|disregard|tell|ask|make\s+sure|ensure|remember\s+to|do\s+not|don't|never|always|prefer|avoid|instead)(?-u:\b)[^.!?\n]{0,60}",
    )
    .expect("the imperative pattern compiles")
});

/// Classifies a text change (a description, or a parameter's) and pushes what it finds.
fn text_changes(what: &str, old: &str, new: &str, others: &[&str], out: &mut Changes) {
    if old == new {
        return;
    }
    let before = out.list.len();
    // 1. New injection findings.
    let ctx = ScanContext {
        other_tools: others,
    };
    let old_findings = injection::scan(old, &ctx);
    let new_findings = injection::scan(new, &ctx);
    for f in new_findings
        .iter()
        .filter(|f| !known_finding(f, new, &old_findings, old))
    {
        out.push(
            ChangeRisk::High,
            format!("{what} adds {}: {}", kind_phrase(f.kind), f.reason),
        );
    }
    // 2. Structural signals the scanner may not report on their own.
    let count = |s: &str, f: &dyn Fn(char) -> bool| s.chars().filter(|c| f(*c)).count();
    let invisible = injection::is_invisible_char;
    let (oi, ni) = (count(old, &invisible), count(new, &invisible));
    if ni > oi {
        out.push(
            ChangeRisk::High,
            format!("{what} adds {} invisible characters", ni - oi),
        );
    }
    for (marker, name) in [
        ("<!--", "an HTML comment"),
        ("\u{1b}", "a terminal escape sequence"),
        ("<important", "an <IMPORTANT> block"),
        ("<secret", "a <SECRET> block"),
        ("<system", "a <system> tag"),
    ] {
        if occurrences(new, marker) > occurrences(old, marker) {
            out.push(ChangeRisk::High, format!("{what} adds {name}"));
        }
    }
    // 3. Word-level differences.
    let diff = WordDiff::new(old, new);
    let mut signals: Vec<String> = Vec::new();
    for w in &diff.added {
        let bare = w.trim_matches(|c: char| "`'\"()[]{}<>.,;:!?*".contains(c));
        if bare.contains("://") || bare.starts_with("www.") {
            signals.push(format!("a URL `{}`", clip(bare)));
        } else if is_email(bare) || is_phone(bare) {
            signals.push(format!("an address `{}`", clip(bare)));
        } else if let Some(tool) = other_tool(bare, others).filter(|t| !mentions(old, t)) {
            signals.push(format!("a reference to another tool `{tool}`"));
        } else if sensitive_name(bare) {
            signals.push(format!("a credential file name `{}`", clip(bare)));
        }
    }
    let words: Vec<&str> = diff
        .added
        .iter()
        .zip(&diff.typo)
        .filter(|(_, typo)| !**typo)
        .map(|(w, _)| normalise(w))
        .filter(|w| INSTRUCTION_WORDS.contains(w))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !words.is_empty() {
        signals.push(format!(
            "instructions ({})",
            words
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // An imperative clause whose verb is in the changed part.
    let changed = added_region(old, new);
    let from = clause_start(new, changed.start);
    if let Some(c) = IMPERATIVE.captures_iter(&new[from..changed.end]).find(|c| {
        c.name("verb")
            .is_some_and(|v| from + v.start() >= changed.start)
    }) && let Some(m) = c.get(0)
    {
        signals.push(format!("an instruction `{}`", clip(m.as_str().trim())));
    }
    signals.dedup();
    for s in signals {
        out.push(ChangeRisk::High, format!("{what} adds {s}"));
    }
    if out.list.len() > before {
        return;
    }
    // 4. Nothing risky: say what kind of edit it is.
    let low = if collapse_ws(old) == collapse_ws(new) {
        format!("{what} changes only in white space")
    } else if diff.added.is_empty() && diff.removed.is_empty() {
        format!("{what} changes only in punctuation or letter case")
    } else if diff.all(versionish) {
        format!(
            "{what} changes a version, date or number ({} → {})",
            clip(&diff.removed.join(" ")),
            clip(&diff.added.join(" "))
        )
    } else if diff.typo_pairs == diff.added.len() && diff.typo_pairs == diff.removed.len() {
        format!(
            "{what} fixes typos ({} → {})",
            clip(&diff.removed.join(" ")),
            clip(&diff.added.join(" "))
        )
    } else {
        format!(
            "{what} is reworded ({} words added, {} removed)",
            diff.added.len(),
            diff.removed.len()
        )
    };
    out.push(ChangeRisk::Low, low);
}

/// Whether finding `f` of `new` was already in `old`: a finding of the same kind whose text is the
/// same, or whose text occurs in the old text.
fn known_finding(
    f: &InjectionFinding,
    new: &str,
    old_findings: &[InjectionFinding],
    old: &str,
) -> bool {
    let text = new.get(f.span.clone()).unwrap_or_default();
    old.contains(text)
        || old_findings
            .iter()
            .any(|o| o.kind == f.kind && old.get(o.span.clone()) == Some(text))
}

fn kind_phrase(kind: InjectionKind) -> &'static str {
    match kind {
        InjectionKind::InstructionOverride => "an instruction override",
        InjectionKind::RoleMarker => "a role marker",
        InjectionKind::HiddenBlock => "a hidden block",
        InjectionKind::InvisibleUnicode => "invisible characters",
        InjectionKind::ExfiltrationUrl => "an exfiltration channel",
        InjectionKind::ToolShadowing => "instructions about another tool",
        InjectionKind::Base64Blob => "base64 text",
        InjectionKind::Concealment => "an instruction to hide actions from the user",
        InjectionKind::SensitiveRead => "an instruction to read sensitive data",
    }
}
