//! What the fuzz targets share: limits and chunking read from the input, feeding a codec the way
//! the broker does, and checks that hold for every codec.

use bytes::BytesMut;
use plexus_proto::dialect::{Decoded, DialectCodec, Fatal};
use plexus_proto::{ErrorCode, Frame};

/// One fuzz input: two bytes of settings, then the stream a peer sends.
pub struct Input<'a> {
    /// The frame limit the codec gets.
    pub max_frame: u32,
    /// The open-request limit the codec gets.
    pub max_outstanding: usize,
    /// Seed of the chunking; 0 delivers the stream whole.
    pub seed: u8,
    /// The peer's bytes.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads the settings off the front of `data`; `None` when it is too short.
    pub fn split(data: &'a [u8]) -> Option<Input<'a>> {
        let (&[seed, limits], stream) = data.split_first_chunk::<2>()?;
        let max_frame = [64, 256, 4096, 1 << 16][usize::from(limits & 3)];
        let max_outstanding = match limits >> 4 {
            15 => 65_536,
            n => usize::from(n),
        };
        Some(Input {
            max_frame,
            max_outstanding,
            seed,
            stream,
        })
    }

    /// The stream cut into chunks, as reads from a socket might deliver it.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        if self.seed == 0 {
            return vec![self.stream];
        }
        let mut state = u32::from(self.seed) | 0x9e37_7900;
        let mut rest = self.stream;
        let mut out = Vec::new();
        while !rest.is_empty() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let size = 1 + (state as usize % 17);
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            out.push(chunk);
            rest = tail;
        }
        out
    }

    /// A number taken from the seed, for choices such as an order of answers.
    pub fn pick(&self, i: usize, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        (usize::from(self.seed)
            .wrapping_mul(31)
            .wrapping_add(i * 7919))
            % len
    }

    /// Up to 40 bytes of the stream's end, to use as an arbitrary payload or string.
    pub fn tail(&self) -> &'a [u8] {
        &self.stream[self.stream.len().saturating_sub(40)..]
    }
}

/// Feeds `chunks` to `codec` as the broker's reader does: decode after each read, stop at a fatal
/// error, and at the end of the stream let the codec take what is left.
pub fn feed(codec: &mut dyn DialectCodec, chunks: &[&[u8]]) -> (Vec<Decoded>, Option<Fatal>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        if let Err(fatal) = codec.decode(&mut buf, &mut out) {
            return (out, Some(fatal));
        }
    }
    codec.decode_eof(&mut buf, &mut out);
    (out, None)
}

/// What must not depend on how the stream was cut: every routed frame exactly, and the kind,
/// id and code of every answer (their messages may tell sizes seen so far).
pub fn summary(decoded: &[Decoded]) -> Vec<(u8, Option<Frame>, u64, u32)> {
    decoded
        .iter()
        .map(|d| match d {
            Decoded::Route(f) => (0, Some(f.clone()), 0, 0),
            Decoded::Answer(f) => (1, None, f.id(), f.aux()),
            Decoded::Dropped(_) => (2, None, 0, 0),
        })
        .collect()
}

/// Checks what every codec's decoded output must be: routed frames survive the native encoding,
/// answers are errors with a known code.
pub fn check_decoded(decoded: &[Decoded], max_frame: u32) {
    for d in decoded {
        match d {
            Decoded::Route(f) => {
                let mut buf = BytesMut::from(&f.to_bytes()[..]);
                let again = plexus_proto::decode(&mut buf, u32::MAX)
                    .expect("a routed frame is a valid frame")
                    .expect("a whole frame");
                assert_eq!(&again, f);
                assert!(f.payload().len() <= max_frame as usize);
            }
            Decoded::Answer(f) => {
                assert_eq!(f.kind(), plexus_proto::Kind::Error);
                assert!(ErrorCode::from_code(f.aux()).is_some());
            }
            _ => {}
        }
    }
}

/// The frame that answers routed request `f` as the router would, if it needs an answer.
pub fn answer_for(f: &Frame, payload: &[u8]) -> Option<Frame> {
    use plexus_proto::Kind;
    match f.kind() {
        Kind::Call | Kind::Register | Kind::Unregister | Kind::Subscribe => {
            Some(Frame::reply(f.id(), payload))
        }
        Kind::Publish if f.id() != 0 => Some(Frame::reply(f.id(), payload)),
        Kind::Ping => Some(Frame::pong(f.id(), payload)),
        _ => None,
    }
}

/// Decodes the input's stream whole with one codec made by `new` and in chunks with another, and
/// checks that the cut does not matter (the same [`summary`], the same fatal error if any) and
/// that the output passes [`check_decoded`]. Returns the codec that took the stream whole, what it
/// decoded and the fatal error that stopped it, if one did.
pub fn decode_whole_and_chunked<C: DialectCodec>(
    input: &Input,
    new: impl Fn(u32, usize) -> C,
) -> (C, Vec<Decoded>, Option<Fatal>) {
    let mut codec = new(input.max_frame, input.max_outstanding);
    let (decoded, fatal) = feed(&mut codec, &[input.stream]);
    let mut chunked_codec = new(input.max_frame, input.max_outstanding);
    let (chunked, chunked_fatal) = feed(&mut chunked_codec, &input.chunks());
    assert_eq!(summary(&decoded), summary(&chunked));
    assert_eq!(
        fatal.as_ref().map(|f| f.code),
        chunked_fatal.map(|f| f.code)
    );
    check_decoded(&decoded, input.max_frame);
    (codec, decoded, fatal)
}

/// What a codec wrote back to its peer, and the subscriptions it was asked for.
#[derive(Default)]
pub struct Written {
    /// The bytes for the peer.
    pub dst: BytesMut,
    /// What the codec could not give the peer.
    pub bounce: Vec<Frame>,
    /// The id of every subscription routed, in order.
    pub subs: Vec<u64>,
}

impl Written {
    /// Encodes `frame` with `codec`.
    pub fn encode(&mut self, codec: &mut dyn DialectCodec, frame: &Frame) {
        codec.encode(frame, &mut self.dst, &mut self.bounce);
    }

    /// Encodes one event (with `dropped` and topic `topic`) for every subscription, carrying
    /// `body`.
    pub fn events(&mut self, codec: &mut dyn DialectCodec, dropped: u32, topic: &str, body: &[u8]) {
        for sub in std::mem::take(&mut self.subs) {
            codec.encode(
                &Frame::event(sub, dropped, topic, body),
                &mut self.dst,
                &mut self.bounce,
            );
        }
    }
}

/// Answers every request in `decoded` as the broker would: a routed request gets the router's
/// answer ([`answer_for`], carrying `payload`), an answer the codec made is written as it is.
pub fn answer_every_request(
    codec: &mut dyn DialectCodec,
    decoded: &[Decoded],
    payload: &[u8],
) -> Written {
    let mut written = Written::default();
    for d in decoded {
        match d {
            Decoded::Route(f) => {
                if f.kind() == plexus_proto::Kind::Subscribe {
                    written.subs.push(f.id());
                }
                if let Some(answer) = answer_for(f, payload) {
                    written.encode(codec, &answer);
                }
            }
            Decoded::Answer(f) => written.encode(codec, f),
            Decoded::Dropped(_) => {}
        }
    }
    written
}
