//! Impersonation: answers forged for calls routed to someone else, second answers, and names
//! taken or dropped by connections that do not own them. Bound: 32 MiB.

use super::*;

/// Fails unless `conn` received nothing between now and the broker routing everything sent
/// before (a ping round trip on `conn` itself).
async fn received_nothing(conn: &mut Conn, sync_id: u64, after: &str) {
    let got = conn.sync(sync_id).await;
    assert!(got.is_empty(), "after {after}: the caller received {got:?}");
}

/// Sends an NDJSON ping after `lines` and waits for its pong: the broker has then handled them.
async fn ndjson_handled(bus: &Bus, nd: &mut Conn, lines: &str, ping_id: u64) {
    let all = format!("{lines}{{\"op\":\"ping\",\"id\":{ping_id}}}\n");
    nd.send_bytes(all.as_bytes()).await;
    loop {
        let line = line_to(bus, nd, "NDJSON ping after forged answers").await;
        if line.contains("\"pong\"") && member(&line, "id") == ping_id.to_string() {
            return;
        }
    }
}

/// Answers for calls a connection was never given are dropped: a forger answering the routed
/// id of a call routed to another worker (and ids around it, 0 and u64::MAX), a worker answering
/// twice or answering the call of another worker, and NDJSON and ipc-broker peers answering
/// ids they were never given. The caller gets exactly the genuine answer of each call, and the
/// broker counts the native forgeries as late replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_are_dropped() {
    let bus = Bus::start(&[]).await;
    let late_before = bus.stats().await["late_replies"]
        .as_u64()
        .expect("late_replies");
    let mut worker = Conn::hello(bus.socket(), "genuine-worker").await;
    worker.register(1, "forge.target", false).await;
    let mut forger = Conn::hello(bus.socket(), "forger").await;
    forger.register(1, "forge.other", false).await;
    let mut caller = Conn::hello(bus.socket(), "caller").await;
    let mut forged = 0u64;

    // 1. A forger answers the call routed to the genuine worker.
    caller
        .send(&Frame::call(1, "forge.target", "m", 10_000, b"1"))
        .await;
    let routed = worker.frame().await;
    assert_eq!(routed.kind(), Kind::Call, "{routed:?}");
    let r = routed.id();
    for id in [r, r.wrapping_sub(1), r + 1, 0, 1, u64::MAX] {
        forger.send(&Frame::reply(id, b"\"forged\"")).await;
        forger
            .send(&Frame::error(id, ErrorCode::Internal, "forged", b""))
            .await;
        forged += 2;
    }
    let told = forger.sync(100).await;
    assert!(told.is_empty(), "the forger was answered: {told:?}");
    received_nothing(&mut caller, 50, "a forger answered another worker's call").await;
    worker.send(&Frame::reply(r, b"\"genuine\"")).await;
    let answer = caller.answer().await;
    assert_eq!((answer.kind(), answer.id()), (Kind::Reply, 1), "{answer:?}");
    assert_eq!(&answer.payload()[..], b"\"genuine\"");

    // 2. The worker answers the same call again, and answers ids it was never given.
    worker.send(&Frame::reply(r, b"\"again\"")).await;
    worker
        .send(&Frame::error(r, ErrorCode::Internal, "again", b""))
        .await;
    worker.send(&Frame::reply(r + 1000, b"\"unasked\"")).await;
    forged += 3;
    worker.sync(100).await;
    received_nothing(&mut caller, 51, "the worker answered twice").await;

    // 3. The genuine worker answers the call routed to the forger.
    caller
        .send(&Frame::call(2, "forge.other", "m", 10_000, b"2"))
        .await;
    let routed2 = forger.frame().await;
    assert_eq!(routed2.kind(), Kind::Call, "{routed2:?}");
    worker
        .send(&Frame::reply(routed2.id(), b"\"stolen\""))
        .await;
    forged += 1;
    worker.sync(101).await;
    received_nothing(&mut caller, 52, "a worker answered another worker's call").await;
    forger
        .send(&Frame::reply(routed2.id(), b"\"genuine-2\""))
        .await;
    let answer = caller.answer().await;
    assert_eq!((answer.kind(), answer.id()), (Kind::Reply, 2), "{answer:?}");
    assert_eq!(&answer.payload()[..], b"\"genuine-2\"");

    // 4. NDJSON and ipc-broker peers answer a call routed to the genuine worker.
    caller
        .send(&Frame::call(3, "forge.target", "m", 10_000, b"3"))
        .await;
    let routed3 = worker.frame().await;
    let r3 = routed3.id();
    let mut nd = Conn::connect(bus.socket()).await;
    let lines = format!(
        "{{\"op\":\"reply\",\"id\":{r3},\"result\":\"forged\"}}\n{{\"op\":\"error\",\"id\":{r3},\"error\":{{\"code\":12,\"message\":\"forged\"}}}}\n{{\"jsonrpc\":\"2.0\",\"id\":{r3},\"result\":\"forged\"}}\n"
    );
    ndjson_handled(&bus, &mut nd, &lines, 9).await;
    let mut ipc = Conn::connect(bus.socket()).await;
    let result = format!(
        "{{\"Result\":{{\"call_id\":\"{r3}\",\"object_name\":\"forge.target\",\"value\":\"forged\"}}}}"
    );
    let error = format!(
        "{{\"Error\":{{\"call_id\":\"{r3}\",\"object_name\":\"forge.target\",\"message\":\"internal: forged\"}}}}"
    );
    let has = format!("{{\"HasObject\":{{\"object_name\":\"{ECHO}\"}}}}");
    for packet in [result, error, has] {
        ipc.send_bytes(&ipc_packet(packet.as_bytes())).await;
    }
    loop {
        if ipc.ipc().await.contains("HasObjectResult") {
            break;
        }
    }
    received_nothing(
        &mut caller,
        53,
        "NDJSON and ipc-broker peers forged answers",
    )
    .await;
    worker.send(&Frame::reply(r3, b"\"genuine-3\"")).await;
    let answer = caller.answer().await;
    assert_eq!((answer.kind(), answer.id()), (Kind::Reply, 3), "{answer:?}");
    assert_eq!(&answer.payload()[..], b"\"genuine-3\"");

    let late = bus.stats().await["late_replies"]
        .as_u64()
        .expect("late_replies")
        - late_before;
    assert!(
        late >= forged,
        "{forged} native forged answers were sent, {late} counted as late replies"
    );
    bus.holds("forged answers", 32).await;
}

/// A connection cannot take a name another owns (exclusively or by joining it as a group),
/// cannot unregister another's name or a group it is not in, and cannot touch the broker's own
/// name `plexus`, in native frames, NDJSON or ipc-broker; calls keep reaching the owners, and
/// the name is free once its owner leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_be_stolen() {
    let bus = Bus::start(&[]).await;
    let mut owner = Conn::hello(bus.socket(), "owner").await;
    owner.register(1, "theft.name", false).await;
    let mut member_a = Conn::hello(bus.socket(), "member-a").await;
    member_a.register(1, "theft.group", true).await;
    let mut member_b = Conn::hello(bus.socket(), "member-b").await;
    member_b.register(1, "theft.group", true).await;

    let mut thief = Conn::hello(bus.socket(), "thief").await;
    let attempts = [
        (
            Frame::register(1, "theft.name", false),
            ErrorCode::NameTaken,
        ),
        (Frame::register(2, "theft.name", true), ErrorCode::NameTaken),
        (
            Frame::unregister(3, "theft.name"),
            ErrorCode::PermissionDenied,
        ),
        (
            Frame::register(4, "plexus", false),
            ErrorCode::PermissionDenied,
        ),
        (
            Frame::register(5, "plexus", true),
            ErrorCode::PermissionDenied,
        ),
        (Frame::unregister(6, "plexus"), ErrorCode::PermissionDenied),
        (Frame::register(7, ECHO, false), ErrorCode::NameTaken),
        (Frame::unregister(8, ECHO), ErrorCode::PermissionDenied),
        (
            Frame::register(9, "theft.group", false),
            ErrorCode::NameTaken,
        ),
        (
            Frame::unregister(10, "theft.group"),
            ErrorCode::PermissionDenied,
        ),
    ];
    for (frame, code) in attempts {
        let r = thief.request(&frame).await;
        assert_eq!(error_code(&r), code, "{frame:?}: {}", r.string(0));
    }

    let mut nd = Conn::connect(bus.socket()).await;
    let nd_attempts = [
        (
            "{\"op\":\"register\",\"id\":1,\"name\":\"theft.name\"}",
            "name_taken",
        ),
        (
            "{\"op\":\"register\",\"id\":2,\"name\":\"theft.name\",\"shared\":true}",
            "name_taken",
        ),
        (
            "{\"op\":\"unregister\",\"id\":3,\"name\":\"theft.name\"}",
            "permission_denied",
        ),
        (
            "{\"op\":\"unregister\",\"id\":4,\"name\":\"theft.group\"}",
            "permission_denied",
        ),
        (
            "{\"op\":\"register\",\"id\":5,\"name\":\"plexus\"}",
            "permission_denied",
        ),
    ];
    for (line, code) in nd_attempts {
        nd.send_bytes(format!("{line}\n").as_bytes()).await;
        let answer = line_to(&bus, &mut nd, line).await;
        assert!(answer.contains(code), "{line} answered {answer}");
    }
    let mut ipc = Conn::connect(bus.socket()).await;
    for name in ["theft.name", "theft.group", "plexus"] {
        let packet = format!("{{\"RegisterObject\":{{\"object_name\":\"{name}\"}}}}");
        ipc.send_bytes(&ipc_packet(packet.as_bytes())).await;
        let answer = ipc.ipc().await;
        assert!(
            answer.contains("\"Error\""),
            "RegisterObject {name} answered {answer}"
        );
    }

    // Calls still reach the owners, and nothing reaches the thieves.
    let mut caller = Conn::hello(bus.socket(), "caller").await;
    caller
        .send(&Frame::call(1, "theft.name", "m", 10_000, b"1"))
        .await;
    let call = owner.frame().await;
    owner.send(&Frame::reply(call.id(), b"\"mine\"")).await;
    let answer = caller.answer().await;
    assert_eq!(&answer.payload()[..], b"\"mine\"", "{answer:?}");
    // The group's members answer whichever of them the broker picks.
    let members: Vec<Drain> = [member_a, member_b]
        .into_iter()
        .map(|mut m| {
            Drain(tokio::spawn(async move {
                while let Next::Got(f) = m.next_frame(Duration::from_secs(3600)).await {
                    if f.kind() == Kind::Call {
                        m.send(&Frame::reply(f.id(), b"\"ours\"")).await;
                    }
                }
            }))
        })
        .collect();
    for i in 0..4u64 {
        let call = Frame::call(10 + i, "theft.group", "m", 10_000, b"1");
        let answer = caller.request(&call).await;
        assert_eq!(&answer.payload()[..], b"\"ours\"", "{answer:?}");
    }
    drop(members);
    let got = thief.sync(100).await;
    assert!(got.is_empty(), "the thief received {got:?}");

    drop(owner);
    name_becomes_free(&bus, "theft.name", "its owner left").await;
    bus.holds("attempts to steal names", 32).await;
}
