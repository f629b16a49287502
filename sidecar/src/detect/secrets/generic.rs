//! The generic-assignment heuristics (`password=…`, `"api_key": "…"`, `DB_TOKEN: …`): which keys
//! name a credential, and whether a value looks random rather than like an identifier, code, a
//! word list, a path or a reference.

use std::ops::Range;

use super::validate::{char_classes, contains_ci, is_placeholder, shannon_entropy};

/// Looks like an identifier, a word list or code rather than a random secret: letters and
/// `_ . - [ ] ( )` only, with few class changes (`process.env.API_TOKEN`, `Optional[str]`); words
/// and numbers joined by `-`, `_` or `.` (`prod-db-password-2024`); a call expression (`f(x)`); or a
/// path or arrow (`token::Paren`, `self->key`, `x => y`).
pub(super) fn is_identifier_like(v: &str) -> bool {
    let b = v.as_bytes();
    if !b.iter().any(u8::is_ascii_digit)
        && b.iter()
            .all(|c| c.is_ascii_alphabetic() || b"_.-[]()".contains(c))
        && is_wordy(v, !b.iter().any(|c| b"_.-[]()".contains(c)))
    {
        return true;
    }
    if let Some(open) = v.find('(')
        && v[open..].contains(')')
    {
        return true;
    }
    if v.contains("::") || v.contains("->") || v.contains("=>") {
        return true;
    }
    words_and_numbers(v)
}

/// Two or more words and numbers joined by punctuation or `%XX` escapes
/// (`prod-db-password-2024`, `secret%3Dpassword`, `*all*tokens*updated*`): every run of
/// alphanumerics is all digits, or letters in one case pattern (`word`, `WORD`, `Word`).
fn words_and_numbers(v: &str) -> bool {
    let b = v.as_bytes();
    let mut segments = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            // A `%XX` escape is a separator too, not the start of a segment.
            i += if b[i] == b'%'
                && b.len() > i + 2
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit()
            {
                3
            } else {
                1
            };
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let seg = &b[start..i];
        let digits = seg.iter().all(u8::is_ascii_digit);
        let lower = seg.iter().all(u8::is_ascii_lowercase);
        let upper = seg.iter().all(u8::is_ascii_uppercase);
        let capitalised =
            seg[0].is_ascii_uppercase() && seg[1..].iter().all(u8::is_ascii_lowercase);
        if !(digits || lower || upper || capitalised) {
            return false;
        }
        segments += 1;
    }
    segments >= 2
}

/// An unquoted value that reads as code rather than data: brackets or operators
/// (`Token![struct]`, `braced!(content`, `a|b`), or an identifier path with word structure
/// (`node.dot2_token`, `Curve25519SeedBin`, `rsa.RSAPrivateKey`). Quoted values (string
/// literals, JSON) skip this: that is where real secrets in code and data are.
fn is_code_like(v: &str) -> bool {
    if v.bytes().any(|b| b"()[]{}<>|;".contains(&b)) {
        return true;
    }
    let identifier_path = v.split('.').all(|part| {
        let mut bytes = part.bytes();
        bytes
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
            && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
    });
    let capitalised_words = v
        .as_bytes()
        .windows(2)
        .filter(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_lowercase())
        .count();
    let separated = v.contains('.') || v.contains('_');
    identifier_path && (separated || capitalised_words >= 2) && is_wordy(v, !separated)
}

/// Reads as words. `v` is split at non-letters and camel-case humps, acronyms kept whole
/// (`HTTPServerConfig`: `HTTP`, `Server`, `Config`). The words must average at least three letters,
/// and the longer mixed- or lower-case ones need vowels. `strict` (for values without separators,
/// where the humps are all there is: `NextPageToken`) allows no one-letter word and wants a vowel
/// in every longer word; otherwise (`node.dot2_token`, `Optional[str]`) a quarter of one-letter
/// words and half of the longer words with a vowel will do. Random letters break into one- and
/// two-letter pieces and consonant clusters (`siWsejyYZzYgGgkfROgj`): about 5 % of 16 random
/// letters pass the strict test, 1 % of 16 random letters and digits.
fn is_wordy(v: &str, strict: bool) -> bool {
    let (mut words, mut letters, mut singles, mut long, mut voiced) =
        (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut add = |word: &[u8]| {
        let len = u32::try_from(word.len()).unwrap_or(u32::MAX);
        words += 1;
        letters += len;
        singles += u32::from(len == 1);
        if len >= 3 && !word.iter().all(u8::is_ascii_uppercase) {
            long += 1;
            voiced += u32::from(word.iter().any(|c| b"aeiouyAEIOUY".contains(c)));
        }
    };
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() {
            let start = i;
            while i < b.len() && b[i].is_ascii_lowercase() {
                i += 1;
            }
            add(&b[start..i]);
        } else if b[i].is_ascii_uppercase() {
            let start = i;
            while i < b.len() && b[i].is_ascii_uppercase() {
                i += 1;
            }
            if i < b.len() && b[i].is_ascii_lowercase() {
                // `HTTPServer`: the last capital starts the next word.
                if i - start > 1 {
                    add(&b[start..i - 1]);
                }
                let word = i - 1;
                while i < b.len() && b[i].is_ascii_lowercase() {
                    i += 1;
                }
                add(&b[word..i]);
            } else {
                add(&b[start..i]);
            }
        } else {
            i += 1;
        }
    }
    let shaped = if strict {
        singles == 0 && voiced == long
    } else {
        singles * 4 <= words && voiced * 2 >= long
    };
    words > 0 && letters >= 3 * words && shaped
}

/// Paths, URLs and references to secret stores are not secrets themselves.
fn is_reference(v: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "/",
        "./",
        "../",
        "~/",
        "file:",
        "http://",
        "https://",
        "arn:",
        "projects/",
        "vault:",
        "op://",
        "ref+",
        "env:",
        "secretref:",
        "sm://",
    ];
    PREFIXES
        .iter()
        .any(|p| v.len() >= p.len() && v.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

/// Key prefixes (before the keyword) that name something that is not a credential: pagination
/// tokens, CSRF tokens, token counts and limits, …
const KEY_DENY: &[&str] = &[
    "page",
    "next",
    "prev",
    "continuation",
    "cursor",
    "sync",
    "cancel",
    "idempot",
    "csrf",
    "xsrf",
    "max",
    "min",
    "num",
    "count",
    "limit",
];

/// Further prefixes that only rule out a `token` key: idempotency and pagination tokens
/// (`ClientToken`, `ClientRequestToken`, `StartingToken`); `client_secret` stays a secret.
const TOKEN_KEY_DENY: &[&str] = &["client", "request", "start"];

/// Longest key prefix looked at before the keyword.
const MAX_KEY_PREFIX: usize = 64;

/// Generic `key = value`: the key must not name a non-credential, the value (trimmed of unbalanced
/// closing brackets and trailing dots) must be long, random-looking and not a placeholder, path,
/// reference or code.
pub(super) fn generic_ok(
    text: &str,
    whole: &Range<usize>,
    secret: Range<usize>,
) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let mut key_start = whole.start;
    while key_start > 0
        && whole.start - key_start < MAX_KEY_PREFIX
        && (bytes[key_start - 1].is_ascii_alphanumeric() || b"_.-".contains(&bytes[key_start - 1]))
    {
        key_start -= 1;
    }
    let prefix = &text[key_start..whole.start];
    if KEY_DENY.iter().any(|d| contains_ci(prefix, d)) {
        return None;
    }
    // Inside a type name, ARN or path (`"AWS::AppSync::ApiKey": "3d10…"`,
    // `arn:aws:secretsmanager:…:secret:MyTestSecret-a1b2c3`), the key is a name, not a label.
    if key_start > 0 && matches!(bytes[key_start - 1], b':' | b'/') {
        return None;
    }
    let keyword = &bytes[whole.start..(whole.start + 5).min(bytes.len())];
    if keyword.eq_ignore_ascii_case(b"token")
        && TOKEN_KEY_DENY.iter().any(|d| contains_ci(prefix, d))
    {
        return None;
    }
    let quoted = secret.start > 0 && matches!(bytes[secret.start - 1], b'"' | b'\'');
    let range = trim_value(text, secret);
    let v = &text[range.clone()];
    if v.len() < 12
        || is_placeholder(v)
        || is_identifier_like(v)
        || is_reference(v)
        || (!quoted && is_code_like(v))
    {
        return None;
    }
    // Symbols count as a fourth class here: `hunter2!hunter2?` is a password.
    let classes = char_classes(v) + u8::from(v.bytes().any(|b| !b.is_ascii_alphanumeric()));
    let entropy = shannon_entropy(v);
    let ok = entropy >= min_entropy(v.len()) && (classes >= 2 || (v.len() >= 16 && entropy >= 3.5));
    ok.then_some(range)
}

/// Least Shannon entropy (bits per byte) of a random-looking value of `len` bytes without a fixed
/// format. Short samples of even a uniform alphabet have low measured entropy (16 random hex
/// digits average 3.3 and fall under 3.0 one time in ten), so the bar rises with the length.
pub(super) fn min_entropy(len: usize) -> f64 {
    match len {
        0..16 => 2.5,
        16..24 => 2.75,
        _ => 3.0,
    }
}

/// Drops trailing `.` and closing brackets that have no opening counterpart in the value
/// (`Config{token=abc…}`, `(password=abc…)`, end of a sentence).
fn trim_value(text: &str, mut r: Range<usize>) -> Range<usize> {
    loop {
        let v = &text[r.clone()];
        let Some(last) = v.bytes().last() else {
            return r;
        };
        let open = match last {
            b'.' => None,
            b')' => Some(b'('),
            b']' => Some(b'['),
            b'}' => Some(b'{'),
            _ => return r,
        };
        if let Some(open) = open
            && v.bytes().any(|b| b == open)
        {
            return r;
        }
        r.end -= 1;
    }
}
