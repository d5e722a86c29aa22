//! Micro-benchmarks of a connection's outbox: queueing frames and the writer's draining of them
//! in batches. Run with `cargo bench -p plexus-bus-broker --bench outbox`.

use divan::{Bencher, black_box};
use plexus_broker::internals::{Outbox, held, outbox};
use plexus_proto::Frame;

fn main() {
    divan::main();
}

/// Frames queued per iteration.
const BURSTS: [usize; 3] = [1, 16, 512];
/// An outbox limit no burst reaches.
const LIMIT: usize = 64 * 1024 * 1024;

fn event() -> Frame {
    Frame::event(3, 0, "bench.topic", &[b'x'; 64])
}

/// Queues a burst of 64-byte events, then takes them off the queue in batches as the writer
/// does (without a socket) and stops counting them.
#[divan::bench(args = BURSTS)]
fn push_and_drain(bencher: Bencher, burst: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let (tx, mut rx) = outbox(LIMIT);
    let frame = event();
    let mut batch = Vec::new();
    bencher.bench_local(|| {
        for _ in 0..burst {
            push(&tx, &frame);
        }
        runtime.block_on(async {
            let mut left = burst;
            while left > 0 {
                let n = rx.recv_batch(&mut batch).await;
                let bytes: usize = batch.drain(..).map(|f| held(&f)).sum();
                rx.release(bytes);
                left -= n;
            }
        });
        black_box(tx.queued())
    });
}

fn push(tx: &Outbox, frame: &Frame) {
    if tx.push(frame.clone()).is_err() {
        panic!("the outbox limit is above any burst");
    }
}

/// A fresh outbox: queues a burst of 64-byte events, then the native writer writes them all
/// (coalesced, as to a socket) into a sink and finishes.
#[divan::bench(args = BURSTS)]
fn write_burst(bencher: Bencher, burst: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let frame = event();
    bencher.bench_local(|| {
        let (tx, rx) = outbox(LIMIT);
        for _ in 0..burst {
            push(&tx, &frame);
        }
        drop(tx);
        runtime
            .block_on(rx.write_all_to(tokio::io::sink()))
            .expect("a sink takes everything")
    });
}
