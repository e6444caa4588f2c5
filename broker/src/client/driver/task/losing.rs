//! Losing a connection: failing or requeueing what was in flight, and what comes next.

use std::time::Duration;

use tokio::time::Instant;

use super::super::ops::*;
use super::super::{ClientError, SendOutcome, Status, StopReason};
use super::*;
use crate::client::events::{ClientEvent, DisconnectReason};

impl Driver {
    /// The socket ended (EOF, error, bad input) in whatever phase.
    pub(super) fn io_ended(&mut self, reason: DisconnectReason) {
        match self.phase {
            Phase::Opening { .. } | Phase::Handshake { .. } => self.attempt_failed(reason),
            Phase::Up { .. } | Phase::Closing { .. } => self.connection_lost(reason),
            Phase::Backoff { .. } | Phase::Stopped => self.io = None,
        }
    }

    pub(super) fn connection_lost(&mut self, reason: DisconnectReason) {
        let now = Instant::now();
        let (up_for, closing) = match &self.phase {
            Phase::Up { since, .. } => (now.saturating_duration_since(*since), false),
            _ => (Duration::ZERO, true),
        };
        self.settle_io();
        if closing || self.shutting_down {
            self.emit(ClientEvent::Disconnected {
                reason: DisconnectReason::Shutdown,
            });
            self.stop(StopReason::Disconnected);
            return;
        }
        tracing::info!(%reason, "connection lost");
        self.emit(ClientEvent::Disconnected { reason });
        match self.policy.connection_lost(up_for) {
            Ok(next) => self.begin_attempt(next),
            Err(gave_up) => self.stop(StopReason::GaveUp(gave_up)),
        }
    }

    /// Closes the socket and settles what depended on it: frames still in the output
    /// buffer (sends go back to the head of the queue, others fail), receipts outstanding
    /// (indeterminate).
    pub(super) fn settle_io(&mut self) {
        if let Some(io) = self.io.take() {
            let mut requeue = Vec::new();
            for entry in io.inflight {
                match entry.what {
                    Flushing::Send { mut op, deadline } => {
                        if let SendReply::Moved(rid) = op.reply {
                            let _ = self.session.forget_receipt(rid);
                            match self.waiters.remove(&rid) {
                                Some(tx) => op.reply = SendReply::Receipt(tx),
                                None => continue,
                            }
                        }
                        requeue.push(Queued {
                            op: Op::Send(op),
                            deadline,
                        });
                    }
                    Flushing::Reply(tx) => {
                        let _ = tx.send(Err(ClientError::ConnectionLost));
                    }
                    // Lost before the replayed SUBSCRIBEs left: the failover goes on.
                    Flushing::Replayed { .. } => {}
                    Flushing::Commit(rid) => {
                        let _ = self.session.forget_receipt(rid);
                        if let Some(tx) = self.waiters.remove(&rid) {
                            let _ = tx
                                .send(SendOutcome::Failed(ClientError::ConnectionLost.to_string()));
                        }
                    }
                }
            }
            for q in requeue.into_iter().rev() {
                self.pending.push_front(q);
            }
        }
        let lost = self.session.connection_lost();
        for (rid, _) in lost.indeterminate {
            if let Some(tx) = self.waiters.remove(&rid) {
                let _ = tx.send(SendOutcome::Indeterminate);
            }
        }
        for (_, tx) in std::mem::take(&mut self.waiters) {
            let _ = tx.send(SendOutcome::Indeterminate);
        }
        if !lost.transactions.is_empty() {
            tracing::info!(transactions = ?lost.transactions, "open transactions lost with the connection");
        }
    }

    pub(super) fn stop(&mut self, reason: StopReason) {
        self.settle_io();
        for q in std::mem::take(&mut self.pending) {
            q.op.fail(ClientError::Closed);
        }
        if let Some(m) = self.delivery.take() {
            let _ = self.messages.try_send(m);
        }
        if let StopReason::GaveUp(g) = &reason {
            tracing::warn!("client stopped: {g}");
        }
        self.phase = Phase::Stopped;
        self.status.send_replace(Status::Stopped(reason));
    }

    pub(super) fn on_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let now = Instant::now();
        if matches!(self.phase, Phase::Up { .. }) {
            // Write what was accepted, then DISCONNECT and wait for its receipt.
            while let Some(q) = self.pending.pop_front() {
                self.write_op(q, now);
            }
            if let (Ok(out), Some(io)) = (self.session.disconnect(), self.io.as_mut()) {
                io.queue(&out.frame, now);
                self.phase = Phase::Closing {
                    until: after(now, self.disconnect_timeout),
                    receipt: out.receipt,
                };
                return;
            }
        }
        if matches!(self.phase, Phase::Closing { .. }) {
            return;
        }
        self.settle_io();
        self.emit(ClientEvent::Disconnected {
            reason: DisconnectReason::Shutdown,
        });
        self.stop(StopReason::Disconnected);
    }
}
