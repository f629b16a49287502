//! Decoders for encoded runs in sink strings: base64 (standard and url-safe, padded or not, at
//! every 4-character phase), hex (either case, both nibble phases), percent-encoding and JSON string
//! escapes. Each decoded text is handed to a visitor, then decoded once more (two layers at most:
//! e.g. base64 inside a JSON-escaped string, or JSON escaped twice).
//!
//! Decoders only run where the input looks encoded (a `%XX`, a JSON escape, a base64- or hex-alphabet
//! run long enough to decode to `min_out` bytes), so ordinary prose costs one pass of byte tests.

use std::ops::ControlFlow;

use super::Carrier;

/// A decoded text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decoded<'a> {
    pub bytes: &'a [u8],
    pub carrier: Carrier,
    /// For percent- and JSON-decoding, which output bytes came from an escape: `escaped[i]` is the
    /// number of escaped bytes in `bytes[..i]` (length `bytes.len() + 1`). A match in a stretch
    /// without escapes is plain text, already seen by the raw scan. `None` for base64 and hex.
    pub escaped: Option<&'a [u32]>,
}

/// Whether `bytes[a..b]` holds at least one byte that came from an escape.
pub(super) fn has_escape(escaped: &[u32], a: usize, b: usize) -> bool {
    match (escaped.get(a), escaped.get(b)) {
        (Some(x), Some(y)) => y > x,
        _ => false,
    }
}

pub(super) type Visitor<'v> = dyn FnMut(Decoded<'_>) -> ControlFlow<()> + 'v;

/// Calls `visit` on every decoded text of `input` that is at least `min_out` bytes long, up to
/// `depth` layers deep. `budget` bounds the total number of decoded bytes (it is decremented; when
/// it runs out, decoding stops).
pub(super) fn for_each(
    input: &[u8],
    min_out: usize,
    depth: u8,
    budget: &mut usize,
    visit: &mut Visitor<'_>,
) -> ControlFlow<()> {
    if depth == 0 || input.len() < min_out.max(1) {
        return ControlFlow::Continue(());
    }
    if has_percent_escape(input) {
        let (out, escaped) = percent_decode(input);
        emit(
            &out,
            Some(&escaped),
            Carrier::PercentEncoded,
            min_out,
            depth,
            budget,
            visit,
        )?;
    }
    if has_json_escape(input) {
        let (out, escaped) = json_unescape(input);
        emit(
            &out,
            Some(&escaped),
            Carrier::JsonEscaped,
            min_out,
            depth,
            budget,
            visit,
        )?;
    }
    base64_runs(input, min_out, depth, budget, visit)
}

fn emit(
    out: &[u8],
    escaped: Option<&[u32]>,
    carrier: Carrier,
    min_out: usize,
    depth: u8,
    budget: &mut usize,
    visit: &mut Visitor<'_>,
) -> ControlFlow<()> {
    if out.len() < min_out {
        return ControlFlow::Continue(());
    }
    let Some(left) = budget.checked_sub(out.len()) else {
        *budget = 0;
        return ControlFlow::Break(());
    };
    *budget = left;
    visit(Decoded {
        bytes: out,
        carrier,
        escaped,
    })?;
    for_each(out, min_out, depth - 1, budget, visit)
}

// ---- percent-encoding ---------------------------------------------------------------------------

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn has_percent_escape(input: &[u8]) -> bool {
    memchr::memchr_iter(b'%', input).any(|i| {
        input.get(i + 1).and_then(|&c| hex_val(c)).is_some()
            && input.get(i + 2).and_then(|&c| hex_val(c)).is_some()
    })
}

/// RFC 3986 decoding: `%XX` becomes one byte; everything else (including `+`) is kept.
fn percent_decode(input: &[u8]) -> (Vec<u8>, Vec<u32>) {
    let mut out = Vec::with_capacity(input.len());
    let mut escaped = Vec::with_capacity(input.len() + 1);
    escaped.push(0);
    let mut count = 0u32;
    let mut i = 0;
    while let Some(&c) = input.get(i) {
        let pair = input
            .get(i + 1)
            .and_then(|&h| hex_val(h))
            .zip(input.get(i + 2).and_then(|&l| hex_val(l)));
        match pair {
            Some((h, l)) if c == b'%' => {
                out.push(h << 4 | l);
                count += 1;
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
        escaped.push(count);
    }
    (out, escaped)
}

// ---- JSON string escapes ------------------------------------------------------------------------

fn has_json_escape(input: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', input).any(|i| {
        matches!(
            input.get(i + 1),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u')
        )
    })
}

fn hex4(input: &[u8], at: usize) -> Option<u32> {
    let digits = input.get(at..at + 4)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &c| Some(acc << 4 | u32::from(hex_val(c)?)))
}

/// Undoes JSON string escapes (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX` with
/// surrogate pairs; a lone surrogate becomes U+FFFD). Unknown escapes are kept as they are.
fn json_unescape(input: &[u8]) -> (Vec<u8>, Vec<u32>) {
    let mut out = Vec::with_capacity(input.len());
    let mut escaped = Vec::with_capacity(input.len() + 1);
    escaped.push(0);
    let mut count = 0u32;
    let mut i = 0;
    while let Some(&c) = input.get(i) {
        if c != b'\\' {
            out.push(c);
            escaped.push(count);
            i += 1;
            continue;
        }
        let simple = match input.get(i + 1) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0c),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            count += 1;
            escaped.push(count);
            i += 2;
            continue;
        }
        let unit = (input.get(i + 1) == Some(&b'u'))
            .then(|| hex4(input, i + 2))
            .flatten();
        let Some(unit) = unit else {
            out.push(c);
            escaped.push(count);
            i += 1;
            continue;
        };
        let mut used = 6;
        let code = if (0xd800..0xdc00).contains(&unit) {
            let low = (input.get(i + 6) == Some(&b'\\') && input.get(i + 7) == Some(&b'u'))
                .then(|| hex4(input, i + 8))
                .flatten()
                .filter(|low| (0xdc00..0xe000).contains(low));
            match low {
                Some(low) => {
                    used = 12;
                    0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                }
                None => 0xfffd,
            }
        } else {
            unit
        };
        let ch = char::from_u32(code).unwrap_or('\u{fffd}');
        let mut buf = [0u8; 4];
        for &b in ch.encode_utf8(&mut buf).as_bytes() {
            out.push(b);
            count += 1;
            escaped.push(count);
        }
        i += used;
    }
    (out, escaped)
}

// ---- base64 -------------------------------------------------------------------------------------

const INVALID: u8 = 0xff;

/// Unified standard + url-safe alphabet: `+` and `-` are 62, `/` and `_` are 63.
static BASE64: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        table[b'A' as usize + i] = i as u8;
        table[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    table[b'+' as usize] = 62;
    table[b'-' as usize] = 62;
    table[b'/' as usize] = 63;
    table[b'_' as usize] = 63;
    table
};

/// Finds maximal base64-alphabet runs (line breaks between two alphabet characters are skipped,
/// so wrapped base64 such as PEM bodies decodes as one run; `=` ends a run), decodes each at the
/// four character phases, and hands the hex-digit runs inside it to [`hex_runs`].
fn base64_runs(
    input: &[u8],
    min_out: usize,
    depth: u8,
    budget: &mut usize,
    visit: &mut Visitor<'_>,
) -> ControlFlow<()> {
    let min_chars = (min_out * 4).div_ceil(3);
    let is_b64 = |c: u8| BASE64[usize::from(c)] != INVALID;
    let mut run = Vec::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        // Extent of the run, without copying (most runs are short words).
        let rest = input.get(i..).unwrap_or_default();
        i += rest.iter().position(|&c| is_b64(c)).unwrap_or(rest.len());
        let start = i;
        let mut len = 0;
        let mut wrapped = false;
        loop {
            let rest = input.get(i..).unwrap_or_default();
            let stretch = rest.iter().position(|&c| !is_b64(c)).unwrap_or(rest.len());
            i += stretch;
            len += stretch;
            let next = match (input.get(i), input.get(i + 1)) {
                (Some(b'\n'), _) => i + 1,
                (Some(b'\r'), Some(b'\n')) => i + 2,
                _ => break,
            };
            if !input.get(next).is_some_and(|&c| is_b64(c)) {
                break;
            }
            wrapped = true;
            i = next;
        }
        let span = &input[start..i];
        while input.get(i) == Some(&b'=') {
            i += 1;
        }
        if len < min_chars {
            continue; // and no hex run of 2 * min_out > min_chars digits fits either
        }
        run.clear();
        if wrapped {
            run.extend(span.iter().copied().filter(|&c| is_b64(c)));
        } else {
            run.extend_from_slice(span);
        }
        // Words, identifiers and paths are not base64: require mixed classes, like real encodings.
        let has = |f: fn(&u8) -> bool| run.iter().any(f);
        let inner_upper = run.iter().skip(1).any(u8::is_ascii_uppercase);
        let looks_encoded = (has(u8::is_ascii_digit) && has(u8::is_ascii_alphabetic))
            || (inner_upper && has(u8::is_ascii_lowercase));
        if looks_encoded {
            let carrier = if run.iter().any(|&c| c == b'-' || c == b'_') {
                Carrier::Base64Url
            } else {
                Carrier::Base64
            };
            for phase in 0..4 {
                let Some(chars) = run.get(phase..) else {
                    break;
                };
                if chars.len() < min_chars {
                    break;
                }
                out.clear();
                for quad in chars.chunks(4) {
                    let n = quad.iter().enumerate().fold(0u32, |n, (at, &c)| {
                        n | u32::from(BASE64[usize::from(c)]) << (18 - 6 * at)
                    });
                    let keep = quad.len().saturating_sub(1);
                    out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..keep]);
                }
                emit(&out, None, carrier, min_out, depth, budget, visit)?;
            }
        }
        hex_runs(span, min_out, depth, budget, visit)?;
    }
    ControlFlow::Continue(())
}

// ---- hex ----------------------------------------------------------------------------------------

/// Finds maximal hex-digit runs (inside one base64-alphabet run) and decodes each at both nibble
/// phases.
fn hex_runs(
    input: &[u8],
    min_out: usize,
    depth: u8,
    budget: &mut usize,
    visit: &mut Visitor<'_>,
) -> ControlFlow<()> {
    let min_chars = min_out * 2;
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if !input[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while input.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
        }
        let run = &input[start..i];
        if run.len() < min_chars {
            continue;
        }
        for phase in 0..2 {
            let Some(chars) = run.get(phase..) else {
                break;
            };
            if chars.len() < min_chars {
                break;
            }
            out.clear();
            out.extend(
                chars
                    .chunks_exact(2)
                    .filter_map(|p| Some(hex_val(p[0])? << 4 | hex_val(p[1])?)),
            );
            emit(&out, None, Carrier::Hex, min_out, depth, budget, visit)?;
        }
    }
    ControlFlow::Continue(())
}
