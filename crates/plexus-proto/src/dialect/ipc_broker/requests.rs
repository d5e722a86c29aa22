//! Decoding what an ipc-broker peer sends: requests become frames for the router (or answers
//! given at once), and a worker's results become replies.

use super::codec::{IpcBrokerCodec, Open};
use super::messages::{HasObjectQuery, Incoming};
use crate::dialect::{Decoded, parse_coded_message, split_error_data};
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::names::validate_topic;

impl IpcBrokerCodec {
    /// What one packet body means.
    pub(super) fn packet(&mut self, body: &[u8]) -> Decoded {
        let msg = match serde_json::from_slice::<Incoming<'_>>(body) {
            Ok(m) => m,
            Err(e) => return Decoded::Dropped(format!("not an ipc-broker message: {e}")),
        };
        match msg {
            Incoming::RegisterObject { object_name } => {
                let open = Open::Register {
                    object: object_name.clone(),
                };
                self.route(open, |id| Frame::register(id, &object_name, false))
            }
            Incoming::RegisterService { object_name } => {
                let id = self.remember(Open::Register {
                    object: object_name,
                });
                let msg = "service activation is not supported; start the worker yourself";
                Decoded::Answer(Frame::error(id, ErrorCode::InvalidParams, msg, b""))
            }
            Incoming::Call {
                call_id,
                object_name,
                method,
                args,
            } => {
                let open = Open::Call {
                    call_id,
                    object: object_name.clone(),
                };
                let params = args.get().as_bytes();
                self.route(open, |id| Frame::call(id, &object_name, &method, 0, params))
            }
            Incoming::Subscribe { object_name, topic } => self.subscribe(object_name, topic),
            Incoming::Publish {
                object_name,
                topic,
                args,
            } => {
                let topic = format!("{object_name}.{topic}");
                match validate_topic(&topic) {
                    Ok(()) => {
                        Decoded::Route(Frame::publish(0, &topic, args.get().as_bytes(), false))
                    }
                    Err(e) => Decoded::Dropped(format!("publish refused: {e}")),
                }
            }
            Incoming::HasObject { object_name } => {
                let params = HasObjectQuery {
                    names: [&object_name],
                    timeout_ms: 0,
                }
                .to_json();
                let open = Open::HasObject {
                    object: object_name,
                };
                let object = crate::BROKER_OBJECT;
                self.route(open, |id| Frame::call(id, object, "wait_for", 0, &params))
            }
            Incoming::Result { call_id, value } => match call_id.parse::<u64>() {
                Ok(id) => Decoded::Route(Frame::reply(id, value.get().as_bytes())),
                Err(_) => Decoded::Dropped(format!("a result for unknown call id {call_id:?}")),
            },
            Incoming::Error { call_id, message } => {
                let Some(id) = call_id.and_then(|c| c.parse::<u64>().ok()) else {
                    return Decoded::Dropped(format!("an error for no known call: {message}"));
                };
                let (text, data) = split_error_data(&message);
                let (code, text) = parse_coded_message(text);
                Decoded::Route(Frame::error(id, code, text, data))
            }
        }
    }

    /// `Subscribe` to `object.topic`, once per connection and pair.
    fn subscribe(&mut self, object: String, topic: String) -> Decoded {
        let pair = (object, topic);
        if self.pairs.contains(&pair) {
            // ipc-broker delivers each event once per connection and subscribed pair; its client
            // hands every event to all its callbacks for that pair.
            return Decoded::Dropped(format!("already subscribed to {}/{}", pair.0, pair.1));
        }
        if self.full() {
            // Its client does not wait for an answer to a subscription, so none is sent.
            return Decoded::Dropped(format!(
                "overloaded: subscription to {}/{} refused while too many requests wait",
                pair.0, pair.1
            ));
        }
        let pattern = format!("{}.{}", pair.0, pair.1);
        let id = self.remember(Open::Subscribe);
        self.pairs.insert(pair.clone());
        self.subs.insert(id, pair);
        Decoded::Route(Frame::subscribe(id, &pattern))
    }
}
