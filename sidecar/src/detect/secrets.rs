//! Credential-leak scanner for MCP tool-call arguments and tool results.
//!
//! # Catalogue
//!
//! [`SecretScanner::builtin`] knows the secret types of the `CATALOGUE` in `catalogue.rs`
//! (see [`SecretScanner::kinds`] for their ids). They fall into two tiers:
//!
//! * **Specific formats**, recognised by a distinctive prefix or structure: cloud keys (AWS access
//!   key ids, labelled AWS secret access keys, Google API keys and OAuth secrets/tokens, GCP
//!   service-account keys, Azure storage and shared-access keys, DigitalOcean, Databricks), source
//!   forges and registries (GitHub classic and fine-grained tokens, GitLab, npm, PyPI, Docker Hub,
//!   Hugging Face), SaaS APIs (OpenAI, Anthropic, Slack tokens and webhooks, Stripe keys and
//!   webhook secrets, Twilio, SendGrid, Mailgun, Shopify, Discord bot tokens and webhooks,
//!   Telegram bot tokens, labelled Datadog and Heroku keys, Linear, Sentry, Atlassian, Grafana,
//!   New Relic), infrastructure secrets (HashiCorp Vault tokens, PEM/OpenSSH/PGP private key
//!   blocks, `age` secret keys) and JWTs.
//! * **Heuristics**, for secrets without a fixed format: passwords in database connection strings
//!   and other URLs (`scheme://user:password@host`), `Authorization: Bearer`/`Basic` credentials,
//!   and the generic assignment `password=…`, `"api_key": "…"`, `DB_TOKEN: …` whose value must look
//!   random (length, Shannon entropy, character classes) and must not be a placeholder (`changeme`,
//!   `${VAR}`, `<your key>`, `****`, `example`, …), a path, a URL or a code expression.
//!
//! A match reports only the secret value: for `password=s3cr…` the range covers `s3cr…`, for
//! `postgres://app:pw@db/x` it covers `pw`. That keeps redacted text readable
//! (`postgres://app:[REDACTED:database-connection-string]@db/x`).
//!
//! # Design
//!
//! The scanner sits on the request path of a latency-critical proxy, so:
//!
//! * every regular expression is compiled once (built-ins in a process-wide [`LazyLock`]); cloning
//!   a scanner is cheap;
//! * all built-in patterns are also compiled into one [`RegexSet`]; a text without secrets costs a
//!   single linear pass of that set (`is_match`, which allocates nothing once the regex caches are
//!   warm), and only the patterns the set reports are run individually to locate matches;
//! * patterns use ASCII-only classes and ASCII word boundaries (`(?-u:\b)`), which keeps the lazy
//!   DFA small and fast on any input (Unicode word boundaries make it fall back to slower engines on
//!   non-ASCII text);
//! * per-pattern post-validation (entropy, placeholders, decoding a JWT header or a Discord token's
//!   user id, …) is plain code run on candidate matches only;
//! * the `regex` crate guarantees linear-time matching, and the match loop always moves forward
//!   past the previous secret, so scanning is linear in the input size.
//!
//! Custom patterns are compiled into a second set from their source (`Regex::as_str`); options
//! given through `RegexBuilder` other than size limits are therefore not seen by that set (inline
//! flags such as `(?i)` are). If the set cannot be built, each custom regex is run on its own.

use std::borrow::Cow;
use std::ops::{ControlFlow, Range};
use std::sync::{Arc, LazyLock};

use regex::{CaptureLocations, Regex, RegexSet};

use catalogue::{BUILTIN_LEN, CATALOGUE, Check, Tier};
use validate::validate;

mod catalogue;
mod generic;
#[cfg(test)]
mod tests;
mod validate;

/// One secret found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMatch {
    /// Stable id of the secret type, e.g. "aws-access-key-id", "github-token", or a custom id.
    pub kind: Arc<str>,
    /// Byte range of the secret value itself within the scanned text (only the value: for
    /// `password=hunter2xyz...` it covers the value, not `password=`).
    pub range: Range<usize>,
}

/// The credential-leak scanner: built-in catalogue plus optional organisation-specific patterns.
#[derive(Debug, Clone)]
pub struct SecretScanner {
    builtin: &'static Compiled,
    custom: Arc<[Pattern]>,
    /// All custom patterns in one set, or `None` when there are none or the set could not be built
    /// (then each custom regex runs on its own).
    custom_set: Option<RegexSet>,
    kinds: Arc<[Arc<str>]>,
}

impl SecretScanner {
    /// The built-in catalogue (at least 25 secret types).
    pub fn builtin() -> Self {
        let builtin = &*BUILTIN;
        Self {
            builtin,
            custom: Arc::from(Vec::new()),
            custom_set: None,
            kinds: builtin.kinds.clone(),
        }
    }

    /// Built-ins plus organisation-specific patterns: (id, compiled regex). The whole regex match is
    /// the secret, unless the regex has a capture group named `secret`, then only that group.
    pub fn with_custom(custom: &[(String, Regex)]) -> Self {
        let builtin = &*BUILTIN;
        let patterns: Vec<Pattern> = custom
            .iter()
            .map(|(id, regex)| Pattern {
                kind: Arc::from(id.as_str()),
                group: secret_group(regex),
                regex: regex.clone(),
                check: Check::None,
                tier: Tier::Custom,
            })
            .collect();
        let custom_set = if patterns.is_empty() {
            None
        } else {
            RegexSet::new(patterns.iter().map(|p| p.regex.as_str())).ok()
        };
        let mut kinds: Vec<Arc<str>> = builtin.kinds.to_vec();
        for p in &patterns {
            if !kinds.contains(&p.kind) {
                kinds.push(p.kind.clone());
            }
        }
        Self {
            builtin,
            custom: patterns.into(),
            custom_set,
            kinds: kinds.into(),
        }
    }

    /// Fast check: does the text contain any secret?
    pub fn contains_secret(&self, text: &str) -> bool {
        self.scan(text, &mut |_, _| ControlFlow::Break(()))
            .is_break()
    }

    /// Every secret in the text, sorted by start, non-overlapping (on overlap keep the longer/earlier
    /// match; on a tie the more specific type wins: built-in formats, then custom patterns, then
    /// heuristics).
    pub fn find(&self, text: &str) -> Vec<SecretMatch> {
        let mut found: Vec<Candidate> = Vec::new();
        let _ = self.scan(text, &mut |pattern, range| {
            found.push(Candidate {
                range,
                tier: pattern.tier,
                kind: pattern.kind.clone(),
            });
            ControlFlow::Continue(())
        });
        resolve_overlaps(found)
    }

    /// The text with each secret replaced by `[REDACTED:<kind>]`; borrowed when nothing was found.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let found = self.find(text);
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 16 * found.len());
        let mut last = 0;
        for m in &found {
            out.push_str(&text[last..m.range.start]);
            out.push_str("[REDACTED:");
            out.push_str(&m.kind);
            out.push(']');
            last = m.range.end;
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// The ids of all known kinds (built-in and custom), for docs and metrics.
    pub fn kinds(&self) -> Vec<Arc<str>> {
        self.kinds.to_vec()
    }

    /// Runs every pattern that can match `text` and calls `emit` for each validated secret, until it
    /// breaks.
    fn scan(
        &self,
        text: &str,
        emit: &mut dyn FnMut(&Pattern, Range<usize>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let builtin = self.builtin;
        // The common case: one pass, no allocation.
        if builtin.set.is_match(text) {
            for i in builtin.set.matches(text).iter() {
                scan_pattern(&builtin.patterns[i], text, emit)?;
            }
        }
        if self.custom.is_empty() {
            return ControlFlow::Continue(());
        }
        match &self.custom_set {
            Some(set) => {
                if set.is_match(text) {
                    for i in set.matches(text).iter() {
                        scan_pattern(&self.custom[i], text, emit)?;
                    }
                }
            }
            None => {
                for p in self.custom.iter() {
                    scan_pattern(p, text, emit)?;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

impl Default for SecretScanner {
    fn default() -> Self {
        Self::builtin()
    }
}

// === Compiled form ===

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    kind: Arc<str>,
    regex: Regex,
    /// Capture group of the secret (0: the whole match).
    group: usize,
    check: Check,
    tier: Tier,
}

/// The compiled built-in catalogue.
#[derive(Debug)]
struct Compiled {
    set: RegexSet,
    patterns: Vec<Pattern>,
    kinds: Arc<[Arc<str>]>,
}

static BUILTIN: LazyLock<Compiled> = LazyLock::new(|| {
    let set = RegexSet::new(CATALOGUE.iter().map(|s| s.regex))
        .expect("the built-in secret patterns compile into one set");
    let mut kinds: Vec<Arc<str>> = Vec::new();
    let patterns: Vec<Pattern> = CATALOGUE
        .iter()
        .map(|s| {
            let regex = Regex::new(s.regex).expect("every built-in secret pattern compiles");
            let kind = match kinds.iter().find(|k| &***k == s.kind) {
                Some(k) => k.clone(),
                None => {
                    let k: Arc<str> = Arc::from(s.kind);
                    kinds.push(k.clone());
                    k
                }
            };
            Pattern {
                kind,
                group: secret_group(&regex),
                regex,
                check: s.check,
                tier: s.tier,
            }
        })
        .collect();
    debug_assert_eq!(patterns.len(), BUILTIN_LEN);
    Compiled {
        set,
        patterns,
        kinds: kinds.into(),
    }
});

/// Index of the capture group named `secret`, or 0 (the whole match).
fn secret_group(regex: &Regex) -> usize {
    regex
        .capture_names()
        .position(|name| name == Some("secret"))
        .unwrap_or(0)
}

// === Matching ===

/// A validated match before overlap resolution.
#[derive(Debug)]
struct Candidate {
    range: Range<usize>,
    tier: Tier,
    kind: Arc<str>,
}

/// Finds every match of one pattern, validates it and calls `emit` with the secret's range. After
/// each match the search resumes at the end of the secret (not of the whole match, which may have
/// consumed a delimiter), and always moves forward, so the loop is linear.
fn scan_pattern(
    p: &Pattern,
    text: &str,
    emit: &mut dyn FnMut(&Pattern, Range<usize>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut locs: Option<CaptureLocations> = None;
    let mut pos = 0;
    while pos <= text.len() {
        let Some(m) = p.regex.find_at(text, pos) else {
            break;
        };
        let whole = m.range();
        let secret = if p.group == 0 {
            Some(whole.clone())
        } else if p.tier == Tier::Heuristic && whole.len() > MAX_HEURISTIC_MATCH {
            // Kilobytes of password or bearer token are a blob, not a credential; skipping it
            // also spares the capture engine a long span.
            None
        } else {
            // `find_at` ran the fast DFA; the capture engines then only walk this match, which
            // starts where the search does.
            let locs = locs.get_or_insert_with(|| p.regex.capture_locations());
            p.regex
                .captures_read_at(locs, text, whole.start)
                .and_then(|_| locs.get(p.group))
                .map(|(s, e)| s..e)
        };
        let mut resume = match &secret {
            Some(s) if s.end > pos => s.end,
            _ if whole.end > pos => whole.end,
            _ => next_char(text, pos),
        };
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            let (verdict, scanned) = validate(p, text, &whole, secret);
            // Never rescan what validation already looked at (PEM bodies).
            resume = resume.max(scanned);
            if let Some(range) = verdict.filter(|r| !r.is_empty()) {
                emit(p, range)?;
            }
        }
        pos = resume;
    }
    ControlFlow::Continue(())
}

/// Longest whole match of a heuristic pattern that is still considered (bytes).
const MAX_HEURISTIC_MATCH: usize = 4096;

/// The byte offset of the character after the one at `pos` (or one past the end).
fn next_char(text: &str, pos: usize) -> usize {
    text[pos..]
        .chars()
        .next()
        .map_or(pos + 1, |c| pos + c.len_utf8())
}

/// Sorts candidates by start and drops overlaps: the longer match wins, then the earlier one, then
/// the more specific tier, then catalogue order (preserved by the stable sort).
fn resolve_overlaps(mut found: Vec<Candidate>) -> Vec<SecretMatch> {
    if found.is_empty() {
        return Vec::new();
    }
    found.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.len().cmp(&a.range.len()))
            .then(a.tier.cmp(&b.tier))
    });
    let mut out: Vec<SecretMatch> = Vec::with_capacity(found.len());
    for c in found {
        if let Some(last) = out.last_mut()
            && c.range.start < last.range.end
        {
            // Overlap: `last` starts no later than `c`; keep `c` only if strictly longer. `c`
            // cannot overlap the matches before `last`: they all end before `last` starts.
            if c.range.len() > last.range.len() {
                *last = SecretMatch {
                    kind: c.kind,
                    range: c.range,
                };
            }
            continue;
        }
        out.push(SecretMatch {
            kind: c.kind,
            range: c.range,
        });
    }
    out
}
