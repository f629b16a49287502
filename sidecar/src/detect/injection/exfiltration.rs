//! Checks of exfiltration: URLs and image links that carry data, and instructions to send data
//! to an address or to put it in a URL.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::Hit;
use super::checks::{floor, re};
use super::text::{excerpt, sentence_start};
use super::urls::{trim_url, url_carries_data};

/// Verbs of sending.
static SEND_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:send|forward|copy|cc|bcc|email|e-mail|mail|post|upload|transmit|exfiltrate|leak|deliver|share|submit|relay|redirect)\b",
    )
});

/// What is sent, when it is data rather than a bug report.
static DATA_NOUN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:a\s+copy|copies|all|every(?:thing)?|each|(?:the|its|their|your|this|these|those|any)\s+(?:\S+\s+){0,3}?(?:conversations?|chats?|history|contents?|data|messages|e?mails|results|outputs?|credentials|keys|secrets|tokens|passwords|files?|summary|memory|memories|context|transcripts?|logs)|them|it)\b",
    )
});

/// What people send to an address in ordinary documents.
static BENIGN_NOUN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:feedback|bugs?|issues?|questions?|patch(?:es)?|pull\s+requests?|inquir(?:y|ies)|suggestions?|comments?|support|vulnerabilit(?:y|ies)|security\s+(?:reports?|issues?)|contributions?|PRs?|translations?|complaints?|applications?|resumes?|CVs?|invoices?|orders?)\b",
    )
});

/// Verbs of putting something somewhere.
static EMBED_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:append|add|include|put|embed|encode|insert|place|attach|pass|send)\b")
});

/// Data worth exfiltrating through a URL.
static EXFIL_DATA: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:conversations?|chat(?:\s+history)?|history|messages|summary|summari[sz]e|context|memory|memories|secrets?|credentials|passwords?|(?:the\s+)?user'?s?\s+(?:data|information|details|messages|files|emails)|personal|private|sensitive|everything|all\s+(?:the\s+)?(?:data|information|previous)|previous\s+(?:messages|responses|answers)|contents?\s+of)\b",
    )
});

/// "to " right before an address.
static TO_TAIL: LazyLock<Regex> = LazyLock::new(|| re(r#"(?i)\bto\s+[`'"<(]?$"#));

/// `Check::Url`: a URL that carries data.
pub(super) fn url(text: &str, m: Range<usize>) -> Option<Hit> {
    let url = trim_url(&text[m.clone()]);
    let span = m.start..m.start + url.len();
    // A string literal in code (`"https://…?key={t}"`, `` `…${data}` ``) interpolates a
    // variable; only prose placeholders and capture services count there.
    let literal = text[..m.start].ends_with(['"', '\'', '`']);
    let why = url_carries_data(url, false, literal)?;
    Some(Hit {
        resume: span.end,
        detail: Some(format!("{why} in {}", excerpt(text, &span))),
        span,
    })
}

/// `Check::Image`: an image link whose URL carries data.
pub(super) fn image(text: &str, m: Range<usize>) -> Option<Hit> {
    let whole = &text[m.clone()];
    let url_at = whole.find("http").or_else(|| whole.find("HTTP"))?;
    let url = trim_url(&whole[url_at..]);
    let why = url_carries_data(url, true, false)?;
    let mut end = m.start + url_at + url.len();
    if whole.starts_with('!') {
        // Through the closing parenthesis of the markdown image.
        if let Some(p) = text[end..floor(text, end + 200)].find(')') {
            end += p + 1;
        }
    }
    let span = m.start..end;
    Some(Hit {
        resume: span.end,
        detail: Some(format!("{why} in {}", excerpt(text, &span))),
        span,
    })
}

/// `Check::SendTo`: an address after a send verb and a data noun.
pub(super) fn send_to(text: &str, m: Range<usize>) -> Option<Hit> {
    let b = text.as_bytes();
    let at = if text[m.clone()].contains('@') {
        // The address starts where its local part does.
        let mut a = m.start;
        while a > 0 && is_local_part(b[a - 1]) {
            a -= 1;
        }
        let from = floor(text, a.saturating_sub(30));
        if !TO_TAIL.is_match(&text[from..a]) {
            return None;
        }
        a
    } else {
        m.start
    };
    let before = &text[sentence_start(text, at)..at];
    (SEND_VERB.is_match(before) && DATA_NOUN.is_match(before) && !BENIGN_NOUN.is_match(before))
        .then(|| Hit {
            resume: m.end,
            span: m.clone(),
            detail: None,
        })
}

/// `Check::EmbedIn`: "in the URL/query" after an embedding verb and a data noun.
pub(super) fn embed_in(text: &str, m: Range<usize>) -> Option<Hit> {
    let before = &text[sentence_start(text, m.start)..m.start];
    (EMBED_VERB.is_match(before) && EXFIL_DATA.is_match(before)).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: None,
    })
}

/// Whether `c` may be part of an e-mail address's local part.
fn is_local_part(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}
