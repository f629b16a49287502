//! The Bloom filter over the anchors of stored fingerprints: [`super::TaintState::check`] probes
//! it at every position of a sink text before hashing a k-gram.

/// Bloom filter (two probes, about 32 bits per stored fingerprint, at most 256 KiB) over the
/// anchors of stored fingerprints. No deletion: evicted entries leave stale bits until the next
/// rebuild.
#[derive(Debug, Default)]
pub(super) struct Filter {
    /// The bits (zeroed by the state when it rebuilds the filter).
    pub(super) bits: Vec<u64>,
    /// log2 of the number of bits.
    order: u32,
}

impl Filter {
    /// The two bit positions of an anchor: its top `order` bits, and the `order` bits below.
    #[inline]
    fn slots(&self, anchor: u64) -> [usize; 2] {
        let top = anchor >> (64 - self.order);
        let next = (anchor >> (64 - 2 * self.order)) & ((1 << self.order) - 1);
        [top as usize, next as usize]
    }

    pub(super) fn insert(&mut self, anchor: u64, capacity: usize) {
        if self.bits.is_empty() {
            let bits = (capacity.saturating_mul(32))
                .next_power_of_two()
                .clamp(1 << 12, 1 << 21);
            self.bits = vec![0; bits / 64];
            self.order = bits.trailing_zeros();
        }
        for slot in self.slots(anchor) {
            if let Some(w) = self.bits.get_mut(slot >> 6) {
                *w |= 1 << (slot & 63);
            }
        }
    }

    #[inline]
    pub(super) fn contains(&self, anchor: u64) -> bool {
        if self.bits.is_empty() {
            return false;
        }
        let [a, b] = self.slots(anchor);
        let bit = |slot: usize| {
            self.bits
                .get(slot >> 6)
                .is_some_and(|w| w >> (slot & 63) & 1 != 0)
        };
        bit(a) && bit(b)
    }
}
