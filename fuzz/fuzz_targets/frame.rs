//! Native frames: any bytes, cut anywhere, decode to the same frames or the same error, and
//! every frame re-encodes to exactly the bytes it came from; a frame flagged to carry its payload
//! in a memfd has none inline.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_proto::{DecodeError, Frame, decode};
use plexus_proto_fuzz::Input;

/// Every frame in `chunks`, and the error that stopped decoding, if one did.
fn decode_all(chunks: &[&[u8]], max_frame: u32) -> (Vec<Frame>, Option<DecodeError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf, max_frame) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let whole = decode_all(&[input.stream], input.max_frame);
    assert_eq!(whole, decode_all(&input.chunks(), input.max_frame));
    let (frames, error) = whole;
    let mut pos = 0;
    for frame in &frames {
        assert!(frame.wire_len() <= input.max_frame as usize);
        let bytes = frame.to_bytes();
        assert_eq!(&input.stream[pos..pos + bytes.len()], &bytes[..]);
        pos += bytes.len();
        for i in 0..5 {
            let _ = frame.string(i);
        }
        let _ = (frame.payload(), frame.error_code(), frame.kind().name());
        // Memfd payloads: a frame flagged for one holds no payload bytes inline.
        if plexus_proto::wants_fd(frame.kind(), frame.flags()) {
            assert!(frame.payload().is_empty());
        }
    }
    if let Some(e) = error {
        let _ = (e.code(), e.to_string());
    }
});
