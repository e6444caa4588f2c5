//! The core's side of a network of brokers: consumer advisories, network subscriptions,
//! broker paths and the duplicate audit. The connectors that use them live in
//! [`crate::connectors`]; this module only decides, never connects.
//!
//! # Consumer advisories
//!
//! Whenever a subscription on a queue or topic is added or removed, the broker publishes
//! an *advisory* on `/topic/ActiveMQ.Advisory.Consumer.Queue.<name>` or
//! `/topic/ActiveMQ.Advisory.Consumer.Topic.<name>` (ActiveMQ's names; `<name>` is the
//! subscription's destination name, wildcards included). Its headers (see [`headers`])
//! say what happened (`add`/`remove`), which consumer (an id stable for the
//! subscription's life), its destination and selector, and its broker path: the brokers
//! its demand already passed through (none for a local consumer; for a network
//! subscription the path its connector gave it). Advisories are not published for
//! subscriptions on temporary destinations or on advisory topics.
//!
//! Only subscriptions whose destination is under `ActiveMQ.Advisory.` receive
//! advisories (a `/topic/>` subscriber does not). They get them through a per-subscription
//! backlog that is drained as their connection has room, so a burst of thousands of
//! subscriptions (a fleet reconnecting) never trips the slow-consumer policy; a backlog
//! beyond `limits.advisory_backlog_messages_max` closes the connection (its connector
//! reconnects and replays). With the SUBSCRIBE header `stampede.advisory-replay:true`
//! the new subscription first gets an `add` advisory for every current consumer, then
//! a `replay-end` marker: a connector that (re)connects learns the current demand, not
//! only future changes.
//!
//! # Network subscriptions
//!
//! A SUBSCRIBE with `stampede.network-broker:<B>` is a connector's *demand subscription*
//! on behalf of consumers on broker `B`. Messages delivered to it carry
//! `stampede-broker-path` with this broker appended and `stampede-origin-id` (the
//! message's id at its first broker), and the connector sends them on to `B`. The core
//! keeps such messages from looping: a network subscription for `B` never receives a
//! message whose broker path contains `B`, nor one that has already made
//! `stampede.message-ttl` hops (the length of its path). With
//! `stampede.replay-when-no-consumers:true` (ActiveMQ's
//! `conditionalNetworkBridgeFilterFactory replayWhenNoConsumers`), a queue message whose
//! path contains `B` may still go back to `B` when this broker has no local consumer on
//! the queue any more, allowing one hop beyond the TTL.
//!
//! # Duplicate audit
//!
//! The same message can reach a broker twice: over two paths in a mesh or ring, or again
//! after a bridge failed before the sender saw its receipt (store and forward redelivers).
//! SENDs that carry a broker path are audited: the last `limits.network_audit_messages_max`
//! (origin id, destination) pairs are remembered and a repeat is acknowledged but not
//! routed (counted in `Stats::network_duplicates_dropped`). A message whose path already
//! contains this broker (a replay) is let through.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use super::ids::{QueueKey, SubKey};
use super::message::{DEFAULT_PRIORITY, Message};
use super::session::FrameError;
use super::{Broker, SharedMessage};
use crate::destination::{Destination, Kind};
use crate::proto::Headers;

/// Header names of the network protocol between brokers and their connectors.
pub use super::interbroker_headers as headers;

use headers::*;

/// Names of advisory topics start with this.
pub const ADVISORY_PREFIX: &str = "ActiveMQ.Advisory.";

/// The advisory topic name (without `/topic/`) for consumers of `kind` named `name`.
pub fn advisory_topic(kind: Kind, name: &str) -> String {
    let what = if kind.is_queue() { "Queue" } else { "Topic" };
    format!("{ADVISORY_PREFIX}Consumer.{what}.{name}")
}

/// Whether `key` is an advisory topic (or a pattern over advisory topics).
pub(super) fn is_advisory(key: &QueueKey) -> bool {
    key.kind == Kind::Topic && key.name.starts_with(ADVISORY_PREFIX)
}

/// Splits a comma-separated broker path.
pub fn parse_path(text: &str) -> Vec<Arc<str>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Arc::from)
        .collect()
}

/// What makes a subscription a connector's demand subscription.
#[derive(Debug)]
pub(crate) struct NetworkSub {
    /// The broker whose consumers it stands for; messages go there.
    pub(crate) broker: Arc<str>,
    /// Its broker path, as its advisories publish it.
    pub(crate) path: ByteString,
    pub(crate) hops: usize,
    pub(crate) message_ttl: usize,
    pub(crate) replay: bool,
}

impl NetworkSub {
    /// Reads the network headers of a SUBSCRIBE; `None` for an ordinary subscription.
    pub(super) fn parse(h: &Headers, this_broker: &str) -> Result<Option<NetworkSub>, FrameError> {
        let Some(broker) = h.get(NETWORK_BROKER).map(str::trim) else {
            return Ok(None);
        };
        let refuse = |m: String| Err(FrameError::Refused(m));
        if broker.is_empty() || broker.contains(',') {
            return refuse(format!("invalid {NETWORK_BROKER} header '{broker}'"));
        }
        let path = match h.get(NETWORK_PATH) {
            Some(p) => parse_path(p),
            None => vec![Arc::from(broker)],
        };
        if broker == this_broker || path.iter().any(|b| &**b == this_broker) {
            return refuse(format!(
                "network subscription for {broker} (path {}) would loop back to this broker ({this_broker})",
                path.join(",")
            ));
        }
        let message_ttl = match h.get(NETWORK_MESSAGE_TTL) {
            None => 1,
            Some(t) => match t.trim().parse::<usize>() {
                Ok(n) => n,
                Err(_) => return refuse(format!("invalid {NETWORK_MESSAGE_TTL} header '{t}'")),
            },
        };
        Ok(Some(NetworkSub {
            broker: Arc::from(broker),
            hops: path.len(),
            path: ByteString::from(path.join(",")),
            message_ttl,
            replay: h.get(NETWORK_REPLAY) == Some("true"),
        }))
    }

    /// Whether `message` may be delivered to this subscription (and so forwarded to
    /// `broker`). `queue_has_local` says whether the queue it waits in has a local
    /// (non-network) consumer; pass `true` for topics.
    pub(super) fn accepts(&self, message: &Message, queue_has_local: bool) -> bool {
        let hops = message.broker_path.len();
        let looped = message.broker_path.contains(&self.broker);
        if looped {
            self.replay && !queue_has_local && hops <= self.message_ttl
        } else {
            hops < self.message_ttl
        }
    }
}

/// What an advisory says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Add,
    Remove,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
        }
    }
}

/// An advisory waiting for room on its subscriber's connection.
#[derive(Debug)]
pub(super) enum FeedItem {
    /// A live advisory, built when it happened.
    Message(SharedMessage),
    /// Replay: an `add` advisory for this subscription, if it still exists when sent.
    Replay(SubKey),
    /// The end of the replay.
    ReplayEnd,
}

/// An advisory subscriber's backlog.
#[derive(Debug, Default)]
pub(crate) struct AdvisoryFeed {
    backlog: VecDeque<FeedItem>,
    /// Live advisories in `backlog` (replay entries are bounded by the subscriptions).
    messages: usize,
}

/// The bounded memory of network messages seen, for dropping duplicates.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    seen: BTreeSet<ByteString>,
    order: VecDeque<ByteString>,
}

impl Audit {
    /// Records `key`; returns `false` when it was already known.
    fn insert(&mut self, key: ByteString, max: usize) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        while self.order.len() >= max.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

impl Broker {
    /// Whether `message`, arriving over a bridge, was already routed here. Records it
    /// otherwise.
    pub(super) fn is_network_duplicate(&mut self, message: &Message) -> bool {
        if message.broker_path.is_empty() {
            return false;
        }
        let this = self.config.broker_name.as_str();
        if message.broker_path.iter().any(|b| &**b == this) {
            // A replay coming back: let it through.
            return false;
        }
        let Some(origin) = &message.origin_id else {
            return false;
        };
        let key = ByteString::from(format!("{origin}\n{}", message.destination_text));
        let max = self.config.limits.network_audit_messages_max;
        if self.audit.insert(key, max) {
            false
        } else {
            self.stats.network_duplicates_dropped += 1;
            true
        }
    }

    /// Sets up a new advisory subscription: its feed, and the replay if asked for.
    pub(super) fn start_advisory_feed(&mut self, sub_key: SubKey, replay: bool) {
        let mut feed = AdvisoryFeed::default();
        if replay {
            for (k, s) in &self.subs {
                if *k != sub_key && s.advisable() {
                    feed.backlog.push_back(FeedItem::Replay(*k));
                }
            }
            feed.backlog.push_back(FeedItem::ReplayEnd);
        }
        if let Some(sub) = self.subs.get_mut(&sub_key) {
            sub.advisory = Some(feed);
        }
        self.advisory_subs.insert(sub_key);
        self.pending_drains.push(sub_key);
    }

    /// Publishes a consumer advisory for `sub_key` to every advisory subscriber whose
    /// destination matches. Call after adding and before removing a subscription.
    pub(super) fn advise(&mut self, sub_key: SubKey, action: Action) {
        if self.advisory_subs.is_empty() {
            return;
        }
        let Some(message) = self.advisory_message(sub_key, action) else {
            return;
        };
        let message = Arc::new(message);
        let max = self.config.limits.advisory_backlog_messages_max;
        let mut overflowing = Vec::new();
        let subscribers: Vec<SubKey> = self.advisory_subs.iter().copied().collect();
        for s in subscribers {
            let Some(sub) = self.subs.get_mut(&s) else {
                continue;
            };
            if !sub.wants_advisory(&message) {
                continue;
            }
            let Some(feed) = sub.advisory.as_mut() else {
                continue;
            };
            feed.backlog.push_back(FeedItem::Message(message.clone()));
            feed.messages += 1;
            if feed.messages > max && !overflowing.contains(&sub.conn) {
                overflowing.push(sub.conn);
            }
            self.pending_drains.push(s);
        }
        for conn in overflowing {
            let msg = format!(
                "more than {max} consumer advisories waited to be read (limits.advisory_backlog_messages_max)"
            );
            self.error_and_close(conn, &msg, None, "advisory backlog full");
        }
    }

    /// The advisory for `sub_key`, or `None` if it gets none.
    fn advisory_message(&mut self, sub_key: SubKey, action: Action) -> Option<Message> {
        let sub = self.subs.get(&sub_key)?;
        if !sub.advisable() {
            return None;
        }
        let mut h = Headers::with_capacity(8);
        h.push(ADVISORY_ACTION, action.as_str());
        h.push(ADVISORY_BROKER, self.config.broker_name.as_str());
        h.push(
            CONSUMER_ID,
            format!(
                "{}-{}-{}",
                self.config.broker_name, self.incarnation, sub_key.0
            ),
        );
        h.push(CONSUMER_DESTINATION, sub.dest_text.clone());
        if let Some(selector) = &sub.selector {
            h.push(CONSUMER_SELECTOR, selector.as_str());
        }
        match &sub.network {
            Some(n) => {
                h.push(CONSUMER_BROKER_PATH, n.path.clone());
                h.push(CONSUMER_HOPS, n.hops.to_string());
            }
            None => h.push(CONSUMER_HOPS, "0"),
        }
        h.push(CONSUMER_PRIORITY, sub.priority.to_string());
        let topic = advisory_topic(sub.dest.kind, &sub.dest.name);
        Some(self.advisory(topic, h))
    }

    fn advisory(&mut self, topic: String, headers: Headers) -> Message {
        let id = self.message_id();
        let text = ByteString::from(format!("/topic/{topic}"));
        Message::new(
            id,
            Destination::new(Kind::Topic, topic),
            text,
            headers,
            Bytes::new(),
            DEFAULT_PRIORITY,
            None,
            false,
            None,
        )
    }

    /// Sends an advisory subscriber what its connection has room for.
    pub(super) fn drain_advisories(&mut self, sub_key: SubKey) {
        let max = self.config.limits.outbound_frames_max;
        loop {
            let Some(sub) = self.subs.get_mut(&sub_key) else {
                return;
            };
            if !sub.is_ready(&self.conns, max) {
                return;
            }
            let Some(feed) = sub.advisory.as_mut() else {
                return;
            };
            let Some(item) = feed.backlog.pop_front() else {
                return;
            };
            let message = match item {
                FeedItem::Message(m) => {
                    feed.messages -= 1;
                    m
                }
                FeedItem::Replay(k) => match self.advisory_message(k, Action::Add) {
                    Some(m) => {
                        let wanted = self
                            .subs
                            .get(&sub_key)
                            .is_some_and(|s| s.wants_advisory(&m));
                        if !wanted {
                            continue;
                        }
                        Arc::new(m)
                    }
                    None => continue,
                },
                FeedItem::ReplayEnd => {
                    let mut h = Headers::with_capacity(2);
                    h.push(ADVISORY_ACTION, "replay-end");
                    h.push(ADVISORY_BROKER, self.config.broker_name.as_str());
                    let topic = format!("{ADVISORY_PREFIX}Consumer");
                    Arc::new(self.advisory(topic, h))
                }
            };
            self.deliver_advisory(sub_key, message);
        }
    }
}
