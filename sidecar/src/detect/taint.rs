//! Secret taint tracking at the value level: values that flow out of sources are fingerprinted
//! per session, and a later sink call whose arguments carry such a value — verbatim, encoded, split
//! across fields, or only in part — is reported with the call it came from.
//!
//! Pure and synchronous: [`TaintState::add`] runs on results of source calls (and
//! [`TaintState::add_secret`] on secrets the credential scanner found in any result),
//! [`TaintState::check`] on the arguments of sink calls. The state stores keyed hashes only, never
//! the values.
//!
//! # Fingerprints and the guarantee
//!
//! Let `m` be `min_match` (policy `taint.minMatch`, clamped to 8..=256). Lengths are in bytes of
//! UTF-8; a run of `m` characters is at least `m` bytes, so the guarantee below holds for characters
//! too. A value of at least `m` bytes is cut into k-grams (substrings of `k` bytes), hashed with a
//! rolling polynomial hash under a per-session random key, and *winnowed* (Schleimer, Wilkerson,
//! Aiken 2003): in a window of `w` consecutive k-grams the one with the smallest hash (the
//! rightmost, on ties) is selected. With
//!
//! * `w = min(m / 2, 8)` and `k = m - w + 1`, so that `w + k - 1 = m`,
//!
//! every run of `m` bytes spans exactly `w` k-grams, one full window, and therefore contains a
//! selected k-gram: the winnowing guarantee at length `m`. (With the textbook choice `k ≈ m/2` the
//! guarantee would hold as well, but verifying a hit down to exactly `m` bytes would need `m/2`
//! tags per k-gram; `w ≤ 8` keeps that at 8.)
//!
//! A shared k-gram alone (9 bytes for `m = 16`) could be a coincidence (`function`, `https://a`),
//! so a selected k-gram at offset `p` also keeps `w` 32-bit *run tags*: `tags[j]` hashes the `m`-byte
//! run starting at `p - j`. Those are exactly the `m`-runs containing the k-gram, so every `m`-run
//! of the value is tagged by the k-gram its window selected.
//!
//! [`TaintState::check`] looks at **every** position of the sink text, not only winnowed ones: the
//! first `min(k, 6)` bytes there (the *anchor*) are probed in a Bloom filter of stored anchors;
//! on a filter hit the k-gram is hashed and looked up, and for each stored k-gram it meets at offset
//! `q` the aligned runs `[q - j, q - j + m)` are re-hashed and compared with the tags. A hit is
//! therefore a verified common run of `m` bytes (up to a 2^-32 tag collision, after a genuine
//! 64-bit k-gram match). Exact guarantee:
//!
//! > **Every informative run (see below) of `m` bytes of a stored value, within the fingerprinted
//! > part of the value (see Bounds), is reported wherever it occurs in a sink string, in a decoded
//! > form of one (Encodings), or across strings (Splitting). A common run shorter than `m` bytes is
//! > never reported as a partial leak.**
//!
//! So truncation, and edits or additions around a secret, do not hide it as long as `m` consecutive
//! bytes of it survive. Matching is byte-exact: case-sensitive, nothing normalised.
//!
//! Values of 6 to `m - 1` bytes are tainted *exactly*: only the whole value counts, found as a
//! whole word (if the value starts or ends with a letter or digit, the neighbouring byte in the sink
//! must not be one; a string boundary counts as a word boundary). Values under 6 bytes are ignored.
//! A value of `m` bytes or more whose verified run extends to the whole value (its hash is checked
//! at the run's alignment) is reported as [`Carrier::Exact`] too.
//!
//! # Encodings
//!
//! Encoded forms are found by decoding the sink, never by enumerating encodings of stored values:
//! base64 (standard and url-safe alphabet, with or without padding, decoded at all four character
//! phases, so a secret at any byte alignment inside a larger blob, or a blob cut anywhere, is
//! recovered; line-wrapped base64 is joined), hex (either case, both nibble phases),
//! percent-encoding (`%XX`; `+` is kept) and JSON string escapes (`\n`, `\"`, `\uXXXX`, surrogate
//! pairs). Decoded text is decoded once more, so two layers are seen (base64 inside a JSON string,
//! JSON escaped twice), and is scanned like raw text. A percent- or JSON-decoded match must cover
//! an escape (otherwise it is plain text, for the raw scan). Decoders run per string, only where
//! the input looks encoded (a `%XX`, a JSON escape, an alphabet run long enough to decode to a
//! tainted length that mixes character classes), and decode at most 4 MiB per call.
//!
//! # Splitting
//!
//! `check` receives the call's strings (values and object keys, in order). Besides every string,
//! it scans their concatenation (runs across adjacent strings, e.g. array items), the
//! concatenations of every other string (keys between values do not break a split: for
//! `{"title": A, "body": B}` it sees `A` + `B`, and any number of pieces so placed), and pairs of
//! strings three apart (when a field without a string value sits between). Long strings take part
//! in those joins with their `m` edge bytes. A verified run crossing a string boundary is reported
//! as [`Carrier::Split`]. A short value (under `m` bytes) counts as split only if each piece is at
//! least 3 bytes, so a key glued to a value (`user` + `42`) is not a split `user42`.
//!
//! # Which hit is returned
//!
//! `check` returns the most specific hit: the whole value verbatim in one string
//! ([`Carrier::Exact`]), else an encoded one, else the whole value across strings
//! ([`Carrier::Split`]), else a run inside one string ([`Carrier::Partial`]), else a run across
//! strings (`Split`). It stops at the first `Exact` hit.
//!
//! # False positives: the informative-run rule
//!
//! Sources such as whole files share boilerplate with benign sink calls: JSON structure
//! (`{"type":"text","text":"`, `"isError":false}`), URLs (`https://api.github.com/repos/...`),
//! paths, English prose. A run is only tainted if it is *informative*: it contains an **opaque
//! word** — a maximal run of ASCII letters and digits, clipped to the run, at least 4 bytes long,
//! that has a digit and a letter, or a lower-case letter and two adjacent upper-case letters, or is
//! at least 12 digits. Tokens, keys, hex, base64, passwords like `hunter2`, UUIDs and card numbers
//! have one; prose, Capitalised and camelCase words (`GitHub`, `isError`), hosts and paths do not.
//! The rule is applied when a value is added, to the value's own bytes (which a verified sink run
//! equals): tags of uninformative runs are not stored, k-grams are only selected from windows of
//! informative runs, and a value with no informative run stores nothing, so boilerplate costs
//! neither false positives nor memory. Short values must be informative as a whole.
//!
//! The price: leaks made only of uninformative text (a passphrase of lower-case words, a paragraph
//! of prose) are not reported. [`TaintState::add_secret`] is the way to taint values known to be
//! secrets (those the credential scanner found): the rule does not apply to them.
//!
//! # Bounds
//!
//! * **Memory.** At most `max_fingerprints` entries (policy `taint.maxFingerprints`) per session,
//!   64 bytes each (k-gram hash, anchor hash, value index, chain link, offset, 8 run tags) plus a
//!   hash-map slot; a short value takes one entry. When full, the oldest entries are evicted first
//!   (FIFO) and counted in [`TaintState::evictions`]; a value's record (hash and length) and its
//!   origin go with its last entry. Origins are interned, one copy per distinct call. The Bloom
//!   filter has 32 bits per entry (16 KiB for 4096) and is rebuilt when evicted entries' stale
//!   bits outnumber the live ones. Roughly 0.22 entries per byte of informative text are kept.
//! * **Per value.** One value stores at most `max_fingerprints / 2` entries (so a huge source cannot
//!   by itself flush everything tainted before it), and only its first 1 MiB is fingerprinted; past
//!   either limit the rest is not fingerprinted — partial leaks from it are not seen, though the
//!   whole value is still recognised verbatim — and [`TaintState::truncated`] counts the value.
//!   Adding is one pass: uninformative stretches cost only the opaque-word check, informative ones
//!   two rolling hashes and an 8-way minimum per byte. Re-adding a stored value (not about to be
//!   evicted) is a no-op.
//! * **Time.** `check` is linear in the sink text (plus decoded text): one anchor probe per
//!   position. Stored k-grams sharing one hash are followed at most 32 deep, and verification
//!   hashes at most 64 bytes per sink byte (plus 64 KiB); past that the best hit so far stands.
//!
//! # Files
//!
//! * `taint.rs` (this file): the public types, and [`TaintState`]'s storage: adding a value's
//!   fingerprints, lookups, FIFO eviction, interned origins.
//! * `taint/records.rs`: the stored records (one per fingerprint, one per value) and the hasher
//!   of the hash-keyed maps.
//! * `taint/filter.rs`: the Bloom filter over the anchors of stored fingerprints.
//! * `taint/fingerprint.rs`: hash primitives and source fingerprinting (winnowing with run tags).
//! * `taint/informative.rs`: the opaque-word rule (see "False positives" above).
//! * `taint/check.rs`: the sink side: [`TaintState::check`], the texts it scans (strings, their
//!   concatenations, decoded runs, splits), anchor probing, verification and its budget, and the
//!   choice of hit.
//! * `taint/encodings.rs`: the decoders of encoded runs in sink strings.
//! * `taint/tests.rs`: the tests.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use filter::Filter;
use fingerprint::{Hashes, MAX_WINDOW, MIN_VALUE_LEN, Params, SourceFp, fingerprint};
use informative::is_informative;
use records::{Fp, KeyMap, NONE, SHORT_FLAG, ValueRec};

mod check;
mod encodings;
mod filter;
mod fingerprint;
mod informative;
mod records;
#[cfg(test)]
mod tests;

/// Where a tainted value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaintOrigin {
    /// The JSON-RPC id of the earlier call whose result carried the value (raw id text, e.g. `7` or `"a"`).
    pub call_id: Arc<str>,
    /// That call's tool name.
    pub tool: Arc<str>,
}

/// How a sink argument carried the tainted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The whole value, verbatim, inside one string.
    Exact,
    /// Base64 with the standard alphabet (or no character telling the alphabets apart).
    Base64,
    /// Base64 with the url-safe alphabet (`-`, `_`).
    Base64Url,
    /// Hex, either case.
    Hex,
    /// Percent-encoding (`%XX`).
    PercentEncoded,
    /// JSON string escapes (`\n`, `\"`, `\u00XX`, …).
    JsonEscaped,
    /// Spread over several strings of the call.
    Split,
    /// A run of at least `min_match` bytes of the value, verbatim, inside one string.
    Partial,
}

/// A sink call carries a tainted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintHit {
    pub origin: TaintOrigin,
    pub carrier: Carrier,
}

/// Per-session taint memory. Stores fingerprints (hashes), never the secrets themselves.
pub struct TaintState {
    params: Params,
    hashes: Hashes,
    max_fingerprints: usize,
    fps: VecDeque<Fp>,
    /// Sequence number of `fps[0]`.
    fp_base: u64,
    values: VecDeque<ValueRec>,
    /// Sequence number of `values[0]`.
    value_base: u64,
    /// k-gram hash → newest fingerprint sequence number with it.
    grams: KeyMap,
    /// Short values: anchor hash → newest fingerprint.
    shorts: KeyMap,
    /// Whole-value hash → newest value sequence number.
    wholes: KeyMap,
    short_count: usize,
    filter: Filter,
    /// Filter bits of evicted fingerprints (the filter is rebuilt when they outnumber the live).
    filter_stale: usize,
    origins: Vec<Option<(TaintOrigin, u32)>>,
    origin_ids: HashMap<TaintOrigin, u32>,
    free_origins: Vec<u32>,
    evictions: u64,
    truncated: u64,
}

impl fmt::Debug for TaintState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaintState")
            .field("min_match", &self.params.min_match)
            .field("max_fingerprints", &self.max_fingerprints)
            .field("fingerprints", &self.fps.len())
            .field("values", &self.values.len())
            .field("evictions", &self.evictions)
            .field("truncated", &self.truncated)
            .finish_non_exhaustive()
    }
}

impl TaintState {
    /// `min_match`: shortest run of characters of a tainted value that counts as a (partial) leak (policy
    /// `taint.minMatch`, 8..=256, default 16). `max_fingerprints`: bound on stored fingerprints per session
    /// (policy `taint.maxFingerprints`, default 4096); the oldest are evicted first.
    ///
    /// Out-of-range arguments are clamped (`min_match` to 8..=256, `max_fingerprints` to at least 1).
    pub fn new(min_match: usize, max_fingerprints: usize) -> Self {
        Self::with_seed(
            min_match,
            max_fingerprints,
            RandomState::new().hash_one(0x7a17_u64),
        )
    }

    /// As [`TaintState::new`], with a fixed hash key (reproducible fingerprints).
    fn with_seed(min_match: usize, max_fingerprints: usize, seed: u64) -> Self {
        let params = Params::new(min_match);
        Self {
            params,
            hashes: Hashes::new(seed, params),
            max_fingerprints: max_fingerprints.max(1),
            fps: VecDeque::new(),
            fp_base: 0,
            values: VecDeque::new(),
            value_base: 0,
            grams: KeyMap::default(),
            shorts: KeyMap::default(),
            wholes: KeyMap::default(),
            short_count: 0,
            filter: Filter::default(),
            filter_stale: 0,
            origins: Vec::new(),
            origin_ids: HashMap::new(),
            free_origins: Vec::new(),
            evictions: 0,
            truncated: 0,
        }
    }

    /// Taints a value from a source (a whole tool result text, or a secret value the credential scanner found).
    /// Values shorter than `min_match` are tainted exactly (whole-value match only).
    ///
    /// Only informative runs are tainted (see the module docs); values under 6 bytes are ignored.
    pub fn add(&mut self, value: &str, origin: TaintOrigin) {
        self.add_value(value.as_bytes(), origin, false);
    }

    /// Like [`TaintState::add`], for a value known to be a secret (e.g. found by the credential
    /// scanner): the informative-run rule does not apply, so every run of it is tainted.
    pub fn add_secret(&mut self, value: &str, origin: TaintOrigin) {
        self.add_value(value.as_bytes(), origin, true);
    }

    /// Fingerprints evicted since the session started (the proxy exports this as a metric; eviction is never silent).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Values that were fingerprinted only in part (longer than 1 MiB, or more fingerprints than
    /// half of `max_fingerprints`).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Fingerprints currently stored.
    pub fn len(&self) -> usize {
        self.fps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fps.is_empty()
    }

    /// The effective `min_match` (after clamping).
    pub fn min_match(&self) -> usize {
        self.params.min_match
    }

    // ---- adding ---------------------------------------------------------------------------------

    fn add_value(&mut self, bytes: &[u8], origin: TaintOrigin, trusted: bool) {
        if bytes.len() < MIN_VALUE_LEN {
            return;
        }
        let whole = self.hashes.whole(bytes);
        if let Some(&vseq) = self.wholes.get(&whole)
            && let Some(v) = self.value(vseq)
            && v.len == bytes.len()
            && (v.trusted || !trusted)
            && v.first_fp + (self.max_fingerprints as u64) / 2 >= self.next_fp_seq()
        {
            return; // already tainted, and not about to be evicted
        }
        let short = bytes.len() < self.params.min_match;
        let mut new = Vec::new();
        if short {
            if !trusted && !is_informative(bytes) {
                return;
            }
            new.push(SourceFp {
                key: 0,
                anchor: self.hashes.anchor(bytes),
                pos: 0,
                tags: [0; MAX_WINDOW],
            });
        } else {
            let budget = (self.max_fingerprints / 2).max(1);
            if fingerprint(bytes, self.params, &self.hashes, trusted, budget, &mut new) {
                self.truncated += 1;
            }
            if new.is_empty() {
                return;
            }
        }
        while self.fps.len() + new.len() > self.max_fingerprints && !self.fps.is_empty() {
            self.evict_one();
        }
        let origin = self.intern(origin);
        let vseq = self.value_base + self.values.len() as u64;
        let first_fp = self.next_fp_seq();
        for s in new {
            let map_key = if short { s.anchor } else { s.key };
            let map = if short { &self.shorts } else { &self.grams };
            // Repeated content within one value (identical k-gram and surroundings): store once.
            if let Some(&head) = map.get(&map_key)
                && let Some(fp) = self.fp(head)
                && fp.value == vseq
                && fp.tags == s.tags
            {
                continue;
            }
            let seq = self.next_fp_seq();
            let map = if short {
                &mut self.shorts
            } else {
                &mut self.grams
            };
            let prev_delta = map
                .insert(map_key, seq)
                .and_then(|prev| u32::try_from(seq - prev).ok())
                .unwrap_or(0);
            self.filter.insert(s.anchor, self.max_fingerprints);
            self.fps.push_back(Fp {
                key: s.key,
                anchor: s.anchor,
                value: vseq,
                prev_delta,
                pos: if short {
                    SHORT_FLAG
                } else {
                    s.pos & !SHORT_FLAG
                },
                tags: s.tags,
            });
            if short {
                self.short_count += 1;
            }
        }
        self.values.push_back(ValueRec {
            whole,
            len: bytes.len(),
            origin,
            first_fp,
            end_fp: self.next_fp_seq(),
            trusted,
        });
        self.wholes.insert(whole, vseq);
        if self.filter_stale > self.fps.len() + 64 {
            self.rebuild_filter();
        }
    }

    fn next_fp_seq(&self) -> u64 {
        self.fp_base + self.fps.len() as u64
    }

    fn fp(&self, seq: u64) -> Option<&Fp> {
        if seq == NONE || seq < self.fp_base {
            return None;
        }
        self.fps.get(usize::try_from(seq - self.fp_base).ok()?)
    }

    fn value(&self, seq: u64) -> Option<&ValueRec> {
        if seq < self.value_base {
            return None;
        }
        self.values
            .get(usize::try_from(seq - self.value_base).ok()?)
    }

    fn origin(&self, index: u32) -> Option<&TaintOrigin> {
        self.origins
            .get(index as usize)?
            .as_ref()
            .map(|(origin, _)| origin)
    }

    fn evict_one(&mut self) {
        let Some(fp) = self.fps.pop_front() else {
            return;
        };
        let seq = self.fp_base;
        self.fp_base += 1;
        self.evictions += 1;
        self.filter_stale += 1;
        let map = if fp.short() {
            self.short_count -= 1;
            &mut self.shorts
        } else {
            &mut self.grams
        };
        if map.get(&fp.map_key()) == Some(&seq) {
            map.remove(&fp.map_key());
        }
        while let Some(v) = self.values.front().copied()
            && v.end_fp <= self.fp_base
        {
            self.values.pop_front();
            if self.wholes.get(&v.whole) == Some(&self.value_base) {
                self.wholes.remove(&v.whole);
            }
            self.value_base += 1;
            self.release(v.origin);
        }
    }

    fn rebuild_filter(&mut self) {
        self.filter.bits.iter_mut().for_each(|w| *w = 0);
        self.filter_stale = 0;
        for fp in &self.fps {
            self.filter.insert(fp.anchor, self.max_fingerprints);
        }
    }

    fn intern(&mut self, origin: TaintOrigin) -> u32 {
        if let Some(&index) = self.origin_ids.get(&origin) {
            if let Some(Some((_, refs))) = self.origins.get_mut(index as usize) {
                *refs += 1;
            }
            return index;
        }
        let index = match self.free_origins.pop() {
            Some(index) => index,
            None => {
                self.origins.push(None);
                u32::try_from(self.origins.len() - 1).unwrap_or(u32::MAX)
            }
        };
        if let Some(slot) = self.origins.get_mut(index as usize) {
            *slot = Some((origin.clone(), 1));
        }
        self.origin_ids.insert(origin, index);
        index
    }

    fn release(&mut self, index: u32) {
        let Some(slot) = self.origins.get_mut(index as usize) else {
            return;
        };
        if let Some((origin, refs)) = slot {
            *refs -= 1;
            if *refs == 0 {
                self.origin_ids.remove(origin);
                *slot = None;
                self.free_origins.push(index);
            }
        }
    }

    /// Number of distinct origins currently referenced.
    #[cfg(test)]
    fn origin_count(&self) -> usize {
        self.origin_ids.len()
    }
}
