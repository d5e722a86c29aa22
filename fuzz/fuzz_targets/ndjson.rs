//! NDJSON: any bytes, cut anywhere, decode the same; answering every request leaves nothing
//! open; and every line written back is one JSON value on one line, whatever the payloads.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_proto::dialect::DialectCodec;
use plexus_proto::dialect::ndjson::NdjsonCodec;
use plexus_proto::{ErrorCode, Frame};
use plexus_proto_fuzz::{Input, answer_every_request, decode_whole_and_chunked};

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
    let (mut codec, decoded, fatal) = decode_whole_and_chunked(&input, NdjsonCodec::new);
    assert!(fatal.is_none(), "NDJSON is never fatal");

    let payload = input.tail();
    let text = String::from_utf8_lossy(payload);
    let mut written = answer_every_request(&mut codec, &decoded, payload);
    assert_eq!(codec.outstanding(), 0, "every request was answered");
    written.events(&mut codec, 1, &text, payload);
    written.encode(&mut codec, &Frame::call(7, &text, &text, 9, payload));
    written.encode(&mut codec, &Frame::cancel(7));
    let stray = Frame::error(u64::MAX, ErrorCode::Timeout, &text, payload);
    written.encode(&mut codec, &stray);
    assert!(written.bounce.is_empty());
    check_lines(&written.dst);
});
