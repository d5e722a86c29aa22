//! Tests of the NDJSON codec: JSON-RPC and op lines both ways, bad and over-long lines.

use super::*;
use crate::dialect::DEFAULT_MAX_OUTSTANDING;
use serde_json::{Value, json};

struct Harness {
    codec: NdjsonCodec,
    buf: BytesMut,
}

impl Harness {
    fn new(max: u32) -> Harness {
        Harness {
            codec: NdjsonCodec::new(max, DEFAULT_MAX_OUTSTANDING),
            buf: BytesMut::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Vec<Decoded> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        self.codec
            .decode(&mut self.buf, &mut out)
            .expect("never fatal");
        out
    }

    fn one(&mut self, line: &str) -> Decoded {
        let mut out = self.feed(format!("{line}\n").as_bytes());
        assert_eq!(out.len(), 1, "one result for {line}: {out:?}");
        out.remove(0)
    }

    fn routed(&mut self, line: &str) -> Frame {
        match self.one(line) {
            Decoded::Route(f) => f,
            other => panic!("expected a routed frame for {line}, got {other:?}"),
        }
    }

    /// The lines `frame` encodes to, parsed.
    fn encode(&mut self, frame: &Frame) -> Vec<Value> {
        let mut dst = BytesMut::new();
        self.codec.encode(frame, &mut dst, &mut Vec::new());
        let text = std::str::from_utf8(&dst).expect("utf-8");
        assert!(dst.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// The exact text `frame` encodes to.
    fn encode_text(&mut self, frame: &Frame) -> String {
        let mut dst = BytesMut::new();
        self.codec.encode(frame, &mut dst, &mut Vec::new());
        String::from_utf8(dst.to_vec()).expect("utf-8")
    }

    /// Encodes the answer a `Decoded::Answer` carries.
    fn answer(&mut self, d: Decoded) -> Value {
        let Decoded::Answer(f) = d else {
            panic!("expected an answer, got {d:?}");
        };
        self.encode(&f).remove(0)
    }
}

#[test]
fn json_rpc_call_and_result() {
    let mut h = Harness::new(1 << 20);
    let call =
        h.routed(r#"{"jsonrpc":"2.0","id":"a1","method":"org.x.math.add","params":{"a":1,"b":2}}"#);
    assert_eq!(call.kind(), Kind::Call);
    assert_eq!((call.string(0), call.string(1)), ("org.x.math", "add"));
    assert_eq!(&call.payload()[..], br#"{"a":1,"b":2}"#);
    let lines = h.encode(&Frame::reply(call.id(), b"3"));
    assert_eq!(lines, vec![json!({"jsonrpc":"2.0","id":"a1","result":3})]);
    assert_eq!(h.codec.outstanding(), 0);
}

#[test]
fn json_rpc_error_carries_the_plexus_code_and_data() {
    let mut h = Harness::new(1 << 20);
    let call = h.routed(r#"{"jsonrpc":"2.0","id":7,"method":"nope.x"}"#);
    let err = Frame::error(
        call.id(),
        ErrorCode::NoSuchObject,
        "no object named 'nope'",
        br#"{"object":"nope"}"#,
    );
    assert_eq!(
        h.encode(&err),
        vec![json!({"jsonrpc":"2.0","id":7,"error":{
            "code":-32601,"message":"no object named 'nope'",
            "data":{"plexus_code":1,"plexus_error":"no_such_object","object":"nope"}}})]
    );
}

/// Every plexus code's JSON-RPC 2.0 code: the predefined ones where they mean the same, else
/// -32000 minus the plexus code, in the range for server errors.
#[test]
fn json_rpc_codes_follow_the_spec() {
    let expected = [
        (ErrorCode::NoSuchObject, -32601),
        (ErrorCode::NoSuchMethod, -32601),
        (ErrorCode::Timeout, -32003),
        (ErrorCode::WorkerGone, -32004),
        (ErrorCode::NameTaken, -32005),
        (ErrorCode::FrameTooLarge, -32006),
        (ErrorCode::BadFrame, -32600),
        (ErrorCode::UnsupportedVersion, -32008),
        (ErrorCode::PermissionDenied, -32009),
        (ErrorCode::InvalidParams, -32602),
        (ErrorCode::Overloaded, -32011),
        (ErrorCode::Internal, -32603),
        (ErrorCode::ShuttingDown, -32013),
        (ErrorCode::InvalidResult, -32014),
        // Cluster.
        (ErrorCode::Unavailable, -32015),
    ];
    assert_eq!(expected.len(), ErrorCode::ALL.len());
    let mut h = Harness::new(1 << 20);
    for (code, rpc) in expected {
        let call = h.routed(r#"{"jsonrpc":"2.0","id":1,"method":"m.x"}"#);
        let line = h.encode(&Frame::error(call.id(), code, "m", b""));
        assert_eq!(
            line,
            vec![
                json!({"jsonrpc":"2.0","id":1,"error":{"code":rpc,"message":"m",
                "data":{"plexus_code":code.code(),"plexus_error":code.name()}}})
            ],
            "{code}"
        );
    }
}

/// The error's own data is merged into JSON-RPC's `data` when it is an object whose members do
/// not collide; anything else is kept whole as `plexus_data`.
#[test]
fn json_rpc_error_data_keeps_the_original() {
    let mut h = Harness::new(1 << 20);
    let mut data_of = |payload: &[u8]| {
        let call = h.routed(r#"{"jsonrpc":"2.0","id":1,"method":"m.x"}"#);
        let frame = Frame::error(call.id(), ErrorCode::Timeout, "slow", payload);
        let text = h.encode_text(&frame);
        let head = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32003,"message":"slow","data":"#;
        let data = text.strip_prefix(head).and_then(|t| t.strip_suffix("}}\n"));
        data.expect("an error line").to_owned()
    };
    let head = r#"{"plexus_code":3,"plexus_error":"timeout""#;
    assert_eq!(data_of(b""), format!("{head}}}"));
    assert_eq!(
        data_of(b" {\"missing\":[\"log\"],\n \"n\":1} "),
        format!(r#"{head},"missing":["log"],  "n":1}}"#),
        "the members as sent, line breaks turned to spaces"
    );
    for (payload, kept) in [
        (&b"{}"[..], "{}"),
        (b"[1,2]", "[1,2]"),
        (b"\"text\"", "\"text\""),
        (b"null", "null"),
        (b"not json", "\"not json\""),
        (br#"{"plexus_code":99}"#, r#"{"plexus_code":99}"#),
        (br#"{"a":1,"plexus_data":2}"#, r#"{"a":1,"plexus_data":2}"#),
    ] {
        assert_eq!(
            data_of(payload),
            format!(r#"{head},"plexus_data":{kept}}}"#),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

/// A number this side does not know passes through both ways: named (and mapped) `internal`.
#[test]
fn unknown_error_codes_keep_their_number() {
    let mut h = Harness::new(1 << 20);
    let err = h.routed(r#"{"op":"error","id":5,"error":{"code":40,"message":"new"}}"#);
    assert_eq!((err.aux(), err.error_code()), (40, ErrorCode::Internal));
    let named = h.routed(r#"{"op":"error","id":6,"error":{"code":"no_such_thing"}}"#);
    assert_eq!(named.aux(), ErrorCode::Internal.code());
    let rpc = h.routed(r#"{"jsonrpc":"2.0","id":1,"method":"m.x"}"#);
    let op = h.routed(r#"{"op":"call","id":2,"object":"m","method":"x"}"#);
    let new = |id| Frame::build(Kind::Error, id, 40, 0, &["new"], b"");
    assert_eq!(
        h.encode_text(&new(rpc.id())),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32603,\"message\":\"new\",\"data\":{\"plexus_code\":40,\"plexus_error\":\"internal\"}}}\n"
    );
    assert_eq!(
        h.encode_text(&new(op.id())),
        "{\"op\":\"error\",\"id\":2,\"error\":{\"code\":40,\"name\":\"internal\",\"message\":\"new\"}}\n"
    );
}

#[test]
fn notifications_are_publishes() {
    let mut h = Harness::new(1 << 20);
    let p = h.routed(r#"{"jsonrpc":"2.0","method":"sensor.temp","params":25.6}"#);
    assert_eq!(
        (p.kind(), p.string(0), p.id()),
        (Kind::Publish, "sensor.temp", 0)
    );
    assert_eq!(&p.payload()[..], b"25.6");
    assert_eq!(
        h.one(r#"{"jsonrpc":"2.0","method":"bad topic"}"#),
        Decoded::Dropped(
            "a notification's publish refused: topic \"bad topic\" contains ' '; allowed are letters, digits, '_', '-', ':' and '.'"
                .to_owned()
        ),
        "never answered (JSON-RPC 2.0 section 4.1), but logged"
    );
}

#[test]
fn worker_ops_register_take_calls_and_answer() {
    let mut h = Harness::new(1 << 20);
    let reg = h.routed(r#"{"op":"register","id":1,"name":"demo"}"#);
    assert_eq!((reg.kind(), reg.string(0)), (Kind::Register, "demo"));
    assert_eq!(
        h.encode(&Frame::reply(reg.id(), b"")),
        vec![json!({"op":"reply","id":1,"result":null})]
    );
    let incoming = Frame::call(912, "demo", "add", 5000, b"[1,2,3]");
    assert_eq!(
        h.encode(&incoming),
        vec![
            json!({"op":"call","id":912,"object":"demo","method":"add","params":[1,2,3],"timeout_ms":5000})
        ]
    );
    let reply = h.routed(r#"{"op":"reply","id":912,"result":6}"#);
    assert_eq!((reply.kind(), reply.id()), (Kind::Reply, 912));
    assert_eq!(&reply.payload()[..], b"6");
    let err = h.routed(
        r#"{"op":"error","id":913,"error":{"code":"no_such_method","message":"no","data":[1]}}"#,
    );
    assert_eq!(
        (err.kind(), err.error_code(), err.string(0)),
        (Kind::Error, ErrorCode::NoSuchMethod, "no")
    );
    assert_eq!(&err.payload()[..], b"[1]");
    assert_eq!(
        h.encode(&Frame::cancel(912)),
        vec![json!({"op":"cancel","id":912})]
    );
}

#[test]
fn subscriptions_events_and_unsubscribe() {
    let mut h = Harness::new(1 << 20);
    let sub = h.routed(r#"{"op":"subscribe","id":"s","pattern":"sensor.>"}"#);
    assert_eq!((sub.kind(), sub.string(0)), (Kind::Subscribe, "sensor.>"));
    h.encode(&Frame::reply(sub.id(), b""));
    let ev = Frame::event(sub.id(), 2, "sensor.temp", b"\"25.6\"");
    assert_eq!(
        h.encode(&ev),
        vec![json!({"op":"event","sub":"s","topic":"sensor.temp","data":"25.6","dropped":2})]
    );
    let uns = h.routed(r#"{"op":"unsubscribe","sub":"s"}"#);
    assert_eq!((uns.kind(), uns.id()), (Kind::Unsubscribe, sub.id()));
    assert!(h.encode(&ev).is_empty(), "no events after unsubscribe");
    let dup1 = h.routed(r#"{"op":"subscribe","id":9,"pattern":"a"}"#);
    let dup2 = h.one(r#"{"op":"subscribe","id":9,"pattern":"b"}"#);
    assert_eq!(h.answer(dup2)["error"]["name"], "invalid_params");
    h.encode(&Frame::error(
        dup1.id(),
        ErrorCode::InvalidParams,
        "bad",
        b"",
    ));
    let again = h.routed(r#"{"op":"subscribe","id":9,"pattern":"a"}"#);
    assert_eq!(
        again.kind(),
        Kind::Subscribe,
        "a refused subscription frees its id"
    );
}

#[test]
fn publish_wait_for_ping_cancel() {
    let mut h = Harness::new(1 << 20);
    let p = h.routed(r#"{"op":"publish","topic":"a.b","data":{"v":1}}"#);
    assert_eq!((p.id(), p.flags()), (0, 0));
    let acked = h.routed(r#"{"op":"publish","id":3,"topic":"a.b","data":1}"#);
    assert_eq!(acked.flags(), crate::flags::ACK);
    let bad = h.one(r#"{"op":"publish","topic":"a..b"}"#);
    assert_eq!(h.answer(bad)["error"]["code"], 10);
    let w = h.routed(r#"{"op":"wait_for","id":4,"names":["x","y"],"timeout_ms":250}"#);
    assert_eq!(
        (w.string(0), w.string(1), w.aux()),
        ("plexus", "wait_for", 250)
    );
    let params: Value = serde_json::from_slice(&w.payload()).expect("json");
    assert_eq!(params, json!({"names":["x","y"],"timeout_ms":250}));
    let ping = h.routed(r#"{"op":"ping","id":5,"data":"x"}"#);
    assert_eq!(
        h.encode(&Frame::pong(ping.id(), b"\"x\"")),
        vec![json!({"op":"pong","id":5,"data":"x"})]
    );
    let call = h.routed(r#"{"op":"call","id":6,"object":"m","method":"slow"}"#);
    let dup = h.one(r#"{"op":"call","id":6,"object":"m","method":"slow"}"#);
    assert_eq!(h.answer(dup)["error"]["name"], "invalid_params");
    let cancel = h.routed(r#"{"op":"cancel","id":6}"#);
    assert_eq!((cancel.kind(), cancel.id()), (Kind::Cancel, call.id()));
    assert!(
        h.encode(&Frame::reply(call.id(), b"1")).is_empty(),
        "cancelled: no answer"
    );
}

#[test]
fn bad_lines_get_error_lines_and_the_stream_goes_on() {
    let mut h = Harness::new(1 << 20);
    let not_json = h.one("this is not json");
    assert_eq!(
        h.answer(not_json),
        json!({"jsonrpc":"2.0","op":"error","id":null,"error":{"code":-32700,"name":"bad_frame",
            "message":"the line is not JSON: expected ident at line 1 column 2",
            "data":{"plexus_code":7,"plexus_error":"bad_frame"}}})
    );
    let mut raw = b"{\"op\":\"ping\",\"data\":\"".to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(b"\"}\n");
    let out = h.feed(&raw);
    let v = h.answer(out[0].clone());
    assert_eq!(
        (&v["id"], &v["error"]["code"], &v["error"]["message"]),
        (
            &Value::Null,
            &json!(-32700),
            &json!("the line is not valid UTF-8")
        )
    );
    let unknown = h.one(r#"{"op":"dance","id":1}"#);
    let v = h.answer(unknown);
    assert_eq!((&v["id"], &v["error"]["code"]), (&json!(1), &json!(7)));
    let no_name = h.one(r#"{"op":"register","id":2}"#);
    assert_eq!(
        h.answer(no_name),
        json!({"op":"error","id":2,"error":{"code":10,"name":"invalid_params",
            "message":"op \"register\" needs \"name\""}})
    );
    assert!(h.feed(b"\n   \r\n").is_empty(), "blank lines are ignored");
    assert!(matches!(
        h.one(r#"{"op":"ping","id":1}"#),
        Decoded::Route(_)
    ));
}

/// JSON-RPC 2.0 section 5.1: -32700 for what is not JSON and -32600 for JSON that is not a
/// request, with id null when it cannot be told; -32601 and -32602 as the method's name says.
#[test]
fn json_rpc_refusals_follow_the_spec() {
    let mut h = Harness::new(1 << 20);
    fn refusal_of(h: &mut Harness, line: &str) -> (Value, Value, Value, Value) {
        let answer = h.one(line);
        let v = h.answer(answer);
        let e = &v["error"];
        (
            v["id"].clone(),
            e["code"].clone(),
            e["message"].clone(),
            e["data"].clone(),
        )
    }
    let bad_frame = json!({"plexus_code":7,"plexus_error":"bad_frame"});
    let invalid_params = json!({"plexus_code":10,"plexus_error":"invalid_params"});
    assert_eq!(
        refusal_of(
            &mut h,
            r#"{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]"#
        ),
        (
            Value::Null,
            json!(-32700),
            json!("the line is not JSON: expected `,` or `}` at line 1 column 36"),
            bad_frame.clone()
        )
    );
    assert_eq!(
        refusal_of(&mut h, r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#),
        (
            Value::Null,
            json!(-32600),
            json!(
                "the line is not a valid request object: invalid type: integer `1`, expected a string at line 1 column 27"
            ),
            bad_frame.clone()
        )
    );
    assert_eq!(
        refusal_of(&mut h, r#"[{"jsonrpc":"2.0","method":"m.x","id":1}]"#),
        (
            Value::Null,
            json!(-32600),
            json!("the line is JSON but not an object (JSON-RPC batches are not supported)"),
            bad_frame.clone()
        )
    );
    assert_eq!(
        refusal_of(&mut h, r#"{"jsonrpc":"2.0","id":4}"#),
        (
            json!(4),
            json!(-32600),
            json!("a JSON-RPC request needs \"method\""),
            bad_frame.clone()
        )
    );
    assert_eq!(
        refusal_of(&mut h, r#"{"jsonrpc":"2.0","id":5,"method":"add"}"#),
        (
            json!(5),
            json!(-32601),
            json!(
                "method \"add\" does not name an object; use \"object.method\" (split at the last dot)"
            ),
            invalid_params.clone()
        )
    );
    h.routed(r#"{"jsonrpc":"2.0","id":6,"method":"m.slow"}"#);
    assert_eq!(
        refusal_of(&mut h, r#"{"jsonrpc":"2.0","id":6,"method":"m.slow"}"#),
        (
            json!(6),
            json!(-32600),
            json!("id 6 is already in use by an open call on this connection"),
            invalid_params
        )
    );
    let answer = h.one(r#"{"jsonrpc":"2.0","id":7}"#);
    let v = h.answer(answer);
    assert!(
        v.get("op").is_none() && v["error"].get("name").is_none(),
        "{v}"
    );
}

#[test]
fn over_long_lines_are_skipped_without_buffering_them() {
    let mut h = Harness::new(64);
    let out = h.feed(&[b'x'; 100]);
    let v = h.answer(out[0].clone());
    assert_eq!(
        (&v["error"]["code"], &v["error"]["name"]),
        (&json!(-32006), &json!("frame_too_large"))
    );
    assert!(h.buf.is_empty(), "the long line is not kept");
    assert!(h.feed(&[b'y'; 1000]).is_empty());
    assert!(h.buf.is_empty());
    let out = h.feed(b"yyy\n{\"op\":\"ping\",\"id\":1}\n");
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0], Decoded::Route(_)));
    let mut long = vec![b'z'; 70];
    long.push(b'\n');
    let out = h.feed(&long);
    assert_eq!(h.answer(out[0].clone())["error"]["name"], "frame_too_large");
}

#[test]
fn a_last_line_without_newline_counts_at_eof() {
    let mut h = Harness::new(1 << 20);
    assert!(h.feed(br#"{"op":"ping","id":1}"#).is_empty());
    let mut out = Vec::new();
    h.codec.decode_eof(&mut h.buf, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn answer_lines_have_fixed_bytes() {
    let mut h = Harness::new(1 << 20);
    let rpc = h.routed(r#"{"jsonrpc":"2.0","id":"a","method":"m.x"}"#);
    assert_eq!(
        h.encode_text(&Frame::reply(rpc.id(), br#"{"v": [1, 2]}"#)),
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"v\": [1, 2]}}\n"
    );
    let rpc = h.routed(r#"{"jsonrpc":"2.0","id":7,"method":"m.x"}"#);
    assert_eq!(
        h.encode_text(&Frame::error(
            rpc.id(),
            ErrorCode::Timeout,
            "too \"slow\"",
            b"[1]"
        )),
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32003,\"message\":\"too \\\"slow\\\"\",\"data\":{\"plexus_code\":3,\"plexus_error\":\"timeout\",\"plexus_data\":[1]}}}\n"
    );
    let op = h.routed(r#"{"op":"register","id":1,"name":"demo"}"#);
    assert_eq!(
        h.encode_text(&Frame::reply(op.id(), b"")),
        "{\"op\":\"reply\",\"id\":1,\"result\":null}\n"
    );
    let op = h.routed(r#"{"op":"register","id":{"k":1},"name":"demo"}"#);
    assert_eq!(
        h.encode_text(&Frame::error(op.id(), ErrorCode::NameTaken, "taken", b"")),
        "{\"op\":\"error\",\"id\":{\"k\":1},\"error\":{\"code\":5,\"name\":\"name_taken\",\"message\":\"taken\"}}\n"
    );
    let ping = h.routed(r#"{"op":"ping","id":2}"#);
    assert_eq!(
        h.encode_text(&Frame::pong(ping.id(), b"not json")),
        "{\"op\":\"pong\",\"id\":2,\"data\":\"not json\"}\n"
    );
    let Decoded::Answer(bad) = h.one("nope") else {
        panic!("an answer for a bad line");
    };
    assert_eq!(
        h.encode_text(&bad),
        "{\"jsonrpc\":\"2.0\",\"op\":\"error\",\"id\":null,\"error\":{\"code\":-32700,\"name\":\"bad_frame\",\"message\":\"the line is not JSON: expected ident at line 1 column 2\",\"data\":{\"plexus_code\":7,\"plexus_error\":\"bad_frame\"}}}\n"
    );
    assert_eq!(
        h.encode_text(&Frame::error(
            0,
            ErrorCode::ShuttingDown,
            "bye",
            br#"{"in_ms":5}"#
        )),
        "{\"jsonrpc\":\"2.0\",\"op\":\"error\",\"id\":null,\"error\":{\"code\":-32013,\"name\":\"shutting_down\",\"message\":\"bye\",\"data\":{\"plexus_code\":13,\"plexus_error\":\"shutting_down\",\"in_ms\":5}}}\n",
        "an error for no request of the peer (id 0) is written with id null and its data"
    );
}

#[test]
fn lines_to_workers_and_subscribers_have_fixed_bytes() {
    let mut h = Harness::new(1 << 20);
    assert_eq!(
        h.encode_text(&Frame::call(912, "demo", "add\u{e9}", 5000, b"")),
        "{\"op\":\"call\",\"id\":912,\"object\":\"demo\",\"method\":\"add\u{e9}\",\"params\":null,\"timeout_ms\":5000}\n"
    );
    assert_eq!(
        h.encode_text(&Frame::cancel(912)),
        "{\"op\":\"cancel\",\"id\":912}\n"
    );
    let sub = h.routed(r#"{"op":"subscribe","id":"s","pattern":"a.>"}"#);
    assert_eq!(
        h.encode_text(&Frame::event(sub.id(), 3, "a.b", &[b'x', 0xff])),
        "{\"op\":\"event\",\"sub\":\"s\",\"topic\":\"a.b\",\"data\":\"x\u{fffd}\",\"dropped\":3}\n"
    );
}

/// Found by the `ndjson` fuzz target: a payload with line breaks between its tokens (as
/// pretty-printed JSON has) was written as is and broke the line in two.
#[test]
fn json_with_line_breaks_stays_on_one_line() {
    let mut h = Harness::new(1 << 20);
    let pretty = b"{\r\n  \"a\": [1,\n\n2]\n}";
    let call = h.routed("{\"op\":\"call\",\"id\":[1,\r2],\"object\":\"m\",\"method\":\"x\"}");
    assert_eq!(
        h.encode_text(&Frame::reply(call.id(), pretty)),
        "{\"op\":\"reply\",\"id\":[1, 2],\"result\":{    \"a\": [1,  2] }}\n"
    );
    let sub = h.routed(r#"{"op":"subscribe","id":"s","pattern":"a"}"#);
    let lines = [
        h.encode_text(&Frame::event(sub.id(), 0, "a", pretty)),
        h.encode_text(&Frame::call(5, "m", "x", 0, pretty)),
        h.encode_text(&Frame::error(99, ErrorCode::Internal, "x", pretty)),
        h.encode_text(&Frame::reply(sub.id(), b"[\n]")),
    ];
    for line in lines {
        assert_eq!(line.matches(['\n', '\r']).count(), 1, "{line:?}");
        let v: Value = serde_json::from_str(&line).expect("one JSON line");
        assert!(
            v.to_string().contains(r#""a":[1,2]"#) || v["result"] == json!([]),
            "{v}"
        );
    }
}

/// Error data: any bytes, or JSON objects with a little whitespace around them.
fn error_payloads() -> impl proptest::prelude::Strategy<Value = Vec<u8>> {
    use proptest::prelude::{Strategy, any, prop_oneof};
    let objects = (
        proptest::collection::btree_map("[a-z_]{1,12}", any::<i32>(), 0..4),
        "[ \n]{0,2}",
    )
        .prop_map(|(m, ws)| format!("{ws}{}{ws}", json!(m)).into_bytes());
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..40), objects]
}

proptest::proptest! {
    /// JSON-RPC's error data gives back the error's own data, whatever it is: the members other
    /// than the plexus ones, or `plexus_data`.
    #[test]
    fn json_rpc_error_data_gives_back_the_original(
        payload in error_payloads()
    ) {
        let mut h = Harness::new(1 << 20);
        let call = h.routed(r#"{"jsonrpc":"2.0","id":1,"method":"m.x"}"#);
        let text = h.encode_text(&Frame::error(call.id(), ErrorCode::Timeout, "t", &payload));
        proptest::prop_assert_eq!(text.matches('\n').count(), 1);
        let line: Value = serde_json::from_str(&text).expect("a JSON line");
        let mut data = line["error"]["data"].as_object().expect("an object").clone();
        proptest::prop_assert_eq!(data.remove("plexus_code"), Some(json!(3)));
        proptest::prop_assert_eq!(data.remove("plexus_error"), Some(json!("timeout")));
        let original: Option<Value> = (!payload.is_empty()).then(|| {
            serde_json::from_slice(&payload)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&payload)))
        });
        let got = match data.remove("plexus_data") {
            Some(kept) => {
                proptest::prop_assert!(data.is_empty());
                Some(kept)
            }
            None if data.is_empty() => None,
            None => Some(Value::Object(data)),
        };
        proptest::prop_assert_eq!(got, original);
    }

    #[test]
    fn every_line_written_is_json(
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        text in ".{0,12}",
    ) {
        let mut h = Harness::new(1 << 16);
        let rpc = h.routed(r#"{"jsonrpc":"2.0","id":1,"method":"m.x"}"#);
        let op = h.routed(r#"{"op":"ping","id":2}"#);
        let sub = h.routed(r#"{"op":"subscribe","id":3,"pattern":"a"}"#);
        let frames = [
            Frame::reply(rpc.id(), &payload),
            Frame::error(op.id(), ErrorCode::Internal, &text, &payload),
            Frame::error(0, ErrorCode::Internal, &text, &payload),
            Frame::call(9, &text, &text, 1, &payload),
            Frame::event(sub.id(), 0, &text, &payload),
        ];
        for frame in &frames {
            let lines = h.encode(frame);
            proptest::prop_assert_eq!(lines.len(), 1);
        }
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let mut h = Harness::new(64);
        let _ = h.feed(&bytes);
    }

    #[test]
    fn lines_split_anywhere_decode_the_same(cuts in proptest::collection::vec(0usize..120, 0..6)) {
        let wire = b"{\"op\":\"ping\",\"id\":1}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"a.b\"}\n{\"op\":\"publish\",\"topic\":\"t\"}\n";
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut h = Harness::new(1 << 16);
        let mut got = 0;
        let mut start = 0;
        for cut in cuts {
            got += h.feed(&wire[start..cut]).len();
            start = cut;
        }
        proptest::prop_assert_eq!(got, 3);
    }
}

#[test]
fn requests_past_the_limit_are_refused_overloaded() {
    let mut h = Harness {
        codec: NdjsonCodec::new(1 << 16, 2),
        buf: BytesMut::new(),
    };
    let first = h.routed(r#"{"op":"ping","id":1}"#);
    h.routed(r#"{"jsonrpc":"2.0","id":2,"method":"m.x"}"#);
    let refused = h.one(r#"{"op":"call","id":3,"object":"m","method":"x"}"#);
    let v = h.answer(refused);
    assert_eq!((&v["op"], &v["id"]), (&json!("error"), &json!(3)));
    assert_eq!(v["error"]["name"], "overloaded");
    let refused = h.one(r#"{"jsonrpc":"2.0","id":"r","method":"m.x"}"#);
    assert_eq!(
        h.answer(refused),
        json!({"jsonrpc":"2.0","id":"r","error":{"code":-32011,
            "message":"2 requests on this connection already wait for their answers; try again later",
            "data":{"plexus_code":11,"plexus_error":"overloaded"}}})
    );
    let refused = h.one(r#"{"op":"subscribe","id":"s","pattern":"a"}"#);
    assert_eq!(h.answer(refused)["error"]["code"], 11);
    assert!(
        h.feed(b"{\"jsonrpc\":\"2.0\",\"method\":\"a.b\"}\n")
            .iter()
            .all(|d| matches!(d, Decoded::Route(_))),
        "publishes without an answer are not requests"
    );
    h.encode(&Frame::pong(first.id(), b""));
    let call = h.routed(r#"{"op":"call","id":3,"object":"m","method":"x"}"#);
    assert_eq!(
        call.kind(),
        Kind::Call,
        "room again once answered, and a refused call leaves its id free"
    );
}
