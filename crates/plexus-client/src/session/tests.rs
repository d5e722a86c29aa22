//! The session's protocol rules, checked without sockets or a runtime: commands and frames in,
//! frames, answers, events and calls out.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::BytesMut;
use plexus_proto::{ErrorCode, Frame, Kind, decode, flags};
use serde_json::{Value, json, value::RawValue};
use tokio::sync::{mpsc, oneshot};

use super::{Outbound, Session};
use crate::Error;
use crate::command::Command;
use crate::error::into_result;
use crate::event_queue::{EventReader, event_queue};
use crate::lost_names::NameLost;
use crate::publish_queue::PublishQueue;
use crate::worker::{Answered, CallContext, DynObject, IncomingCall, Object};

/// An object that declares one method; its calls are never run here.
struct Declared;

impl Object for Declared {
    async fn call(&self, _: &str, _: &RawValue, _: &CallContext) -> Result<Value, Error> {
        Ok(Value::Null)
    }

    fn methods(&self) -> Vec<String> {
        vec!["add".to_owned()]
    }
}

/// Where a test reads the answer to a request.
type AnswerSlot = oneshot::Receiver<Result<Frame, Error>>;

/// Room for publishes in the tests' sessions.
const ROOM: u32 = 1000;

fn session() -> Session {
    let publishes = Arc::new(PublishQueue::new(ROOM));
    Session::new(Arc::new(AtomicU64::new(1000)), 4, publishes)
}

/// Queues a 1-byte publish on topic `t` the way `Client::publish` does, room reserved first.
async fn publish(session: &mut Session) {
    let frame = Frame::publish(0, "t", b"1", false);
    let reserved = session
        .publishes()
        .reserve(frame.wire_len())
        .await
        .expect("room");
    session.command(Command::Publish { frame, reserved });
}

/// Asks the session to tell when everything before is written.
fn flush(session: &mut Session) -> oneshot::Receiver<Result<(), Error>> {
    let (written, flushed) = oneshot::channel();
    session.command(Command::Flush { written });
    flushed
}

/// Whether all of the publish queue's room is free: a frame as large as all of it fits now.
async fn all_room_free(session: &Session) -> bool {
    let queue = session.publishes();
    let reserve = queue.reserve(ROOM as usize);
    match tokio::time::timeout(std::time::Duration::from_millis(100), reserve).await {
        Ok(taken) => {
            queue.release(taken.expect("open") as usize);
            true
        }
        Err(_) => false,
    }
}

/// The frames the session queued for the socket, as the broker would read them.
fn written(session: &mut Session) -> Vec<Frame> {
    let mut out = Outbound::default();
    session.take_output(&mut out);
    let mut bytes = BytesMut::from(out.bytes());
    out.advance(out.len(), session.publishes());
    let mut frames = Vec::new();
    while let Some(frame) = decode(&mut bytes, u32::MAX).expect("the session writes valid frames") {
        frames.push(frame);
    }
    assert!(bytes.is_empty(), "no partial frame");
    frames
}

fn request(session: &mut Session, frame: Frame) -> AnswerSlot {
    let (answer, answered) = oneshot::channel();
    session.command(Command::Request { frame, answer });
    answered
}

fn call(session: &mut Session, id: u64) -> AnswerSlot {
    request(session, Frame::call(id, "math", "add", 1000, b"{}"))
}

fn serve(session: &mut Session, id: u64, name: &str) -> AnswerSlot {
    let (answer, answered) = oneshot::channel();
    let object: Arc<dyn DynObject> = Arc::new(Declared);
    session.command(Command::Serve {
        id,
        name: name.to_owned(),
        shared: true,
        object,
        answer,
    });
    answered
}

fn subscribe(
    session: &mut Session,
    id: u64,
    pattern: &str,
    capacity: usize,
) -> (AnswerSlot, EventReader) {
    let (events, received) = event_queue(capacity);
    let (answer, answered) = oneshot::channel();
    session.command(Command::Subscribe {
        id,
        pattern: pattern.to_owned(),
        group: None,
        events,
        answer,
    });
    (answered, received)
}

/// The answer a caller got, as the API reads it.
fn result(mut answered: AnswerSlot) -> Result<Vec<u8>, Error> {
    let frame = answered.try_recv().expect("answered")?;
    into_result(frame).map(|body| body.to_vec())
}

/// A handler's `reply` to `call`.
fn answer(call: &IncomingCall, result: &[u8]) -> Answered {
    Answered {
        id: call.id,
        generation: call.generation,
        frame: Frame::reply(call.id, result),
    }
}

/// A session serving "math" (registered with request id 1), with nothing queued.
fn serving_math() -> Session {
    let mut s = session();
    drop(serve(&mut s, 1, "math"));
    s.incoming(Frame::reply(1, b""));
    written(&mut s);
    s
}

/// Incoming call `id` to "math", to run.
fn running_call(session: &mut Session, id: u64) -> IncomingCall {
    session
        .incoming(Frame::call(id, "math", "add", 250, br#"{"a":1}"#))
        .expect("a call to run")
}

#[test]
fn each_reply_completes_the_caller_that_sent_its_id() {
    let mut s = session();
    let first = call(&mut s, 1);
    let second = call(&mut s, 2);
    let sent: Vec<(Kind, u64)> = written(&mut s).iter().map(|f| (f.kind(), f.id())).collect();
    assert_eq!(sent, [(Kind::Call, 1), (Kind::Call, 2)]);

    assert!(s.incoming(Frame::reply(2, b"\"two\"")).is_none());
    assert!(s.incoming(Frame::reply(1, b"\"one\"")).is_none());
    assert_eq!(result(first).expect("ok"), b"\"one\"");
    assert_eq!(result(second).expect("ok"), b"\"two\"");
    assert!(written(&mut s).is_empty(), "a reply needs no answer");
}

#[test]
fn an_error_answer_becomes_a_remote_error_with_code_message_and_data() {
    let mut s = session();
    let answered = call(&mut s, 5);
    s.incoming(Frame::error(
        5,
        ErrorCode::NoSuchMethod,
        "no method 'div'",
        br#"{"hint":1}"#,
    ));
    match result(answered) {
        Err(Error::Remote {
            code,
            message,
            data,
        }) => {
            assert_eq!(code, ErrorCode::NoSuchMethod);
            assert_eq!(message, "no method 'div'");
            assert_eq!(data, Some(json!({"hint": 1})));
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    let pinged = request(&mut s, Frame::ping(6, b"x"));
    s.incoming(Frame::pong(6, b"x"));
    assert_eq!(result(pinged).expect("pong"), b"x");
}

#[test]
fn unknown_and_late_replies_are_ignored() {
    let mut s = session();
    let mut answered = call(&mut s, 1);
    written(&mut s);
    s.incoming(Frame::reply(42, b"1"));
    s.incoming(Frame::error(43, ErrorCode::Internal, "stray", b""));
    assert!(answered.try_recv().is_err(), "other ids answer nobody");
    s.incoming(Frame::reply(1, b"1"));
    s.incoming(Frame::reply(1, b"2"));
    assert_eq!(
        answered
            .try_recv()
            .expect("first reply")
            .expect("ok")
            .payload(),
        &b"1"[..],
        "the first reply counts, the repeat is dropped"
    );
    assert!(written(&mut s).is_empty(), "nothing is answered back");
}

#[test]
fn cancelling_an_open_request_tells_the_broker_once_and_drops_its_late_reply() {
    let mut s = session();
    let mut answered = call(&mut s, 9);
    written(&mut s);
    s.command(Command::Cancel { id: 9 });
    s.command(Command::Cancel { id: 9 });
    let sent = written(&mut s);
    assert_eq!(sent.len(), 1, "one cancel");
    assert_eq!((sent[0].kind(), sent[0].id()), (Kind::Cancel, 9));
    s.incoming(Frame::reply(9, b"late"));
    assert!(
        matches!(
            answered.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ),
        "the caller gave up; nobody is answered"
    );
    let answered = call(&mut s, 10);
    s.incoming(Frame::reply(10, b"1"));
    written(&mut s);
    s.command(Command::Cancel { id: 10 });
    assert!(
        written(&mut s).is_empty(),
        "an answered call is not cancelled"
    );
    assert!(result(answered).is_ok());
}

#[test]
fn events_reach_their_subscription_and_losses_are_counted() {
    let mut s = session();
    let (answered, mut events) = subscribe(&mut s, 3, "news.*", 1);
    let sent = written(&mut s);
    assert_eq!(
        (sent[0].kind(), sent[0].id(), sent[0].string(0)),
        (Kind::Subscribe, 3, "news.*")
    );
    s.incoming(Frame::reply(3, b""));
    assert!(result(answered).is_ok());

    s.incoming(Frame::event(3, 0, "news.a", b"1"));
    s.incoming(Frame::event(3, 0, "news.b", b"2"));
    s.incoming(Frame::event(99, 0, "news.c", b"3"));
    assert!(events.try_next().is_none(), "staged until the read is done");
    s.deliver_staged();
    let first = events.try_next().expect("first event");
    assert_eq!(
        (first.topic.as_str(), &first.payload[..], first.dropped),
        ("news.a", &b"1"[..], 0)
    );
    assert!(
        events.try_next().is_none(),
        "the second did not fit, the third is not ours"
    );

    s.incoming(Frame::event(3, 2, "news.d", b"4"));
    s.deliver_staged();
    let next = events.try_next().expect("next event");
    assert_eq!(next.topic, "news.d");
    assert_eq!(next.dropped, 3, "one lost here, two at the broker");
    s.incoming(Frame::event(3, 0, "news.e", b"5"));
    s.deliver_staged();
    assert_eq!(
        events.try_next().expect("after").dropped,
        0,
        "the count starts again"
    );

    s.command(Command::Unsubscribe { id: 3 });
    let sent = written(&mut s);
    assert_eq!((sent[0].kind(), sent[0].id()), (Kind::Unsubscribe, 3));
    s.incoming(Frame::event(3, 0, "news.f", b"6"));
    s.deliver_staged();
    assert!(events.try_next().is_none(), "nothing after unsubscribing");
    s.command(Command::Unsubscribe { id: 3 });
    assert!(written(&mut s).is_empty(), "one unsubscribe");
}

#[test]
fn an_incoming_call_comes_out_to_run_and_its_answer_is_written_once() {
    let mut s = session();
    let answered = serve(&mut s, 1, "math");
    let sent = written(&mut s);
    let register = &sent[0];
    assert_eq!(
        (register.kind(), register.id(), register.string(0)),
        (Kind::Register, 1, "math")
    );
    assert_eq!(register.flags() & flags::SHARED, flags::SHARED);
    let declared: Value = serde_json::from_slice(&register.payload()).expect("json");
    assert_eq!(declared, json!({"methods": {"add": {}}}));
    s.incoming(Frame::reply(1, b""));
    assert!(result(answered).is_ok());

    let call = s
        .incoming(Frame::call(7, "math", "add", 250, br#"{"a":1}"#))
        .expect("a call to run");
    assert_eq!((call.id, call.method.as_str()), (7, "add"));
    assert_eq!(&call.params.to_bytes().expect("bytes")[..], br#"{"a":1}"#);
    assert_eq!(call.timeout, std::time::Duration::from_millis(250));
    assert!(!call.cancelled.is_cancelled());

    s.answered(answer(&call, b"2"));
    s.answered(answer(&call, b"3"));
    let sent = written(&mut s);
    assert_eq!(sent.len(), 1, "one answer per call");
    assert_eq!(
        (sent[0].kind(), sent[0].id(), &sent[0].payload()[..]),
        (Kind::Reply, 7, &b"2"[..])
    );
}

#[test]
fn a_call_for_a_name_not_served_answers_no_such_object() {
    let mut s = session();
    assert!(s.incoming(Frame::call(4, "nobody", "x", 0, b"")).is_none());
    let sent = written(&mut s);
    assert_eq!((sent[0].kind(), sent[0].id()), (Kind::Error, 4));
    assert_eq!(sent[0].error_code(), ErrorCode::NoSuchObject);
}

#[test]
fn a_cancel_from_the_broker_tells_the_handler_and_drops_its_answer() {
    let mut s = serving_math();
    let call = running_call(&mut s, 8);
    s.incoming(Frame::cancel(8));
    assert!(
        call.cancelled.is_cancelled(),
        "the handler learns the caller gave up"
    );
    s.answered(answer(&call, b"late"));
    assert!(written(&mut s).is_empty(), "no answer to a cancelled call");
}

#[test]
fn a_second_serve_of_a_name_is_refused_and_a_failed_serve_rolls_back() {
    let mut s = session();
    let _first = serve(&mut s, 1, "math");
    written(&mut s);
    let second = serve(&mut s, 2, "math");
    assert_eq!(
        result(second).expect_err("refused").code(),
        ErrorCode::NameTaken
    );
    assert!(
        written(&mut s).is_empty(),
        "nothing sent for the refused serve"
    );

    s.command(Command::Unserve {
        id: 2,
        name: "math".to_owned(),
        answer: None,
    });
    assert!(
        s.incoming(Frame::call(5, "math", "add", 0, b"")).is_some(),
        "another serve's rollback keeps the name"
    );
    s.command(Command::Unserve {
        id: 1,
        name: "math".to_owned(),
        answer: None,
    });
    assert!(
        s.incoming(Frame::call(6, "math", "add", 0, b"")).is_none(),
        "its own rollback drops it"
    );
    let sent = written(&mut s);
    assert_eq!(
        sent.last().map(Frame::error_code),
        Some(ErrorCode::NoSuchObject)
    );
}

#[test]
fn unserve_unregisters_and_calls_for_the_name_are_refused() {
    let mut s = session();
    let _served = serve(&mut s, 1, "math");
    written(&mut s);
    let (answer, answered) = oneshot::channel();
    s.command(Command::Unserve {
        id: 2,
        name: "math".to_owned(),
        answer: Some(answer),
    });
    let sent = written(&mut s);
    assert_eq!(
        (sent[0].kind(), sent[0].id(), sent[0].string(0)),
        (Kind::Unregister, 2, "math")
    );
    s.incoming(Frame::reply(2, b""));
    assert!(result(answered).is_ok());
    assert!(s.incoming(Frame::call(3, "math", "add", 0, b"")).is_none());
}

#[tokio::test]
async fn losing_the_connection_fails_open_requests_and_cancels_handlers() {
    let mut s = serving_math();
    let call_ = running_call(&mut s, 8);
    let answered = call(&mut s, 2);
    publish(&mut s).await;
    let mut written_rx = flush(&mut s);
    s.connection_lost("the broker closed the connection");

    let err = result(answered).expect_err("failed");
    assert!(
        matches!(&err, Error::ConnectionLost(why) if why == "the broker closed the connection"),
        "{err}"
    );
    assert!(matches!(
        written_rx.try_recv(),
        Ok(Err(Error::ConnectionLost(_)))
    ));
    assert!(
        matches!(s.publishes().take_error(), Some(Error::ConnectionLost(why)) if why == "the broker closed the connection"),
        "the publish dropped is reported to the next publish or flush"
    );
    assert!(
        all_room_free(&s).await,
        "the dropped publish gave its room back"
    );
    assert!(
        call_.cancelled.is_cancelled(),
        "running handlers learn the caller is gone"
    );
    assert!(
        written(&mut s).is_empty(),
        "what was not written is dropped"
    );
}

#[tokio::test]
async fn without_a_connection_commands_are_refused_and_nothing_is_queued() {
    let mut s = session();
    let (_, _events) = subscribe(&mut s, 3, "a.>", 8);
    let _served = serve(&mut s, 4, "math");
    s.connection_lost("gone");

    assert!(matches!(result(call(&mut s, 5)), Err(Error::NotConnected)));
    let (refused, _) = subscribe(&mut s, 6, "b.>", 8);
    assert!(matches!(result(refused), Err(Error::NotConnected)));
    assert!(matches!(
        result(serve(&mut s, 7, "other")),
        Err(Error::NotConnected)
    ));
    publish(&mut s).await;
    assert!(matches!(
        s.publishes().take_error(),
        Some(Error::NotConnected)
    ));
    assert!(all_room_free(&s).await, "the refused publish holds no room");
    assert!(matches!(
        flush(&mut s).try_recv(),
        Ok(Err(Error::NotConnected))
    ));
    s.command(Command::Unsubscribe { id: 3 });
    let (answer, unserved) = oneshot::channel();
    s.command(Command::Unserve {
        id: 8,
        name: "math".to_owned(),
        answer: Some(answer),
    });
    assert!(matches!(result(unserved), Err(Error::NotConnected)));
    assert!(written(&mut s).is_empty());

    s.connection_restored();
    assert!(
        written(&mut s).is_empty(),
        "what was given up meanwhile is not restored"
    );
}

#[test]
fn a_restored_connection_registers_and_subscribes_again_and_fails_nothing() {
    let mut s = session();
    let _served = serve(&mut s, 1, "math");
    let (_, mut events) = subscribe(&mut s, 2, "news.>", 8);
    s.incoming(Frame::reply(1, b""));
    s.incoming(Frame::reply(2, b""));
    written(&mut s);
    s.connection_lost("gone");
    s.connection_restored();

    let sent = written(&mut s);
    assert_eq!(sent.len(), 2);
    let register = &sent[0];
    assert_eq!(
        (register.kind(), register.string(0)),
        (Kind::Register, "math")
    );
    assert_eq!(register.id(), 1000, "a fresh request id");
    assert_eq!(
        register.flags() & flags::SHARED,
        flags::SHARED,
        "still shared"
    );
    assert_eq!(
        (sent[1].kind(), sent[1].id(), sent[1].string(0)),
        (Kind::Subscribe, 2, "news.>")
    );

    s.incoming(Frame::reply(1000, b""));
    s.incoming(Frame::reply(2, b""));
    s.incoming(Frame::event(2, 0, "news.x", b"1"));
    s.deliver_staged();
    assert_eq!(
        events.try_next().expect("event after restore").topic,
        "news.x"
    );
    assert!(
        s.incoming(Frame::call(1, "math", "add", 0, b"")).is_some(),
        "served again"
    );
}

#[test]
fn a_name_lost_on_reconnect_is_no_longer_served_and_listeners_hear_of_it() {
    let mut s = serving_math();
    let (listener, mut losses) = mpsc::unbounded_channel();
    s.command(Command::ListenLostNames { listener });
    s.connection_lost("gone");
    let (late_listener, mut late_losses) = mpsc::unbounded_channel();
    s.command(Command::ListenLostNames {
        listener: late_listener,
    });
    s.connection_restored();
    let register = written(&mut s).remove(0);
    s.incoming(Frame::error(
        register.id(),
        ErrorCode::NameTaken,
        "'math' is owned by pid 42",
        b"",
    ));

    let expected = NameLost {
        name: "math".to_owned(),
        code: ErrorCode::NameTaken,
        message: "'math' is owned by pid 42".to_owned(),
    };
    assert_eq!(losses.try_recv().expect("told"), expected);
    assert_eq!(
        late_losses
            .try_recv()
            .expect("a listener added while disconnected is told too"),
        expected
    );
    assert!(written(&mut s).is_empty(), "the failure answers nobody");
    assert!(s.incoming(Frame::call(3, "math", "add", 0, b"")).is_none());
    assert_eq!(
        written(&mut s)[0].error_code(),
        ErrorCode::NoSuchObject,
        "no longer served"
    );
    drop(serve(&mut s, 4, "math"));
    assert_eq!(
        written(&mut s)[0].kind(),
        Kind::Register,
        "it may be served again"
    );
}

#[test]
fn a_failed_resubscription_answers_nobody() {
    let mut s = session();
    let (_, _events) = subscribe(&mut s, 2, "news.>", 8);
    s.incoming(Frame::reply(2, b""));
    s.connection_lost("gone");
    s.connection_restored();
    written(&mut s);
    s.incoming(Frame::error(2, ErrorCode::PermissionDenied, "no", b""));
    assert!(written(&mut s).is_empty());
}

#[tokio::test]
async fn a_flush_learns_its_publish_was_written_once_its_whole_batch_is() {
    let mut s = session();
    publish(&mut s).await;
    let mut written_rx = flush(&mut s);
    let mut writing = Outbound::default();
    s.take_output(&mut writing);
    let batch = writing.len();
    let _queued_meanwhile = call(&mut s, 2);
    s.take_output(&mut writing);
    assert_eq!(
        writing.len(),
        batch,
        "a batch being written is not replaced"
    );
    assert!(s.queued() > 0, "the call waits for the next batch");

    writing.advance(batch - 1, s.publishes());
    assert!(written_rx.try_recv().is_err(), "not all written yet");
    assert!(!all_room_free(&s).await, "the publish holds its room");
    writing.advance(1, s.publishes());
    assert!(matches!(written_rx.try_recv(), Ok(Ok(()))));
    assert!(all_room_free(&s).await, "written: its room is free");
    s.take_output(&mut writing);
    assert!(
        !writing.is_empty() && s.queued() == 0,
        "the next batch follows"
    );
}

#[test]
fn a_flush_with_nothing_before_it_is_answered_when_the_output_is_next_taken() {
    let mut s = session();
    let mut flushed = flush(&mut s);
    assert!(
        flushed.try_recv().is_err(),
        "not before the socket task looks"
    );
    let mut writing = Outbound::default();
    s.take_output(&mut writing);
    assert!(writing.is_empty());
    assert!(matches!(flushed.try_recv(), Ok(Ok(()))));
}

#[test]
fn an_answer_from_before_a_reconnect_never_answers_a_new_call_with_the_same_id() {
    let mut s = serving_math();
    let old = running_call(&mut s, 1);
    s.connection_lost("gone");
    s.connection_restored();
    s.incoming(Frame::reply(1000, b""));
    written(&mut s);
    let new = s
        .incoming(Frame::call(1, "math", "add", 0, b""))
        .expect("the new broker routes id 1 again");

    s.answered(answer(&old, b"\"old\""));
    assert!(
        written(&mut s).is_empty(),
        "the old connection's answer is dropped"
    );
    assert!(!new.cancelled.is_cancelled(), "the new call keeps running");
    s.answered(answer(&new, b"\"new\""));
    let sent = written(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].id(), &sent[0].payload()[..]), (1, &b"\"new\""[..]));
}

#[test]
fn a_call_beyond_the_limit_is_answered_overloaded_at_once_and_a_finished_one_frees_a_place() {
    let mut s = serving_math();
    let running: Vec<IncomingCall> = (1..=4).map(|id| running_call(&mut s, id)).collect();
    assert!(s.incoming(Frame::call(5, "math", "add", 0, b"")).is_none());
    let sent = written(&mut s);
    assert_eq!((sent[0].kind(), sent[0].id()), (Kind::Error, 5));
    assert_eq!(sent[0].error_code(), ErrorCode::Overloaded);
    assert!(
        sent[0].string(0).contains("already running 4 calls"),
        "{}",
        sent[0].string(0)
    );
    s.answered(answer(&running[0], b"1"));
    assert_eq!(
        written(&mut s).len(),
        1,
        "the refused call left nothing behind"
    );

    drop(running);
    assert!(
        s.incoming(Frame::call(6, "math", "add", 0, b"")).is_some(),
        "a call that finished gave its place back"
    );
}

#[test]
fn a_queue_subscription_is_restored_in_its_group() {
    let mut s = session();
    let (events, _received) = event_queue(8);
    let (answer, _answered) = oneshot::channel();
    s.command(Command::Subscribe {
        id: 3,
        pattern: "jobs.*".to_owned(),
        group: Some("workers".to_owned()),
        events,
        answer,
    });
    s.incoming(Frame::reply(3, b""));
    for sent in [written(&mut s), {
        s.connection_lost("gone");
        s.connection_restored();
        written(&mut s)
    }] {
        let f = &sent[0];
        assert_eq!(
            (f.kind(), f.id(), f.flags(), f.string(0), f.string(1)),
            (Kind::Subscribe, 3, flags::QUEUE, "jobs.*", "workers")
        );
    }
}
