//! Checks of instructions: overrides, text addressed to the model, fake conversation turns,
//! qualified headers ("new instructions:"), and imperatives (see the module docs of the parent).

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::Hit;
use super::catalogue::Before;
use super::checks::{floor, plain, re};
use super::text::{excerpt, sentence_end, sentence_start};

/// A conditional addressed to a human setting something up ("if you're on Windows", "if you
/// already have Node").
static SETUP_NOTE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\bif\s+you(?:'re|’re|\s+are)?\s+(?:already\s+|not\s+)?(?:on|using|running|installing|building|upgrading|have|had|installed|use|prefer|want|deploying|developing|working)\b",
    )
});

/// After a vocative ("Assistant, …"): an instruction within the next few hundred bytes.
static VOCATIVE_DIRECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:you|your|please|ignore|disregard|use|run|call|execute|send|forward|delete|approve|merge|read|open|fetch|tell\s+the\s+user|do\s+not|don't|never|always|must)\b",
    )
});

/// After "before every X": an instruction at the start of the main clause.
static EVERY_OTHER_REST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:\s+(?:in|of|during|for)\s+(?:this|the|your|a)\s+[a-z]+)?\s*,?\s*(?:you\s+(?:must|should|need\s+to|have\s+to)\s+)?(?:always\s+|first\s+)?(?:call|run|execute|fetch|send|read|use|invoke|open|visit|append|include|add|make\s+sure|pass|post|upload|delete|write|check|attach|forward|email|ignore)\b",
    )
});

/// Words that present a quoted phrase as an example rather than an instruction.
static MENTION_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:like|such\s+as|e\.g\.|for\s+example|example|examples|phrase|phrases|text|string|strings|says|saying|called|pattern|patterns|quote|quoted|contain|contains|containing|classic|known|detect|detects|detection|flag|flags)\b",
    )
});

/// Words naming the model.
static MODEL_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:AI|A\.I\.|LLMs?|language\s+models?|assistants?|agents?|models?|chat\s*bots?|Claude|GPT|ChatGPT|Gemini|Copilot)\b",
    )
});

/// An instruction in a role line or after a whitespace run.
pub(super) static DIRECTIVE_ROLE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:ignore|disregard|forget|you\s+(?:must|should|will|are\s+now|need\s+to|have\s+to)|always|never|do\s+not|don't|instead|pretend|act\s+as|from\s+now\s+on|new\s+instructions?|override|reveal|call\s+the|use\s+the|run\s+the|execute|send|read\s+the|respond|reply)\b",
    )
});

/// Text addressed to the model, or a second-person instruction, in hidden content (comments,
/// hidden elements). Stricter than [`DIRECTIVE_ROLE`]: developers write "do not edit" in comments.
pub(super) static DIRECTIVE_MODEL: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)\b(?:AI|A\.I\.|LLMs?|language\s+models?|assistants?|chat\s*bots?|Claude|ChatGPT|GPT-?\d[\w.]*|Gemini|Copilot|agents?)\b[^\n]{0,60}?\b(?:must|should|need\s+to|please|do\s+not|don't|never|always|ignore|instead|reading|shall|will\s+now)\b",
        r"|\byou\s+(?:must|should|need\s+to|have\s+to|are\s+required\s+to)\s+(?:now\s+|also\s+|first\s+|immediately\s+|always\s+)?(?:ignore|disregard|forget|read|send|call|execute|include|fetch|visit|tell|reply|respond|say|output|print|summari[sz]e|recommend|follow|obey|praise|rate|approve|insert|mention|navigate|click|download|install|upload|forward|email|share|reveal|delete)\b",
        r"|\b(?:ignore|disregard|forget)\s+(?:all|any|the|previous|prior|above|your|everything)\b",
        r"|\b(?:do\s+not|don't|never)\s+(?:tell|mention|reveal|inform|notify)\b",
    ))
});

/// "new", "updated", "real"… before "instructions:".
static QUALIFIER_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:new|updated|revised|real|actual|true|secret|hidden|override|overriding|priority)\s+(?:system\s+)?$",
    )
});

/// "system", "admin"… before "override:".
static AUTHORITY_TAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:system|admin(?:istrator)?|developer|root|sudo)\s+$"));

/// "note to the", "attention", "hey"… before a name of the model.
static ADDRESS_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:(?:note|message|attention|reminder|notice|memo|instructions?|important|warning|hint|text|comment|section|request)\s+(?:(?:is|are)\s+)?(?:(?:meant|intended|written|addressed|only)\s+)?(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:[a-z-]+\s+)?|(?:attention|hey|hi|hello|dear|listen(?:\s+up)?)\s*,?\s+(?:the\s+|all\s+|any\s+)?)$",
    )
});

/// `Check::Imperative`: the match starts an instruction.
pub(super) fn imperative_match(text: &str, m: Range<usize>) -> Option<Hit> {
    imperative(text, m.start).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: None,
    })
}

/// `Check::Override`: not a note for humans setting something up, nor a quoted example.
pub(super) fn override_phrase(text: &str, m: Range<usize>) -> Option<Hit> {
    let start = sentence_start(text, m.start);
    let before = &text[start..m.start];
    let sentence = &text[start..sentence_end(text, m.end).max(m.end)];
    if SETUP_NOTE.is_match(before) && !MODEL_WORD.is_match(sentence) {
        return None;
    }
    if quoted_mention(text, &m, sentence) {
        return None;
    }
    plain(m)
}

/// `Check::Vocative`: a name of the model at the start of a clause, then an instruction.
pub(super) fn vocative(text: &str, m: Range<usize>) -> Option<Hit> {
    // At the start of a sentence or after a dash, bracket or colon; not in a list of
    // product names ("ChatGPT, Claude, Cursor").
    let before = text[sentence_start(text, m.start)..m.start].trim_end();
    if !(before.is_empty() || before.ends_with(['-', '—', ')', ']', ':', '>'])) {
        return None;
    }
    let to = floor(text, m.end + 300);
    let directive = VOCATIVE_DIRECTIVE.find(&text[m.end..to])?;
    let end = sentence_end(text, m.end + directive.end()).max(m.end + directive.end());
    Some(Hit {
        resume: end,
        span: m.start..end,
        detail: None,
    })
}

/// `Check::EveryOther`: "before every X" about actions or tools, then an instruction.
pub(super) fn every_other(text: &str, m: Range<usize>) -> Option<Hit> {
    // "before creating any issue", or "after every tool call": an action, or tools.
    let words: Vec<&str> = text[m.clone()].split_whitespace().collect();
    let noun = words
        .last()
        .copied()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let acting = words
        .get(1)
        .is_some_and(|w| w.len() > 4 && w.ends_with("ing"));
    let tools = [
        "tool",
        "tools",
        "call",
        "calls",
        "function",
        "functions",
        "command",
        "commands",
        "request",
        "requests",
        "response",
        "responses",
        "message",
        "messages",
        "action",
        "actions",
        "step",
        "steps",
        "task",
        "tasks",
        "operation",
        "operations",
        "answer",
        "reply",
    ];
    if !(acting || tools.contains(&noun.as_str())) {
        return None;
    }
    let to = floor(text, m.end + 120);
    EVERY_OTHER_REST.is_match(&text[m.end..to]).then(|| Hit {
        resume: m.end,
        span: m.clone(),
        detail: None,
    })
}

/// `Check::DirectiveRestOfLine`: an instruction in the rest of the line.
pub(super) fn directive_rest_of_line(text: &str, m: Range<usize>) -> Option<Hit> {
    DIRECTIVE_ROLE
        .is_match(rest_of_line(text, m.end))
        .then(|| Hit {
            resume: m.end,
            span: m.clone(),
            detail: None,
        })
}

/// `Check::FakeTurn`: a role line after a blank line, or carrying an instruction.
pub(super) fn fake_turn(text: &str, m: Range<usize>) -> Option<Hit> {
    let role = text[m.clone()].trim_start();
    let b = text.as_bytes();
    let line_start = m.start;
    let after_blank = line_start >= 2
        && b[line_start - 1] == b'\n'
        && text[..line_start - 1]
            .trim_end_matches([' ', '\t', '\r'])
            .ends_with('\n');
    let human_or_assistant = role.to_ascii_lowercase().starts_with("human")
        || role.to_ascii_lowercase().starts_with("assistant");
    ((human_or_assistant && after_blank) || DIRECTIVE_ROLE.is_match(rest_of_line(text, m.end)))
        .then(|| Hit {
            resume: m.end,
            span: m.clone(),
            detail: None,
        })
}

/// `Check::Before`: the qualifier, authority or address the match needs before it.
pub(super) fn before_tail(text: &str, m: Range<usize>, before: Before) -> Option<Hit> {
    let tail = match before {
        Before::Qualifier => &*QUALIFIER_TAIL,
        Before::Authority => &*AUTHORITY_TAIL,
        Before::Address => &*ADDRESS_TAIL,
    };
    let from = floor(text, m.start.saturating_sub(60));
    let found = tail.find(&text[from..m.start])?;
    let span = from + found.start()..m.end;
    Some(Hit {
        resume: m.end,
        detail: Some(excerpt(text, &span)),
        span,
    })
}

/// Whether the match is a quoted example ("text like \"ignore previous instructions\""): a quote
/// right before it, the closing quote right after it, and a word such as "like" or "example" in
/// the sentence.
fn quoted_mention(text: &str, m: &Range<usize>, sentence: &str) -> bool {
    const QUOTES: &[char] = &['"', '\'', '`', '“', '”', '‘', '’', '«', '»', '„'];
    // The match may start with the JSON escape of the quote (`\"`).
    let escaped_quote = text[m.start..].starts_with("\\\"");
    let before = text[..m.start].chars().next_back();
    let after = &text[m.end..floor(text, m.end + 8)];
    let closes = after
        .trim_start_matches(|c: char| c.is_alphanumeric() || c == ' ' || c == '\\')
        .trim_start_matches(['.', ',', '!', '?', '…'])
        .starts_with(QUOTES);
    (escaped_quote || before.is_some_and(|c| QUOTES.contains(&c)))
        && closes
        && MENTION_WORD.is_match(sentence)
}

/// Words after which a verb is still an imperative ("please do not…", "and don't…").
const IMPERATIVE_LEADS: &[&str] = &[
    "please",
    "and",
    "also",
    "but",
    "so",
    "just",
    "then",
    "simply",
    "absolutely",
    "really",
    "therefore",
    "otherwise",
    "or",
    "always",
    "important",
    "note",
    "remember",
    "again",
    "now",
    "thus",
    "hence",
    "instead",
    "however",
    "moreover",
    "additionally",
    "finally",
    "first",
];

/// Whether the word at `pos` starts an instruction: at the start of a sentence or clause, or
/// after a word such as "please" or "and" (not after a subject: "manpages do not mention this").
fn imperative(text: &str, pos: usize) -> bool {
    let start = sentence_start(text, pos);
    let before = text[start..pos].trim_end();
    if before.is_empty()
        || before.ends_with([
            ',', ':', ';', '(', ')', '[', ']', '-', '—', '*', '>', '"', '\'',
        ])
    {
        return true;
    }
    let word = before
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default();
    IMPERATIVE_LEADS
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
}

/// The rest of the line after `pos`, at most 300 bytes.
fn rest_of_line(text: &str, pos: usize) -> &str {
    let end = floor(text, pos + 300);
    let s = &text[pos..end];
    s.find('\n').map_or(s, |p| &s[..p])
}
