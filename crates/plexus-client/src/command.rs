//! What the API asks the socket task to do, and the channels the answers come back on.

use std::sync::Arc;

use plexus_proto::Frame;
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::event_queue::EventQueue;
use crate::lost_names::NameLost;
use crate::worker::DynObject;

/// Where a request's answer goes: the `reply`/`error`/`pong` frame, or why none came.
pub(crate) type Answer = oneshot::Sender<Result<Frame, Error>>;

/// Learns when everything queued before a flush was handed to the socket, or why it was not.
pub(crate) type Written = oneshot::Sender<Result<(), Error>>;

/// The API's end of the command channel to the socket task.
pub(crate) type CommandSender = mpsc::UnboundedSender<Command>;

/// The socket task's end of the command channel.
pub(crate) type CommandReceiver = mpsc::UnboundedReceiver<Command>;

/// One thing the API asks the socket task to do.
pub(crate) enum Command {
    /// Send a request and deliver its answer.
    Request { frame: Frame, answer: Answer },
    /// Send a publish that gets no answer; it holds `reserved` bytes of the publish queue
    /// until it is written.
    Publish { frame: Frame, reserved: u32 },
    /// Tell `written` once everything sent before is handed to the socket.
    Flush { written: Written },
    /// The caller gave up on request `id`: forget it and cancel it at the broker.
    Cancel { id: u64 },
    /// Subscribe as `id` (a member of queue group `group`, if any); events go to `events`.
    Subscribe {
        id: u64,
        pattern: String,
        group: Option<String>,
        events: Arc<EventQueue>,
        answer: Answer,
    },
    /// End subscription `id`.
    Unsubscribe { id: u64 },
    /// Register `name` and dispatch its calls to `object`.
    Serve {
        id: u64,
        name: String,
        shared: bool,
        object: Arc<dyn DynObject>,
        answer: Answer,
    },
    /// Tell `listener` of every name lost from now on.
    ListenLostNames {
        listener: mpsc::UnboundedSender<NameLost>,
    },
    /// Stop serving `name` and unregister it at the broker (request `id`). Without `answer`, a
    /// rollback of the failed `Serve` with the same id: only its own entry is removed.
    Unserve {
        id: u64,
        name: String,
        answer: Option<Answer>,
    },
}
