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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use super::ids::{ConnId, EntryKey, QueueKey, SubKey};
use super::interbroker::{Action, AdvisoryFeed, NetworkSub, is_advisory, parse_path};
use super::interbroker_headers::{
    ADVISORY_REPLAY, BROKER_PATH_HEADER, NETWORK_BROKER, ORIGIN_ID_HEADER,
};
use super::message::{CONSUMED_SEND_HEADERS, DEFAULT_PRIORITY, Delivery, DropReason, Message};
use super::session::{Conn, FrameError, FrameResult, Unflushed, fatal};
use super::transaction::{AckKind, TxOp};
use super::{Broker, OutFrame, Output, SharedMessage, Timer};
use crate::destination::{Destination, Kind, Pattern};
use crate::proto::{AckMode, Frame, Headers, Version};
use crate::security::Operation;
use crate::selector::Selector;

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
        if self.pattern.is_some() {
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
}

impl Queue {
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
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
        self.pending.insert(key, entry);
    }

    fn take(&mut self, key: EntryKey) -> Option<Entry> {
        let entry = self.pending.remove(&key)?;
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
        self.owner.is_none() && self.direct == 0 && self.pending.is_empty()
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

impl Broker {
    // ----- SEND -------------------------------------------------------------------------

    pub(super) fn on_send(&mut self, conn_id: ConnId, frame: Frame) -> FrameResult {
        let Some(dest_text) = frame.headers.get("destination") else {
            return fatal("SEND frame has no destination header");
        };
        let dest = Destination::parse(dest_text).map_err(|e| FrameError::Fatal(e.to_string()))?;
        if dest.is_wildcard() {
            return fatal(format!(
                "cannot send to a wildcard destination: {dest_text}"
            ));
        }
        let key = self.resolve(conn_id, &dest)?;
        self.authorize_use(conn_id, Operation::Write, &key)?;
        let tx = frame.headers.get_shared("transaction").cloned();
        let message = Arc::new(self.build_message(conn_id, &key, frame.headers, frame.body)?);
        if self.is_network_duplicate(&message) {
            return Ok(());
        }
        match tx {
            Some(tx) => self.buffer_tx(conn_id, &tx, TxOp::Send(key, message)),
            None => self.route(key, message),
        }
    }

    fn build_message(
        &mut self,
        conn_id: ConnId,
        key: &QueueKey,
        mut headers: Headers,
        body: bytes::Bytes,
    ) -> Result<Message, FrameError> {
        let priority = match headers.get("priority") {
            None => DEFAULT_PRIORITY,
            Some(p) => match p.trim().parse::<i64>() {
                Ok(n) => n.clamp(0, 9) as u8,
                Err(_) => return fatal(format!("invalid priority header: '{p}'")),
            },
        };
        let expires_ms = match headers.get("expires") {
            None => None,
            Some(e) => match e.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => return fatal(format!("invalid expires header: '{e}'")),
            },
        };
        let persistent = headers.get("persistent") == Some("true");
        let path = headers
            .get(BROKER_PATH_HEADER)
            .map(parse_path)
            .unwrap_or_default();
        let origin_id = headers.get_shared(ORIGIN_ID_HEADER).cloned();
        // Rewrite a reply-to naming this connection's temporary destination into the
        // broker-wide name others can send to.
        if let Some(reply_to) = headers.get("reply-to").map(str::to_owned)
            && let Ok(d) = Destination::parse(&reply_to)
            && d.kind.is_temporary()
            && !d.remote
        {
            let internal = self.temp_name(conn_id, d.kind, &d.name);
            let rewritten = format!("{}{}", d.kind.remote_prefix(), internal);
            headers.remove("reply-to");
            headers.push("reply-to", rewritten);
        }
        for name in CONSUMED_SEND_HEADERS {
            if headers.contains(name) {
                headers.remove(name);
            }
        }
        Ok(Message::new(
            self.message_id(),
            Destination::new(key.kind, key.name.clone()),
            ByteString::from(key.display()),
            headers,
            body,
            priority,
            expires_ms,
            persistent,
            Some(conn_id),
        )
        .with_network(path, origin_id))
    }

    /// Delivers or stores a message sent to `key`.
    pub(super) fn route(&mut self, key: QueueKey, message: SharedMessage) -> FrameResult {
        self.stats.messages_received += 1;
        if self.config.test_drop_send_number == Some(self.stats.messages_received) {
            // The test hook: lose this message without a trace, as a bug would.
            return Ok(());
        }
        if message.is_expired(self.now_ms) {
            self.stats.messages_expired += 1;
            self.record_drop(&message, DropReason::Expired);
            return Ok(());
        }
        if key.kind.is_queue() {
            self.ensure_queue(&key)?;
            let queue = self.queues.get(&key).map(Queue::pending_len).unwrap_or(0);
            let entry_key = self.entry_key(&message);
            let delivered = self.offer(&key, entry_key, &message, 0);
            if !delivered {
                if queue >= self.config.limits.queue_messages_max {
                    self.stats.sends_refused += 1;
                    self.record_drop(&message, DropReason::Refused);
                    self.collect_queue(&key);
                    return Err(FrameError::Refused(format!(
                        "queue {} is full (limits.queue_messages_max = {})",
                        key.display(),
                        self.config.limits.queue_messages_max
                    )));
                }
                self.store(&key, entry_key, message, 0);
            }
            Ok(())
        } else {
            self.publish(&key, &message);
            Ok(())
        }
    }

    fn entry_key(&mut self, message: &Message) -> EntryKey {
        self.next_entry += 1;
        EntryKey {
            rank: 9 - message.priority.min(9),
            seq: self.next_entry,
        }
    }

    fn store(
        &mut self,
        key: &QueueKey,
        entry_key: EntryKey,
        message: SharedMessage,
        redeliveries: u32,
    ) {
        let expires = message.expires_ms;
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        queue.insert(
            entry_key,
            Entry {
                message,
                redeliveries,
            },
        );
        if let Some(e) = expires
            && queue.expiry_armed_ms.is_none_or(|armed| e < armed)
        {
            queue.expiry_armed_ms = Some(e);
            self.set_timer(e, Timer::Expiry(key.clone()));
        }
    }

    /// Tries to hand a message to a ready consumer of queue `key` right away.
    fn offer(
        &mut self,
        key: &QueueKey,
        entry_key: EntryKey,
        message: &SharedMessage,
        redeliveries: u32,
    ) -> bool {
        let Some(sub) = self.choose_consumer(key, message) else {
            return false;
        };
        self.deliver_queued(key, entry_key, message.clone(), redeliveries, sub);
        true
    }

    fn choose_consumer(&mut self, key: &QueueKey, message: &Message) -> Option<SubKey> {
        let max = self.config.limits.outbound_frames_max;
        let queue = self.queues.get(key)?;
        let has_local = queue.local_consumers > 0;
        let ready_and_selects = |s: SubKey| {
            self.subs.get(&s).is_some_and(|sub| {
                sub.is_ready(&self.conns, max)
                    && sub.selects(message)
                    && sub.network_accepts(message, has_local)
            })
        };
        if let Some(owner) = queue.exclusive_owner() {
            return ready_and_selects(owner).then_some(owner);
        }
        if let Some(group) = &message.group
            && let Some(owner) = queue.groups.get(group)
        {
            return ready_and_selects(*owner).then_some(*owner);
        }
        let mut best: Option<(i32, u64, SubKey)> = None;
        let mut consider = |s: SubKey, check_selector: bool| {
            let Some(sub) = self.subs.get(&s) else {
                return;
            };
            if !sub.is_ready(&self.conns, max)
                || (check_selector && !sub.selects(message))
                || !sub.network_accepts(message, has_local)
            {
                return;
            }
            let rank = (-sub.priority, sub.last_dispatch, s);
            if best.is_none_or(|b| rank < b) {
                best = Some(rank);
            }
        };
        for (prop, _) in queue.indexed_props.iter() {
            if let Some(v) = message.headers.get_shared(prop)
                && let Some(set) = queue.eq_consumers.get(&(prop.clone(), v.clone()))
            {
                for s in set {
                    consider(*s, false);
                }
            }
        }
        for s in &queue.other_consumers {
            consider(*s, true);
        }
        let chosen = best.map(|(_, _, s)| s)?;
        if let Some(group) = &message.group
            && let Some(queue) = self.queues.get_mut(key)
        {
            queue.groups.insert(group.clone(), chosen);
        }
        Some(chosen)
    }

    fn deliver_queued(
        &mut self,
        queue: &QueueKey,
        entry_key: EntryKey,
        message: SharedMessage,
        redeliveries: u32,
        sub_key: SubKey,
    ) {
        let unflushed = {
            let Some(sub) = self.subs.get(&sub_key) else {
                return;
            };
            (sub.ack == AckMode::Auto).then(|| Unflushed {
                queue: queue.clone(),
                key: entry_key,
                message: message.clone(),
                redeliveries,
            })
        };
        let origin = Origin::Queue {
            queue: queue.clone(),
            key: entry_key,
        };
        self.deliver(sub_key, message, origin, redeliveries, unflushed);
    }

    /// Emits one MESSAGE for `sub_key` and records what acknowledging it will need.
    fn deliver(
        &mut self,
        sub_key: SubKey,
        message: SharedMessage,
        origin: Origin,
        redeliveries: u32,
        unflushed: Option<Unflushed>,
    ) {
        self.next_delivery += 1;
        self.dispatch_clock += 1;
        let tag = self.next_delivery;
        let clock = self.dispatch_clock;
        let Some(sub) = self.subs.get_mut(&sub_key) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&sub.conn) else {
            return;
        };
        sub.last_dispatch = clock;
        let client_mode = sub.ack != AckMode::Auto;
        let ack = (client_mode && conn.version == Version::V1_2).then_some(tag);
        let (broker_path, origin_id) = match &sub.network {
            Some(_) => (
                Some(message.forward_path(&self.config.broker_name)),
                Some(
                    message
                        .origin_id
                        .clone()
                        .unwrap_or_else(|| message.id.clone()),
                ),
            ),
            None => (message.path_text().cloned(), None),
        };
        if sub.network.is_some() {
            self.stats.messages_forwarded += 1;
        }
        let delivery = Delivery {
            destination: sub.delivery_destination(&message),
            message: message.clone(),
            subscription: sub.id_header.clone(),
            ack,
            redelivered: redeliveries > 0,
            broker_path,
            origin_id,
        };
        if client_mode {
            sub.unacked.push_back(Unacked {
                tag,
                message,
                origin,
                redeliveries,
            });
            conn.tags.insert(tag, sub_key);
        }
        let conn_id = sub.conn;
        self.stats.messages_delivered += 1;
        if redeliveries > 0 {
            self.stats.messages_redelivered += 1;
        }
        self.emit_tracked(conn_id, OutFrame::Message(delivery), unflushed);
    }

    /// Delivers an advisory to an advisory subscription.
    pub(super) fn deliver_advisory(&mut self, sub_key: SubKey, message: SharedMessage) {
        self.deliver(sub_key, message, Origin::Topic, 0, None);
    }

    /// Fans a topic message out to every matching subscription.
    fn publish(&mut self, key: &QueueKey, message: &SharedMessage) {
        let mut targets: Vec<SubKey> = self
            .topics
            .exact
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if key.kind == Kind::Topic {
            for s in &self.topics.wildcards {
                if let Some(sub) = self.subs.get(s)
                    && sub.pattern.as_ref().is_some_and(|p| p.matches(&key.name))
                {
                    targets.push(*s);
                }
            }
        }
        let mut slow: Vec<ConnId> = Vec::new();
        for s in targets {
            let Some(sub) = self.subs.get(&s) else {
                continue;
            };
            if sub.no_local && message.origin_conn == Some(sub.conn) {
                continue;
            }
            if !sub.selects(message) || !sub.network_accepts(message, true) {
                continue;
            }
            let takes = self.conns.get(&sub.conn).is_some_and(|c| {
                c.takes_topic_message(
                    &self.config.limits,
                    self.config.slow_consumer_grace_ms,
                    self.now_ms,
                )
            });
            let under_prefetch = sub.ack == AckMode::Auto || sub.unacked.len() < sub.prefetch;
            if takes && under_prefetch {
                self.deliver(s, message.clone(), Origin::Topic, 0, None);
            } else {
                self.stats.messages_dropped_slow += 1;
                let conn = sub.conn;
                self.record_drop(message, DropReason::SlowConsumer);
                if self.config.slow_consumer_policy == super::SlowConsumerPolicy::Disconnect
                    && !slow.contains(&conn)
                {
                    slow.push(conn);
                }
            }
        }
        for conn in slow {
            self.stats.slow_consumer_disconnects += 1;
            let msg = format!(
                "slow consumer: more than {} frames waited to be read for over {} ms \
                 (limits.outbound_frames_max, slow_consumer_grace_ms)",
                self.config.limits.outbound_frames_max, self.config.slow_consumer_grace_ms
            );
            self.error_and_close(conn, &msg, None, "the slow-consumer policy is disconnect");
        }
    }

    // ----- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------

    pub(super) fn on_subscribe(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let h = &frame.headers;
        let Some(dest_text) = h.get_shared("destination").cloned() else {
            return fatal("SUBSCRIBE frame has no destination header");
        };
        let Some(conn) = self.conns.get(&conn_id) else {
            return Ok(());
        };
        let version = conn.version;
        let id_header = h.get_shared("id").cloned();
        if id_header.is_none() && version != Version::V1_0 {
            return fatal("SUBSCRIBE frame has no id header (required since STOMP 1.1)");
        }
        let client_id = id_header.clone().unwrap_or_else(|| dest_text.clone());
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
        let ack = match h.get("ack") {
            None => AckMode::Auto,
            Some(value) => match AckMode::parse(value) {
                Some(mode) => mode,
                None => return fatal(format!("invalid ack mode '{value}'")),
            },
        };
        let dest = Destination::parse(&dest_text).map_err(|e| FrameError::Fatal(e.to_string()))?;
        let wildcard = dest.is_wildcard();
        if wildcard && dest.kind.is_temporary() {
            return fatal("wildcards are not allowed on temporary destinations");
        }
        let selector = match h.get("selector") {
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) => {
                Some(Selector::parse(text).map_err(|e| FrameError::Fatal(e.to_string()))?)
            }
        };
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
        let default_prefetch = if dest.kind.is_queue() {
            self.config.queue_prefetch_default
        } else {
            self.config.topic_prefetch_default
        };
        let prefetch = match h.get("activemq.prefetchSize") {
            None => default_prefetch,
            Some(p) => match p.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => return fatal(format!("invalid activemq.prefetchSize '{p}' (must be > 0)")),
            },
        }
        .min(self.config.limits.prefetch_max);
        let priority = match h.get("activemq.priority") {
            None => 0,
            Some(p) => p
                .trim()
                .parse::<i32>()
                .map_err(|_| FrameError::Fatal(format!("invalid activemq.priority '{p}'")))?,
        };
        let network = NetworkSub::parse(h, &self.config.broker_name)?;
        let advisory = is_advisory(&key);
        let eq = selector.as_ref().and_then(|s| {
            s.equality()
                .map(|(p, v)| (Arc::<str>::from(p), ByteString::from(v)))
        });
        self.next_sub += 1;
        let sub_key = SubKey(self.next_sub);
        let sub = Subscription {
            conn: conn_id,
            client_id: client_id.clone(),
            id_header,
            dest_text,
            dest: key.clone(),
            pattern: wildcard.then(|| Pattern::new(&dest.name)),
            selector,
            eq,
            ack,
            prefetch,
            priority,
            exclusive: h.get("activemq.exclusive") == Some("true"),
            no_local: h.get("activemq.noLocal") == Some("true"),
            unacked: VecDeque::new(),
            last_dispatch: 0,
            queues: BTreeSet::new(),
            network,
            advisory: None,
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
        if key.kind.is_queue() {
            if wildcard {
                self.queue_wildcard_subs.insert(sub_key);
                let matching: Vec<QueueKey> = self
                    .queues
                    .keys()
                    .filter(|q| q.kind == Kind::Queue && Pattern::new(&key.name).matches(&q.name))
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
    fn attach(&mut self, sub_key: SubKey, key: &QueueKey, direct: bool) {
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

    fn detach(&mut self, sub_key: SubKey, key: &QueueKey) {
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

    pub(super) fn on_unsubscribe(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let h = &frame.headers;
        let Some(conn) = self.conns.get(&conn_id) else {
            return Ok(());
        };
        let sub_key = if let Some(id) = h.get("id") {
            conn.subs.get(id).copied()
        } else if let Some(dest) = h.get("destination") {
            // STOMP 1.0: by destination; the first subscription to it.
            conn.subs.get(dest).copied().or_else(|| {
                conn.subs
                    .values()
                    .copied()
                    .find(|s| self.subs.get(s).is_some_and(|sub| sub.dest_text == dest))
            })
        } else {
            return fatal("UNSUBSCRIBE frame needs an id (or, in STOMP 1.0, a destination) header");
        };
        let Some(sub_key) = sub_key else {
            let what = h
                .get("id")
                .or_else(|| h.get("destination"))
                .unwrap_or_default();
            return Err(FrameError::Refused(format!(
                "no subscription '{what}' to unsubscribe"
            )));
        };
        self.remove_subscription(sub_key);
        Ok(())
    }

    /// Removes a subscription; its unacknowledged queue messages are redelivered.
    pub(super) fn remove_subscription(&mut self, sub_key: SubKey) {
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
        self.network_subs -= usize::from(sub.network.is_some());
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.subs.remove(&client_id);
            for u in &sub.unacked {
                conn.tags.remove(&u.tag);
            }
        }
        for u in sub.unacked.drain(..) {
            if let Origin::Queue { queue, key } = u.origin {
                self.requeue(queue, key, u.message, u.redeliveries + 1);
            }
        }
        for q in &queues {
            self.collect_queue(q);
        }
    }

    // ----- ACK / NACK -------------------------------------------------------------------

    pub(super) fn on_ack(&mut self, conn_id: ConnId, frame: &Frame, nack: bool) -> FrameResult {
        let target = self.find_ack_target(conn_id, frame)?;
        let kind = if nack {
            AckKind::Nack {
                requeue: frame.headers.get("requeue") != Some("false"),
            }
        } else {
            AckKind::Ack
        };
        if let Some(tx) = frame.headers.get_shared("transaction").cloned() {
            return self.buffer_tx(
                conn_id,
                &tx,
                TxOp::Ack {
                    sub: target.sub,
                    tag: target.tag,
                    kind,
                },
            );
        }
        self.apply_ack(target.sub, target.tag, kind);
        Ok(())
    }

    fn find_ack_target(&self, conn_id: ConnId, frame: &Frame) -> Result<AckTarget, FrameError> {
        let h = &frame.headers;
        let Some(conn) = self.conns.get(&conn_id) else {
            return fatal("unknown connection");
        };
        let what = frame.command;
        if conn.version == Version::V1_2 {
            let Some(id) = h.get("id") else {
                return fatal(format!("{what} frame has no id header (STOMP 1.2)"));
            };
            let tag = id.parse::<u64>().ok();
            if let Some(tag) = tag
                && let Some(sub) = conn.tags.get(&tag)
            {
                return Ok(AckTarget { sub: *sub, tag });
            }
            return Err(FrameError::Refused(format!(
                "{what} for id '{id}', which is not an unacknowledged message of this session"
            )));
        }
        let Some(message_id) = h.get("message-id") else {
            return fatal(format!("{what} frame has no message-id header"));
        };
        let only_sub = h
            .get("subscription")
            .and_then(|s| conn.subs.get(s))
            .copied();
        let candidates: Vec<SubKey> = match only_sub {
            Some(s) => vec![s],
            None => conn.subs.values().copied().collect(),
        };
        for s in candidates {
            if let Some(sub) = self.subs.get(&s)
                && let Some(u) = sub.unacked.iter().find(|u| &*u.message.id == message_id)
            {
                return Ok(AckTarget { sub: s, tag: u.tag });
            }
        }
        Err(FrameError::Refused(format!(
            "{what} for message-id '{message_id}', which is not an unacknowledged message of this session"
        )))
    }

    /// Acknowledges (or refuses, for NACK) the delivery `tag` of subscription `sub_key`.
    /// In `client` mode an ACK also acknowledges every earlier delivery.
    fn apply_ack(&mut self, sub_key: SubKey, tag: u64, kind: AckKind) {
        let Some(sub) = self.subs.get_mut(&sub_key) else {
            return;
        };
        let Some(pos) = sub.unacked.iter().position(|u| u.tag == tag) else {
            return;
        };
        let removed: Vec<Unacked> = if sub.ack == AckMode::Client && kind == AckKind::Ack {
            sub.unacked.drain(..=pos).collect()
        } else {
            sub.unacked.remove(pos).into_iter().collect()
        };
        if let Some(conn) = self.conns.get_mut(&sub.conn) {
            for u in &removed {
                conn.tags.remove(&u.tag);
            }
        }
        if let AckKind::Nack { requeue } = kind {
            for u in removed {
                if let Origin::Queue { queue, key } = u.origin {
                    if requeue {
                        self.requeue(queue, key, u.message, u.redeliveries + 1);
                    } else {
                        self.dead_letter(&queue, &u.message);
                    }
                }
            }
        }
        self.pending_drains.push(sub_key);
    }

    // ----- Transactions -----------------------------------------------------------------

    fn tx_header(frame: &Frame) -> Result<ByteString, FrameError> {
        frame
            .headers
            .get_shared("transaction")
            .cloned()
            .ok_or_else(|| {
                FrameError::Fatal(format!("{} frame has no transaction header", frame.command))
            })
    }

    pub(super) fn on_begin(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let tx = Self::tx_header(frame)?;
        let max = self.config.limits.transactions_per_connection_max;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Ok(());
        };
        if conn.txs.contains_key(&tx) {
            return fatal(format!("transaction '{tx}' is already open"));
        }
        if conn.txs.len() >= max {
            return fatal(format!(
                "too many open transactions (limits.transactions_per_connection_max = {max})"
            ));
        }
        conn.txs.insert(tx, Vec::new());
        Ok(())
    }

    fn buffer_tx(&mut self, conn_id: ConnId, tx: &ByteString, op: TxOp) -> FrameResult {
        let max = self.config.limits.transaction_frames_max;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Ok(());
        };
        let Some(ops) = conn.txs.get_mut(tx) else {
            return fatal(format!("transaction '{tx}' is not open"));
        };
        if ops.len() >= max {
            return fatal(format!(
                "transaction '{tx}' is too large (limits.transaction_frames_max = {max})"
            ));
        }
        ops.push(op);
        Ok(())
    }

    pub(super) fn on_commit(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let tx = Self::tx_header(frame)?;
        let Some(ops) = self.conns.get_mut(&conn_id).and_then(|c| c.txs.remove(&tx)) else {
            return fatal(format!("transaction '{tx}' is not open"));
        };
        let mut refused = Vec::new();
        for op in ops {
            match op {
                TxOp::Send(key, message) => {
                    if let Err(FrameError::Refused(m) | FrameError::Fatal(m)) =
                        self.route(key, message)
                    {
                        refused.push(m);
                    }
                }
                TxOp::Ack { sub, tag, kind } => self.apply_ack(sub, tag, kind),
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Refused(format!(
                "transaction '{tx}' committed, but {} message(s) were refused: {}",
                refused.len(),
                refused.join("; ")
            )))
        }
    }

    pub(super) fn on_abort(&mut self, conn_id: ConnId, frame: &Frame) -> FrameResult {
        let tx = Self::tx_header(frame)?;
        match self.conns.get_mut(&conn_id).and_then(|c| c.txs.remove(&tx)) {
            Some(_) => Ok(()),
            None => fatal(format!("transaction '{tx}' is not open")),
        }
    }

    // ----- Redelivery, expiry, draining -------------------------------------------------

    /// Puts a message back into its queue (at its old place), or dead-letters it after
    /// too many deliveries.
    pub(super) fn requeue(
        &mut self,
        key: QueueKey,
        entry_key: EntryKey,
        message: SharedMessage,
        redeliveries: u32,
    ) {
        if message.is_expired(self.now_ms) {
            self.stats.messages_expired += 1;
            self.record_drop(&message, DropReason::Expired);
            return;
        }
        if redeliveries > self.config.limits.redeliveries_max {
            self.dead_letter(&key, &message);
            return;
        }
        if key.kind == Kind::TempQueue && !self.queues.contains_key(&key) {
            // The temporary queue died with its owner.
            return;
        }
        if self.ensure_queue(&key).is_err() {
            return;
        }
        if !self.offer(&key, entry_key, &message, redeliveries) {
            self.store(&key, entry_key, message, redeliveries);
        }
    }

    fn dead_letter(&mut self, from: &QueueKey, message: &Message) {
        self.stats.messages_dead_lettered += 1;
        let dlq = QueueKey::queue(&self.config.dead_letter_queue);
        let mut headers = message.headers.clone();
        headers.push("original-destination", from.display());
        let copy = Message::new(
            message.id.clone(),
            Destination::new(Kind::Queue, dlq.name.clone()),
            ByteString::from(dlq.display()),
            headers,
            message.body.clone(),
            message.priority,
            message.expires_ms,
            message.persistent,
            None,
        )
        .with_network(message.broker_path.to_vec(), message.origin_id.clone());
        if self.ensure_queue(&dlq).is_ok() {
            let copy = Arc::new(copy);
            self.record_drop(&copy, DropReason::DeadLettered);
            let entry_key = self.entry_key(&copy);
            if !self.offer(&dlq, entry_key, &copy, 0) {
                self.store(&dlq, entry_key, copy, 0);
            }
        }
    }

    pub(super) fn expire_queue(&mut self, now_ms: u64, key: &QueueKey) {
        self.now_ms = now_ms;
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        queue.expiry_armed_ms = None;
        let mut expired = 0;
        while let Some(&(at, entry_key)) = queue.expiries.first() {
            if at > now_ms {
                break;
            }
            if let Some(entry) = queue.take(entry_key)
                && self.config.record_drops
            {
                self.dropped.push((entry.message, DropReason::Expired));
            }
            expired += 1;
        }
        self.stats.messages_expired += expired;
        let next = queue.expiries.first().map(|(at, _)| *at);
        if let Some(at) = next {
            queue.expiry_armed_ms = Some(at);
            self.set_timer(at, Timer::Expiry(key.clone()));
        }
        self.collect_queue(key);
    }

    /// Gives every subscription that became ready the waiting messages it can take.
    pub(super) fn run_drains(&mut self) {
        while let Some(sub_key) = self.pending_drains.pop() {
            self.drain(sub_key);
        }
    }

    fn drain(&mut self, sub_key: SubKey) {
        let max = self.config.limits.outbound_frames_max;
        let Some(sub) = self.subs.get(&sub_key) else {
            return;
        };
        if sub.advisory.is_some() {
            self.drain_advisories(sub_key);
            return;
        }
        let queues: Vec<QueueKey> = sub.queues.iter().cloned().collect();
        for q in queues {
            loop {
                let Some(sub) = self.subs.get(&sub_key) else {
                    return;
                };
                if !sub.is_ready(&self.conns, max) {
                    return;
                }
                let Some(entry_key) = self.next_for(sub_key, &q) else {
                    break;
                };
                let Some(queue) = self.queues.get_mut(&q) else {
                    break;
                };
                let Some(entry) = queue.take(entry_key) else {
                    break;
                };
                if let Some(group) = &entry.message.group {
                    queue.groups.entry(group.clone()).or_insert(sub_key);
                }
                if entry.message.is_expired(self.now_ms) {
                    self.stats.messages_expired += 1;
                    self.record_drop(&entry.message, DropReason::Expired);
                    continue;
                }
                self.deliver_queued(&q, entry_key, entry.message, entry.redeliveries, sub_key);
            }
            self.collect_queue(&q);
        }
    }

    /// The first waiting message of queue `q` that subscription `sub_key` may take.
    fn next_for(&self, sub_key: SubKey, q: &QueueKey) -> Option<EntryKey> {
        let sub = self.subs.get(&sub_key)?;
        let queue = self.queues.get(q)?;
        if queue.exclusive_owner().is_some_and(|o| o != sub_key) {
            return None;
        }
        // Messages of a group owned by another consumer are not ours to take. Entries in
        // the equality index already match the subscription's selector.
        let has_local = queue.local_consumers > 0;
        let allowed = |entry: &Entry| {
            let group_ok = entry
                .message
                .group
                .as_ref()
                .and_then(|g| queue.groups.get(g))
                .is_none_or(|owner| *owner == sub_key);
            group_ok
                && (sub.eq.is_some() || sub.selects(&entry.message))
                && sub.network_accepts(&entry.message, has_local)
        };
        if let Some(eq) = &sub.eq {
            let set = queue.index.get(eq)?;
            return set
                .iter()
                .find(|k| queue.pending.get(k).is_some_and(allowed))
                .copied();
        }
        queue
            .pending
            .iter()
            .find(|(_, e)| allowed(e))
            .map(|(k, _)| *k)
    }

    // ----- Destinations -----------------------------------------------------------------

    /// Resolves a parsed destination to the key the core uses, creating this connection's
    /// name for a temporary destination on first use.
    fn resolve(&mut self, conn_id: ConnId, dest: &Destination) -> Result<QueueKey, FrameError> {
        if dest.kind.is_temporary() && !dest.remote {
            let name = self.temp_name(conn_id, dest.kind, &dest.name);
            return Ok(QueueKey {
                kind: dest.kind,
                name,
            });
        }
        Ok(QueueKey {
            kind: dest.kind,
            name: dest.name.clone(),
        })
    }

    fn temp_name(&mut self, conn_id: ConnId, kind: Kind, local: &str) -> Arc<str> {
        let prefix = format!(
            "ID:{}-{}-{}",
            self.config.broker_name, self.incarnation, conn_id.0
        );
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Arc::from(format!("{prefix}:{local}"));
        };
        conn.temps
            .entry((kind, Arc::from(local)))
            .or_insert_with(|| Arc::from(format!("{prefix}:{local}")))
            .clone()
    }

    fn ensure_queue(&mut self, key: &QueueKey) -> FrameResult {
        if self.queues.contains_key(key) {
            return Ok(());
        }
        if self.queues.len() + self.topics.exact.len() >= self.config.limits.destinations_max {
            return Err(FrameError::Refused(format!(
                "cannot create {}: too many destinations (limits.destinations_max = {})",
                key.display(),
                self.config.limits.destinations_max
            )));
        }
        let owner = if key.kind == Kind::TempQueue {
            self.conns
                .iter()
                .find(|(_, c)| c.temps.values().any(|n| *n == key.name))
                .map(|(id, _)| *id)
        } else {
            None
        };
        if key.kind == Kind::TempQueue && owner.is_none() {
            return Err(FrameError::Refused(format!(
                "{} does not exist (its connection has closed)",
                key.display()
            )));
        }
        self.queues.insert(
            key.clone(),
            Queue {
                owner,
                ..Queue::default()
            },
        );
        if key.kind == Kind::Queue {
            let wild: Vec<SubKey> = self
                .queue_wildcard_subs
                .iter()
                .copied()
                .filter(|s| {
                    self.subs
                        .get(s)
                        .and_then(|sub| sub.pattern.as_ref())
                        .is_some_and(|p| p.matches(&key.name))
                })
                .collect();
            for s in wild {
                self.attach(s, key, false);
                self.pending_drains.push(s);
            }
        }
        Ok(())
    }

    /// Removes a queue that has no direct consumers and no waiting messages.
    pub(super) fn collect_queue(&mut self, key: &QueueKey) {
        let collectable = self.queues.get(key).is_some_and(Queue::is_collectable);
        if !collectable {
            return;
        }
        if let Some(queue) = self.queues.remove(key) {
            for s in queue.consumers {
                if let Some(sub) = self.subs.get_mut(&s) {
                    sub.queues.remove(key);
                }
            }
        }
    }

    pub(super) fn delete_temporary(&mut self, kind: Kind, internal: Arc<str>) {
        let key = QueueKey {
            kind,
            name: internal,
        };
        if kind == Kind::TempQueue {
            if let Some(queue) = self.queues.remove(&key) {
                for s in queue.consumers {
                    if let Some(sub) = self.subs.get_mut(&s) {
                        sub.queues.remove(&key);
                    }
                }
            }
        } else {
            let subs: Vec<SubKey> = self
                .topics
                .exact
                .get(&key)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for s in subs {
                self.remove_subscription(s);
            }
        }
    }

    /// Checks authorization for using `key`; creating a destination needs `admin` too.
    fn authorize_use(&mut self, conn_id: ConnId, op: Operation, key: &QueueKey) -> FrameResult {
        let Some(principal) = self.conns.get(&conn_id).and_then(|c| c.principal.as_ref()) else {
            return Ok(());
        };
        let exists = if key.kind.is_queue() {
            self.queues.contains_key(key)
        } else {
            self.topics.exact.contains_key(key)
        };
        let mut needed = vec![op];
        if !exists && !is_wildcard_key(key) {
            needed.push(Operation::Admin);
        }
        for op in needed {
            if !self.security.authorize(principal, op, key.kind, &key.name) {
                self.stats.sends_refused += u64::from(op == Operation::Write);
                return Err(FrameError::Refused(crate::security::denial_message(
                    principal,
                    op,
                    key.display(),
                )));
            }
        }
        Ok(())
    }

    /// Keeps `message` in the record of drops when `config.record_drops` is set.
    fn record_drop(&mut self, message: &SharedMessage, reason: DropReason) {
        if self.config.record_drops {
            self.dropped.push((message.clone(), reason));
        }
    }

    /// Every message the broker holds now: waiting in a queue, delivered and not yet
    /// acknowledged, written in `auto` mode but not yet reported flushed, or buffered in
    /// an open transaction. A simulator asks this when it crashes the broker, to know
    /// what the crash lost.
    pub fn held_messages(&self) -> Vec<SharedMessage> {
        let mut held: Vec<SharedMessage> = Vec::new();
        for q in self.queues.values() {
            held.extend(q.pending.values().map(|e| e.message.clone()));
        }
        for sub in self.subs.values() {
            held.extend(sub.unacked.iter().map(|u| u.message.clone()));
        }
        for conn in self.conns.values() {
            held.extend(conn.inflight.iter().flatten().map(|u| u.message.clone()));
            for ops in conn.txs.values() {
                for op in ops {
                    if let TxOp::Send(_, m) = op {
                        held.push(m.clone());
                    }
                }
            }
        }
        held
    }

    /// Takes the messages dropped on purpose since the last call (only recorded with
    /// `config.record_drops`).
    pub fn take_dropped(&mut self) -> Vec<(SharedMessage, DropReason)> {
        std::mem::take(&mut self.dropped)
    }

    /// Emits a frame and records, for auto-ack queue deliveries, what to redeliver if
    /// the connection dies before the frame is written.
    pub(super) fn emit_tracked(
        &mut self,
        conn_id: ConnId,
        frame: OutFrame,
        unflushed: Option<Unflushed>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.outbound_frames += 1;
        conn.last_sent_ms = self.now_ms;
        conn.inflight.push_back(unflushed);
        if conn.behind_since_ms.is_none() && !conn.has_room(self.config.limits.outbound_frames_max)
        {
            conn.behind_since_ms = Some(self.now_ms);
        }
        self.outputs.push_back(Output::Send {
            conn: conn_id,
            version: conn.version,
            frame,
        });
    }
}

fn is_wildcard_key(key: &QueueKey) -> bool {
    crate::destination::is_wildcard(&key.name)
}
