//! Micro-benchmarks of the frame codec: encoding and decoding a call frame with 64-byte and
//! 64 KiB params. Run with `cargo bench -p plexus-bus-proto --bench codec`.

use bytes::BytesMut;
use divan::{Bencher, black_box};
use plexus_proto::{Frame, decode, decode_compact, encode};

fn main() {
    divan::main();
}

/// The params sizes measured: a small call and a 64 KiB one.
const SIZES: [usize; 2] = [64, 64 * 1024];
/// The largest frame the decoder takes, as the broker's default `max_frame` allows.
const MAX_FRAME: u32 = 16 * 1024 * 1024 + 64 * 1024;
/// Frames smaller than this are copied out of the read buffer, as the broker's reader does.
const COPY_BELOW: usize = 32 * 1024;

fn call(params: usize) -> Frame {
    Frame::call(7, "bench.echo", "echo", 5_000, &vec![b'x'; params])
}

/// Appends a call frame's wire form to a reused buffer.
#[divan::bench(args = SIZES)]
fn encode_call(bencher: Bencher, params: usize) {
    let frame = call(params);
    let mut buf = BytesMut::with_capacity(frame.wire_len());
    bencher.bench_local(|| {
        buf.clear();
        encode(black_box(&frame), &mut buf);
        black_box(buf.len())
    });
}

/// Decodes a call frame from its wire bytes (the body stays a slice of the buffer).
#[divan::bench(args = SIZES)]
fn decode_call(bencher: Bencher, params: usize) {
    let wire = call(params).to_bytes();
    bencher
        .with_inputs(|| BytesMut::from(&wire[..]))
        .bench_local_refs(|buf| decode(buf, MAX_FRAME).ok().flatten().map(|f| f.wire_len()));
}

/// Decodes as the broker's reader does: small frames copied out of the read buffer.
#[divan::bench(args = SIZES)]
fn decode_compact_call(bencher: Bencher, params: usize) {
    let wire = call(params).to_bytes();
    bencher
        .with_inputs(|| BytesMut::from(&wire[..]))
        .bench_local_refs(|buf| {
            decode_compact(buf, MAX_FRAME, COPY_BELOW)
                .ok()
                .flatten()
                .map(|f| f.wire_len())
        });
}
