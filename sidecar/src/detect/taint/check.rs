//! The sink side: [`TaintState::check`] scans the call's strings, their concatenation, their
//! decoded runs and their joins across non-adjacent strings (see "Splitting" in [`super`]); in each
//! text the anchor at every position is probed, and candidate runs and whole values are verified
//! within a budget. The most specific hit wins (see "Which hit is returned" there).

use std::borrow::Cow;
use std::ops::ControlFlow;

use super::fingerprint::MIN_VALUE_LEN;
use super::records::{Fp, ValueRec};
use super::{Carrier, TaintHit, TaintState, encodings};

/// Follow at most this many stored k-grams with one hash.
const MAX_CHAIN: usize = 32;
/// Decode at most this many bytes per `check`.
const DECODE_BUDGET: usize = 4 << 20;
/// Verification (re-hashing runs and whole values at candidate alignments) may hash at most
/// `VERIFY_PER_BYTE` bytes per byte of the call's strings, plus `VERIFY_BASE`.
const VERIFY_PER_BYTE: usize = 64;
const VERIFY_BASE: usize = 1 << 16;
/// A short value split across strings counts only if each piece is at least this long (so a key
/// glued to a value, `user` + `42`, is not taken for a split `user42`).
const MIN_PIECE: usize = 3;

/// Hit ranks, most specific first (see "Which hit is returned" in [`super`]).
const RANK_EXACT: u8 = 0;
const RANK_ENCODED: u8 = 1;
/// The whole value, across strings.
const RANK_SPLIT: u8 = 2;
const RANK_PARTIAL: u8 = 3;
/// A run of the value (not all of it) across strings.
const RANK_SPLIT_RUN: u8 = 4;

impl TaintState {
    /// Checks a sink call: `strings` are all string values (and keys) of its arguments, in order.
    /// Returns the first hit found, if any.
    ///
    /// "First" means the most specific (see the module docs of [`super`]): `Exact`, then an encoded carrier,
    /// then the whole value `Split`, then `Partial`, then a run `Split`.
    pub fn check(&self, strings: &[&str]) -> Option<TaintHit> {
        if self.fps.is_empty() || strings.is_empty() {
            return None;
        }
        let total: usize = strings.iter().map(|s| s.len()).sum();
        let mut scan = Scan::new(self, total);

        // 1. Every string, and runs across adjacent strings: their concatenation.
        let mut bounds = Vec::new();
        let joined: Cow<'_, [u8]> = match strings {
            [only] => Cow::Borrowed(only.as_bytes()),
            _ => {
                let mut buf = Vec::with_capacity(total);
                for s in strings.iter().filter(|s| !s.is_empty()) {
                    if !buf.is_empty() {
                        bounds.push(buf.len());
                    }
                    buf.extend_from_slice(s.as_bytes());
                }
                Cow::Owned(buf)
            }
        };
        scan.text(&joined, &bounds, Kind::Raw);

        // 2. Encoded runs, per string.
        let min_out = if self.short_count > 0 {
            MIN_VALUE_LEN
        } else {
            self.params.min_match
        };
        let mut budget = DECODE_BUDGET;
        for s in strings {
            if scan.rank() <= RANK_ENCODED || budget == 0 {
                break;
            }
            let _ = encodings::for_each(s.as_bytes(), min_out, 2, &mut budget, &mut |d| {
                scan.text(
                    d.bytes,
                    &[],
                    Kind::Decoded {
                        carrier: d.carrier,
                        escaped: d.escaped,
                    },
                );
                if scan.rank() <= RANK_ENCODED {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
        }

        // 3. Splits across non-adjacent strings.
        if scan.rank() > RANK_SPLIT && strings.len() > 2 {
            self.scan_split(strings, &mut scan);
        }
        scan.best.map(|(_, hit)| hit)
    }

    // ---- splits ---------------------------------------------------------------------------------

    fn scan_split(&self, strings: &[&str], scan: &mut Scan<'_>) {
        let edge = self.params.min_match; // m - 1 bytes of a piece, plus one byte of context
        let mut buf = Vec::new();
        let mut bounds = Vec::new();
        // Every other string: values between keys.
        for parity in 0..2 {
            buf.clear();
            bounds.clear();
            for s in strings.iter().skip(parity).step_by(2) {
                let b = s.as_bytes();
                if b.is_empty() {
                    continue;
                }
                if b.len() <= 2 * edge {
                    if !buf.is_empty() {
                        bounds.push(buf.len());
                    }
                    buf.extend_from_slice(b);
                    continue;
                }
                if !buf.is_empty() {
                    bounds.push(buf.len());
                    buf.extend_from_slice(&b[..edge]);
                    scan.text(&buf, &bounds, Kind::Joined);
                }
                buf.clear();
                bounds.clear();
                buf.extend_from_slice(&b[b.len() - edge..]);
            }
            if !bounds.is_empty() {
                scan.text(&buf, &bounds, Kind::Joined);
            }
            if scan.rank() <= RANK_SPLIT {
                return;
            }
        }
        // Strings three apart.
        for pair in strings.windows(4) {
            let (a, b) = (pair[0].as_bytes(), pair[3].as_bytes());
            if a.is_empty() || b.is_empty() {
                continue;
            }
            buf.clear();
            buf.extend_from_slice(&a[a.len().saturating_sub(edge)..]);
            bounds.clear();
            bounds.push(buf.len());
            buf.extend_from_slice(&b[..b.len().min(edge)]);
            scan.text(&buf, &bounds, Kind::Joined);
            if scan.rank() <= RANK_SPLIT {
                return;
            }
        }
    }
}

/// What kind of text is scanned.
#[derive(Debug, Clone, Copy)]
enum Kind<'a> {
    /// The call's strings, concatenated: hits inside one string or across adjacent strings.
    Raw,
    /// Pieces of non-adjacent strings: only hits across a boundary count.
    Joined,
    /// A decoded text.
    Decoded {
        carrier: Carrier,
        escaped: Option<&'a [u32]>,
    },
}

/// One `check` in progress.
struct Scan<'s> {
    st: &'s TaintState,
    best: Option<(u8, TaintHit)>,
    /// Whole-value checks done in the current text: (value, start).
    wholes_tried: Vec<(u64, usize)>,
    /// Bytes verification may still hash.
    work_left: usize,
}

/// Whether a string boundary lies strictly inside `a..b`.
fn spans(bounds: &[usize], a: usize, b: usize) -> bool {
    let i = bounds.partition_point(|&x| x <= a);
    bounds.get(i).is_some_and(|&x| x < b)
}

/// Whether every piece of `a..b` cut by string boundaries is at least `MIN_PIECE` bytes long.
fn pieces_ok(bounds: &[usize], a: usize, b: usize) -> bool {
    let i = bounds.partition_point(|&x| x <= a);
    let mut from = a;
    for &x in bounds[i..].iter().take_while(|&&x| x < b) {
        if x - from < MIN_PIECE {
            return false;
        }
        from = x;
    }
    b - from >= MIN_PIECE
}

/// Whether position `x` of `t` is a word boundary (text edge, string boundary, or not between two
/// ASCII letters/digits).
fn word_edge(t: &[u8], bounds: &[usize], x: usize) -> bool {
    let (Some(before), Some(after)) = (x.checked_sub(1).and_then(|i| t.get(i)), t.get(x)) else {
        return true;
    };
    !before.is_ascii_alphanumeric()
        || !after.is_ascii_alphanumeric()
        || bounds.binary_search(&x).is_ok()
}

impl<'s> Scan<'s> {
    fn new(st: &'s TaintState, total: usize) -> Self {
        Self {
            st,
            best: None,
            wholes_tried: Vec::new(),
            work_left: total
                .saturating_mul(VERIFY_PER_BYTE)
                .saturating_add(VERIFY_BASE),
        }
    }

    /// Takes `bytes` of verification work from the budget; false when it is spent.
    fn spend(&mut self, bytes: usize) -> bool {
        match self.work_left.checked_sub(bytes) {
            Some(left) => {
                self.work_left = left;
                true
            }
            None => {
                self.work_left = 0;
                false
            }
        }
    }

    fn rank(&self) -> u8 {
        self.best.as_ref().map_or(u8::MAX, |(rank, _)| *rank)
    }

    fn offer(&mut self, rank: u8, carrier: Carrier, origin: u32) {
        if rank >= self.rank() {
            return;
        }
        if let Some(origin) = self.st.origin(origin) {
            self.best = Some((
                rank,
                TaintHit {
                    origin: origin.clone(),
                    carrier,
                },
            ));
        }
    }

    /// Scans one text: the anchor (first `anchor_len` bytes) at every position is probed in the
    /// filter; on a hit, the k-gram there is hashed and looked up, and so is the anchor among the
    /// short values.
    fn text(&mut self, t: &[u8], bounds: &[usize], kind: Kind<'_>) {
        let st = self.st;
        let hs = &st.hashes;
        let a = hs.anchor_len;
        let grams = st.fps.len() > st.short_count && t.len() >= st.params.min_match;
        let shorts = st.short_count > 0 && t.len() >= MIN_VALUE_LEN;
        if self.rank() == RANK_EXACT || self.work_left == 0 || !(grams || shorts) {
            return;
        }
        self.wholes_tried.clear();
        // Whole 8-byte words while they fit, then the tail, zero-padded (the anchor mask drops
        // the padding: anchors are at most 6 bytes).
        let mut q = 0;
        for w in t.windows(8) {
            let Ok(word) = <[u8; 8]>::try_from(w) else {
                break;
            };
            let anchor = hs.anchor_word(u64::from_le_bytes(word));
            if st.filter.contains(anchor) && self.anchor_hit(t, bounds, kind, q, anchor, grams) {
                return;
            }
            q += 1;
        }
        while q + a <= t.len() {
            let mut word = [0u8; 8];
            let tail = &t[q..];
            word[..tail.len().min(8)].copy_from_slice(&tail[..tail.len().min(8)]);
            let anchor = hs.anchor_word(u64::from_le_bytes(word));
            if st.filter.contains(anchor) && self.anchor_hit(t, bounds, kind, q, anchor, grams) {
                return;
            }
            q += 1;
        }
    }

    /// The anchor at `q` may be stored: look up the k-gram there (if `grams`) and the short
    /// values with that anchor. Returns whether the scan is done (an `Exact` hit, or the
    /// verification budget spent).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn anchor_hit(
        &mut self,
        t: &[u8],
        bounds: &[usize],
        kind: Kind<'_>,
        q: usize,
        anchor: u64,
        grams: bool,
    ) -> bool {
        let st = self.st;
        if grams && let Some(gram) = t.get(q..q + st.params.k) {
            self.grams_at(t, bounds, kind, q, st.hashes.hash(gram));
        }
        if st.short_count > 0 {
            self.shorts_at(t, bounds, kind, q, anchor);
        }
        self.rank() == RANK_EXACT || self.work_left == 0
    }

    /// The k-gram at `q` hashes to `h`: verify the stored fingerprints with that hash.
    fn grams_at(&mut self, t: &[u8], bounds: &[usize], kind: Kind<'_>, q: usize, h: u64) {
        let st = self.st;
        let m = st.params.min_match;
        let Some(&head) = st.grams.get(&h) else {
            return;
        };
        let mut seq = head;
        for _ in 0..MAX_CHAIN {
            let Some(fp) = st.fp(seq) else {
                return;
            };
            seq = fp.prev(seq);
            if fp.key != h || fp.short() {
                continue;
            }
            for (j, &tag) in fp.tags.iter().enumerate().take(st.params.w) {
                let Some(start) = q.checked_sub(j) else {
                    break;
                };
                if tag == 0 || start + m > t.len() {
                    continue;
                }
                if !self.spend(m) {
                    return;
                }
                if st.hashes.tag(&t[start..start + m]) != tag {
                    continue;
                }
                self.verified(t, bounds, kind, fp, q, start, start + m);
                if self.rank() == RANK_EXACT {
                    return;
                }
            }
        }
    }

    /// A verified run `t[start..end]` of the value of `fp`, whose k-gram is at `q`.
    #[allow(clippy::too_many_arguments)]
    fn verified(
        &mut self,
        t: &[u8],
        bounds: &[usize],
        kind: Kind<'_>,
        fp: &Fp,
        q: usize,
        start: usize,
        end: usize,
    ) {
        let Some(v) = self.st.value(fp.value).copied() else {
            return;
        };
        let (rank, carrier) = match kind {
            Kind::Raw | Kind::Joined => match self.whole_at(t, fp, &v, q) {
                Some((a, b)) if !spans(bounds, a, b) => match kind {
                    Kind::Raw => (RANK_EXACT, Carrier::Exact),
                    _ => return, // inside one string: the raw scan's business
                },
                Some(_) => (RANK_SPLIT, Carrier::Split),
                None if spans(bounds, start, end) => (RANK_SPLIT_RUN, Carrier::Split),
                None if matches!(kind, Kind::Raw) => (RANK_PARTIAL, Carrier::Partial),
                None => return,
            },
            Kind::Decoded { carrier, escaped } => {
                if escaped.is_some_and(|e| !encodings::has_escape(e, start, end)) {
                    return;
                }
                (RANK_ENCODED, carrier)
            }
        };
        self.offer(rank, carrier, v.origin);
    }

    /// Whether the whole value of `fp` lies in `t` at the alignment given by its k-gram at `q`.
    fn whole_at(&mut self, t: &[u8], fp: &Fp, v: &ValueRec, q: usize) -> Option<(usize, usize)> {
        let start = q.checked_sub(fp.pos())?;
        let end = start.checked_add(v.len)?;
        if end > t.len() || self.wholes_tried.contains(&(fp.value, start)) {
            return None;
        }
        if self.wholes_tried.len() < 64 {
            self.wholes_tried.push((fp.value, start));
        }
        if !self.spend(v.len) {
            return None;
        }
        (self.st.hashes.whole(&t[start..end]) == v.whole).then_some((start, end))
    }

    /// The anchor at `q` is `anchor`: check the short values starting that way.
    fn shorts_at(&mut self, t: &[u8], bounds: &[usize], kind: Kind<'_>, q: usize, anchor: u64) {
        let st = self.st;
        let Some(&head) = st.shorts.get(&anchor) else {
            return;
        };
        let mut seq = head;
        for _ in 0..MAX_CHAIN {
            let Some(fp) = st.fp(seq) else {
                return;
            };
            seq = fp.prev(seq);
            let Some(v) = st.value(fp.value).copied() else {
                continue;
            };
            let end = q + v.len;
            if fp.anchor != anchor || !fp.short() || end > t.len() {
                continue;
            }
            if !self.spend(v.len) {
                return;
            }
            if st.hashes.whole(&t[q..end]) != v.whole {
                continue;
            }
            let left_ok = !t[q].is_ascii_alphanumeric() || word_edge(t, bounds, q);
            let right_ok = !t[end - 1].is_ascii_alphanumeric() || word_edge(t, bounds, end);
            if !(left_ok && right_ok) {
                continue;
            }
            let crosses = spans(bounds, q, end);
            if crosses && !pieces_ok(bounds, q, end) {
                continue;
            }
            let (rank, carrier) = match kind {
                Kind::Raw if crosses => (RANK_SPLIT, Carrier::Split),
                Kind::Raw => (RANK_EXACT, Carrier::Exact),
                Kind::Joined if crosses => (RANK_SPLIT, Carrier::Split),
                Kind::Joined => continue,
                Kind::Decoded { carrier, escaped } => {
                    if escaped.is_some_and(|e| !encodings::has_escape(e, q, end)) {
                        continue;
                    }
                    (RANK_ENCODED, carrier)
                }
            };
            self.offer(rank, carrier, v.origin);
            if self.rank() == RANK_EXACT {
                return;
            }
        }
    }
}
