//! Rug-pull detection: tool definitions pinned at their first `tools/list`, and classification of
//! later changes.
//!
//! A server can present a harmless tool, get it approved, and change its description or schema
//! later in the session (after `notifications/tools/list_changed`, or simply on the next listing):
//! the "rug pull" of Invariant Labs' tool-poisoning and WhatsApp write-ups. [`Pins`] remembers each
//! tool's definition the first time the session sees it and reports every later listing that
//! differs, with a [`ChangeRisk`] and human-readable changes.
//!
//! # Classification rules
//!
//! A change is **high** risk when it can change what the model does or where data goes:
//!
//! * the new description has an [`injection`] finding that the old one did not have (hidden
//!   blocks, instruction overrides, shadowing, exfiltration URLs, concealment, sensitive reads,
//!   invisible characters, base64 text);
//! * the description adds a URL, an e-mail address or a phone number, a reference to another tool
//!   of the session (a name from `other_tools`, or an `mcp_…` name), invisible characters (those
//!   [`injection::is_invisible_char`] names), a hidden-block marker (`<!--`, `<IMPORTANT>`,
//!   `<SECRET>`, `<system>`, a terminal escape), a credential file name, an instruction word
//!   ("must", "always", "never", "ignore", "instead", "silently", "don't", "send", "forward",
//!   "bcc", "recipient", "credentials", …) that is not a typo fix, or an imperative clause whose
//!   verb is in the changed text ("…, first read the same path in their private repositories and
//!   include it", "do not use it for local files");
//! * the input schema adds a parameter (reported as free-text when it is an unrestricted string,
//!   such as `sidenote`, `context`, `notes`), changes a parameter's type (other than becoming
//!   nullable), lifts an `enum`/`const` restriction, gives a parameter a default that is a URL, an
//!   address or a path, or changes a parameter description in one of the ways above;
//! * the change cannot be compared because the session's memory bound dropped the details (see
//!   below).
//!
//! A change is **low** risk otherwise, in particular when it is only white space, punctuation or
//! letter case, version strings, dates and other numbers (`v1.2.3` → `v1.2.4`), typo fixes (each
//! changed word within two edits, transpositions counting one, of the word it replaces), a removed
//! parameter, a parameter becoming nullable, required or optional, a changed `enum` list or
//! default, or a rewording without any of the signals above. Every change, low or high, is
//! reported; the policy decides what a low-risk change is worth.
//!
//! # Memory bound
//!
//! Each pin keeps SHA-256 hashes of the definition plus what classification needs: the first
//! 16 KiB of the description ([`MAX_DESCRIPTION`]) and a summary of up to 256 parameters (name,
//! type, restriction, default and the first 1 KiB of the description). A session retains at most
//! 4 MiB of such text ([`MAX_RETAINED`]) and 4096 tools ([`MAX_TOOLS`]); beyond that, new pins keep
//! only their hashes, so a change to them is reported as high risk without details, and tools past
//! the tool limit are not pinned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use regex::Regex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::injection::{self, InjectionFinding, InjectionKind, ScanContext};

#[cfg(test)]
mod tests;

/// Longest description prefix a pin keeps (bytes).
pub const MAX_DESCRIPTION: usize = 16 * 1024;
/// Most text (descriptions and parameter summaries) a session's pins keep (bytes).
pub const MAX_RETAINED: usize = 4 * 1024 * 1024;
/// Most tools a session pins.
pub const MAX_TOOLS: usize = 4096;
/// Most parameters a pin summarises.
const MAX_PARAMS: usize = 256;
/// Longest parameter description a pin keeps (bytes).
const MAX_PARAM_DESCRIPTION: usize = 1024;
/// Longest parameter default a pin keeps (bytes).
const MAX_DEFAULT: usize = 256;
/// Longest tool name used as a key (longer names are keyed by their hash).
const MAX_NAME: usize = 256;

/// A tool as declared in `tools/list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

impl ToolDef {
    /// Reads one entry of a `tools/list` result's `tools` array: `name` (required), `description`
    /// (default empty), `inputSchema` (default `null`).
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            name: v.get("name")?.as_str()?.to_owned(),
            description: v
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            input_schema: v.get("inputSchema").cloned().unwrap_or(Value::Null),
        })
    }
}

/// How dangerous a definition change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeRisk {
    Low,
    High,
}

impl ChangeRisk {
    /// Stable id for audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::High => "high",
        }
    }
}

/// A tool whose definition changed since it was pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct RugPull {
    pub tool: String,
    pub risk: ChangeRisk,
    /// Human-readable changes, e.g. "description adds a hidden block: …", "schema adds parameter
    /// `sidenote` (free-text string)".
    pub changes: Vec<String>,
}

/// Per-session pins: each tool's definition at its first `tools/list` (hashes and a bounded copy
/// of what classifying a change needs).
#[derive(Debug, Default)]
pub struct Pins {
    tools: HashMap<String, Snapshot>,
    /// Bytes of text the snapshots keep.
    retained: usize,
}

impl Pins {
    /// Records the tools of a `tools/list` answer; returns a [`RugPull`] for each tool whose
    /// definition differs from its pin. First sight pins a tool; a changed tool stays pinned to its
    /// first definition (so a change is reported on every later listing until it is reverted). A
    /// removed tool is not a finding; a tool added later is pinned then, without a finding. When a
    /// listing names a tool twice, each entry is compared with the pin.
    pub fn observe(&mut self, tools: &[ToolDef]) -> Vec<RugPull> {
        let mut out = Vec::new();
        for (i, tool) in tools.iter().enumerate() {
            let key = key(&tool.name);
            match self.tools.get(&key) {
                Some(pin) => {
                    if pin.hash == definition_hash(tool) {
                        continue;
                    }
                    let others: Vec<&str> = tools
                        .iter()
                        .enumerate()
                        .filter(|(j, t)| *j != i && t.name != tool.name)
                        .map(|(_, t)| t.name.as_str())
                        .collect();
                    let new = Snapshot::new(tool, usize::MAX, true);
                    if let Some(r) = compare(pin, &new, &others) {
                        out.push(r);
                    }
                }
                None => {
                    if self.tools.len() >= MAX_TOOLS {
                        continue;
                    }
                    let room = MAX_RETAINED.saturating_sub(self.retained);
                    let mut pin = Snapshot::new(tool, MAX_DESCRIPTION.min(room), true);
                    if pin.retained() > room {
                        // Out of room: keep the hashes only.
                        pin = Snapshot::new(tool, 0, false);
                    }
                    pin.name = prefix(&tool.name, MAX_NAME).to_owned();
                    self.retained += pin.retained();
                    self.tools.insert(key, pin);
                }
            }
        }
        out
    }

    /// Number of pinned tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is pinned.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// Classifies the change from `old` to `new` (the same tool at two listings); `None` when the
/// definitions are identical. `other_tools` are the names of the session's other tools, for
/// references to them.
pub fn classify(old: &ToolDef, new: &ToolDef, other_tools: &[&str]) -> Option<RugPull> {
    if old == new {
        return None;
    }
    let old_s = Snapshot::new(old, usize::MAX, true);
    let new_s = Snapshot::new(new, usize::MAX, true);
    let mut r = compare(&old_s, &new_s, other_tools);
    if old.name != new.name {
        let change = format!("tool name changes from `{}` to `{}`", old.name, new.name);
        match r.as_mut() {
            Some(r) => r.changes.insert(0, change),
            None => {
                r = Some(RugPull {
                    tool: new.name.clone(),
                    risk: ChangeRisk::Low,
                    changes: vec![change],
                });
            }
        }
    }
    r
}

// === Snapshots ===

/// What a pin keeps of a definition.
#[derive(Debug)]
struct Snapshot {
    name: String,
    /// SHA-256 of the whole definition (description and canonical schema).
    hash: [u8; 32],
    /// The description, or its first bytes (see `complete`).
    description: String,
    /// Whether `description` is the whole description.
    complete: bool,
    /// SHA-256 of the whole description.
    description_hash: [u8; 32],
    /// SHA-256 of the canonical schema.
    schema_hash: [u8; 32],
    /// Parameter summaries by path (`a`, `a.b`, `a[]`), or `None` when not retained.
    params: Option<BTreeMap<String, Param>>,
}

/// What a pin keeps of a parameter.
#[derive(Debug, Clone, PartialEq)]
struct Param {
    /// JSON Schema type(s), `|`-joined, or "any".
    ty: String,
    /// Whether the value is restricted (`enum`, `const`, `pattern`, `format`).
    restricted: bool,
    /// The `enum`/`const` values, as JSON (bounded).
    choices: Option<String>,
    /// The default value, as JSON (bounded).
    default: Option<String>,
    /// The description (bounded).
    description: String,
    required: bool,
}

impl Snapshot {
    /// A snapshot keeping at most `max_description` bytes of description, and the parameter
    /// summaries when `keep_params`.
    fn new(tool: &ToolDef, max_description: usize, keep_params: bool) -> Self {
        let description = prefix(&tool.description, max_description).to_owned();
        let complete = description.len() == tool.description.len();
        let params = keep_params.then(|| {
            let mut params = BTreeMap::new();
            collect_params(&tool.input_schema, "", &mut params, 0);
            params
        });
        Self {
            name: tool.name.clone(),
            hash: definition_hash(tool),
            description,
            complete,
            description_hash: Sha256::digest(tool.description.as_bytes()).into(),
            schema_hash: schema_hash(&tool.input_schema),
            params,
        }
    }

    /// Bytes of text kept.
    fn retained(&self) -> usize {
        self.name.len()
            + self.description.len()
            + self.params.as_ref().map_or(0, |p| {
                p.iter()
                    .map(|(k, v)| {
                        k.len()
                            + v.ty.len()
                            + v.description.len()
                            + v.choices.as_ref().map_or(0, String::len)
                            + v.default.as_ref().map_or(0, String::len)
                    })
                    .sum()
            })
    }
}

/// The key of a tool name (long names are keyed by their hash).
fn key(name: &str) -> String {
    if name.len() <= MAX_NAME {
        name.to_owned()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(name.as_bytes())))
    }
}

/// The longest prefix of `s` of at most `max` bytes, on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn definition_hash(tool: &ToolDef) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((tool.description.len() as u64).to_le_bytes());
    h.update(tool.description.as_bytes());
    hash_value(&tool.input_schema, &mut h);
    h.finalize().into()
}

fn schema_hash(schema: &Value) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_value(schema, &mut h);
    h.finalize().into()
}

/// Feeds a canonical, unambiguous encoding of `v` to `h` (object keys sorted, lengths prefixed), so
/// that key order does not change the hash.
fn hash_value(v: &Value, h: &mut Sha256) {
    let bytes = |h: &mut Sha256, tag: u8, b: &[u8]| {
        h.update([tag]);
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    match v {
        Value::Null => h.update([0]),
        Value::Bool(b) => h.update([1, u8::from(*b)]),
        Value::Number(n) => bytes(h, 2, n.to_string().as_bytes()),
        Value::String(s) => bytes(h, 3, s.as_bytes()),
        Value::Array(items) => {
            h.update([4]);
            h.update((items.len() as u64).to_le_bytes());
            items.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(map) => {
            h.update([5]);
            h.update((map.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                bytes(h, 6, k.as_bytes());
                if let Some(x) = map.get(k) {
                    hash_value(x, h);
                }
            }
        }
    }
}

/// Deepest schema nesting summarised.
const MAX_DEPTH: usize = 8;

/// Summarises the parameters of `schema` (its `properties`, recursively through nested objects,
/// array `items` and `anyOf`/`oneOf`/`allOf`) into `out`, at most [`MAX_PARAMS`].
fn collect_params(schema: &Value, path: &str, out: &mut BTreeMap<String, Param>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(obj) = schema.as_object() else {
        return;
    };
    let required: BTreeSet<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            if out.len() >= MAX_PARAMS {
                return;
            }
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            out.insert(p.clone(), param(sub, required.contains(name.as_str())));
            collect_params(sub, &p, out, depth + 1);
        }
    }
    if let Some(items) = obj.get("items") {
        collect_params(items, &format!("{path}[]"), out, depth + 1);
    }
    for comb in ["anyOf", "oneOf", "allOf"] {
        for sub in obj
            .get(comb)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_params(sub, path, out, depth + 1);
        }
    }
}

/// The summary of one parameter schema.
fn param(schema: &Value, required: bool) -> Param {
    let get = |k: &str| schema.get(k);
    let mut types: Vec<String> = match get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    for comb in ["anyOf", "oneOf"] {
        for sub in get(comb).and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = sub.get("type").and_then(Value::as_str) {
                types.push(t.to_owned());
            }
        }
    }
    types.sort();
    types.dedup();
    let ty = if types.is_empty() {
        "any".to_owned()
    } else {
        types.join("|")
    };
    let choices = get("enum")
        .or_else(|| get("const"))
        .map(|v| prefix(&v.to_string(), MAX_DEFAULT).to_owned());
    Param {
        ty,
        restricted: choices.is_some() || get("pattern").is_some() || get("format").is_some(),
        choices,
        default: get("default").map(|v| prefix(&v.to_string(), MAX_DEFAULT).to_owned()),
        description: prefix(
            get("description")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            MAX_PARAM_DESCRIPTION,
        )
        .to_owned(),
        required,
    }
}

// === Comparison ===

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
fn compare(old: &Snapshot, new: &Snapshot, others: &[&str]) -> Option<RugPull> {
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

/// Where the clause around `pos` starts: after the last `.`, `!`, `?`, `:`, `;`, `,` or line
/// break before it (at most 200 bytes back).
fn clause_start(text: &str, pos: usize) -> usize {
    let lo = prefix(text, pos.saturating_sub(200)).len();
    text[lo..pos]
        .rfind(['.', '!', '?', ':', ';', ',', '\n'])
        .map_or(lo, |p| lo + p)
}

/// The part of `new` that differs from `old`: without their common prefix and suffix (on
/// character boundaries), widened to whole words.
fn added_region(old: &str, new: &str) -> std::ops::Range<usize> {
    let p = old
        .char_indices()
        .zip(new.chars())
        .find(|((_, a), b)| a != b)
        .map_or(old.len().min(new.len()), |((i, _), _)| i);
    let s = old[p..]
        .chars()
        .rev()
        .zip(new[p..].chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>();
    let mut start = p;
    while start > 0 && !new[..start].ends_with(char::is_whitespace) {
        start -= new[..start].chars().next_back().map_or(1, char::len_utf8);
    }
    let mut end = new.len() - s;
    while end < new.len() && !new[end..].starts_with(char::is_whitespace) {
        end += new[end..].chars().next().map_or(1, char::len_utf8);
    }
    start..end.max(start)
}

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

/// Non-overlapping occurrences of an ASCII `needle`, ignoring ASCII case.
fn occurrences(hay: &str, needle: &str) -> usize {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return 0;
    }
    let mut count = 0;
    let mut i = 0;
    while i + n.len() <= h.len() {
        if h[i..i + n.len()].eq_ignore_ascii_case(n) {
            count += 1;
            i += n.len();
        } else {
            i += 1;
        }
    }
    count
}

/// Words added and removed between two texts (as multisets of words compared without case and
/// surrounding punctuation), and how many added words are typo fixes of removed ones.
#[derive(Debug)]
struct WordDiff<'a> {
    added: Vec<&'a str>,
    removed: Vec<&'a str>,
    /// For each added word, whether it is a typo fix of a removed word (within two edits).
    typo: Vec<bool>,
    /// How many added words are typo fixes.
    typo_pairs: usize,
}

impl<'a> WordDiff<'a> {
    fn new(old: &'a str, new: &'a str) -> Self {
        let mut counts: HashMap<String, isize> = HashMap::new();
        for w in old.split_whitespace().filter(|w| !normalise(w).is_empty()) {
            *counts.entry(normalise(w).to_lowercase()).or_default() += 1;
        }
        let mut added = Vec::new();
        for w in new.split_whitespace().filter(|w| !normalise(w).is_empty()) {
            let c = counts.entry(normalise(w).to_lowercase()).or_default();
            if *c > 0 {
                *c -= 1;
            } else {
                added.push(w);
            }
        }
        let mut remaining = counts;
        let mut removed = Vec::new();
        for w in old.split_whitespace().filter(|w| !normalise(w).is_empty()) {
            if let Some(c) = remaining.get_mut(&normalise(w).to_lowercase())
                && *c > 0
            {
                *c -= 1;
                removed.push(w);
            }
        }
        // Pair typo fixes greedily.
        let mut used = vec![false; removed.len()];
        let mut typo = vec![false; added.len()];
        let mut typo_pairs = 0;
        for (i, a) in added.iter().enumerate() {
            let a = normalise(a).to_lowercase();
            if let Some(j) = (0..removed.len()).find(|j| {
                !used[*j] && {
                    let r = normalise(removed[*j]).to_lowercase();
                    let d = edit_distance(&a, &r, 3);
                    d <= 2 && d * 3 <= a.chars().count().max(r.chars().count())
                }
            }) {
                used[j] = true;
                typo[i] = true;
                typo_pairs += 1;
            }
        }
        Self {
            added,
            removed,
            typo,
            typo_pairs,
        }
    }

    /// Whether every added and removed word satisfies `f`.
    fn all(&self, f: impl Fn(&str) -> bool) -> bool {
        self.added.iter().chain(&self.removed).all(|w| f(w))
    }
}

/// A word without surrounding punctuation.
fn normalise(w: &str) -> &str {
    w.trim_matches(|c: char| !c.is_alphanumeric())
}

/// Edit distance of `a` and `b` (insertions, deletions, substitutions and transpositions of
/// adjacent characters), or `cap` when it is at least `cap`.
fn edit_distance(a: &str, b: &str, cap: usize) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) >= cap {
        return cap;
    }
    // Three rows of the optimal-string-alignment table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 0..a.len() {
        cur[0] = i + 1;
        for j in 0..b.len() {
            let mut d = (prev[j] + usize::from(a[i] != b[j]))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                d = d.min(before[j - 1] + 1);
            }
            cur[j + 1] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()].min(cap)
}

/// A version, date, time or number: `v1.2.3`, `2.0.0-beta.1`, `2025-06-18`, `12:30`, `1,024`.
fn versionish(w: &str) -> bool {
    let w = normalise(w);
    let w = w
        .strip_prefix(['v', 'V'])
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(w);
    w.starts_with(|c: char| c.is_ascii_digit())
        && w.chars().filter(char::is_ascii_alphabetic).count() <= 8
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | ':' | ',' | '/'))
}

fn is_email(w: &str) -> bool {
    let Some((local, domain)) = w.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
}

fn is_phone(w: &str) -> bool {
    w.starts_with('+')
        && w.chars().filter(char::is_ascii_digit).count() >= 7
        && w[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || "-(). ".contains(c))
}

/// The other tool `w` names (exactly, or behind a server prefix), or an `mcp_` name.
fn other_tool<'t>(w: &'t str, others: &[&'t str]) -> Option<&'t str> {
    if w.len() > 4 && w.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("mcp_")) {
        return Some(w);
    }
    others.iter().copied().find(|t| {
        !t.is_empty()
            && (w.eq_ignore_ascii_case(t)
                || (w.len() > t.len()
                    && w.is_char_boundary(w.len() - t.len())
                    && w[w.len() - t.len()..].eq_ignore_ascii_case(t)
                    && matches!(
                        w.as_bytes()[w.len() - t.len() - 1],
                        b'_' | b'-' | b'.' | b':' | b'/'
                    )))
    })
}

/// Whether `text` mentions the tool name `t` (ASCII case ignored).
fn mentions(text: &str, t: &str) -> bool {
    occurrences(text, t) > 0
}

/// File names of credentials.
fn sensitive_name(w: &str) -> bool {
    let w = w.to_ascii_lowercase();
    [
        ".ssh",
        "id_rsa",
        "id_ed25519",
        "id_ecdsa",
        ".env",
        "mcp.json",
        ".aws",
        ".npmrc",
        ".netrc",
        ".pypirc",
        ".git-credentials",
        "/etc/shadow",
        "/etc/passwd",
        ".kube",
        "credentials.json",
        "claude_desktop_config.json",
        ".cursor",
    ]
    .iter()
    .any(|s| w.contains(s))
        && !w.ends_with(".pub")
        && !w.contains(".env.example")
}

/// `s` with runs of white space collapsed into one space, trimmed.
fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to 60 characters for a change description.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}
