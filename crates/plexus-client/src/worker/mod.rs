//! Serving objects: what an object is, what its handlers know, and how incoming calls run.

mod context;
mod object;
mod run;

pub use context::CallContext;
pub(crate) use object::DynObject;
pub use object::{FnObject, Object, parse_params};
pub(crate) use run::{AnswerReceiver, AnswerSender, Answered, IncomingCall};
