//! Tests of the ProcBridge codec: packet bytes, request order and framing errors.

use super::*;

fn request_packet(body: &str) -> BytesMut {
    let mut b = BytesMut::new();
    put_packet(&mut b, Status::Request, body.as_bytes());
    b
}

fn decode_all(codec: &mut ProcBridgeCodec, buf: &mut BytesMut) -> Vec<Decoded> {
    let mut out = Vec::new();
    codec.decode(buf, &mut out).expect("decodes");
    out
}

fn routed(d: &Decoded) -> &Frame {
    match d {
        Decoded::Route(f) => f,
        other => panic!("expected a routed frame, got {other:?}"),
    }
}

#[test]
fn packet_bytes_match_the_pypi_client() {
    // What procbridge 1.2.2 writes for request("math.add", {"a": 1}): json.dumps adds a space.
    let mut b = BytesMut::new();
    put_packet(&mut b, Status::Request, br#"{"method": "math.add"}"#);
    assert_eq!(&b[..11], b"pb\x01\x01\x00\x00\x00\x16\x00\x00\x00");
    assert_eq!(b.len(), 11 + 22);
}

#[test]
fn a_request_becomes_a_call_split_at_the_last_dot() {
    let mut codec = ProcBridgeCodec::new(1 << 20);
    let mut buf = request_packet(r#"{"method": "org.x.math.add", "payload": {"a": 1}}"#);
    let out = decode_all(&mut codec, &mut buf);
    let call = routed(&out[0]);
    assert_eq!(call.kind(), Kind::Call);
    assert_eq!((call.string(0), call.string(1)), ("org.x.math", "add"));
    assert_eq!(&call.payload()[..], br#"{"a": 1}"#);
    assert!(buf.is_empty());
    assert_eq!(codec.outstanding(), 1);
}

#[test]
fn answers_leave_in_request_order() {
    let mut codec = ProcBridgeCodec::new(1 << 20);
    let mut buf = request_packet(r#"{"method":"a.x"}"#);
    buf.extend_from_slice(&request_packet(r#"{"method":"b.y","payload":[1]}"#));
    let out = decode_all(&mut codec, &mut buf);
    let (first, second) = (routed(&out[0]).id(), routed(&out[1]).id());
    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    codec.encode(&Frame::reply(second, b"2"), &mut dst, &mut bounce);
    assert!(dst.is_empty(), "the second answer waits for the first");
    codec.encode(
        &Frame::error(first, ErrorCode::NoSuchObject, "no object named 'a'", b""),
        &mut dst,
        &mut bounce,
    );
    let p1 = take_packet(&mut dst, u32::MAX).expect("ok").expect("one");
    let p2 = take_packet(&mut dst, u32::MAX).expect("ok").expect("two");
    let Ok(Response::Bad(text)) = parse_response(&p1) else {
        panic!("bad response expected");
    };
    assert_eq!(text, "no_such_object: no object named 'a'");
    let Ok(Response::Good(v)) = parse_response(&p2) else {
        panic!("good response expected");
    };
    assert_eq!(v.get(), "2");
    assert_eq!(codec.outstanding(), 0);
}

#[test]
fn a_bad_request_is_answered_and_the_connection_goes_on() {
    let mut codec = ProcBridgeCodec::new(1 << 20);
    let mut buf = request_packet("not json");
    buf.extend_from_slice(&request_packet(r#"{"method":"nodot"}"#));
    buf.extend_from_slice(&request_packet(r#"{"method":"m.ok"}"#));
    let out = decode_all(&mut codec, &mut buf);
    assert_eq!(out.len(), 3);
    let Decoded::Answer(bad) = &out[0] else {
        panic!("answer expected");
    };
    assert_eq!(bad.error_code(), ErrorCode::BadFrame);
    let Decoded::Answer(nodot) = &out[1] else {
        panic!("answer expected");
    };
    assert_eq!(nodot.error_code(), ErrorCode::InvalidParams);
    assert_eq!(routed(&out[2]).string(0), "m");
}

#[test]
fn framing_errors_are_fatal() {
    let mut codec = ProcBridgeCodec::new(100);
    let mut out = Vec::new();
    let mut big = BytesMut::from(&b"pb\x01\x01\x00\x00\x00\xff\x00\x00\x00"[..]);
    assert_eq!(
        codec.decode(&mut big, &mut out).map_err(|f| f.code),
        Err(ErrorCode::FrameTooLarge)
    );
    let mut v2 = BytesMut::from(&b"pb\x02\x00\x00\x00\x00\x00\x00\x00\x00"[..]);
    assert_eq!(
        codec.decode(&mut v2, &mut out).map_err(|f| f.code),
        Err(ErrorCode::UnsupportedVersion)
    );
    let mut junk = BytesMut::from(&b"xx"[..]);
    assert_eq!(
        codec.decode(&mut junk, &mut out).map_err(|f| f.code),
        Err(ErrorCode::BadFrame)
    );
}

#[test]
fn request_bodies_for_the_bridge() {
    let p = serde_json::value::to_raw_value(&serde_json::json!({"a": 1})).expect("raw");
    assert_eq!(
        request_body("add", Some(&p)),
        br#"{"method":"add","payload":{"a":1}}"#
    );
    assert_eq!(request_body("add", None), br#"{"method":"add"}"#);
}

proptest::proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let mut codec = ProcBridgeCodec::new(1 << 16);
        let mut buf = BytesMut::from(&b"pb\x01\x01"[..]);
        buf.extend_from_slice(&bytes);
        let mut out = Vec::new();
        let _ = codec.decode(&mut buf, &mut out);
    }

    #[test]
    fn split_anywhere_decodes_the_same(cut in 0usize..40) {
        let whole = request_packet(r#"{"method":"m.x","payload":[1,2]}"#);
        let cut = cut.min(whole.len());
        let mut codec = ProcBridgeCodec::new(1 << 16);
        let mut buf = BytesMut::from(&whole[..cut]);
        let mut out = Vec::new();
        codec.decode(&mut buf, &mut out).expect("partial is fine");
        buf.extend_from_slice(&whole[cut..]);
        codec.decode(&mut buf, &mut out).expect("whole");
        proptest::prop_assert_eq!(out.len(), 1);
    }
}
