//! Hash primitives and source fingerprinting (winnowing with run tags).
//!
//! See the module documentation of [`super`] for the design; this file holds the arithmetic.

use std::collections::VecDeque;

use super::informative::Opaque;

/// Largest winnowing window; also the number of run tags stored per fingerprint.
pub(super) const MAX_WINDOW: usize = 8;
/// Shortest value that is tainted at all (shorter ones cannot be attributed reliably).
pub(super) const MIN_VALUE_LEN: usize = 6;
/// Only the first this many bytes of a value are fingerprinted (the whole-value hash covers all).
pub(super) const MAX_SCAN_BYTES: usize = 1 << 20;

/// Derived matching parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Params {
    /// `m`: the shortest run that counts as a partial leak.
    pub min_match: usize,
    /// `k`: length of the hashed k-grams (`m - w + 1`).
    pub k: usize,
    /// `w`: winnowing window, in k-grams (`min(m / 2, 8)`).
    pub w: usize,
}

impl Params {
    pub fn new(min_match: usize) -> Self {
        let m = min_match.clamp(8, 256);
        let w = (m / 2).min(MAX_WINDOW);
        Self {
            min_match: m,
            k: m - w + 1,
            w,
        }
    }
}

/// Keyed hash functions of one session (the key is a random odd base, so fingerprints cannot be
/// precomputed for a guessed secret without the session's key).
#[derive(Debug, Clone, Copy)]
pub(super) struct Hashes {
    base: u64,
    /// `base^k`, `base^m`: for rolling windows of those lengths.
    pub pow_k: u64,
    pub pow_m: u64,
    whole_mul: u64,
    whole_seed: u64,
    /// Anchors: the first `anchor_len` (`min(k, MIN_VALUE_LEN)`) bytes of a k-gram or short value.
    pub anchor_len: usize,
    anchor_mask: u64,
    anchor_seed: u64,
}

impl Hashes {
    pub fn new(seed: u64, params: Params) -> Self {
        let base = fmix64(seed) | 1;
        let pow = |e: usize| (0..e).fold(1u64, |acc, _| acc.wrapping_mul(base));
        Self {
            base,
            pow_k: pow(params.k),
            pow_m: pow(params.min_match),
            whole_mul: fmix64(seed ^ 0x2545_f491_4f6c_dd1d) | 1,
            whole_seed: fmix64(seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15),
            anchor_len: params.k.min(MIN_VALUE_LEN),
            anchor_mask: u64::MAX >> (64 - 8 * params.k.min(MIN_VALUE_LEN)),
            anchor_seed: fmix64(seed ^ 0x6a09_e667_f3bc_c909),
        }
    }

    /// Anchor hash of the little-endian word holding (at least) the anchor's bytes. A bijection
    /// of the (at most 48) anchor bits, well mixed in the high bits.
    #[inline]
    pub fn anchor_word(&self, word: u64) -> u64 {
        let h = ((word & self.anchor_mask) ^ self.anchor_seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    /// Anchor hash of the first `anchor_len` bytes of `bytes` (which must be that long).
    pub fn anchor(&self, bytes: &[u8]) -> u64 {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.anchor_word(u64::from_le_bytes(word))
    }

    /// Appends one byte to a polynomial hash (`h * base + byte + 1`, wrapping).
    #[inline]
    pub fn push(&self, h: u64, c: u8) -> u64 {
        h.wrapping_mul(self.base).wrapping_add(u64::from(c) + 1)
    }

    /// Slides a window of length `L` one byte: appends `c_in`, drops `c_out`; `pow = base^L`.
    #[inline]
    pub fn roll(&self, h: u64, c_in: u8, c_out: u8, pow: u64) -> u64 {
        self.push(h, c_in)
            .wrapping_sub((u64::from(c_out) + 1).wrapping_mul(pow))
    }

    /// Polynomial hash of a whole byte string (equal to the rolling hash of that window).
    pub fn hash(&self, bytes: &[u8]) -> u64 {
        bytes.iter().fold(0, |h, &c| self.push(h, c))
    }

    /// 32-bit tag of a run (never 0; 0 marks an unused tag slot).
    pub fn tag(&self, bytes: &[u8]) -> u32 {
        tag_of(self.hash(bytes))
    }

    /// Hash of a whole value, length included (8 bytes per step: cheap even for megabytes).
    pub fn whole(&self, bytes: &[u8]) -> u64 {
        let mut h = self.whole_seed;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(word))
                .wrapping_mul(self.whole_mul)
                .rotate_left(29);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            h = (h ^ u64::from_le_bytes(word))
                .wrapping_mul(self.whole_mul)
                .rotate_left(29);
        }
        fmix64(h ^ (bytes.len() as u64).wrapping_mul(0xff51_afd7_ed55_8ccd))
    }
}

/// MurmurHash3's 64-bit finaliser: a bijective bit mixer.
#[inline]
pub(super) fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Cheap one-multiply mixer whose high bits are well spread (winnowing order, filter slots).
#[inline]
pub(super) fn spread(h: u64) -> u64 {
    (h ^ (h >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline]
fn tag_of(h: u64) -> u32 {
    ((fmix64(h) >> 32) as u32).max(1)
}

/// One fingerprint of a source value, before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SourceFp {
    /// Polynomial hash of the selected k-gram (unused for short values).
    pub key: u64,
    /// [`Hashes::anchor`] of the k-gram (short values: of the value).
    pub anchor: u64,
    /// Offset of that k-gram in the value.
    pub pos: u32,
    /// `tags[j]`: 32-bit tag of the `m`-byte run starting at `pos - j` (`j < w`), or 0 when that
    /// run does not exist (value edge) or is not informative (and the value is not trusted).
    pub tags: [u32; MAX_WINDOW],
}

/// Winnows `bytes` (a value of at least `m` bytes) into `out`.
///
/// A k-gram's rank is a hash of it. For every informative `m`-run
/// `[s, s + m)` the window of its `w` k-gram starts `s ..= s + d` (`d = w - 1`) is winnowed: its
/// rightmost minimum-rank k-gram is selected. Windows of uninformative runs are skipped, since a
/// fingerprint only matters through an informative tag (so prose costs no winnowing and no memory).
/// The argmin of a later window is never left of an earlier one, so each selected k-gram is
/// recorded once. A selected k-gram at `pos` gets its tags when the run starting at `pos` is
/// complete (the runs starting at `pos - d ..= pos` are then all known).
///
/// Rolling hashes are only maintained across informative runs and restarted (O(m)) when one
/// begins, so uninformative text costs one pass of the opaque-word tracker.
///
/// Stops after `budget` fingerprints or `MAX_SCAN_BYTES` bytes; returns whether it stopped early.
/// One pass, memory O(w) besides the output.
pub(super) fn fingerprint(
    bytes: &[u8],
    params: Params,
    hashes: &Hashes,
    trusted: bool,
    budget: usize,
    out: &mut Vec<SourceFp>,
) -> bool {
    let Params {
        min_match: m, k, w, ..
    } = params;
    let d = w - 1;
    let n = bytes.len().min(MAX_SCAN_BYTES);
    let scan_cut = bytes.len() > n;
    if n < m || budget == 0 {
        return scan_cut || budget == 0;
    }
    const RING: usize = MAX_WINDOW;
    // Rolling hashes of the k-gram and the m-run ending at `synced` (exclusive end), when
    // `synced` is the previous byte's end; they are only kept up while runs are informative.
    let (mut hk, mut hm, mut synced) = (0u64, 0u64, 0usize);
    // By k-gram start % RING: (rank, hash).
    let mut grams = [(0u64, 0u64); RING];
    // By run start % RING: tag of the m-run if informative, else 0.
    let mut runs = [0u32; RING];
    // Selected k-grams waiting for their tags: (pos, hash).
    let mut pending: VecDeque<(usize, u64)> = VecDeque::with_capacity(RING);
    let mut last_selected = None;
    let mut opaque = Opaque::default();
    for (i, &c) in bytes[..n].iter().enumerate() {
        if !trusted {
            opaque.push(i, c);
        }
        let end = i + 1;
        if end < m {
            continue;
        }
        // The run starting at `s` is complete, and so is the window of its k-grams (the last
        // one starts at end - k = s + d).
        let s = end - m;
        let informative = trusted || opaque.latest_start().is_some_and(|x| x >= s);
        if informative {
            if synced + 1 == end && synced != 0 {
                hk = hashes.roll(hk, c, bytes[i - k], hashes.pow_k);
                hm = hashes.roll(hm, c, bytes[s - 1], hashes.pow_m);
                grams[(s + d) % RING] = (spread(hk), hk);
            } else {
                // (Re)start: hash the run, and the k-grams of its window.
                hm = hashes.hash(&bytes[s..end]);
                hk = hashes.hash(&bytes[s..s + k]);
                grams[s % RING] = (spread(hk), hk);
                for t in s + 1..=s + d {
                    hk = hashes.roll(hk, bytes[t + k - 1], bytes[t - 1], hashes.pow_k);
                    grams[t % RING] = (spread(hk), hk);
                }
            }
            synced = end;
            runs[s % RING] = tag_of(hm);
            let mut best = (u64::MAX, s, 0);
            for pos in s..=s + d {
                let (rank, h) = grams[pos % RING];
                if rank <= best.0 {
                    best = (rank, pos, h);
                }
            }
            if last_selected.is_none_or(|last| best.1 > last) {
                last_selected = Some(best.1);
                pending.push_back((best.1, best.2));
            }
        } else {
            runs[s % RING] = 0;
        }
        while let Some(&(pos, h)) = pending.front() {
            if pos > s {
                break;
            }
            pending.pop_front();
            if let Some(fp) = finish(bytes, hashes, pos, h, s, w, &runs) {
                out.push(fp);
                if out.len() >= budget {
                    return end < bytes.len() || !pending.is_empty();
                }
            }
        }
    }
    let last_start = n - m;
    while let Some((pos, h)) = pending.pop_front() {
        if let Some(fp) = finish(bytes, hashes, pos, h, last_start, w, &runs) {
            out.push(fp);
            if out.len() >= budget {
                return scan_cut || !pending.is_empty();
            }
        }
    }
    scan_cut
}

/// Builds the fingerprint of the k-gram at `pos`, given the ring of run tags whose newest start
/// is `last_start` (`pos - w < last_start`). `None` if no tag is set.
fn finish(
    bytes: &[u8],
    hashes: &Hashes,
    pos: usize,
    key: u64,
    last_start: usize,
    w: usize,
    runs: &[u32; MAX_WINDOW],
) -> Option<SourceFp> {
    let mut tags = [0u32; MAX_WINDOW];
    for (j, slot) in tags.iter_mut().enumerate().take(w) {
        let Some(start) = pos.checked_sub(j) else {
            break;
        };
        if start > last_start {
            continue;
        }
        *slot = runs[start % MAX_WINDOW];
    }
    if tags.iter().all(|&t| t == 0) {
        return None;
    }
    Some(SourceFp {
        key,
        anchor: hashes.anchor(bytes.get(pos..)?),
        pos: u32::try_from(pos).ok()?,
        tags,
    })
}
