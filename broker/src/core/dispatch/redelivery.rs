//! Redelivery (and the dead-letter queue), expiry, and draining waiting messages to
//! consumers that became ready.

use std::sync::Arc;

use bytestring::ByteString;

use super::Entry;
use crate::core::ids::{EntryKey, QueueKey, SubKey};
use crate::core::message::{DropReason, Message};
use crate::core::{Broker, SharedMessage, Timer};
use crate::destination::{Destination, Kind};

impl Broker {
    /// Puts a message back into its queue (at its old place), or dead-letters it after
    /// too many deliveries.
    pub(in crate::core) fn requeue(
        &mut self,
        key: QueueKey,
        entry_key: EntryKey,
        message: SharedMessage,
        redeliveries: u32,
    ) {
        if message.is_expired(self.now_ms) {
            self.stats.messages_expired += 1;
            self.record_drop(&message, DropReason::Expired);
            self.persist_ack(&key, &message);
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

    pub(super) fn dead_letter(&mut self, from: &QueueKey, message: &Message) {
        self.persist_ack(from, message);
        let Some(dlq) = self.dead_letter_queue_for(from.kind, &from.name) else {
            // A RabbitMQ-convention vhost: dropped, as RabbitMQ drops it.
            self.stats.messages_discarded += 1;
            return;
        };
        self.stats.messages_dead_lettered += 1;
        let persist_id = message
            .persist_id
            .and_then(|_| self.next_persist_id(message.persistent));
        let dlq = QueueKey::queue(&dlq);
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
        .with_network(message.broker_path.to_vec(), message.origin_id.clone())
        .with_persist_id(persist_id);
        if self.ensure_queue(&dlq).is_ok() {
            let copy = Arc::new(copy);
            self.record_drop(&copy, DropReason::DeadLettered);
            self.persist_enqueue(&copy, std::slice::from_ref(&dlq));
            let entry_key = self.entry_key(&copy);
            if !self.offer(&dlq, entry_key, &copy, 0) {
                self.store(&dlq, entry_key, copy, 0);
            }
        }
    }

    pub(in crate::core) fn expire_queue(&mut self, now_ms: u64, key: &QueueKey) {
        self.now_ms = now_ms;
        let Some(queue) = self.queues.get_mut(key) else {
            return;
        };
        queue.expiry_armed_ms = None;
        let mut expired = 0;
        let mut gone = Vec::new();
        while let Some(&(at, entry_key)) = queue.expiries.first() {
            if at > now_ms {
                break;
            }
            if let Some(entry) = queue.take(entry_key) {
                gone.push(entry.message);
            }
            expired += 1;
        }
        self.stats.messages_expired += expired;
        let next = queue.expiries.first().map(|(at, _)| *at);
        if let Some(at) = next {
            queue.expiry_armed_ms = Some(at);
            self.set_timer(at, Timer::Expiry(key.clone()));
        }
        for message in gone {
            self.persist_ack(key, &message);
            if self.config.record_drops {
                self.dropped.push((message, DropReason::Expired));
            }
        }
        self.collect_queue(key);
    }

    /// Gives every subscription that became ready the waiting messages it can take.
    pub(in crate::core) fn run_drains(&mut self) {
        while let Some(sub_key) = self.pending_drains.pop() {
            self.drain(sub_key);
        }
    }

    pub(super) fn drain(&mut self, sub_key: SubKey) {
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
                    self.persist_ack(&q, &entry.message);
                    continue;
                }
                self.deliver_queued(&q, entry_key, entry.message, entry.redeliveries, sub_key);
            }
            self.collect_queue(&q);
        }
    }

    /// The first waiting message of queue `q` that subscription `sub_key` may take.
    pub(super) fn next_for(&self, sub_key: SubKey, q: &QueueKey) -> Option<EntryKey> {
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
}
