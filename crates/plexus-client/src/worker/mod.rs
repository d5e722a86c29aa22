//! Serving objects: what an object is, what its handlers know, and how incoming calls run.

mod cancel;
mod context;
// Contracts.
mod contract;
mod object;
mod raw;
mod run;

pub(crate) use cancel::{CancelSwitch, Cancelled, cancel_switch};
pub use context::CallContext;
pub use contract::{Contract, Serve};
pub(crate) use object::DynObject;
pub use object::{FnObject, Object, parse_params};
pub(crate) use raw::PayloadFn;
pub(crate) use run::{AnswerReceiver, AnswerSender, Answered, IncomingCall};
