//! Durable topic subscriptions, as ActiveMQ's STOMP makes them: a connection with
//! `client-id` on CONNECT subscribes to a topic with `activemq.subscriptionName`; the
//! subscription outlives the connection, and topic messages for it wait while it is
//! offline, in a queue of its own (named by [`durable_queue_name`], which no client can
//! address), bounded by `limits.queue_messages_max` like any queue. Coming back with the
//! same client id and name consumes that queue; UNSUBSCRIBE with
//! `activemq.subscriptionName` removes the subscription and its messages. With a store,
//! durable subscriptions and their persistent messages survive restarts
//! ([`Broker::restore`]).

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use crate::core::ids::{ConnId, QueueKey, SubKey};
use crate::core::message::{DropReason, Message};
use crate::core::session::{FrameError, FrameResult};
use crate::core::{Broker, SharedMessage};
use crate::destination::{Destination, Kind, Pattern};
use crate::proto::{Frame, Headers};
use crate::selector::Selector;
use crate::store::{DurableSub, Record, Recovered, durable_queue_name};

/// The SUBSCRIBE/UNSUBSCRIBE header naming a durable subscription.
pub(crate) const SUBSCRIPTION_NAME: &str = "activemq.subscriptionName";

/// A durable subscription's key: (client-id, subscription name).
pub(crate) type DurableKey = (String, String);

/// One durable subscription.
pub(crate) struct Durable {
    /// The topic as the client wrote it.
    dest_text: String,
    /// The topic (or topic pattern) it takes messages from.
    topic: QueueKey,
    pattern: Option<Pattern>,
    selector: Option<Selector>,
    selector_text: Option<String>,
    no_local: bool,
    /// Where its messages wait.
    pub(super) queue: QueueKey,
    /// The subscription consuming it now, if its client is connected.
    pub(super) active: Option<SubKey>,
}

impl Durable {
    fn wants(&self, topic: &QueueKey, message: &Message) -> bool {
        let name_ok = match &self.pattern {
            Some(p) => p.matches(&topic.name),
            None => self.topic == *topic,
        };
        name_ok && self.selector.as_ref().is_none_or(|s| s.matches(message))
    }

    fn record(&self, client_id: &str, name: &str) -> DurableSub {
        DurableSub {
            client_id: client_id.to_owned(),
            name: name.to_owned(),
            destination: self.dest_text.clone(),
            selector: self.selector_text.clone(),
            no_local: self.no_local,
        }
    }
}

impl Broker {
    /// For a SUBSCRIBE with `activemq.subscriptionName`: finds or creates the durable
    /// subscription and returns its key and queue. The caller makes the subscription and
    /// attaches it to the queue.
    pub(super) fn open_durable(
        &mut self,
        conn_id: ConnId,
        frame: &Frame,
        topic: &QueueKey,
        wildcard: bool,
    ) -> Result<Option<(DurableKey, QueueKey)>, FrameError> {
        let Some(name) = frame.headers.get(SUBSCRIPTION_NAME) else {
            return Ok(None);
        };
        if topic.kind != Kind::Topic {
            return Err(FrameError::Refused(format!(
                "{SUBSCRIPTION_NAME} makes a durable subscription, which only topics have \
                 (not {})",
                topic.display()
            )));
        }
        let Some(client_id) = self
            .conns
            .get(&conn_id)
            .and_then(|c| c.client_id.as_ref())
            .map(|c| c.to_string())
        else {
            return Err(FrameError::Refused(format!(
                "durable subscription '{name}' needs a client-id header on CONNECT"
            )));
        };
        let key = (client_id, name.to_owned());
        let dest_text = frame.headers.get("destination").unwrap_or("").to_owned();
        let selector_text = frame
            .headers
            .get("selector")
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned);
        let no_local = frame.headers.get("activemq.noLocal") == Some("true");
        if let Some(d) = self.durables.get(&key) {
            if d.active.is_some() {
                return Err(FrameError::Refused(format!(
                    "durable subscription '{}' of client-id '{}' is already active",
                    key.1, key.0
                )));
            }
            if d.dest_text == dest_text
                && d.selector_text == selector_text
                && d.no_local == no_local
            {
                return Ok(Some((key.clone(), d.queue.clone())));
            }
            // Another topic or selector: as in ActiveMQ, the old subscription and its
            // messages go, and a new one starts.
            self.delete_durable(&key);
        }
        let selector = match &selector_text {
            Some(text) => {
                Some(Selector::parse(text).map_err(|e| FrameError::Fatal(e.to_string()))?)
            }
            None => None,
        };
        let durable = Durable {
            dest_text,
            topic: topic.clone(),
            pattern: wildcard.then(|| Pattern::new(&topic.name)),
            selector,
            selector_text,
            no_local,
            queue: QueueKey::queue(&durable_queue_name(&key.0, &key.1)),
            active: None,
        };
        let queue = durable.queue.clone();
        self.ensure_queue(&queue)?;
        if let Some(q) = self.queues.get_mut(&queue) {
            q.durable = true;
        }
        self.persist_record(Record::DurableAdd(durable.record(&key.0, &key.1)), true);
        self.durables.insert(key.clone(), durable);
        Ok(Some((key, queue)))
    }

    /// Handles an UNSUBSCRIBE with `activemq.subscriptionName`: closes this connection's
    /// subscription to it if open, then removes the durable subscription and its
    /// messages. `None` when the frame names no durable subscription.
    pub(super) fn close_durable(&mut self, conn_id: ConnId, frame: &Frame) -> Option<FrameResult> {
        let name = frame.headers.get(SUBSCRIPTION_NAME)?;
        let Some(client_id) = self
            .conns
            .get(&conn_id)
            .and_then(|c| c.client_id.as_ref())
            .map(|c| c.to_string())
        else {
            return Some(Err(FrameError::Refused(format!(
                "durable subscription '{name}' needs a client-id header on CONNECT"
            ))));
        };
        let key = (client_id, name.to_owned());
        let Some(active) = self.durables.get(&key).map(|d| d.active) else {
            return Some(Err(FrameError::Refused(format!(
                "no durable subscription '{}' of client-id '{}' to remove",
                key.1, key.0
            ))));
        };
        if let Some(sub) = active {
            if self.subs.get(&sub).is_some_and(|s| s.conn != conn_id) {
                return Some(Err(FrameError::Refused(format!(
                    "durable subscription '{}' of client-id '{}' is in use by another connection",
                    key.1, key.0
                ))));
            }
            self.remove_subscription(sub);
        }
        self.delete_durable(&key);
        Some(Ok(()))
    }

    /// Removes durable subscription `key` and the messages waiting for it.
    fn delete_durable(&mut self, key: &(String, String)) {
        let Some(d) = self.durables.remove(key) else {
            return;
        };
        if let Some(sub) = d.active {
            self.remove_subscription(sub);
        }
        if let Some(queue) = self.queues.remove(&d.queue) {
            for s in &queue.consumers {
                if let Some(sub) = self.subs.get_mut(s) {
                    sub.queues.remove(&d.queue);
                }
            }
            for entry in queue.pending.values() {
                if self.is_stored(&d.queue, &entry.message) {
                    // The removal record drops them from the store.
                    self.forget_stored_bytes(&entry.message);
                }
            }
        }
        self.persist_record(
            Record::DurableRemove {
                client_id: key.0.clone(),
                name: key.1.clone(),
            },
            true,
        );
    }

    /// Puts a topic message into the queue of every durable subscription that wants it
    /// (one store record for all of them).
    pub(super) fn publish_durable(&mut self, topic: &QueueKey, message: &SharedMessage) {
        if self.durables.is_empty() {
            return;
        }
        let max = self.config.limits.queue_messages_max;
        let wanted: Vec<QueueKey> = self
            .durables
            .values()
            .filter(|d| d.wants(topic, message))
            .filter(|d| {
                !d.no_local
                    || d.active
                        .and_then(|s| self.subs.get(&s))
                        .is_none_or(|sub| message.origin_conn != Some(sub.conn))
            })
            .map(|d| d.queue.clone())
            .collect();
        let mut targets = Vec::with_capacity(wanted.len());
        for q in wanted {
            let depth = self.queue_len(&q);
            if depth >= max {
                tracing::warn!(
                    queue = %q.display(),
                    "durable subscription is full (limits.queue_messages_max = {max}): a topic \
                     message for it is dropped"
                );
                self.stats.messages_dropped_slow += 1;
                self.record_drop(message, DropReason::SlowConsumer);
                continue;
            }
            targets.push(q);
        }
        self.persist_enqueue(message, &targets);
        for q in targets {
            let entry_key = self.entry_key(message);
            if !self.offer(&q, entry_key, message, 0) {
                self.store(&q, entry_key, message.clone(), 0);
            }
        }
    }

    /// A durable subscription's consumer went away: it is offline now.
    pub(super) fn durable_went_offline(&mut self, key: &(String, String), sub: SubKey) {
        if let Some(d) = self.durables.get_mut(key)
            && d.active == Some(sub)
        {
            d.active = None;
        }
    }

    /// A durable subscription's consumer arrived.
    pub(super) fn durable_came_online(&mut self, key: &(String, String), sub: SubKey) {
        if let Some(d) = self.durables.get_mut(key) {
            d.active = Some(sub);
        }
    }

    /// Rebuilds what a store recovered: durable subscriptions (offline), and every
    /// message still held, in its queues, marked redelivered (its consumer may have seen
    /// it before the restart). Call after [`Broker::enable_persistence`], before any
    /// connection opens. Writes no records: all of it is on disk.
    pub fn restore(&mut self, recovered: Recovered) {
        self.set_next_persist_id(recovered.next_id);
        for d in recovered.durables {
            let Ok(dest) = Destination::parse(&d.destination) else {
                tracing::warn!(destination = %d.destination, "a stored durable subscription names a bad topic; ignored");
                continue;
            };
            let selector = match &d.selector {
                Some(text) => match Selector::parse(text) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(selector = %text, "a stored durable subscription's selector does not parse ({e}); ignored");
                        continue;
                    }
                },
                None => None,
            };
            let topic = QueueKey {
                kind: dest.kind,
                name: dest.name.clone(),
            };
            let queue = QueueKey::queue(&durable_queue_name(&d.client_id, &d.name));
            if self.ensure_queue(&queue).is_err() {
                tracing::warn!(queue = %queue.display(), "cannot restore a durable subscription: limits.destinations_max");
                continue;
            }
            if let Some(q) = self.queues.get_mut(&queue) {
                q.durable = true;
            }
            self.durables.insert(
                (d.client_id, d.name),
                Durable {
                    dest_text: d.destination,
                    pattern: dest.is_wildcard().then(|| Pattern::new(&dest.name)),
                    topic,
                    selector,
                    selector_text: d.selector,
                    no_local: d.no_local,
                    queue,
                    active: None,
                },
            );
        }
        for m in recovered.messages {
            let Ok(dest) = Destination::parse(&m.destination) else {
                tracing::warn!(destination = %m.destination, "a stored message names a bad destination; ignored");
                continue;
            };
            let mut headers = Headers::default();
            for (k, v) in m.headers {
                headers.push(k, v);
            }
            let message = Arc::new(
                Message::new(
                    ByteString::from(m.message_id),
                    dest.clone(),
                    ByteString::from(dest.to_string()),
                    headers,
                    Bytes::clone(&m.body),
                    m.priority,
                    m.expires_ms,
                    true,
                    None,
                )
                .with_network(
                    m.broker_path.into_iter().map(Arc::from).collect(),
                    m.origin_id.map(ByteString::from),
                )
                .with_persist_id(Some(m.id))
                .charged(&self.memory),
            );
            for q in m.queues {
                let key = QueueKey::queue(&q);
                if super::is_durable_queue(&key) && !self.queues.contains_key(&key) {
                    continue;
                }
                if self.ensure_queue(&key).is_err() {
                    tracing::warn!(queue = %key.display(), "cannot restore a stored message: limits.destinations_max");
                    continue;
                }
                self.count_recovered_bytes(&message);
                let entry_key = self.entry_key(&message);
                self.store(&key, entry_key, message.clone(), 1);
            }
        }
    }
}
