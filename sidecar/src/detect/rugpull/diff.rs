//! Text diffing for change classification: the changed region of a text, a word-level diff with
//! typo pairing, and the word tests (versions, addresses, tool names, credential files).

use std::collections::HashMap;

use super::snapshot::prefix;

/// Where the clause around `pos` starts: after the last `.`, `!`, `?`, `:`, `;`, `,` or line
/// break before it (at most 200 bytes back).
pub(super) fn clause_start(text: &str, pos: usize) -> usize {
    let lo = prefix(text, pos.saturating_sub(200)).len();
    text[lo..pos]
        .rfind(['.', '!', '?', ':', ';', ',', '\n'])
        .map_or(lo, |p| lo + p)
}

/// The part of `new` that differs from `old`: without their common prefix and suffix (on
/// character boundaries), widened to whole words.
pub(super) fn added_region(old: &str, new: &str) -> std::ops::Range<usize> {
    let p = old
        .char_indices()
        .zip(new.chars())
        .find(|((_, a), b)| a != b)
        .map_or(old.len().min(new.len()), |((i, _), _)| i);
    let s = old[p..]
        .chars()
        .rev()
        .zip(new[p..].chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum::<usize>();
    let mut start = p;
    while start > 0 && !new[..start].ends_with(char::is_whitespace) {
        start -= new[..start].chars().next_back().map_or(1, char::len_utf8);
    }
    let mut end = new.len() - s;
    while end < new.len() && !new[end..].starts_with(char::is_whitespace) {
        end += new[end..].chars().next().map_or(1, char::len_utf8);
    }
    start..end.max(start)
}

/// Non-overlapping occurrences of an ASCII `needle`, ignoring ASCII case.
pub(super) fn occurrences(hay: &str, needle: &str) -> usize {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return 0;
    }
    let mut count = 0;
    let mut i = 0;
    while i + n.len() <= h.len() {
        if h[i..i + n.len()].eq_ignore_ascii_case(n) {
            count += 1;
            i += n.len();
        } else {
            i += 1;
        }
    }
    count
}

/// Words added and removed between two texts (as multisets of words compared without case and
/// surrounding punctuation), and how many added words are typo fixes of removed ones.
#[derive(Debug)]
pub(super) struct WordDiff<'a> {
    pub(super) added: Vec<&'a str>,
    pub(super) removed: Vec<&'a str>,
    /// For each added word, whether it is a typo fix of a removed word (within two edits).
    pub(super) typo: Vec<bool>,
    /// How many added words are typo fixes.
    pub(super) typo_pairs: usize,
}

impl<'a> WordDiff<'a> {
    pub(super) fn new(old: &'a str, new: &'a str) -> Self {
        let mut counts: HashMap<String, isize> = HashMap::new();
        for w in old.split_whitespace().filter(|w| !normalise(w).is_empty()) {
            *counts.entry(normalise(w).to_lowercase()).or_default() += 1;
        }
        let mut added = Vec::new();
        for w in new.split_whitespace().filter(|w| !normalise(w).is_empty()) {
            let c = counts.entry(normalise(w).to_lowercase()).or_default();
            if *c > 0 {
                *c -= 1;
            } else {
                added.push(w);
            }
        }
        let mut remaining = counts;
        let mut removed = Vec::new();
        for w in old.split_whitespace().filter(|w| !normalise(w).is_empty()) {
            if let Some(c) = remaining.get_mut(&normalise(w).to_lowercase())
                && *c > 0
            {
                *c -= 1;
                removed.push(w);
            }
        }
        // Pair typo fixes greedily.
        let mut used = vec![false; removed.len()];
        let mut typo = vec![false; added.len()];
        let mut typo_pairs = 0;
        for (i, a) in added.iter().enumerate() {
            let a = normalise(a).to_lowercase();
            if let Some(j) = (0..removed.len()).find(|j| {
                !used[*j] && {
                    let r = normalise(removed[*j]).to_lowercase();
                    let d = edit_distance(&a, &r, 3);
                    d <= 2 && d * 3 <= a.chars().count().max(r.chars().count())
                }
            }) {
                used[j] = true;
                typo[i] = true;
                typo_pairs += 1;
            }
        }
        Self {
            added,
            removed,
            typo,
            typo_pairs,
        }
    }

    /// Whether every added and removed word satisfies `f`.
    pub(super) fn all(&self, f: impl Fn(&str) -> bool) -> bool {
        self.added.iter().chain(&self.removed).all(|w| f(w))
    }
}

/// A word without surrounding punctuation.
pub(super) fn normalise(w: &str) -> &str {
    w.trim_matches(|c: char| !c.is_alphanumeric())
}

/// Edit distance of `a` and `b` (insertions, deletions, substitutions and transpositions of
/// adjacent characters), or `cap` when it is at least `cap`.
fn edit_distance(a: &str, b: &str, cap: usize) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) >= cap {
        return cap;
    }
    // Three rows of the optimal-string-alignment table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 0..a.len() {
        cur[0] = i + 1;
        for j in 0..b.len() {
            let mut d = (prev[j] + usize::from(a[i] != b[j]))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                d = d.min(before[j - 1] + 1);
            }
            cur[j + 1] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()].min(cap)
}

/// A version, date, time or number: `v1.2.3`, `2.0.0-beta.1`, `2025-06-18`, `12:30`, `1,024`.
pub(super) fn versionish(w: &str) -> bool {
    let w = normalise(w);
    let w = w
        .strip_prefix(['v', 'V'])
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(w);
    w.starts_with(|c: char| c.is_ascii_digit())
        && w.chars().filter(char::is_ascii_alphabetic).count() <= 8
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | ':' | ',' | '/'))
}

pub(super) fn is_email(w: &str) -> bool {
    let Some((local, domain)) = w.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
}

pub(super) fn is_phone(w: &str) -> bool {
    w.starts_with('+')
        && w.chars().filter(char::is_ascii_digit).count() >= 7
        && w[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || "-(). ".contains(c))
}

/// The other tool `w` names (exactly, or behind a server prefix), or an `mcp_` name.
pub(super) fn other_tool<'t>(w: &'t str, others: &[&'t str]) -> Option<&'t str> {
    if w.len() > 4 && w.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("mcp_")) {
        return Some(w);
    }
    others.iter().copied().find(|t| {
        !t.is_empty()
            && (w.eq_ignore_ascii_case(t)
                || (w.len() > t.len()
                    && w.is_char_boundary(w.len() - t.len())
                    && w[w.len() - t.len()..].eq_ignore_ascii_case(t)
                    && matches!(
                        w.as_bytes()[w.len() - t.len() - 1],
                        b'_' | b'-' | b'.' | b':' | b'/'
                    )))
    })
}

/// Whether `text` mentions the tool name `t` (ASCII case ignored).
pub(super) fn mentions(text: &str, t: &str) -> bool {
    occurrences(text, t) > 0
}

/// File names of credentials.
pub(super) fn sensitive_name(w: &str) -> bool {
    let w = w.to_ascii_lowercase();
    [
        ".ssh",
        "id_rsa",
        "id_ed25519",
        "id_ecdsa",
        ".env",
        "mcp.json",
        ".aws",
        ".npmrc",
        ".netrc",
        ".pypirc",
        ".git-credentials",
        "/etc/shadow",
        "/etc/passwd",
        ".kube",
        "credentials.json",
        "claude_desktop_config.json",
        ".cursor",
    ]
    .iter()
    .any(|s| w.contains(s))
        && !w.ends_with(".pub")
        && !w.contains(".env.example")
}

/// `s` with runs of white space collapsed into one space, trimmed.
pub(super) fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to 60 characters for a change description.
pub(super) fn clip(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}
