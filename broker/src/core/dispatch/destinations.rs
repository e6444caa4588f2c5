//! Destinations: resolving names (temporary destinations included), creating and
//! collecting queues, authorization, and emitting frames with flow-control accounting.

use std::sync::Arc;

use super::{Queue, is_durable_queue, is_wildcard_key};
use crate::core::ids::{ConnId, QueueKey, SubKey};
use crate::core::message::DropReason;
use crate::core::session::{FrameError, FrameResult, Unflushed};
use crate::core::transaction::TxOp;
use crate::core::{Broker, OutFrame, Output, SharedMessage};
use crate::destination::{Destination, Kind};
use crate::security::Operation;

impl Broker {
    /// Resolves a parsed destination to the key the core uses, creating this connection's
    /// name for a temporary destination on first use.
    pub(super) fn resolve(
        &mut self,
        conn_id: ConnId,
        dest: &Destination,
    ) -> Result<QueueKey, FrameError> {
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

    pub(in crate::core) fn temp_name(
        &mut self,
        conn_id: ConnId,
        kind: Kind,
        local: &str,
    ) -> Arc<str> {
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

    pub(super) fn ensure_queue(&mut self, key: &QueueKey) -> FrameResult {
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
        if key.kind == Kind::Queue && !is_durable_queue(key) {
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

    /// The connection that owns temporary queue `name`, while the queue exists.
    pub(in crate::core) fn temp_queue_owner(&self, name: &str) -> Option<ConnId> {
        let key = QueueKey {
            kind: Kind::TempQueue,
            name: Arc::from(name),
        };
        self.queues.get(&key).and_then(|q| q.owner)
    }

    /// Removes a queue that has no direct consumers and no waiting messages.
    pub(in crate::core) fn collect_queue(&mut self, key: &QueueKey) {
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

    pub(in crate::core) fn delete_temporary(&mut self, kind: Kind, internal: Arc<str>) {
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
    pub(super) fn authorize_use(
        &mut self,
        conn_id: ConnId,
        op: Operation,
        key: &QueueKey,
    ) -> FrameResult {
        // Vhosts governed by permissions were checked when the destination was translated.
        if self.governed_by_permissions(conn_id) {
            return Ok(());
        }
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
            let name = self.authorization_name(key.kind, &key.name);
            if !self.security.authorize(principal, op, key.kind, name) {
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
    pub(in crate::core) fn record_drop(&mut self, message: &SharedMessage, reason: DropReason) {
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
    pub(in crate::core) fn emit_tracked(
        &mut self,
        conn_id: ConnId,
        frame: OutFrame,
        unflushed: Option<Unflushed>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.outbound_frames == 0 {
            // Its writer is idle: this frame wakes it for a write.
            self.work.io_calls += 1;
        }
        conn.outbound_frames += 1;
        conn.last_sent_ms = self.now_ms;
        match &frame {
            OutFrame::HeartBeat => {
                self.work.heartbeats += 1;
                self.work.bytes_out += 1;
            }
            OutFrame::Control(f) => {
                self.work.frames_out += 1;
                self.work.bytes_out += crate::core::work::frame_bytes(f);
            }
            OutFrame::Message(d) => {
                self.work.frames_out += 1;
                self.work.bytes_out += d.wire_bytes_estimate();
            }
        }
        if let Some(u) = &unflushed {
            *self.inflight.entry(u.queue.clone()).or_insert(0) += 1;
        }
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
