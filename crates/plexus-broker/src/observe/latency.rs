//! A fixed-size latency histogram (the buckets of `plexus_call_duration_seconds`) and the
//! quantiles read from bucket counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::stats::{LATENCY_BUCKETS_US, latency_bucket};

/// Buckets: one per bound in [`LATENCY_BUCKETS_US`], then +Inf.
pub const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// Counts per latency bucket; never grows.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&self, elapsed: Duration) {
        self.counts[latency_bucket(elapsed)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// The `q` quantile (0..=1) of the durations counted in `counts`, in microseconds, interpolated
/// linearly inside its bucket (the +Inf bucket reports its lower bound); `None` when empty.
pub fn quantile_us(counts: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).max(1.0);
    let mut below = 0u64;
    for (i, n) in counts.iter().enumerate() {
        let upto = below + n;
        if *n > 0 && upto as f64 >= rank {
            let lower = if i == 0 { 0 } else { LATENCY_BUCKETS_US[i - 1] } as f64;
            let Some(upper) = LATENCY_BUCKETS_US.get(i) else {
                return Some(lower);
            };
            let within = (rank - below as f64) / *n as f64;
            return Some(lower + within * (*upper as f64 - lower));
        }
        below = upto;
    }
    None
}

/// The counts of `now` minus those of `before` (what was counted between them).
pub fn since(now: &[u64; BUCKETS], before: &[u64; BUCKETS]) -> [u64; BUCKETS] {
    std::array::from_fn(|i| now[i].saturating_sub(before[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_bucket_that_holds_them() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.record(Duration::from_micros(80));
        }
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(20));
        let counts = h.counts();
        let p50 = quantile_us(&counts, 0.5).expect("p50");
        assert!((50.0..=100.0).contains(&p50), "{p50}");
        let p99 = quantile_us(&counts, 0.99).expect("p99");
        assert!((2_500.0..=5_000.0).contains(&p99), "{p99}");
        assert_eq!(quantile_us(&counts, 1.0), Some(10_000_000.0));
        assert_eq!(quantile_us(&[0; BUCKETS], 0.5), None);
    }

    #[test]
    fn since_subtracts_bucket_by_bucket() {
        let mut before = [0; BUCKETS];
        before[2] = 3;
        let mut now = before;
        now[2] = 5;
        now[4] = 1;
        let d = since(&now, &before);
        assert_eq!((d[2], d[4], d.iter().sum::<u64>()), (2, 1, 3));
    }
}
