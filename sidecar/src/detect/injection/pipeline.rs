//! The scan pipeline: the candidate sink, the compiled catalogue, JSON-escape handling, and the
//! loop that runs each reported pattern and its check.

use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use regex::{Regex, RegexSet, RegexSetBuilder};

use super::catalogue::{CATALOGUE, Check, Phase, SpanRule, Spec};
use super::text::{excerpt, line, next_char, sentence};
use super::{Candidate, InjectionKind, ScanContext, byte_pass, checks, invisible};

/// Where candidates go: collected, or only the first one (then the scan stops).
#[derive(Debug)]
pub(super) struct Sink {
    pub(super) found: Vec<Candidate>,
    pub(super) first_only: bool,
    /// `found[..sorted]` are the content findings, sorted by start (set before the container
    /// phase, which appends after them).
    pub(super) sorted: usize,
}

impl Sink {
    pub(super) fn emit(
        &mut self,
        kind: InjectionKind,
        span: Range<usize>,
        reason: String,
    ) -> ControlFlow<()> {
        self.found.push(Candidate { kind, span, reason });
        if self.first_only {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Sorts the content findings, before the container phase.
    fn sort_content(&mut self) {
        self.found.sort_by_key(|c| c.span.start);
        self.sorted = self.found.len();
    }

    /// The kind of the first content finding that starts within `range`, if any.
    pub(super) fn starts_within(&self, range: &Range<usize>) -> Option<InjectionKind> {
        let content = &self.found[..self.sorted];
        let i = content.partition_point(|c| c.span.start < range.start);
        content
            .get(i)
            .filter(|c| c.span.start < range.end)
            .map(|c| c.kind)
    }
}

/// The compiled catalogue.
#[derive(Debug)]
struct Compiled {
    set: RegexSet,
    regexes: Vec<Regex>,
}

/// Rewrites `\b` into an ASCII word boundary: the lazy DFA handles those on any input, and
/// patterns that start with a word keep their literal prefilter.
pub(super) fn ascii_boundaries(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

/// Whether `text` has JSON string escapes (`\n`, `\r`, `\t`, `\"`): tool results are often JSON
/// documents whose strings keep them (`"body": "Thanks!\n\nIgnore previous instructions…"`),
/// which glues words together (`nIgnore`) for word boundaries.
pub(super) fn has_json_escapes(text: &str) -> bool {
    let b = text.as_bytes();
    memchr::memchr_iter(b'\\', b).any(|i| matches!(b.get(i + 1), Some(b'n' | b'r' | b't' | b'"')))
}

/// A copy of `text` of the same length, with each JSON escape turned into the character it
/// stands for plus a space (`\n` → newline, space; `\"` → space, quote), so that every offset and
/// character boundary is the same as in `text`.
pub(super) fn unescaped(text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\\' {
            let pair: Option<[u8; 2]> = match b[i + 1] {
                b'n' => Some(*b"\n "),
                b'r' => Some(*b"\r "),
                b't' => Some(*b"\t "),
                b'"' => Some(*b" \""),
                // An escaped backslash stays as it is.
                b'\\' => Some(*b"\\\\"),
                _ => None,
            };
            if let Some(pair) = pair {
                b[i] = pair[0];
                b[i + 1] = pair[1];
                i += 2;
                continue;
            }
        }
        i += 1;
    }
    // Only ASCII bytes were replaced by ASCII bytes, so the copy is still UTF-8.
    String::from_utf8(b).unwrap_or_else(|_| text.to_owned())
}

/// Capacity of the trigger set's lazy DFA cache (bytes, per thread that scans).
const DFA_CACHE: usize = 8 << 20;

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let sources: Vec<String> = CATALOGUE
        .iter()
        .map(|s| ascii_boundaries(s.regex))
        .collect();
    // The set's lazy DFA needs more room than the default (2 MiB) to keep its states across
    // texts; with less it rebuilds them on every text and runs ten times slower.
    let set = RegexSetBuilder::new(&sources)
        .dfa_size_limit(DFA_CACHE)
        .build()
        .expect("the injection patterns compile into one set");
    let regexes = sources
        .iter()
        .map(|s| Regex::new(s).expect("every injection pattern compiles"))
        .collect();
    Compiled { set, regexes }
});

/// Runs the scan, sending candidates to `sink`; breaks after the first when `sink.first_only`.
pub(super) fn run(text: &str, ctx: &ScanContext<'_>, sink: &mut Sink) -> ControlFlow<()> {
    let compiled = &*COMPILED;
    let mut containers = false;
    if compiled.set.is_match(text) {
        let matches = compiled.set.matches(text);
        for i in matches.iter() {
            let spec = &CATALOGUE[i];
            if spec.phase == Phase::Container {
                containers = true;
                continue;
            }
            scan_spec(spec, &compiled.regexes[i], text, ctx, sink)?;
        }
        // Base64 blobs and whitespace runs need no pattern.
        let runs = byte_pass::byte_pass(text, sink)?;
        if containers || !runs.is_empty() {
            sink.sort_content();
            for i in matches.iter() {
                let spec = &CATALOGUE[i];
                if spec.phase == Phase::Container {
                    scan_spec(spec, &compiled.regexes[i], text, ctx, sink)?;
                }
            }
            byte_pass::scroll_out(text, &runs, sink)?;
        }
        return ControlFlow::Continue(());
    }
    let runs = byte_pass::byte_pass(text, sink)?;
    if !runs.is_empty() {
        sink.sort_content();
        byte_pass::scroll_out(text, &runs, sink)?;
    }
    ControlFlow::Continue(())
}

/// Finds every match of one pattern, checks its context, and emits the findings. The search
/// always moves forward, so the loop is linear.
fn scan_spec(
    spec: &Spec,
    regex: &Regex,
    text: &str,
    ctx: &ScanContext<'_>,
    sink: &mut Sink,
) -> ControlFlow<()> {
    let mut pos = 0;
    while pos < text.len() {
        let Some(caps) = regex.captures_at(text, pos) else {
            break;
        };
        let Some(whole) = caps.get(0) else {
            break;
        };
        let m = whole.range();
        let mut resume = if spec.check == Check::Invisible {
            // Judge a run of invisible characters once, as a whole.
            invisible::invisible_run_end(text, m.start)
        } else {
            m.end
        };
        if resume <= pos {
            resume = next_char(text, pos);
        }
        // Containers that are not findings still let the search skip their content.
        let mut skip = 0;
        if let Some(hit) = checks::check(spec, text, &caps, ctx, sink, &mut skip) {
            let span = match spec.span {
                SpanRule::Match => hit.span,
                SpanRule::Sentence => sentence(text, &hit.span),
                SpanRule::Line => line(text, &hit.span),
            };
            resume = resume.max(hit.resume);
            let reason = match hit.detail {
                Some(detail) => format!("{}: {detail}", spec.what),
                None => format!("{}: {}", spec.what, excerpt(text, &m)),
            };
            sink.emit(spec.kind, span, reason)?;
        }
        pos = resume.max(skip);
    }
    ControlFlow::Continue(())
}
