//! The one task that owns the socket: it feeds the session what arrives (commands, frames,
//! handlers' answers), writes what the session queues, starts incoming calls, and reconnects.
//!
//! Queued bytes are written at once when the socket takes them (one system call per batch, as
//! under load many frames go out together); when it does not, reading goes on while the task
//! waits for the socket to become writable.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use plexus_proto::BusAddr;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::Options;
use crate::command::CommandReceiver;
use crate::connect::{self, Connection};
use crate::publish_queue::PublishQueue;
use crate::session::{Outbound, Session};
use crate::worker::{AnswerReceiver, AnswerSender};

/// Bytes queued for the socket after which the task stops taking commands until they are written.
const WRITE_BATCH: usize = 256 * 1024;

/// Why a connection ended.
enum End {
    /// Every handle to the client is gone.
    ClientGone,
    /// The socket broke.
    Lost(String),
}

/// The socket task's state.
pub(crate) struct EventLoop {
    addr: BusAddr,
    /// The client's name and whom it trusts, for reconnecting.
    options: Options,
    reconnect: bool,
    session: Session,
    commands: CommandReceiver,
    answers: AnswerReceiver,
    /// Cloned into each incoming call's task; held here so `answers` never closes.
    answer_sender: AnswerSender,
    /// The batch being written, while the session queues the next one.
    writing: Outbound,
}

impl EventLoop {
    /// A loop for the client at `addr`, taking commands from `commands`; publishes hold room in
    /// `publishes` until written.
    pub(crate) fn new(
        addr: BusAddr,
        options: &Options,
        ids: Arc<AtomicU64>,
        commands: CommandReceiver,
        publishes: Arc<PublishQueue>,
    ) -> EventLoop {
        let (answer_sender, answers) = mpsc::unbounded_channel();
        EventLoop {
            addr,
            options: options.clone(),
            reconnect: options.reconnect,
            session: Session::new(ids, options.max_concurrent_calls, publishes),
            commands,
            answers,
            answer_sender,
            writing: Outbound::default(),
        }
    }

    /// Serves the connection, reconnecting if the options say so, until the client is dropped.
    pub(crate) async fn run(mut self, mut connection: Connection) {
        loop {
            self.session.use_fds(connection.fds);
            let why = match self.drive(&mut connection).await {
                End::ClientGone => {
                    self.flush(&mut connection).await;
                    return;
                }
                End::Lost(why) => why,
            };
            warn!(addr = %self.addr, %why, "connection to the broker lost");
            self.writing.fail(&why, self.session.publishes());
            self.session.connection_lost(&why);
            if !self.reconnect {
                return;
            }
            let Some(new) = self.reconnect().await else {
                return;
            };
            debug!(addr = %self.addr, conn = new.welcome.conn_id, "reconnected");
            connection = new;
            self.session.connection_restored();
        }
    }

    /// Moves bytes both ways until the connection breaks or the client is dropped.
    async fn drive(&mut self, connection: &mut Connection) -> End {
        loop {
            self.session.take_output(&mut self.writing);
            if !self.writing.is_empty() {
                let (bytes, fd) = self.writing.next_write();
                let asked = bytes.len();
                match connection.writer.try_write_fd(bytes, fd) {
                    Ok(0) => return End::Lost("the socket took no more bytes".to_owned()),
                    Ok(n) => {
                        self.writing.advance(n, self.session.publishes());
                        // The batch is out and the next one waits in the session: no branch
                        // below would fire for it (when it is full, not even a command), so
                        // write it now. Likewise the rest of a batch cut at a memfd payload,
                        // and a flush that came while the batch was being written, with no
                        // bytes after it (it would wait for a command that may never come).
                        let cut = n == asked && !self.writing.is_empty();
                        if cut || self.writing.is_empty() && self.session.has_output() {
                            continue;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return End::Lost(e.to_string()),
                }
            }
            tokio::select! {
                command = self.commands.recv(), if self.session.queued() < WRITE_BATCH => {
                    let Some(command) = command else { return End::ClientGone };
                    self.session.command(command);
                    self.take_ready();
                }
                Some(answered) = self.answers.recv() => {
                    self.session.answered(answered);
                    self.take_ready();
                }
                read = connection.reader.fill() => {
                    if let Err(why) = read {
                        return End::Lost(why);
                    }
                    loop {
                        match connection.reader.next_frame() {
                            Ok(Some(frame)) => {
                                if let Some(call) = self.session.incoming(frame)
                                    && let Some(answered) = call.start(&self.answer_sender)
                                {
                                    self.session.answered(answered);
                                }
                            }
                            Ok(None) => break,
                            Err(why) => return End::Lost(why),
                        }
                    }
                    self.session.deliver_staged();
                }
                writable = connection.writer.writable(), if !self.writing.is_empty() => {
                    if let Err(e) = writable {
                        return End::Lost(e.to_string());
                    }
                }
            }
        }
    }

    /// Takes the commands and answers already waiting, so they leave in one write, until a
    /// batch is full.
    fn take_ready(&mut self) {
        while self.session.queued() < WRITE_BATCH {
            if let Ok(answered) = self.answers.try_recv() {
                self.session.answered(answered);
            } else if let Ok(command) = self.commands.try_recv() {
                self.session.command(command);
            } else {
                return;
            }
        }
    }

    /// Writes what is still queued before the task ends; the client is gone, so failures are
    /// nobody's to hear.
    async fn flush(&mut self, connection: &mut Connection) {
        loop {
            self.session.take_output(&mut self.writing);
            if self.writing.is_empty() {
                return;
            }
            let (bytes, fd) = self.writing.next_write();
            let n = bytes.len();
            if connection.writer.write_all_fd(bytes, fd).await.is_err() {
                return;
            }
            self.writing.advance(n, self.session.publishes());
        }
    }

    /// Connects again with backoff; meanwhile the session refuses commands.
    async fn reconnect(&mut self) -> Option<Connection> {
        let reconnecting = connect::reconnect(&self.addr, &self.options);
        let mut reconnecting = std::pin::pin!(reconnecting);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return None,
                    Some(command) => self.session.command(command),
                },
                Some(answered) = self.answers.recv() => self.session.answered(answered),
                connection = &mut reconnecting => return Some(connection),
            }
        }
    }
}

impl Drop for EventLoop {
    /// However the task ends, publishers waiting for room (and later ones) learn it is gone.
    fn drop(&mut self) {
        self.session.publishes().close();
    }
}
