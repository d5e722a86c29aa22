//! ProcBridge: any bytes, cut anywhere, decode the same (or fail the same way); answered in any
//! order, every request gets exactly one response packet, in request order.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use plexus_proto::dialect::procbridge::{ProcBridgeCodec, parse_response, take_packet};
use plexus_proto::dialect::{Decoded, DialectCodec};
use plexus_proto::{ErrorCode, Frame};
use plexus_proto_fuzz::{Input, decode_whole_and_chunked};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::split(data) else {
        return;
    };
    let (mut codec, decoded, _) = decode_whole_and_chunked(&input, ProcBridgeCodec::new);

    let mut buf = BytesMut::from(input.stream);
    let mut requests = 0;
    while let Ok(Some(_)) = take_packet(&mut buf, input.max_frame) {
        requests += 1;
    }
    assert_eq!(codec.outstanding(), requests);

    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    let mut routed = Vec::new();
    for d in &decoded {
        match d {
            Decoded::Route(f) => routed.push(f.id()),
            Decoded::Answer(f) => codec.encode(f, &mut dst, &mut bounce),
            _ => {}
        }
    }
    for i in 0..routed.len() {
        let j = input.pick(i, routed.len());
        routed.swap(i, j);
    }
    let payload = input.tail();
    for (i, id) in routed.iter().enumerate() {
        let answer = if i % 3 == 0 {
            Frame::error(
                *id,
                ErrorCode::Internal,
                &String::from_utf8_lossy(payload),
                b"",
            )
        } else {
            Frame::reply(*id, payload)
        };
        codec.encode(&answer, &mut dst, &mut bounce);
    }
    assert_eq!(codec.outstanding(), 0, "every request was answered");
    let mut responses = 0;
    while let Some(packet) = take_packet(&mut dst, u32::MAX).expect("valid packets") {
        parse_response(&packet).expect("a valid response");
        responses += 1;
    }
    assert!(dst.is_empty());
    assert_eq!(responses, requests, "one response per request");
});
