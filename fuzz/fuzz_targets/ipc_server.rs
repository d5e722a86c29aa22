//! ipc-server: any bytes, cut anywhere, decode the same (or fail the same way); answering every
//! request leaves nothing open once its messages are written; every message handed out is one
//! JSON object, and never one whose length fills the client's last read.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_proto::dialect::ipc_server::{CHUNK_SIZE, IpcServerCodec};
use plexus_proto::dialect::{Decoded, DialectCodec};
use plexus_proto::{Frame, Kind};
use plexus_proto_fuzz::{Input, answer_for, check_decoded, feed, summary};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let new = || IpcServerCodec::new(input.max_frame, input.max_outstanding);
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
    for sub in subs {
        codec.encode(&Frame::event(sub, 0, &text, payload), &mut dst, &mut bounce);
    }
    codec.encode(&Frame::call(7, &text, &text, 0, payload), &mut dst, &mut bounce);
    assert!(dst.is_empty(), "messages are held for next_message");
    let mut messages = 0;
    loop {
        let mut message = BytesMut::new();
        if !codec.next_message(&mut message) {
            break;
        }
        messages += 1;
        assert!(message.len() % CHUNK_SIZE != 0);
        let value: &serde_json::value::RawValue =
            serde_json::from_slice(&message).expect("one JSON message");
        assert!(value.get().starts_with('{'), "an object");
        assert!(messages < 1_000_000);
    }
    assert_eq!(codec.outstanding(), 0, "every request was answered and written");
});
