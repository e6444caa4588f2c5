//! SEND: building the message, routing it to a queue (priority order, the
//! equality index, exclusive consumers, message groups, prefetch) or publishing it to a
//! topic (exact and wildcard subscriptions, the slow-consumer policy).

use std::sync::Arc;

use bytestring::ByteString;

use super::{Entry, Origin, Unacked};
use crate::core::ids::{ConnId, EntryKey, QueueKey, SubKey};
use crate::core::interbroker::parse_path;
use crate::core::interbroker_headers::{BROKER_PATH_HEADER, ORIGIN_ID_HEADER};
use crate::core::message::{CONSUMED_SEND_HEADERS, Delivery, DropReason, Message};
use crate::core::request::SendRequest;
use crate::core::session::{FrameError, FrameResult, Unflushed};
use crate::core::transaction::TxOp;
use crate::core::{Broker, OutFrame, SharedMessage, Timer};
use crate::destination::{Destination, Kind};
use crate::proto::{AckMode, Frame, Headers, Version};
use crate::security::Operation;

impl Broker {
    pub(in crate::core) fn on_send(&mut self, conn_id: ConnId, frame: Frame) -> FrameResult {
        let routed = self.routed.take();
        let mut request = SendRequest::parse(&frame)?;
        if routed.as_ref().is_some_and(|r| r.discard) {
            self.stats.messages_discarded += 1;
            return Ok(());
        }
        request.display = routed.map(|r| r.display);
        let key = self.resolve(conn_id, &request.destination)?;
        self.authorize_use(conn_id, Operation::Write, &key)?;
        let message = Arc::new(
            self.build_message(conn_id, &key, &request, frame.headers, frame.body)
                .charged(&self.memory),
        );
        if self.is_network_duplicate(&message) {
            return Ok(());
        }
        match request.transaction {
            Some(tx) => self.buffer_tx(conn_id, &tx, TxOp::Send(key, message)),
            None => self.route(key, message),
        }
    }

    /// The message a checked SEND makes: its headers kept (less those the broker
    /// consumes), a reply-to naming this connection's temporary destination rewritten.
    pub(super) fn build_message(
        &mut self,
        conn_id: ConnId,
        key: &QueueKey,
        request: &SendRequest,
        mut headers: Headers,
        body: bytes::Bytes,
    ) -> Message {
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
        let persist_id = self.next_persist_id(persistent && !key.kind.is_temporary());
        Message::new(
            self.message_id(),
            Destination::new(key.kind, key.name.clone()),
            request
                .display
                .clone()
                .unwrap_or_else(|| ByteString::from(key.display())),
            headers,
            body,
            request.priority,
            request.expires_ms,
            persistent,
            Some(conn_id),
        )
        .with_network(path, origin_id)
        .with_persist_id(persist_id)
    }

    /// Delivers or stores a message sent to `key`.
    pub(in crate::core) fn route(&mut self, key: QueueKey, message: SharedMessage) -> FrameResult {
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
            let queue = self.queue_len(&key);
            let entry_key = self.entry_key(&message);
            // On disk before any consumer can acknowledge it.
            self.persist_enqueue(&message, std::slice::from_ref(&key));
            let delivered = self.offer(&key, entry_key, &message, 0);
            if !delivered {
                if queue >= self.config.limits.queue_messages_max {
                    self.persist_ack(&key, &message);
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
            self.publish_durable(&key, &message);
            Ok(())
        }
    }

    pub(super) fn entry_key(&mut self, message: &Message) -> EntryKey {
        self.next_entry += 1;
        EntryKey {
            rank: 9 - message.priority.min(9),
            seq: self.next_entry,
        }
    }

    pub(super) fn store(
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
    pub(super) fn offer(
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

    pub(super) fn choose_consumer(&mut self, key: &QueueKey, message: &Message) -> Option<SubKey> {
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
        let (mut considered, mut selectors) = (0u64, 0u64);
        let mut consider = |s: SubKey, check_selector: bool| {
            let Some(sub) = self.subs.get(&s) else {
                return;
            };
            considered += 1;
            if check_selector && sub.selector.is_some() {
                selectors += 1;
            }
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
        self.work.subscriptions_matched += considered;
        self.work.selectors_evaluated += selectors;
        let chosen = best.map(|(_, _, s)| s)?;
        if let Some(group) = &message.group
            && let Some(queue) = self.queues.get_mut(key)
        {
            queue.groups.insert(group.clone(), chosen);
        }
        Some(chosen)
    }

    pub(super) fn deliver_queued(
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
    pub(super) fn deliver(
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
            self.work.bridge_hops += 1;
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
            if let Origin::Queue { queue, .. } = &origin {
                *self.inflight.entry(queue.clone()).or_insert(0) += 1;
            }
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
        self.work.deliveries += 1;
        if redeliveries > 0 {
            self.stats.messages_redelivered += 1;
        }
        self.emit_tracked(conn_id, OutFrame::Message(delivery), unflushed);
    }

    /// Delivers an advisory to an advisory subscription.
    pub(in crate::core) fn deliver_advisory(&mut self, sub_key: SubKey, message: SharedMessage) {
        self.deliver(sub_key, message, Origin::Topic, 0, None);
    }

    /// Fans a topic message out to every matching subscription.
    pub(super) fn publish(&mut self, key: &QueueKey, message: &SharedMessage) {
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
        self.work.subscriptions_matched += targets.len() as u64;
        for s in targets {
            let Some(sub) = self.subs.get(&s) else {
                continue;
            };
            if sub.no_local && message.origin_conn == Some(sub.conn) {
                continue;
            }
            if sub.selector.is_some() {
                self.work.selectors_evaluated += 1;
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
                if self.config.slow_consumer_policy == crate::core::SlowConsumerPolicy::Disconnect
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
}
