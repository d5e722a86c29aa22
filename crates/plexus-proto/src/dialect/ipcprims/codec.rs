//! The codec of one ipcprims connection: the handshake, CONTROL's ping and shutdown, JSON-RPC on
//! COMMAND, publishes and events on DATA and TELEMETRY, errors on ERROR.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::value::RawValue;

use super::rpc::{self, Command, Event, NameParams, SubscribeParams, UnsubscribeParams};
use super::{
    COMMAND, CONTROL, ControlMessage, DATA, ERROR, HandshakeRequest, HandshakeResponse, PROTOCOL,
    TELEMETRY, VERSION, negotiate, put_frame, take_frame, version_compatible,
};
use crate::dialect::{Decoded, DialectCodec, Fatal, payload_json, split_method};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;
use crate::names::validate_topic;

/// What an open request was, for the answer it gets.
#[derive(Debug)]
enum What {
    /// The handshake, asked as `plexus.ping` for the connection id in the peer id.
    Handshake,
    /// A JSON-RPC call (or `register`, `unregister`, `publish`): the result as it comes.
    Call,
    /// `subscribe`: the result is `{"subscription":ID}`.
    Subscribe,
    /// `unsubscribe`, asked as a ping after it: the result is `null`.
    Unsubscribe,
    /// A CONTROL `ping`, asked as a broker ping: answered `pong`.
    Ping,
    /// A CONTROL `shutdown_request`, asked as a broker ping: answered `shutdown_ack`.
    Shutdown,
    /// A problem with a frame that is not a request: told on ERROR.
    Notice,
}

/// A request of the peer waiting for its answer.
#[derive(Debug)]
struct Open {
    /// The JSON-RPC id to answer with (`null` when the message had none).
    rpc_id: Box<RawValue>,
    what: What,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the handshake request.
    Handshake,
    /// The handshake was answered (or is being).
    Open,
    /// The peer asked to shut down: its frames are ignored and no events are sent.
    Closing,
}

/// The codec of one ipcprims connection.
#[derive(Debug)]
pub struct IpcPrimsCodec {
    max_frame: u32,
    /// Most requests that may wait for answers; later ones are refused `overloaded`. Also the
    /// most subscriptions the peer may hold.
    max_outstanding: usize,
    phase: Phase,
    /// The negotiated channels.
    pub(super) channels: Vec<u16>,
    next_id: u64,
    open: HashMap<u64, Open>,
    /// Subscriptions: frame id → the channel their events go on.
    subs: HashMap<u64, u16>,
    /// Events not sent because the peer asked to shut down, not yet reported.
    dropped_events: u64,
}

impl IpcPrimsCodec {
    /// A codec refusing frames over `max_frame` bytes, and answering `overloaded` to requests
    /// that come while `max_outstanding` wait for their answers.
    pub fn new(max_frame: u32, max_outstanding: usize) -> IpcPrimsCodec {
        IpcPrimsCodec {
            max_frame,
            max_outstanding,
            phase: Phase::Handshake,
            channels: Vec::new(),
            next_id: 0,
            open: HashMap::new(),
            subs: HashMap::new(),
            dropped_events: 0,
        }
    }

    fn has(&self, channel: u16) -> bool {
        self.channels.contains(&channel)
    }

    fn remember(&mut self, rpc_id: Option<&RawValue>, what: What) -> u64 {
        self.next_id += 1;
        let rpc_id = rpc_id.map_or_else(|| RawValue::NULL.to_owned(), ToOwned::to_owned);
        self.open.insert(self.next_id, Open { rpc_id, what });
        self.next_id
    }

    /// Opens a request and routes the frame `frame` builds for its id, or answers it
    /// `overloaded` when too many wait already.
    fn route(
        &mut self,
        rpc_id: Option<&RawValue>,
        what: What,
        frame: impl FnOnce(u64) -> Frame,
    ) -> Decoded {
        let full = self.open.len() >= self.max_outstanding;
        let id = self.remember(rpc_id, what);
        if full {
            let msg = format!(
                "{} requests on this connection already wait for their answers; try again later",
                self.max_outstanding
            );
            return Decoded::Answer(Frame::error(id, ErrorCode::Overloaded, &msg, b""));
        }
        Decoded::Route(frame(id))
    }

    /// An error answered at once: on COMMAND with `rpc_id` for a request, on ERROR otherwise.
    fn refuse(
        &mut self,
        rpc_id: Option<&RawValue>,
        what: What,
        code: ErrorCode,
        msg: &str,
    ) -> Decoded {
        let id = self.remember(rpc_id, what);
        Decoded::Answer(Frame::error(id, code, msg, b""))
    }

    /// The first frame: the handshake request. A refused handshake closes the connection without
    /// an answer, as ipcprims' own listener does.
    fn handshake(
        &mut self,
        channel: u16,
        payload: &[u8],
        out: &mut Vec<Decoded>,
    ) -> Result<(), Fatal> {
        if channel != CONTROL {
            return Err(Fatal::new(
                ErrorCode::BadFrame,
                format!("the first frame must be the handshake on CONTROL, not channel {channel}"),
            ));
        }
        let request: HandshakeRequest = serde_json::from_slice(payload)
            .map_err(|e| Fatal::new(ErrorCode::BadFrame, format!("not a handshake: {e}")))?;
        if request.protocol != PROTOCOL {
            return Err(Fatal::new(
                ErrorCode::UnsupportedVersion,
                format!("unknown protocol {:?}", request.protocol),
            ));
        }
        if !version_compatible(&request.version) {
            return Err(Fatal::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "version {:?} is not compatible with {VERSION}",
                    request.version
                ),
            ));
        }
        let channels =
            negotiate(&request.channels).map_err(|e| Fatal::new(ErrorCode::BadFrame, e))?;
        if channels.is_empty() {
            return Err(Fatal::new(
                ErrorCode::BadFrame,
                "no overlapping channels (plexus serves COMMAND, DATA, TELEMETRY and ERROR)",
            ));
        }
        self.channels = channels;
        self.phase = Phase::Open;
        let id = self.remember(None, What::Handshake);
        let object = crate::BROKER_OBJECT;
        out.push(Decoded::Route(Frame::call(id, object, "ping", 0, b"")));
        Ok(())
    }

    /// A frame after the handshake.
    fn frame(&mut self, channel: u16, payload: &[u8], out: &mut Vec<Decoded>) {
        if self.phase == Phase::Closing {
            out.push(Decoded::Dropped(format!(
                "a frame on channel {channel} after the peer asked to shut down"
            )));
            return;
        }
        if channel != CONTROL && !self.has(channel) {
            let msg = format!("channel {channel} was not negotiated");
            out.push(self.refuse(None, What::Notice, ErrorCode::BadFrame, &msg));
            return;
        }
        match channel {
            CONTROL => out.push(self.control(payload)),
            COMMAND => self.command(payload, out),
            DATA | TELEMETRY => out.push(self.publish(payload)),
            _ => out.push(Decoded::Dropped(format!(
                "a frame on channel {channel}, which the broker only writes"
            ))),
        }
    }

    fn control(&mut self, payload: &[u8]) -> Decoded {
        let msg = match serde_json::from_slice::<ControlMessage<'_>>(payload) {
            Ok(m) => m,
            Err(e) => {
                let text = format!("not a CONTROL message: {e}");
                return self.refuse(None, What::Notice, ErrorCode::BadFrame, &text);
            }
        };
        match &*msg.kind {
            "ping" => self.route(None, What::Ping, |id| Frame::ping(id, b"")),
            "pong" | "shutdown_ack" => Decoded::Dropped(format!("CONTROL {}", msg.kind)),
            "shutdown_request" => {
                self.phase = Phase::Closing;
                self.route(None, What::Shutdown, |id| Frame::ping(id, b""))
            }
            "shutdown_force" => {
                self.phase = Phase::Closing;
                Decoded::Dropped("the peer forced a shutdown".to_owned())
            }
            other => {
                let text = format!("unknown CONTROL message type {other:?}");
                self.refuse(None, What::Notice, ErrorCode::BadFrame, &text)
            }
        }
    }

    /// A JSON-RPC message on COMMAND.
    fn command(&mut self, payload: &[u8], out: &mut Vec<Decoded>) {
        let cmd = match serde_json::from_slice::<Command<'_>>(payload) {
            Ok(c) => c,
            Err(e) => {
                let text = format!("not a JSON-RPC object: {e}");
                out.push(self.refuse(None, What::Call, ErrorCode::BadFrame, &text));
                return;
            }
        };
        let params = cmd.params.map_or(&b""[..], |p| p.get().as_bytes());
        match (&cmd.method, cmd.id) {
            (Some(method), None) => out.push(match validate_topic(method) {
                Ok(()) => Decoded::Route(Frame::publish(0, method, params, false)),
                Err(e) => Decoded::Dropped(format!("notification on {method:?} refused: {e}")),
            }),
            (Some(method), Some(rpc_id)) => {
                let decoded = self.rpc_request(method, rpc_id, &cmd, out);
                out.push(decoded);
            }
            (None, Some(rpc_id)) if cmd.result.is_some() || cmd.error.is_some() => {
                out.push(self.rpc_response(rpc_id, cmd));
            }
            (None, rpc_id) => {
                let text = "neither a request (method) nor a response (id with result or error)";
                out.push(self.refuse(rpc_id, What::Call, ErrorCode::BadFrame, text));
            }
        }
    }

    /// A JSON-RPC request: a call (`object.method`), or one of the bus operations.
    fn rpc_request(
        &mut self,
        method: &str,
        rpc_id: &RawValue,
        cmd: &Command<'_>,
        out: &mut Vec<Decoded>,
    ) -> Decoded {
        let id = Some(rpc_id);
        let params = cmd.params.map_or(&b""[..], |p| p.get().as_bytes());
        let bad = |e: serde_json::Error| format!("bad params for {method}: {e}");
        match method {
            "subscribe" => match serde_json::from_slice::<SubscribeParams>(params) {
                Ok(p) => {
                    let channel = p.channel.unwrap_or(DATA);
                    if !matches!(channel, DATA | TELEMETRY) || !self.has(channel) {
                        let text = format!(
                            "events go on DATA (2) or TELEMETRY (3), negotiated; not on {channel}"
                        );
                        return self.refuse(id, What::Call, ErrorCode::InvalidParams, &text);
                    }
                    if self.subs.len() >= self.max_outstanding {
                        let text = format!("{} subscriptions already", self.subs.len());
                        return self.refuse(id, What::Call, ErrorCode::Overloaded, &text);
                    }
                    let decoded =
                        self.route(id, What::Subscribe, |sub| Frame::subscribe(sub, &p.pattern));
                    if let Decoded::Route(f) = &decoded {
                        self.subs.insert(f.id(), channel);
                    }
                    decoded
                }
                Err(e) => self.refuse(id, What::Call, ErrorCode::InvalidParams, &bad(e)),
            },
            "unsubscribe" => match serde_json::from_slice::<UnsubscribeParams>(params) {
                Ok(p) => {
                    if self.subs.remove(&p.subscription).is_some() {
                        out.push(Decoded::Route(Frame::unsubscribe(p.subscription)));
                    }
                    self.route(id, What::Unsubscribe, |ping| Frame::ping(ping, b""))
                }
                Err(e) => self.refuse(id, What::Call, ErrorCode::InvalidParams, &bad(e)),
            },
            "register" | "unregister" => match serde_json::from_slice::<NameParams>(params) {
                Ok(p) if method == "register" => {
                    self.route(id, What::Call, |r| Frame::register(r, &p.name, p.shared))
                }
                Ok(p) => self.route(id, What::Call, |r| Frame::unregister(r, &p.name)),
                Err(e) => self.refuse(id, What::Call, ErrorCode::InvalidParams, &bad(e)),
            },
            "publish" => match serde_json::from_slice::<Event<'_>>(params) {
                Ok(ev) => {
                    let body = ev.payload.map_or(&b""[..], |p| p.get().as_bytes());
                    self.route(id, What::Call, |r| Frame::publish(r, &ev.topic, body, true))
                }
                Err(e) => self.refuse(id, What::Call, ErrorCode::InvalidParams, &bad(e)),
            },
            _ => match split_method(method) {
                Some((object, name)) => {
                    let timeout = cmd.timeout_ms.unwrap_or(0);
                    self.route(id, What::Call, |r| {
                        Frame::call(r, object, name, timeout, params)
                    })
                }
                None => {
                    let text = format!(
                        "method {method:?} is neither object.method nor one of subscribe, \
                         unsubscribe, publish, register, unregister"
                    );
                    self.refuse(id, What::Call, ErrorCode::InvalidParams, &text)
                }
            },
        }
    }

    /// A JSON-RPC response: the peer answers a call the broker sent it.
    fn rpc_response(&mut self, rpc_id: &RawValue, cmd: Command<'_>) -> Decoded {
        let Ok(id) = serde_json::from_str::<u64>(rpc_id.get()) else {
            return Decoded::Dropped(format!("a response to no call of the broker: id {rpc_id}"));
        };
        match cmd.error {
            Some(e) => {
                let code = u32::try_from(e.code)
                    .ok()
                    .and_then(ErrorCode::from_code)
                    .unwrap_or(ErrorCode::Internal);
                let data = e.data.map_or(&b""[..], |d| d.get().as_bytes());
                Decoded::Route(Frame::error(id, code, &e.message, data))
            }
            None => {
                let result = cmd.result.map_or(&b""[..], |r| r.get().as_bytes());
                Decoded::Route(Frame::reply(id, result))
            }
        }
    }

    /// `{"topic":T,"payload":P}` on DATA or TELEMETRY: publish P on T.
    fn publish(&mut self, payload: &[u8]) -> Decoded {
        let event = match serde_json::from_slice::<Event<'_>>(payload) {
            Ok(e) => e,
            Err(e) => {
                let text = format!("an event is {{\"topic\":T,\"payload\":P}}: {e}");
                return self.refuse(None, What::Notice, ErrorCode::InvalidParams, &text);
            }
        };
        if let Err(e) = validate_topic(&event.topic) {
            let text = format!("event on {:?} refused: {e}", event.topic);
            return self.refuse(None, What::Notice, ErrorCode::InvalidParams, &text);
        }
        let body = event.payload.map_or(&b""[..], |p| p.get().as_bytes());
        Decoded::Route(Frame::publish(0, &event.topic, body, false))
    }

    /// Writes the answer to the peer's request `frame.id()`.
    fn answer(&mut self, frame: &Frame, dst: &mut BytesMut) {
        let Some(open) = self.open.remove(&frame.id()) else {
            if frame.kind() == Kind::Error {
                self.tell_error(frame, dst);
            }
            return;
        };
        let failed = frame.kind() == Kind::Error;
        let payload = frame.payload();
        let rpc_id = &*open.rpc_id;
        let message = match open.what {
            What::Handshake => {
                let conn = serde_json::from_slice::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| v.get("conn_id").and_then(serde_json::Value::as_u64));
                let response = HandshakeResponse {
                    protocol: PROTOCOL.to_owned(),
                    version: VERSION.to_owned(),
                    channels: self.channels.clone(),
                    peer_id: conn.map_or_else(|| "plexus".to_owned(), |c| format!("plexus-{c}")),
                };
                // Strings and numbers always serialize.
                let json = serde_json::to_vec(&response).unwrap_or_default();
                return put_frame(dst, CONTROL, &json);
            }
            What::Ping => return put_frame(dst, CONTROL, &ControlMessage::json("pong")),
            What::Shutdown => {
                return put_frame(dst, CONTROL, &ControlMessage::json("shutdown_ack"));
            }
            What::Notice => return self.tell_error(frame, dst),
            _ if failed => {
                if matches!(open.what, What::Subscribe) {
                    self.subs.remove(&frame.id());
                }
                error_json(rpc_id, frame)
            }
            What::Subscribe => {
                let result = format!("{{\"subscription\":{}}}", frame.id());
                let raw =
                    RawValue::from_string(result).unwrap_or_else(|_| RawValue::NULL.to_owned());
                rpc::result(rpc_id, &raw)
            }
            What::Unsubscribe => rpc::result(rpc_id, RawValue::NULL),
            What::Call => rpc::result(rpc_id, &payload_json(&payload)),
        };
        if self.has(COMMAND) {
            put_frame(dst, COMMAND, &message);
        }
    }

    /// An error not tied to a request, on ERROR when the peer negotiated it.
    fn tell_error(&self, frame: &Frame, dst: &mut BytesMut) {
        if self.has(ERROR) {
            put_frame(dst, ERROR, &error_json(RawValue::NULL, frame));
        }
    }
}

/// The JSON-RPC error response carrying the error frame `frame`.
fn error_json(rpc_id: &RawValue, frame: &Frame) -> Vec<u8> {
    let payload = frame.payload();
    let data = (!payload.is_empty()).then(|| payload_json(&payload));
    rpc::error(rpc_id, frame.error_code(), frame.string(0), data.as_deref())
}

impl DialectCodec for IpcPrimsCodec {
    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) -> Result<(), Fatal> {
        while let Some((channel, payload)) = take_frame(buf, self.max_frame)? {
            if self.phase == Phase::Handshake {
                self.handshake(channel, &payload, out)?;
            } else {
                self.frame(channel, &payload, out);
            }
        }
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut, bounce: &mut Vec<Frame>) {
        match frame.kind() {
            Kind::Reply | Kind::Error | Kind::Pong => self.answer(frame, dst),
            Kind::Call => {
                if !self.has(COMMAND) || self.phase == Phase::Closing {
                    let msg = "this ipcprims peer takes no calls (no COMMAND channel, or closing)";
                    bounce.push(Frame::error(frame.id(), ErrorCode::WorkerGone, msg, b""));
                    return;
                }
                let payload = frame.payload();
                let method = format!("{}.{}", frame.string(0), frame.string(1));
                let message = rpc::request(frame.id(), &method, &payload_json(&payload));
                put_frame(dst, COMMAND, &message);
            }
            Kind::Event => {
                let Some(&channel) = self.subs.get(&frame.id()) else {
                    // Queued before the broker saw the peer's unsubscribe.
                    self.dropped_events += 1;
                    return;
                };
                if self.phase == Phase::Closing {
                    self.dropped_events += 1;
                    return;
                }
                let payload = frame.payload();
                let body = payload_json(&payload);
                let event = Event {
                    topic: frame.string(0).into(),
                    payload: Some(&body),
                    dropped: frame.aux(),
                };
                // Strings, numbers and raw JSON always serialize.
                let json = serde_json::to_vec(&event).unwrap_or_default();
                put_frame(dst, channel, &json);
            }
            _ => {}
        }
    }

    fn take_dropped_events(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_events)
    }

    fn outstanding(&self) -> usize {
        self.open.len()
    }
}
