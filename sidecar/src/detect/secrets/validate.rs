//! Post-validation of candidate matches: entropy and character classes, placeholders and masks,
//! and the format checks (PEM bodies, JWT headers, Discord user ids, `Basic` credentials, URL
//! passwords). The generic `key = value` heuristics live in [`super::generic`].

use std::ops::Range;

use super::Pattern;
use super::catalogue::Check;
use super::generic::{generic_ok, is_identifier_like, min_entropy};

/// Validates a candidate. Returns the (possibly trimmed or extended) secret range, or `None` to
/// reject it, and how far validation looked into the text (0 when not beyond the match).
pub(super) fn validate(
    p: &Pattern,
    text: &str,
    whole: &Range<usize>,
    secret: Range<usize>,
) -> (Option<Range<usize>>, usize) {
    let value = &text[secret.clone()];
    let ok = match p.check {
        Check::None => true,
        Check::Random { entropy, classes } => {
            char_classes(value) >= classes && shannon_entropy(value) >= entropy && !is_mask(value)
        }
        Check::Labelled => {
            char_classes(value) >= 2
                && shannon_entropy(value) >= 3.5
                && !is_mask(value)
                && !is_template(value)
        }
        Check::Telegram => {
            let token = value.split_once(':').map_or("", |(_, t)| t);
            token.bytes().any(|b| b.is_ascii_uppercase())
                && token.bytes().any(|b| b.is_ascii_lowercase())
                && shannon_entropy(token) >= 3.5
                && !is_mask(token)
        }
        Check::PrivateKey => return pem_block(text, secret),
        Check::Jwt => jwt_header_ok(value),
        Check::DiscordBot => discord_user_id_ok(value),
        Check::UrlPassword => url_password_ok(value),
        Check::Bearer => {
            !is_placeholder(value)
                && !is_identifier_like(value)
                && char_classes(value) >= 2
                && shannon_entropy(value) >= min_entropy(value.len())
        }
        Check::BasicAuth => basic_auth_ok(value),
        Check::Generic => return (generic_ok(text, whole, secret), 0),
    };
    (ok.then_some(secret), 0)
}

/// Shannon entropy of the bytes of `s`, in bits per byte.
pub(super) fn shannon_entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    // Lengths beyond 2^32 cannot reach here in practice; saturate rather than wrap.
    let n = f64::from(u32::try_from(s.len()).unwrap_or(u32::MAX));
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// How many of lower case, upper case and digits occur in `s`.
pub(super) fn char_classes(s: &str) -> u8 {
    let (mut lower, mut upper, mut digit) = (false, false, false);
    for b in s.bytes() {
        lower |= b.is_ascii_lowercase();
        upper |= b.is_ascii_uppercase();
        digit |= b.is_ascii_digit();
    }
    u8::from(lower) + u8::from(upper) + u8::from(digit)
}

/// Whether `needle` (lower case ASCII) occurs in `hay`, ignoring ASCII case.
pub(super) fn contains_ci(hay: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    hay.len() >= needle.len()
        && hay
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// A masked value: `xxxxxxxx`, `********`, `00000000`, `........`.
fn is_mask(v: &str) -> bool {
    ["xxxxxxxx", "********", "00000000", "........", "--------"]
        .iter()
        .any(|m| contains_ci(v, m))
}

/// A template or variable reference: `${VAR}`, `$VAR`, `{{ var }}`, `%(var)s`, `#{var}`, `<var>`,
/// `{var}`, `%VAR%`, or an already redacted value.
fn is_template(v: &str) -> bool {
    v.starts_with('$')
        || v.starts_with("{{")
        || v.starts_with("%(")
        || v.starts_with("#{")
        || v.starts_with('<')
        || v.starts_with("[REDACTED")
        || (v.starts_with('{') && v.ends_with('}'))
        || (v.len() > 2 && v.starts_with('%') && v.ends_with('%'))
}

/// Words that mark a value as a placeholder rather than a secret.
const PLACEHOLDER_WORDS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "example",
    "your_",
    "your-",
    "yourkey",
    "yourtoken",
    "yoursecret",
    "yourpass",
    "redacted",
    "dummy",
    "sample",
    "replace_",
    "replace-",
    "replaceme",
    "insert_",
    "insert-",
    "fixme",
    "todo",
    "notreal",
    "not_real",
    "not-a-real",
    "not_a_real",
    "_here",
    "-here",
    "abcdefgh",
    "12345678",
    "qwertyui",
];

/// A template, a mask or a value containing a placeholder word.
pub(super) fn is_placeholder(v: &str) -> bool {
    is_template(v) || is_mask(v) || PLACEHOLDER_WORDS.iter().any(|w| contains_ci(v, w))
}

/// A URL password that is not a placeholder (`password`, `${DB_PASSWORD}`, `****`, …) or a port
/// number (`http://host:8080@…`).
fn url_password_ok(v: &str) -> bool {
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "pass",
        "secret",
        "changeme",
        "redacted",
        "placeholder",
        "example",
        "anonymous",
        "guest",
    ];
    if WORDS.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        return false;
    }
    // Too short to be a real password (`https://a:b@…` in documentation), a port
    // (`http://host:8080@…`), or CVS's `:pserver:` syntax.
    if v.len() < 4 || v.bytes().all(|b| b.is_ascii_digit()) || v.contains(':') {
        return false;
    }
    !is_template(v) && !is_mask(v) && !v.bytes().all(|b| b == b'*' || b == b'x' || b == b'X')
}

/// Fewest base64 characters in a private key body (a real key has hundreds; documentation shows
/// `...` or a few characters).
const MIN_PEM_BODY: usize = 40;

/// Extends a PEM `-----BEGIN … PRIVATE KEY-----` header to the whole block: up to the end of the
/// `-----END …-----` line when the next `-----` starts one, else (a truncated key) over the
/// base64 that follows. The body must hold at least [`MIN_PEM_BODY`] base64 characters. The
/// second value is how far the text was searched: the next `-----`, so that no byte is searched
/// twice even for thousands of headers in a row.
fn pem_block(text: &str, header: Range<usize>) -> (Option<Range<usize>>, usize) {
    let rest = &text[header.end..];
    let (body, end, scanned) = match rest.find("-----") {
        Some(marker) if rest[marker..].starts_with("-----END ") => {
            let tail = &rest[marker + 9..];
            // The END line is short; refuse a label that runs on.
            let end = tail
                .get(..tail.len().min(64))
                .and_then(|t| t.find("-----"))
                .map_or(marker + 9, |i| marker + 9 + i + 5);
            (&rest[..marker], header.end + end, header.end + marker)
        }
        marker => {
            let run = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || b"+/=\\\r\n".contains(b))
                .count();
            // Not the line break after the last line.
            let run = rest[..run].trim_end_matches(['\r', '\n']).len();
            let scanned = marker.map_or(text.len(), |m| header.end + m);
            (&rest[..run], header.end + run, scanned)
        }
    };
    let base64 = body
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .count();
    (
        (base64 >= MIN_PEM_BODY).then_some(header.start..end),
        scanned,
    )
}

/// The JWT's first segment decodes to a JSON object header with an `"alg"` member.
fn jwt_header_ok(token: &str) -> bool {
    let header = token.split('.').next().unwrap_or("");
    match base64_decode(header) {
        Some(json) => {
            let json = String::from_utf8_lossy(&json);
            json.trim_start().starts_with('{') && json.contains("\"alg\"")
        }
        None => false,
    }
}

/// The first segment of a Discord bot token is the base64 of the bot's numeric user id.
fn discord_user_id_ok(token: &str) -> bool {
    let id = token.split('.').next().unwrap_or("");
    match base64_decode(id) {
        Some(digits) => digits.len() >= 15 && digits.iter().all(u8::is_ascii_digit),
        None => false,
    }
}

/// `Authorization: Basic` decodes to `user:password` with a non-empty password.
fn basic_auth_ok(v: &str) -> bool {
    match base64_decode(v) {
        Some(raw) => match raw.iter().position(|&b| b == b':') {
            Some(colon) => {
                let password = &raw[colon + 1..];
                !password.is_empty() && password.iter().all(|b| !b.is_ascii_control())
            }
            None => false,
        },
        None => false,
    }
}

/// Decodes standard or URL-safe base64, padded or not; `None` on any other character.
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}
