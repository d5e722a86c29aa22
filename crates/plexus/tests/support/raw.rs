//! Raw connections to the broker: native frames, NDJSON lines, ProcBridge and ipc-broker
//! packets, built byte by byte from `docs/protocol.md` so a test sends exactly what it means,
//! including what no well-behaved client would send.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use plexus_proto::{ErrorCode, Frame, Kind, decode};
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::WAIT;

/// What waiting for the next message gave.
#[derive(Debug)]
pub enum Next<T> {
    /// A message.
    Got(T),
    /// The broker closed the connection (or reset it).
    Closed,
    /// Nothing within the wait.
    TimedOut,
}

/// A connection with a read buffer and decoders for every dialect's answers.
pub struct Conn {
    /// The socket.
    pub stream: UnixStream,
    buf: BytesMut,
    /// The connection id from `welcome` (native connections after [`Conn::hello`]).
    pub conn_id: u64,
}

impl Conn {
    /// Connects without sending anything.
    pub async fn connect(path: &Path) -> Conn {
        let stream = tokio::time::timeout(WAIT, UnixStream::connect(path))
            .await
            .expect("connect in time")
            .expect("connect");
        Conn {
            stream,
            buf: BytesMut::new(),
            conn_id: 0,
        }
    }

    /// Wraps a connected socket (e.g. the halves of one put back together).
    pub fn from_stream(stream: UnixStream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::new(),
            conn_id: 0,
        }
    }

    /// Connects and says `hello` as `name`; the answer must be `welcome`.
    pub async fn hello(path: &Path, name: &str) -> Conn {
        let mut c = Conn::connect(path).await;
        c.send(&Frame::hello(name)).await;
        let welcome = c.frame().await;
        assert_eq!(welcome.kind(), Kind::Welcome, "hello answered {welcome:?}");
        c.conn_id = welcome.id();
        c
    }

    /// Sends a native frame.
    pub async fn send(&mut self, frame: &Frame) {
        self.send_bytes(&frame.to_bytes()).await;
    }

    /// Sends bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("the broker takes the bytes in time")
            .expect("write");
    }

    /// Sends bytes; `false` if the broker already closed the connection.
    pub async fn try_send_bytes(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Reads once more into the buffer: `false` at the end of the stream (or a reset).
    async fn fill(&mut self) -> bool {
        matches!(self.stream.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// The next message `take` can cut off the buffer, within `wait`.
    async fn next_with<T>(
        &mut self,
        wait: Duration,
        mut take: impl FnMut(&mut BytesMut) -> Option<T>,
    ) -> Next<T> {
        let result = tokio::time::timeout(wait, async {
            loop {
                if let Some(t) = take(&mut self.buf) {
                    return Some(t);
                }
                if !self.fill().await {
                    return None;
                }
            }
        })
        .await;
        match result {
            Ok(Some(t)) => Next::Got(t),
            Ok(None) => Next::Closed,
            Err(_) => Next::TimedOut,
        }
    }

    /// The next native frame within `wait`.
    pub async fn next_frame(&mut self, wait: Duration) -> Next<Frame> {
        self.next_with(wait, |buf| {
            decode(buf, u32::MAX).expect("the broker sends valid frames")
        })
        .await
    }

    /// The next native frame; fails the test if none comes within [`WAIT`].
    pub async fn frame(&mut self) -> Frame {
        match self.next_frame(WAIT).await {
            Next::Got(f) => f,
            Next::Closed => panic!("the broker closed the connection instead of answering"),
            Next::TimedOut => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The next frame that is not an event (events a subscription receives are skipped).
    pub async fn answer(&mut self) -> Frame {
        loop {
            let f = self.frame().await;
            if f.kind() != Kind::Event {
                return f;
            }
        }
    }

    /// Sends a request and returns its answer, which must come next (events skipped).
    pub async fn request(&mut self, frame: &Frame) -> Frame {
        self.send(frame).await;
        let answer = self.answer().await;
        assert_eq!(
            answer.id(),
            frame.id(),
            "the answer to {frame:?}: {answer:?}"
        );
        answer
    }

    /// Registers `name` (a queue group if `shared`); it must succeed.
    pub async fn register(&mut self, id: u64, name: &str, shared: bool) {
        let r = self.request(&Frame::register(id, name, shared)).await;
        assert_eq!(r.kind(), Kind::Reply, "register {name}: {r:?}");
    }

    /// Subscribes to `pattern`; it must succeed.
    pub async fn subscribe(&mut self, id: u64, pattern: &str) {
        let r = self.request(&Frame::subscribe(id, pattern)).await;
        assert_eq!(r.kind(), Kind::Reply, "subscribe {pattern}: {r:?}");
    }

    /// Pings with `id` and waits for its pong; frames before it are returned. After the pong,
    /// the broker has routed everything this connection sent before the ping.
    pub async fn sync(&mut self, id: u64) -> Vec<Frame> {
        self.send(&Frame::ping(id, b"sync")).await;
        let mut before = Vec::new();
        loop {
            let f = self.frame().await;
            if f.kind() == Kind::Pong && f.id() == id {
                return before;
            }
            before.push(f);
        }
    }

    /// Sends `chunks` (each with one write) while reading the native frames the broker sends
    /// meanwhile, handing each to `seen` until it returns `true`. The broker stops reading a peer
    /// whose answers fill its outbox, so a peer that sent everything before reading would be
    /// held for ever; this one never is. Fails the test if the broker takes no bytes or sends no
    /// frame for [`WAIT`], or closes the connection.
    pub async fn pipeline(&mut self, chunks: Vec<Vec<u8>>, mut seen: impl FnMut(Frame) -> bool) {
        let (mut reader, mut writer) = self.stream.split();
        let buf = &mut self.buf;
        let send = async move {
            for chunk in chunks {
                tokio::time::timeout(WAIT, writer.write_all(&chunk))
                    .await
                    .expect("the broker takes the bytes in time (while they are answered)")
                    .expect("write");
            }
        };
        let receive = async move {
            loop {
                while let Some(frame) =
                    decode(buf, u32::MAX).expect("the broker sends valid frames")
                {
                    if seen(frame) {
                        return;
                    }
                }
                let read = tokio::time::timeout(WAIT, reader.read_buf(buf))
                    .await
                    .expect("a frame from the broker in time");
                assert!(
                    matches!(read, Ok(n) if n > 0),
                    "the broker closed the connection: {read:?}"
                );
            }
        };
        tokio::join!(send, receive);
    }

    /// The next NDJSON line (without its newline) within `wait`.
    pub async fn next_line(&mut self, wait: Duration) -> Next<String> {
        self.next_with(wait, |buf| {
            let end = buf.iter().position(|b| *b == b'\n')?;
            let line = buf.split_to(end + 1);
            Some(utf8(&line[..end], "NDJSON line"))
        })
        .await
    }

    /// The next NDJSON line; fails the test if none comes within [`WAIT`].
    pub async fn line(&mut self) -> String {
        match self.next_line(WAIT).await {
            Next::Got(l) => l,
            Next::Closed => panic!("the broker closed the NDJSON connection instead of answering"),
            Next::TimedOut => panic!("no NDJSON line within {WAIT:?}"),
        }
    }

    /// The next ProcBridge packet (status byte, body) within `wait`.
    pub async fn next_pb(&mut self, wait: Duration) -> Next<(u8, String)> {
        self.next_with(wait, |buf| {
            if buf.len() < 11 {
                return None;
            }
            assert_eq!(&buf[..4], b"pb\x01\x01", "ProcBridge packets start pb 1.1");
            let len = u32::from_le_bytes([buf[7], buf[8], buf[9], buf[10]]) as usize;
            if buf.len() < 11 + len {
                return None;
            }
            let status = buf[4];
            buf.advance(11);
            let body = buf.split_to(len);
            Some((status, utf8(&body, "ProcBridge body")))
        })
        .await
    }

    /// The next ProcBridge packet; fails the test if none comes within [`WAIT`].
    pub async fn pb(&mut self) -> (u8, String) {
        match self.next_pb(WAIT).await {
            Next::Got(p) => p,
            Next::Closed => panic!("the broker closed the ProcBridge connection"),
            Next::TimedOut => panic!("no ProcBridge packet within {WAIT:?}"),
        }
    }

    /// The next ipc-broker packet body within `wait`.
    pub async fn next_ipc(&mut self, wait: Duration) -> Next<String> {
        self.next_with(wait, |buf| {
            if buf.len() < 4 {
                return None;
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 4 + len {
                return None;
            }
            buf.advance(4);
            let body = buf.split_to(len);
            Some(utf8(&body, "ipc-broker packet"))
        })
        .await
    }

    /// The next ipc-broker packet body; fails the test if none comes within [`WAIT`].
    pub async fn ipc(&mut self) -> String {
        match self.next_ipc(WAIT).await {
            Next::Got(p) => p,
            Next::Closed => panic!("the broker closed the ipc-broker connection"),
            Next::TimedOut => panic!("no ipc-broker packet within {WAIT:?}"),
        }
    }

    /// Reads (and throws away) until the broker closes the connection; `false` if it is still
    /// open after `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let result = tokio::time::timeout(wait, async {
            loop {
                self.buf.clear();
                if !self.fill().await {
                    return;
                }
            }
        })
        .await;
        result.is_ok()
    }
}

/// What the broker wrote, which must be UTF-8 (it is JSON).
fn utf8(bytes: &[u8], what: &str) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| {
        panic!(
            "the broker wrote a {what} that is not UTF-8 ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// A native frame assembled byte by byte: `strings` need not be UTF-8, `body_len` is what the
/// strings and payload add up to.
pub fn wire(kind: u8, flags: u8, aux: u32, id: u64, strings: &[&[u8]], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for s in strings {
        body.extend_from_slice(&u16::try_from(s.len()).expect("short string").to_le_bytes());
        body.extend_from_slice(s);
    }
    body.extend_from_slice(payload);
    let len = u32::try_from(body.len()).expect("body fits u32");
    let mut out = header(kind, flags, strings.len() as u8, len, aux, id).to_vec();
    out.extend_from_slice(&body);
    out
}

/// A native header declaring `body_len` bytes after it.
pub fn header(kind: u8, flags: u8, nstr: u8, body_len: u32, aux: u32, id: u64) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..2].copy_from_slice(b"PX");
    h[2] = 1;
    h[3] = kind;
    h[4] = flags;
    h[5] = nstr;
    h[8..12].copy_from_slice(&body_len.to_le_bytes());
    h[12..16].copy_from_slice(&aux.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h
}

/// A ProcBridge packet: `pb`, version 1.1, `status`, two reserved bytes, u32 LE length, body.
pub fn pb_packet(status: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"pb\x01\x01".to_vec();
    out.push(status);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&u32::try_from(body.len()).expect("fits").to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// An ipc-broker packet: u32 big-endian length, then the body.
pub fn ipc_packet(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len())
        .expect("fits")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

/// The members of a JSON object, each kept as its raw text, so that arbitrarily deep values can
/// be compared byte for byte (parsing them into a `Value` would hit serde_json's depth limit).
pub fn members(json: &str) -> HashMap<String, Box<RawValue>> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a JSON object ({e}): {}", clip(json)))
}

/// One member's raw text; fails the test if it is missing.
pub fn member(json: &str, name: &str) -> String {
    members(json)
        .get(name)
        .unwrap_or_else(|| panic!("no member {name:?} in {}", clip(json)))
        .get()
        .to_owned()
}

/// The first 300 characters of a long text, for messages.
pub fn clip(text: &str) -> String {
    if text.len() <= 300 {
        return text.to_owned();
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// The error code of an error frame, failing the test for anything else.
pub fn error_code(f: &Frame) -> ErrorCode {
    assert_eq!(f.kind(), Kind::Error, "expected an error frame, got {f:?}");
    f.error_code()
}
