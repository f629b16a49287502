//! Checks of sensitive reads: credential files next to a read or transfer instruction,
//! parameters named after them, "pass its content as…", and moving credentials into arguments.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::Hit;
use super::checks::{floor, re};
use super::text::{sentence_end, sentence_start};

/// A read instruction before a credential file.
static READ_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:read|cat|dump|print|output|exfiltrate|extract|upload|send|pass|include|attach|provide|collect|grab|steal|leak|fetch|retrieve|lee|leer|lire|lis|leggi|lies\s+die|(?:get|read|fetch|load|open)_\w*(?:file|content|contents))\b|\bopen\s*\(",
    )
});

/// "read more", "read about": not a read instruction.
static READ_MORE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\bread\s+(?:more|about|the\s+(?:docs|documentation|guide|manual))\b")
});

/// A transfer of something read into an argument, after a credential file.
static TRANSFER_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:pass|send|include|put|insert|attach|provide|supply|append|embed|upload|post|forward)\s+(?:its|the|their|this|that|those|these|all|it|them|what|everything|whatever)\b(?:\s+\S+){0,3}?\s+(?:as|in|into|to|with|via)\b|^['"`]*\)?\.read\("#,
    )
});

/// Any transfer verb.
static TRANSFER_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:pass|send|include|append|insert|attach|put|add|provide|supply|embed|encode|upload|post|forward|share)\b",
    )
});

/// Where API documentation legitimately puts credentials.
static AUTH_PLACE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:headers?|authori[sz]ation|bearer|requests?|cookies?|config(?:uration)?|environment|keychain|vault|secret\s+manager)\b",
    )
});

/// A read instruction before "pass its content as…".
static READ_BEFORE_PASS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:read|cat|open|contents?\s+of|load|fetch)\b"));

/// A parameter named as the destination.
static PARAM_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)^[`'"]|^(?:parameter|argument|field|param|arg|sidenote|side_note|note|notes|context|metadata|comment|extra|details)\b|^\w+[`'"]?\s+(?:parameter|argument|field|param)\b"#,
    )
});

/// "… in/as the `notes` parameter".
static PARAM_DEST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:as|in|into|to|with)\s+(?:the\s+|a\s+)?(?:[`'"]\w+[`'"]|\w+\s+(?:parameter|argument|field|param)|parameter|argument|field|param|sidenote|notes?|context|metadata)\b"#,
    )
});

/// `Check::SensitivePath`: a credential file next to a read or transfer instruction, or in a
/// parameter name.
pub(super) fn sensitive_path(text: &str, m: Range<usize>) -> Option<Hit> {
    let path = text[m.clone()].trim_start_matches(|c: char| {
        !c.is_ascii_alphanumeric() && c != '.' && c != '/' && c != '~' && c != '_'
    });
    let lower = path.to_ascii_lowercase();
    let glued = text[..m.start]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ')' | ']'));
    let method = text[m.end..].starts_with('(');
    if (lower.starts_with(".env") && (glued || method))
        || lower.ends_with(".pub")
        || [
            ".env.example",
            ".env.sample",
            ".env.template",
            ".env.dist",
            ".env.defaults",
        ]
        .iter()
        .any(|t| lower.starts_with(t))
    {
        return None;
    }
    // A parameter named after what it wants: `content_from_reading_ssh_id_rsa`.
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut a = m.start;
    while a > 0 && m.start - a < 128 && ident(b[a - 1]) {
        a -= 1;
    }
    let mut z = m.end;
    while z < b.len() && z - m.end < 128 && ident(b[z]) {
        z += 1;
    }
    if a < m.start || z > m.end {
        let name = text[a..z].to_ascii_lowercase();
        if ["content", "read", "from", "value", "data", "file"]
            .iter()
            .any(|w| name.contains(w))
        {
            return Some(Hit {
                resume: z,
                span: a..z,
                detail: Some(format!("parameter `{}`", excerpt_plain(&text[a..z]))),
            });
        }
    }
    let from = sentence_start(text, m.start).max(floor(text, m.start.saturating_sub(160)));
    let before = &text[from..m.start];
    let read_before = READ_VERB.is_match(before) && !READ_MORE.is_match(before);
    let to = sentence_end(text, m.end)
        .min(floor(text, m.end + 240))
        .max(m.end);
    let transfer_after = TRANSFER_AFTER.is_match(&text[m.end..to]);
    (read_before || transfer_after).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: Some(format!("`{}`", excerpt_plain(path))),
    })
}

/// `Check::PassContent`: "pass its content as…" after a read, into a named parameter.
pub(super) fn pass_content(text: &str, m: Range<usize>) -> Option<Hit> {
    let from = floor(text, m.start.saturating_sub(400));
    let before = &text[from..m.start];
    // The destination: the last word of the match and what follows.
    let dest_at = text[..m.end]
        .rfind(|c: char| c.is_whitespace())
        .map_or(m.end, |p| p + 1);
    let dest = &text[dest_at..floor(text, dest_at + 60)];
    (READ_BEFORE_PASS.is_match(before) && PARAM_WORD.is_match(dest)).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: None,
    })
}

/// `Check::CredentialTransfer`: an instruction that moves credentials somewhere.
pub(super) fn credential_transfer(text: &str, m: Range<usize>) -> Option<Hit> {
    let matched = &text[m.clone()];
    let verb = matched
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let end = sentence_end(text, m.end).max(m.end);
    let rest = &text[m.end..end];
    // "… will leak passwords", "it sends credentials": a description, not an instruction.
    let subject = text[floor(text, m.start.saturating_sub(16))..m.start]
        .split_whitespace()
        .next_back()
        .unwrap_or_default()
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_ascii_lowercase();
    let descriptive = matches!(
        subject.as_str(),
        "will"
            | "would"
            | "can"
            | "could"
            | "may"
            | "might"
            | "cannot"
            | "can't"
            | "won't"
            | "does"
            | "did"
            | "it"
            | "which"
            | "that"
            | "this"
    );
    // "send its credentials": the subject's own, as in protocol documentation.
    let own = matched
        .split_whitespace()
        .nth(1)
        .is_some_and(|w| w.eq_ignore_ascii_case("its") || w.eq_ignore_ascii_case("their"));
    if descriptive || own || AUTH_PLACE.is_match(rest) {
        return None;
    }
    let outright = matches!(
        verb.as_str(),
        "send" | "upload" | "leak" | "exfiltrate" | "steal" | "grab" | "forward"
    );
    let into_argument = matches!(verb.as_str(), "include" | "pass" | "attach" | "append")
        && PARAM_DEST.is_match(rest);
    (outright || into_argument || TRANSFER_VERB.is_match(rest)).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: None,
    })
}

/// `s` without control characters, cut at 80 characters (for details).
fn excerpt_plain(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .map(|c| if c == '`' { '\'' } else { c })
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}
