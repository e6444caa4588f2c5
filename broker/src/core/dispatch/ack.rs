//! ACK and NACK: finding the acknowledged delivery and applying the acknowledgement.

use super::{AckTarget, Origin, Unacked};
use crate::core::Broker;
use crate::core::ids::{ConnId, SubKey};
use crate::core::request::{AckRequest, AckTargetName};
use crate::core::session::{FrameError, FrameResult, fatal};
use crate::core::transaction::{AckKind, TxOp};
use crate::proto::{AckMode, Frame};

impl Broker {
    pub(in crate::core) fn on_ack(
        &mut self,
        conn_id: ConnId,
        frame: &Frame,
        nack: bool,
    ) -> FrameResult {
        self.work.acks += 1;
        let Some(version) = self.conns.get(&conn_id).map(|c| c.version) else {
            return fatal("unknown connection");
        };
        let request = AckRequest::parse(frame, version)?;
        let target = self.find_ack_target(conn_id, &request)?;
        let kind = if nack {
            AckKind::Nack {
                requeue: request.requeue,
            }
        } else {
            AckKind::Ack
        };
        if let Some(tx) = &request.transaction {
            return self.buffer_tx(
                conn_id,
                tx,
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

    /// The unacknowledged delivery of this connection that `request` names.
    pub(super) fn find_ack_target(
        &self,
        conn_id: ConnId,
        request: &AckRequest,
    ) -> Result<AckTarget, FrameError> {
        let Some(conn) = self.conns.get(&conn_id) else {
            return fatal("unknown connection");
        };
        let what = request.command;
        let (message_id, subscription) = match &request.target {
            AckTargetName::Id(id) => {
                if let Some(tag) = id.parse::<u64>().ok()
                    && let Some(sub) = conn.tags.get(&tag)
                {
                    return Ok(AckTarget { sub: *sub, tag });
                }
                return Err(FrameError::Refused(format!(
                    "{what} for id '{id}', which is not an unacknowledged message of this session"
                )));
            }
            AckTargetName::MessageId {
                message_id,
                subscription,
            } => (message_id, subscription),
        };
        let only_sub = subscription
            .as_ref()
            .and_then(|s| conn.subs.get(s))
            .copied();
        let candidates: Vec<SubKey> = match only_sub {
            Some(s) => vec![s],
            None => conn.subs.values().copied().collect(),
        };
        for s in candidates {
            if let Some(sub) = self.subs.get(&s)
                && let Some(u) = sub.unacked.iter().find(|u| *u.message.id == **message_id)
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
    pub(super) fn apply_ack(&mut self, sub_key: SubKey, tag: u64, kind: AckKind) {
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
        for u in &removed {
            if let Origin::Queue { queue, .. } = &u.origin {
                self.settle_inflight(queue);
            }
        }
        if kind == AckKind::Ack {
            for u in &removed {
                if let Origin::Queue { queue, .. } = &u.origin {
                    self.persist_ack(queue, &u.message);
                }
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
}
