//! Hidden blocks: `<IMPORTANT>`-style tags (always), and HTML comments, markdown comments and
//! elements hidden by CSS or attributes when what they hide is a finding or addresses the model.

use std::ops::Range;

use regex::Captures;

use super::Hit;
use super::instructions::DIRECTIVE_MODEL;
use super::pipeline::Sink;
use super::text::{excerpt, floor_char};

/// How far a closing tag is looked for (bytes).
const CLOSE_REACH: usize = 64 * 1024;
/// How far the end of a hidden HTML element is looked for (bytes).
const ELEMENT_REACH: usize = 8 * 1024;
/// How far an unclosed block extends (bytes).
const UNCLOSED_REACH: usize = 8 * 1024;

/// `</name>` (ASCII case-insensitive, spaces allowed) in `text[from..]` within `reach` bytes: its
/// start and end.
fn find_close(text: &str, from: usize, name: &str, reach: usize) -> Option<Range<usize>> {
    let to = floor_char(text, from.saturating_add(reach));
    let hay = &text.as_bytes()[from..to];
    let name = name.as_bytes();
    for p in memchr::memmem::find_iter(hay, b"</") {
        let rest = &hay[p + 2..];
        let ws = rest
            .iter()
            .take_while(|c| **c == b' ' || **c == b'\t')
            .count();
        let rest = &rest[ws..];
        if rest.len() > name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
            let after = &rest[name.len()..];
            let ws2 = after
                .iter()
                .take_while(|c| **c == b' ' || **c == b'\t')
                .count();
            if after.get(ws2) == Some(&b'>') {
                let end = from + p + 2 + ws + name.len() + ws2 + 1;
                return Some(from + p..end);
            }
        }
    }
    None
}

/// The end of the paragraph starting at `from` (a blank line), within [`UNCLOSED_REACH`].
pub(super) fn paragraph_end(text: &str, from: usize) -> usize {
    let to = floor_char(text, from.saturating_add(UNCLOSED_REACH));
    memchr::memmem::find(&text.as_bytes()[from..to], b"\n\n").map_or(to, |p| from + p)
}

/// `<IMPORTANT>…</IMPORTANT>` and its kin: always a finding; the span covers the block.
pub(super) fn hidden_tag(text: &str, caps: &Captures<'_>) -> Option<Hit> {
    let m = caps.get(0)?.range();
    let name = caps.name("tag")?.as_str();
    // A named group of a regular expression (`(?P<secret>…)`, `(?<secret>…)`) is code.
    if text[..m.start].ends_with("?P") || text[..m.start].ends_with("(?") {
        return None;
    }
    let end = match find_close(text, m.end, name, CLOSE_REACH) {
        Some(close) => close.end,
        None => paragraph_end(text, m.end),
    };
    let inner = m.end..end;
    Some(Hit {
        span: m.start..end,
        detail: Some(format!(
            "`<{}>` block ({} bytes): {}",
            name.to_ascii_uppercase(),
            end - m.end,
            excerpt(text, &inner)
        )),
        resume: end,
    })
}

/// An HTML comment, when what it hides is a finding or addresses the model.
pub(super) fn html_comment(
    text: &str,
    m: Range<usize>,
    sink: &Sink,
    skip: &mut usize,
) -> Option<Hit> {
    let (content, end) = match memchr::memmem::find(&text.as_bytes()[m.end..], b"-->") {
        Some(p) => (m.end..m.end + p, m.end + p + 3),
        None => (m.end..text.len(), text.len()),
    };
    *skip = end;
    hidden_content(text, m.start..end, content, sink)
}

/// A markdown comment (`[//]: # (…)`), likewise; the span is the line.
pub(super) fn markdown_comment(
    text: &str,
    m: Range<usize>,
    sink: &Sink,
    skip: &mut usize,
) -> Option<Hit> {
    let end = memchr::memchr(b'\n', &text.as_bytes()[m.end..]).map_or(text.len(), |p| m.end + p);
    *skip = end;
    hidden_content(text, m.start..end, m.end..end, sink)
}

/// An element hidden by CSS or attributes (`display:none`, `aria-hidden`, `hidden`…), likewise;
/// the span is the element.
pub(super) fn hidden_html(
    text: &str,
    m: Range<usize>,
    sink: &Sink,
    skip: &mut usize,
) -> Option<Hit> {
    let b = text.as_bytes();
    // The start tag the match is in.
    let tag_start = if b[m.start] == b'<' {
        m.start
    } else {
        let lo = m.start.saturating_sub(1024);
        let p = memchr::memrchr(b'<', &b[lo..m.start])? + lo;
        if memchr::memchr(b'>', &b[p..m.start]).is_some() {
            return None;
        }
        p
    };
    let name_len = b[tag_start + 1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
        .count();
    let name = &text[tag_start + 1..tag_start + 1 + name_len];
    if name.is_empty()
        || [
            "style", "script", "link", "meta", "input", "img", "br", "hr", "template", "source",
            "iframe", "svg", "path",
        ]
        .iter()
        .any(|v| name.eq_ignore_ascii_case(v))
    {
        return None;
    }
    let to = floor_char(text, m.end + 2048);
    let tag_end = memchr::memchr(b'>', &b[m.start..to])? + m.start + 1;
    let close = find_close(text, tag_end, name, ELEMENT_REACH)?;
    *skip = close.end;
    hidden_content(text, tag_start..close.end, tag_end..close.start, sink)
}

/// Reports `span` when `content` holds a content finding or text addressed to the model.
fn hidden_content(
    text: &str,
    span: Range<usize>,
    content: Range<usize>,
    sink: &Sink,
) -> Option<Hit> {
    let inner = sink.starts_within(&content);
    if inner.is_none() && !DIRECTIVE_MODEL.is_match(&text[content.clone()]) {
        return None;
    }
    let detail = match inner {
        Some(kind) => format!("contains {kind}: {}", excerpt(text, &content)),
        None => excerpt(text, &content),
    };
    Some(Hit {
        resume: span.end,
        span,
        detail: Some(detail),
    })
}
