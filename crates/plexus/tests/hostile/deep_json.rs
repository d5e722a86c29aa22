//! 100,000-deep JSON (`[[[[...]]]]`) as a call's params, as a worker's reply and as an event, on
//! every dialect, while someone reads `plexus.monitor.>` (issue 11, defect 1: building the
//! monitor record of such a payload panicked the connection task, so the caller got no answer
//! and the worker's name stayed registered to a dead connection).
//!
//! Each act is also run at 2,000 levels (4 KB), which is under the monitor feed's 4 KiB limit
//! for showing a payload (larger ones are shown as `null` and never parsed). Bound: 64 MiB for
//! every act (the payloads are at most 200 KB). The answer each act waits for must come within
//! the prompt wait (5 s).

use std::sync::Arc;

use super::*;

/// How a hostile peer speaks.
#[derive(Debug, Clone, Copy)]
enum Via {
    Native,
    NdjsonOp,
    NdjsonRpc,
    ProcBridge,
    IpcBroker,
}

impl Via {
    fn tag(self) -> &'static str {
        match self {
            Via::Native => "native",
            Via::NdjsonOp => "ndjsonop",
            Via::NdjsonRpc => "ndjsonrpc",
            Via::ProcBridge => "procbridge",
            Via::IpcBroker => "ipcbroker",
        }
    }

    async fn connect(self, bus: &Bus) -> Conn {
        match self {
            Via::Native => Conn::hello(bus.socket(), "deep").await,
            _ => Conn::connect(bus.socket()).await,
        }
    }
}

/// A bus whose monitor feed someone reads.
async fn bus_with_monitor() -> (Arc<Bus>, Drain) {
    let bus = Bus::start(&[]).await;
    let monitor = monitor(&bus).await;
    (Arc::new(bus), monitor)
}

/// A caller speaking `via` calls a native worker with deep params; the worker gets them
/// unchanged and answers `"ok"`, and the caller gets that answer.
async fn deep_params(bus: Arc<Bus>, via: Via, depth: usize) {
    let deep = deep_json(depth);
    let act = format!("{depth}-deep params from a {via:?} caller");
    let name = format!("deep.params.{}.d{depth}", via.tag());
    let mut worker = Conn::hello(bus.socket(), "deep-worker").await;
    worker.register(1, &name, false).await;
    let mut caller = via.connect(&bus).await;
    let request = match via {
        Via::Native => Frame::call(1, &name, "m", 5000, deep.as_bytes()).to_bytes().to_vec(),
        Via::NdjsonOp => format!(
            "{{\"op\":\"call\",\"id\":1,\"object\":\"{name}\",\"method\":\"m\",\"params\":{deep},\"timeout_ms\":5000}}\n"
        )
        .into_bytes(),
        Via::NdjsonRpc => {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{name}.m\",\"params\":{deep}}}\n")
                .into_bytes()
        }
        Via::ProcBridge => pb_packet(
            0,
            format!("{{\"method\":\"{name}.m\",\"payload\":{deep}}}").as_bytes(),
        ),
        Via::IpcBroker => ipc_packet(
            format!(
                "{{\"Call\":{{\"call_id\":\"c1\",\"object_name\":\"{name}\",\"method\":\"m\",\"args\":{deep}}}}}"
            )
            .as_bytes(),
        ),
    };
    caller.send_bytes(&request).await;
    let call = answer_to(&bus, &mut worker, &format!("{act}: the worker's call")).await;
    assert_eq!(call.kind(), Kind::Call, "{act}: {call:?}");
    assert!(
        call.payload() == deep.as_bytes(),
        "{act}: params forwarded unchanged"
    );
    worker.send(&Frame::reply(call.id(), b"\"ok\"")).await;
    let what = format!("{act}: the caller's answer");
    match via {
        Via::Native => {
            let answer = answer_within(&bus, &mut caller, PROMPT, &what).await;
            assert_eq!(
                (answer.kind(), answer.id()),
                (Kind::Reply, 1),
                "{act}: {answer:?}"
            );
            assert_eq!(&answer.payload()[..], b"\"ok\"", "{act}");
        }
        Via::NdjsonOp | Via::NdjsonRpc => {
            let line = line_within(&bus, &mut caller, PROMPT, &what).await;
            assert_eq!(member(&line, "result"), "\"ok\"", "{act}: {line}");
        }
        Via::ProcBridge => match caller.next_pb(PROMPT).await {
            Next::Got((status, body)) => {
                assert_eq!(status, 1, "{act}: {body}");
                assert_eq!(member(&body, "payload"), "\"ok\"", "{act}: {body}");
            }
            other => panic!("{what}: {other:?}{}", bus.broker.panic_note()),
        },
        Via::IpcBroker => match caller.next_ipc(PROMPT).await {
            Next::Got(body) => {
                let result = member(&body, "Result");
                assert_eq!(member(&result, "value"), "\"ok\"", "{act}: {body}");
            }
            other => panic!("{what}: {other:?}{}", bus.broker.panic_note()),
        },
    }
    drop(worker);
    name_becomes_free(&bus, &name, &act).await;
    bus.holds(&act, 64).await;
}

/// A worker speaking `via` answers a native caller with deep JSON (for ProcBridge, which has
/// no workers: a native worker answers a ProcBridge caller). The caller gets it unchanged, and
/// the worker's name is free again once the worker disconnects.
async fn deep_reply(bus: Arc<Bus>, via: Via, depth: usize) {
    let deep = deep_json(depth);
    let act = format!("{depth}-deep reply from a {via:?} worker");
    let name = format!("deep.reply.{}.d{depth}", via.tag());
    let mut worker = match via {
        Via::ProcBridge => Conn::hello(bus.socket(), "deep-worker").await,
        _ => via.connect(&bus).await,
    };
    let mut problems = Vec::new();
    match via {
        Via::Native | Via::ProcBridge => worker.register(1, &name, false).await,
        Via::NdjsonOp | Via::NdjsonRpc => {
            let line = format!("{{\"op\":\"register\",\"id\":1,\"name\":\"{name}\"}}\n");
            worker.send_bytes(line.as_bytes()).await;
            let answer = line_to(&bus, &mut worker, "NDJSON register").await;
            assert!(answer.contains("\"reply\""), "{answer}");
        }
        Via::IpcBroker => {
            let packet = format!("{{\"RegisterObject\":{{\"object_name\":\"{name}\"}}}}");
            worker.send_bytes(&ipc_packet(packet.as_bytes())).await;
            let answer = worker.ipc().await;
            assert!(answer.contains("Registered"), "{answer}");
        }
    }
    let what = format!("{act}: the caller's answer");
    if let Via::ProcBridge = via {
        let mut caller = Conn::connect(bus.socket()).await;
        let request = format!("{{\"method\":\"{name}.m\",\"payload\":null}}");
        caller.send_bytes(&pb_packet(0, request.as_bytes())).await;
        let call = answer_to(&bus, &mut worker, &format!("{act}: the worker's call")).await;
        worker.send(&Frame::reply(call.id(), deep.as_bytes())).await;
        match caller.next_pb(PROMPT).await {
            Next::Got((status, body)) => {
                assert_eq!(status, 1, "{act}: {}", clip(&body));
                assert_eq!(
                    member(&body, "payload"),
                    deep,
                    "{act}: reply forwarded unchanged"
                );
            }
            other => problems.push(format!("{what}: {other:?}{}", bus.broker.panic_note())),
        }
    } else {
        let mut caller = Conn::hello(bus.socket(), "deep-caller").await;
        caller
            .send(&Frame::call(1, &name, "m", 5000, b"null"))
            .await;
        let answer = match via {
            Via::Native => {
                let call = answer_to(&bus, &mut worker, &format!("{act}: the worker's call")).await;
                Frame::reply(call.id(), deep.as_bytes()).to_bytes().to_vec()
            }
            Via::NdjsonOp | Via::NdjsonRpc => {
                let call = line_to(&bus, &mut worker, &format!("{act}: the worker's call")).await;
                let id = member(&call, "id");
                format!("{{\"op\":\"reply\",\"id\":{id},\"result\":{deep}}}\n").into_bytes()
            }
            _ => {
                let call = worker.ipc().await;
                let call_id = member(&member(&call, "Call"), "call_id");
                ipc_packet(
                    format!(
                        "{{\"Result\":{{\"call_id\":{call_id},\"object_name\":\"{name}\",\"value\":{deep}}}}}"
                    )
                    .as_bytes(),
                )
            }
        };
        worker.send_bytes(&answer).await;
        match caller.next_frame(PROMPT).await {
            Next::Got(answer) => {
                assert_eq!(
                    (answer.kind(), answer.id()),
                    (Kind::Reply, 1),
                    "{act}: {answer:?}"
                );
                assert!(
                    answer.payload() == deep.as_bytes(),
                    "{act}: reply forwarded unchanged"
                );
            }
            other => problems.push(format!("{what}: {other:?}{}", bus.broker.panic_note())),
        }
    }
    drop(worker);
    if let Err(why) = name_freed(&bus, &name, &act).await {
        problems.push(why);
    }
    assert!(problems.is_empty(), "{}", problems.join("; "));
    bus.holds(&act, 64).await;
}

/// A publisher speaking `via` publishes deep JSON; a native subscriber (and, for NDJSON, an
/// NDJSON one) gets it unchanged, and a publisher that asked for an acknowledgement gets it.
async fn deep_event(bus: Arc<Bus>, via: Via, depth: usize) {
    let deep = deep_json(depth);
    let act = format!("{depth}-deep event from a {via:?} publisher");
    let object = format!("deep{}", via.tag());
    let topic = format!("{object}.d{depth}");
    let mut native_sub = Conn::hello(bus.socket(), "deep-subscriber").await;
    native_sub.subscribe(1, &topic).await;
    let mut nd_sub = Conn::connect(bus.socket()).await;
    let subscribe = format!("{{\"op\":\"subscribe\",\"id\":1,\"pattern\":\"{topic}\"}}\n");
    nd_sub.send_bytes(subscribe.as_bytes()).await;
    let subscribed = line_to(&bus, &mut nd_sub, "NDJSON subscribe").await;
    assert!(subscribed.contains("\"reply\""), "{subscribed}");

    let mut publisher = via.connect(&bus).await;
    let publish = match via {
        Via::Native => Frame::publish(3, &topic, deep.as_bytes(), true)
            .to_bytes()
            .to_vec(),
        Via::NdjsonOp => {
            format!("{{\"op\":\"publish\",\"id\":3,\"topic\":\"{topic}\",\"data\":{deep}}}\n")
                .into_bytes()
        }
        Via::NdjsonRpc => {
            format!("{{\"jsonrpc\":\"2.0\",\"method\":\"{topic}\",\"params\":{deep}}}\n").into_bytes()
        }
        Via::IpcBroker => ipc_packet(
            format!(
                "{{\"Publish\":{{\"object_name\":\"{object}\",\"topic\":\"d{depth}\",\"args\":{deep}}}}}"
            )
            .as_bytes(),
        ),
        Via::ProcBridge => unreachable!("ProcBridge cannot publish"),
    };
    publisher.send_bytes(&publish).await;
    let event = match native_sub.next_frame(PROMPT).await {
        Next::Got(f) => f,
        other => panic!(
            "{act}: no event for the native subscriber: {other:?}{}",
            bus.broker.panic_note()
        ),
    };
    assert_eq!(event.kind(), Kind::Event, "{act}: {event:?}");
    assert!(
        event.payload() == deep.as_bytes(),
        "{act}: event delivered unchanged"
    );
    let line = line_within(
        &bus,
        &mut nd_sub,
        PROMPT,
        &format!("{act}: the NDJSON subscriber"),
    )
    .await;
    assert_eq!(
        member(&line, "data"),
        deep,
        "{act}: event delivered unchanged"
    );
    match via {
        Via::Native => {
            let ack = answer_within(&bus, &mut publisher, PROMPT, &format!("{act}: the ack")).await;
            assert_eq!((ack.kind(), ack.id()), (Kind::Reply, 3), "{act}: {ack:?}");
        }
        Via::NdjsonOp => {
            let ack = line_within(&bus, &mut publisher, PROMPT, &format!("{act}: the ack")).await;
            assert!(ack.contains("\"delivered\":2"), "{act}: {ack}");
        }
        _ => {}
    }
    bus.holds(&act, 64).await;
}

/// One act: its name and what it does.
type Act = (String, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>);

/// The acts for `via` at every depth, each run in its own task.
fn acts(bus: &Arc<Bus>, params: &[Via], replies: &[Via], events: &[Via]) -> Vec<Act> {
    let mut acts: Vec<Act> = Vec::new();
    for depth in DEPTHS {
        for &via in params {
            let name = format!("{depth}-deep params from a {via:?} caller");
            acts.push((name, Box::pin(deep_params(bus.clone(), via, depth))));
        }
        for &via in replies {
            let name = format!("{depth}-deep reply from a {via:?} worker");
            acts.push((name, Box::pin(deep_reply(bus.clone(), via, depth))));
        }
        for &via in events {
            let name = format!("{depth}-deep event from a {via:?} publisher");
            acts.push((name, Box::pin(deep_event(bus.clone(), via, depth))));
        }
    }
    acts
}

/// Depths of the nested-array JSON: 100,000 levels (200 KB), and 2,000 levels (4 KB), small
/// enough for the monitor feed to show it instead of `null`.
const DEPTHS: [usize; 2] = [100_000, 2_000];

/// Native frames: deep params, reply and event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_native_with_monitor() {
    let (bus, _monitor) = bus_with_monitor().await;
    run_acts(
        &bus,
        acts(&bus, &[Via::Native], &[Via::Native], &[Via::Native]),
    )
    .await;
}

/// NDJSON: deep params in an op line and in JSON-RPC, an NDJSON worker's deep reply, deep
/// events published with an op line and as a JSON-RPC notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_ndjson_with_monitor() {
    let (bus, _monitor) = bus_with_monitor().await;
    let both = [Via::NdjsonOp, Via::NdjsonRpc];
    run_acts(&bus, acts(&bus, &both, &[Via::NdjsonOp], &both)).await;
}

/// ProcBridge: a deep request payload, and a deep answer to a ProcBridge request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_procbridge_with_monitor() {
    let (bus, _monitor) = bus_with_monitor().await;
    run_acts(
        &bus,
        acts(&bus, &[Via::ProcBridge], &[Via::ProcBridge], &[]),
    )
    .await;
}

/// ipc-broker: deep `Call` args, an ipc-broker worker's deep `Result`, deep `Publish` args.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_ipc_broker_with_monitor() {
    let (bus, _monitor) = bus_with_monitor().await;
    let ipc = [Via::IpcBroker];
    run_acts(&bus, acts(&bus, &ipc, &ipc, &ipc)).await;
}
