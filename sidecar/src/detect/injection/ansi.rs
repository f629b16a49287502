//! Terminal escape sequences: concealed text, cursor movement and erasing, OSC, DCS and other
//! escape strings. Plain colour codes are not findings.

use std::ops::Range;

use super::Hit;
use super::text::{excerpt, floor_char};

/// How far an escape string (OSC, DCS) or concealed text extends (bytes).
const ESCAPE_REACH: usize = 4096;

/// A terminal escape sequence at `start` (ESC or the C1 CSI U+009B). Colour codes are not
/// findings; concealed text (SGR 8, or the same foreground and background colour), cursor
/// movement and erasing, OSC strings (titles, hyperlinks, clipboard), DCS/APC/PM/SOS strings and
/// other escapes are.
pub(super) fn ansi(text: &str, start: usize) -> Option<Hit> {
    let b = text.as_bytes();
    let (params_at, csi) = if b[start] == 0x1B {
        match b.get(start + 1) {
            Some(b'[') => (start + 2, true),
            Some(b']') => return Some(osc(text, start)),
            Some(b'P' | b'_' | b'^' | b'X') => {
                let end = string_end(text, start + 2);
                return Some(escape_hit(text, start..end, "device control string"));
            }
            // Character-set designations (`ESC ( B`, emitted by `tput sgr0`) are harmless.
            Some(b'(' | b')' | b'*' | b'+') => return None,
            Some(c) if (0x20..=0x7E).contains(c) => {
                return Some(escape_hit(text, start..start + 2, "escape sequence"));
            }
            _ => return None,
        }
    } else {
        // U+009B is two bytes in UTF-8.
        (start + 2, true)
    };
    debug_assert!(csi);
    let limit = (params_at + 64).min(b.len());
    let mut i = params_at;
    while i < limit && (0x30..=0x3F).contains(&b[i]) {
        i += 1;
    }
    let params = &text[params_at..i];
    while i < limit && (0x20..=0x2F).contains(&b[i]) {
        i += 1;
    }
    let Some(&fin) = b.get(i).filter(|c| (0x40..=0x7E).contains(*c)) else {
        return Some(escape_hit(text, start..i, "malformed control sequence"));
    };
    let seq_end = i + 1;
    if fin != b'm' {
        return Some(escape_hit(
            text,
            start..seq_end,
            "control sequence that moves the cursor, erases or changes modes",
        ));
    }
    if !conceals(params) {
        return None;
    }
    // Concealed text: up to the next reset (or the end of the line).
    let to = floor_char(text, seq_end + ESCAPE_REACH);
    let line_end = memchr::memchr(b'\n', &b[seq_end..to]).map_or(to, |p| seq_end + p);
    let end = find_reset(text, seq_end, line_end).unwrap_or(line_end);
    let hidden = seq_end..end;
    Some(Hit {
        span: start..end,
        detail: Some(format!(
            "terminal escape concealing {}",
            excerpt(text, &hidden)
        )),
        resume: end,
    })
}

/// Whether SGR parameters conceal text: 8, or equal foreground and background colours.
fn conceals(params: &str) -> bool {
    let p: Vec<&str> = params.split([';', ':']).collect();
    if p.contains(&"8") {
        return true;
    }
    let mut fg: Option<String> = None;
    let mut bg: Option<String> = None;
    let mut i = 0;
    while i < p.len() {
        let v = p[i];
        match v {
            "38" | "48" => {
                let extended = match p.get(i + 1) {
                    Some(&"5") => p.get(i + 2).map(|n| format!("5;{n}")),
                    Some(&"2") => p
                        .get(i + 2..i + 5)
                        .map(|rgb| format!("2;{}", rgb.join(";"))),
                    _ => None,
                };
                if v == "38" {
                    fg = extended;
                } else {
                    bg = extended;
                }
                i += if p.get(i + 1) == Some(&"2") { 5 } else { 3 };
                continue;
            }
            _ => {
                if let Ok(n) = v.parse::<u16>() {
                    match n {
                        30..=37 => fg = Some(format!("c{}", n - 30)),
                        90..=97 => fg = Some(format!("b{}", n - 90)),
                        40..=47 => bg = Some(format!("c{}", n - 40)),
                        100..=107 => bg = Some(format!("b{}", n - 100)),
                        _ => {}
                    }
                }
            }
        }
        i += 1;
    }
    fg.is_some() && fg == bg
}

/// The end of the next SGR reset (`ESC[m`, `ESC[0m`, `ESC[28m`, `ESC[0;…m`) in `from..to`.
fn find_reset(text: &str, from: usize, to: usize) -> Option<usize> {
    let b = &text.as_bytes()[from..to];
    for p in memchr::memmem::find_iter(b, b"\x1b[") {
        let rest = &b[p + 2..];
        let n = rest
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b';')
            .count();
        if rest.get(n) != Some(&b'm') {
            continue;
        }
        let params = &rest[..n];
        if params.is_empty()
            || params == b"0"
            || params.starts_with(b"0;")
            || params.split(|c| *c == b';').any(|x| x == b"28")
        {
            return Some(from + p + 2 + n + 1);
        }
    }
    None
}

/// An OSC string at `start` (`ESC ]`), up to BEL or ST.
fn osc(text: &str, start: usize) -> Hit {
    let b = text.as_bytes();
    let digits = b[start + 2..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let what = match &text[start + 2..start + 2 + digits] {
        "0" | "1" | "2" => "terminal escape setting the window title",
        "8" => "terminal hyperlink escape (the shown text hides the target)",
        "52" => "terminal escape writing the clipboard",
        _ => "operating-system command escape",
    };
    let end = string_end(text, start + 2);
    escape_hit(text, start..end, what)
}

/// The end of an escape string starting at `from`: after BEL or ST (`ESC \`), else the end of
/// the line, within [`ESCAPE_REACH`].
fn string_end(text: &str, from: usize) -> usize {
    let b = text.as_bytes();
    let to = floor_char(text, from + ESCAPE_REACH);
    for (i, c) in b[from..to].iter().enumerate() {
        match c {
            0x07 => return from + i + 1,
            0x1B if b.get(from + i + 1) == Some(&b'\\') => return from + i + 2,
            b'\n' => return from + i,
            _ => {}
        }
    }
    to
}

fn escape_hit(text: &str, span: Range<usize>, what: &str) -> Hit {
    let span = span.start..floor_char(text, span.end.max(span.start + 1));
    Hit {
        detail: Some(format!("{what}: {}", excerpt(text, &span))),
        resume: span.end.max(span.start + 1),
        span,
    }
}
