//! Text helpers: sentence and line spans around a match, character boundaries, and the excerpts
//! quoted in reasons.

use std::ops::Range;

use super::invisible::is_invisible;

/// How far a sentence span may extend on each side of its trigger (bytes).
const SENTENCE_REACH: usize = 400;

/// The sentence around `range`: from the previous sentence boundary to the next, each at most
/// [`SENTENCE_REACH`] bytes away. Boundaries are `.`, `!` or `?` followed by white space, a blank
/// line, a line break before a list item or after a line ending in `:`, `.` or a tag, and tags.
pub(super) fn sentence(text: &str, range: &Range<usize>) -> Range<usize> {
    sentence_start(text, range.start)..sentence_end(text, range.end).max(range.end)
}

pub(super) fn sentence_start(text: &str, pos: usize) -> usize {
    let b = text.as_bytes();
    let lo = pos.saturating_sub(SENTENCE_REACH);
    let mut i = pos;
    while i > lo {
        let c = b[i - 1];
        let prev = if i >= 2 { b[i - 2] } else { b'\n' };
        if b[..i].ends_with(b"<!--") {
            break;
        }
        let boundary = match c {
            b'\n' => {
                // The last byte before this line break that is not a space or tab.
                let prev = b[lo..i - 1]
                    .iter()
                    .rev()
                    .find(|c| **c != b' ' && **c != b'\t')
                    .copied()
                    .unwrap_or(b'\n');
                matches!(prev, b'\n' | b'.' | b'!' | b'?' | b':' | b'>' | b'\r')
                    || list_item(&b[i..])
            }
            b' ' | b'\t' => matches!(prev, b'.' | b'!' | b'?'),
            b'>' => true,
            _ => false,
        };
        if boundary {
            break;
        }
        i -= 1;
    }
    if i == lo && lo > 0 {
        // No boundary within reach: start at the next white space, to avoid cutting a word.
        i = b[lo..pos]
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(pos, |p| lo + p + 1);
    }
    let mut i = ceil_char(text, i.min(pos));
    while i < pos && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

pub(super) fn sentence_end(text: &str, pos: usize) -> usize {
    let b = text.as_bytes();
    let hi = (pos + SENTENCE_REACH).min(b.len());
    let mut i = pos;
    while i < hi {
        match b[i] {
            b'.' | b'!' | b'?' if i + 1 >= b.len() || b[i + 1].is_ascii_whitespace() => {
                return i + 1;
            }
            b'\n' => {
                // The next byte that is not a space or tab.
                let next = b[i + 1..hi]
                    .iter()
                    .find(|c| **c != b' ' && **c != b'\t')
                    .copied()
                    .unwrap_or(b'\n');
                if next == b'\n' || next == b'<' || next == b'\r' || list_item(&b[i + 1..]) {
                    return i;
                }
            }
            b'<' if i > pos => return i,
            b'-' if b[i..].starts_with(b"-->") => return i,
            _ => {}
        }
        i += 1;
    }
    if hi < b.len() {
        // No boundary within reach: end at the last white space, to avoid cutting a word.
        return b[pos..hi]
            .iter()
            .rposition(u8::is_ascii_whitespace)
            .map_or(floor_char(text, hi), |p| pos + p);
    }
    hi
}

/// Whether a line starts with a list marker (`-`, `*`, `•`, `1.`, `1)`), after indentation.
fn list_item(rest: &[u8]) -> bool {
    let rest = trim_ascii_start(rest);
    match rest.first() {
        Some(b'-' | b'*' | b'+') => rest.get(1).is_some_and(|c| *c == b' '),
        Some(c) if c.is_ascii_digit() => {
            let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            matches!(rest.get(digits), Some(b'.' | b')'))
                && rest.get(digits + 1).is_some_and(|c| *c == b' ')
        }
        _ => rest.starts_with("•".as_bytes()),
    }
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    &b[n..]
}

/// The whole line(s) around `range`, without the line break.
pub(super) fn line(text: &str, range: &Range<usize>) -> Range<usize> {
    let start = memchr::memrchr(b'\n', &text.as_bytes()[..range.start]).map_or(0, |p| p + 1);
    let end =
        memchr::memchr(b'\n', &text.as_bytes()[range.end..]).map_or(text.len(), |p| range.end + p);
    start..end
}

/// The byte offset of the character after the one at `pos` (or one past the end).
pub(super) fn next_char(text: &str, pos: usize) -> usize {
    text[pos..]
        .chars()
        .next()
        .map_or(pos + 1, |c| pos + c.len_utf8())
}

/// The largest character boundary ≤ `pos`.
pub(super) fn floor_char(text: &str, mut pos: usize) -> usize {
    pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

/// The smallest character boundary ≥ `pos`.
pub(super) fn ceil_char(text: &str, mut pos: usize) -> usize {
    pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos += 1;
    }
    pos
}

/// Longest excerpt quoted in a reason (characters).
const EXCERPT_CHARS: usize = 80;

/// A short, printable excerpt of `text[range]` in backquotes: white space collapsed, control and
/// invisible characters escaped, cut at [`EXCERPT_CHARS`].
pub(super) fn excerpt(text: &str, range: &Range<usize>) -> String {
    let s = text.get(range.clone()).unwrap_or_default();
    let mut out = String::with_capacity(s.len().min(EXCERPT_CHARS * 2) + 4);
    out.push('`');
    let mut n = 0;
    let mut space = false;
    for c in s.chars() {
        if n >= EXCERPT_CHARS {
            out.push('…');
            break;
        }
        if c.is_whitespace() {
            if !space && n > 0 {
                out.push(' ');
                n += 1;
            }
            space = true;
            continue;
        }
        space = false;
        if c.is_control() || is_invisible(c) {
            out.push_str(&format!("\\u{{{:X}}}", u32::from(c)));
        } else if c == '`' {
            out.push('\'');
        } else {
            out.push(c);
        }
        n += 1;
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out.push('`');
    out
}
