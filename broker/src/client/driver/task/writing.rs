//! Writing: the output buffer, flushing, and answering what waited for its frame to leave.

use std::io;

use bytes::Buf;
use tokio::time::Instant;

use super::super::ops::*;
use super::super::{ClientError, SendOutcome};
use super::*;
use crate::client::events::DisconnectReason;

impl Driver {
    pub(super) fn on_wrote(&mut self, result: io::Result<usize>) {
        let now = Instant::now();
        let Some(io) = self.io.as_mut() else {
            return;
        };
        match result {
            Ok(0) => self.io_ended(DisconnectReason::Io(
                "the socket accepts no more bytes".into(),
            )),
            Ok(n) => {
                io.wbuf.advance(n);
                io.written += n as u64;
                io.last_write = now;
                io.write_since = now;
                let mut replayed = None;
                while io.inflight.front().is_some_and(|f| f.end <= io.written) {
                    let Some(done) = io.inflight.pop_front() else {
                        break;
                    };
                    match done.what {
                        Flushing::Send { op, .. } => {
                            if let SendReply::Plain(tx) = op.reply {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Flushing::Reply(tx) => {
                            let _ = tx.send(Ok(()));
                        }
                        Flushing::Commit(_) => {}
                        Flushing::Replayed { count, failover } => {
                            replayed = Some((count, failover));
                        }
                    }
                }
                if let Some((count, failover)) = replayed {
                    self.emit_replayed(count, failover);
                }
                self.pump(now);
            }
            Err(e) => self.io_ended(DisconnectReason::Io(e.to_string())),
        }
    }

    /// Moves queued operations into the output buffer while connected and there is room.
    pub(super) fn pump(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Up { .. }) {
            return;
        }
        while self
            .io
            .as_ref()
            .is_some_and(|io| io.wbuf.len() < WRITE_BUFFER_HIGH_WATER_BYTES)
        {
            let Some(front) = self.pending.front() else {
                break;
            };
            if front.op.abandoned() {
                self.pending.pop_front();
                continue;
            }
            if front.op.wants_receipt() && self.waiters.len() >= self.pending_sends_max {
                // Enough receipts outstanding: wait for answers before asking for more.
                break;
            }
            let Some(q) = self.pending.pop_front() else {
                break;
            };
            self.write_op(q, now);
        }
    }

    /// Encodes one operation into the output buffer (or answers it if it cannot go out).
    pub(super) fn write_op(&mut self, q: Queued, now: Instant) {
        if q.deadline.is_some_and(|d| d <= now) {
            q.op.fail(ClientError::Timeout);
            return;
        }
        if q.op.abandoned() {
            return;
        }
        let Some(io) = self.io.as_mut() else {
            self.pending.push_front(q);
            return;
        };
        let session = &mut self.session;
        match q.op {
            Op::Send(mut op) => {
                let with_receipt = matches!(op.reply, SendReply::Receipt(_));
                match session.send(&op.destination, &op.headers, op.body.clone(), with_receipt) {
                    Err(e) => op.reply.fail(e.into()),
                    Ok(out) => {
                        let end = io.queue(&out.frame, now);
                        if let Some(rid) = out.receipt {
                            if let SendReply::Receipt(tx) =
                                std::mem::replace(&mut op.reply, SendReply::Moved(rid))
                            {
                                self.waiters.insert(rid, tx);
                            }
                        }
                        io.inflight.push_back(Inflight {
                            end,
                            what: Flushing::Send {
                                op,
                                deadline: q.deadline,
                            },
                        });
                    }
                }
            }
            Op::Subscribe { id, connection } => {
                if connection == session.connection() {
                    if let Some(frame) = session.subscribe_frame(id) {
                        io.queue(&frame, now);
                    }
                }
            }
            Op::Unsubscribe { frame, connection } => {
                if connection == session.connection() {
                    io.queue(&frame, now);
                }
            }
            Op::Ack { info, nack, reply } => match session.ack(&info, nack) {
                Ok(frame) => io.queue_then_reply(&frame, now, reply),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Op::Begin { tx, reply } => match session.begin(&tx, false) {
                Ok(out) => io.queue_then_reply(&out.frame, now, reply),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Op::Abort { tx, reply } => match session.abort(&tx, false) {
                Ok(out) => io.queue_then_reply(&out.frame, now, reply),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Op::Commit { tx, reply } => match session.commit(&tx, true) {
                Ok(out) => {
                    let end = io.queue(&out.frame, now);
                    if let Some(rid) = out.receipt {
                        self.waiters.insert(rid, reply);
                        io.inflight.push_back(Inflight {
                            end,
                            what: Flushing::Commit(rid),
                        });
                    }
                }
                Err(e) => {
                    let _ = reply.send(SendOutcome::Failed(e.to_string()));
                }
            },
        }
    }
}
