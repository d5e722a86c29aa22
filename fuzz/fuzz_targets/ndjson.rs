//! NDJSON: any bytes, cut anywhere, decode the same; answering every request leaves nothing
//! open; and every line written back is one JSON value on one line, whatever the payloads.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_proto::dialect::ndjson::NdjsonCodec;
use plexus_proto::dialect::{Decoded, DialectCodec};
use plexus_proto::{ErrorCode, Frame, Kind};
use plexus_proto_fuzz::{Input, answer_for, check_decoded, feed, summary};

/// Checks that `dst` is whole lines, each one JSON value.
fn check_lines(dst: &[u8]) {
    let text = std::str::from_utf8(dst).expect("lines are UTF-8");
    assert!(text.is_empty() || text.ends_with('\n'));
    for line in text.split_terminator('\n') {
        assert!(!line.contains('\r'), "a bare CR inside a line: {line:?}");
        serde_json::from_str::<&serde_json::value::RawValue>(line)
            .unwrap_or_else(|e| panic!("not one JSON value ({e}): {line:?}"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let new = || NdjsonCodec::new(input.max_frame, input.max_outstanding);
    let mut codec = new();
    let (decoded, fatal) = feed(&mut codec, &[input.stream]);
    assert!(fatal.is_none(), "NDJSON is never fatal");
    let (chunked, _) = feed(&mut new(), &input.chunks());
    assert_eq!(summary(&decoded), summary(&chunked));
    check_decoded(&decoded, input.max_frame);

    let payload = input.tail();
    let text = String::from_utf8_lossy(payload);
    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    let mut subs = Vec::new();
    for d in &decoded {
        match d {
            Decoded::Route(f) => {
                if f.kind() == Kind::Subscribe {
                    subs.push(f.id());
                }
                if let Some(answer) = answer_for(f, payload) {
                    codec.encode(&answer, &mut dst, &mut bounce);
                }
            }
            Decoded::Answer(f) => codec.encode(f, &mut dst, &mut bounce),
            _ => {}
        }
    }
    assert_eq!(codec.outstanding(), 0, "every request was answered");
    for sub in subs {
        codec.encode(&Frame::event(sub, 1, &text, payload), &mut dst, &mut bounce);
    }
    codec.encode(
        &Frame::call(7, &text, &text, 9, payload),
        &mut dst,
        &mut bounce,
    );
    codec.encode(&Frame::cancel(7), &mut dst, &mut bounce);
    let stray = Frame::error(u64::MAX, ErrorCode::Timeout, &text, payload);
    codec.encode(&stray, &mut dst, &mut bounce);
    assert!(bounce.is_empty());
    check_lines(&dst);
});
