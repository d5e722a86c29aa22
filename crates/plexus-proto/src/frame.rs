//! Frames: incremental decoding from a `BytesMut`, encoding, and constructors for each kind.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::decode_error::DecodeError;
use crate::error_code::ErrorCode;
use crate::fd_payload::FdPayload;
use crate::header::{HEADER_LEN, Header, MAX_STRINGS};
use crate::kind::{Kind, flags};

/// One decoded frame: the header, the body bytes (strings + payload) and where the strings are.
///
/// The body is a `Bytes` slice of the read buffer, so forwarding it copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    header: Header,
    body: Bytes,
    strings: [(u32, u32); MAX_STRINGS],
    payload_start: u32,
    /// Memfd payloads: the payload when it travels as a sealed memfd ([`flags::FD_PAYLOAD`]).
    fd: Option<FdPayload>,
}

/// Memfd payloads: whether a frame of `kind` with `flag_bits` has its payload in a memfd passed
/// beside it.
pub fn wants_fd(kind: Kind, flag_bits: u8) -> bool {
    flag_bits & flags::FD_PAYLOAD != 0
        && matches!(kind, Kind::Call | Kind::Reply | Kind::Publish | Kind::Event)
}

/// How many strings each kind must carry.
fn strings_needed(kind: Kind) -> usize {
    match kind {
        Kind::Hello | Kind::Welcome | Kind::Register | Kind::Unregister => 1,
        Kind::Error | Kind::Subscribe | Kind::Publish | Kind::Event => 1,
        Kind::Call => 2,
        Kind::Reply | Kind::Cancel | Kind::Unsubscribe | Kind::Ping | Kind::Pong => 0,
    }
}

/// Takes one complete frame off the front of `buf`, if there is one.
///
/// Returns `Ok(None)` when more bytes are needed. The size check happens as soon as the header
/// is in, so an oversized frame is refused before its body is buffered.
pub fn decode(buf: &mut BytesMut, max_frame: u32) -> Result<Option<Frame>, DecodeError> {
    decode_compact(buf, max_frame, 0)
}

/// Like [`decode`], but a frame of fewer than `copy_below` bytes (header included) gets a copy
/// of its body in an allocation of its own instead of a slice of `buf`.
///
/// A slice keeps the whole allocation it points into alive, so small frames kept for long (queued
/// for a slow reader) could each hold a read buffer many times their size. Larger frames, which
/// fill most of their buffer, stay zero-copy slices.
pub fn decode_compact(
    buf: &mut BytesMut,
    max_frame: u32,
    copy_below: usize,
) -> Result<Option<Frame>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&buf[..HEADER_LEN]);
    let header = Header::decode(&head)?;
    let size = HEADER_LEN as u64 + u64::from(header.body_len);
    if size > u64::from(max_frame) {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_frame,
        });
    }
    let total = HEADER_LEN + header.body_len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let body = if total < copy_below {
        let body = Bytes::copy_from_slice(&buf[HEADER_LEN..total]);
        buf.advance(total);
        body
    } else {
        buf.advance(HEADER_LEN);
        buf.split_to(header.body_len as usize).freeze()
    };
    Frame::from_parts(header, body).map(Some)
}

/// Appends the wire form of `frame` to `dst`.
pub fn encode(frame: &Frame, dst: &mut BytesMut) {
    dst.reserve(HEADER_LEN + frame.body.len());
    dst.put_slice(&frame.header.encode());
    dst.put_slice(&frame.body);
}

impl Frame {
    /// Checks `body` against `header` (string bounds, UTF-8, string count for the kind).
    pub fn from_parts(header: Header, body: Bytes) -> Result<Frame, DecodeError> {
        let need = strings_needed(header.kind);
        let got = usize::from(header.nstr);
        if got < need {
            return Err(DecodeError::MissingStrings {
                kind: header.kind.name(),
                need,
                got,
            });
        }
        let mut strings = [(0u32, 0u32); MAX_STRINGS];
        let mut pos = 0usize;
        for (i, slot) in strings.iter_mut().enumerate().take(got) {
            let len_bytes = body
                .get(pos..pos + 2)
                .ok_or(DecodeError::StringOverrun(i))?;
            let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
            let start = pos + 2;
            let text = body
                .get(start..start + len)
                .ok_or(DecodeError::StringOverrun(i))?;
            std::str::from_utf8(text).map_err(|_| DecodeError::StringNotUtf8(i))?;
            // The body is at most u32::MAX bytes long, so offsets fit in u32.
            *slot = (start as u32, (start + len) as u32);
            pos = start + len;
        }
        if wants_fd(header.kind, header.flags) && body.len() > pos {
            return Err(DecodeError::InlinePayloadWithFd(body.len() - pos));
        }
        Ok(Frame {
            header,
            body,
            strings,
            payload_start: pos as u32,
            fd: None,
        })
    }

    /// Builds a frame from its parts. Strings longer than 65,535 bytes are cut at a character
    /// boundary; callers validate names and topics before building.
    pub fn build(
        kind: Kind,
        id: u64,
        aux: u32,
        flags: u8,
        strings: &[&str],
        payload: &[u8],
    ) -> Frame {
        let strings = &strings[..strings.len().min(MAX_STRINGS)];
        let mut body = BytesMut::with_capacity(
            strings.iter().map(|s| s.len() + 2).sum::<usize>() + payload.len(),
        );
        let mut ranges = [(0u32, 0u32); MAX_STRINGS];
        for (slot, s) in ranges.iter_mut().zip(strings) {
            let s = truncate_utf8(s, usize::from(u16::MAX));
            body.put_u16_le(s.len() as u16);
            let start = body.len() as u32;
            body.put_slice(s.as_bytes());
            *slot = (start, body.len() as u32);
        }
        let payload_start = body.len() as u32;
        body.put_slice(payload);
        let header = Header {
            kind,
            id,
            aux,
            flags,
            nstr: strings.len() as u8,
            body_len: body.len() as u32,
            ..Header::new(kind)
        };
        Frame {
            header,
            body: body.freeze(),
            strings: ranges,
            payload_start,
            fd: None,
        }
    }

    /// A copy of this frame with another header id, aux and kind, sharing the body bytes.
    pub fn readdress(&self, kind: Kind, id: u64, aux: u32) -> Frame {
        let header = Header {
            kind,
            id,
            aux,
            ..self.header
        };
        Frame {
            header,
            ..self.clone()
        }
    }

    /// Memfd payloads: this frame with `fd` as its payload instead of the inline one (which is
    /// dropped), flagged [`flags::FD_PAYLOAD`].
    pub fn with_fd_payload(self, fd: FdPayload) -> Frame {
        let body = self.body.slice(..self.payload_start as usize);
        let header = Header {
            flags: self.header.flags | flags::FD_PAYLOAD,
            body_len: body.len() as u32,
            ..self.header
        };
        Frame {
            header,
            body,
            fd: Some(fd),
            ..self
        }
    }

    /// This frame with `bits` set in its flags.
    pub fn with_flags(mut self, bits: u8) -> Frame {
        self.header.flags |= bits;
        self
    }

    /// Memfd payloads: the payload's memfd, when it travels as one.
    pub fn fd_payload(&self) -> Option<&FdPayload> {
        self.fd.as_ref()
    }

    /// Memfd payloads: this frame with its memfd's bytes inline. `read` appends the payload to
    /// the buffer it is given (which holds the strings); the copy is not flagged
    /// [`flags::FD_PAYLOAD`] and holds no descriptor.
    pub fn inline_payload<E>(
        &self,
        read: impl FnOnce(&FdPayload, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Frame, E> {
        let Some(fd) = &self.fd else {
            return Ok(self.clone());
        };
        let strings = &self.body[..self.payload_start as usize];
        let mut body = Vec::with_capacity(strings.len() + fd.len() as usize);
        body.extend_from_slice(strings);
        read(fd, &mut body)?;
        let header = Header {
            flags: self.header.flags & !flags::FD_PAYLOAD,
            body_len: body.len() as u32,
            ..self.header
        };
        Ok(Frame {
            header,
            body: Bytes::from(body),
            strings: self.strings,
            payload_start: self.payload_start,
            fd: None,
        })
    }

    /// The payload's length: its inline bytes, or its memfd's.
    pub fn payload_len(&self) -> u64 {
        match &self.fd {
            Some(fd) => fd.len(),
            None => (self.body.len() - self.payload_start as usize) as u64,
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.header.kind
    }

    /// The id.
    pub fn id(&self) -> u64 {
        self.header.id
    }

    /// The kind-specific aux number.
    pub fn aux(&self) -> u32 {
        self.header.aux
    }

    /// The flag bits.
    pub fn flags(&self) -> u8 {
        self.header.flags
    }

    /// String `i`, or `""` if the frame has fewer strings.
    pub fn string(&self, i: usize) -> &str {
        if i >= usize::from(self.header.nstr) {
            return "";
        }
        let (start, end) = self.strings[i];
        std::str::from_utf8(&self.body[start as usize..end as usize]).unwrap_or_default()
    }

    /// The body: strings and payload, exactly as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The payload (the bytes after the strings).
    pub fn payload(&self) -> Bytes {
        self.body.slice(self.payload_start as usize..)
    }

    /// The payload, taking the frame apart: unlike [`Frame::payload`] it touches no reference
    /// count (a fan-out subscriber takes millions a second).
    pub fn into_payload(self) -> Bytes {
        let mut body = self.body;
        body.advance(self.payload_start as usize);
        body
    }

    /// Length of the frame on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// The error code of an `Error` frame (`Internal` for a code this side does not know).
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_code(self.header.aux).unwrap_or(ErrorCode::Internal)
    }

    /// `Hello`: the first frame a client sends.
    pub fn hello(client_name: &str) -> Frame {
        Frame::build(Kind::Hello, 0, 0, 0, &[client_name], b"")
    }

    /// `Hello` carrying the broker's token as its payload, for a TCP listener that asks for one.
    pub fn hello_with_token(client_name: &str, token: &[u8]) -> Frame {
        Frame::build(Kind::Hello, 0, 0, 0, &[client_name], token)
    }

    /// `Welcome`: the broker's answer to `Hello`.
    pub fn welcome(conn_id: u64, max_frame: u32, broker_version: &str) -> Frame {
        Frame::build(Kind::Welcome, conn_id, max_frame, 0, &[broker_version], b"")
    }

    /// `Register` of `name`, shared (queue group) or exclusive.
    pub fn register(id: u64, name: &str, shared: bool) -> Frame {
        let f = if shared { flags::SHARED } else { 0 };
        Frame::build(Kind::Register, id, 0, f, &[name], b"")
    }

    /// `Unregister` of `name`.
    pub fn unregister(id: u64, name: &str) -> Frame {
        Frame::build(Kind::Unregister, id, 0, 0, &[name], b"")
    }

    /// `Call` of `object.method` with JSON `params` and a timeout (0 = broker default).
    pub fn call(id: u64, object: &str, method: &str, timeout_ms: u32, params: &[u8]) -> Frame {
        Frame::build(Kind::Call, id, timeout_ms, 0, &[object, method], params)
    }

    /// `Reply` with JSON `result`.
    pub fn reply(id: u64, result: &[u8]) -> Frame {
        Frame::build(Kind::Reply, id, 0, 0, &[], result)
    }

    /// `Error` with a code, a message and optional JSON `data` (empty for none).
    pub fn error(id: u64, code: ErrorCode, message: &str, data: &[u8]) -> Frame {
        Frame::build(Kind::Error, id, code.code(), 0, &[message], data)
    }

    /// `Cancel` of call `id`.
    pub fn cancel(id: u64) -> Frame {
        Frame::build(Kind::Cancel, id, 0, 0, &[], b"")
    }

    /// `Subscribe` to `pattern` as subscription `id`.
    pub fn subscribe(id: u64, pattern: &str) -> Frame {
        Frame::build(Kind::Subscribe, id, 0, 0, &[pattern], b"")
    }

    /// `Subscribe` to `pattern` as subscription `id`, a member of queue group `group`.
    pub fn subscribe_queue(id: u64, pattern: &str, group: &str) -> Frame {
        Frame::build(Kind::Subscribe, id, 0, flags::QUEUE, &[pattern, group], b"")
    }

    /// `Unsubscribe` subscription `id`.
    pub fn unsubscribe(id: u64) -> Frame {
        Frame::build(Kind::Unsubscribe, id, 0, 0, &[], b"")
    }

    /// `Publish` of JSON `body` on `topic`; with `ack`, the broker replies with delivery counts.
    pub fn publish(id: u64, topic: &str, body: &[u8], ack: bool) -> Frame {
        let f = if ack { flags::ACK } else { 0 };
        Frame::build(Kind::Publish, id, 0, f, &[topic], body)
    }

    /// `Event` for subscription `sub_id`, with the count of events dropped before it.
    pub fn event(sub_id: u64, dropped: u32, topic: &str, body: &[u8]) -> Frame {
        Frame::build(Kind::Event, sub_id, dropped, 0, &[topic], body)
    }

    /// `Ping` with an opaque payload.
    pub fn ping(id: u64, payload: &[u8]) -> Frame {
        Frame::build(Kind::Ping, id, 0, 0, &[], payload)
    }

    /// `Pong` answering `Ping` `id`.
    pub fn pong(id: u64, payload: &[u8]) -> Frame {
        Frame::build(Kind::Pong, id, 0, 0, &[], payload)
    }

    /// The frame as one contiguous byte string.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        encode(self, &mut out);
        out.freeze()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
