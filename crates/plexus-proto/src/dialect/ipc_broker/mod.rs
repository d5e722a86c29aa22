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
mod tests;
