//! ipc-broker (crates.io `ipc-broker` 1.1): packets of a u32 big-endian length and serde's
//! externally tagged JSON of its `RpcRequest` / `RpcResponse` enums. Requests become frames;
//! answers go back as the variants its `IPCClient` and `WorkerBuilder` expect.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Decoded, DialectCodec, Fatal, coded_message, parse_coded_message, payload_json};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;
use crate::names::validate_topic;

/// Largest packet body ipc-broker's `read_packet` accepts (its `BUF_SIZE`).
pub const MAX_PACKET: usize = u16::MAX as usize + 1;
/// Bytes of events held back while the peer waits for an answer; more are dropped.
const HELD_LIMIT: usize = 1024 * 1024;

/// What an ipc-broker peer sends: its `RpcRequest` variants, and the `RpcResponse` variants a
/// worker answers with.
#[derive(Deserialize)]
enum Incoming<'a> {
    RegisterObject {
        object_name: String,
    },
    RegisterService {
        object_name: String,
    },
    Call {
        call_id: String,
        object_name: String,
        method: String,
        #[serde(borrow)]
        args: &'a RawValue,
    },
    Subscribe {
        object_name: String,
        topic: String,
    },
    Publish {
        object_name: String,
        topic: String,
        #[serde(borrow)]
        args: &'a RawValue,
    },
    HasObject {
        object_name: String,
    },
    Result {
        call_id: String,
        #[serde(borrow)]
        value: &'a RawValue,
    },
    Error {
        call_id: Option<String>,
        message: String,
    },
}

/// What goes to an ipc-broker peer.
#[derive(Serialize)]
enum Outgoing<'a> {
    Call {
        call_id: String,
        object_name: &'a str,
        method: &'a str,
        args: &'a RawValue,
    },
    Registered {
        object_name: &'a str,
    },
    Result {
        call_id: &'a str,
        object_name: &'a str,
        value: &'a RawValue,
    },
    Error {
        call_id: Option<&'a str>,
        object_name: &'a str,
        message: &'a str,
    },
    Event {
        object_name: &'a str,
        topic: &'a str,
        args: &'a RawValue,
    },
    HasObjectResult {
        object_name: &'a str,
        exists: bool,
    },
}

/// A request of the peer waiting for its answer.
#[derive(Debug)]
enum Open {
    /// A call; answered `Result` or `Error` with the peer's call id.
    Call { call_id: String, object: String },
    /// `RegisterObject` (answered `Registered`) or a refused `RegisterService`.
    Register { object: String },
    /// `HasObject`, asked as `plexus.wait_for` with a zero timeout.
    HasObject { object: String },
    /// `Subscribe`, which ipc-broker's client does not wait for: its answer is not sent.
    Subscribe,
}

/// The codec of one ipc-broker connection.
#[derive(Debug)]
pub struct IpcBrokerCodec {
    max_frame: u32,
    next_id: u64,
    open: HashMap<u64, Open>,
    /// Subscriptions: frame id → (object, topic) as the peer subscribed.
    subs: HashMap<u64, (String, String)>,
    /// Events held while the peer waits for an answer: its client reads the next packet after a
    /// request as that request's answer.
    held: Vec<u8>,
}

/// Takes one packet body off the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn take_packet(buf: &mut BytesMut, max_frame: u32) -> Result<Option<Bytes>, Fatal> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let size = 4 + u64::from(len);
    if size > u64::from(max_frame) {
        return Err(Fatal::new(
            ErrorCode::FrameTooLarge,
            format!("packet of {size} bytes exceeds the limit of {max_frame} bytes"),
        ));
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len as usize).freeze()))
}

/// Appends one packet holding `body` to `dst`.
pub fn put_packet(dst: &mut BytesMut, body: &[u8]) {
    dst.reserve(4 + body.len());
    // Bodies written here are at most MAX_PACKET bytes.
    dst.put_u32(body.len() as u32);
    dst.put_slice(body);
}

fn to_json(msg: &Outgoing<'_>) -> Vec<u8> {
    // Strings, booleans and raw JSON always serialize.
    serde_json::to_vec(msg).unwrap_or_default()
}

impl IpcBrokerCodec {
    /// A codec refusing packets over `max_frame` bytes.
    pub fn new(max_frame: u32) -> IpcBrokerCodec {
        IpcBrokerCodec {
            max_frame,
            next_id: 0,
            open: HashMap::new(),
            subs: HashMap::new(),
            held: Vec::new(),
        }
    }

    fn open(&mut self, what: Open) -> u64 {
        self.next_id += 1;
        self.open.insert(self.next_id, what);
        self.next_id
    }

    fn awaiting(&self) -> bool {
        self.open.values().any(|o| !matches!(o, Open::Subscribe))
    }

    fn packet(&mut self, body: &[u8]) -> Decoded {
        let msg = match serde_json::from_slice::<Incoming<'_>>(body) {
            Ok(m) => m,
            Err(e) => return Decoded::Dropped(format!("not an ipc-broker message: {e}")),
        };
        match msg {
            Incoming::RegisterObject { object_name } => {
                let frame_name = object_name.clone();
                let id = self.open(Open::Register {
                    object: object_name,
                });
                Decoded::Route(Frame::register(id, &frame_name, false))
            }
            Incoming::RegisterService { object_name } => {
                let id = self.open(Open::Register {
                    object: object_name,
                });
                Decoded::Answer(Frame::error(
                    id,
                    ErrorCode::InvalidParams,
                    "service activation is not supported; start the worker yourself",
                    b"",
                ))
            }
            Incoming::Call {
                call_id,
                object_name,
                method,
                args,
            } => {
                let frame_object = object_name.clone();
                let id = self.open(Open::Call {
                    call_id,
                    object: object_name,
                });
                Decoded::Route(Frame::call(
                    id,
                    &frame_object,
                    &method,
                    0,
                    args.get().as_bytes(),
                ))
            }
            Incoming::Subscribe { object_name, topic } => {
                if self
                    .subs
                    .values()
                    .any(|(o, t)| *o == object_name && *t == topic)
                {
                    // ipc-broker delivers each event once per connection and subscribed pair;
                    // its client hands every event to all its callbacks for that pair.
                    return Decoded::Dropped(format!(
                        "already subscribed to {object_name}/{topic}"
                    ));
                }
                let id = self.open(Open::Subscribe);
                let pattern = format!("{object_name}.{topic}");
                self.subs.insert(id, (object_name, topic));
                Decoded::Route(Frame::subscribe(id, &pattern))
            }
            Incoming::Publish {
                object_name,
                topic,
                args,
            } => {
                let topic = format!("{object_name}.{topic}");
                match validate_topic(&topic) {
                    Ok(()) => {
                        Decoded::Route(Frame::publish(0, &topic, args.get().as_bytes(), false))
                    }
                    Err(e) => Decoded::Dropped(format!("publish refused: {e}")),
                }
            }
            Incoming::HasObject { object_name } => {
                let params = serde_json::json!({ "names": [object_name], "timeout_ms": 0 });
                let id = self.open(Open::HasObject {
                    object: object_name,
                });
                Decoded::Route(Frame::call(
                    id,
                    crate::BROKER_OBJECT,
                    "wait_for",
                    0,
                    params.to_string().as_bytes(),
                ))
            }
            Incoming::Result { call_id, value } => match call_id.parse::<u64>() {
                Ok(id) => Decoded::Route(Frame::reply(id, value.get().as_bytes())),
                Err(_) => Decoded::Dropped(format!("a result for unknown call id {call_id:?}")),
            },
            Incoming::Error { call_id, message } => {
                let Some(id) = call_id.and_then(|c| c.parse::<u64>().ok()) else {
                    return Decoded::Dropped(format!("an error for no known call: {message}"));
                };
                let (code, text) = parse_coded_message(&message);
                Decoded::Route(Frame::error(id, code, text, b""))
            }
        }
    }

    /// Writes `body` as a packet now, or holds it if it is unsolicited and the peer waits.
    fn put_unsolicited(&mut self, body: &[u8], dst: &mut BytesMut) {
        if self.awaiting() {
            if self.held.len() + 4 + body.len() <= HELD_LIMIT {
                let mut packet = BytesMut::new();
                put_packet(&mut packet, body);
                self.held.extend_from_slice(&packet);
            }
        } else {
            put_packet(dst, body);
        }
    }

    fn answer(&mut self, frame: &Frame, dst: &mut BytesMut) {
        let Some(open) = self.open.remove(&frame.id()) else {
            if frame.kind() == Kind::Error {
                let text = coded_message(frame.error_code(), frame.string(0));
                let msg = Outgoing::Error {
                    call_id: None,
                    object_name: "",
                    message: &text,
                };
                put_packet(dst, &to_json(&msg));
            }
            return;
        };
        let failed = frame.kind() == Kind::Error;
        let text = coded_message(
            frame.error_code(),
            crate::frame::truncate_utf8(frame.string(0), 32 * 1024),
        );
        let body = match &open {
            Open::Call { call_id, object } if failed => to_json(&Outgoing::Error {
                call_id: Some(call_id),
                object_name: object,
                message: &text,
            }),
            Open::Call { call_id, object } => {
                let payload = frame.payload();
                let value = payload_json(&payload);
                let body = to_json(&Outgoing::Result {
                    call_id,
                    object_name: object,
                    value: &value,
                });
                if body.len() > MAX_PACKET {
                    let text = coded_message(
                        ErrorCode::FrameTooLarge,
                        &format!(
                            "the result of {} bytes does not fit ipc-broker's {MAX_PACKET}-byte packets",
                            body.len()
                        ),
                    );
                    to_json(&Outgoing::Error {
                        call_id: Some(call_id),
                        object_name: object,
                        message: &text,
                    })
                } else {
                    body
                }
            }
            Open::Register { object } if failed => to_json(&Outgoing::Error {
                call_id: None,
                object_name: object,
                message: &text,
            }),
            Open::Register { object } => to_json(&Outgoing::Registered {
                object_name: object,
            }),
            Open::HasObject { object } => to_json(&Outgoing::HasObjectResult {
                object_name: object,
                exists: !failed,
            }),
            Open::Subscribe => {
                if failed {
                    self.subs.remove(&frame.id());
                }
                return;
            }
        };
        put_packet(dst, &body);
        if !self.awaiting() && !self.held.is_empty() {
            dst.extend_from_slice(&self.held);
            self.held.clear();
        }
    }
}

impl DialectCodec for IpcBrokerCodec {
    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) -> Result<(), Fatal> {
        while let Some(body) = take_packet(buf, self.max_frame)? {
            let decoded = self.packet(&body);
            out.push(decoded);
        }
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut, bounce: &mut Vec<Frame>) {
        match frame.kind() {
            Kind::Reply | Kind::Error => self.answer(frame, dst),
            Kind::Call => {
                let payload = frame.payload();
                let args = payload_json(&payload);
                let body = to_json(&Outgoing::Call {
                    call_id: frame.id().to_string(),
                    object_name: frame.string(0),
                    method: frame.string(1),
                    args: &args,
                });
                if body.len() > MAX_PACKET {
                    let msg = format!(
                        "the call of {} bytes does not fit ipc-broker's {MAX_PACKET}-byte packets",
                        body.len()
                    );
                    bounce.push(Frame::error(
                        frame.id(),
                        ErrorCode::FrameTooLarge,
                        &msg,
                        b"",
                    ));
                } else {
                    put_packet(dst, &body);
                }
            }
            Kind::Event => {
                let Some((object, topic)) = self.subs.get(&frame.id()) else {
                    return;
                };
                let payload = frame.payload();
                let args = payload_json(&payload);
                let body = to_json(&Outgoing::Event {
                    object_name: object,
                    topic,
                    args: &args,
                });
                if body.len() <= MAX_PACKET {
                    self.put_unsolicited(&body, dst);
                }
            }
            _ => {}
        }
    }

    fn outstanding(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut c = IpcBrokerCodec::new(1 << 20);
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
        let mut c = IpcBrokerCodec::new(1 << 20);
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
        let mut c = IpcBrokerCodec::new(1 << 20);
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
        let mut c = IpcBrokerCodec::new(1 << 20);
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
        let expected =
            json!({"Event":{"object_name":"sensor","topic":"temperature","args":"25.6°C"}});
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
        let mut c = IpcBrokerCodec::new(1 << 24);
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
        let mut c = IpcBrokerCodec::new(100);
        let mut out = Vec::new();
        let mut big = BytesMut::from(&b"\x00\x00\x01\x00{"[..]);
        assert_eq!(
            c.decode(&mut big, &mut out).map_err(|f| f.code),
            Err(ErrorCode::FrameTooLarge)
        );
        let mut c = IpcBrokerCodec::new(1 << 20);
        assert!(matches!(
            decode(&mut c, json!({"Dance":{}})),
            Decoded::Dropped(_)
        ));
        assert!(matches!(decode(&mut c, json!([1, 2])), Decoded::Dropped(_)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut c = IpcBrokerCodec::new(1 << 16);
            let mut buf = BytesMut::from(&bytes[..]);
            let mut out = Vec::new();
            let _ = c.decode(&mut buf, &mut out);
        }
    }
}
