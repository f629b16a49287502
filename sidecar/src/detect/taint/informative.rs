//! The "opaque word" rule: which runs of a source value are informative enough to taint (see
//! "False positives: the informative-run rule" in [`super`]).

/// An opaque word is at least this long ...
const MIN_WORD: usize = 4;
/// ... or, when it is all digits, at least this long.
const MIN_DIGITS: usize = 12;

/// Streaming evaluation of the "opaque word" rule.
///
/// A *word* is a maximal run of ASCII letters and digits. A word is *opaque* when it is at least
/// four bytes long and mixes character classes: it has a digit and a letter (`hunter2`, hex,
/// `x509`), or a lower-case letter and two adjacent upper-case letters (base64 such as
/// `KxMyXCIm`; camelCase `isError` and names like `GitHub` do not qualify), or it is at least
/// twelve digits. A text is *informative* when one of its words, clipped to the text, is opaque.
///
/// The tracker sees the text byte by byte and maintains [`Opaque::latest_start`]: the largest `x`
/// such that some run `[x, e)` with `e` ≤ the bytes seen so far lies inside one word and is opaque.
/// Because opacity only grows when a run is extended within its word, the window `[a, b)` is
/// informative exactly when, after feeding the bytes up to `b`, `latest_start() >= a`.
#[derive(Debug)]
pub(super) struct Opaque {
    /// Start of the current word, or `NO` between words. The other positions are `NO` when the
    /// current word has no such character yet.
    word_start: usize,
    last_digit: usize,
    last_letter: usize,
    last_lower: usize,
    /// Start of the latest pair of adjacent upper-case letters.
    last_upper_pair: usize,
    /// Start of the trailing run of digits.
    digit_run: usize,
    prev_upper: bool,
    latest: Option<usize>,
}

const NO: usize = usize::MAX;

impl Default for Opaque {
    fn default() -> Self {
        Self {
            word_start: NO,
            last_digit: NO,
            last_letter: NO,
            last_lower: NO,
            last_upper_pair: NO,
            digit_run: NO,
            prev_upper: false,
            latest: None,
        }
    }
}

impl Opaque {
    /// Feeds byte `c` at position `i` (positions must be fed in order, from 0).
    #[inline]
    pub fn push(&mut self, i: usize, c: u8) {
        if !c.is_ascii_alphanumeric() {
            self.word_start = NO;
            return;
        }
        if self.word_start == NO {
            self.word_start = i;
            self.last_digit = NO;
            self.last_letter = NO;
            self.last_lower = NO;
            self.last_upper_pair = NO;
            self.digit_run = NO;
            self.prev_upper = false;
        }
        if c.is_ascii_lowercase() {
            self.last_letter = i;
            self.last_lower = i;
            self.digit_run = NO;
            self.prev_upper = false;
            if self.last_digit == NO && self.last_upper_pair == NO {
                return; // nothing in this word can be opaque yet
            }
        } else if c.is_ascii_uppercase() {
            self.last_letter = i;
            self.digit_run = NO;
            if self.prev_upper {
                self.last_upper_pair = i - 1;
            }
            self.prev_upper = true;
        } else {
            self.last_digit = i;
            if self.digit_run == NO {
                self.digit_run = i;
            }
            self.prev_upper = false;
        }
        let end = i + 1;
        if end < self.word_start + MIN_WORD {
            return;
        }
        let limit = end - MIN_WORD;
        let mut best = None;
        if self.last_digit != NO && self.last_letter != NO {
            best = best.max(Some(self.last_digit.min(self.last_letter).min(limit)));
        }
        if self.last_upper_pair != NO && self.last_lower != NO {
            best = best.max(Some(self.last_upper_pair.min(self.last_lower).min(limit)));
        }
        if self.digit_run != NO && end - self.digit_run >= MIN_DIGITS {
            best = best.max(Some(end - MIN_DIGITS));
        }
        self.latest = self.latest.max(best);
    }

    pub fn latest_start(&self) -> Option<usize> {
        self.latest
    }
}

/// Whether `bytes` contains an opaque word (see [`Opaque`]).
pub(super) fn is_informative(bytes: &[u8]) -> bool {
    let mut o = Opaque::default();
    for (i, &c) in bytes.iter().enumerate() {
        o.push(i, c);
        if o.latest.is_some() {
            return true;
        }
    }
    false
}
