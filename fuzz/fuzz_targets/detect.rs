//! Dialect detection and the first bytes of a connection: detection settles within five bytes
//! and never changes its mind, agrees with the bytes, and the chosen decoder takes the rest.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_proto::dialect::{Dialect, parse_coded_message, split_method};
use plexus_proto::{ErrorCode, decode};
use plexus_proto_fuzz::{Input, check_decoded, feed};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let stream = input.stream;
    let mut settled = None;
    for n in 0..=stream.len().min(8) {
        let seen = Dialect::detect(&stream[..n]);
        if settled.is_some() {
            assert_eq!(seen, settled, "detection changed its mind at {n} bytes");
        }
        assert!(n < 5 || seen.is_some(), "five bytes always decide");
        settled = seen;
    }
    let Some(dialect) = settled else {
        assert!(stream.len() < 5);
        return;
    };
    match dialect {
        Dialect::ProcBridge => assert!(stream.starts_with(b"pb")),
        Dialect::IpcBroker => assert_eq!(stream.get(4), Some(&b'{')),
        Dialect::IpcPrims => assert!(stream.starts_with(b"IP")),
        Dialect::Ndjson => assert!(stream[0] == b'{' || stream[0].is_ascii_whitespace()),
        _ => {}
    }
    assert!(!dialect.client_name().is_empty());
    match dialect.codec(input.max_frame, input.max_outstanding) {
        Some(mut codec) => {
            let (decoded, _) = feed(codec.as_mut(), &input.chunks());
            check_decoded(&decoded, input.max_frame);
        }
        None => {
            let mut buf = BytesMut::from(stream);
            while let Ok(Some(frame)) = decode(&mut buf, input.max_frame) {
                let _ = frame.kind();
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(stream) {
        if let Some((object, method)) = split_method(text) {
            assert_eq!(format!("{object}.{method}"), text);
            assert!(!object.is_empty() && !method.is_empty() && !method.contains('.'));
        }
        let (code, message) = parse_coded_message(text);
        assert!(text.ends_with(message));
        assert!(code == ErrorCode::Internal || text.starts_with(code.name()));
    }
});
