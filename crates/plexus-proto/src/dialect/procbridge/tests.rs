//! Tests of the ProcBridge codec: packet bytes, request order and framing errors.

use bytes::BytesMut;

use super::*;
use crate::dialect::{DEFAULT_MAX_OUTSTANDING, Decoded, DialectCodec};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;

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
    let mut codec = ProcBridgeCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
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
    let mut codec = ProcBridgeCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
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

/// The PyPI client hands on only `str(body["message"])` (`ServerError.message`), so an error's data
/// rides in the message after `\ndata: `, as one line of JSON.
#[test]
fn error_responses_carry_the_data_in_the_message() {
    let mut codec = ProcBridgeCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let mut buf = request_packet(r#"{"method":"plexus.wait_for","payload":["log"]}"#);
    let out = decode_all(&mut codec, &mut buf);
    let mut dst = BytesMut::new();
    let err = Frame::error(
        routed(&out[0]).id(),
        ErrorCode::Timeout,
        "still missing: log",
        b"{\n\"missing\":[\"log\"]}",
    );
    codec.encode(&err, &mut dst, &mut Vec::new());
    let body = br#"{"message":"timeout: still missing: log\ndata: { \"missing\":[\"log\"]}"}"#;
    let mut expected = b"pb\x01\x01\x02\x00\x00".to_vec();
    expected.extend_from_slice(&(body.len() as u32).to_le_bytes());
    expected.extend_from_slice(body);
    assert_eq!(&dst[..], &expected[..]);

    let mut dst = BytesMut::new();
    let bye = Frame::error(0, ErrorCode::ShuttingDown, "bye", b"[1]");
    codec.encode(&bye, &mut dst, &mut Vec::new());
    let packet = take_packet(&mut dst, u32::MAX).expect("ok").expect("one");
    let Ok(Response::Bad(text)) = parse_response(&packet) else {
        panic!("an error response expected");
    };
    assert_eq!(
        text, "shutting_down: bye\ndata: [1]",
        "an error for no request (id 0) is written at once, with its data"
    );
}

#[test]
fn a_bad_request_is_answered_and_the_connection_goes_on() {
    let mut codec = ProcBridgeCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
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
    let mut codec = ProcBridgeCodec::new(100, DEFAULT_MAX_OUTSTANDING);
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
        let mut codec = ProcBridgeCodec::new(1 << 16, DEFAULT_MAX_OUTSTANDING);
        let mut buf = BytesMut::from(&b"pb\x01\x01"[..]);
        buf.extend_from_slice(&bytes);
        let mut out = Vec::new();
        let _ = codec.decode(&mut buf, &mut out);
    }

    #[test]
    fn split_anywhere_decodes_the_same(cut in 0usize..40) {
        let whole = request_packet(r#"{"method":"m.x","payload":[1,2]}"#);
        let cut = cut.min(whole.len());
        let mut codec = ProcBridgeCodec::new(1 << 16, DEFAULT_MAX_OUTSTANDING);
        let mut buf = BytesMut::from(&whole[..cut]);
        let mut out = Vec::new();
        codec.decode(&mut buf, &mut out).expect("partial is fine");
        buf.extend_from_slice(&whole[cut..]);
        codec.decode(&mut buf, &mut out).expect("whole");
        proptest::prop_assert_eq!(out.len(), 1);
    }
}

/// `n` requests for `m.x` in one buffer.
fn requests(n: usize) -> BytesMut {
    let mut buf = BytesMut::new();
    for _ in 0..n {
        buf.extend_from_slice(&request_packet(r#"{"method":"m.x"}"#));
    }
    buf
}

/// Every packet in `dst`, as (good payload or error message).
fn responses(dst: &mut BytesMut) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    while let Some(p) = take_packet(dst, u32::MAX).expect("valid packets") {
        out.push(match parse_response(&p).expect("a response") {
            Response::Good(v) => Ok(v.get().to_owned()),
            Response::Bad(text) => Err(text),
        });
    }
    out
}

#[test]
fn requests_past_the_limit_are_answered_overloaded_in_their_turn() {
    let mut codec = ProcBridgeCodec::new(1 << 20, 2);
    let out = decode_all(&mut codec, &mut requests(4));
    assert_eq!(out.len(), 2, "only two requests reach the router: {out:?}");
    let (first, second) = (routed(&out[0]).id(), routed(&out[1]).id());
    assert_eq!(codec.outstanding(), 4);
    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    codec.encode(&Frame::reply(second, b"2"), &mut dst, &mut bounce);
    assert!(dst.is_empty());
    codec.encode(&Frame::reply(first, b"1"), &mut dst, &mut bounce);
    let got = responses(&mut dst);
    assert_eq!(got[..2], [Ok("1".to_owned()), Ok("2".to_owned())]);
    assert_eq!(got.len(), 4);
    for refused in &got[2..] {
        let text = refused.as_ref().expect_err("an error response");
        assert!(text.starts_with("overloaded: "), "{text}");
    }
    assert_eq!(codec.outstanding(), 0);
    let again = decode_all(&mut codec, &mut requests(1));
    assert!(matches!(again[..], [Decoded::Route(_)]), "room again");
}

proptest::proptest! {
    #[test]
    fn pipelined_answers_leave_in_request_order(
        n in 1usize..40,
        limit in 1usize..40,
        seed in proptest::prelude::any::<u64>(),
    ) {
        let mut codec = ProcBridgeCodec::new(1 << 20, limit);
        let out = decode_all(&mut codec, &mut requests(n));
        let routed_ids: Vec<u64> = out.iter().map(|d| routed(d).id()).collect();
        proptest::prop_assert_eq!(routed_ids.len(), n.min(limit));
        // Answer in a scrambled order: even positions fail, odd ones succeed.
        let mut order: Vec<usize> = (0..routed_ids.len()).collect();
        let len = order.len();
        for i in 0..len {
            let j = (seed.rotate_left(i as u32) as usize) % len;
            order.swap(i, j);
        }
        let mut dst = BytesMut::new();
        for i in order {
            let frame = if i % 2 == 0 {
                Frame::error(routed_ids[i], ErrorCode::Internal, &i.to_string(), b"")
            } else {
                Frame::reply(routed_ids[i], i.to_string().as_bytes())
            };
            codec.encode(&frame, &mut dst, &mut Vec::new());
        }
        let got = responses(&mut dst);
        proptest::prop_assert_eq!(got.len(), n);
        for (i, answer) in got.iter().enumerate() {
            let expected = if i >= limit {
                None
            } else if i % 2 == 0 {
                Some(Err(format!("internal: {i}")))
            } else {
                Some(Ok(i.to_string()))
            };
            match expected {
                Some(e) => proptest::prop_assert_eq!(answer, &e),
                None => proptest::prop_assert!(matches!(answer, Err(t) if t.starts_with("overloaded: "))),
            }
        }
        proptest::prop_assert_eq!(codec.outstanding(), 0);
    }
}
