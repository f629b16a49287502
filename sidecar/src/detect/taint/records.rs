//! The records [`super::TaintState`] stores: one [`Fp`] per fingerprint, one [`ValueRec`] per
//! value (its text is not kept), and the hasher of the maps keyed by hashes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::fingerprint::{MAX_WINDOW, fmix64};

/// No fingerprint / value: end of a chain.
pub(super) const NONE: u64 = u64::MAX;

/// Hasher for keys that already are hashes: one mixing step.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = fmix64(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = fmix64(v);
    }
}

pub(super) type KeyMap = HashMap<u64, u64, BuildHasherDefault<KeyHasher>>;

/// One stored fingerprint (64 bytes).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fp {
    /// Polynomial hash of the k-gram (unused for short values).
    pub(super) key: u64,
    /// Anchor hash (of the k-gram's or short value's first bytes): the filter's key, and the map
    /// key of short values.
    pub(super) anchor: u64,
    /// Sequence number of the value.
    pub(super) value: u64,
    /// Distance back to the next older fingerprint with the same map key (0: none).
    pub(super) prev_delta: u32,
    /// Offset of the k-gram in the value, and `SHORT_FLAG` for short values.
    pub(super) pos: u32,
    /// Run tags (see the module docs of [`super`]); unused for short values.
    pub(super) tags: [u32; MAX_WINDOW],
}

pub(super) const SHORT_FLAG: u32 = 1 << 31;

impl Fp {
    pub(super) fn short(&self) -> bool {
        self.pos & SHORT_FLAG != 0
    }
    pub(super) fn pos(&self) -> usize {
        (self.pos & !SHORT_FLAG) as usize
    }
    /// Key in `grams` or `shorts`.
    pub(super) fn map_key(&self) -> u64 {
        if self.short() { self.anchor } else { self.key }
    }
    /// Sequence number of the next older fingerprint with the same key, given this one's.
    pub(super) fn prev(&self, seq: u64) -> u64 {
        match self.prev_delta {
            0 => NONE,
            d => seq.saturating_sub(u64::from(d)),
        }
    }
}

/// One stored value (its text is not kept).
#[derive(Debug, Clone, Copy)]
pub(super) struct ValueRec {
    /// [`super::fingerprint::Hashes::whole`] of the value.
    pub(super) whole: u64,
    pub(super) len: usize,
    pub(super) origin: u32,
    /// Sequence number of its first fingerprint, and one past its last.
    pub(super) first_fp: u64,
    pub(super) end_fp: u64,
    pub(super) trusted: bool,
}
