//! Long-running commands and the broker going away. The Rust client reconnects by itself and
//! registers and subscribes again; it tells of the connection only through its log, and of
//! names it lost through [`Client::lost_names`]. A tracing layer turns the client's log events
//! into [`Notice`]s, and a [`Watch`] tells the user once per outage on stderr and ends the
//! command when it cannot go on: reconnecting is off, a name was lost, or a subscription could
//! not be made again.

use std::sync::OnceLock;

use plexus_client::{Client, LostNames};
use serde_json::json;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;

use crate::exit::{self, Failure};

/// Where the client logs its connection's end and its reconnecting.
const EVENT_LOOP: &str = "plexus_client::event_loop";
/// Where the client logs what failed when it subscribed again.
const SESSION: &str = "plexus_client::session";

/// What the client's log said about its connection.
#[derive(Debug, Clone)]
pub enum Notice {
    /// The connection to the broker ended, and why.
    Lost(String),
    /// The client is connected again.
    Reconnected,
    /// A subscription could not be made again after a reconnect.
    SubscriptionLost(String),
}

fn notices() -> &'static broadcast::Sender<Notice> {
    static NOTICES: OnceLock<broadcast::Sender<Notice>> = OnceLock::new();
    NOTICES.get_or_init(|| broadcast::channel(64).0)
}

/// The tracing layer that turns the client's connection events into [`Notice`]s.
pub fn layer<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>>() -> impl Layer<S>
{
    NoticeLayer.with_filter(
        Targets::new()
            .with_target(EVENT_LOOP, Level::DEBUG)
            .with_target(SESSION, Level::ERROR),
    )
}

struct NoticeLayer;

#[derive(Default)]
struct Fields {
    message: String,
    why: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "why" => self.why = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

impl<S: Subscriber> Layer<S> for NoticeLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let target = event.metadata().target();
        let notice = if target == EVENT_LOOP && fields.message == "connection to the broker lost" {
            Notice::Lost(fields.why)
        } else if target == EVENT_LOOP && fields.message == "reconnected" {
            Notice::Reconnected
        } else if target == SESSION && fields.message.starts_with("subscribing to") {
            Notice::SubscriptionLost(fields.message)
        } else {
            return;
        };
        let _ = notices().send(notice);
    }
}

/// Watches one long-running command's client.
pub struct Watch {
    notices: broadcast::Receiver<Notice>,
    lost_names: Option<LostNames>,
    addr: String,
    reconnect: bool,
    json: bool,
    down: bool,
}

impl Watch {
    /// Watches `client`, which reconnects when `reconnect`; notices go out as JSON with `json`.
    pub fn new(client: &Client, reconnect: bool, json: bool) -> Watch {
        Watch {
            notices: notices().subscribe(),
            lost_names: Some(client.lost_names()),
            addr: client.address().to_string(),
            reconnect,
            json,
            down: false,
        }
    }

    fn tell(&self, notice: &str, text: String) {
        if self.json {
            eprintln!(
                "{}",
                json!({ "notice": notice, "bus": self.addr, "message": text })
            );
        } else {
            eprintln!("plexus: {text}");
        }
    }

    /// Tells the user, once each, when the broker goes away and when the client is back; resolves
    /// with the failure that must end the command.
    pub async fn failure(&mut self) -> Failure {
        loop {
            let lost_names = &mut self.lost_names;
            let lost_name = async {
                match lost_names {
                    Some(names) => names.next().await,
                    None => std::future::pending().await,
                }
            };
            let heard = tokio::select! {
                notice = self.notices.recv() => Heard::Notice(notice),
                lost = lost_name => Heard::LostName(lost),
            };
            match heard {
                Heard::Notice(Ok(Notice::Lost(why))) => {
                    if !self.reconnect {
                        return Failure::new(
                            exit::TRANSPORT,
                            format!(
                                "lost the broker at {} ({why}); exiting, as --no-reconnect asks",
                                self.addr
                            ),
                        );
                    }
                    if !self.down {
                        self.down = true;
                        self.tell(
                            "connection_lost",
                            format!("lost the broker at {} ({why}), reconnecting", self.addr),
                        );
                    }
                }
                Heard::Notice(Ok(Notice::Reconnected)) => {
                    if self.down {
                        self.down = false;
                        self.tell("reconnected", format!("reconnected to {}", self.addr));
                    }
                }
                Heard::Notice(Ok(Notice::SubscriptionLost(message))) => {
                    return Failure::new(exit::TRANSPORT, format!("{message}; exiting"));
                }
                Heard::Notice(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Heard::Notice(Err(broadcast::error::RecvError::Closed)) => {
                    return std::future::pending().await;
                }
                Heard::LostName(Some(lost)) => {
                    return Failure {
                        code: exit::for_code(lost.code),
                        message: format!(
                            "lost the name {} when reconnecting: {}: {} — another program \
                             registered it while the broker was away (`plexus list` shows \
                             which); exiting",
                            lost.name, lost.code, lost.message
                        ),
                        error: Some((lost.code, None)),
                    };
                }
                Heard::LostName(None) => self.lost_names = None,
            }
        }
    }
}

impl Watch {
    /// Why the client's streams ended: the failure already heard of, else that the connection
    /// closed.
    pub async fn ended(&mut self) -> Failure {
        let addr = self.addr.clone();
        tokio::select! {
            biased;
            failure = self.failure() => failure,
            () = std::future::ready(()) => Failure::new(
                exit::TRANSPORT,
                format!("the connection to the broker at {addr} closed"),
            ),
        }
    }
}

/// What [`Watch::failure`] heard.
enum Heard {
    Notice(Result<Notice, broadcast::error::RecvError>),
    LostName(Option<plexus_client::NameLost>),
}
