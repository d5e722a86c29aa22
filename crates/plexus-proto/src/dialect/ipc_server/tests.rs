use bytes::BytesMut;
use serde_json::{Value, json};

use super::*;
use crate::dialect::{DEFAULT_MAX_OUTSTANDING, Decoded, DialectCodec};
use crate::frame::Frame;
use crate::kind::Kind;

fn codec() -> IpcServerCodec {
    IpcServerCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING)
}

fn decode_bytes(c: &mut IpcServerCodec, bytes: &[u8]) -> Vec<Decoded> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    c.decode(&mut buf, &mut out).expect("decodes");
    out
}

fn decode(c: &mut IpcServerCodec, msg: Value) -> Decoded {
    let mut out = decode_bytes(c, msg.to_string().as_bytes());
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

fn routed(d: Decoded) -> Frame {
    match d {
        Decoded::Route(f) => f,
        other => panic!("expected a routed frame, got {other:?}"),
    }
}

fn encode(c: &mut IpcServerCodec, frame: &Frame) -> Vec<Frame> {
    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    c.encode(frame, &mut dst, &mut bounce);
    assert!(dst.is_empty(), "messages are held for next_message");
    bounce
}

/// Every message the codec would write now, each from its own `next_message`.
fn drain(c: &mut IpcServerCodec) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let mut dst = BytesMut::new();
        if !c.next_message(&mut dst) {
            return out;
        }
        out.push(serde_json::from_slice(&dst).expect("one JSON message"));
    }
}

#[test]
fn the_splitter_finds_objects_however_the_bytes_arrive() {
    let stream = br#" {"a":"}{\"","b":[{"c":1}]}
{"d":{}}{"e":"\\"}"#;
    for cut in 0..stream.len() {
        let mut s = Splitter::default();
        let mut buf = BytesMut::from(&stream[..cut]);
        let mut found = Vec::new();
        while let Some(m) = s.take(&mut buf, 1024).expect("fine") {
            found.push(m);
        }
        buf.extend_from_slice(&stream[cut..]);
        while let Some(m) = s.take(&mut buf, 1024).expect("fine") {
            found.push(m);
        }
        let found: Vec<Value> = found
            .iter()
            .map(|m| serde_json::from_slice(m).expect("JSON"))
            .collect();
        assert_eq!(
            found,
            vec![
                json!({"a":"}{\"","b":[{"c":1}]}),
                json!({"d":{}}),
                json!({"e":"\\"})
            ],
            "cut at {cut}"
        );
    }
}

#[test]
fn bytes_outside_objects_and_endless_objects_end_the_stream() {
    let mut s = Splitter::default();
    let err = s
        .take(&mut BytesMut::from(&b"  [1]"[..]), 1024)
        .expect_err("not an object");
    assert_eq!(err.code, ErrorCode::BadFrame);
    let mut s = Splitter::default();
    let mut buf = BytesMut::from(&br#"{"a":""#[..]);
    buf.extend_from_slice(&[b'x'; 64]);
    let err = s.take(&mut buf, 32).expect_err("too long");
    assert_eq!(err.code, ErrorCode::FrameTooLarge);
    let mut s = Splitter::default();
    let mut whole = BytesMut::from(&br#"{"a":"0123456789012345678901234567890123456789"}"#[..]);
    let err = s.take(&mut whole, 32).expect_err("too long, even whole");
    assert_eq!(err.code, ErrorCode::FrameTooLarge);
}

#[test]
fn registering_answers_success_or_the_error() {
    let mut c = codec();
    let f = routed(decode(&mut c, json!({"reg_object":"mango"})));
    assert_eq!((f.kind(), f.string(0)), (Kind::Register, "mango"));
    assert_eq!(c.outstanding(), 1);
    encode(&mut c, &Frame::reply(f.id(), b""));
    assert_eq!(drain(&mut c), vec![json!({"success":"OK"})]);
    assert_eq!(c.outstanding(), 0);

    let f = routed(decode(&mut c, json!({"reg_object":"mango"})));
    encode(
        &mut c,
        &Frame::error(f.id(), ErrorCode::NameTaken, "taken", b""),
    );
    assert_eq!(drain(&mut c), vec![json!({"error":"name_taken: taken"})]);
}

#[test]
fn calls_answer_response_or_error_in_request_order() {
    let mut c = codec();
    let first = routed(decode(
        &mut c,
        json!({"object":"mango","method":"login","param":{"provider":"x"}}),
    ));
    assert_eq!(
        (first.kind(), first.string(0), first.string(1)),
        (Kind::Call, "mango", "login")
    );
    assert_eq!(&first.payload()[..], br#"{"provider":"x"}"#);
    let second = routed(decode(&mut c, json!({"object":"apple","method":"login"})));
    assert!(second.payload().is_empty(), "no param is null");

    encode(
        &mut c,
        &Frame::error(second.id(), ErrorCode::NoSuchObject, "no apple", b""),
    );
    assert!(drain(&mut c).is_empty(), "the first answer comes first");
    encode(&mut c, &Frame::reply(first.id(), br#""hi""#));
    assert_eq!(
        drain(&mut c),
        vec![
            json!({"response":"hi"}),
            json!({"error":"no_such_object: no apple"})
        ]
    );
}

#[test]
fn list_asks_wait_for_and_echoes_or_empties() {
    let mut c = codec();
    let f = routed(decode(&mut c, json!({"list":["a","b"]})));
    assert_eq!((f.string(0), f.string(1)), ("plexus", "wait_for"));
    let params: Value = serde_json::from_slice(&f.payload()).expect("JSON");
    assert_eq!(params, json!({"names":["a","b"],"timeout_ms":0}));
    encode(&mut c, &Frame::reply(f.id(), br#"{"names":["a","b"]}"#));
    assert_eq!(drain(&mut c), vec![json!({"list":["a","b"]})]);

    let f = routed(decode(&mut c, json!({"list":["a","z"]})));
    encode(
        &mut c,
        &Frame::error(
            f.id(),
            ErrorCode::Timeout,
            "missing",
            br#"{"missing":["z"]}"#,
        ),
    );
    assert_eq!(drain(&mut c), vec![json!({"list":[]})]);
}

#[test]
fn a_list_whose_query_would_pass_max_frame_is_refused_not_routed() {
    let msg = json!({"list":["mangomango","apple","pear"]}).to_string();
    let mut c = IpcServerCodec::new(msg.len() as u32, DEFAULT_MAX_OUTSTANDING);
    let out = decode_bytes(&mut c, msg.as_bytes());
    match &out[..] {
        [Decoded::Answer(f)] => {
            assert_eq!(f.error_code(), ErrorCode::FrameTooLarge);
            assert!(f.string(0).contains("over max_frame"), "{}", f.string(0));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn subscriptions_are_silent_once_per_name_and_deliver_events() {
    let mut c = codec();
    let f = routed(decode(&mut c, json!({"event_name":"weather"})));
    assert_eq!((f.kind(), f.string(0)), (Kind::Subscribe, "weather"));
    assert!(matches!(
        decode(&mut c, json!({"event_name":"weather"})),
        Decoded::Dropped(_)
    ));
    assert!(matches!(
        decode(&mut c, json!({"event_name":"your event here"})),
        Decoded::Dropped(_)
    ));
    encode(&mut c, &Frame::reply(f.id(), b""));
    assert!(drain(&mut c).is_empty(), "a subscription has no answer");
    assert_eq!(c.outstanding(), 0);
    encode(&mut c, &Frame::event(f.id(), 0, "weather", br#"{"t":21}"#));
    encode(&mut c, &Frame::event(f.id(), 0, "weather", b""));
    assert_eq!(
        drain(&mut c),
        vec![
            json!({"event":"weather","result":{"t":21}}),
            json!({"event":"weather","result":null})
        ]
    );
}

#[test]
fn a_refused_subscription_can_be_asked_again() {
    let mut c = codec();
    let f = routed(decode(&mut c, json!({"event_name":"w"})));
    encode(
        &mut c,
        &Frame::error(f.id(), ErrorCode::InvalidParams, "no", b""),
    );
    routed(decode(&mut c, json!({"event_name":"w"})));
}

#[test]
fn events_are_published_without_an_answer() {
    let mut c = codec();
    let f = routed(decode(&mut c, json!({"event":"weather","result":[1,2]})));
    assert_eq!(
        (f.kind(), f.string(0), f.id()),
        (Kind::Publish, "weather", 0)
    );
    assert_eq!(&f.payload()[..], b"[1,2]");
    assert!(matches!(
        decode(&mut c, json!({"event":"bad topic","result":1})),
        Decoded::Dropped(_)
    ));
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn a_worker_gets_one_call_at_a_time() {
    let mut c = codec();
    for id in [11, 12, 13] {
        let bounced = encode(&mut c, &Frame::call(id, "mango", "peel", 0, br#"{"n":1}"#));
        assert!(bounced.is_empty());
    }
    assert_eq!(
        drain(&mut c),
        vec![json!({"object":"mango","method":"peel","param":{"n":1}})]
    );
    encode(&mut c, &Frame::cancel(12));
    let answer = routed(decode(&mut c, json!({"response":"peeled"})));
    assert_eq!((answer.kind(), answer.id()), (Kind::Reply, 11));
    assert_eq!(&answer.payload()[..], br#""peeled""#);
    assert_eq!(drain(&mut c).len(), 1, "call 12 was cancelled; 13 goes");
    let failed = routed(decode(&mut c, json!({"error":"no_such_method: peel"})));
    assert_eq!((failed.kind(), failed.id()), (Kind::Error, 13));
    assert_eq!(failed.error_code(), ErrorCode::NoSuchMethod);
    assert!(matches!(
        decode(&mut c, json!({"response":1})),
        Decoded::Dropped(_)
    ));
    encode(&mut c, &Frame::call(14, "mango", "x", 0, b""));
    let call = drain(&mut c);
    assert_eq!(call, vec![json!({"object":"mango","method":"x"})]);
    let failed = routed(decode(&mut c, json!({"error":{"why":"no"}})));
    assert_eq!(failed.error_code(), ErrorCode::Internal);
    assert_eq!(failed.string(0), r#"{"why":"no"}"#);
}

#[test]
fn queued_calls_past_the_limit_bounce() {
    let mut c = IpcServerCodec::new(1 << 20, 2);
    for id in 1..=2 {
        assert!(encode(&mut c, &Frame::call(id, "o", "m", 0, b"")).is_empty());
    }
    let bounced = encode(&mut c, &Frame::call(3, "o", "m", 0, b""));
    assert_eq!(bounced.len(), 1);
    assert_eq!(bounced[0].error_code(), ErrorCode::Overloaded);
}

#[test]
fn events_and_calls_wait_while_the_peer_waits_for_an_answer() {
    let mut c = codec();
    let sub = routed(decode(&mut c, json!({"event_name":"w"})));
    encode(&mut c, &Frame::reply(sub.id(), b""));
    let call = routed(decode(&mut c, json!({"object":"o","method":"m"})));
    encode(&mut c, &Frame::event(sub.id(), 0, "w", b"1"));
    encode(&mut c, &Frame::call(50, "mine", "m", 0, b""));
    assert!(drain(&mut c).is_empty());
    encode(&mut c, &Frame::reply(call.id(), b"2"));
    assert_eq!(
        drain(&mut c),
        vec![json!({"response":2}), json!({"object":"mine","method":"m"})],
        "the call goes first; the event waits for its answer"
    );
    routed(decode(&mut c, json!({"response":null})));
    assert_eq!(drain(&mut c), vec![json!({"event":"w","result":1})]);
}

#[test]
fn requests_past_the_limit_are_refused_in_turn() {
    let mut c = IpcServerCodec::new(1 << 20, 1);
    let first = routed(decode(&mut c, json!({"object":"o","method":"m"})));
    assert!(matches!(
        decode(&mut c, json!({"reg_object":"x"})),
        Decoded::Dropped(_)
    ));
    assert!(matches!(
        decode(&mut c, json!({"event_name":"x"})),
        Decoded::Dropped(_)
    ));
    encode(&mut c, &Frame::reply(first.id(), b"1"));
    let out = drain(&mut c);
    assert_eq!(out[0], json!({"response":1}));
    let refusal = out[1]["error"].as_str().unwrap_or_default();
    assert!(refusal.starts_with("overloaded: "), "{refusal}");
    assert_eq!(out.len(), 2);
    assert_eq!(c.outstanding(), 0);

    let mut c = IpcServerCodec::new(1 << 20, 0);
    assert!(matches!(
        decode(&mut c, json!({"reg_object":"x"})),
        Decoded::Dropped(_)
    ));
    assert_eq!(drain(&mut c).len(), 1, "refused at once");
}

#[test]
fn messages_that_mean_nothing_get_an_error_in_turn() {
    let mut c = codec();
    let Decoded::Answer(err) = decode(&mut c, json!({"hello":1})) else {
        panic!("an answer");
    };
    encode(&mut c, &err);
    let out = drain(&mut c);
    let text = out[0]["error"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("bad_frame: not an ipc-server message"),
        "{text}"
    );
    let mut out = decode_bytes(&mut c, b"{\"a\":tru}");
    let Some(Decoded::Answer(err)) = out.pop() else {
        panic!("an answer");
    };
    assert_eq!(err.error_code(), ErrorCode::BadFrame);
    assert!(matches!(
        decode(&mut c, json!({"success":"OK"})),
        Decoded::Dropped(_)
    ));
}

#[test]
fn errors_for_no_request_are_told_as_error_messages() {
    let mut c = codec();
    encode(
        &mut c,
        &Frame::error(0, ErrorCode::BadFrame, "expected a JSON object", b""),
    );
    assert_eq!(
        drain(&mut c),
        vec![json!({"error":"bad_frame: expected a JSON object"})]
    );
}

#[test]
fn a_message_never_fills_the_clients_last_read() {
    assert_eq!(wire_message(b"{}".to_vec()), b"{}");
    let exact = vec![b' '; CHUNK_SIZE * 2];
    assert_eq!(wire_message(exact).len(), CHUNK_SIZE * 2 + 1);
}

proptest::proptest! {
    #[test]
    fn any_bytes_decode_the_same_however_cut(
        bytes in proptest::collection::vec(
            proptest::sample::select(b"{}[]\"\\ :,ab1\n".to_vec()), 0..96),
        cut in 0usize..96,
    ) {
        let cut = cut.min(bytes.len());
        let mut whole = codec();
        let mut out = Vec::new();
        let whole_result = whole.decode(&mut BytesMut::from(&bytes[..]), &mut out);
        let mut parts = codec();
        let mut chunked = Vec::new();
        let mut buf = BytesMut::from(&bytes[..cut]);
        let mut parts_result = parts.decode(&mut buf, &mut chunked);
        if parts_result.is_ok() {
            buf.extend_from_slice(&bytes[cut..]);
            parts_result = parts.decode(&mut buf, &mut chunked);
        }
        proptest::prop_assert_eq!(out, chunked);
        proptest::prop_assert_eq!(whole_result.map_err(|f| f.code), parts_result.map_err(|f| f.code));
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let mut c = IpcServerCodec::new(64, 4);
        let mut out = Vec::new();
        let _ = c.decode(&mut BytesMut::from(&bytes[..]), &mut out);
    }
}
