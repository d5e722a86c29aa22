//! Message kinds (the header's `kind` byte) and their flag bits.

/// What a frame is. Direction and layout of each kind are in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client → broker, first frame: strings `[client_name]`, aux = protocol minor version.
    Hello = 0x01,
    /// Broker → client, answer to `Hello`: id = connection id, aux = max frame size,
    /// strings `[broker_version]`.
    Welcome = 0x02,
    /// Claim a name: strings `[name]`, flag [`flags::SHARED`] for a queue group.
    Register = 0x10,
    /// Give up a name: strings `[name]`.
    Unregister = 0x11,
    /// Call a method: strings `[object, method]`, aux = timeout ms (0 = broker default),
    /// payload = params.
    Call = 0x12,
    /// Successful answer to a request: payload = result.
    Reply = 0x13,
    /// Failed answer to a request: aux = error code, strings `[message]`, payload = data.
    Error = 0x14,
    /// Caller → broker: abandon call `id`; broker → worker: stop working on call `id`.
    Cancel = 0x15,
    /// Subscribe: id = subscription id, strings `[pattern]`, or `[pattern, group]` with
    /// [`flags::QUEUE`] for a queue group.
    Subscribe = 0x20,
    /// Unsubscribe: id = subscription id. No answer.
    Unsubscribe = 0x21,
    /// Publish: strings `[topic]`, payload = event body; flag [`flags::ACK`] asks for a reply.
    Publish = 0x22,
    /// Broker → subscriber: id = subscription id, aux = events dropped before this one,
    /// strings `[topic]`, payload = event body.
    Event = 0x23,
    /// Liveness probe: payload is echoed in the `Pong`.
    Ping = 0x30,
    /// Answer to `Ping`, same id and payload.
    Pong = 0x31,
}

impl Kind {
    /// Every kind, in code order.
    pub const ALL: [Kind; 14] = [
        Kind::Hello,
        Kind::Welcome,
        Kind::Register,
        Kind::Unregister,
        Kind::Call,
        Kind::Reply,
        Kind::Error,
        Kind::Cancel,
        Kind::Subscribe,
        Kind::Unsubscribe,
        Kind::Publish,
        Kind::Event,
        Kind::Ping,
        Kind::Pong,
    ];

    /// The kind for a header byte, if it names one.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// Lower-case name used in logs and docs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Welcome => "welcome",
            Kind::Register => "register",
            Kind::Unregister => "unregister",
            Kind::Call => "call",
            Kind::Reply => "reply",
            Kind::Error => "error",
            Kind::Cancel => "cancel",
            Kind::Subscribe => "subscribe",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Publish => "publish",
            Kind::Event => "event",
            Kind::Ping => "ping",
            Kind::Pong => "pong",
        }
    }
}

/// Flag bits of the header's `flags` byte.
pub mod flags {
    /// On `Register`: join the name's queue group instead of owning it alone.
    pub const SHARED: u8 = 0x01;
    /// On `Publish`: answer with a `Reply` whose payload is `{"delivered":N,"dropped":M}`.
    pub const ACK: u8 = 0x01;
    /// On `Subscribe`: join the queue group named by the frame's second string; each event goes
    /// to one member of the group.
    pub const QUEUE: u8 = 0x01;
    /// On `Call`, `Reply`, `Publish`, `Event`: the payload is not in the body but is all the
    /// bytes of a sealed memfd passed with the frame over the Unix socket (SCM_RIGHTS); the body
    /// holds only the strings. On `Hello`: the client takes such frames; on `Welcome`: the broker
    /// takes and sends them on this connection. Only Unix-socket native peers that both said so
    /// use it.
    pub const FD_PAYLOAD: u8 = 0x80;
}
