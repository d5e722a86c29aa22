//! ipcprims: any bytes, cut anywhere, decode the same (or fail the same way); answering every
//! request leaves nothing open; every frame written back is a valid frame carrying JSON on a
//! channel the peer negotiated (or CONTROL).

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_proto::Frame;
use plexus_proto::dialect::DialectCodec;
use plexus_proto::dialect::ipcprims::{CONTROL, IpcPrimsCodec, take_frame};
use plexus_proto_fuzz::{Input, answer_every_request, decode_whole_and_chunked};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let (mut codec, decoded, _) = decode_whole_and_chunked(&input, IpcPrimsCodec::new);

    let payload = input.tail();
    let text = String::from_utf8_lossy(payload);
    let mut written = answer_every_request(&mut codec, &decoded, payload);
    assert_eq!(codec.outstanding(), 0, "every request was answered");
    written.events(&mut codec, 3, &text, payload);
    written.encode(&mut codec, &Frame::call(7, &text, &text, 0, payload));
    written.encode(
        &mut codec,
        &Frame::error(0, plexus_proto::ErrorCode::BadFrame, &text, b""),
    );
    let mut dst = written.dst;
    while let Some((channel, body)) = take_frame(&mut dst, u32::MAX).expect("valid frames") {
        assert!(channel <= 4 || channel == CONTROL);
        serde_json::from_slice::<&serde_json::value::RawValue>(&body).expect("a JSON payload");
    }
    assert!(dst.is_empty());
});
