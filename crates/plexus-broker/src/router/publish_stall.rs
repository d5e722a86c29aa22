//! Publish stall, the router's side: routing a native publisher's frames while collecting the
//! subscribers' outboxes its events put past their high-water mark, for its reader to wait for.

use plexus_proto::Frame;

use super::Router;
use crate::conn_id::ConnId;
use crate::outbox::Outbox;

impl Router {
    /// Routes a batch of frames from `conn` under one lock, as [`Router::handle`] does, and adds
    /// to `lagging` every subscriber's outbox that the batch's events found past its high-water
    /// mark (and not stuck), each once per call. Adds nothing while `publish_stall` is zero.
    pub fn handle_publisher(
        &self,
        conn: ConnId,
        frames: impl IntoIterator<Item = Frame>,
        lagging: &mut Vec<Outbox>,
    ) {
        let mut first = true;
        self.handle_with(conn, frames, |st, conn, frame, now| {
            if std::mem::take(&mut first) {
                st.lagging_pass += 1;
            }
            st.handle(conn, frame, now);
            lagging.append(&mut st.lagging);
        });
    }
}

/// Notes that an event was queued to `outbox` in routing pass `pass`: lists it in `lagging` if
/// it is now past its high-water mark and not stuck, once per pass.
pub(super) fn note_lagging(lagging: &mut Vec<Outbox>, pass: u64, outbox: &Outbox) {
    if outbox.lagging() && outbox.list_once(pass) {
        lagging.push(outbox.clone());
    }
}
