//! Foreign dialects: detecting which protocol a connection speaks from its first bytes, and codecs
//! that turn ProcBridge, NDJSON, ipc-broker, ipc-server and ipcprims messages into native
//! [`Frame`]s and back.
//!
//! A dialect codec is a pure state machine: [`DialectCodec::decode`] takes the peer's bytes and
//! produces frames for the router (or answers it can give by itself), [`DialectCodec::encode`]
//! turns the frames the router sends to the peer into the dialect's bytes. State that maps the
//! dialect's ids to the `u64` ids of frames lives in the codec. Nothing here does I/O; the broker
//! shares one codec between a connection's reader and writer.

use std::borrow::Cow;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;
use crate::frame::Frame;

pub mod ipc_broker;
pub mod ipc_server;
pub mod ipcprims;
pub mod ndjson;
pub mod procbridge;

/// Default most requests of one dialect connection that may wait for answers at once.
pub const DEFAULT_MAX_OUTSTANDING: usize = 65_536;

/// The protocol a connection speaks, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// plexus frames (`PX`), or bytes no dialect claims (the native decoder refuses them).
    Native,
    /// ProcBridge packets (`pb`).
    ProcBridge,
    /// One JSON object per line (`{`, after optional whitespace).
    Ndjson,
    /// ipc-broker's u32 big-endian length prefix followed by a JSON object.
    IpcBroker,
    /// ipc-server's bare JSON objects. Never detected (its first byte is NDJSON's `{`): only the
    /// ipc-server listener speaks it, to every connection.
    IpcServer,
    /// ipcprims frames (`IP`).
    IpcPrims,
}

impl Dialect {
    /// Which dialect `first` (the first bytes a peer sent) belongs to, or `None` when more bytes
    /// are needed to tell. At most five bytes are ever needed.
    ///
    /// `PX` is native; `pb` is ProcBridge; `{` or ASCII whitespace is NDJSON (no length prefix
    /// under 128 MiB starts with those bytes); `IP` is ipcprims (no length prefix under 1 GiB starts
    /// with it); four bytes followed by `{` is ipc-broker. Anything else is native, whose decoder
    /// answers `bad_frame`. ipc-server is never detected: see [`Dialect::IpcServer`].
    pub fn detect(first: &[u8]) -> Option<Dialect> {
        let &b0 = first.first()?;
        if b0 == b'{' || b0.is_ascii_whitespace() {
            return Some(Dialect::Ndjson);
        }
        if b0 == b'P' {
            return Some(Dialect::Native);
        }
        if b0 == ipcprims::MAGIC[0] {
            let &b1 = first.get(1)?;
            if b1 == ipcprims::MAGIC[1] {
                return Some(Dialect::IpcPrims);
            }
        }
        if b0 == procbridge::MAGIC[0] {
            let &b1 = first.get(1)?;
            return Some(if b1 == procbridge::MAGIC[1] {
                Dialect::ProcBridge
            } else {
                Dialect::Native
            });
        }
        let &b4 = first.get(4)?;
        Some(if b4 == b'{' {
            Dialect::IpcBroker
        } else {
            Dialect::Native
        })
    }

    /// The client name a connection of this dialect is listed under (it sends no `hello`).
    pub fn client_name(self) -> &'static str {
        match self {
            Dialect::Native => "native",
            Dialect::ProcBridge => "procbridge",
            Dialect::Ndjson => "ndjson",
            Dialect::IpcBroker => "ipc-broker",
            Dialect::IpcServer => "ipc-server",
            Dialect::IpcPrims => "ipcprims",
        }
    }

    /// A fresh codec for a connection of this dialect; `None` for native, which needs none.
    /// It refuses messages over `max_frame` bytes, and answers `overloaded` to requests that come
    /// while `max_outstanding` of the peer's requests wait for their answers.
    pub fn codec(self, max_frame: u32, max_outstanding: usize) -> Option<Box<dyn DialectCodec>> {
        let (frame, open) = (max_frame, max_outstanding);
        match self {
            Dialect::Native => None,
            Dialect::ProcBridge => Some(Box::new(procbridge::ProcBridgeCodec::new(frame, open))),
            Dialect::Ndjson => Some(Box::new(ndjson::NdjsonCodec::new(frame, open))),
            Dialect::IpcBroker => Some(Box::new(ipc_broker::IpcBrokerCodec::new(frame, open))),
            Dialect::IpcServer => Some(Box::new(ipc_server::IpcServerCodec::new(frame, open))),
            Dialect::IpcPrims => Some(Box::new(ipcprims::IpcPrimsCodec::new(frame, open))),
        }
    }
}

/// One thing a decoder produced from the peer's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A request for the router, as a native frame.
    Route(Frame),
    /// An answer the codec gives by itself (e.g. to a malformed message); it goes back to the peer
    /// through the encoder like any answer.
    Answer(Frame),
    /// A message the dialect ignores without answering (its clients would misread an answer);
    /// the text says why, for the log.
    Dropped(String),
}

/// The peer's bytes cannot be made sense of any more; the connection must close after telling it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Fatal {
    /// The error code to tell the peer.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
}

impl Fatal {
    /// A fatal error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
        }
    }
}

/// A dialect's decoder and encoder, with the state that maps its ids to frame ids.
pub trait DialectCodec: Send {
    /// Takes every complete message off the front of `buf` and appends what it means to `out`.
    /// Problems confined to one message are answered through [`Decoded::Answer`]; `Err` means the
    /// stream cannot be resynchronised.
    fn decode(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) -> Result<(), Fatal>;

    /// The peer closed its sending side: whatever is left in `buf` is all it will send.
    fn decode_eof(&mut self, buf: &mut BytesMut, out: &mut Vec<Decoded>) {
        let _ = (buf, out);
    }

    /// Appends the dialect's form of `frame` (sent by the router to this peer) to `dst`. Frames
    /// with no meaning in the dialect are dropped. A call the dialect cannot carry is answered by
    /// pushing an error frame for the router to `bounce`, as if the peer had sent it. An event it
    /// cannot give the peer is counted for [`DialectCodec::take_dropped_events`].
    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut, bounce: &mut Vec<Frame>);
    /// How many events `encode` could not give the peer since the last call, and resets the
    /// count. The router counted them delivered when it queued them; the broker counts them
    /// dropped instead.
    fn take_dropped_events(&mut self) -> u64;

    /// Requests of the peer still waiting for an answer.
    fn outstanding(&self) -> usize;

    /// `Some(gap)` for a dialect whose peers take whatever one read returns as one message
    /// (ipc-server): its encoder holds what it makes instead of appending it to `dst`, and the
    /// connection writes one message per write, taken with [`DialectCodec::next_message`] once
    /// the previous one is written and either the peer has sent something since or `gap` has
    /// passed. `None` (the default): encoded bytes go out as they come.
    fn message_gap(&self) -> Option<Duration> {
        None
    }

    /// Appends the next held message to `dst` (only for dialects with a [`message_gap`]);
    /// `false` when none may go now.
    ///
    /// [`message_gap`]: DialectCodec::message_gap
    fn next_message(&mut self, dst: &mut BytesMut) -> bool {
        let _ = dst;
        false
    }
}

/// `object.method` split at the last dot, so object names may contain dots
/// (`org.x.math.add` calls `add` on `org.x.math`). `None` without a dot or with an empty side.
pub fn split_method(full: &str) -> Option<(&str, &str)> {
    let (object, method) = full.rsplit_once('.')?;
    if object.is_empty() || method.is_empty() {
        return None;
    }
    Some((object, method))
}

/// A payload as JSON for embedding in a dialect's message: `null` when empty, the bytes when they
/// are JSON, otherwise a JSON string of the bytes (invalid UTF-8 replaced).
pub fn payload_json(payload: &[u8]) -> Cow<'_, RawValue> {
    if payload.is_empty() {
        return Cow::Owned(RawValue::NULL.to_owned());
    }
    match serde_json::from_slice::<&RawValue>(payload) {
        Ok(raw) => Cow::Borrowed(raw),
        Err(_) => Cow::Owned(
            serde_json::value::to_raw_value(&String::from_utf8_lossy(payload))
                .unwrap_or_else(|_| RawValue::NULL.to_owned()),
        ),
    }
}

/// `raw` on one line: its CR and LF bytes, which valid JSON has only as whitespace between
/// tokens, become spaces. Payloads from other dialects and native peers may be pretty-printed.
pub(crate) fn one_line(raw: &RawValue) -> Cow<'_, RawValue> {
    let text = raw.get();
    if !text.bytes().any(|b| b == b'\n' || b == b'\r') {
        return Cow::Borrowed(raw);
    }
    let flat = text.replace(['\n', '\r'], " ");
    // Whitespace for whitespace leaves valid JSON valid.
    Cow::Owned(RawValue::from_string(flat).unwrap_or_else(|_| RawValue::NULL.to_owned()))
}

/// A payload as JSON on one line (see [`payload_json`] and [`one_line`]).
pub(crate) fn line_json(payload: &[u8]) -> Cow<'_, RawValue> {
    match payload_json(payload) {
        Cow::Borrowed(raw) => one_line(raw),
        // What payload_json makes itself is `null` or a JSON string: one line already.
        Cow::Owned(raw) => Cow::Owned(raw),
    }
}

/// `code_name: message`, the form error codes take in dialects whose errors are plain text.
pub fn coded_message(code: ErrorCode, message: &str) -> String {
    format!("{}: {message}", code.name())
}

/// What separates an error's message from its data in dialects whose errors are plain text. The
/// data is one line of JSON, so the last separator in a text is the one before the data.
pub const DATA_SEPARATOR: &str = "\ndata: ";

/// An error as plain text: `code_name: message`, then, when the error has data (a non-empty
/// `payload`), [`DATA_SEPARATOR`] and the data as one line of JSON. A message that holds the
/// separator itself is followed by `null` data, so that the text splits back the same.
pub fn error_text(code: ErrorCode, message: &str, payload: &[u8]) -> String {
    let mut text = coded_message(code, message);
    if !payload.is_empty() || message.contains(DATA_SEPARATOR) {
        text.push_str(DATA_SEPARATOR);
        text.push_str(line_json(payload).get());
    }
    text
}

/// The code and message of a text error: `code_name: message` gives that code; any other text is
/// `internal` with the whole text as the message.
pub fn parse_coded_message(text: &str) -> (ErrorCode, &str) {
    if let Some((name, rest)) = text.split_once(": ")
        && let Some(code) = ErrorCode::from_name(name)
    {
        return (code, rest);
    }
    (ErrorCode::Internal, text)
}

/// A text error split into its text and its data (the JSON after the last [`DATA_SEPARATOR`],
/// as [`error_text`] writes it); the whole text and no data when it has none.
pub fn split_error_data(text: &str) -> (&str, &[u8]) {
    if let Some((head, data)) = text.rsplit_once(DATA_SEPARATOR)
        && serde_json::from_str::<&RawValue>(data).is_ok()
    {
        return (head, data.as_bytes());
    }
    (text, b"")
}

/// The text of an error frame, with its data (see [`error_text`]).
fn frame_error_text(frame: &Frame) -> String {
    error_text(frame.error_code(), frame.string(0), &frame.payload())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_dialect_from_its_first_bytes() {
        assert_eq!(Dialect::detect(b""), None);
        assert_eq!(Dialect::detect(b"PX\x01"), Some(Dialect::Native));
        assert_eq!(Dialect::detect(b"P"), Some(Dialect::Native));
        assert_eq!(Dialect::detect(b"p"), None);
        assert_eq!(Dialect::detect(b"pb"), Some(Dialect::ProcBridge));
        assert_eq!(Dialect::detect(b"px"), Some(Dialect::Native));
        assert_eq!(Dialect::detect(b"{\"op\""), Some(Dialect::Ndjson));
        assert_eq!(Dialect::detect(b"  \n{"), Some(Dialect::Ndjson));
        assert_eq!(Dialect::detect(b"\x00\x00\x00"), None);
        assert_eq!(
            Dialect::detect(b"\x00\x00\x00\x10{\"Call\""),
            Some(Dialect::IpcBroker)
        );
        assert_eq!(Dialect::detect(b"GET / HTTP/1.1"), Some(Dialect::Native));
        assert_eq!(Dialect::detect(b"I"), None);
        assert_eq!(
            Dialect::detect(b"IP\x10\x00\x00\x00\x00\x00"),
            Some(Dialect::IpcPrims)
        );
        assert_eq!(Dialect::detect(b"IX\x00\x00{"), Some(Dialect::IpcBroker));
    }

    #[test]
    fn methods_split_at_the_last_dot() {
        assert_eq!(split_method("math.add"), Some(("math", "add")));
        assert_eq!(split_method("org.x.math.add"), Some(("org.x.math", "add")));
        assert_eq!(split_method("add"), None);
        assert_eq!(split_method(".add"), None);
        assert_eq!(split_method("math."), None);
    }

    #[test]
    fn payloads_become_json() {
        assert_eq!(payload_json(b"").get(), "null");
        assert_eq!(payload_json(b"{\"a\":1}").get(), "{\"a\":1}");
        assert_eq!(payload_json(b" 42 ").get(), "42");
        assert_eq!(payload_json(b"not json").get(), "\"not json\"");
    }

    #[test]
    fn coded_messages_round_trip() {
        let text = coded_message(ErrorCode::NoSuchObject, "no object named 'x'");
        assert_eq!(text, "no_such_object: no object named 'x'");
        assert_eq!(
            parse_coded_message(&text),
            (ErrorCode::NoSuchObject, "no object named 'x'")
        );
        assert_eq!(
            parse_coded_message("division by zero"),
            (ErrorCode::Internal, "division by zero")
        );
    }

    #[test]
    fn error_texts_carry_their_data_on_one_line() {
        let data = b"{\n  \"missing\": [\"log\"]\n}";
        let text = error_text(ErrorCode::Timeout, "no reply\ndata: soon", data);
        assert_eq!(
            text,
            "timeout: no reply\ndata: soon\ndata: {   \"missing\": [\"log\"] }"
        );
        assert_eq!(
            split_error_data(&text),
            (
                "timeout: no reply\ndata: soon",
                &b"{   \"missing\": [\"log\"] }"[..]
            )
        );
        assert_eq!(
            error_text(ErrorCode::Internal, "x", b"not json"),
            "internal: x\ndata: \"not json\""
        );
        let plain = error_text(ErrorCode::NoSuchObject, "no object", b"");
        assert_eq!(plain, "no_such_object: no object");
        assert_eq!(split_error_data(&plain), (plain.as_str(), &b""[..]));
        let tricky = error_text(ErrorCode::Internal, "a\ndata: [1]", b"");
        assert_eq!(tricky, "internal: a\ndata: [1]\ndata: null");
        assert_eq!(
            split_error_data(&tricky),
            ("internal: a\ndata: [1]", &b"null"[..])
        );
        assert_eq!(
            split_error_data("internal: a\ndata: {"),
            ("internal: a\ndata: {", &b""[..])
        );
    }
}
