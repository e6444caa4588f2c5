//! SUBSCRIBE and UNSUBSCRIBE: making a subscription, attaching it to the queues it
//! consumes from, and removing it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use super::{Origin, Subscription, is_durable_queue};
use crate::core::Broker;
use crate::core::ids::{ConnId, QueueKey, SubKey};
use crate::core::interbroker::{Action, NetworkSub, is_advisory};
use crate::core::interbroker_headers::{ADVISORY_REPLAY, NETWORK_BROKER};
use crate::core::request::{SubscribeRequest, UnsubscribeRequest};
use crate::core::session::{FrameError, FrameResult, fatal};
use crate::destination::{Kind, Pattern};
use crate::proto::Frame;
use crate::security::Operation;

impl Broker {
    pub(in crate::core) fn on_subscribe(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let Some(version) = self.conns.get(&conn_id).map(|c| c.version) else {
            return Ok(());
        };
        let routed = self.routed.take();
        let mut request = SubscribeRequest::parse(frame, version)?;
        let mut rabbit_pattern = None;
        let mut exchange = false;
        if let Some(r) = routed {
            exchange = r.exchange;
            // What a STOMP 1.0 UNSUBSCRIBE without `id` names; the display is for MESSAGE
            // frames.
            if request.id_header.is_none() {
                request.client_id = r.written;
            }
            request.dest_text = r.display;
            rabbit_pattern = r.pattern;
        }
        let h = &frame.headers;
        let Some(conn) = self.conns.get(&conn_id) else {
            return Ok(());
        };
        let SubscribeRequest {
            dest_text,
            destination: dest,
            wildcard,
            id_header,
            client_id,
            ack,
            selector,
            prefetch,
            priority,
            exclusive,
            no_local,
        } = request;
        if conn.subs.contains_key(&client_id) {
            return fatal(format!("subscription id '{client_id}' is already in use"));
        }
        let (max, limit) = if h.contains(NETWORK_BROKER) {
            (
                self.config.limits.network_subscriptions_per_connection_max,
                "network_subscriptions_per_connection_max",
            )
        } else {
            (
                self.config.limits.subscriptions_per_connection_max,
                "subscriptions_per_connection_max",
            )
        };
        if conn.subs.len() >= max {
            return fatal(format!("too many subscriptions (limits.{limit} = {max})"));
        }
        let key = if wildcard {
            QueueKey {
                kind: dest.kind,
                name: dest.name.clone(),
            }
        } else {
            self.resolve(conn_id, &dest)?
        };
        if key.kind.is_temporary() && dest.remote {
            // Only the creating connection may consume from a temporary destination.
            let owned = self
                .conns
                .get(&conn_id)
                .is_some_and(|c| c.temps.values().any(|n| *n == key.name));
            if !owned {
                return Err(FrameError::Refused(format!(
                    "cannot consume from {}: temporary destinations belong to the connection that created them",
                    key.display()
                )));
            }
        }
        self.authorize_use(conn_id, Operation::Read, &key)?;
        let durable = self.open_durable(
            conn_id,
            frame,
            &key,
            wildcard,
            exchange.then(|| (&*client_id, rabbit_pattern.clone())),
        )?;
        let (selector, durable_key) = match durable {
            // A durable subscription's selector is applied as messages enter its queue.
            Some((k, q)) => (None, Some((k, q))),
            None => (selector, None),
        };
        let default_prefetch = if dest.kind.is_queue() {
            self.config.queue_prefetch_default
        } else {
            self.config.topic_prefetch_default
        };
        let prefetch = prefetch
            .unwrap_or(default_prefetch)
            .min(self.config.limits.prefetch_max);
        let network = NetworkSub::parse(h, &self.config.broker_name)?;
        let advisory = is_advisory(&key);
        let eq = selector.as_ref().and_then(|s| {
            s.equality()
                .map(|(p, v)| (Arc::<str>::from(p), ByteString::from(v)))
        });
        let show_sent = self.in_rabbitmq_vhost(conn_id);
        self.next_sub += 1;
        let sub_key = SubKey(self.next_sub);
        let sub = Subscription {
            conn: conn_id,
            client_id: client_id.clone(),
            id_header,
            dest_text,
            dest: key.clone(),
            pattern: (wildcard && durable_key.is_none())
                .then(|| rabbit_pattern.unwrap_or_else(|| Pattern::new(&dest.name))),
            show_sent,
            selector,
            eq,
            ack,
            prefetch,
            priority,
            exclusive,
            no_local,
            unacked: VecDeque::new(),
            last_dispatch: 0,
            queues: BTreeSet::new(),
            network,
            advisory: None,
            durable: durable_key.as_ref().map(|(k, _)| k.clone()),
        };
        self.network_subs += usize::from(sub.network.is_some());
        self.subs.insert(sub_key, sub);
        if let Some(c) = self.conns.get_mut(&conn_id) {
            c.subs.insert(client_id, sub_key);
        }
        if advisory {
            // Advisory subscribers are fed by `advise`, not by topic publishing.
            self.start_advisory_feed(sub_key, h.get(ADVISORY_REPLAY) == Some("true"));
            return Ok(());
        }
        if let Some((durable, queue)) = durable_key {
            self.attach(sub_key, &queue, true);
            self.durable_came_online(&durable, sub_key);
        } else if key.kind.is_queue() {
            if wildcard {
                self.queue_wildcard_subs.insert(sub_key);
                let matching: Vec<QueueKey> = self
                    .queues
                    .keys()
                    .filter(|q| {
                        q.kind == Kind::Queue
                            && !is_durable_queue(q)
                            && Pattern::new(&key.name).matches(&q.name)
                    })
                    .cloned()
                    .collect();
                for q in matching {
                    self.attach(sub_key, &q, false);
                }
            } else {
                self.ensure_queue(&key)?;
                self.attach(sub_key, &key, true);
            }
        } else if wildcard {
            self.topics.wildcards.insert(sub_key);
        } else {
            self.topics.exact.entry(key).or_default().insert(sub_key);
        }
        self.pending_drains.push(sub_key);
        self.advise(sub_key, Action::Add);
        Ok(())
    }

    /// Registers `sub_key` as a consumer of queue `key`.
    pub(super) fn attach(&mut self, sub_key: SubKey, key: &QueueKey, direct: bool) {
        let Some(sub) = self.subs.get_mut(&sub_key) else {
            return;
        };
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        sub.queues.insert(key.clone());
        queue.consumers.insert(sub_key);
        if direct {
            queue.direct += 1;
        }
        if sub.network.is_none() {
            queue.local_consumers += 1;
        }
        match &sub.eq {
            Some((prop, value)) => {
                queue.add_indexed_prop(prop);
                queue
                    .eq_consumers
                    .entry((prop.clone(), value.clone()))
                    .or_default()
                    .insert(sub_key);
            }
            None => {
                queue.other_consumers.insert(sub_key);
            }
        }
        if sub.exclusive {
            queue.exclusive.insert(sub_key);
        }
    }

    pub(super) fn detach(&mut self, sub_key: SubKey, key: &QueueKey) {
        let Some(sub) = self.subs.get(&sub_key) else {
            return;
        };
        let direct = sub.pattern.is_none();
        let local = sub.network.is_none();
        let eq = sub.eq.clone();
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        if !queue.consumers.remove(&sub_key) {
            return;
        }
        if direct {
            queue.direct -= 1;
        }
        if local {
            queue.local_consumers -= 1;
            if queue.local_consumers == 0 {
                // Stranded messages may now go back over a bridge (replay).
                let subs = &self.subs;
                let replaying = queue.consumers.iter().copied().filter(|s| {
                    subs.get(s)
                        .and_then(|sub| sub.network.as_ref())
                        .is_some_and(|n| n.replay)
                });
                self.pending_drains.extend(replaying);
            }
        }
        match eq {
            Some((prop, value)) => {
                let k = (prop.clone(), value);
                if let Some(set) = queue.eq_consumers.get_mut(&k) {
                    set.remove(&sub_key);
                    if set.is_empty() {
                        queue.eq_consumers.remove(&k);
                    }
                }
                queue.remove_indexed_prop(&prop);
            }
            None => {
                queue.other_consumers.remove(&sub_key);
            }
        }
        queue.exclusive.remove(&sub_key);
        queue.groups.retain(|_, owner| *owner != sub_key);
    }

    pub(in crate::core) fn on_unsubscribe(
        &mut self,
        conn_id: ConnId,
        frame: &Frame,
    ) -> FrameResult {
        if let Some(result) = self.close_durable(conn_id, frame) {
            return result;
        }
        let Some(conn) = self.conns.get(&conn_id) else {
            return Ok(());
        };
        let request = UnsubscribeRequest::parse(frame)?;
        let sub_key = match &request {
            UnsubscribeRequest::Id(id) => conn.subs.get(id).copied(),
            // STOMP 1.0: by destination; the first subscription to it.
            UnsubscribeRequest::Destination(dest) => conn.subs.get(dest).copied().or_else(|| {
                conn.subs
                    .values()
                    .copied()
                    .find(|s| self.subs.get(s).is_some_and(|sub| sub.dest_text == *dest))
            }),
        };
        let Some(sub_key) = sub_key else {
            return Err(FrameError::Refused(format!(
                "no subscription '{}' to unsubscribe",
                request.name()
            )));
        };
        self.remove_subscription(sub_key);
        Ok(())
    }

    /// Removes a subscription; its unacknowledged queue messages are redelivered.
    pub(in crate::core) fn remove_subscription(&mut self, sub_key: SubKey) {
        self.advise(sub_key, Action::Remove);
        self.advisory_subs.remove(&sub_key);
        let Some(sub) = self.subs.get(&sub_key) else {
            return;
        };
        let queues: Vec<QueueKey> = sub.queues.iter().cloned().collect();
        let conn_id = sub.conn;
        let client_id = sub.client_id.clone();
        let dest = sub.dest.clone();
        for q in &queues {
            self.detach(sub_key, q);
        }
        self.queue_wildcard_subs.remove(&sub_key);
        self.topics.wildcards.remove(&sub_key);
        if let Some(set) = self.topics.exact.get_mut(&dest) {
            set.remove(&sub_key);
            if set.is_empty() {
                self.topics.exact.remove(&dest);
            }
        }
        let Some(mut sub) = self.subs.remove(&sub_key) else {
            return;
        };
        if let Some(durable) = &sub.durable {
            self.durable_went_offline(durable, sub_key);
        }
        self.network_subs -= usize::from(sub.network.is_some());
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.subs.remove(&client_id);
            for u in &sub.unacked {
                conn.tags.remove(&u.tag);
            }
        }
        for u in sub.unacked.drain(..) {
            if let Origin::Queue { queue, key } = u.origin {
                self.settle_inflight(&queue);
                self.requeue(queue, key, u.message, u.redeliveries + 1);
            }
        }
        for q in &queues {
            self.collect_queue(q);
        }
        if let Some(durable) = &sub.durable {
            self.collect_auto_delete(durable);
        }
    }
}
