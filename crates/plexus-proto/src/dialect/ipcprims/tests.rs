use bytes::BytesMut;
use serde_json::{Value, json};

use super::*;
use crate::dialect::{DEFAULT_MAX_OUTSTANDING, Decoded, DialectCodec};
use crate::frame::Frame;
use crate::kind::Kind;

fn frame(channel: u16, msg: &Value) -> BytesMut {
    let mut buf = BytesMut::new();
    put_frame(&mut buf, channel, msg.to_string().as_bytes());
    buf
}

fn decode(c: &mut IpcPrimsCodec, channel: u16, msg: Value) -> Vec<Decoded> {
    let mut buf = frame(channel, &msg);
    let mut out = Vec::new();
    c.decode(&mut buf, &mut out).expect("decodes");
    assert!(buf.is_empty());
    out
}

fn one(mut out: Vec<Decoded>) -> Decoded {
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

fn routed(d: Decoded) -> Frame {
    match d {
        Decoded::Route(f) => f,
        other => panic!("expected a routed frame, got {other:?}"),
    }
}

/// The frames the codec writes for `frame`: (channel, JSON).
fn encode(c: &mut IpcPrimsCodec, frame: &Frame) -> Vec<(u16, Value)> {
    let mut dst = BytesMut::new();
    let mut bounce = Vec::new();
    c.encode(frame, &mut dst, &mut bounce);
    assert!(bounce.is_empty(), "{bounce:?}");
    let mut out = Vec::new();
    while let Some((channel, payload)) = take_frame(&mut dst, u32::MAX).expect("frames") {
        out.push((channel, serde_json::from_slice(&payload).expect("JSON")));
    }
    out
}

/// A codec whose peer shook hands asking for `channels`, with the handshake answered.
fn open(channels: &[u16]) -> IpcPrimsCodec {
    let mut c = IpcPrimsCodec::new(1 << 20, DEFAULT_MAX_OUTSTANDING);
    let hello = json!({"protocol":"ipcprims","version":"1.0","channels":channels,"auth_token":"t"});
    let ping = routed(one(decode(&mut c, CONTROL, hello)));
    assert_eq!((ping.string(0), ping.string(1)), ("plexus", "ping"));
    let out = encode(
        &mut c,
        &Frame::reply(ping.id(), br#"{"pong":true,"conn_id":7}"#),
    );
    let mut expected: Vec<u16> = Vec::new();
    for &c in channels {
        if (1..=4).contains(&c) && !expected.contains(&c) {
            expected.push(c);
        }
    }
    assert_eq!(
        out,
        vec![(
            CONTROL,
            json!({"protocol":"ipcprims","version":"1.0","channels":expected,"peer_id":"plexus-7"})
        )]
    );
    c
}

#[test]
fn frames_are_magic_length_channel_payload() {
    let mut buf = BytesMut::new();
    put_frame(&mut buf, 258, b"hi");
    assert_eq!(&buf[..], b"IP\x02\x00\x00\x00\x02\x01hi");
    for cut in 0..buf.len() {
        let mut part = BytesMut::from(&buf[..cut]);
        assert_eq!(take_frame(&mut part, 64).expect("fine so far"), None);
    }
    let (channel, payload) = take_frame(&mut buf, 64).expect("valid").expect("whole");
    assert_eq!((channel, &payload[..]), (258, &b"hi"[..]));
    let err = take_frame(&mut BytesMut::from(&b"IX"[..]), 64).expect_err("no magic");
    assert_eq!(err.code, ErrorCode::BadFrame);
    let err = take_frame(&mut BytesMut::from(&b"IP\xff\x00\x00\x00\x01\x00"[..]), 64)
        .expect_err("too big");
    assert_eq!(err.code, ErrorCode::FrameTooLarge);
}

#[test]
fn the_handshake_negotiates_the_channels_plexus_serves() {
    let c = open(&[1, 2, 256, 4, 2]);
    assert_eq!(c.channels, vec![1, 2, 4]);
    assert_eq!(negotiate(&[0, 1]).map_err(|_| ()), Err(()));
    assert!(version_compatible("1.3"));
    assert!(!version_compatible("2.0"));
    assert!(!version_compatible("1.0.1"));
}

#[test]
fn refused_handshakes_close_without_an_answer() {
    for (channel, msg, code) in [
        (
            COMMAND,
            json!({"protocol":"ipcprims","version":"1.0","channels":[1]}),
            ErrorCode::BadFrame,
        ),
        (
            CONTROL,
            json!({"protocol":"other","version":"1.0","channels":[1]}),
            ErrorCode::UnsupportedVersion,
        ),
        (
            CONTROL,
            json!({"protocol":"ipcprims","version":"2.0","channels":[1]}),
            ErrorCode::UnsupportedVersion,
        ),
        (
            CONTROL,
            json!({"protocol":"ipcprims","version":"1.0","channels":[300]}),
            ErrorCode::BadFrame,
        ),
        (CONTROL, json!({"protocol":"ipcprims"}), ErrorCode::BadFrame),
    ] {
        let mut c = IpcPrimsCodec::new(1 << 20, 8);
        let mut out = Vec::new();
        let err = c
            .decode(&mut frame(channel, &msg), &mut out)
            .expect_err("refused");
        assert_eq!(err.code, code, "{msg}");
        assert!(encode(&mut c, &Frame::error(0, err.code, &err.message, b"")).is_empty());
    }
}

#[test]
fn json_rpc_calls_get_json_rpc_answers_on_command() {
    let mut c = open(&[1, 4]);
    let call = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":"a","method":"org.x.math.add","params":{"a":1},"timeout_ms":500}),
    )));
    assert_eq!(
        (call.kind(), call.string(0), call.string(1), call.aux()),
        (Kind::Call, "org.x.math", "add", 500)
    );
    assert_eq!(&call.payload()[..], br#"{"a":1}"#);
    assert_eq!(
        encode(&mut c, &Frame::reply(call.id(), b"3")),
        vec![(COMMAND, json!({"jsonrpc":"2.0","id":"a","result":3}))]
    );
    let call = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":2,"method":"m.x"}),
    )));
    assert_eq!(
        encode(
            &mut c,
            &Frame::error(
                call.id(),
                ErrorCode::NoSuchObject,
                "no m",
                br#"{"object":"m"}"#
            )
        ),
        vec![(
            COMMAND,
            json!({"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"no m","data":{"object":"m"}}})
        )]
    );
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn bad_commands_are_answered_on_command() {
    let mut c = open(&[1]);
    for (msg, id, code) in [
        (
            json!({"jsonrpc":"2.0","id":3,"method":"nodot"}),
            json!(3),
            10,
        ),
        (json!({"jsonrpc":"2.0","id":4}), json!(4), 7),
        (
            json!({"jsonrpc":"2.0","id":5,"method":"subscribe","params":{}}),
            json!(5),
            10,
        ),
        (
            json!({"jsonrpc":"2.0","id":6,"method":"subscribe","params":{"pattern":"a"}}),
            json!(6),
            10,
        ),
    ] {
        let Decoded::Answer(err) = one(decode(&mut c, COMMAND, msg.clone())) else {
            panic!("answered at once: {msg}");
        };
        let out = encode(&mut c, &err);
        assert_eq!(out[0].0, COMMAND);
        assert_eq!(out[0].1["id"], id);
        assert_eq!(out[0].1["error"]["code"], code, "{msg}");
    }
    let mut buf = BytesMut::new();
    put_frame(&mut buf, COMMAND, b"not json");
    let mut out = Vec::new();
    c.decode(&mut buf, &mut out).expect("goes on");
    let Decoded::Answer(err) = one(out) else {
        panic!("answered");
    };
    let out = encode(&mut c, &err);
    assert_eq!(out[0].1["id"], Value::Null);
    assert_eq!(out[0].1["error"]["code"], 7);
}

#[test]
fn notifications_and_data_frames_publish() {
    let mut c = open(&[1, 2, 3, 4]);
    let p = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","method":"a.b","params":[1]}),
    )));
    assert_eq!((p.kind(), p.string(0), p.id()), (Kind::Publish, "a.b", 0));
    let p = routed(one(decode(
        &mut c,
        DATA,
        json!({"topic":"sensor.t","payload":21.5}),
    )));
    assert_eq!((p.string(0), &p.payload()[..]), ("sensor.t", &b"21.5"[..]));
    let p = routed(one(decode(&mut c, TELEMETRY, json!({"topic":"cpu"}))));
    assert!(p.payload().is_empty());
    let Decoded::Answer(err) = one(decode(&mut c, DATA, json!({"topic":"bad topic"}))) else {
        panic!("refused");
    };
    let out = encode(&mut c, &err);
    assert_eq!(out[0].0, ERROR);
    assert_eq!(out[0].1["error"]["code"], 10);
    let ack = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":9,"method":"publish","params":{"topic":"a","payload":1}}),
    )));
    assert_eq!(
        (ack.kind(), ack.flags()),
        (Kind::Publish, crate::kind::flags::ACK)
    );
    assert_eq!(
        encode(
            &mut c,
            &Frame::reply(ack.id(), br#"{"delivered":1,"dropped":0}"#)
        ),
        vec![(
            COMMAND,
            json!({"jsonrpc":"2.0","id":9,"result":{"delivered":1,"dropped":0}})
        )]
    );
}

#[test]
fn subscriptions_deliver_events_on_their_channel() {
    let mut c = open(&[1, 2, 3]);
    let sub = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"pattern":"sensor.>"}}),
    )));
    assert_eq!((sub.kind(), sub.string(0)), (Kind::Subscribe, "sensor.>"));
    assert_eq!(
        encode(&mut c, &Frame::reply(sub.id(), b"")),
        vec![(
            COMMAND,
            json!({"jsonrpc":"2.0","id":1,"result":{"subscription":sub.id()}})
        )]
    );
    let tel = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"pattern":"cpu","channel":3}}),
    )));
    encode(&mut c, &Frame::reply(tel.id(), b""));
    assert_eq!(
        encode(&mut c, &Frame::event(sub.id(), 2, "sensor.t", b"21")),
        vec![(DATA, json!({"topic":"sensor.t","payload":21,"dropped":2}))]
    );
    assert_eq!(
        encode(&mut c, &Frame::event(tel.id(), 0, "cpu", b"")),
        vec![(TELEMETRY, json!({"topic":"cpu","payload":null}))]
    );
    let out = decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":3,"method":"unsubscribe","params":{"subscription":sub.id()}}),
    );
    assert_eq!(out.len(), 2);
    let unsub = routed(out[0].clone());
    assert_eq!((unsub.kind(), unsub.id()), (Kind::Unsubscribe, sub.id()));
    let ping = routed(out[1].clone());
    assert_eq!(
        encode(&mut c, &Frame::pong(ping.id(), b"")),
        vec![(COMMAND, json!({"jsonrpc":"2.0","id":3,"result":null}))]
    );
    assert!(encode(&mut c, &Frame::event(sub.id(), 0, "sensor.t", b"1")).is_empty());
}

#[test]
fn the_broker_calls_a_registered_peer_with_json_rpc() {
    let mut c = open(&[1]);
    let reg = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":1,"method":"register","params":{"name":"echo"}}),
    )));
    assert_eq!((reg.kind(), reg.string(0)), (Kind::Register, "echo"));
    encode(&mut c, &Frame::reply(reg.id(), b""));
    assert_eq!(
        encode(&mut c, &Frame::call(900, "echo", "say", 0, br#"{"x":1}"#)),
        vec![(
            COMMAND,
            json!({"jsonrpc":"2.0","id":900,"method":"echo.say","params":{"x":1}})
        )]
    );
    let reply = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":900,"result":"ok"}),
    )));
    assert_eq!(
        (reply.kind(), reply.id(), &reply.payload()[..]),
        (Kind::Reply, 900, &br#""ok""#[..])
    );
    let err = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":901,"error":{"code":-32601,"message":"nope"}}),
    )));
    assert_eq!(
        (err.kind(), err.error_code(), err.string(0)),
        (Kind::Error, ErrorCode::Internal, "nope")
    );
}

#[test]
fn control_pings_and_shutdowns_are_answered() {
    let mut c = open(&[1, 2]);
    let ping = routed(one(decode(&mut c, CONTROL, json!({"type":"ping"}))));
    assert_eq!(ping.kind(), Kind::Ping);
    assert_eq!(
        encode(&mut c, &Frame::pong(ping.id(), b"")),
        vec![(CONTROL, json!({"type":"pong"}))]
    );
    let sub = routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"pattern":"a"}}),
    )));
    encode(&mut c, &Frame::reply(sub.id(), b""));
    let bye = routed(one(decode(
        &mut c,
        CONTROL,
        json!({"type":"shutdown_request"}),
    )));
    assert_eq!(
        encode(&mut c, &Frame::pong(bye.id(), b"")),
        vec![(CONTROL, json!({"type":"shutdown_ack"}))]
    );
    assert!(matches!(
        one(decode(
            &mut c,
            COMMAND,
            json!({"jsonrpc":"2.0","id":2,"method":"a.b"})
        )),
        Decoded::Dropped(_)
    ));
    assert!(encode(&mut c, &Frame::event(sub.id(), 0, "a", b"1")).is_empty());
}

#[test]
fn unknown_control_and_unnegotiated_channels_are_told_on_error() {
    let mut c = open(&[1, 4]);
    for (channel, msg) in [
        (CONTROL, json!({"type":"dance"})),
        (DATA, json!({"topic":"a"})),
    ] {
        let Decoded::Answer(err) = one(decode(&mut c, channel, msg)) else {
            panic!("an error");
        };
        let out = encode(&mut c, &err);
        assert_eq!(out[0].0, ERROR);
        assert_eq!(out[0].1["id"], Value::Null);
    }
    let mut c = open(&[1]);
    let Decoded::Answer(err) = one(decode(&mut c, DATA, json!({"topic":"a"}))) else {
        panic!("an error");
    };
    assert!(
        encode(&mut c, &err).is_empty(),
        "no ERROR channel to tell it on"
    );
}

#[test]
fn requests_past_the_limit_are_refused_overloaded() {
    let mut c = IpcPrimsCodec::new(1 << 20, 2);
    let hello = json!({"protocol":"ipcprims","version":"1.0","channels":[1]});
    routed(one(decode(&mut c, CONTROL, hello)));
    routed(one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":1,"method":"a.b"}),
    )));
    let Decoded::Answer(err) = one(decode(
        &mut c,
        COMMAND,
        json!({"jsonrpc":"2.0","id":2,"method":"a.b"}),
    )) else {
        panic!("refused");
    };
    assert_eq!(err.error_code(), ErrorCode::Overloaded);
}

#[test]
fn the_bridge_reads_answers_by_id() {
    let req: Value = serde_json::from_slice(&request(
        5,
        "say",
        &RawValue::from_string("[1]".into()).expect("raw"),
    ))
    .expect("JSON");
    assert_eq!(
        req,
        json!({"jsonrpc":"2.0","id":5,"method":"say","params":[1]})
    );
    let r = |v: Value| parse_answer(v.to_string().as_bytes(), 5);
    assert_eq!(
        r(json!({"jsonrpc":"2.0","id":5,"result":{"a":1}})),
        RpcAnswer::Result(RawValue::from_string(r#"{"a":1}"#.into()).expect("raw"))
    );
    assert_eq!(
        r(json!({"jsonrpc":"2.0","id":4,"result":1})),
        RpcAnswer::Other
    );
    assert_eq!(
        r(json!({"jsonrpc":"2.0","id":5,"error":{"code":2,"message":"no"}})),
        RpcAnswer::Error(ErrorCode::NoSuchMethod, "no".into(), None)
    );
    let echo = json!({"jsonrpc":"2.0","id":5,"method":"say"}).to_string();
    assert_eq!(
        parse_answer(echo.as_bytes(), 5),
        RpcAnswer::Result(RawValue::from_string(echo.clone()).expect("raw")),
        "an echo is the result"
    );
    assert_eq!(
        parse_answer(b"plain", 5),
        RpcAnswer::Result(RawValue::from_string(r#""plain""#.into()).expect("raw"))
    );
}

proptest::proptest! {
    #[test]
    fn any_frames_decode_the_same_however_cut(
        frames in proptest::collection::vec(
            (0u16..6, proptest::collection::vec(proptest::sample::select(b"{}[]\":,12ab".to_vec()), 0..24)),
            0..6),
        cut in 0usize..256,
    ) {
        let mut stream = BytesMut::new();
        put_frame(&mut stream, CONTROL, br#"{"protocol":"ipcprims","version":"1.0","channels":[1,2,3,4]}"#);
        for (channel, payload) in &frames {
            put_frame(&mut stream, *channel, payload);
        }
        let cut = cut.min(stream.len());
        let mut whole = IpcPrimsCodec::new(1 << 16, 4);
        let mut out = Vec::new();
        whole.decode(&mut stream.clone(), &mut out).expect("valid frames");
        let mut parts = IpcPrimsCodec::new(1 << 16, 4);
        let mut chunked = Vec::new();
        let mut buf = BytesMut::from(&stream[..cut]);
        parts.decode(&mut buf, &mut chunked).expect("valid so far");
        buf.extend_from_slice(&stream[cut..]);
        parts.decode(&mut buf, &mut chunked).expect("valid frames");
        proptest::prop_assert_eq!(out, chunked);
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let mut c = IpcPrimsCodec::new(64, 4);
        let mut buf = BytesMut::from(&b"IP"[..]);
        buf.extend_from_slice(&bytes);
        let mut out = Vec::new();
        let _ = c.decode(&mut buf, &mut out);
    }
}
