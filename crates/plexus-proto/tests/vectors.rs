//! Checks `vectors.json` (frames with their meaning, shared with clients in other languages)
//! against the encoder and decoder. `PLEXUS_WRITE_VECTORS=1` rewrites the file.

use bytes::BytesMut;
use plexus_proto::{DEFAULT_MAX_FRAME, ErrorCode, Frame, Kind, decode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Vector {
    name: String,
    meaning: String,
    kind: String,
    kind_code: u8,
    id: u64,
    aux: u32,
    flags: u8,
    strings: Vec<String>,
    payload: String,
    hex: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn vector(name: &str, meaning: &str, frame: Frame) -> Vector {
    let strings = (0..usize::from(frame.header().nstr))
        .map(|i| frame.string(i).to_owned())
        .collect();
    Vector {
        name: name.to_owned(),
        meaning: meaning.to_owned(),
        kind: frame.kind().name().to_owned(),
        kind_code: frame.kind() as u8,
        id: frame.id(),
        aux: frame.aux(),
        flags: frame.flags(),
        strings,
        payload: String::from_utf8(frame.payload().to_vec()).unwrap_or_default(),
        hex: hex(&frame.to_bytes()),
    }
}

fn expected() -> Vec<Vector> {
    vec![
        vector(
            "hello",
            "client 'calc-worker' opens the session",
            Frame::hello("calc-worker"),
        ),
        vector(
            "welcome",
            "broker 0.1.0 accepts: connection id 7, frames up to 16 MiB",
            Frame::welcome(7, 16 * 1024 * 1024, "0.1.0"),
        ),
        vector(
            "register",
            "request 1: own the name 'math' alone",
            Frame::register(1, "math", false),
        ),
        vector(
            "register_shared",
            "request 2: join the queue group 'jobs'",
            Frame::register(2, "jobs", true),
        ),
        vector(
            "unregister",
            "request 3: give up 'math'",
            Frame::unregister(3, "math"),
        ),
        vector(
            "call",
            "call 42: math.add({\"a\":10,\"b\":32}) with a 5000 ms timeout",
            Frame::call(42, "math", "add", 5000, br#"{"a":10,"b":32}"#),
        ),
        vector(
            "call_default_timeout",
            "call 43: plexus.list() with the broker's default timeout",
            Frame::call(43, "plexus", "list", 0, b""),
        ),
        vector(
            "reply",
            "call 42 succeeded with {\"sum\":42}",
            Frame::reply(42, br#"{"sum":42}"#),
        ),
        vector(
            "error",
            "call 44 failed: no_such_object (code 1), with data",
            Frame::error(
                44,
                ErrorCode::NoSuchObject,
                "no object named 'nope'",
                br#"{"object":"nope"}"#,
            ),
        ),
        vector(
            "error_no_data",
            "call 45 timed out (code 3), no data",
            Frame::error(45, ErrorCode::Timeout, "no reply within 5000 ms", b""),
        ),
        vector("cancel", "abandon call 42", Frame::cancel(42)),
        vector(
            "subscribe",
            "subscription 5 to every topic under sensor.",
            Frame::subscribe(5, "sensor.>"),
        ),
        vector("unsubscribe", "end subscription 5", Frame::unsubscribe(5)),
        vector(
            "publish",
            "publish \"25.6\" on sensor.temperature, no acknowledgement",
            Frame::publish(0, "sensor.temperature", br#""25.6""#, false),
        ),
        vector(
            "publish_ack",
            "request 9: publish {\"v\":1} on a.b and report delivery counts",
            Frame::publish(9, "a.b", br#"{"v":1}"#, true),
        ),
        vector(
            "event",
            "subscription 5 receives sensor.temperature; 2 events were dropped before it",
            Frame::event(5, 2, "sensor.temperature", br#""25.6""#),
        ),
        vector("ping", "ping 11 with payload \"x\"", Frame::ping(11, b"x")),
        vector("pong", "answer to ping 11", Frame::pong(11, b"x")),
    ]
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn vectors_file_matches_encoder_and_decoder() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");
    let want = expected();
    if std::env::var_os("PLEXUS_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&want).expect("serialize") + "\n";
        std::fs::write(path, text).expect("write vectors");
    }
    let text = std::fs::read_to_string(path).expect("read vectors.json");
    let stored: Vec<Vector> = serde_json::from_str(&text).expect("parse vectors.json");
    assert_eq!(stored, want, "vectors.json is out of date with the encoder");
    let kinds: std::collections::HashSet<&str> = stored.iter().map(|v| v.kind.as_str()).collect();
    assert_eq!(kinds.len(), Kind::ALL.len(), "every kind has a vector");
    for v in &stored {
        let mut buf = BytesMut::from(&unhex(&v.hex)[..]);
        let frame = decode(&mut buf, DEFAULT_MAX_FRAME)
            .expect("decodes")
            .expect("complete");
        assert!(buf.is_empty());
        assert_eq!(frame.kind() as u8, v.kind_code, "{}", v.name);
        assert_eq!(frame.id(), v.id, "{}", v.name);
        assert_eq!(frame.aux(), v.aux, "{}", v.name);
        assert_eq!(frame.flags(), v.flags, "{}", v.name);
        assert_eq!(frame.payload(), v.payload.as_bytes(), "{}", v.name);
        for (i, s) in v.strings.iter().enumerate() {
            assert_eq!(frame.string(i), s, "{}", v.name);
        }
    }
}
