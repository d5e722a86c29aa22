//! Memfd payloads in the codec: a frame flagged `fd_payload` carries its strings only; its payload
//! is a descriptor beside it, and inlining puts the bytes back as an ordinary frame.

use std::os::fd::OwnedFd;

use bytes::BytesMut;
use plexus_proto::{DecodeError, FdPayload, Frame, Kind, decode, encode, flags, wants_fd};

fn some_fd() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"))
}

#[test]
fn a_frame_with_an_fd_payload_keeps_its_strings_and_inlines_back_to_the_same_bytes() {
    let call = Frame::call(7, "obj", "method", 500, b"[1,2,3]");
    let fd = FdPayload::new(some_fd(), 7);
    let flagged = call.clone().with_fd_payload(fd.clone());
    assert_eq!(flagged.flags() & flags::FD_PAYLOAD, flags::FD_PAYLOAD);
    assert!(flagged.payload().is_empty(), "no payload bytes inline");
    assert_eq!(flagged.payload_len(), 7, "the memfd's length");
    assert_eq!(flagged.string(1), "method");
    assert_eq!(flagged.fd_payload(), Some(&fd));
    let readdressed = flagged.readdress(Kind::Call, 912, 400);
    assert_eq!(
        readdressed.fd_payload(),
        Some(&fd),
        "re-addressing keeps the memfd"
    );
    let inlined = readdressed
        .inline_payload(|_, out: &mut Vec<u8>| {
            out.extend_from_slice(b"[1,2,3]");
            Ok::<_, ()>(())
        })
        .expect("inlined");
    assert_eq!(inlined.flags() & flags::FD_PAYLOAD, 0, "no longer flagged");
    assert_eq!(inlined.fd_payload(), None);
    assert_eq!(
        inlined.to_bytes(),
        call.readdress(Kind::Call, 912, 400).to_bytes()
    );
}

#[test]
fn the_wire_form_of_a_flagged_frame_is_its_header_and_strings_and_decodes_back() {
    let flagged =
        Frame::publish(0, "t.x", b"{}", false).with_fd_payload(FdPayload::new(some_fd(), 2));
    let mut wire = BytesMut::new();
    encode(&flagged, &mut wire);
    assert_eq!(wire.len(), 24 + 2 + 3, "header and the one string");
    let decoded = decode(&mut wire, 1 << 20)
        .expect("valid")
        .expect("complete");
    assert!(
        wants_fd(decoded.kind(), decoded.flags()),
        "the receiver looks for its memfd"
    );
    assert_eq!(decoded.string(0), "t.x");
    assert_eq!(
        decoded.fd_payload(),
        None,
        "the codec attaches no descriptor"
    );
}

#[test]
fn a_flagged_frame_with_payload_bytes_inline_is_refused() {
    let mut wire = BytesMut::new();
    encode(
        &Frame::publish(0, "t", b"{}", false).with_flags(flags::FD_PAYLOAD),
        &mut wire,
    );
    assert_eq!(
        decode(&mut wire, 1 << 20),
        Err(DecodeError::InlinePayloadWithFd(2))
    );
}

#[test]
fn only_calls_replies_publishes_and_events_carry_fd_payloads() {
    for kind in Kind::ALL {
        let expected = matches!(kind, Kind::Call | Kind::Reply | Kind::Publish | Kind::Event);
        assert_eq!(wants_fd(kind, flags::FD_PAYLOAD), expected, "{kind:?}");
        assert!(!wants_fd(kind, 0), "{kind:?} unflagged");
    }
}
