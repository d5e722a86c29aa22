//! Garbage bytes and impossible sizes.

use super::*;

/// Random bytes as a connection's first bytes, after a native `hello`, and inside each
/// dialect's framing. Bound: 32 MiB (nothing here needs more than one read buffer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_bytes() {
    let bus = Bus::start(&[]).await;
    let mut rng = Rng::new(11);
    // As the first bytes: whatever dialect the first bytes pick, the broker must survive them.
    for len in [1usize, 2, 5, 24, 100, 4096, 65_536, 1 << 20] {
        for _ in 0..4 {
            let mut c = Conn::connect(bus.socket()).await;
            c.try_send_bytes(&rng.bytes(len)).await;
        }
    }
    bus.holds("random bytes as the first bytes of 32 connections", 32)
        .await;

    // After a valid hello: not a frame, so bad_frame and the connection is closed.
    for len in [24usize, 1000, 65_536] {
        let mut c = Conn::hello(bus.socket(), "garbage").await;
        let mut bytes = rng.bytes(len);
        bytes[0] = b'Q'; // never the magic
        c.send_bytes(&bytes).await;
        let f = answer_to(&bus, &mut c, "garbage after hello").await;
        assert_eq!(error_code(&f), ErrorCode::BadFrame, "{}", f.string(0));
        assert_closed(&mut c, "garbage after hello").await;
    }

    // NDJSON: garbage lines are answered bad_frame one by one and the connection goes on.
    let mut nd = Conn::connect(bus.socket()).await;
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":1}\n").await;
    let pong = line_to(&bus, &mut nd, "NDJSON ping").await;
    assert!(pong.contains("\"pong\""), "{pong}");
    let mut garbage = rng.bytes(65_536);
    garbage.push(b'\n');
    nd.send_bytes(&garbage).await;
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":2}\n").await;
    loop {
        let line = line_to(&bus, &mut nd, "NDJSON ping after garbage lines").await;
        if line.contains("\"pong\"") {
            assert_eq!(member(&line, "id"), "2", "{line}");
            break;
        }
        assert!(
            line.contains("bad_frame"),
            "a garbage line is answered bad_frame: {line}"
        );
    }

    // ProcBridge: a request whose body is garbage gets an error response; the next one works.
    let mut pb = Conn::connect(bus.socket()).await;
    pb.send_bytes(&pb_packet(0, &rng.bytes(5000))).await;
    let (status, body) = pb.pb().await;
    assert_eq!(
        status, 2,
        "garbage body answered with an error response: {body}"
    );
    let request = format!("{{\"method\":\"{ECHO}.echo\",\"payload\":\"after-garbage\"}}");
    pb.send_bytes(&pb_packet(0, request.as_bytes())).await;
    let (status, body) = pb.pb().await;
    assert_eq!(
        (status, member(&body, "payload").as_str()),
        (1, "\"after-garbage\"")
    );

    // ipc-broker: a packet whose body is garbage is dropped; the next request is answered.
    let mut ipc = Conn::connect(bus.socket()).await;
    let mut body = b"{".to_vec();
    body.extend(rng.bytes(5000));
    ipc.send_bytes(&ipc_packet(&body)).await;
    let has = format!("{{\"HasObject\":{{\"object_name\":\"{ECHO}\"}}}}");
    ipc.send_bytes(&ipc_packet(has.as_bytes())).await;
    let answer = ipc.ipc().await;
    assert!(answer.contains("\"exists\":true"), "{answer}");

    bus.holds("random bytes in every dialect", 32).await;
}

/// A header declaring a 4 GiB body (u32::MAX bytes), in every framing that has a length: the
/// broker refuses it as soon as the header is in, without allocating for the body, and closes
/// the connection. An NDJSON line longer than the frame limit is skipped without being
/// buffered. Bound: 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_declaring_a_4_gib_body() {
    let bus = Bus::start(&[]).await;
    for _ in 0..20 {
        // As the first frame.
        let mut c = Conn::connect(bus.socket()).await;
        c.send_bytes(&header(0x01, 0, 1, u32::MAX, 0, 0)).await;
        c.try_send_bytes(&[0u8; 4096]).await;
        let f = answer_to(&bus, &mut c, "4 GiB hello").await;
        assert_eq!(error_code(&f), ErrorCode::FrameTooLarge, "{}", f.string(0));
        assert_closed(&mut c, "4 GiB hello").await;
        // After the handshake.
        let mut c = Conn::hello(bus.socket(), "huge-header").await;
        c.send_bytes(&header(0x12, 0, 2, u32::MAX, 0, 7)).await;
        c.try_send_bytes(&[b'x'; 4096]).await;
        let f = answer_to(&bus, &mut c, "4 GiB call").await;
        assert_eq!(error_code(&f), ErrorCode::FrameTooLarge, "{}", f.string(0));
        assert_closed(&mut c, "4 GiB call").await;
    }
    bus.holds("native headers declaring 4 GiB bodies", 32).await;

    // ProcBridge: body length u32::MAX.
    let mut pb = Conn::connect(bus.socket()).await;
    let mut packet = b"pb\x01\x01\x00\x00\x00".to_vec();
    packet.extend_from_slice(&u32::MAX.to_le_bytes());
    packet.extend_from_slice(&[b'{'; 4096]);
    pb.try_send_bytes(&packet).await;
    let (status, body) = pb.pb().await;
    assert_eq!(status, 2, "{body}");
    assert!(body.contains("frame_too_large"), "{body}");
    assert_closed(&mut pb, "4 GiB ProcBridge packet").await;

    // ipc-broker: length 0xFFFFFFFF, then a `{`.
    let mut ipc = Conn::connect(bus.socket()).await;
    let mut packet = u32::MAX.to_be_bytes().to_vec();
    packet.extend_from_slice(&[b'{'; 4096]);
    ipc.try_send_bytes(&packet).await;
    assert_closed(&mut ipc, "4 GiB ipc-broker packet").await;
    bus.holds("dialect packets declaring 4 GiB bodies", 32)
        .await;

    // NDJSON: a 20 MiB line (over the 16 MiB limit) is refused and skipped, not buffered.
    let mut nd = Conn::connect(bus.socket()).await;
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":1,\"data\":\"")
        .await;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..20 {
        if !nd.try_send_bytes(&chunk).await {
            break;
        }
    }
    nd.send_bytes(b"\"}\n{\"op\":\"ping\",\"id\":2}\n").await;
    let refused = line_to(&bus, &mut nd, "20 MiB NDJSON line").await;
    assert!(refused.contains("frame_too_large"), "{}", clip(&refused));
    let pong = line_to(&bus, &mut nd, "ping after a 20 MiB NDJSON line").await;
    assert!(pong.contains("\"pong\""), "{}", clip(&pong));
    bus.holds("a 20 MiB NDJSON line", 32).await;
}
