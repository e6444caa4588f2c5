//! Routing: queues (competing consumers), topics (fan-out), subscriptions, acks,
//! redelivery, transactions, expiry and temporary destinations.
//!
//! # Queue dispatch
//!
//! A queue holds only undispatched messages, ordered by priority then arrival. A message
//! goes to the best *ready* consumer (room on its connection, and under its prefetch
//! window in client ack modes) whose selector matches: highest `activemq.priority`
//! first, then the one that waited longest. Consumers whose selector is exactly
//! `ident = 'literal'` are indexed by that pair, and so are the queue's waiting messages,
//! so 800 MCollective nodes with `mc_identity = '…'` selectors on one queue cost a map
//! lookup per message rather than 800 selector evaluations.
//!
//! Invariant: no waiting message could be delivered to a ready consumer. Whenever a
//! consumer becomes ready (new, acked, its connection drained) it is *drained*: given the
//! waiting messages it can take.

mod ack;
mod destinations;
mod durable;
mod redelivery;
mod send;
mod subscribe;
mod transactions;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use super::ids::{ConnId, EntryKey, QueueKey, SubKey};
use super::interbroker::{AdvisoryFeed, NetworkSub, is_advisory};
use super::message::Message;
use super::session::Conn;
use super::{Broker, SharedMessage};
use crate::destination::Pattern;
use crate::proto::AckMode;
use crate::selector::Selector;
pub(crate) use durable::Durables;

/// Where an unacknowledged delivery came from.
#[derive(Debug)]
enum Origin {
    Queue { queue: QueueKey, key: EntryKey },
    Topic,
}

#[derive(Debug)]
struct Unacked {
    tag: u64,
    message: SharedMessage,
    origin: Origin,
    redeliveries: u32,
}

/// One subscription of one connection.
pub(crate) struct Subscription {
    pub(super) conn: ConnId,
    /// The id the client uses for it (its `id`, or the destination in STOMP 1.0).
    client_id: ByteString,
    /// Sent as `subscription` on MESSAGE frames; `None` when the client gave no `id`.
    id_header: Option<ByteString>,
    /// The destination as the client wrote it.
    pub(super) dest_text: ByteString,
    /// Resolved destination; for wildcard subscriptions the name is the pattern.
    pub(super) dest: QueueKey,
    pub(super) pattern: Option<Pattern>,
    /// MESSAGE frames show where each message was sent rather than what the subscription
    /// names (RabbitMQ's way, in its vhosts).
    pub(super) show_sent: bool,
    pub(super) selector: Option<Selector>,
    /// For `ident = 'literal'` selectors: the indexed pair.
    eq: Option<(Arc<str>, ByteString)>,
    ack: AckMode,
    prefetch: usize,
    pub(super) priority: i32,
    exclusive: bool,
    no_local: bool,
    unacked: VecDeque<Unacked>,
    last_dispatch: u64,
    /// Queues this subscription consumes from (one, or several for a wildcard).
    queues: BTreeSet<QueueKey>,
    /// Set for a connector's demand subscription.
    pub(super) network: Option<NetworkSub>,
    /// Set for a subscription to consumer advisories.
    pub(super) advisory: Option<AdvisoryFeed>,
    /// Set for a durable topic subscription: (client-id, subscription name). It consumes
    /// from the durable subscription's queue.
    pub(super) durable: Option<(String, String)>,
}

impl Subscription {
    pub(super) fn is_ready(&self, conns: &BTreeMap<ConnId, Conn>, outbound_max: usize) -> bool {
        let room = conns
            .get(&self.conn)
            .is_some_and(|c| c.has_room(outbound_max));
        room && (self.ack == AckMode::Auto || self.unacked.len() < self.prefetch)
    }

    pub(super) fn selects(&self, message: &Message) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(message))
    }

    /// Whether the network rules let `message` go to this subscription (always, for an
    /// ordinary one); see [`NetworkSub::accepts`].
    fn network_accepts(&self, message: &Message, queue_has_local: bool) -> bool {
        self.network
            .as_ref()
            .is_none_or(|n| n.accepts(message, queue_has_local))
    }

    fn delivery_destination(&self, message: &Message) -> ByteString {
        if self.pattern.is_some() || self.durable.is_some() || self.show_sent {
            message.destination_text.clone()
        } else {
            self.dest_text.clone()
        }
    }

    /// Whether this subscription's creation and removal are advertised.
    pub(super) fn advisable(&self) -> bool {
        !self.dest.kind.is_temporary() && self.advisory.is_none() && !is_advisory(&self.dest)
    }

    /// Whether this advisory subscription wants advisory `m`.
    pub(super) fn wants_advisory(&self, m: &Message) -> bool {
        let name_ok = match &self.pattern {
            Some(p) => p.matches(&m.destination.name),
            None => *self.dest.name == *m.destination.name,
        };
        name_ok && self.selects(m)
    }
}

/// A waiting message.
#[derive(Debug)]
struct Entry {
    message: SharedMessage,
    redeliveries: u32,
}

/// A queue's waiting messages and consumers.
#[derive(Default)]
pub(crate) struct Queue {
    /// Owning connection of a temporary queue.
    owner: Option<ConnId>,
    pending: BTreeMap<EntryKey, Entry>,
    /// Bytes of the waiting messages ([`Message::size_bytes`]).
    pending_bytes: u64,
    /// Waiting messages by the value of each indexed property.
    index: BTreeMap<(Arc<str>, ByteString), BTreeSet<EntryKey>>,
    /// Properties that some consumer's equality selector uses, with consumer counts.
    indexed_props: BTreeMap<Arc<str>, usize>,
    /// Direct consumers (not wildcard) keep the queue alive.
    direct: usize,
    /// Consumers that are not network subscriptions.
    local_consumers: usize,
    consumers: BTreeSet<SubKey>,
    eq_consumers: BTreeMap<(Arc<str>, ByteString), BTreeSet<SubKey>>,
    other_consumers: BTreeSet<SubKey>,
    exclusive: BTreeSet<SubKey>,
    groups: BTreeMap<ByteString, SubKey>,
    /// Waiting messages with an expiry, by expiry.
    expiries: BTreeSet<(u64, EntryKey)>,
    expiry_armed_ms: Option<u64>,
    /// A durable subscription's queue: it lives as long as the subscription, consumer or
    /// not.
    durable: bool,
    /// An exclusive auto-delete subscription queue (RabbitMQ's, for a subscription to an
    /// exchange): it goes with its subscription, so nothing in it is ever stored.
    pub(in crate::core) transient: bool,
}

impl Broker {
    /// Messages `queue` holds: waiting, and delivered but not yet acknowledged.
    pub(crate) fn queue_len(&self, queue: &QueueKey) -> usize {
        self.queues.get(queue).map_or(0, Queue::pending_len)
            + self.inflight.get(queue).copied().unwrap_or(0)
    }

    /// One delivery from `queue` was acknowledged, refused or taken back.
    pub(super) fn settle_inflight(&mut self, queue: &QueueKey) {
        if let Some(n) = self.inflight.get_mut(queue) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.inflight.remove(queue);
            }
        }
    }
}

impl Queue {
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    pub(crate) fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    fn insert(&mut self, key: EntryKey, entry: Entry) {
        for (prop, _) in self.indexed_props.iter() {
            if let Some(v) = entry.message.headers.get_shared(prop) {
                self.index
                    .entry((prop.clone(), v.clone()))
                    .or_default()
                    .insert(key);
            }
        }
        if let Some(e) = entry.message.expires_ms {
            self.expiries.insert((e, key));
        }
        self.pending_bytes += entry.message.size_bytes();
        self.pending.insert(key, entry);
    }

    fn take(&mut self, key: EntryKey) -> Option<Entry> {
        let entry = self.pending.remove(&key)?;
        self.pending_bytes = self
            .pending_bytes
            .saturating_sub(entry.message.size_bytes());
        for (prop, _) in self.indexed_props.iter() {
            if let Some(v) = entry.message.headers.get_shared(prop) {
                let k = (prop.clone(), v.clone());
                if let Some(set) = self.index.get_mut(&k) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.index.remove(&k);
                    }
                }
            }
        }
        if let Some(e) = entry.message.expires_ms {
            self.expiries.remove(&(e, key));
        }
        Some(entry)
    }

    fn add_indexed_prop(&mut self, prop: &Arc<str>) {
        let count = self.indexed_props.entry(prop.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            for (key, entry) in &self.pending {
                if let Some(v) = entry.message.headers.get_shared(prop) {
                    self.index
                        .entry((prop.clone(), v.clone()))
                        .or_default()
                        .insert(*key);
                }
            }
        }
    }

    fn remove_indexed_prop(&mut self, prop: &Arc<str>) {
        if let Some(count) = self.indexed_props.get_mut(prop) {
            *count -= 1;
            if *count == 0 {
                self.indexed_props.remove(prop);
                self.index.retain(|(p, _), _| p != prop);
            }
        }
    }

    fn exclusive_owner(&self) -> Option<SubKey> {
        self.exclusive.first().copied()
    }

    fn is_collectable(&self) -> bool {
        self.owner.is_none() && self.direct == 0 && self.pending.is_empty() && !self.durable
    }
}

/// Topic subscriptions: exact names in a map, wildcard patterns in a list.
#[derive(Default)]
pub(crate) struct TopicIndex {
    exact: BTreeMap<QueueKey, BTreeSet<SubKey>>,
    wildcards: BTreeSet<SubKey>,
}

/// A parsed ACK/NACK target.
struct AckTarget {
    sub: SubKey,
    tag: u64,
}

fn is_wildcard_key(key: &QueueKey) -> bool {
    crate::destination::is_wildcard(&key.name)
}

/// Whether `key` is a durable subscription's internal queue (no client can name one: see
/// [`crate::store::durable_queue_name`]); queue wildcards never match them.
pub(super) fn is_durable_queue(key: &QueueKey) -> bool {
    key.kind == crate::destination::Kind::Queue && key.name.contains(',')
}
