//! Connecting: attempts, the CONNECT exchange, and what a new connection starts with.

use std::io;

use tokio::time::Instant;

use super::super::{Status, StopReason};
use super::*;
use crate::client::events::{ClientEvent, DisconnectReason};
use crate::client::policy::{Attempt, ConnreadTimeout};
use crate::client::session::Negotiated;
use crate::net::{BoxFuture, BoxStream};

impl Driver {
    pub(super) fn begin_attempt(&mut self, attempt: Attempt) {
        self.emit(ClientEvent::from(attempt));
        let until = after(Instant::now(), attempt.delay);
        self.phase = Phase::Backoff { attempt, until };
        self.status.send_replace(Status::Connecting);
    }

    pub(super) fn open(&mut self, attempt: Attempt, now: Instant) {
        let addr = self.server_name(attempt.server);
        tracing::debug!(server = %addr, number = attempt.number, "connecting");
        let net = self.net.clone();
        let server = self.policy.servers().get(attempt.server).cloned();
        // TLS wraps the stream the `Net` seam opened; the handshake counts against the
        // same connect timeout, as the stomp gem's and ActiveMQ's do.
        let connect: BoxFuture<'static, io::Result<BoxStream>> = Box::pin(async move {
            let stream = net.connect(&addr).await?;
            match server.and_then(|s| s.tls.map(|tls| (s.host, tls))) {
                Some((host, tls)) => tls.connect(&host, stream).await,
                None => Ok(stream),
            }
        });
        self.phase = Phase::Opening {
            attempt,
            deadline: self.connect_timeout.map(|t| after(now, t)),
            connect,
        };
    }

    pub(super) fn on_opened(&mut self, result: io::Result<BoxStream>) {
        let Phase::Opening {
            attempt, deadline, ..
        } = &self.phase
        else {
            return;
        };
        let (attempt, deadline) = (*attempt, *deadline);
        match result {
            Err(e) => self.attempt_failed(DisconnectReason::ConnectFailed(e.to_string())),
            Ok(stream) => {
                let now = Instant::now();
                let server = self
                    .policy
                    .servers()
                    .get(attempt.server)
                    .cloned()
                    .expect("the policy hands out servers of its list");
                let connect = self.session.connect_frame(&server);
                let mut io = Io::new(stream, self.frame_limits, now);
                io.queue(&connect, now);
                self.io = Some(io);
                let deadline = match self.connread_timeout {
                    ConnreadTimeout::WithinConnectTimeout => deadline,
                    ConnreadTimeout::Separate(t) => t.map(|t| after(now, t)),
                };
                self.phase = Phase::Handshake { deadline };
            }
        }
    }

    pub(super) fn attempt_failed(&mut self, reason: DisconnectReason) {
        tracing::debug!(%reason, "connection attempt failed");
        self.io = None;
        let _ = self.session.connection_lost();
        let next = match (&reason, &self.phase) {
            (DisconnectReason::ErrorFrame(_), _) => self.policy.attempt_refused(),
            (DisconnectReason::ConnectTimeout, Phase::Handshake { .. })
                if self.connread_timeout != ConnreadTimeout::WithinConnectTimeout =>
            {
                self.policy.connect_read_timed_out()
            }
            _ => self.policy.attempt_failed(),
        };
        self.emit(ClientEvent::Disconnected { reason });
        match next {
            Ok(next) => self.begin_attempt(next),
            Err(gave_up) => self.stop(StopReason::GaveUp(gave_up)),
        }
    }

    pub(super) fn on_connected(&mut self, negotiated: Negotiated) {
        let now = Instant::now();
        let server = self.policy.connected();
        let version = negotiated.version;
        let replay = self.session.replay();
        let Some(io) = self.io.as_mut() else {
            return;
        };
        io.decoder.set_version(version);
        io.version = version;
        io.last_read = now;
        io.last_write = now;
        for frame in &replay {
            io.queue(frame, now);
        }
        let send_period = negotiated.send_every.map(heartbeat_send_period);
        let read_window = if self.heartbeat_read_timeout {
            negotiated
                .expect_every
                .map(|e| e.mul_f64(self.heartbeat_grace_factor))
        } else {
            None
        };
        self.phase = Phase::Up {
            since: now,
            send_period,
            read_window,
        };
        tracing::debug!(server = %self.server_name(server), %version, "connected");
        self.status
            .send_replace(Status::Connected { server, version });
        self.emit(ClientEvent::Connected { server });
        let failover = self
            .last_server
            .replace(server)
            .filter(|previous| *previous != server)
            .map(|previous| (previous, server));
        // The subscriptions are back once the replayed SUBSCRIBEs have left (all at once
        // when there are none), not when they were queued: a client whose writes wait (a
        // full socket, or the simulator's clients' CPU) is not subscribed before.
        let count = replay.len();
        match self.io.as_mut() {
            Some(io) if io.written < io.queued => io.inflight.push_back(Inflight {
                end: io.queued,
                what: Flushing::Replayed { count, failover },
            }),
            _ => self.emit_replayed(count, failover),
        }
        self.pump(now);
    }

    /// Reports the subscriptions replayed after a CONNECTED, and the failover it ended.
    pub(super) fn emit_replayed(&mut self, count: usize, failover: Option<(usize, usize)>) {
        self.emit(ClientEvent::Resubscribed { count });
        if let Some((from, to)) = failover {
            self.emit(ClientEvent::Failover { from, to });
        }
    }
}
