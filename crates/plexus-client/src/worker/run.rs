//! Running one incoming call: the object's handler, answered inline when it finishes without
//! waiting and otherwise in its own task, a panic answered as `internal`, and the answer sent
//! back to the socket task.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use plexus_proto::{ErrorCode, Frame};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::worker::{CallContext, Cancelled, DynObject};
use crate::{Error, Payload};

/// A call the broker routed to one of this client's objects, ready to run.
pub(crate) struct IncomingCall {
    /// The call's id on the connection it came in on.
    pub(crate) id: u64,
    /// Which connection that was; ids start again on a new one.
    pub(crate) generation: u64,
    /// The object that answers it.
    pub(crate) object: Arc<dyn DynObject>,
    /// The method called.
    pub(crate) method: String,
    /// The params: JSON bytes, or a memfd not yet read.
    pub(crate) params: Payload,
    /// Memfd payloads: whether the connection takes them, so a large result is written
    /// straight into one.
    pub(crate) memfds: bool,
    /// The time the caller gave the call.
    pub(crate) timeout: Duration,
    /// Turns true when the caller gives up.
    pub(crate) cancelled: Cancelled,
    /// This call's share of the calls the client may run at once, held until it is answered.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// A handler's answer to incoming call `id`.
pub(crate) struct Answered {
    /// The call's id on the connection it came in on.
    pub(crate) id: u64,
    /// Which connection that was.
    pub(crate) generation: u64,
    /// The `reply` or `error` frame to send.
    pub(crate) frame: Frame,
}

/// The handlers' end of the channel their answers go back on.
pub(crate) type AnswerSender = mpsc::UnboundedSender<Answered>;

/// The socket task's end of the channel handlers answer on.
pub(crate) type AnswerReceiver = mpsc::UnboundedReceiver<Answered>;

impl IncomingCall {
    /// Runs the handler until it first waits: a handler that needs no waiting (most do not)
    /// is answered here, with no task and no channel hop. One that waits goes on in its own
    /// task, so it never delays another call, and its answer goes to `answers`.
    pub(crate) fn start(self, answers: &AnswerSender) -> Option<Answered> {
        let (id, generation) = (self.id, self.generation);
        let mut run = Box::pin(self.run());
        // The task that goes on with a pending handler polls it again at once with its own
        // waker, which replaces this one wherever the handler registered it.
        if let Poll::Ready(frame) = run.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return Some(Answered {
                id,
                generation,
                frame,
            });
        }
        let answers = answers.clone();
        tokio::spawn(async move {
            let frame = run.await;
            let _ = answers.send(Answered {
                id,
                generation,
                frame,
            });
        });
        None
    }

    async fn run(self) -> Frame {
        let _permit = self.permit;
        let ctx = CallContext::new(self.method.clone(), self.timeout, self.cancelled);
        let mut handler = self.object.call_dyn(self.method.clone(), self.params, ctx);
        let outcome = std::future::poll_fn(|cx| {
            match catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(cx))) {
                Ok(poll) => poll.map(Ok),
                Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
            }
        })
        .await;
        match outcome {
            Ok(result) => answer_frame(self.id, result, self.memfds),
            Err(why) => {
                let msg = format!("the handler for '{}' panicked: {why}", self.method);
                Frame::error(self.id, ErrorCode::Internal, &msg, b"")
            }
        }
    }
}

/// The `reply` or `error` frame for a handler's result, on a connection that takes `memfds`
/// or not.
fn answer_frame(id: u64, result: Result<Payload, Error>, memfds: bool) -> Frame {
    match result {
        Ok(result) => result.reply_frame(id, memfds),
        Err(Error::Remote {
            code,
            message,
            data,
        }) => {
            let data = data.map(|d| d.to_string().into_bytes()).unwrap_or_default();
            Frame::error(id, code, &message, &data)
        }
        Err(other) => Frame::error(id, other.code(), &other.to_string(), b""),
    }
}

/// The message a panic carried, if it was a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
