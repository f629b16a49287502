//! Checks of tool shadowing: instructions about other tools, redirections to this tool, and
//! changed recipients (see the module docs of the parent for what counts as another tool).

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::catalogue::{Need, ToolAt};
use super::checks::{floor, re};
use super::text::{excerpt, sentence_end, sentence_start};
use super::{Hit, ScanContext};

/// Words that make a sentence about another tool an instruction.
static MODIFIER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:always|must|make\s+sure|be\s+sure|ensure|need\s+to|needs\s+to|have\s+to|has\s+to|change|replace|add|include|append|prepend|bcc|cc|recipient|redirect|forward|instead|never|do\s+not|don't|remember\s+to|should)\b",
    )
});

/// Absolutes that turn a routing hint into an override.
static ABSOLUTE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:always|never|must|all|every|any|regardless|only|whenever)\b"));

/// The user's request as a trigger ("when the user asks to…").
static USER_REQUEST: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:when(?:ever)?|if|each\s+time)\s+(?:the\s+)?user\b"));

/// A literal recipient right after "change the recipient to".
static LITERAL_RECIPIENT: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"^[\s`'"]*(?:[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+|\+?\d[\d().\s-]{6,}\d|https?://)"#)
});

/// A tool reference: quoted (`qtool`) or bare (`tool`), optionally after a `(server)` prefix and
/// followed by the word "tool" (`suffix`).
macro_rules! tool {
    () => {
        r#"(?P<server>\([A-Za-z0-9_.-]+\)\s*)?(?:[`'"](?P<qtool>[A-Za-z][A-Za-z0-9_.:/-]*)[`'"]|\b(?P<tool>[A-Za-z][A-Za-z0-9_.:-]*))(?:\(\))?(?P<suffix>\s+tool\b)?"#
    };
}

/// A tool reference at the start of the text after a match.
static TOOL_HEAD: LazyLock<Regex> = LazyLock::new(|| re(concat!("(?i)^", tool!())));

/// A tool reference at the end of the text before a match.
static TOOL_TAIL: LazyLock<Regex> =
    LazyLock::new(|| re(concat!("(?i)", tool!(), r"\s*(?:function\s+)?$")));

/// "when `<tool>`" at the end of the text before a match.
static WHEN_TOOL_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)\bwhen(?:ever)?\s+(?:the\s+)?",
        tool!(),
        r"\s*(?:function\s+)?$"
    ))
});

/// How far a tool name is looked for before or after a match (bytes).
const TOOL_REACH: usize = 120;

/// Words that are not tool names.
const STOP_WORDS: &[&str] = &[
    "a",
    "all",
    "an",
    "another",
    "any",
    "appropriate",
    "built-in",
    "correct",
    "current",
    "default",
    "each",
    "every",
    "first",
    "following",
    "function",
    "functions",
    "given",
    "it",
    "its",
    "last",
    "me",
    "my",
    "new",
    "next",
    "old",
    "one",
    "other",
    "our",
    "previous",
    "relevant",
    "right",
    "same",
    "second",
    "some",
    "specific",
    "such",
    "that",
    "the",
    "their",
    "them",
    "these",
    "this",
    "those",
    "tool",
    "tools",
    "what",
    "which",
    "wrong",
    "you",
    "your",
];

/// `Check::Tool`: another tool named before or after the match, and what the sentence needs.
pub(super) fn tool_reference(
    text: &str,
    m: Range<usize>,
    ctx: &ScanContext<'_>,
    at: ToolAt,
    need: Need,
) -> Option<Hit> {
    let (span, tool) = match at {
        ToolAt::After => {
            let to = floor(text, m.end + TOOL_REACH);
            let caps = TOOL_HEAD.captures(&text[m.end..to])?;
            let tool = tool_ref(&caps, ctx)?;
            (m.start..m.end + caps.get(0)?.end(), tool)
        }
        ToolAt::Before | ToolAt::WhenBefore => {
            let from = floor(text, m.start.saturating_sub(TOOL_REACH));
            let tail = if at == ToolAt::Before {
                &*TOOL_TAIL
            } else {
                &*WHEN_TOOL_TAIL
            };
            let caps = tail.captures(&text[from..m.start])?;
            let tool = tool_ref(&caps, ctx)?;
            (from + caps.get(0)?.start()..m.end, tool)
        }
    };
    let sentence = sentence_start(text, span.start)..sentence_end(text, span.end);
    let needed = match need {
        Need::Nothing => true,
        Need::Modifier => MODIFIER.is_match(&text[span.end..sentence.end.max(span.end)]),
        Need::Absolute => ABSOLUTE.is_match(&text[sentence]),
    };
    needed.then(|| Hit {
        resume: span.end,
        detail: Some(format!("`{tool}` in {}", excerpt(text, &span))),
        span,
    })
}

/// `Check::RedirectToSelf`: triggered by the user's request, or absolute.
pub(super) fn redirect_to_self(text: &str, m: Range<usize>) -> Option<Hit> {
    let sentence = &text[sentence_start(text, m.start)..sentence_end(text, m.end)];
    (USER_REQUEST.is_match(sentence) || ABSOLUTE.is_match(sentence)).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: None,
    })
}

/// `Check::LiteralRecipient`: a literal address or number right after the match.
pub(super) fn literal_recipient(text: &str, m: Range<usize>) -> Option<Hit> {
    let after = &text[m.end..floor(text, m.end + 80)];
    LITERAL_RECIPIENT.is_match(after).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: None,
    })
}

/// The tool a shadowing pattern refers to, when it is another tool (see the module docs).
fn tool_ref<'t>(caps: &Captures<'t>, ctx: &ScanContext<'_>) -> Option<&'t str> {
    let raw = caps.name("qtool").or_else(|| caps.name("tool"))?.as_str();
    let name = raw.trim_end_matches(['.', ':', '-', '/']);
    if name.is_empty() || STOP_WORDS.iter().any(|w| name.eq_ignore_ascii_case(w)) {
        return None;
    }
    let server = caps.name("server").is_some();
    let suffix = caps.name("suffix").is_some();
    let lower_prefix = |p: &str| {
        name.len() > p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    // A one-word name ("search") is a tool only when marked as one (quoted, "the search tool").
    let plain_word = name.bytes().all(|c| c.is_ascii_lowercase())
        || (name.as_bytes()[0].is_ascii_uppercase()
            && name.bytes().skip(1).all(|c| c.is_ascii_lowercase()));
    let known = in_context(name, ctx) && (!plain_word || caps.name("qtool").is_some());
    let named = known
        || lower_prefix("mcp_")
        || lower_prefix("mcp-")
        || lower_prefix("functions.")
        || server
        || suffix;
    named.then_some(name)
}

/// Whether `name` is one of the other tools, possibly behind a server prefix
/// (`mcp_tool_send_email`, `whatsapp.send_message`, `mcp__wa__send_message`).
fn in_context(name: &str, ctx: &ScanContext<'_>) -> bool {
    ctx.other_tools.iter().any(|t| {
        let t = t.as_bytes();
        let n = name.as_bytes();
        if t.is_empty() {
            return false;
        }
        if n.eq_ignore_ascii_case(t) {
            return true;
        }
        n.len() > t.len()
            && n[n.len() - t.len()..].eq_ignore_ascii_case(t)
            && matches!(n[n.len() - t.len() - 1], b'_' | b'-' | b'.' | b':' | b'/')
    })
}
