//! The codec of one ipc-server connection: the peer's requests answered in the order they came,
//! calls to it sent one at a time, events held while it waits for something else, and every
//! message handed out alone for its own write.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::BytesMut;

use super::messages::{Incoming, ListQuery, Outgoing, parse, to_json};
use super::{MESSAGE_GAP, Splitter, wire_message};
use crate::dialect::{Decoded, DialectCodec, Fatal, frame_error_text, payload_json};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;
use crate::names::validate_topic;

/// Bytes of events held while the peer waits for something else; more are dropped.
const HELD_LIMIT: usize = 1024 * 1024;
/// Error messages not tied to a request (why the connection is closed) kept for writing.
const NOTICE_LIMIT: usize = 16;
/// Subscription ids have this bit set, so they never meet the ids of requests.
const SUBSCRIPTION_BIT: u64 = 1 << 63;

/// What a request of the peer was, for the answer it gets.
#[derive(Debug)]
enum Open {
    /// `reg_object`: `{"success":"OK"}` or an error.
    Register,
    /// `list`, asked as `plexus.wait_for` with a zero timeout: the list back, or an empty one.
    List(Vec<String>),
    /// A call, or a message answered with an error at once: `{"response":V}` or an error.
    Call,
}

/// A request of the peer in its place in the order of answers.
#[derive(Debug)]
struct Turn {
    id: u64,
    open: Open,
    /// The message answering it, once known.
    answer: Option<Vec<u8>>,
    /// Requests refused `overloaded` behind this one without a turn of their own: the refusal is
    /// written that many times after this turn's answer.
    refused_after: usize,
}

/// The codec of one ipc-server connection.
#[derive(Debug)]
pub struct IpcServerCodec {
    max_frame: u32,
    /// Most requests (and unconfirmed subscriptions) that may wait at once; also the most calls
    /// queued for the peer and the most events it may subscribe to.
    max_outstanding: usize,
    splitter: Splitter,
    next_id: u64,
    /// The peer's requests, oldest first; their ids increase.
    turns: VecDeque<Turn>,
    /// Subscriptions: frame id → event name, and the names, so each is subscribed once.
    subs: HashMap<u64, String>,
    names: HashSet<String>,
    /// Subscriptions not yet confirmed by the router.
    unconfirmed: HashSet<u64>,
    /// Calls for the peer waiting to be sent: routed id and message.
    calls: VecDeque<(u64, Vec<u8>)>,
    /// The routed id of the call the peer was sent and has not answered.
    in_flight: Option<u64>,
    /// Events waiting to be sent, and their bytes.
    events: VecDeque<Vec<u8>>,
    held: usize,
    /// Events dropped because the held ones were at their limit, not yet reported.
    dropped_events: u64,
    /// Errors not tied to a request.
    notices: VecDeque<Vec<u8>>,
}

impl IpcServerCodec {
    /// A codec refusing messages over `max_frame` bytes, and answering `overloaded` to requests
    /// that come while `max_outstanding` wait for their answers.
    pub fn new(max_frame: u32, max_outstanding: usize) -> IpcServerCodec {
        IpcServerCodec {
            max_frame,
            max_outstanding,
            splitter: Splitter::default(),
            next_id: 0,
            turns: VecDeque::new(),
            subs: HashMap::new(),
            names: HashSet::new(),
            unconfirmed: HashSet::new(),
            calls: VecDeque::new(),
            in_flight: None,
            events: VecDeque::new(),
            held: 0,
            dropped_events: 0,
            notices: VecDeque::new(),
        }
    }

    fn full(&self) -> bool {
        self.turns.len() + self.unconfirmed.len() >= self.max_outstanding
    }

    fn overloaded_text(&self) -> String {
        format!(
            "{}: {} requests on this connection already wait for their answers; try again later",
            ErrorCode::Overloaded.name(),
            self.max_outstanding
        )
    }

    /// Gives a request a turn and routes the frame `frame` builds for its id; when too many wait
    /// already, it is refused `overloaded` in its turn instead.
    fn request(&mut self, open: Open, frame: impl FnOnce(u64) -> Frame) -> Decoded {
        if self.full() {
            return self.refuse_overloaded();
        }
        let id = self.turn(open);
        Decoded::Route(frame(id))
    }

    /// Refuses a request `overloaded` right after the last turn's answer (at once when there is
    /// none), without a turn of its own.
    fn refuse_overloaded(&mut self) -> Decoded {
        let text = self.overloaded_text();
        match self.turns.back_mut() {
            Some(last) => last.refused_after += 1,
            None => self.notice(&text),
        }
        Decoded::Dropped(text)
    }

    /// Gives a request a turn; returns its id.
    fn turn(&mut self, open: Open) -> u64 {
        self.next_id += 1;
        self.turns.push_back(Turn {
            id: self.next_id,
            open,
            answer: None,
            refused_after: 0,
        });
        self.next_id
    }

    /// A message that gets an error in its turn, at once.
    fn refuse(&mut self, code: ErrorCode, message: &str) -> Decoded {
        if self.full() {
            return self.refuse_overloaded();
        }
        let id = self.turn(Open::Call);
        Decoded::Answer(Frame::error(id, code, message, b""))
    }

    fn notice(&mut self, text: &str) {
        if self.notices.len() < NOTICE_LIMIT {
            self.notices
                .push_back(to_json(&Outgoing::Error { error: text }));
        }
    }

    /// What one message means.
    fn message(&mut self, body: &[u8]) -> Decoded {
        let msg = match parse(body) {
            Ok(msg) => msg,
            Err(why) => return self.refuse(ErrorCode::BadFrame, &why),
        };
        match msg {
            Incoming::Register(name) => {
                self.request(Open::Register, |id| Frame::register(id, &name, false))
            }
            Incoming::Call {
                object,
                method,
                param,
            } => {
                let params = param.map_or(&b""[..], |p| p.get().as_bytes());
                self.request(Open::Call, |id| {
                    Frame::call(id, &object, &method, 0, params)
                })
            }
            Incoming::List(names) => {
                let params = ListQuery {
                    names: &names,
                    timeout_ms: 0,
                }
                .to_json();
                // The query is a little longer than the message it came in.
                if params.len() > self.max_frame as usize {
                    let why = format!(
                        "the list of {} names makes a wait_for query of {} bytes, over max_frame ({} bytes)",
                        names.len(),
                        params.len(),
                        self.max_frame
                    );
                    return self.refuse(ErrorCode::FrameTooLarge, &why);
                }
                let object = crate::BROKER_OBJECT;
                self.request(Open::List(names), |id| {
                    Frame::call(id, object, "wait_for", 0, &params)
                })
            }
            Incoming::Subscribe(name) => self.subscribe(name),
            Incoming::Event { event, result } => match validate_topic(&event) {
                Ok(()) => Decoded::Route(Frame::publish(0, &event, result.get().as_bytes(), false)),
                Err(e) => Decoded::Dropped(format!("event {event:?} not sent: {e}")),
            },
            Incoming::Response(value) => match self.in_flight.take() {
                Some(id) => Decoded::Route(Frame::reply(id, value.get().as_bytes())),
                None => Decoded::Dropped("a response with no call to answer".to_owned()),
            },
            Incoming::Error(value) => match self.in_flight.take() {
                Some(id) => {
                    let (code, text) = match serde_json::from_str::<String>(value.get()) {
                        Ok(text) => {
                            let (code, rest) = crate::dialect::parse_coded_message(&text);
                            (code, rest.to_owned())
                        }
                        Err(_) => (ErrorCode::Internal, value.get().to_owned()),
                    };
                    Decoded::Route(Frame::error(id, code, &text, b""))
                }
                None => Decoded::Dropped(format!("an error with no call to answer: {value}")),
            },
            Incoming::Success => Decoded::Dropped("a success message from a peer".to_owned()),
        }
    }

    /// `event_name`: once per connection and name, never answered (ipc-server's client reads
    /// whatever follows as an event).
    fn subscribe(&mut self, name: String) -> Decoded {
        if self.names.contains(&name) {
            return Decoded::Dropped(format!("already subscribed to {name:?}"));
        }
        if let Err(e) = validate_topic(&name) {
            return Decoded::Dropped(format!("subscription to {name:?} refused: {e}"));
        }
        if self.full() || self.names.len() >= self.max_outstanding {
            return Decoded::Dropped(format!(
                "overloaded: subscription to {name:?} refused while too many requests wait"
            ));
        }
        self.next_id += 1;
        let id = self.next_id | SUBSCRIPTION_BIT;
        self.names.insert(name.clone());
        self.subs.insert(id, name.clone());
        self.unconfirmed.insert(id);
        Decoded::Route(Frame::subscribe(id, &name))
    }

    /// Records the answer to the peer's request `frame.id()`.
    fn answer(&mut self, frame: &Frame) {
        let id = frame.id();
        if id & SUBSCRIPTION_BIT != 0 {
            self.unconfirmed.remove(&id);
            if frame.kind() == Kind::Error
                && let Some(name) = self.subs.remove(&id)
            {
                self.names.remove(&name);
            }
            return;
        }
        let Ok(index) = self.turns.binary_search_by_key(&id, |t| t.id) else {
            if frame.kind() == Kind::Error {
                self.notice(&frame_error_text(frame));
            }
            return;
        };
        let turn = &mut self.turns[index];
        if turn.answer.is_some() {
            return;
        }
        let failed = frame.kind() == Kind::Error;
        let message = match &turn.open {
            Open::List(_) if failed => to_json(&Outgoing::List { list: &[] }),
            Open::List(names) => to_json(&Outgoing::List { list: names }),
            _ if failed => to_json(&Outgoing::Error {
                error: &frame_error_text(frame),
            }),
            Open::Register => to_json(&Outgoing::Success { success: "OK" }),
            Open::Call => {
                let payload = frame.payload();
                to_json(&Outgoing::Response {
                    response: &payload_json(&payload),
                })
            }
        };
        turn.answer = Some(message);
    }

    /// Holds the call `frame` for the peer, or bounces it when too many wait.
    fn hold_call(&mut self, frame: &Frame, bounce: &mut Vec<Frame>) {
        if self.calls.len() >= self.max_outstanding {
            let msg = format!(
                "{} calls already wait for this ipc-server worker; try again later",
                self.calls.len()
            );
            bounce.push(Frame::error(frame.id(), ErrorCode::Overloaded, &msg, b""));
            return;
        }
        let payload = frame.payload();
        let param = (!payload.is_empty()).then(|| payload_json(&payload));
        let message = to_json(&Outgoing::Call {
            object: frame.string(0),
            method: frame.string(1),
            param: param.as_deref(),
        });
        self.calls.push_back((frame.id(), message));
    }

    fn hold_event(&mut self, frame: &Frame) {
        let payload = frame.payload();
        let message = to_json(&Outgoing::Event {
            event: frame.string(0),
            result: &payload_json(&payload),
        });
        if self.held + message.len() <= HELD_LIMIT {
            self.held += message.len();
            self.events.push_back(message);
        } else {
            self.dropped_events += 1;
        }
    }
}

impl DialectCodec for IpcServerCodec {
    fn take_dropped_events(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_events)
    }

    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) -> Result<(), Fatal> {
        while let Some(body) = self.splitter.take(buf, self.max_frame)? {
            let decoded = self.message(&body);
            out.push(decoded);
        }
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, _dst: &mut BytesMut, bounce: &mut Vec<Frame>) {
        match frame.kind() {
            Kind::Reply | Kind::Error => self.answer(frame),
            Kind::Call => self.hold_call(frame, bounce),
            Kind::Cancel => self.calls.retain(|(id, _)| *id != frame.id()),
            Kind::Event => self.hold_event(frame),
            _ => {}
        }
    }

    fn outstanding(&self) -> usize {
        self.turns.len() + self.unconfirmed.len()
    }

    fn message_gap(&self) -> Option<Duration> {
        Some(MESSAGE_GAP)
    }

    fn next_message(&mut self, dst: &mut BytesMut) -> bool {
        let refusal = self.overloaded_text();
        let message = if let Some(front) = self.turns.front_mut()
            && let Some(answer) = front.answer.take()
        {
            if front.refused_after > 0 {
                front.refused_after -= 1;
                front.answer = Some(to_json(&Outgoing::Error { error: &refusal }));
            } else {
                self.turns.pop_front();
            }
            answer
        } else if let Some(notice) = self.notices.pop_front() {
            notice
        } else if !self.turns.is_empty() || self.in_flight.is_some() {
            return false;
        } else if let Some((id, call)) = self.calls.pop_front() {
            self.in_flight = Some(id);
            call
        } else if let Some(event) = self.events.pop_front() {
            self.held -= event.len();
            event
        } else {
            return false;
        };
        dst.extend_from_slice(&wire_message(message));
        true
    }
}
