//! Context checks: each decides whether one trigger match is a finding, by looking at a bounded
//! window around it (the sentence, the rest of the line, the URL), and says what to report.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::catalogue::{Before, Check, Need, Spec, ToolAt};
use super::{
    Hit, ScanContext, Sink, ascii_boundaries, excerpt, sentence_end, sentence_start, structure,
};

/// Compiles a helper pattern (with ASCII word boundaries).
fn re(pattern: &str) -> Regex {
    Regex::new(&ascii_boundaries(pattern)).expect("every injection helper pattern compiles")
}

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

/// Words that make a sentence about another tool an instruction.
static MODIFIER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:always|must|make\s+sure|be\s+sure|ensure|need\s+to|needs\s+to|have\s+to|has\s+to|change|replace|add|include|append|prepend|bcc|cc|recipient|redirect|forward|instead|never|do\s+not|don't|remember\s+to|should)\b",
    )
});

/// Absolutes that turn a routing hint into an override.
static ABSOLUTE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:always|never|must|all|every|any|regardless|only|whenever)\b"));

/// The user's request as a trigger ("when the user asks to…").
static USER_REQUEST: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:when(?:ever)?|if|each\s+time)\s+(?:the\s+)?user\b"));

/// A literal recipient right after "change the recipient to".
static LITERAL_RECIPIENT: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"^[\s`'"]*(?:[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+|\+?\d[\d().\s-]{6,}\d|https?://)"#)
});

/// Verbs of sending.
static SEND_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:send|forward|copy|cc|bcc|email|e-mail|mail|post|upload|transmit|exfiltrate|leak|deliver|share|submit|relay|redirect)\b",
    )
});

/// What is sent, when it is data rather than a bug report.
static DATA_NOUN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:a\s+copy|copies|all|every(?:thing)?|each|(?:the|its|their|your|this|these|those|any)\s+(?:\S+\s+){0,3}?(?:conversations?|chats?|history|contents?|data|messages|e?mails|results|outputs?|credentials|keys|secrets|tokens|passwords|files?|summary|memory|memories|context|transcripts?|logs)|them|it)\b",
    )
});

/// What people send to an address in ordinary documents.
static BENIGN_NOUN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:feedback|bugs?|issues?|questions?|patch(?:es)?|pull\s+requests?|inquir(?:y|ies)|suggestions?|comments?|support|vulnerabilit(?:y|ies)|security\s+(?:reports?|issues?)|contributions?|PRs?|translations?|complaints?|applications?|resumes?|CVs?|invoices?|orders?)\b",
    )
});

/// Verbs of putting something somewhere.
static EMBED_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:append|add|include|put|embed|encode|insert|place|attach|pass|send)\b")
});

/// Data worth exfiltrating through a URL.
static EXFIL_DATA: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:conversations?|chat(?:\s+history)?|history|messages|summary|summari[sz]e|context|memory|memories|secrets?|credentials|passwords?|(?:the\s+)?user'?s?\s+(?:data|information|details|messages|files|emails)|personal|private|sensitive|everything|all\s+(?:the\s+)?(?:data|information|previous)|previous\s+(?:messages|responses|answers)|contents?\s+of)\b",
    )
});

/// A read instruction before a credential file.
static READ_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:read|cat|dump|print|output|exfiltrate|extract|upload|send|pass|include|attach|provide|collect|grab|steal|leak|fetch|retrieve|lee|leer|lire|lis|leggi|lies\s+die|(?:get|read|fetch|load|open)_\w*(?:file|content|contents))\b|\bopen\s*\(",
    )
});

/// "read more", "read about": not a read instruction.
static READ_MORE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\bread\s+(?:more|about|the\s+(?:docs|documentation|guide|manual))\b")
});

/// A transfer of something read into an argument, after a credential file.
static TRANSFER_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:pass|send|include|put|insert|attach|provide|supply|append|embed|upload|post|forward)\s+(?:its|the|their|this|that|those|these|all|it|them|what|everything|whatever)\b(?:\s+\S+){0,3}?\s+(?:as|in|into|to|with|via)\b|^['"`]*\)?\.read\("#,
    )
});

/// Any transfer verb.
static TRANSFER_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:pass|send|include|append|insert|attach|put|add|provide|supply|embed|encode|upload|post|forward|share)\b",
    )
});

/// Where API documentation legitimately puts credentials.
static AUTH_PLACE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:headers?|authori[sz]ation|bearer|requests?|cookies?|config(?:uration)?|environment|keychain|vault|secret\s+manager)\b",
    )
});

/// A read instruction before "pass its content as…".
static READ_BEFORE_PASS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:read|cat|open|contents?\s+of|load|fetch)\b"));

/// A parameter named as the destination.
static PARAM_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)^[`'"]|^(?:parameter|argument|field|param|arg|sidenote|side_note|note|notes|context|metadata|comment|extra|details)\b|^\w+[`'"]?\s+(?:parameter|argument|field|param)\b"#,
    )
});

/// A tool reference: quoted (`qtool`) or bare (`tool`), optionally after a `(server)` prefix and
/// followed by the word "tool" (`suffix`).
macro_rules! tool {
    () => {
        r#"(?P<server>\([A-Za-z0-9_.-]+\)\s*)?(?:[`'"](?P<qtool>[A-Za-z][A-Za-z0-9_.:/-]*)[`'"]|\b(?P<tool>[A-Za-z][A-Za-z0-9_.:-]*))(?:\(\))?(?P<suffix>\s+tool\b)?"#
    };
}

/// A tool reference at the start of the text after a match.
static TOOL_HEAD: LazyLock<Regex> = LazyLock::new(|| re(concat!("(?i)^", tool!())));

/// A tool reference at the end of the text before a match.
static TOOL_TAIL: LazyLock<Regex> =
    LazyLock::new(|| re(concat!("(?i)", tool!(), r"\s*(?:function\s+)?$")));

/// "when <tool>" at the end of the text before a match.
static WHEN_TOOL_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)\bwhen(?:ever)?\s+(?:the\s+)?",
        tool!(),
        r"\s*(?:function\s+)?$"
    ))
});

/// How far a tool name is looked for before or after a match (bytes).
const TOOL_REACH: usize = 120;

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

/// "to " right before an address.
static TO_TAIL: LazyLock<Regex> = LazyLock::new(|| re(r#"(?i)\bto\s+[`'"<(]?$"#));

/// Words that are not tool names.
const STOP_WORDS: &[&str] = &[
    "a",
    "all",
    "an",
    "another",
    "any",
    "appropriate",
    "built-in",
    "correct",
    "current",
    "default",
    "each",
    "every",
    "first",
    "following",
    "function",
    "functions",
    "given",
    "it",
    "its",
    "last",
    "me",
    "my",
    "new",
    "next",
    "old",
    "one",
    "other",
    "our",
    "previous",
    "relevant",
    "right",
    "same",
    "second",
    "some",
    "specific",
    "such",
    "that",
    "the",
    "their",
    "them",
    "these",
    "this",
    "those",
    "tool",
    "tools",
    "what",
    "which",
    "wrong",
    "you",
    "your",
];

/// Runs the spec's check on one match.
pub(super) fn check(
    spec: &Spec,
    text: &str,
    caps: &Captures<'_>,
    ctx: &ScanContext<'_>,
    sink: &Sink,
    skip: &mut usize,
) -> Option<Hit> {
    let m = caps.get(0)?.range();
    let plain = |span: Range<usize>| {
        Some(Hit {
            resume: span.end,
            span,
            detail: None,
        })
    };
    match spec.check {
        Check::None => plain(m),
        Check::Imperative => imperative(text, m.start).then(|| Hit {
            resume: m.end,
            span: m.clone(),
            detail: None,
        }),
        Check::Override => {
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
        Check::Vocative => {
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
        Check::EveryOther => {
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
        Check::DirectiveRestOfLine => {
            DIRECTIVE_ROLE
                .is_match(rest_of_line(text, m.end))
                .then(|| Hit {
                    resume: m.end,
                    span: m.clone(),
                    detail: None,
                })
        }
        Check::FakeTurn => {
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
            ((human_or_assistant && after_blank)
                || DIRECTIVE_ROLE.is_match(rest_of_line(text, m.end)))
            .then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: None,
            })
        }
        Check::Tool { at, need } => {
            let (span, tool) = match at {
                ToolAt::After => {
                    let to = floor(text, m.end + TOOL_REACH);
                    let caps = TOOL_HEAD.captures(&text[m.end..to])?;
                    let tool = tool_ref(&caps, ctx)?;
                    (m.start..m.end + caps.get(0)?.end(), tool)
                }
                ToolAt::Before | ToolAt::WhenBefore => {
                    let from = floor(text, m.start.saturating_sub(TOOL_REACH));
                    let tail = if at == ToolAt::Before {
                        &*TOOL_TAIL
                    } else {
                        &*WHEN_TOOL_TAIL
                    };
                    let caps = tail.captures(&text[from..m.start])?;
                    let tool = tool_ref(&caps, ctx)?;
                    (from + caps.get(0)?.start()..m.end, tool)
                }
            };
            let sentence = sentence_start(text, span.start)..sentence_end(text, span.end);
            let needed = match need {
                Need::Nothing => true,
                Need::Modifier => MODIFIER.is_match(&text[span.end..sentence.end.max(span.end)]),
                Need::Absolute => ABSOLUTE.is_match(&text[sentence]),
            };
            needed.then(|| Hit {
                resume: span.end,
                detail: Some(format!("`{tool}` in {}", excerpt(text, &span))),
                span,
            })
        }
        Check::Before(before) => {
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
        Check::RedirectToSelf => {
            let sentence = &text[sentence_start(text, m.start)..sentence_end(text, m.end)];
            (USER_REQUEST.is_match(sentence) || ABSOLUTE.is_match(sentence)).then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: None,
            })
        }
        Check::LiteralRecipient => {
            let after = &text[m.end..floor(text, m.end + 80)];
            LITERAL_RECIPIENT.is_match(after).then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: None,
            })
        }
        Check::Url => {
            let url = trim_url(&text[m.clone()]);
            let span = m.start..m.start + url.len();
            // A string literal in code (`"https://…?key={t}"`, `` `…${data}` ``) interpolates a
            // variable; only prose placeholders and capture services count there.
            let literal = text[..m.start].ends_with(['"', '\'', '`']);
            let why = structure::url_carries_data(url, false, literal)?;
            Some(Hit {
                resume: span.end,
                detail: Some(format!("{why} in {}", excerpt(text, &span))),
                span,
            })
        }
        Check::Image => {
            let whole = &text[m.clone()];
            let url_at = whole.find("http").or_else(|| whole.find("HTTP"))?;
            let url = trim_url(&whole[url_at..]);
            let why = structure::url_carries_data(url, true, false)?;
            let mut end = m.start + url_at + url.len();
            if whole.starts_with('!') {
                // Through the closing parenthesis of the markdown image.
                if let Some(p) = text[end..floor(text, end + 200)].find(')') {
                    end += p + 1;
                }
            }
            let span = m.start..end;
            Some(Hit {
                resume: span.end,
                detail: Some(format!("{why} in {}", excerpt(text, &span))),
                span,
            })
        }
        Check::SendTo => {
            let b = text.as_bytes();
            let at = if text[m.clone()].contains('@') {
                // The address starts where its local part does.
                let mut a = m.start;
                while a > 0 && is_local_part(b[a - 1]) {
                    a -= 1;
                }
                let from = floor(text, a.saturating_sub(30));
                if !TO_TAIL.is_match(&text[from..a]) {
                    return None;
                }
                a
            } else {
                m.start
            };
            let before = &text[sentence_start(text, at)..at];
            (SEND_VERB.is_match(before)
                && DATA_NOUN.is_match(before)
                && !BENIGN_NOUN.is_match(before))
            .then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: None,
            })
        }
        Check::EmbedIn => {
            let before = &text[sentence_start(text, m.start)..m.start];
            (EMBED_VERB.is_match(before) && EXFIL_DATA.is_match(before)).then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: None,
            })
        }
        Check::SensitivePath => {
            let path = text[m.clone()].trim_start_matches(|c: char| {
                !c.is_ascii_alphanumeric() && c != '.' && c != '/' && c != '~' && c != '_'
            });
            let lower = path.to_ascii_lowercase();
            let glued = text[..m.start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ')' | ']'));
            let method = text[m.end..].starts_with('(');
            if (lower.starts_with(".env") && (glued || method))
                || lower.ends_with(".pub")
                || [
                    ".env.example",
                    ".env.sample",
                    ".env.template",
                    ".env.dist",
                    ".env.defaults",
                ]
                .iter()
                .any(|t| lower.starts_with(t))
            {
                return None;
            }
            // A parameter named after what it wants: `content_from_reading_ssh_id_rsa`.
            let b = text.as_bytes();
            let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
            let mut a = m.start;
            while a > 0 && m.start - a < 128 && ident(b[a - 1]) {
                a -= 1;
            }
            let mut z = m.end;
            while z < b.len() && z - m.end < 128 && ident(b[z]) {
                z += 1;
            }
            if a < m.start || z > m.end {
                let name = text[a..z].to_ascii_lowercase();
                if ["content", "read", "from", "value", "data", "file"]
                    .iter()
                    .any(|w| name.contains(w))
                {
                    return Some(Hit {
                        resume: z,
                        span: a..z,
                        detail: Some(format!("parameter `{}`", excerpt_plain(&text[a..z]))),
                    });
                }
            }
            let from = sentence_start(text, m.start).max(floor(text, m.start.saturating_sub(160)));
            let before = &text[from..m.start];
            let read_before = READ_VERB.is_match(before) && !READ_MORE.is_match(before);
            let to = sentence_end(text, m.end)
                .min(floor(text, m.end + 240))
                .max(m.end);
            let transfer_after = TRANSFER_AFTER.is_match(&text[m.end..to]);
            (read_before || transfer_after).then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: Some(format!("`{}`", excerpt_plain(path))),
            })
        }
        Check::PassContent => {
            let from = floor(text, m.start.saturating_sub(400));
            let before = &text[from..m.start];
            // The destination: the last word of the match and what follows.
            let dest_at = text[..m.end]
                .rfind(|c: char| c.is_whitespace())
                .map_or(m.end, |p| p + 1);
            let dest = &text[dest_at..floor(text, dest_at + 60)];
            (READ_BEFORE_PASS.is_match(before) && PARAM_WORD.is_match(dest)).then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: None,
            })
        }
        Check::CredentialTransfer => {
            let matched = &text[m.clone()];
            let verb = matched
                .split(|c: char| !c.is_ascii_alphabetic())
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let end = sentence_end(text, m.end).max(m.end);
            let rest = &text[m.end..end];
            // "… will leak passwords", "it sends credentials": a description, not an instruction.
            let subject = text[floor(text, m.start.saturating_sub(16))..m.start]
                .split_whitespace()
                .next_back()
                .unwrap_or_default()
                .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_ascii_lowercase();
            let descriptive = matches!(
                subject.as_str(),
                "will"
                    | "would"
                    | "can"
                    | "could"
                    | "may"
                    | "might"
                    | "cannot"
                    | "can't"
                    | "won't"
                    | "does"
                    | "did"
                    | "it"
                    | "which"
                    | "that"
                    | "this"
            );
            // "send its credentials": the subject's own, as in protocol documentation.
            let own = matched
                .split_whitespace()
                .nth(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("its") || w.eq_ignore_ascii_case("their"));
            if descriptive || own || AUTH_PLACE.is_match(rest) {
                return None;
            }
            let outright = matches!(
                verb.as_str(),
                "send" | "upload" | "leak" | "exfiltrate" | "steal" | "grab" | "forward"
            );
            let into_argument = matches!(verb.as_str(), "include" | "pass" | "attach" | "append")
                && PARAM_DEST.is_match(rest);
            (outright || into_argument || TRANSFER_VERB.is_match(rest)).then(|| Hit {
                resume: m.end,
                span: m.clone(),
                detail: None,
            })
        }
        Check::Invisible => structure::invisible(text, m.start),
        Check::HiddenTag => structure::hidden_tag(text, caps),
        Check::HtmlComment => structure::html_comment(text, m, sink, skip),
        Check::MarkdownComment => structure::markdown_comment(text, m, sink, skip),
        Check::HiddenHtml => structure::hidden_html(text, m, sink, skip),
        Check::Ansi => structure::ansi(text, m.start),
    }
}

/// "… in/as the `notes` parameter".
static PARAM_DEST: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b(?:as|in|into|to|with)\s+(?:the\s+|a\s+)?(?:[`'"]\w+[`'"]|\w+\s+(?:parameter|argument|field|param)|parameter|argument|field|param|sidenote|notes?|context|metadata)\b"#,
    )
});

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

/// Whether `c` may be part of an e-mail address's local part.
fn is_local_part(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The rest of the line after `pos`, at most 300 bytes.
fn rest_of_line(text: &str, pos: usize) -> &str {
    let end = floor(text, pos + 300);
    let s = &text[pos..end];
    s.find('\n').map_or(s, |p| &s[..p])
}

/// The largest character boundary ≤ `pos` (clamped to the text).
fn floor(text: &str, pos: usize) -> usize {
    super::floor_char(text, pos)
}

/// A URL without the punctuation that ends the sentence around it or closes a bracket opened
/// before it.
pub(super) fn trim_url(url: &str) -> &str {
    // A markdown link after an image: `[![badge](url)](link)`.
    let mut url = url.find("](").map_or(url, |p| &url[..p]);
    let pairs = [('(', ')'), ('[', ']'), ('{', '}'), ('<', '>')];
    let mut balance =
        pairs.map(|(o, c)| url.matches(o).count() as isize - url.matches(c).count() as isize);
    while let Some(last) = url.chars().next_back() {
        let closer = pairs.iter().position(|(_, c)| *c == last);
        let unbalanced = closer.is_some_and(|i| balance[i] < 0);
        if !(unbalanced || matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' | '*')) {
            break;
        }
        if let Some(i) = closer {
            balance[i] += 1;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
    url
}

/// The tool a shadowing pattern refers to, when it is another tool (see the module docs).
fn tool_ref<'t>(caps: &Captures<'t>, ctx: &ScanContext<'_>) -> Option<&'t str> {
    let raw = caps.name("qtool").or_else(|| caps.name("tool"))?.as_str();
    let name = raw.trim_end_matches(['.', ':', '-', '/']);
    if name.is_empty() || STOP_WORDS.iter().any(|w| name.eq_ignore_ascii_case(w)) {
        return None;
    }
    let server = caps.name("server").is_some();
    let suffix = caps.name("suffix").is_some();
    let lower_prefix = |p: &str| {
        name.len() > p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    // A one-word name ("search") is a tool only when marked as one (quoted, "the search tool").
    let plain_word = name.bytes().all(|c| c.is_ascii_lowercase())
        || (name.as_bytes()[0].is_ascii_uppercase()
            && name.bytes().skip(1).all(|c| c.is_ascii_lowercase()));
    let known = in_context(name, ctx) && (!plain_word || caps.name("qtool").is_some());
    let named = known
        || lower_prefix("mcp_")
        || lower_prefix("mcp-")
        || lower_prefix("functions.")
        || server
        || suffix;
    named.then_some(name)
}

/// Whether `name` is one of the other tools, possibly behind a server prefix
/// (`mcp_tool_send_email`, `whatsapp.send_message`, `mcp__wa__send_message`).
fn in_context(name: &str, ctx: &ScanContext<'_>) -> bool {
    ctx.other_tools.iter().any(|t| {
        let t = t.as_bytes();
        let n = name.as_bytes();
        if t.is_empty() {
            return false;
        }
        if n.eq_ignore_ascii_case(t) {
            return true;
        }
        n.len() > t.len()
            && n[n.len() - t.len()..].eq_ignore_ascii_case(t)
            && matches!(n[n.len() - t.len() - 1], b'_' | b'-' | b'.' | b':' | b'/')
    })
}

/// `s` without control characters, cut at 80 characters (for details).
fn excerpt_plain(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .map(|c| if c == '`' { '\'' } else { c })
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}
