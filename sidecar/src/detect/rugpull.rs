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
//! * the new description has an [`injection`](super::injection) finding that the old one did not have (hidden
//!   blocks, instruction overrides, shadowing, exfiltration URLs, concealment, sensitive reads,
//!   invisible characters, base64 text);
//! * the description adds a URL, an e-mail address or a phone number, a reference to another tool
//!   of the session (a name from `other_tools`, or an `mcp_…` name), invisible characters (those
//!   [`injection::is_invisible_char`](super::injection::is_invisible_char) names), a hidden-block marker (`<!--`, `<IMPORTANT>`,
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
//!
//! # Files
//!
//! This file holds the public API: [`ToolDef`], [`ChangeRisk`], [`RugPull`], [`Pins`] and
//! [`classify`]. `snapshot.rs` keeps what a pin retains of a definition (hashes, bounded
//! description, parameter summaries); `changes.rs` compares a pin with a new listing and
//! classifies each change; `diff.rs` holds the word diff and the word-level tests the
//! classification uses.

use std::collections::HashMap;

use serde_json::Value;

use changes::compare;
use snapshot::{Snapshot, definition_hash, key, prefix};

mod changes;
mod diff;
mod snapshot;
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
