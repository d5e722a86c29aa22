//! Property tests: encode/decode round trips, incremental decoding, and no panics on any bytes.

use bytes::BytesMut;
use plexus_proto::{DecodeError, Frame, HEADER_LEN, Kind, decode, decode_compact, flags, wants_fd};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(Kind::ALL.to_vec())
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        kind(),
        any::<u64>(),
        any::<u32>(),
        any::<u8>(),
        prop::collection::vec("[a-z.>*]{0,20}", 2..=4),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(kind, id, aux, flag_bits, strings, payload)| {
            let refs: Vec<&str> = strings.iter().map(String::as_str).collect();
            // A frame flagged as carrying a memfd has no inline payload; that case is its own test.
            let flag_bits = if wants_fd(kind, flag_bits) {
                flag_bits & !flags::FD_PAYLOAD
            } else {
                flag_bits
            };
            Frame::build(kind, id, aux, flag_bits, &refs, &payload)
        })
}

proptest! {
    #[test]
    fn round_trip(f in frame()) {
        let mut buf = BytesMut::from(&f.to_bytes()[..]);
        let back = decode(&mut buf, u32::MAX).expect("valid").expect("complete");
        prop_assert_eq!(back, f);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn into_payload_is_the_payload(f in frame()) {
        let mut buf = BytesMut::from(&f.to_bytes()[..]);
        let back = decode(&mut buf, u32::MAX).expect("valid").expect("complete");
        prop_assert_eq!(back.clone().into_payload(), back.payload());
    }

    #[test]
    fn byte_by_byte(frames in prop::collection::vec(frame(), 1..5)) {
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.to_bytes().to_vec()).collect();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(f) = decode(&mut buf, u32::MAX).expect("valid") {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn an_inline_payload_beside_the_memfd_flag_is_refused(
        f in frame(),
        extra in prop::collection::vec(any::<u8>(), 1..50),
    ) {
        prop_assume!(wants_fd(f.kind(), flags::FD_PAYLOAD));
        let refs: Vec<&str> = (0..usize::from(f.header().nstr)).map(|i| f.string(i)).collect();
        let flagged = Frame::build(f.kind(), f.id(), f.header().aux, flags::FD_PAYLOAD, &refs, &extra);
        let mut buf = BytesMut::from(&flagged.to_bytes()[..]);
        prop_assert!(matches!(decode(&mut buf, u32::MAX), Err(DecodeError::InlinePayloadWithFd(n)) if n == extra.len()));
    }

    #[test]
    fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, 1 << 20) {}
    }

    #[test]
    fn corrupted_header_is_an_error_not_a_panic(f in frame(), at in 0..HEADER_LEN, byte in any::<u8>()) {
        let mut wire = f.to_bytes().to_vec();
        wire[at] = byte;
        let mut buf = BytesMut::from(&wire[..]);
        let _ = decode(&mut buf, u32::MAX);
    }
}

#[test]
fn oversized_frame_refused_from_header() {
    let f = Frame::call(1, "a", "b", 0, &[0u8; 100]);
    let wire = f.to_bytes();
    let mut buf = BytesMut::from(&wire[..HEADER_LEN]);
    let err = decode(&mut buf, 64).expect_err("too large");
    assert!(
        matches!(err, DecodeError::TooLarge { limit: 64, .. }),
        "{err}"
    );
}

#[test]
fn other_version_and_magic_are_named() {
    let mut wire = Frame::ping(1, b"").to_bytes().to_vec();
    wire[2] = 2;
    let err = decode(&mut BytesMut::from(&wire[..]), 1024).expect_err("version");
    assert_eq!(err, DecodeError::UnsupportedVersion(2));
    wire[0] = b'Q';
    let err = decode(&mut BytesMut::from(&wire[..]), 1024).expect_err("magic");
    assert!(matches!(err, DecodeError::BadMagic(_)));
}

#[test]
fn missing_strings_and_bad_utf8_are_errors() {
    let f = Frame::build(Kind::Call, 1, 0, 0, &["only-object"], b"");
    let err = decode(&mut BytesMut::from(&f.to_bytes()[..]), 1024).expect_err("strings");
    assert!(matches!(
        err,
        DecodeError::MissingStrings {
            need: 2,
            got: 1,
            ..
        }
    ));
    let mut wire = Frame::subscribe(1, "ab").to_bytes().to_vec();
    wire[HEADER_LEN + 2] = 0xff;
    let err = decode(&mut BytesMut::from(&wire[..]), 1024).expect_err("utf8");
    assert_eq!(err, DecodeError::StringNotUtf8(0));
}

#[test]
fn compact_decoding_copies_small_frames_out_of_the_buffer_and_slices_large_ones() {
    let small = Frame::event(1, 0, "t", b"x");
    let large = Frame::event(2, 0, "t", &[7u8; 4096]);
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&small.to_bytes());
    wire.extend_from_slice(&large.to_bytes());
    wire.extend_from_slice(&small.to_bytes());
    let mut buf = wire.clone();
    let start = buf.as_ptr() as usize;
    let allocation = start..start + buf.capacity();
    let inside = |f: &Frame| allocation.contains(&(f.body().as_ptr() as usize));
    let mut got = Vec::new();
    while let Some(f) = decode_compact(&mut buf, u32::MAX, 1024).expect("valid") {
        got.push(f);
    }
    assert_eq!(got, [small.clone(), large, small], "the same frames");
    let held: Vec<bool> = got.iter().map(inside).collect();
    assert_eq!(
        held,
        [false, true, false],
        "only the large frame points into the buffer"
    );
}
