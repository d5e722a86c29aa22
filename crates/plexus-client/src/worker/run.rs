//! Running one incoming call: the object's handler in its own task, a panic answered as
//! `internal`, and the answer sent back to the socket task.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use plexus_proto::{ErrorCode, Frame};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::Error;
use crate::worker::{CallContext, DynObject};

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
    /// The params as JSON bytes.
    pub(crate) params: Bytes,
    /// The time the caller gave the call.
    pub(crate) timeout: Duration,
    /// Turns true when the caller gives up.
    pub(crate) cancelled: watch::Receiver<bool>,
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
    /// Runs the call in its own task, so a slow one never delays another; the answer goes to
    /// `answers`.
    pub(crate) fn spawn(self, answers: AnswerSender) {
        tokio::spawn(async move {
            let (id, generation) = (self.id, self.generation);
            let frame = self.run().await;
            let _ = answers.send(Answered {
                id,
                generation,
                frame,
            });
        });
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
            Ok(result) => answer_frame(self.id, result),
            Err(why) => {
                let msg = format!("the handler for '{}' panicked: {why}", self.method);
                Frame::error(self.id, ErrorCode::Internal, &msg, b"")
            }
        }
    }
}

/// The `reply` or `error` frame for a handler's result.
fn answer_frame(id: u64, result: Result<Vec<u8>, Error>) -> Frame {
    match result {
        Ok(result) => Frame::reply(id, &result),
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
