//! The reader's hook: checks calls' params and published payloads that have a contract, before
//! the batch is routed, and takes the refused frames out of the batch.

use std::collections::VecDeque;

use plexus_proto::{Frame, Kind};

use super::Snapshot;
use super::check::{Checked, Refusal, check};

/// A call or publish refused by its contract, with the error to answer it with.
#[derive(Debug)]
pub struct Refused {
    /// The refused frame.
    pub frame: Frame,
    /// What was checked.
    pub check: Checked,
    /// The error message.
    pub message: String,
    /// The error data (JSON).
    pub data: String,
}

/// Takes out of `batch` every call whose params and every publish whose payload break their
/// contract, and returns them with their errors. Frames without a contract are not parsed.
pub fn screen(snapshot: &Snapshot, batch: &mut VecDeque<Frame>) -> Vec<Refused> {
    let mut refused = Vec::new();
    if snapshot.is_empty() {
        return refused;
    }
    batch.retain(|frame| match refusal(snapshot, frame) {
        None => true,
        Some((check, message, data)) => {
            refused.push(Refused {
                frame: frame.clone(),
                check,
                message,
                data,
            });
            false
        }
    });
    refused
}

/// The error for `frame` if its contract refuses it.
fn refusal(snapshot: &Snapshot, frame: &Frame) -> Option<(Checked, String, String)> {
    match frame.kind() {
        Kind::Call => {
            let checks = snapshot.method(frame.string(0), frame.string(1))?;
            let schema = checks.params.as_ref()?;
            let violation = check(schema, &frame.payload()).err()?;
            let r = Refusal {
                check: Checked::Params,
                object: Some(&checks.object),
                method: Some(&checks.method),
                topic: None,
                violation: &violation,
            };
            Some((Checked::Params, r.message(), r.data()))
        }
        Kind::Publish => {
            let topic = snapshot.topic(frame.string(0))?;
            let violation = check(&topic.payload, &frame.payload()).err()?;
            let r = Refusal {
                check: Checked::Payload,
                object: None,
                method: None,
                topic: Some(&topic.topic),
                violation: &violation,
            };
            Some((Checked::Payload, r.message(), r.data()))
        }
        _ => None,
    }
}
