//! Durable topic subscriptions, as ActiveMQ's STOMP makes them: a connection with
//! `client-id` on CONNECT subscribes to a topic with `activemq.subscriptionName`; the
//! subscription outlives the connection, and topic messages for it wait while it is
//! offline, in a queue of its own (named by [`durable_queue_name`], which no client can
//! address), bounded by `limits.queue_messages_max` like any queue. Coming back with the
//! same client id and name consumes that queue; UNSUBSCRIBE with
//! `activemq.subscriptionName` removes the subscription and its messages. With a store,
//! durable subscriptions and their persistent messages survive restarts
//! ([`Broker::restore`]).
//!
//! The same machinery gives RabbitMQ's subscriptions to exchanges (in RabbitMQ-convention
//! vhosts, `/exchange/…` and `/topic/…`) their queue: RabbitMQ binds a queue of the
//! subscription's own to the exchange and the subscriber consumes it, so messages wait for
//! a slow subscriber (up to `limits.queue_messages_max`) instead of being dropped as
//! ActiveMQ's topic subscribers' are, and ack modes, `prefetch-count` and NACK behave as on
//! a queue. By default that queue is exclusive and auto-delete: it goes with its
//! subscription ([`Durable::auto_delete`]). With `durable:true` (or `persistent:true`)
//! and `auto-delete:false` it outlives the connection, named by `x-queue-name` or the
//! subscription `id`, survives restarts with a store, and an UNSUBSCRIBE with
//! `durable:true` deletes it.

use std::collections::{BTreeMap, BTreeSet};
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

/// The first half of the key of a RabbitMQ durable subscription queue, before the vhost's
/// name: no ActiveMQ client id starts with a control character in practice, and nothing
/// but this module makes one.
const RABBIT_DURABLE: &str = "\u{1}rabbitmq ";

/// The first half of the key of an exclusive auto-delete subscription queue, before the
/// connection's id (the second half is the subscription's id).
const RABBIT_EXCLUSIVE: &str = "\u{1}conn ";

/// Whether a stored durable subscription key is a RabbitMQ one (its pattern comes from
/// the exchange's AMQP matching, not ActiveMQ's wildcards).
fn is_rabbit_key(client_id: &str) -> bool {
    client_id.starts_with(RABBIT_DURABLE)
}

/// A RabbitMQ header that is true (RabbitMQ reads `true` case-insensitively).
fn header_true(frame: &Frame, name: &str) -> bool {
    frame
        .headers
        .get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

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
    /// Deleted with its subscription (RabbitMQ's exclusive auto-delete subscription
    /// queue); never stored.
    pub(super) auto_delete: bool,
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

/// Every durable subscription (and RabbitMQ subscription queue), indexed so that a topic
/// message looks only at those that can want it: exact ones by their topic, and the
/// wildcard ones.
#[derive(Default)]
pub(crate) struct Durables {
    by_key: BTreeMap<DurableKey, Durable>,
    exact: BTreeMap<QueueKey, BTreeSet<DurableKey>>,
    wildcard: BTreeSet<DurableKey>,
}

impl Durables {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn get(&self, key: &DurableKey) -> Option<&Durable> {
        self.by_key.get(key)
    }

    fn get_mut(&mut self, key: &DurableKey) -> Option<&mut Durable> {
        self.by_key.get_mut(key)
    }

    fn contains_key(&self, key: &DurableKey) -> bool {
        self.by_key.contains_key(key)
    }

    fn insert(&mut self, key: DurableKey, d: Durable) {
        self.remove(&key);
        if d.pattern.is_some() {
            self.wildcard.insert(key.clone());
        } else {
            self.exact
                .entry(d.topic.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_key.insert(key, d);
    }

    fn remove(&mut self, key: &DurableKey) -> Option<Durable> {
        let d = self.by_key.remove(key)?;
        if !self.wildcard.remove(key)
            && let Some(set) = self.exact.get_mut(&d.topic)
        {
            set.remove(key);
            if set.is_empty() {
                self.exact.remove(&d.topic);
            }
        }
        Some(d)
    }

    /// Those that may want a message on `topic`, in key order.
    fn candidates<'a>(&'a self, topic: &QueueKey) -> impl Iterator<Item = &'a Durable> + 'a {
        let exact = self.exact.get(topic).into_iter().flatten();
        let mut keys: Vec<&DurableKey> = exact.chain(self.wildcard.iter()).collect();
        keys.sort();
        keys.into_iter().filter_map(|k| self.by_key.get(k))
    }
}

impl Broker {
    /// For a SUBSCRIBE with `activemq.subscriptionName`: finds or creates the durable
    /// subscription and returns its key and queue. The caller makes the subscription and
    /// attaches it to the queue.
    ///
    /// `exchange` is set for a SUBSCRIBE to an exchange in a RabbitMQ-convention vhost:
    /// the subscription's id and how it matches routing keys. Such a subscription always
    /// gets a queue (see the module's documentation).
    pub(super) fn open_durable(
        &mut self,
        conn_id: ConnId,
        frame: &Frame,
        topic: &QueueKey,
        wildcard: bool,
        exchange: Option<(&str, Option<Pattern>)>,
    ) -> Result<Option<(DurableKey, QueueKey)>, FrameError> {
        let Some(name) = frame.headers.get(SUBSCRIPTION_NAME) else {
            return match exchange {
                Some((sub_id, pattern)) => self
                    .open_subscription_queue(conn_id, frame, topic, sub_id, pattern)
                    .map(Some),
                None => Ok(None),
            };
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
        if client_id.starts_with('\u{1}') {
            // The keys of RabbitMQ subscription queues start so; no client id may.
            return Err(FrameError::Refused(format!(
                "durable subscription '{name}': a client-id may not start with a control \
                 character"
            )));
        }
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
            auto_delete: false,
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

    /// The queue of a RabbitMQ subscription to an exchange: an exclusive auto-delete one,
    /// or with `durable:true` and `auto-delete:false` a durable one found again by its
    /// name (`x-queue-name`, or the subscription id) in this vhost.
    fn open_subscription_queue(
        &mut self,
        conn_id: ConnId,
        frame: &Frame,
        topic: &QueueKey,
        sub_id: &str,
        pattern: Option<Pattern>,
    ) -> Result<(DurableKey, QueueKey), FrameError> {
        let durable = header_true(frame, "durable") || header_true(frame, "persistent");
        let auto_delete = match frame.headers.get("auto-delete") {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => !durable,
        };
        let dest_text = frame.headers.get("destination").unwrap_or("").to_owned();
        let key = if auto_delete {
            (
                format!("{RABBIT_EXCLUSIVE}{}", conn_id.0),
                sub_id.to_owned(),
            )
        } else {
            let Some(id) = frame.headers.get("id") else {
                return Err(FrameError::Refused(
                    "a durable subscription (durable:true, auto-delete:false) needs an id header"
                        .to_owned(),
                ));
            };
            let vhost = self
                .conns
                .get(&conn_id)
                .and_then(|c| c.vhost)
                .map(|v| self.vhosts.get(v).name.clone())
                .unwrap_or_default();
            let name = match frame.headers.get("x-queue-name") {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => format!("stomp-subscription-{id}"),
            };
            (format!("{RABBIT_DURABLE}{vhost}"), name)
        };
        if let Some(d) = self.durables.get(&key) {
            if d.active.is_some() {
                return Err(FrameError::Refused(format!(
                    "RESOURCE_LOCKED - subscription queue '{}' is in use by another subscription",
                    key.1
                )));
            }
            if d.dest_text == dest_text {
                return Ok((key.clone(), d.queue.clone()));
            }
            // Bound to another destination now: the old queue and its messages go.
            self.delete_durable(&key);
        }
        let durable = Durable {
            dest_text,
            topic: topic.clone(),
            pattern,
            selector: None,
            selector_text: None,
            no_local: false,
            queue: QueueKey::queue(&durable_queue_name(&key.0, &key.1)),
            active: None,
            auto_delete,
        };
        let queue = durable.queue.clone();
        self.ensure_queue(&queue)?;
        if let Some(q) = self.queues.get_mut(&queue) {
            q.durable = true;
            q.transient = auto_delete;
        }
        if !auto_delete {
            self.persist_record(Record::DurableAdd(durable.record(&key.0, &key.1)), true);
        }
        self.durables.insert(key.clone(), durable);
        Ok((key, queue))
    }

    /// Handles an UNSUBSCRIBE with `durable:true` in a RabbitMQ-convention vhost: closes
    /// this connection's subscription `id` if open, then deletes the durable subscription
    /// queue it names. `None` when the frame is not such an UNSUBSCRIBE.
    fn close_rabbit_durable(&mut self, conn_id: ConnId, frame: &Frame) -> Option<FrameResult> {
        if !(header_true(frame, "durable") || header_true(frame, "persistent")) {
            return None;
        }
        let conn = self.conns.get(&conn_id)?;
        let vh = conn.vhost?;
        if self.vhosts.get(vh).convention != crate::vhost::Convention::RabbitMq {
            return None;
        }
        let id = frame.headers.get("id")?;
        let open = conn.subs.get(id).copied();
        let key = match open
            .and_then(|s| self.subs.get(&s))
            .and_then(|s| s.durable.clone())
        {
            Some(k) if is_rabbit_key(&k.0) => k,
            _ => {
                let name = match frame.headers.get("x-queue-name") {
                    Some(n) if !n.is_empty() => n.to_owned(),
                    _ => format!("stomp-subscription-{id}"),
                };
                (
                    format!("{RABBIT_DURABLE}{}", self.vhosts.get(vh).name),
                    name,
                )
            }
        };
        if !self.durables.contains_key(&key) {
            return Some(Err(FrameError::Refused(format!(
                "NOT_FOUND - no durable subscription queue '{}' to delete",
                key.1
            ))));
        }
        if let Some(sub) = open {
            self.remove_subscription(sub);
        }
        self.delete_durable(&key);
        Some(Ok(()))
    }

    /// Handles an UNSUBSCRIBE with `activemq.subscriptionName`: closes this connection's
    /// subscription to it if open, then removes the durable subscription and its
    /// messages. `None` when the frame names no durable subscription.
    pub(super) fn close_durable(&mut self, conn_id: ConnId, frame: &Frame) -> Option<FrameResult> {
        let Some(name) = frame.headers.get(SUBSCRIPTION_NAME) else {
            return self.close_rabbit_durable(conn_id, frame);
        };
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
                if !queue.transient && self.is_stored(&d.queue, &entry.message) {
                    // The removal record drops them from the store.
                    self.forget_stored_bytes(&entry.message);
                }
            }
        }
        if !d.auto_delete {
            self.persist_record(
                Record::DurableRemove {
                    client_id: key.0.clone(),
                    name: key.1.clone(),
                },
                true,
            );
        }
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
            .candidates(topic)
            .filter(|d| d.wants(topic, message))
            .filter(|d| {
                !d.no_local
                    || d.active
                        .and_then(|s| self.subs.get(&s))
                        .is_none_or(|sub| message.origin_conn != Some(sub.conn))
            })
            .map(|d| d.queue.clone())
            .collect();
        self.work.subscriptions_matched += wanted.len() as u64;
        let mut targets = Vec::with_capacity(wanted.len());
        for q in wanted {
            let depth = self.queue_len(&q);
            if depth >= max {
                tracing::warn!(
                    queue = %q.display(),
                    "a durable subscription's (or RabbitMQ subscription's) queue is full \
                     (limits.queue_messages_max = {max}): a topic message for it is dropped"
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

    /// Deletes `key`'s subscription queue, with its messages, if it is an auto-delete one
    /// and its subscription is gone (called once the subscription's unacknowledged
    /// messages are back in it). Its messages are lost as RabbitMQ loses them; the
    /// simulator's checker explains each by its target's connection ending.
    pub(super) fn collect_auto_delete(&mut self, key: &(String, String)) {
        if self
            .durables
            .get(key)
            .is_some_and(|d| d.auto_delete && d.active.is_none())
        {
            self.delete_durable(key);
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
            // A RabbitMQ subscription's internal name spells its AMQP pattern (literal
            // words are escaped, so `*` and `>` can only be its `*` and `#`).
            let pattern = if is_rabbit_key(&d.client_id) {
                dest.is_wildcard()
                    .then(|| crate::vhost::pattern_of_internal(&dest.name))
            } else {
                dest.is_wildcard().then(|| Pattern::new(&dest.name))
            };
            self.durables.insert(
                (d.client_id, d.name),
                Durable {
                    dest_text: d.destination,
                    pattern,
                    topic,
                    selector,
                    selector_text: d.selector,
                    no_local: d.no_local,
                    queue,
                    active: None,
                    auto_delete: false,
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
                    // As MESSAGE frames showed it before the restart (a RabbitMQ vhost's
                    // spelling, such as `/exchange/X/key`, is not an internal name).
                    ByteString::from(m.destination.as_str()),
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
