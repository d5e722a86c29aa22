//! Micro-benchmarks of the subscription trie: inserting subscriptions, and matching a topic
//! against 1,000 and 10,000 subscriptions of which one in ten has a wildcard. Run with
//! `cargo bench -p plexus-bus-broker --bench subscriptions`.

use divan::{Bencher, black_box};
use plexus_broker::internals::{SubKey, Subscriptions};

fn main() {
    divan::main();
}

/// Subscription counts measured.
const COUNTS: [usize; 2] = [1_000, 10_000];

/// The pattern of subscription `i`: mostly exact three-segment topics spread over 100 services,
/// every tenth with a `*` segment, every hundredth ending with `>`.
fn pattern(i: usize) -> String {
    let service = i % 100;
    match i % 100 {
        0 => format!("svc{service}.>"),
        n if n % 10 == 0 => format!("svc{service}.*.changed"),
        _ => format!("svc{service}.item{i}.changed"),
    }
}

fn filled(count: usize) -> Subscriptions<SubKey> {
    let mut subs = Subscriptions::default();
    for i in 0..count {
        subs.insert(&pattern(i), (i as u64 % 64, i as u64));
    }
    subs
}

/// Builds a trie of `count` subscriptions from nothing.
#[divan::bench(args = COUNTS)]
fn insert(bencher: Bencher, count: usize) {
    let patterns: Vec<String> = (0..count).map(pattern).collect();
    bencher.bench_local(|| {
        let mut subs = Subscriptions::<SubKey>::default();
        for (i, p) in patterns.iter().enumerate() {
            subs.insert(p, (i as u64 % 64, i as u64));
        }
        black_box(subs.count())
    });
}

/// Matches one topic that an exact subscription, a `*` one and a `>` one all match.
#[divan::bench(args = COUNTS)]
fn match_topic(bencher: Bencher, count: usize) {
    let subs = filled(count);
    let topic = "svc10.item110.changed";
    let mut out = Vec::new();
    bencher.bench_local(|| {
        out.clear();
        subs.matches(black_box(topic), &mut out);
        black_box(out.len())
    });
}

/// Matches a topic no subscription matches.
#[divan::bench(args = COUNTS)]
fn match_nothing(bencher: Bencher, count: usize) {
    let subs = filled(count);
    let mut out = Vec::new();
    bencher.bench_local(|| {
        out.clear();
        subs.matches(black_box("other.topic.changed"), &mut out);
        black_box(out.len())
    });
}
