//! ipc-server: any bytes, cut anywhere, decode the same (or fail the same way); answering every
//! request leaves nothing open once its messages are written; every message handed out is one
//! JSON object, and never one whose length fills the client's last read.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_proto::Frame;
use plexus_proto::dialect::DialectCodec;
use plexus_proto::dialect::ipc_server::{CHUNK_SIZE, IpcServerCodec};
use plexus_proto_fuzz::{Input, answer_every_request, decode_whole_and_chunked};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let (mut codec, decoded, _) = decode_whole_and_chunked(&input, IpcServerCodec::new);

    let payload = input.tail();
    let text = String::from_utf8_lossy(payload);
    let mut written = answer_every_request(&mut codec, &decoded, payload);
    written.events(&mut codec, 0, &text, payload);
    written.encode(&mut codec, &Frame::call(7, &text, &text, 0, payload));
    assert!(written.dst.is_empty(), "messages are held for next_message");
    let mut messages = 0;
    loop {
        let mut message = BytesMut::new();
        if !codec.next_message(&mut message) {
            break;
        }
        messages += 1;
        assert!(!message.len().is_multiple_of(CHUNK_SIZE));
        let value: &serde_json::value::RawValue =
            serde_json::from_slice(&message).expect("one JSON message");
        assert!(value.get().starts_with('{'), "an object");
        assert!(messages < 1_000_000);
    }
    assert_eq!(
        codec.outstanding(),
        0,
        "every request was answered and written"
    );
});
