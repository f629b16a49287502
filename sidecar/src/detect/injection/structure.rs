//! Structural checks: invisible characters, hidden blocks (tags, comments, hidden HTML, terminal
//! escapes, text pushed out of view), base64 blobs, and URLs that carry data. Plain code over
//! bounded windows; every loop moves forward.

use std::ops::{ControlFlow, Range};

use regex::Captures;

use super::checks::{DIRECTIVE_MODEL, DIRECTIVE_ROLE};
use super::{Hit, InjectionKind, Sink, excerpt, floor_char};

// === Invisible characters ===

/// Classes of invisible characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inv {
    /// U+E0000–E007F.
    Tag,
    /// U+200B, U+2060–2064, U+180E.
    ZeroWidth,
    /// U+FEFF.
    Bom,
    /// U+200C, U+200D.
    Joiner,
    /// U+202D, U+202E.
    Override,
    /// U+202A–202C, U+2066–2069.
    Embed,
    /// U+FE00–FE0F, U+E0100–E01EF.
    Selector,
}

fn class(c: char) -> Option<Inv> {
    Some(match c {
        '\u{E0000}'..='\u{E007F}' => Inv::Tag,
        '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{180E}' => Inv::ZeroWidth,
        '\u{FEFF}' => Inv::Bom,
        '\u{200C}' | '\u{200D}' => Inv::Joiner,
        '\u{202D}' | '\u{202E}' => Inv::Override,
        '\u{202A}'..='\u{202C}' | '\u{2066}'..='\u{2069}' => Inv::Embed,
        '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' => Inv::Selector,
        _ => return None,
    })
}

/// Whether `c` is one of the invisible characters the scanner knows.
pub(super) fn is_invisible(c: char) -> bool {
    class(c).is_some()
}

/// Invisible characters with no use in running text that [`super::strip`] removes everywhere:
/// tag characters, zero-width spaces and word joiners, U+FEFF, bidi controls.
pub(super) fn always_invisible(c: char) -> bool {
    matches!(
        class(c),
        Some(Inv::Tag | Inv::ZeroWidth | Inv::Bom | Inv::Override | Inv::Embed)
    )
}

/// Most characters of a run described in a reason.
const MAX_LISTED: usize = 4;

/// The end of the run of invisible characters starting at `start`.
pub(super) fn invisible_run_end(text: &str, start: usize) -> usize {
    start
        + text[start..]
            .chars()
            .take_while(|c| is_invisible(*c))
            .map(char::len_utf8)
            .sum::<usize>()
}

/// Decides on the run of invisible characters starting at `start` (see the module docs of the
/// parent for the rules).
pub(super) fn invisible(text: &str, start: usize) -> Option<Hit> {
    let mut end = start;
    let (mut n, mut tags, mut overrides, mut selectors, mut joiners, mut others) =
        (0, 0, 0, 0, 0, 0);
    let mut last = None;
    for c in text[start..].chars() {
        let Some(k) = class(c) else { break };
        n += 1;
        match k {
            Inv::Tag => tags += 1,
            Inv::Override => overrides += 1,
            Inv::Selector => selectors += 1,
            Inv::Joiner => joiners += 1,
            Inv::ZeroWidth | Inv::Bom | Inv::Embed => others += 1,
        }
        last = Some(c);
        end += c.len_utf8();
    }
    let prev = text[..start].chars().next_back();
    let next = text[end..].chars().next();
    let none = Hit {
        span: start..end,
        detail: None,
        resume: end,
    };
    let ascii = |c: Option<char>| c.is_none_or(|c| c.is_ascii());
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let flagged = if tags > 0 {
        // A flag emoji (U+1F3F4 + tag letters + U+E007F cancel tag) is not smuggling.
        let emoji_flag = prev == Some('\u{1F3F4}')
            && tags == n
            && n <= 8
            && last == Some('\u{E007F}')
            && text[start..end]
                .chars()
                .all(|c| matches!(c, '\u{E0030}'..='\u{E0039}' | '\u{E0061}'..='\u{E007A}' | '\u{E007F}'));
        !emoji_flag
    } else if overrides > 0 {
        true
    } else if n >= 2 {
        // One variation selector and one joiner is how emoji sequences are built.
        !(others == 0 && selectors <= 1 && joiners <= 1)
    } else {
        let c = text[start..end].chars().next();
        match c.and_then(class) {
            Some(Inv::Bom) => !(prev.is_none() || prev == Some('\n')),
            Some(Inv::ZeroWidth) => alnum(prev) || alnum(next),
            Some(Inv::Joiner | Inv::Embed) => ascii(prev) && ascii(next),
            _ => false,
        }
    };
    if !flagged {
        return None;
    }
    let detail = if tags > 0 {
        let hidden: String = text[start..end]
            .chars()
            .filter_map(|c| match c {
                '\u{E0020}'..='\u{E007E}' => char::from_u32(u32::from(c) - 0xE0000),
                _ => None,
            })
            .collect();
        format!(
            "{tags} Unicode tag characters hiding the text {}",
            excerpt(&hidden, &(0..hidden.len()))
        )
    } else {
        let mut listed: Vec<String> = Vec::new();
        for c in text[start..end].chars() {
            let s = format!("U+{:04X}", u32::from(c));
            if !listed.contains(&s) {
                listed.push(s);
            }
        }
        let more = if listed.len() > MAX_LISTED {
            ", …"
        } else {
            ""
        };
        listed.truncate(MAX_LISTED);
        let what = if overrides > 0 {
            "bidirectional override"
        } else if n >= 2 {
            "run of invisible characters"
        } else {
            "invisible character inside text"
        };
        format!("{what} ({n}: {}{more})", listed.join(", "))
    };
    Some(Hit {
        detail: Some(detail),
        ..none
    })
}

// === Hidden blocks ===

/// How far a closing tag is looked for (bytes).
const CLOSE_REACH: usize = 64 * 1024;
/// How far the end of a hidden HTML element is looked for (bytes).
const ELEMENT_REACH: usize = 8 * 1024;
/// How much of a line after a run of spaces is looked at (bytes).
const TAIL_REACH: usize = 2048;
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
fn paragraph_end(text: &str, from: usize) -> usize {
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

// === Terminal escapes ===

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

// === URLs ===

/// Hosts of request-capture and tunnelling services (suffix match).
const CAPTURE_HOSTS: &[&str] = &[
    "webhook.site",
    "webhook.cool",
    "requestbin.net",
    "requestbin.com",
    "m.pipedream.net",
    "hookbin.com",
    "requestcatcher.com",
    "beeceptor.com",
    "ngrok.io",
    "ngrok.app",
    "ngrok-free.app",
    "ngrok-free.dev",
    "burpcollaborator.net",
    "oastify.com",
    "interact.sh",
    "oast.pro",
    "oast.live",
    "oast.site",
    "oast.online",
    "oast.fun",
    "oast.me",
    "canarytokens.com",
    "dnslog.cn",
    "ceye.io",
    "trycloudflare.com",
    "serveo.net",
    "loca.lt",
    "localhost.run",
    "requestinspector.com",
    "postb.in",
    "ptsv2.com",
    "ptsv3.com",
    "mockbin.org",
    "pipedream.net",
];

/// Placeholder words that name data worth stealing (query templates).
const DATA_TOKENS: &[&str] = &[
    "data",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "cred",
    "creds",
    "conversation",
    "conversations",
    "history",
    "context",
    "summary",
    "memory",
    "memories",
    "env",
    "environment",
    "ssh",
    "cookie",
    "cookies",
    "payload",
    "prompt",
    "private",
    "personal",
    "pii",
    "exfil",
    "leak",
    "stolen",
    "loot",
    "dump",
    "sensitive",
    "confidential",
    "transcript",
];

/// Placeholder words that name data worth stealing in a URL path (stricter: REST paths are full
/// of `{id}`, `{key}`, `{token}`).
const PATH_TOKENS: &[&str] = &[
    "data",
    "secret",
    "secrets",
    "apikey",
    "password",
    "passwords",
    "credential",
    "credentials",
    "conversation",
    "conversations",
    "chat",
    "history",
    "summary",
    "memory",
    "env",
    "ssh",
    "cookie",
    "cookies",
    "payload",
    "prompt",
    "private",
    "pii",
    "exfil",
    "leak",
    "stolen",
    "loot",
    "dump",
    "sensitive",
    "confidential",
    "transcript",
];

/// Query parameter names that carry data out when filled from a template.
const DATA_PARAMS: &[&str] = &[
    "data",
    "d",
    "payload",
    "secret",
    "secrets",
    "password",
    "pw",
    "pwd",
    "cred",
    "creds",
    "credentials",
    "conversation",
    "convo",
    "history",
    "memory",
    "summary",
    "context",
    "env",
    "ssh",
    "cookie",
    "cookies",
    "dump",
    "stolen",
    "loot",
    "exfil",
    "leak",
];

/// Longest query value of an image link that is not a payload (bytes).
const IMAGE_VALUE_MAX: usize = 100;

/// Why `url` (already trimmed) carries data, if it does. For images (which clients fetch
/// without asking) any template and any long value count; in a string literal of code
/// (`literal`), only capture services and prose placeholders do.
pub(super) fn url_carries_data(url: &str, image: bool, literal: bool) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..cut];
    let tail = &rest[cut..];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host);
    if let Some(service) = CAPTURE_HOSTS.iter().find(|d| host_is(host, d)) {
        let subdomain = host.len() > service.len();
        if subdomain || tail.trim_end_matches('/').len() > 1 {
            return Some(format!("request-capture service `{service}`"));
        }
    }
    let tail = tail.split('#').next().unwrap_or(tail);
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    for seg in path.split('/') {
        if let Some(inner) = placeholder(seg).filter(|_| !literal)
            && (image || has_token(inner, PATH_TOKENS))
        {
            return Some("data template in the URL path".to_owned());
        }
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (name, value) = pair.split_once('=').unwrap_or(("", pair));
        if unterminated(value) {
            return Some("prose placeholder in the URL query".to_owned());
        }
        if let Some(inner) = placeholder(value).filter(|_| !literal)
            && (image
                || has_token(inner, DATA_TOKENS)
                || DATA_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)))
        {
            return Some("data template in the URL query".to_owned());
        }
        if image && payload(value) {
            return Some("long payload in the query of an image link".to_owned());
        }
    }
    None
}

/// Whether a query value looks like data: long, and either base64 or URL-encoded prose.
fn payload(value: &str) -> bool {
    if value.len() < IMAGE_VALUE_MAX || value.starts_with("data:") || value.starts_with("http") {
        return false;
    }
    let base64 = value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_'));
    let spaces = value.matches("%20").count() + value.matches('+').count();
    base64 || spaces * 12 >= value.len()
}

fn host_is(host: &str, domain: &str) -> bool {
    host.len() >= domain.len()
        && host.as_bytes()[host.len() - domain.len()..].eq_ignore_ascii_case(domain.as_bytes())
        && (host.len() == domain.len() || host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// Longest placeholder name (bytes).
const PLACEHOLDER_MAX: usize = 64;

/// The inside of the template placeholder that `s` starts with (`{x}`, `{{x}}`, `<x>`, `[x]`,
/// `${x}`, `$X`, URL-encoded brackets), or `s` itself when it is `%s` or `...`.
fn placeholder(s: &str) -> Option<&str> {
    for (open, close) in [
        ("{", "}"),
        ("<", ">"),
        ("[", "]"),
        ("%7B", "%7D"),
        ("%7b", "%7d"),
        ("%3C", "%3E"),
        ("%3c", "%3e"),
        ("%5B", "%5D"),
        ("%5b", "%5d"),
        ("${", "}"),
        ("$", ""),
    ] {
        let Some(inner) = s.strip_prefix(open) else {
            continue;
        };
        let inner = inner.trim_start_matches(open);
        let inner = match inner.find(close).filter(|_| !close.is_empty()) {
            Some(q) => &inner[..q],
            None => inner,
        };
        if open == "$" && !inner.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        return (!inner.is_empty() && inner.len() <= PLACEHOLDER_MAX).then_some(inner);
    }
    // `INSERT_THE_KEY_HERE`, `USER_DATA`.
    let upper = s.len() >= 4
        && s.contains('_')
        && s.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    (upper || matches!(s, "%s" | "..." | "…")).then_some(s)
}

/// Whether `s` opens a placeholder it does not close: the URL ended at white space inside it
/// (`?q={the user's last request}`), a template described in prose.
fn unterminated(s: &str) -> bool {
    [("{", "}"), ("<", ">"), ("[", "]")]
        .iter()
        .any(|(open, close)| s.starts_with(open) && !s.contains(close))
}

/// Whether `inner` has a word (split at non-alphanumerics and lower→upper case changes) in
/// `words`, ignoring ASCII case.
fn has_token(inner: &str, words: &[&str]) -> bool {
    let b = inner.as_bytes();
    let mut start = 0;
    for i in 0..=b.len() {
        let boundary = i == b.len()
            || !b[i].is_ascii_alphanumeric()
            || (i > start && b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase());
        if boundary {
            if i > start {
                let word = &inner[start..i];
                if words.iter().any(|w| word.eq_ignore_ascii_case(w)) {
                    return true;
                }
            }
            start = if i < b.len() && b[i].is_ascii_alphanumeric() {
                i
            } else {
                i + 1
            };
        }
    }
    false
}

// === Byte pass: base64 blobs and whitespace runs ===

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
