//! Tests of the ipc-broker codec: packets both ways, held events and size limits.

use super::*;
use crate::dialect::{DEFAULT_MAX_OUTSTANDING, Decoded, DialectCodec};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;
use serde_json::{Value, json};

fn packet(v: Value) -> BytesMut {
    let mut b = BytesMut::new();
    put_packet(&mut b, v.to_string().as_bytes());
    b
}

fn decode(codec: &mut IpcBrokerCodec, v: Value) -> Decoded {
    let mut buf = packet(v);
    let mut out = Vec::new();
    codec.decode(&mut buf, &mut out).expect("decodes");
    assert!(buf.is_empty());
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn routed(d: Decoded) -> Frame {
    match d {
        Decoded::Route(f) => f,
        other => panic!("expected a routed frame, got {other:?}"),
    }
}

fn encode(codec: &mut IpcBrokerCodec, frame: &Frame) -> Vec<Value> {
    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    codec.encode(frame, &mut dst, &mut bounce);
    assert!(bounce.is_empty());
    let mut out = Vec::new();
    while let Some(body) = take_packet(&mut dst, u32::MAX).expect("valid") {
        out.push(serde_json::from_slice(&body).expect("json"));
    }
    out
}

#[test]
fn client_call_and_result() {
    let mut c = IpcBrokerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let call = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"u-1","object_name":"math","method":"add","args":{"a":10,"b":32}}}),
    ));
    assert_eq!(
        (call.kind(), call.string(0), call.string(1)),
        (Kind::Call, "math", "add")
    );
    assert_eq!(&call.payload()[..], br#"{"a":10,"b":32}"#);
    assert_eq!(
        encode(&mut c, &Frame::reply(call.id(), br#"{"sum":42}"#)),
        vec![json!({"Result":{"call_id":"u-1","object_name":"math","value":{"sum":42}}})]
    );
    let call2 = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"u-2","object_name":"gone","method":"x","args":null}}),
    ));
    assert_eq!(&call2.payload()[..], b"null");
    let err = Frame::error(
        call2.id(),
        ErrorCode::NoSuchObject,
        "no object named 'gone'",
        b"",
    );
    assert_eq!(
        encode(&mut c, &err),
        vec![json!({"Error":{"call_id":"u-2","object_name":"gone",
            "message":"no_such_object: no object named 'gone'"}})]
    );
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn worker_register_calls_and_results() {
    let mut c = IpcBrokerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let reg = routed(decode(
        &mut c,
        json!({"RegisterObject":{"object_name":"math"}}),
    ));
    assert_eq!(
        (reg.kind(), reg.string(0), reg.flags()),
        (Kind::Register, "math", 0)
    );
    assert_eq!(
        encode(&mut c, &Frame::reply(reg.id(), b"")),
        vec![json!({"Registered":{"object_name":"math"}})]
    );
    let incoming = Frame::call(77, "math", "add", 0, br#"{"a":1,"b":2}"#);
    assert_eq!(
        encode(&mut c, &incoming),
        vec![
            json!({"Call":{"call_id":"77","object_name":"math","method":"add","args":{"a":1,"b":2}}})
        ]
    );
    let result = routed(decode(
        &mut c,
        json!({"Result":{"call_id":"77","object_name":"math","value":{"sum":3}}}),
    ));
    assert_eq!((result.kind(), result.id()), (Kind::Reply, 77));
    assert_eq!(&result.payload()[..], br#"{"sum":3}"#);
    let error = routed(decode(
        &mut c,
        json!({"Error":{"call_id":"78","object_name":"math","message":"no_such_method: nope"}}),
    ));
    assert_eq!(
        (error.error_code(), error.string(0)),
        (ErrorCode::NoSuchMethod, "nope")
    );
    let taken = routed(decode(
        &mut c,
        json!({"RegisterObject":{"object_name":"math"}}),
    ));
    let refusal = Frame::error(
        taken.id(),
        ErrorCode::NameTaken,
        "name 'math' is already owned",
        b"",
    );
    assert_eq!(
        encode(&mut c, &refusal),
        vec![json!({"Error":{"call_id":null,"object_name":"math",
            "message":"name_taken: name 'math' is already owned"}})]
    );
}

#[test]
fn has_object_asks_wait_for_with_zero_timeout() {
    let mut c = IpcBrokerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let q = routed(decode(&mut c, json!({"HasObject":{"object_name":"math"}})));
    assert_eq!((q.string(0), q.string(1)), ("plexus", "wait_for"));
    let params: Value = serde_json::from_slice(&q.payload()).expect("json");
    assert_eq!(params, json!({"names":["math"],"timeout_ms":0}));
    assert_eq!(
        encode(&mut c, &Frame::reply(q.id(), b"{}")),
        vec![json!({"HasObjectResult":{"object_name":"math","exists":true}})]
    );
    let q = routed(decode(&mut c, json!({"HasObject":{"object_name":"nope"}})));
    assert_eq!(
        encode(
            &mut c,
            &Frame::error(q.id(), ErrorCode::Timeout, "missing", b"")
        ),
        vec![json!({"HasObjectResult":{"object_name":"nope","exists":false}})]
    );
}

#[test]
fn subscribe_publish_and_events_held_while_a_call_waits() {
    let mut c = IpcBrokerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let sub = routed(decode(
        &mut c,
        json!({"Subscribe":{"object_name":"sensor","topic":"temperature"}}),
    ));
    assert_eq!(
        (sub.kind(), sub.string(0)),
        (Kind::Subscribe, "sensor.temperature")
    );
    assert!(
        encode(&mut c, &Frame::reply(sub.id(), b"")).is_empty(),
        "no Subscribed"
    );
    let publish = routed(decode(
        &mut c,
        json!({"Publish":{"object_name":"sensor","topic":"temperature","args":"25.6°C"}}),
    ));
    assert_eq!(
        (publish.kind(), publish.string(0)),
        (Kind::Publish, "sensor.temperature")
    );
    let event = Frame::event(sub.id(), 0, "sensor.temperature", "\"25.6°C\"".as_bytes());
    let expected = json!({"Event":{"object_name":"sensor","topic":"temperature","args":"25.6°C"}});
    assert_eq!(encode(&mut c, &event), vec![expected.clone()]);
    let call = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"c","object_name":"m","method":"x","args":null}}),
    ));
    assert!(
        encode(&mut c, &event).is_empty(),
        "held while the call waits"
    );
    assert_eq!(
        encode(&mut c, &Frame::reply(call.id(), b"1")),
        vec![
            json!({"Result":{"call_id":"c","object_name":"m","value":1}}),
            expected
        ]
    );
    let again = decode(
        &mut c,
        json!({"Subscribe":{"object_name":"sensor","topic":"temperature"}}),
    );
    assert!(
        matches!(again, Decoded::Dropped(_)),
        "one subscription per pair"
    );
    let bad = decode(
        &mut c,
        json!({"Publish":{"object_name":"a b","topic":"t","args":1}}),
    );
    assert!(matches!(bad, Decoded::Dropped(_)));
}

#[test]
fn oversized_calls_bounce_and_oversized_results_become_errors() {
    let mut c = IpcBrokerCodec::new(1 << 24, DEFAULT_MAX_OUTSTANDING);
    let big = format!("\"{}\"", "x".repeat(MAX_PACKET));
    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    c.encode(
        &Frame::call(5, "m", "x", 0, big.as_bytes()),
        &mut dst,
        &mut bounce,
    );
    assert!(dst.is_empty());
    assert_eq!(
        (bounce[0].id(), bounce[0].error_code()),
        (5, ErrorCode::FrameTooLarge)
    );
    let call = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"c","object_name":"m","method":"x","args":null}}),
    ));
    let out = encode(&mut c, &Frame::reply(call.id(), big.as_bytes()));
    let msg = out[0]["Error"]["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("frame_too_large: "), "{msg}");
}

#[test]
fn framing_limits_and_junk() {
    let mut c = IpcBrokerCodec::new(100, DEFAULT_MAX_OUTSTANDING);
    let mut out = Vec::new();
    let mut big = BytesMut::from(&b"\x00\x00\x01\x00{"[..]);
    assert_eq!(
        c.decode(&mut big, &mut out).map_err(|f| f.code),
        Err(ErrorCode::FrameTooLarge)
    );
    let mut c = IpcBrokerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    assert!(matches!(
        decode(&mut c, json!({"Dance":{}})),
        Decoded::Dropped(_)
    ));
    assert!(matches!(decode(&mut c, json!([1, 2])), Decoded::Dropped(_)));
}

proptest::proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let mut c = IpcBrokerCodec::new(1 << 16, DEFAULT_MAX_OUTSTANDING);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut out = Vec::new();
        let _ = c.decode(&mut buf, &mut out);
    }
}

#[test]
fn requests_past_the_limit_are_refused_overloaded() {
    let mut c = IpcBrokerCodec::new(1 << 20, 1);
    let call = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"c1","object_name":"m","method":"x","args":null}}),
    ));
    let Decoded::Answer(refused) = decode(
        &mut c,
        json!({"Call":{"call_id":"c2","object_name":"m","method":"x","args":null}}),
    ) else {
        panic!("an answer at once");
    };
    let out = encode(&mut c, &refused);
    assert_eq!(out[0]["Error"]["call_id"], "c2");
    let msg = out[0]["Error"]["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("overloaded: "), "{msg}");
    let Decoded::Answer(refused) = decode(&mut c, json!({"HasObject":{"object_name":"m"}})) else {
        panic!("an answer at once");
    };
    assert_eq!(
        encode(&mut c, &refused),
        vec![json!({"HasObjectResult":{"object_name":"m","exists":false}})]
    );
    let sub = decode(&mut c, json!({"Subscribe":{"object_name":"a","topic":"b"}}));
    assert!(matches!(sub, Decoded::Dropped(_)), "{sub:?}");
    encode(&mut c, &Frame::reply(call.id(), b"1"));
    let sub = routed(decode(
        &mut c,
        json!({"Subscribe":{"object_name":"a","topic":"b"}}),
    ));
    assert_eq!(sub.kind(), Kind::Subscribe, "room again once answered");
}

#[test]
fn events_wait_for_every_open_answer_and_refused_subscriptions_free_their_pair() {
    let mut c = IpcBrokerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let sub = routed(decode(
        &mut c,
        json!({"Subscribe":{"object_name":"a","topic":"b"}}),
    ));
    let refused = Frame::error(sub.id(), ErrorCode::PermissionDenied, "no", b"");
    assert!(encode(&mut c, &refused).is_empty());
    let sub = routed(decode(
        &mut c,
        json!({"Subscribe":{"object_name":"a","topic":"b"}}),
    ));
    assert!(encode(&mut c, &Frame::reply(sub.id(), b"")).is_empty());
    let calls: Vec<Frame> = ["c1", "c2"]
        .iter()
        .map(|id| {
            routed(decode(
                &mut c,
                json!({"Call":{"call_id":id,"object_name":"m","method":"x","args":null}}),
            ))
        })
        .collect();
    let event = Frame::event(sub.id(), 0, "a.b", b"1");
    assert!(encode(&mut c, &event).is_empty());
    assert_eq!(encode(&mut c, &Frame::reply(calls[1].id(), b"2")).len(), 1);
    assert_eq!(
        encode(&mut c, &Frame::reply(calls[0].id(), b"1")).len(),
        2,
        "the event follows the last answer"
    );
    assert_eq!(c.outstanding(), 0);
}

/// An error's data rides in the message after `\ndata: `, the one text ipc-broker's client
/// hands on (`Err("Remote error: ...")`); a worker's error text splits back the same way.
#[test]
fn errors_carry_their_data_in_the_message() {
    let mut c = IpcBrokerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let call = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"w","object_name":"plexus","method":"wait_for","args":["x"]}}),
    ));
    let err = Frame::error(
        call.id(),
        ErrorCode::Timeout,
        "missing",
        b"{\"missing\":\n[\"x\"]}",
    );
    assert_eq!(
        encode(&mut c, &err),
        vec![json!({"Error":{"call_id":"w","object_name":"plexus",
            "message":"timeout: missing\ndata: {\"missing\": [\"x\"]}"}})]
    );
    let reg = routed(decode(
        &mut c,
        json!({"RegisterObject":{"object_name":"m"}}),
    ));
    let taken = Frame::error(reg.id(), ErrorCode::NameTaken, "taken", b"[1]");
    assert_eq!(
        encode(&mut c, &taken),
        vec![
            json!({"Error":{"call_id":null,"object_name":"m","message":"name_taken: taken\ndata: [1]"}})
        ]
    );
    assert_eq!(
        encode(
            &mut c,
            &Frame::error(0, ErrorCode::ShuttingDown, "bye", b"7")
        ),
        vec![
            json!({"Error":{"call_id":null,"object_name":"","message":"shutting_down: bye\ndata: 7"}})
        ],
        "an error for no request of the peer (id 0) keeps its data too"
    );
    let back = routed(decode(
        &mut c,
        json!({"Error":{"call_id":"78","object_name":"math",
            "message":"no_such_method: nope\ndata: {\"methods\":[\"add\"]}"}}),
    ));
    assert_eq!(
        (back.id(), back.error_code(), back.string(0)),
        (78, ErrorCode::NoSuchMethod, "nope")
    );
    assert_eq!(&back.payload()[..], br#"{"methods":["add"]}"#);
}

/// No packet over ipc-broker's limit: an error that would not fit loses its data and keeps the
/// start of its message, and says so.
#[test]
fn errors_too_large_for_a_packet_are_cut() {
    let mut c = IpcBrokerCodec::new(1 << 24, DEFAULT_MAX_OUTSTANDING);
    let call = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"c","object_name":"m","method":"x","args":null}}),
    ));
    let data = format!("\"{}\"", "d".repeat(MAX_PACKET));
    let message = "\u{1}".repeat(20_000);
    let mut dst = BytesMut::new();
    let err = Frame::error(call.id(), ErrorCode::Internal, &message, data.as_bytes());
    c.encode(&err, &mut dst, &mut Vec::new());
    assert!(dst.len() - 4 <= MAX_PACKET, "{} bytes", dst.len() - 4);
    let body = take_packet(&mut dst, u32::MAX)
        .expect("valid")
        .expect("a packet");
    let v: Value = serde_json::from_slice(&body).expect("json");
    let expected = format!(
        "internal: {} [cut to fit ipc-broker's 65536-byte packets: 8192 of 20000 message bytes kept, 65538 data bytes left out]",
        "\u{1}".repeat(8192)
    );
    assert_eq!(
        v,
        json!({"Error":{"call_id":"c","object_name":"m","message":expected}})
    );
    let mut dst = BytesMut::new();
    c.encode(
        &Frame::error(0, ErrorCode::Internal, &message, b""),
        &mut dst,
        &mut Vec::new(),
    );
    assert!(dst.len() - 4 <= MAX_PACKET, "{} bytes", dst.len() - 4);
}

/// Events the codec does not write are counted for the broker, which counts them dropped.
#[test]
fn events_not_written_are_counted() {
    let mut c = IpcBrokerCodec::new(1 << 24, DEFAULT_MAX_OUTSTANDING);
    let sub = routed(decode(
        &mut c,
        json!({"Subscribe":{"object_name":"s","topic":"t"}}),
    ));
    encode(&mut c, &Frame::reply(sub.id(), b""));
    assert_eq!(c.take_dropped_events(), 0);
    let big = format!("\"{}\"", "x".repeat(MAX_PACKET));
    assert!(encode(&mut c, &Frame::event(sub.id(), 0, "s.t", big.as_bytes())).is_empty());
    assert!(encode(&mut c, &Frame::event(sub.id() + 1, 0, "s.t", b"1")).is_empty());
    assert_eq!(
        c.take_dropped_events(),
        2,
        "too large, and no such subscription"
    );
    assert_eq!(c.take_dropped_events(), 0, "taking resets the count");

    let call = routed(decode(
        &mut c,
        json!({"Call":{"call_id":"c","object_name":"m","method":"x","args":null}}),
    ));
    let event = format!("\"{}\"", "e".repeat(60_000));
    let event = Frame::event(sub.id(), 0, "s.t", event.as_bytes());
    let mut held = 0;
    while c.take_dropped_events() == 0 {
        assert!(
            encode(&mut c, &event).is_empty(),
            "held while the call waits"
        );
        held += 1;
    }
    let fit = 1024 * 1024 / (4 + encode_len(&event));
    assert_eq!(held, fit + 1, "the first event past 1 MiB held is dropped");
    let out = encode(&mut c, &Frame::reply(call.id(), b"1"));
    assert_eq!(out.len(), 1 + fit, "the answer, then the events held");
}

/// The packet size of an event on subscription `s`/`t`.
fn encode_len(event: &Frame) -> usize {
    let payload = event.payload();
    let args: Value = serde_json::from_slice(&payload).expect("json");
    json!({"Event":{"object_name":"s","topic":"t","args":args}})
        .to_string()
        .len()
}
