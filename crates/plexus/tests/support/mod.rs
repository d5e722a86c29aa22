//! Shared by the hostile-client and chaos suites: the real broker and worker processes, raw
//! connections in every dialect, and the check that the bus still holds.
#![allow(dead_code)] // each test target uses a different part

pub mod bus;
pub mod nats;
pub mod process;
pub mod raw;

use std::time::Duration;

/// Hang guard for any single wait: a test that waits longer fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// How soon a well-behaved client's call must be answered while or after the bus is attacked.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Above this resident size the broker is taken to have lost control of its memory: hostile
/// loops stop feeding it there, so that a broken broker fails its test instead of the machine.
pub const RSS_CEILING_MIB: u64 = 3 * 1024;

/// `depth` nested empty JSON arrays: `[[[...]]]`, valid JSON of `2 * depth` bytes.
pub fn deep_json(depth: usize) -> String {
    let mut s = String::with_capacity(2 * depth);
    s.extend(std::iter::repeat_n('[', depth));
    s.extend(std::iter::repeat_n(']', depth));
    s
}

/// A small deterministic pseudo-random generator (xorshift64*), so that failures repeat.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
