//! ipcprims: any bytes, cut anywhere, decode the same (or fail the same way); answering every
//! request leaves nothing open; every frame written back is a valid frame carrying JSON on a
//! channel the peer negotiated (or CONTROL).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_proto::dialect::ipcprims::{CONTROL, IpcPrimsCodec, take_frame};
use plexus_proto::dialect::{Decoded, DialectCodec};
use plexus_proto::{Frame, Kind};
use plexus_proto_fuzz::{Input, answer_for, check_decoded, feed, summary};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let new = || IpcPrimsCodec::new(input.max_frame, input.max_outstanding);
    let mut codec = new();
    let (decoded, fatal) = feed(&mut codec, &[input.stream]);
    let (chunked, chunked_fatal) = feed(&mut new(), &input.chunks());
    assert_eq!(summary(&decoded), summary(&chunked));
    assert_eq!(fatal.map(|f| f.code), chunked_fatal.map(|f| f.code));
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
            Decoded::Dropped(_) => {}
        }
    }
    assert_eq!(codec.outstanding(), 0, "every request was answered");
    for sub in subs {
        codec.encode(&Frame::event(sub, 3, &text, payload), &mut dst, &mut bounce);
    }
    codec.encode(&Frame::call(7, &text, &text, 0, payload), &mut dst, &mut bounce);
    codec.encode(
        &Frame::error(0, plexus_proto::ErrorCode::BadFrame, &text, b""),
        &mut dst,
        &mut bounce,
    );
    while let Some((channel, body)) = take_frame(&mut dst, u32::MAX).expect("valid frames") {
        assert!(channel <= 4 || channel == CONTROL);
        serde_json::from_slice::<&serde_json::value::RawValue>(&body).expect("a JSON payload");
    }
    assert!(dst.is_empty());
});
