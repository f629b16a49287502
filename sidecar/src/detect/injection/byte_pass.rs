//! The byte pass: base64 blobs that decode to prose, and whitespace runs that push text out of
//! view.

use std::ops::{ControlFlow, Range};

use super::InjectionKind;
use super::hidden::paragraph_end;
use super::instructions::{DIRECTIVE_MODEL, DIRECTIVE_ROLE};
use super::pipeline::Sink;
use super::text::{excerpt, floor_char};

/// Shortest base64 run considered (characters).
pub(super) const BLOB_MIN: usize = 200;
/// Shortest base64 run considered when the text before it asks to decode it (characters).
pub(super) const BLOB_HINTED_MIN: usize = 40;
/// How far before a short run a request to decode it is looked for (bytes).
const HINT_REACH: usize = 200;
/// How much of a blob is decoded to judge it (characters).
const BLOB_SAMPLE: usize = 4096;
/// Shortest run of spaces after text on a line that pushes the rest out of view.
pub(super) const HSPACE_MIN: usize = 100;
/// Least number of blank lines that pushes the rest out of view.
pub(super) const BLANK_LINES_MIN: usize = 30;
/// How much of a line after a run of spaces is looked at (bytes).
const TAIL_REACH: usize = 2048;

/// A whitespace run that may hide what follows.
#[derive(Debug, Clone)]
pub(super) struct Run {
    range: Range<usize>,
    /// Blank lines (else spaces on one line).
    vertical: bool,
    count: usize,
}

/// Byte classes for the pass: base64 alphabet, space/tab, newline, other.
const B64: u8 = 1;
const SPACE: u8 = 2;
const NEWLINE: u8 = 3;
const OTHER_WS: u8 = 4;

static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'-' || c == b'_' {
            B64
        } else if c == b' ' || c == b'\t' {
            SPACE
        } else if c == b'\n' {
            NEWLINE
        } else if c == b'\r' || c == 0x0B || c == 0x0C {
            OTHER_WS
        } else {
            0
        };
        i += 1;
    }
    t
};

/// One pass over the bytes: emits base64 blobs that decode to prose, and returns the whitespace
/// runs for [`scroll_out`] (an empty vector, which does not allocate, in the common case).
pub(super) fn byte_pass(text: &str, sink: &mut Sink) -> ControlFlow<(), Vec<Run>> {
    let b = text.as_bytes();
    let mut runs = Vec::new();
    let mut b64_start = 0;
    let mut b64_len = 0;
    // Whether the current line has had a non-white-space byte.
    let mut line_text = false;
    // Newlines since the last non-white-space byte, and where that gap began.
    let mut gap_newlines = 0;
    let mut gap_start = 0;
    let mut seen_text = false;
    let mut i = 0;
    while i < b.len() {
        let class = CLASSES[usize::from(b[i])];
        if class == B64 {
            if b64_len == 0 {
                b64_start = i;
            }
            b64_len += 1;
        } else if b64_len > 0 {
            if b64_len >= BLOB_HINTED_MIN {
                blob(text, b64_start..i, sink)?;
            }
            b64_len = 0;
        }
        match class {
            SPACE => {
                let start = i;
                while i < b.len() && CLASSES[usize::from(b[i])] == SPACE {
                    i += 1;
                }
                let n = i - start;
                if n >= HSPACE_MIN
                    && line_text
                    && i < b.len()
                    && !matches!(CLASSES[usize::from(b[i])], NEWLINE | OTHER_WS)
                {
                    runs.push(Run {
                        range: start..i,
                        vertical: false,
                        count: n,
                    });
                }
                continue;
            }
            NEWLINE => {
                if gap_newlines == 0 {
                    gap_start = i;
                }
                gap_newlines += 1;
                line_text = false;
            }
            OTHER_WS => {}
            _ => {
                if gap_newlines > BLANK_LINES_MIN && seen_text {
                    // The run covers the blank lines, up to the start of this line.
                    let line_start = memchr::memrchr(b'\n', &b[..i]).map_or(i, |p| p + 1);
                    runs.push(Run {
                        range: gap_start..line_start,
                        vertical: true,
                        count: gap_newlines - 1,
                    });
                }
                gap_newlines = 0;
                line_text = true;
                seen_text = true;
            }
        }
        i += 1;
    }
    if b64_len >= BLOB_HINTED_MIN {
        blob(text, b64_start..b.len(), sink)?;
    }
    ControlFlow::Continue(runs)
}

/// Emits a base64 run when it decodes (at one of the four alignments) to prose. Runs shorter than
/// [`BLOB_MIN`] count only after a request to decode them ("base64", "decode").
fn blob(text: &str, run: Range<usize>, sink: &mut Sink) -> ControlFlow<()> {
    let b = &text.as_bytes()[run.clone()];
    let hinted = run.len() < BLOB_MIN;
    if hinted {
        let before = &text.as_bytes()[run.start.saturating_sub(HINT_REACH)..run.start];
        let asks = before
            .windows(6)
            .any(|w| w.eq_ignore_ascii_case(b"base64") || w.eq_ignore_ascii_case(b"decode"));
        if !asks {
            return ControlFlow::Continue(());
        }
    }
    let min_chars = if hinted { 24 } else { 40 };
    let sample = &b[..b.len().min(BLOB_SAMPLE)];
    for offset in 0..4 {
        let decoded = decode_base64(&sample[offset..]);
        if let Some(prose) = prose(&decoded, min_chars) {
            let reason = format!(
                "base64 text ({} characters) decoding to {}",
                run.len(),
                excerpt(prose, &(0..prose.len()))
            );
            return sink.emit(InjectionKind::Base64Blob, run, reason);
        }
    }
    ControlFlow::Continue(())
}

/// Decodes base64 (standard or URL-safe, padding ignored) as far as it goes.
fn decode_base64(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
        }
    }
    out
}

/// The decoded bytes as prose: valid UTF-8 (a cut last character is allowed), almost all
/// printable, mostly letters and spaces, with spaces between words.
fn prose(decoded: &[u8], min_chars: usize) -> Option<&str> {
    let s = match std::str::from_utf8(decoded) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&decoded[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    let (mut n, mut printable, mut letters, mut spaces) = (0usize, 0usize, 0usize, 0usize);
    for c in s.chars() {
        n += 1;
        if !c.is_control() || c == '\n' || c == '\t' || c == '\r' {
            printable += 1;
        }
        if c.is_alphabetic() {
            letters += 1;
        }
        if c == ' ' {
            spaces += 1;
        }
    }
    (n >= min_chars
        && printable * 100 >= n * 97
        && (letters + spaces) * 100 >= n * 75
        && spaces * 100 >= n * 8)
        .then_some(s)
}

/// Emits whitespace runs whose tail (the rest of the line, or the next paragraph) says something:
/// a content finding, an instruction, or (after spaces on a line) at least six words.
pub(super) fn scroll_out(text: &str, runs: &[Run], sink: &mut Sink) -> ControlFlow<()> {
    for run in runs {
        let from = run.range.end;
        let end = if run.vertical {
            paragraph_end(text, from)
        } else {
            let to = floor_char(text, from + TAIL_REACH);
            memchr::memchr(b'\n', &text.as_bytes()[from..to]).map_or(to, |p| from + p)
        };
        let tail = from..end;
        let s = &text[tail.clone()];
        let words = s
            .split_whitespace()
            .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
            .take(6)
            .count();
        let says = sink.starts_within(&tail).is_some()
            || DIRECTIVE_ROLE.is_match(s)
            || DIRECTIVE_MODEL.is_match(s)
            || (!run.vertical && words >= 6);
        if says {
            let what = if run.vertical {
                "blank lines"
            } else {
                "spaces"
            };
            let reason = format!(
                "text pushed out of view after {} {what}: {}",
                run.count,
                excerpt(text, &tail)
            );
            sink.emit(InjectionKind::HiddenBlock, run.range.start..end, reason)?;
        }
    }
    ControlFlow::Continue(())
}
