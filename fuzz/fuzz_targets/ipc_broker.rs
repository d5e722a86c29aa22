//! ipc-broker: any bytes, cut anywhere, decode the same (or fail the same way); answering every
//! request leaves nothing open; every packet written back is JSON that fits its peers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_proto::Frame;
use plexus_proto::dialect::DialectCodec;
use plexus_proto::dialect::ipc_broker::{IpcBrokerCodec, MAX_PACKET, take_packet};
use plexus_proto_fuzz::{Input, Written, answer_every_request, decode_whole_and_chunked};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let (mut codec, decoded, _) = decode_whole_and_chunked(&input, IpcBrokerCodec::new);

    let payload = input.tail();
    let text = String::from_utf8_lossy(payload);
    let mut written = answer_every_request(&mut codec, &decoded, payload);
    assert_eq!(codec.outstanding(), 0, "every request was answered");
    written.events(&mut codec, 0, &text, payload);
    written.encode(&mut codec, &Frame::call(7, &text, &text, 0, payload));
    let Written {
        mut dst, bounce, ..
    } = written;
    assert!(bounce.is_empty(), "small calls fit");
    while let Some(body) = take_packet(&mut dst, u32::MAX).expect("valid packets") {
        assert!(body.len() <= MAX_PACKET);
        serde_json::from_slice::<&serde_json::value::RawValue>(&body).expect("a JSON body");
    }
    assert!(dst.is_empty());
});
