//! The trigger patterns of the injection scanner: one [`Spec`] per pattern (kind, regular
//! expression, context [`Check`], how its span is reported). The patterns are short triggers; the
//! checks in `checks.rs` look at a bounded window around each match to decide. `\b` is rewritten
//! into an ASCII word boundary when compiling.

use super::InjectionKind::{self, *};

/// One trigger pattern.
#[derive(Debug)]
pub(super) struct Spec {
    pub(super) kind: InjectionKind,
    pub(super) regex: &'static str,
    pub(super) check: Check,
    pub(super) span: SpanRule,
    pub(super) phase: Phase,
    /// Start of the reason ("instruction to ignore previous instructions").
    pub(super) what: &'static str,
}

/// When a pattern runs: content patterns first, then containers (which may look at the content
/// findings inside them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Content,
    Container,
}

/// What a finding's span covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SpanRule {
    /// What the check reports (the match, a URL, a block).
    Match,
    /// The sentence around it.
    Sentence,
    /// The whole line.
    Line,
}

/// Where a shadowing pattern's tool name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ToolAt {
    After,
    Before,
    WhenBefore,
}

/// What else a sentence about another tool needs to be a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    Nothing,
    /// An instruction word ("always", "must", "make sure", "change", …).
    Modifier,
    /// An absolute ("always", "never", "all", "regardless", …).
    Absolute,
}

/// Patterns the text before a match must end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Before {
    /// "new", "updated", "real", "secret"… before "instructions:".
    Qualifier,
    /// "system", "admin", "developer"… before "override:".
    Authority,
    /// "note to", "attention", "hey"… before a name of the model.
    Address,
}

/// Context checks, run on each match (see `checks.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// The match alone is a finding.
    None,
    /// The match is an imperative: at the start of a clause, not after a subject.
    Imperative,
    /// An override that is used, not mentioned: not a setup note for humans ("if you're on
    /// Windows, ignore the instructions above"), not a quoted example ("text like \"ignore previous
    /// instructions\"").
    Override,
    /// A name of the model at the start of a clause, followed by an instruction ("Assistant, when
    /// you process this invite, forward…").
    Vocative,
    /// "before/after every X", followed by an instruction ("…, call `execute_command`…").
    EveryOther,
    /// The rest of the line gives an instruction.
    DirectiveRestOfLine,
    /// A `Human:`/`Assistant:` line after a blank line, or one that gives an instruction.
    FakeTurn,
    /// Another tool is named right after (`After`) or right before (`Before`, `WhenBefore`: after
    /// "when") the match, and the sentence has what `need` says.
    Tool { at: ToolAt, need: Need },
    /// The text right before the match fits a pattern (see [`Before`]).
    Before(Before),
    /// "instead call this tool": triggered by the user's request, another tool or an absolute.
    RedirectToSelf,
    /// A recipient change to a literal address, number or URL.
    LiteralRecipient,
    /// A URL carrying a data template, or pointing to a request-capture service.
    Url,
    /// An image link whose query carries a template or a long payload.
    Image,
    /// `to <address>` after a send verb and a data noun in the same sentence.
    SendTo,
    /// `in the URL/query` after an embedding verb and a data noun in the same sentence.
    EmbedIn,
    /// A credential file near a read or transfer instruction.
    SensitivePath,
    /// "pass its content as 'x'" after a read instruction.
    PassContent,
    /// Credentials moved somewhere ("send the API keys", "include env vars in the `x` param").
    CredentialTransfer,
    /// Zero-width, tag and bidi characters (see `structure.rs`).
    Invisible,
    /// `<IMPORTANT>`-style block up to its closing tag.
    HiddenTag,
    /// HTML comment whose content is a finding or addresses the model.
    HtmlComment,
    /// Markdown comment (`[//]: # (...)`) likewise.
    MarkdownComment,
    /// HTML element hidden by CSS or attributes, likewise.
    HiddenHtml,
    /// Terminal escape sequences that hide text or move the cursor.
    Ansi,
}

const fn content(
    kind: InjectionKind,
    regex: &'static str,
    check: Check,
    span: SpanRule,
    what: &'static str,
) -> Spec {
    Spec {
        kind,
        regex,
        check,
        span,
        phase: Phase::Content,
        what,
    }
}

const fn container(regex: &'static str, check: Check, what: &'static str) -> Spec {
    Spec {
        kind: HiddenBlock,
        regex,
        check,
        span: SpanRule::Match,
        phase: Phase::Container,
        what,
    }
}

/// Verbs of dropping instructions.
macro_rules! ign {
    () => {
        r"(?:ignore|disregard|forget|discard|abandon|neglect|(?:do\s+not|don't|dont|stop)\s+(?:follow(?:ing)?|obey(?:ing)?|adher(?:e|ing)\s+to))"
    };
}

/// Which instructions.
macro_rules! qual {
    () => {
        r"(?:previous|prior|above|preceding|earlier|former|original|initial|foregoing|past|old|system|developer|safety|existing|aforementioned|other)"
    };
}

/// Instructions and their synonyms.
macro_rules! obj {
    () => {
        r"(?:instructions?|directions?|prompts?|rules|guidelines|guidance|commands|constraints|restrictions|directives?|polic(?:y|ies)|orders|programming|training)"
    };
}

/// The model, addressed.
macro_rules! ai {
    () => {
        r"(?:AI|A\.I\.|LLMs?|large\s+language\s+models?|language\s+models?|AI\s+(?:assistants?|agents?|models?|systems?)|assistants?|agents?|models?|chat\s*bots?|bots?|Claude|ChatGPT|GPT(?:-?\d[\w.]*)?|Gemini|Copilot|Cursor|Codex)"
    };
}

/// Credential files and directories.
macro_rules! sensitive {
    () => {
        r#"(?i-u)(?:\.ssh[/\\](?:id_[a-z0-9_]+(?:\.pub)?|identity)|id_(?:rsa|dsa|ecdsa|ed25519)(?:\.pub)?\b|\.aws[/\\]credentials|\.config[/\\]gcloud\b|\bapplication_default_credentials\.json|\.azure[/\\](?:accessTokens|msal_token_cache|credentials)|\.kube[/\\]config|\.docker[/\\]config\.json|\.npmrc\b|\.pypirc\b|[._]netrc\b|\.git-credentials\b|\.gnupg\b|/etc/(?:shadow|passwd|sudoers|master\.passwd)\b|\.env(?:\.[a-z0-9_]+)?\b|\bmcp(?:_config)?\.json\b|\bclaude_desktop_config\.json|\.claude\.json\b|\.cursor[/\\]|\.(?:bash|zsh|psql|mysql|python|node_repl)_history\b|\bwallet\.dat\b|\.config[/\\]solana\b|\.ethereum[/\\]keystore|\.password-store\b|\.vault-token\b|\bterraform\.tfstate\b|\bcredentials\.json\b|\bsecrets\.(?:ya?ml|json|toml|env)\b|\bservice[-_]account[a-z0-9_-]*\.json\b|\bLogin[ \t]+Data\b|\bkeychain\b)"#
    };
}

use Check as C;
use SpanRule::{Line, Match, Sentence};

/// The catalogue. Content patterns first, containers last (they run after the content findings
/// are known).
pub(super) const CATALOGUE: &[Spec] = &[
    // --- Instruction override ---
    content(
        InstructionOverride,
        concat!(
            r"(?i)\b",
            ign!(),
            r"\s+(?:(?:all|any|every|each)\s+)?(?:of\s+)?(?:the\s+|your\s+|my\s+|its\s+)?(?:",
            qual!(),
            r"\s+){1,2}",
            obj!(),
            r"\b"
        ),
        C::Override,
        Sentence,
        "instruction to ignore previous instructions",
    ),
    content(
        InstructionOverride,
        concat!(
            r"(?i)\b",
            ign!(),
            r"\s+(?:(?:(?:all|any)\s+(?:of\s+)?)?(?:your|my)\s+(?:(?:own|current|original|initial|system)\s+)?(?:",
            obj!(),
            r"|system\s+prompt)|all\s+(?:of\s+)?(?:the\s+)?(?:instructions|directions|prompts|guidelines|directives|system\s+prompts?))\b"
        ),
        C::Override,
        Sentence,
        "instruction to ignore the model's instructions",
    ),
    content(
        InstructionOverride,
        concat!(
            r"(?i)\b",
            ign!(),
            r"\s+(?:all\s+(?:of\s+)?)?(?:the|any|all)\s+(?:",
            obj!(),
            r"|text|content|messages?)\s+(?:above|before\s+this|so\s+far|you\s+(?:were|have\s+been)\s+given|you\s+received|(?:given|provided)\s+(?:to\s+you\s+)?(?:earlier|before|previously|above))\b"
        ),
        C::Override,
        Sentence,
        "instruction to ignore previous instructions",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:ignore|disregard|forget)\s+(?:(?:all|everything)\s+(?:of\s+)?)?(?:the\s+|what\s+(?:was|is)\s+)?(?:above|foregoing|(?:said|written|stated)\s+(?:above|before|earlier))\s*(?:[.,;:!\n]|and\b|$)",
        C::Override,
        Sentence,
        "instruction to disregard the preceding text",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:forget|ignore|disregard)\s+everything\s+(?:you\s+(?:know|were\s+told|have\s+been\s+told|learned|read)|(?:I|we)\s+(?:said|told\s+you)|above|before|previously|so\s+far|up\s+to\s+(?:now|this\s+point)|(?:that\s+)?came\s+before)\b",
        C::Override,
        Sentence,
        "instruction to forget previous instructions",
    ),
    content(
        InstructionOverride,
        concat!(
            r"(?i)\b(?:override|overrides|overwrite|bypass|circumvent|supersedes?|replaces?|takes?\s+precedence\s+over|trumps?)\s+(?:any\s+)?(?:of\s+)?",
            r"(?:(?:the\s+)?(?:previous|prior|earlier|above|original|other|existing|initial)\s+|your\s+(?:(?:previous|prior|original|current|system)\s+)?|all\s+(?:(?:the|your)\s+)?(?:(?:previous|prior|other|earlier)\s+)?)",
            r"(?:system\s+)?(?:instructions|directives|guidelines|prompts?|programming)\b"
        ),
        C::None,
        Sentence,
        "instruction overriding previous instructions",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:bypass|circumvent|disable|ignore|override|turn\s+off|deactivate|evade)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|the|its)\s+(?:(?:safety|ethical|moderation)\s+(?:guidelines|filters?|restrictions|policies|guardrails|protocols|rules|training)|guardrails)\b",
        C::Override,
        Sentence,
        "instruction to bypass safety guidelines",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:these|the\s+following|this|my|our)\s+(?:new\s+)?instructions?\s+(?:supersedes?|overrides?|takes?\s+precedence|replaces?|(?:is|are)\s+more\s+important|must\s+be\s+followed\s+(?:instead|above|first))\b",
        C::Override,
        Sentence,
        "instructions claiming precedence",
    ),
    content(
        InstructionOverride,
        r"(?i)\byou(?:\s+are|'re|’re)\s+(?:now\s+(?:(?:a|an)\s+(?:new\s+|different\s+|unrestricted\s+|unfiltered\s+|uncensored\s+|evil\s+|rogue\s+|malicious\s+)?(?:AI|assistant|language\s+model|LLM|chatbot|bot|agent|model|persona|character)|in\s+(?:developer|DAN|god|admin|jailbreak|jailbroken|unrestricted|debug|sudo)\s+mode|DAN\b|jailbroken|unrestricted|unfiltered|uncensored|free\s+(?:from|of)\s+(?:all\s+)?(?:your\s+)?(?:restrictions|rules|guidelines|constraints)|(?:acting|operating|playing)\s+as|going\s+to\s+(?:act|pretend|role-?play)|to\s+(?:act|behave|respond|pretend))|no\s+longer\s+(?:an?\s+)?(?:AI|assistant|bound|restricted|limited|required\s+to|subject\s+to|constrained|Claude|ChatGPT|an\s+AI))",
        C::Override,
        Sentence,
        "instruction assigning the model a new role",
    ),
    content(
        InstructionOverride,
        r"(?i)\bfrom\s+now\s+on\s*,?\s+(?:you\s+(?:will|must|should|shall)\s+(?:act|behave|respond|answer|reply|ignore|obey|pretend|speak|disregard|only\s+(?:respond|answer|reply|output|speak))|you\s+are\s+(?:DAN|no\s+longer)|(?:always|never|ignore|disregard|pretend|only\s+respond)\b)",
        C::Override,
        Sentence,
        "instruction changing the model's behaviour from now on",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:instructions?|directives?|prompt)\s*(?::|follow\b)",
        C::Before(Before::Qualifier),
        Sentence,
        "injected instructions header",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:override|directive|command)\s*:",
        C::Before(Before::Authority),
        Sentence,
        "injected instructions header",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:DAN|jailbreak|jailbroken|god|unrestricted|unfiltered|uncensored)\s+mode\b",
        C::Override,
        Sentence,
        "jailbreak mode",
    ),
    content(
        InstructionOverride,
        concat!(
            r"(?i)\b",
            ai!(),
            r"\s*(?:[:!,(—-]|(?:reading|processing|that|working|who|which|using|reviewing)\b)"
        ),
        C::Before(Before::Address),
        Sentence,
        "text addressed to the model",
    ),
    content(
        InstructionOverride,
        r"(?i)\bif\s+you(?:\s+are|'re|’re)\s+(?:an?\s+|the\s+)?(?:AI|A\.I\.|LLM|large\s+language\s+model|(?:AI\s+)?language\s+model|AI[\s-](?:assistant|agent|model|system|tool|bot)|chat\s*bot|automated\s+(?:AI|agent|assistant)|assistant\s+(?:reading|processing|summari[sz]ing)|Claude|ChatGPT|GPT(?:-?\d[\w.]*)?|Gemini|Copilot|coding\s+(?:assistant|agent))\b",
        C::Override,
        Sentence,
        "text addressed to the model",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:AI|A\.I\.|LLMs?|language\s+models?|AI\s+(?:assistants?|agents?|models?)|assistants?|agents?|chat\s*bots?)\s+(?:reading|processing|parsing|summari[sz]ing|analy[sz]ing|viewing|seeing|scraping|crawling|ingesting)\s+(?:this|these)\b",
        C::Override,
        Sentence,
        "text addressed to the model",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:all|every|each)\s+(?:subsequent\s+|future\s+|other\s+)?(?:shell\s+|terminal\s+|bash\s+)?(?:commands?|tool\s+calls?|function\s+calls?)\s+(?:must|should|need\s+to|has\s+to|have\s+to|shall)\s+(?:always\s+)?(?:include|contain|start\s+with|begin\s+with|end\s+with|be\s+prefixed|be\s+suffixed|be\s+preceded|be\s+followed|have\s+the\s+prefix)\b",
        C::Override,
        Sentence,
        "rule rewriting every command",
    ),
    content(
        InstructionOverride,
        r"(?i)\byour\s+(?:new|real|actual|true|secret|hidden|updated)\s+(?:task|goal|objective|mission|purpose|instructions?|job|directive)\s+(?:is|are|will\s+be|now)\b",
        C::Override,
        Sentence,
        "instruction replacing the model's task",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:ignorier(?:e|en|t)?\s+(?:alle\s+)?(?:vorherigen|bisherigen|obigen|früheren|vorangegangenen)\s+(?:Anweisungen|Instruktionen|Befehle|Regeln)|ignora(?:r)?\s+(?:todas\s+)?las\s+(?:instrucciones|indicaciones|órdenes)\s+(?:anteriores|previas)|ignore[rz]?\s+(?:toutes\s+)?les\s+(?:instructions|consignes)\s+(?:précédentes|precedentes|antérieures|anterieures|ci-dessus)|ignora\s+(?:tutte\s+)?le\s+istruzioni\s+(?:precedenti|sopra)|ignor[ae]\s+(?:todas\s+)?as\s+instruç(?:ões|oes)\s+(?:anteriores|acima))\b",
        C::Override,
        Sentence,
        "instruction to ignore previous instructions",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:AI\s+assistant|AI\s+agent|assistant|Claude|ChatGPT|Copilot|Gemini)\s*\\?[,:]",
        C::Vocative,
        Match,
        "instruction addressed to the model",
    ),
    content(
        InstructionOverride,
        r"(?i)\b(?:assistant|AI|model|chatbot|bot|persona|version\s+of\s+yourself)\s+(?:without|with\s+no|free\s+(?:of|from))\s+(?:any\s+)?(?:restrictions|limits|limitations|rules|filters|guidelines|censorship|guardrails|boundaries)\b",
        C::Override,
        Sentence,
        "instruction assigning an unrestricted persona",
    ),
    // --- Role markers ---
    content(
        RoleMarker,
        r"(?i)<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|eom_id|start_header_id|end_header_id|begin_of_text|end_of_text|start|end|message|channel|return|call|constrain|python_tag|tool_call|tool_response|fim_prefix|fim_middle|fim_suffix)\|>",
        C::None,
        Match,
        "chat-template token",
    ),
    content(
        RoleMarker,
        r"\[/?INST\]|<</?SYS>>|</?(?:start_of_turn|end_of_turn)>",
        C::None,
        Match,
        "chat-template token",
    ),
    content(
        RoleMarker,
        r"(?im)^[ \t]*#{1,6}[ \t]*(?:system|assistant|human|instructions?|system\s+prompt)[ \t]*:",
        C::None,
        Line,
        "role header",
    ),
    content(
        RoleMarker,
        r"(?i)</?[ \t]*(?:system|system[_-](?:prompt|message|instructions?|reminder|override)|sys|assistant|developer[_-](?:message|instructions?)|tool[_-](?:result|response|output|call|use)s?|function[_-](?:results?|calls?|response))[ \t]*>",
        C::None,
        Match,
        "role or tool-result tag",
    ),
    content(
        RoleMarker,
        r"(?m)^[ \t]*(?:Human|Assistant|HUMAN|ASSISTANT|User|USER)[ \t]*:",
        C::FakeTurn,
        Line,
        "fake conversation turn",
    ),
    content(
        RoleMarker,
        r"(?m)^[ \t]*(?:SYSTEM|System|\[SYSTEM\]|\[system\]|\[System\]|<<SYSTEM>>)[ \t]*:",
        C::DirectiveRestOfLine,
        Line,
        "fake system message",
    ),
    // --- Tool shadowing ---
    content(
        ToolShadowing,
        r"(?i)\b(?:before|after|prior\s+to)\s+(?:[a-z]+ing\s+)?(?:every|each|any|all)\s+(?:other\s+|single\s+|subsequent\s+|future\s+)?[a-z]+",
        C::EveryOther,
        Sentence,
        "instruction applying to every other action",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:before|after|when(?:ever)?|while|prior\s+to|each\s+time|every\s+time|if)\s+(?:you\s+)?(?:use|call|invoke|run|execute|using|calling|invoking|running|executing)\s+(?:the\s+|a\s+)?",
        C::Tool {
            at: ToolAt::After,
            need: Need::Modifier,
        },
        Sentence,
        "instruction about another tool",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:is|gets|was|are|has\s+been)\s+(?:called|invoked|used|run|executed|triggered)\b",
        C::Tool {
            at: ToolAt::WhenBefore,
            need: Need::Modifier,
        },
        Sentence,
        "instruction about another tool",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:do\s+not|don't|dont|never|avoid|stop)\s+(?:use|using|call|calling|invoke|invoking|run|running|trust|rely\s+on|choose|select|pick)\s+(?:the\s+|any\s+)?",
        C::Tool {
            at: ToolAt::After,
            need: Need::Nothing,
        },
        Sentence,
        "instruction to avoid another tool",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:is|has\s+been|was|are)\s+(?:now\s+|currently\s+)?(?:deprecated|broken|disabled|unsafe|insecure|compromised|unreliable|malicious|buggy|dangerous|not\s+(?:working|safe|secure|reliable|available|to\s+be\s+(?:used|trusted))|no\s+longer\s+(?:available|supported|safe|working|to\s+be\s+used))\b",
        C::Tool {
            at: ToolAt::Before,
            need: Need::Nothing,
        },
        Sentence,
        "claim that another tool must not be used",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:must|should|shall|will\s+now|needs?\s+to|has\s+to|is\s+required\s+to)\s+(?:always\s+|now\s+|only\s+|also\s+)?(?:send|forward|use|include|add|be\s+(?:called|invoked|used)|receive|route|cc|bcc|copy|set|contain|point|connect|upload|post|write|go|deliver)\b",
        C::Tool {
            at: ToolAt::Before,
            need: Need::Nothing,
        },
        Sentence,
        "instruction changing another tool's behaviour",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:instead\s+(?:call|use|invoke|run)\s+this|(?:call|use|invoke|run)\s+this\s+(?:tool|function)\s+instead)\b",
        C::RedirectToSelf,
        Sentence,
        "instruction redirecting calls to this tool",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:always|must|should\s+always)\s+(?:use|call|invoke|prefer|choose|pick|select)\s+this\s+(?:tool|function)\s+(?:instead\s+of|rather\s+than|over|before\s+(?:any|all)\s+other)\b",
        C::None,
        Sentence,
        "instruction redirecting calls to this tool",
    ),
    content(
        ToolShadowing,
        r"(?i)\binstead\s+of\s+(?:using\s+|calling\s+|invoking\s+)?(?:the\s+)?",
        C::Tool {
            at: ToolAt::After,
            need: Need::Absolute,
        },
        Sentence,
        "instruction replacing another tool",
    ),
    content(
        ToolShadowing,
        r"(?i)\b(?:change|set|replace|switch|redirect|override|modify|update)\s+(?:the\s+|all\s+)?(?:recipients?|receivers?|to[- ]address(?:es)?|destination\s+(?:address|number|email|account|phone)|bcc|cc)(?:\s+(?:field|address|number|email|list))?\s+(?:to|with|into)\s+",
        C::LiteralRecipient,
        Sentence,
        "instruction changing a message's recipient",
    ),
    // --- Exfiltration ---
    content(
        ExfiltrationUrl,
        r"(?i-u)\bhttps?://[!#-&(-_a-~]+",
        C::Url,
        Match,
        "URL carrying data",
    ),
    content(
        ExfiltrationUrl,
        r#"(?i)!\[[^\]\n]*\]\(\s*<?https?://[^\s)]+|<img\b[^>]*?\bsrc\s*=\s*["']?https?://[^\s"'>]+"#,
        C::Image,
        Match,
        "image link carrying data",
    ),
    content(
        ExfiltrationUrl,
        r"(?i-u)[A-Za-z0-9._%+-]@[A-Za-z0-9]|\bto[ \t]+(?:https?://|\+\d)",
        C::SendTo,
        Sentence,
        "instruction to send data to an address",
    ),
    content(
        ExfiltrationUrl,
        r"(?i)\b(?:in|into|to|as)\s+(?:the\s+|a\s+|an\s+|its\s+)?(?:url|query\s+string|query\s+param(?:eter)?s?|link|image\s+(?:url|link|src|source)|markdown\s+image|request\s+(?:url|path))\b",
        C::EmbedIn,
        Sentence,
        "instruction to put data into a URL",
    ),
    content(
        ExfiltrationUrl,
        r"(?i)\b(?:always|also|secretly|silently)\s+(?:add\s+|include\s+|send\s+)?(?:a\s+)?(?:bcc|cc|blind\s+copy|copy)\s*(?:to\s+|:\s*)?[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+",
        C::None,
        Sentence,
        "instruction to copy messages to an address",
    ),
    // --- Concealment ---
    content(
        Concealment,
        r"(?i)\b(?:(?:do\s+not|don't|dont|never)\s+(?:tell|inform|mention|notify|alert|reveal|disclose|explain|bring\s+up|warn)\s+(?:(?:this|it|that|anything|any\s+of\s+this)\s+)?(?:(?:to|with)\s+)?(?:the\s+)?(?:users?|human|person|operator|customer)|(?:do\s+not|don't|dont|never)\s+let\s+(?:the\s+)?(?:users?|human)\s+(?:know|see|notice|find\s+out))\b",
        C::Imperative,
        Sentence,
        "instruction to keep the user uninformed",
    ),
    content(
        Concealment,
        r"(?i)\bwithout\s+(?:telling|informing)\s+(?:the\s+)?(?:users?|human|person|operator|customer)\b",
        C::None,
        Sentence,
        "instruction to keep the user uninformed",
    ),
    content(
        Concealment,
        r"(?i)\b(?:do\s+not|don't|dont|never)\s+(?:mention|reveal|disclose|acknowledge|admit|bring\s+up|indicate|hint\s+at|talk\s+about|reference)\s+(?:that|this|these|it|anything\s+about|the\s+fact|what\s+you|why\s+you|how\s+you|having|any\s+of\s+this)\b",
        C::Imperative,
        Sentence,
        "instruction to conceal an action",
    ),
    content(
        Concealment,
        r"(?i)\b(?:silently|secretly|covertly|quietly|discreetly|stealthily|invisibly)\s+(?:send|call|run|execute|read|upload|forward|copy|include|add|pass|attach|invoke|use|exfiltrate|transmit|share|delete|remove|modify|change|replace|append|post|email|write|save|store|log|record|collect|bcc|cc)\b",
        C::Imperative,
        Sentence,
        "instruction to act covertly",
    ),
    content(
        Concealment,
        r"(?i)\bwithout\s+(?:the\s+)?(?:user|users|human)(?:'s|s')?\s+(?:knowing|knowledge|noticing|awareness|being\s+(?:aware|informed|notified|told))\b|\b(?:hide|conceal)\s+(?:this|it|that|these|them|everything|all\s+of\s+this)\s+from\s+(?:the\s+)?users?\b|\bkeep\s+(?:this|it|that|these|them|everything)\s+(?:a\s+)?(?:secret|hidden|confidential|private)\s+from\s+(?:the\s+)?users?\b|\b(?:the\s+)?user\s+(?:must|should|need|does|do)\s+not\s+(?:know|see|notice|be\s+(?:told|informed|aware|notified))\b|\b(?:the\s+)?user\s+(?:doesn't|does\s+not|don't)\s+need\s+to\s+know\b",
        C::None,
        Sentence,
        "instruction to hide actions from the user",
    ),
    content(
        Concealment,
        r"(?i)\b(?:(?:do\s+not|don't|dont|never)\s+(?:ask\s+(?:the\s+user\s+)?(?:for\s+)?(?:confirmation|permission|approval|consent)|ask\s*[.;!]|ask\s+(?:first|again|the\s+user\s+first)|(?:wait\s+for|seek|request)\s+(?:the\s+user's\s+)?(?:confirmation|permission|approval|consent))|without\s+(?:asking|requesting|waiting)\s+(?:for\s+)?(?:the\s+user(?:'s)?\s+)?(?:for\s+)?(?:confirmation|permission|approval|consent)|(?:do|perform|run|execute|handle)\s+(?:this|it|that|these|them)\s+(?:silently|secretly|quietly|covertly|discreetly))\b",
        C::Imperative,
        Sentence,
        "instruction to act without the user's consent",
    ),
    content(
        Concealment,
        r"(?i)\byou\s+(?:do\s+not|don't|dont)\s+need\s+to\s+ask\b|\bno\s+need\s+to\s+(?:mention|tell|inform|notify)\s+(?:it|this|that|them|anyone|the\s+(?:user|human|operator))\b|\bwithout\s+(?:pointing\s+(?:it|them|this|that)\s+out|mentioning\s+(?:it|them|this|that)|drawing\s+attention|calling\s+attention|flagging\s+(?:it|them|this))\b",
        C::None,
        Sentence,
        "instruction to keep the user uninformed",
    ),
    content(
        Concealment,
        r"(?i)\b(?:erwähne|sage|verrate)\s+(?:dies|das|es)\s+(?:(?:dem|den)\s+(?:Benutzer|Nutzer|Anwender)\s+)?nicht\b|\bno\s+(?:se\s+lo\s+|le\s+)?(?:digas|menciones|cuentes)\s+(?:nada\s+)?(?:al|a\s+los)\s+usuarios?\b|\bne\s+(?:le\s+|lui\s+)?(?:dis|dites|mentionne[zs]?)\s+(?:rien\s+)?(?:pas\s+)?(?:à|a)\s+l'utilisateur\b",
        C::None,
        Sentence,
        "instruction to keep the user uninformed",
    ),
    content(
        Concealment,
        r"(?i)\bmere\s+implementation\s+detail\b",
        C::None,
        Sentence,
        "justification for hiding actions from the user",
    ),
    // --- Sensitive reads ---
    content(
        SensitiveRead,
        sensitive!(),
        C::SensitivePath,
        Sentence,
        "instruction to read a credential file",
    ),
    content(
        SensitiveRead,
        r#"(?i)\b(?:pass|provide|include|send|insert|add|attach|supply|append|paste)\s+(?:its|the|their|this|that|those|these|all|your|it|them)\s+(?:(?:full|entire|complete|whole|raw|file(?:'s)?)\s+)*(?:content|contents|text|value|data|output)?\s*(?:as|in|into|via|through|inside|within)\s+(?:the\s+|a\s+)?[`'"]?[A-Za-z_]"#,
        C::PassContent,
        Sentence,
        "instruction to pass a file's content as an argument",
    ),
    content(
        SensitiveRead,
        r"(?i)\b(?:read|extract|collect|gather|dump|include|pass|send|upload|leak|exfiltrate|grab|steal|copy|retrieve|print|output|attach|append|forward)\s+(?:all\s+|any\s+|every\s+)?(?:of\s+)?(?:the\s+|your\s+|their\s+|its\s+)?(?:user(?:'s|s'|s)?\s+)?(?:(?:saved|stored|local)\s+)?(?:api[\s_-]?keys?|private[\s_-]keys?|ssh[\s_-]keys?|secret[\s_-]keys?|access[\s_-](?:keys?|tokens?)|auth(?:entication)?[\s_-]tokens?|bearer[\s_-]tokens?|session[\s_-](?:cookies|tokens?)|credentials|passwords|secrets|environment[\s_-]variables|env[\s_-]vars|seed[\s_-]phrases?|mnemonics?|recovery[\s_-]phrases?|wallet[\s_-]keys?)\b",
        C::CredentialTransfer,
        Sentence,
        "instruction to move credentials",
    ),
    content(
        SensitiveRead,
        r"(?i)\b(?:pass|include|send|put|add|provide|attach|append|copy|share|forward|paste|insert|embed)\s+(?:(?:the|your|all|any|its)\s+)?(?:(?:entire|whole|full|complete|hidden|original|current)\s+)?(?:system\s+prompts?|(?:system\s+)?instructions\s+you\s+(?:were|have\s+been)\s+given|conversation(?:\s+history)?(?:\s+so\s+far)?|chat\s+history|message\s+history|(?:previous|prior|earlier)\s+(?:messages|tool\s+results)|context\s+window)\b",
        C::Imperative,
        Sentence,
        "instruction to pass the conversation or system prompt on",
    ),
    // --- Invisible characters ---
    content(
        InvisibleUnicode,
        "[\u{200B}-\u{200D}\u{2060}-\u{2064}\u{FEFF}\u{180E}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{E0000}-\u{E007F}\u{FE00}-\u{FE0F}\u{E0100}-\u{E01EF}]",
        C::Invisible,
        Match,
        "invisible characters",
    ),
    // --- Terminal escapes ---
    content(
        HiddenBlock,
        "\u{1B}|\u{9B}",
        C::Ansi,
        Match,
        "terminal escape sequence",
    ),
    // --- Containers (hidden blocks); they run last ---
    container(
        r"(?i)<[ \t]*(?P<tag>important|secret|hidden|critical|urgent|mandatory|override|confidential|ai[_-]?instructions?|instructions?[_-]for[_-](?:the[_-])?(?:ai|model|assistant|llm|agent)|note[_-]to[_-](?:the[_-])?(?:ai|model|assistant|llm|agent)|(?:system|hidden|secret|admin|assistant|llm|model|agent)[_-]instructions?)[ \t]*>",
        C::HiddenTag,
        "hidden instruction block",
    ),
    container(r"<!--", C::HtmlComment, "HTML comment hiding instructions"),
    container(
        r"(?im)^[ \t]*\[(?://|comment|_|hidden|note)\]:[ \t]*(?:#|<>|<#>)",
        C::MarkdownComment,
        "markdown comment hiding instructions",
    ),
    container(
        r#"(?i-u)display[ \t]*:[ \t]*none|visibility[ \t]*:[ \t]*hidden|font-size[ \t]*:[ \t]*0(?:px|pt|em|rem|%)?[ \t]*[;"'}]|opacity[ \t]*:[ \t]*0(?:\.0+)?[ \t]*[;"'}]|color[ \t]*:[ \t]*(?:white|#fff(?:fff)?|transparent)\b|\baria-hidden[ \t]*=[ \t]*["']?true|\bhidden[ \t\n>=/]"#,
        C::HiddenHtml,
        "hidden HTML element with instructions",
    ),
];
