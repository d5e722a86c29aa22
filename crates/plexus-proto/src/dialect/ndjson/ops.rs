//! Op lines: the plexus operations a peer sends as `{"op":...}`, each turned into a frame.

use serde_json::value::RawValue;

use super::encode::WaitForParams;
use super::line::{CodeField, Line, raw_bytes, timeout_aux};
use super::{NdjsonCodec, Style, What};
use crate::dialect::Decoded;
use crate::error_code::ErrorCode;
use crate::frame::Frame;
use crate::kind::Kind;
use crate::names::validate_topic;

/// The ops a peer may send.
const OPS: &str = "call, reply, error, cancel, register, unregister, subscribe, unsubscribe, publish, wait_for, ping";

impl NdjsonCodec {
    /// Decodes an op line whose `op` is `op`.
    pub(super) fn op(&mut self, op: &str, line: &Line<'_>, out: &mut Vec<Decoded>) {
        let done = match op {
            "call" => self.op_call(line, out),
            "register" | "unregister" => self.op_register(op == "register", line, out),
            "subscribe" => self.op_subscribe(line, out),
            "unsubscribe" => self.op_unsubscribe(line, out),
            "publish" => self.op_publish(line, out),
            "wait_for" => self.op_wait_for(line, out),
            "ping" => {
                if let Some(id) = self.open(line.id, Style::Op, What::Other, out) {
                    out.push(Decoded::Route(Frame::ping(id, raw_bytes(line.data))));
                }
                Ok(())
            }
            "cancel" => self.op_cancel(line, out),
            "reply" | "error" => self.op_answer(op, line, out),
            other => {
                let msg = format!("unknown op {other:?}; the ops are {OPS}");
                self.refuse(line.id, Style::Op, ErrorCode::BadFrame, &msg, out);
                Ok(())
            }
        };
        if let Err(field) = done {
            let msg = format!("op {op:?} needs \"{field}\"");
            self.refuse(line.id, Style::Op, ErrorCode::InvalidParams, &msg, out);
        }
    }

    /// `call`: a call the peer makes.
    fn op_call(&mut self, line: &Line<'_>, out: &mut Vec<Decoded>) -> Result<(), &'static str> {
        let (Some(object), Some(method)) = (&line.object, &line.method) else {
            return Err("object\" and \"method");
        };
        let client_id = line.id.unwrap_or(RawValue::NULL);
        if let Some(id) = self.open_call(client_id, Style::Op, out) {
            let aux = timeout_aux(line.timeout_ms);
            let params = raw_bytes(line.params);
            out.push(Decoded::Route(Frame::call(id, object, method, aux, params)));
        }
        Ok(())
    }

    /// `register` or `unregister` of a name.
    fn op_register(
        &mut self,
        register: bool,
        line: &Line<'_>,
        out: &mut Vec<Decoded>,
    ) -> Result<(), &'static str> {
        let Some(name) = &line.name else {
            return Err("name");
        };
        let Some(id) = self.open(line.id, Style::Op, What::Other, out) else {
            return Ok(());
        };
        out.push(Decoded::Route(if register {
            Frame::register(id, name, line.shared)
        } else {
            Frame::unregister(id, name)
        }));
        Ok(())
    }

    /// `subscribe`: the peer's id also names the subscription.
    fn op_subscribe(
        &mut self,
        line: &Line<'_>,
        out: &mut Vec<Decoded>,
    ) -> Result<(), &'static str> {
        let (Some(pattern), Some(client_id)) = (&line.pattern, line.id) else {
            return Err("pattern\" and \"id");
        };
        if self.subs_by_client.contains_key(client_id.get()) {
            let msg = format!(
                "subscription id {} is already in use on this connection",
                client_id.get()
            );
            self.refuse(line.id, Style::Op, ErrorCode::InvalidParams, &msg, out);
            return Ok(());
        }
        let Some(id) = self.open(line.id, Style::Op, What::Subscribe, out) else {
            return Ok(());
        };
        self.subs.insert(id, client_id.to_owned());
        self.subs_by_client.insert(client_id.get().to_owned(), id);
        out.push(Decoded::Route(Frame::subscribe(id, pattern)));
        Ok(())
    }

    /// `unsubscribe`: ends the subscription named by `sub` (or `id`); unknown ones are ignored.
    fn op_unsubscribe(
        &mut self,
        line: &Line<'_>,
        out: &mut Vec<Decoded>,
    ) -> Result<(), &'static str> {
        let Some(sub) = line.sub.or(line.id) else {
            return Err("sub");
        };
        if let Some(id) = self.subs_by_client.remove(sub.get()) {
            self.subs.remove(&id);
            out.push(Decoded::Route(Frame::unsubscribe(id)));
        }
        Ok(())
    }

    /// `publish`: with an `id`, the broker answers with the delivery counts.
    fn op_publish(&mut self, line: &Line<'_>, out: &mut Vec<Decoded>) -> Result<(), &'static str> {
        let Some(topic) = &line.topic else {
            return Err("topic");
        };
        let data = raw_bytes(line.data);
        if line.id.is_some() {
            if let Some(id) = self.open(line.id, Style::Op, What::Other, out) {
                out.push(Decoded::Route(Frame::publish(id, topic, data, true)));
            }
            return Ok(());
        }
        match validate_topic(topic) {
            Ok(()) => out.push(Decoded::Route(Frame::publish(0, topic, data, false))),
            Err(e) => {
                let msg = e.to_string();
                self.refuse(None, Style::Op, ErrorCode::InvalidParams, &msg, out);
            }
        }
        Ok(())
    }

    /// `wait_for`: a call of `plexus.wait_for`.
    fn op_wait_for(&mut self, line: &Line<'_>, out: &mut Vec<Decoded>) -> Result<(), &'static str> {
        let Some(names) = line.names else {
            return Err("names");
        };
        let params = WaitForParams {
            names,
            timeout_ms: line.timeout_ms,
        };
        let Some(id) = self.open(line.id, Style::Op, What::Other, out) else {
            return Ok(());
        };
        let aux = timeout_aux(line.timeout_ms);
        let object = crate::BROKER_OBJECT;
        let frame = Frame::call(id, object, "wait_for", aux, &params.to_json());
        out.push(Decoded::Route(frame));
        Ok(())
    }

    /// `cancel` of the peer's open call `id`; its answer is not sent.
    fn op_cancel(&mut self, line: &Line<'_>, out: &mut Vec<Decoded>) -> Result<(), &'static str> {
        let Some(client_id) = line.id else {
            return Err("id");
        };
        if let Some(id) = self.calls_by_client.remove(client_id.get()) {
            self.open.remove(&id);
            out.push(Decoded::Route(Frame::cancel(id)));
        }
        Ok(())
    }

    /// `reply` or `error`: a worker's answer to the incoming call with the numeric `id`.
    fn op_answer(
        &mut self,
        op: &str,
        line: &Line<'_>,
        out: &mut Vec<Decoded>,
    ) -> Result<(), &'static str> {
        let Some(id) = line
            .id
            .and_then(|r| serde_json::from_str::<u64>(r.get()).ok())
        else {
            let msg = format!("op {op:?} answers an incoming call and needs its numeric \"id\"");
            self.refuse(line.id, Style::Op, ErrorCode::InvalidParams, &msg, out);
            return Ok(());
        };
        if op == "reply" {
            out.push(Decoded::Route(Frame::reply(id, raw_bytes(line.result))));
            return Ok(());
        }
        // A number is kept as it is, even one this side does not know; an unknown name is
        // `internal`.
        let internal = ErrorCode::Internal.code();
        let (code, message, data) = match &line.error {
            Some(e) => {
                let code = match &e.code {
                    Some(CodeField::Number(n)) => *n,
                    Some(CodeField::Name(n)) => {
                        ErrorCode::from_name(n).map_or(internal, |c| c.code())
                    }
                    None => internal,
                };
                (code, e.message.as_str(), raw_bytes(e.data))
            }
            None => (internal, "", &b""[..]),
        };
        let answer = Frame::build(Kind::Error, id, code, 0, &[message], data);
        out.push(Decoded::Route(answer));
        Ok(())
    }
}
