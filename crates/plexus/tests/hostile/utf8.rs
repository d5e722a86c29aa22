//! Invalid UTF-8 in names, topics, patterns and methods, and in JSON payloads, on every dialect,
//! with the monitor feed on. Bound: 32 MiB.

use super::*;

/// Native frames whose strings are not UTF-8 are malformed: `bad_frame`, connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_native_strings() {
    let bus = Bus::start(&[]).await;
    let _monitor = monitor(&bus).await;
    let bad: &[u8] = b"bad\xffname";
    let frames: [(&str, Vec<u8>); 7] = [
        ("register", wire(0x10, 0, 0, 1, &[bad], b"")),
        ("unregister", wire(0x11, 0, 0, 1, &[bad], b"")),
        ("subscribe", wire(0x20, 0, 0, 1, &[b"a.\xfe"], b"")),
        ("publish", wire(0x22, 1, 0, 1, &[b"t.\xc3"], b"1")),
        ("call object", wire(0x12, 0, 1000, 1, &[bad, b"m"], b"null")),
        (
            "call method",
            wire(0x12, 0, 1000, 1, &[ECHO.as_bytes(), b"m\xff"], b"null"),
        ),
        ("error message", wire(0x14, 0, 12, 1, &[b"\xff\xfe"], b"")),
    ];
    for (what, bytes) in frames {
        let mut c = Conn::hello(bus.socket(), "utf8").await;
        c.send_bytes(&bytes).await;
        let f = answer_to(&bus, &mut c, what).await;
        assert_eq!(
            error_code(&f),
            ErrorCode::BadFrame,
            "{what}: {}",
            f.string(0)
        );
        assert_closed(&mut c, what).await;
    }
    // A hello whose client name is not UTF-8.
    let mut c = Conn::connect(bus.socket()).await;
    c.send_bytes(&wire(0x01, 0, 0, 0, &[b"\xff\xff"], b""))
        .await;
    let f = answer_to(&bus, &mut c, "hello").await;
    assert_eq!(error_code(&f), ErrorCode::BadFrame, "{}", f.string(0));
    assert_closed(&mut c, "hello with a name that is not UTF-8").await;
    bus.holds("native strings that are not UTF-8", 32).await;
}

/// Payloads that are not UTF-8 (so not JSON) pass through to native peers unchanged, and reach
/// dialect peers as valid JSON; the monitor feed copes with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_payloads() {
    let bus = Bus::start(&[]).await;
    let _monitor = monitor(&bus).await;
    let bad: &[u8] = b"{\"a\":\"\xff\xfe\xc3\"}";

    // Native caller, native worker: forwarded byte for byte both ways.
    let mut worker = Conn::hello(bus.socket(), "utf8-worker").await;
    worker.register(1, "utf8.native", false).await;
    let mut caller = Conn::hello(bus.socket(), "utf8-caller").await;
    caller
        .send(&Frame::call(1, "utf8.native", "m", 5000, bad))
        .await;
    let call = answer_to(&bus, &mut worker, "the native worker's call").await;
    assert!(call.payload() == bad, "params forwarded unchanged");
    worker.send(&Frame::reply(call.id(), b"\"\xc3\x28\"")).await;
    let answer = answer_to(&bus, &mut caller, "the native caller").await;
    assert_eq!(
        (answer.kind(), &answer.payload()[..]),
        (Kind::Reply, &b"\"\xc3\x28\""[..])
    );

    // An NDJSON worker gets such params as valid JSON.
    let mut nd_worker = Conn::connect(bus.socket()).await;
    nd_worker
        .send_bytes(b"{\"op\":\"register\",\"id\":1,\"name\":\"utf8.ndjson\"}\n")
        .await;
    let registered = line_to(&bus, &mut nd_worker, "NDJSON register").await;
    assert!(registered.contains("\"reply\""), "{registered}");
    caller
        .send(&Frame::call(2, "utf8.ndjson", "m", 5000, bad))
        .await;
    let call = line_to(&bus, &mut nd_worker, "the NDJSON worker's call").await;
    let parsed: Value = serde_json::from_str(&call).expect("the call line is JSON");
    let reply = format!(
        "{{\"op\":\"reply\",\"id\":{},\"result\":\"ok\"}}\n",
        parsed["id"]
    );
    nd_worker.send_bytes(reply.as_bytes()).await;
    let answer = answer_to(&bus, &mut caller, "the caller of the NDJSON worker").await;
    assert_eq!(
        (answer.kind(), &answer.payload()[..]),
        (Kind::Reply, &b"\"ok\""[..])
    );

    // NDJSON and ipc-broker subscribers get such an event as valid JSON.
    let mut nd_sub = Conn::connect(bus.socket()).await;
    nd_sub
        .send_bytes(b"{\"op\":\"subscribe\",\"id\":1,\"pattern\":\"utf8.t\"}\n")
        .await;
    let subscribed = line_to(&bus, &mut nd_sub, "NDJSON subscribe").await;
    assert!(subscribed.contains("\"reply\""), "{subscribed}");
    let mut ipc_sub = Conn::connect(bus.socket()).await;
    ipc_sub
        .send_bytes(&ipc_packet(
            b"{\"Subscribe\":{\"object_name\":\"utf8\",\"topic\":\"t\"}}",
        ))
        .await;
    // ipc-broker does not answer a Subscribe: a HasObject after it shows it was handled.
    ipc_sub
        .send_bytes(&ipc_packet(
            b"{\"HasObject\":{\"object_name\":\"utf8.native\"}}",
        ))
        .await;
    let has = ipc_sub.ipc().await;
    assert!(has.contains("HasObjectResult"), "{has}");
    let ack = caller
        .request(&Frame::publish(3, "utf8.t", bad, true))
        .await;
    assert_eq!(ack.kind(), Kind::Reply, "{ack:?}");
    let event = line_to(&bus, &mut nd_sub, "the NDJSON subscriber").await;
    serde_json::from_str::<Value>(&event).expect("the event line is JSON");
    let event = ipc_sub.ipc().await;
    serde_json::from_str::<Value>(&event).expect("the event packet is JSON");

    // A ProcBridge caller gets such a reply as valid JSON.
    let mut pb = Conn::connect(bus.socket()).await;
    pb.send_bytes(&pb_packet(
        0,
        b"{\"method\":\"utf8.native.m\",\"payload\":1}",
    ))
    .await;
    let call = answer_to(
        &bus,
        &mut worker,
        "the native worker's call from ProcBridge",
    )
    .await;
    worker.send(&Frame::reply(call.id(), bad)).await;
    let (status, body) = pb.pb().await;
    assert_eq!(status, 1, "{body}");
    serde_json::from_str::<Value>(&body).expect("the ProcBridge body is JSON");

    bus.holds("payloads that are not UTF-8", 32).await;
}

/// Dialect messages that are not UTF-8, or whose names are lone surrogates or characters names
/// may not have, are refused one by one, and each connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_dialect_messages() {
    let bus = Bus::start(&[]).await;
    let _monitor = monitor(&bus).await;

    let mut nd = Conn::connect(bus.socket()).await;
    let refused: [&[u8]; 5] = [
        b"{\"op\":\"ping\",\"id\":1,\"data\":\"\xff\"}\n",
        b"{\"op\":\"register\",\"id\":2,\"name\":\"\\ud800\"}\n",
        b"{\"op\":\"register\",\"id\":3,\"name\":\"caf\xc3\xa9\"}\n",
        b"{\"op\":\"subscribe\",\"id\":4,\"pattern\":\"a.\\u0000\"}\n",
        b"{\"op\":\"publish\",\"id\":5,\"topic\":\"\xed\xa0\x80\",\"data\":1}\n",
    ];
    for line in refused {
        nd.send_bytes(line).await;
        let answer = line_to(&bus, &mut nd, "a refused NDJSON line").await;
        assert!(
            answer.contains("\"error\""),
            "{} answered {answer}",
            String::from_utf8_lossy(line)
        );
    }
    nd.send_bytes(b"{\"op\":\"ping\",\"id\":6}\n").await;
    let pong = line_to(&bus, &mut nd, "NDJSON ping after refused lines").await;
    assert!(pong.contains("\"pong\""), "{pong}");

    let mut pb = Conn::connect(bus.socket()).await;
    pb.send_bytes(&pb_packet(0, b"{\"method\":\"x\xff.m\",\"payload\":1}"))
        .await;
    let (status, body) = pb.pb().await;
    assert_eq!(status, 2, "{body}");
    let request = format!("{{\"method\":\"{ECHO}.echo\",\"payload\":7}}");
    pb.send_bytes(&pb_packet(0, request.as_bytes())).await;
    let (status, body) = pb.pb().await;
    assert_eq!(
        (status, member(&body, "payload").as_str()),
        (1, "7"),
        "{body}"
    );

    let mut ipc = Conn::connect(bus.socket()).await;
    ipc.send_bytes(&ipc_packet(
        b"{\"RegisterObject\":{\"object_name\":\"x\xff\"}}",
    ))
    .await;
    ipc.send_bytes(&ipc_packet(
        b"{\"RegisterObject\":{\"object_name\":\"\\udfff\"}}",
    ))
    .await;
    let has = format!("{{\"HasObject\":{{\"object_name\":\"{ECHO}\"}}}}");
    ipc.send_bytes(&ipc_packet(has.as_bytes())).await;
    loop {
        let answer = ipc.ipc().await;
        if answer.contains("HasObjectResult") {
            assert!(answer.contains("\"exists\":true"), "{answer}");
            break;
        }
        assert!(
            answer.contains("\"Error\""),
            "a refused registration: {answer}"
        );
    }

    bus.holds("dialect messages that are not UTF-8", 32).await;
}
