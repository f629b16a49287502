//! Context checks: each decides whether one trigger match is a finding, by looking at a bounded
//! window around it (the sentence, the rest of the line, the URL), and says what to report. This
//! file dispatches a match to its check; the checks are in the files of their kind (see the
//! module docs of the parent).

use std::ops::Range;

use regex::{Captures, Regex};

use super::catalogue::{Check, Spec};
use super::pipeline::{Sink, ascii_boundaries};
use super::{
    Hit, ScanContext, ansi, credentials, exfiltration, hidden, instructions, invisible, shadowing,
};

/// Compiles a helper pattern (with ASCII word boundaries).
pub(super) fn re(pattern: &str) -> Regex {
    Regex::new(&ascii_boundaries(pattern)).expect("every injection helper pattern compiles")
}

/// A finding that is the match itself.
pub(super) fn plain(span: Range<usize>) -> Option<Hit> {
    Some(Hit {
        resume: span.end,
        span,
        detail: None,
    })
}

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
    match spec.check {
        Check::None => plain(m),
        Check::Imperative => instructions::imperative_match(text, m),
        Check::Override => instructions::override_phrase(text, m),
        Check::Vocative => instructions::vocative(text, m),
        Check::EveryOther => instructions::every_other(text, m),
        Check::DirectiveRestOfLine => instructions::directive_rest_of_line(text, m),
        Check::FakeTurn => instructions::fake_turn(text, m),
        Check::Tool { at, need } => shadowing::tool_reference(text, m, ctx, at, need),
        Check::Before(before) => instructions::before_tail(text, m, before),
        Check::RedirectToSelf => shadowing::redirect_to_self(text, m),
        Check::LiteralRecipient => shadowing::literal_recipient(text, m),
        Check::Url => exfiltration::url(text, m),
        Check::Image => exfiltration::image(text, m),
        Check::SendTo => exfiltration::send_to(text, m),
        Check::EmbedIn => exfiltration::embed_in(text, m),
        Check::SensitivePath => credentials::sensitive_path(text, m),
        Check::PassContent => credentials::pass_content(text, m),
        Check::CredentialTransfer => credentials::credential_transfer(text, m),
        Check::Invisible => invisible::invisible(text, m.start),
        Check::HiddenTag => hidden::hidden_tag(text, caps),
        Check::HtmlComment => hidden::html_comment(text, m, sink, skip),
        Check::MarkdownComment => hidden::markdown_comment(text, m, sink, skip),
        Check::HiddenHtml => hidden::hidden_html(text, m, sink, skip),
        Check::Ansi => ansi::ansi(text, m.start),
    }
}

/// The largest character boundary ≤ `pos` (clamped to the text).
pub(super) fn floor(text: &str, pos: usize) -> usize {
    super::text::floor_char(text, pos)
}
