//! Invisible characters: tag characters ("ASCII smuggling"), zero-width characters, bidi
//! controls and runs of them (see the module docs of the parent for the rules).

use super::Hit;
use super::text::excerpt;

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
