//! Timers: heart-beats, send deadlines, and the next wake-up.

use bytes::BufMut;
use tokio::time::Instant;

use super::super::ClientError;
use super::*;
use crate::client::events::DisconnectReason;

impl Driver {
    pub(super) fn on_timer(&mut self) {
        let now = Instant::now();
        self.expire_pending(now);
        self.pump(now);
        match &self.phase {
            Phase::Backoff { attempt, until } if *until <= now => {
                let attempt = *attempt;
                self.open(attempt, now);
                return;
            }
            Phase::Opening {
                deadline: Some(d), ..
            }
            | Phase::Handshake {
                deadline: Some(d), ..
            } if *d <= now => {
                self.attempt_failed(DisconnectReason::ConnectTimeout);
                return;
            }
            Phase::Closing { until, .. } if *until <= now => {
                tracing::info!("no receipt for DISCONNECT in time; closing anyway");
                self.connection_lost(DisconnectReason::Shutdown);
                return;
            }
            Phase::Up {
                send_period,
                read_window,
                ..
            } => {
                let (send_period, read_window) = (*send_period, *read_window);
                let delivering = self.delivery.is_some();
                if let Some(io) = self.io.as_mut() {
                    if let Some(w) = read_window {
                        if !delivering && after(io.last_read, w) <= now {
                            self.connection_lost(DisconnectReason::HeartbeatTimeout);
                            return;
                        }
                    }
                    if let Some(p) = send_period {
                        if io.wbuf.is_empty() && after(io.last_write, p) <= now {
                            io.write_since = now;
                            io.wbuf.put_u8(b'\n');
                            io.queued += 1;
                        }
                    }
                }
            }
            _ => {}
        }
        let stalled = self.io.as_ref().is_some_and(|io| {
            !io.wbuf.is_empty() && after(io.write_since, self.write_timeout) <= now
        });
        if stalled {
            let reason = DisconnectReason::Io(format!(
                "no bytes could be written for {:?}",
                self.write_timeout
            ));
            self.io_ended(reason);
        }
    }

    /// Fails queued operations whose deadline has passed (and drops abandoned ones at the
    /// head of the queue).
    pub(super) fn expire_pending(&mut self, now: Instant) {
        while let Some(front) = self.pending.front() {
            let expired = front.deadline.is_some_and(|d| d <= now);
            if !expired && !front.op.abandoned() {
                break;
            }
            if let Some(q) = self.pending.pop_front() {
                if expired {
                    q.op.fail(ClientError::Timeout);
                }
            }
        }
    }
}
