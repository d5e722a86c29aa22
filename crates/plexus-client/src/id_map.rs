//! Maps keyed by the ids this client numbers itself (requests, subscriptions), hashed with one
//! multiplication instead of SipHash: a fan-out subscriber looks one up per event.
//!
//! SipHash guards against keys chosen to collide; these keys come from the client's own counter
//! (the broker only echoes them, and an unknown id just misses), so nobody can choose them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from ids the client chose to `V`.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The golden-ratio multiplier: consecutive ids land far apart in the high bits hashbrown uses.
const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Hashes a `u64` id with one multiplication.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0.rotate_left(5) ^ id).wrapping_mul(MULTIPLIER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_are_found_and_spread() {
        let mut map = IdMap::default();
        for id in 0..10_000u64 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000u64).all(|id| map.get(&id) == Some(&(id * 2))));
        assert_eq!(map.get(&10_000), None);
        let top_bits: std::collections::HashSet<u64> = (0..128u64)
            .map(|id| {
                let mut h = IdHasher::default();
                h.write_u64(id);
                h.finish() >> 57
            })
            .collect();
        assert!(
            top_bits.len() > 64,
            "control bytes differ: {}",
            top_bits.len()
        );
    }
}
