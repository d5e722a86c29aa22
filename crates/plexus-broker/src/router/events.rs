//! Events: subscribing (within limits), unsubscribing, publishing, and delivering an event (or a
//! monitor record) to every matching subscription, with what happens to a subscriber that cannot
//! keep up.

use plexus_proto::{
    ErrorCode, Frame, Kind, flags, validate_name, validate_pattern, validate_topic,
};
use serde_json::json;

use super::monitor::{self, CallName};
use super::publish_stall::note_lagging;
use super::{Kick, State, Subscription};
use crate::config::SlowConsumer;
use crate::conn_id::ConnId;
use crate::quotas::Resource;

/// What a delivery reached.
#[derive(Debug, Clone, Copy)]
struct Reach {
    delivered: u64,
    dropped: u64,
}

impl State {
    /// Adds subscription `id` of `conn` to the frame's pattern (as a member of the queue group
    /// its second string names, with [`flags::QUEUE`]), within the per-connection and
    /// broker-wide subscription limits; a queue group member counts as a subscription.
    pub(super) fn subscribe(&mut self, conn: ConnId, frame: &Frame) {
        let (id, pattern) = (frame.id(), frame.string(0));
        if let Err(e) = validate_pattern(pattern) {
            return self.fail(conn, id, ErrorCode::InvalidParams, &e.to_string(), b"");
        }
        // Access control.
        let checked = self
            .access(conn)
            .map(|a| match monitor::is_monitor_pattern(pattern) {
                true => a.monitor(),
                false => a.subscribe(pattern),
            });
        if let Some(Err(denied)) = checked {
            return self.refuse(conn, id, CallName::default(), denied);
        }
        let group = (frame.flags() & flags::QUEUE != 0).then(|| frame.string(1));
        if let Some(group) = group
            && let Err(e) = validate_name(group)
        {
            let msg = format!("queue group {group:?}: {e}");
            return self.fail(conn, id, ErrorCode::InvalidParams, &msg, b"");
        }
        let (per_conn, total) = (
            self.config.max_subscriptions_per_connection,
            self.config.max_subscriptions,
        );
        let held = self.subscription_count();
        if let Err(msg) = self.room_under_quota(conn, Resource::Subscriptions) {
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.subs.contains_key(&id) {
            let msg = format!("subscription id {id} is already in use on this connection");
            return self.fail(conn, id, ErrorCode::InvalidParams, &msg, b"");
        }
        if c.subs.len() >= per_conn {
            let msg = format!(
                "this connection already holds {} subscriptions, the limit (max_subscriptions_per_connection = {per_conn}); unsubscribe some first",
                c.subs.len()
            );
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        if held >= total {
            let msg = format!(
                "the broker already holds {held} subscriptions, the limit (max_subscriptions = {total}); try again later"
            );
            return self.fail(conn, id, ErrorCode::Overloaded, &msg, b"");
        }
        let feed = monitor::is_monitor_pattern(pattern);
        let queue = match group {
            Some(group) => Some(self.queues.join(pattern, group, (conn, id), feed)),
            None => {
                self.subs.insert(pattern, (conn, id));
                None
            }
        };
        c.subs.insert(
            id,
            Subscription {
                pattern: pattern.to_owned(),
                dropped: 0,
                monitor: feed,
                queue,
            },
        );
        self.monitor_subs += usize::from(feed);
        self.ok(conn, id);
    }

    /// Subscriptions on the bus, queue group members included.
    pub fn subscription_count(&self) -> usize {
        self.subs.count() + self.queues.members()
    }

    /// Removes subscription `id` of `conn`, if it exists.
    pub(super) fn unsubscribe(&mut self, conn: ConnId, id: u64) {
        let removed = self.conns.get_mut(&conn).and_then(|c| c.subs.remove(&id));
        if let Some(sub) = removed {
            self.drop_subscription(conn, id, &sub);
        }
    }

    /// Takes subscription `id` of `conn`, already removed from its connection, off the bus.
    pub(super) fn drop_subscription(&mut self, conn: ConnId, id: u64, sub: &Subscription) {
        match sub.queue {
            Some(group) => self.queues.leave(group, (conn, id)),
            None => self.subs.remove(&sub.pattern, (conn, id)),
        }
        self.monitor_subs -= usize::from(sub.monitor);
    }

    /// Delivers a published event, and acknowledges it when the publisher asked.
    pub(super) fn publish(&mut self, conn: ConnId, frame: &Frame) {
        let topic = frame.string(0);
        if let Err(e) = validate_topic(topic) {
            return self.fail(
                conn,
                frame.id(),
                ErrorCode::InvalidParams,
                &e.to_string(),
                b"",
            );
        }
        if monitor::is_monitor_topic(topic) {
            let msg = format!(
                "topic '{topic}' is the broker's monitor feed; only the broker publishes there"
            );
            return self.fail(conn, frame.id(), ErrorCode::PermissionDenied, &msg, b"");
        }
        // Access control.
        if let Some(Err(denied)) = self.access(conn).map(|a| a.publish(topic)) {
            return self.refuse(conn, frame.id(), CallName::default(), denied);
        }
        let reach = self.deliver(frame);
        // Cluster: once to the other brokers, unless it came from them.
        self.cluster_publish(conn, frame);
        self.stats.events_published += 1;
        self.stats.events_delivered += reach.delivered;
        self.stats.events_dropped += reach.dropped;
        self.topics.record(topic, reach.delivered, reach.dropped);
        self.feed_monitor(|st| {
            monitor::event_record(st.party(conn), frame, reach.delivered, reach.dropped)
        });
        if frame.flags() & flags::ACK != 0 {
            let data =
                json!({ "delivered": reach.delivered, "dropped": reach.dropped }).to_string();
            self.send_always(conn, Frame::reply(frame.id(), data.as_bytes()));
        }
    }

    /// Delivers the record `build` makes to the monitor feed; builds nothing while nobody
    /// subscribes to it. Records are counted apart from events.
    pub(super) fn feed_monitor(&mut self, build: impl FnOnce(&State) -> Frame) {
        if self.watched() {
            let record = build(self);
            // Dashboard: viewers get the record's JSON; sending never waits.
            if self.live.watched() {
                self.live.send(record.payload());
            }
            if self.monitor_subs > 0 {
                let reach = self.deliver(&record);
                self.stats.monitor_delivered += reach.delivered;
                self.stats.monitor_dropped += reach.dropped;
            }
        }
    }

    /// Queues `frame` (a publish) as an event to every matching subscription, and to one member
    /// of every matching queue group. An event that does not fit in a subscriber's outbox (in a
    /// group: in any member's) is dropped and counted on its subscription (its group); with
    /// `slow_consumer = "disconnect"` the subscriber (the member whose turn it was) is also
    /// marked to be disconnected.
    ///
    /// Publish stall (with `publish_stall` above zero): an event that leaves a subscriber's
    /// outbox past its high-water mark lists it in `lagging`, for the publisher's reader to wait
    /// for; monitor records never do, so a viewer of the feed does not hold back the bus it
    /// watches. A queue group's event goes to a member under its mark when one takes it, so a
    /// group stalls its publishers only when every member lags.
    fn deliver(&mut self, frame: &Frame) -> Reach {
        let topic = frame.string(0);
        let feed = monitor::is_monitor_topic(topic);
        // Publish stall.
        let stall = !feed && !self.config.publish_stall.is_zero();
        let pass = self.lagging_pass;
        let disconnect = self.config.slow_consumer == SlowConsumer::Disconnect;
        let outbox_limit = self.config.outbox_limit;
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.subs.matches(topic, &mut matches);
        let mut reach = Reach {
            delivered: 0,
            dropped: 0,
        };
        for (target, sub_id) in matches.iter().copied() {
            let Some(c) = self.conns.get_mut(&target) else {
                continue;
            };
            let Some(sub) = c.subs.get_mut(&sub_id) else {
                continue;
            };
            if feed && !sub.monitor {
                continue;
            }
            match c
                .outbox
                .push(frame.readdress(Kind::Event, sub_id, sub.dropped))
            {
                Ok(()) => {
                    sub.dropped = 0;
                    reach.delivered += 1;
                    if stall {
                        note_lagging(&mut self.lagging, pass, &c.outbox);
                    }
                }
                Err(_) => {
                    sub.dropped = sub.dropped.saturating_add(1);
                    c.traffic.events_dropped += 1;
                    reach.dropped += 1;
                    if disconnect && let Some(kick) = c.kick.take() {
                        let why = slow_consumer(topic, sub_id, outbox_limit);
                        self.to_kick.push((target, kick, why));
                    }
                }
            }
        }
        self.matches = matches;
        let mut groups = std::mem::take(&mut self.group_matches);
        groups.clear();
        self.queues.matches(topic, &mut groups);
        for group in groups.iter().copied() {
            let Some(g) = self.queues.get_mut(group) else {
                continue;
            };
            if feed && !g.monitor {
                continue;
            }
            let n = g.members.len();
            let conns = &self.conns;
            // Publish stall: members past their mark are passed over while another takes it.
            let take = |under_mark: bool| {
                (0..n).map(|k| (g.next + k) % n).find(|&i| {
                    let (target, sub_id) = g.members[i];
                    conns.get(&target).is_some_and(|c| {
                        (!under_mark || !c.outbox.past_mark())
                            && c.outbox
                                .push(frame.readdress(Kind::Event, sub_id, g.dropped))
                                .is_ok()
                    })
                })
            };
            let taker = match stall {
                true => take(true).or_else(|| take(false)),
                false => take(false),
            };
            match taker {
                Some(i) => {
                    g.next = (i + 1) % n;
                    g.dropped = 0;
                    reach.delivered += 1;
                    if stall && let Some(c) = g.members.get(i).and_then(|m| self.conns.get(&m.0)) {
                        note_lagging(&mut self.lagging, pass, &c.outbox);
                    }
                }
                None => {
                    g.dropped = g.dropped.saturating_add(1);
                    reach.dropped += 1;
                    let Some(&(target, sub_id)) = g.members.get(g.next) else {
                        continue;
                    };
                    if let Some(c) = self.conns.get_mut(&target) {
                        c.traffic.events_dropped += 1;
                    }
                    if disconnect
                        && let Some(kick) = self.conns.get_mut(&target).and_then(|c| c.kick.take())
                    {
                        let why = slow_consumer(topic, sub_id, outbox_limit);
                        self.to_kick.push((target, kick, why));
                    }
                }
            }
        }
        self.group_matches = groups;
        reach
    }
}

/// Why a slow consumer is disconnected: an event on `topic` for subscription `sub_id` did not
/// fit in its outbox.
fn slow_consumer(topic: &str, sub_id: u64, outbox_limit: usize) -> Kick {
    let message = format!(
        "slow consumer: an event on '{topic}' for subscription {sub_id} did not fit in this connection's outbox (outbox_limit = {outbox_limit} bytes), and the broker disconnects slow consumers (slow_consumer = \"disconnect\")"
    );
    Kick {
        code: ErrorCode::Overloaded,
        message,
    }
}
