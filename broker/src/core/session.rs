//! Sessions: connection lifecycle, CONNECT negotiation, heart-beats, frame routing,
//! errors and teardown.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use super::ids::{ConnId, EntryKey, QueueKey, SubKey};
use super::transaction::TxOp;
use super::{Broker, OutFrame, Output, SharedMessage, Timer};
use crate::destination::Kind;
use crate::proto::{Command, DecodeError, Frame, Version};
use crate::security::{Principal, Security};

/// Server name sent in CONNECTED.
const SERVER: &str = concat!("stampede/", env!("CARGO_PKG_VERSION"));

/// Frames from one connection waiting behind a SEND that found no room (see
/// [`super::flow`], which parks and retries them).
#[derive(Debug)]
pub(super) struct Parked {
    /// When the SEND at the front started waiting.
    pub(super) since_ms: u64,
    /// The waiting SEND first, then what arrived after it.
    pub(super) frames: VecDeque<Frame>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    AwaitingConnect,
    Connected,
}

/// A queue message written in `auto` ack mode but not yet reported flushed: if the
/// connection dies first, it goes back to its queue.
#[derive(Debug)]
pub(super) struct Unflushed {
    pub(super) queue: QueueKey,
    pub(super) key: EntryKey,
    pub(super) message: SharedMessage,
    pub(super) redeliveries: u32,
}

/// One client connection.
pub(super) struct Conn {
    pub(super) state: State,
    pub(super) version: Version,
    pub(super) principal: Option<Principal>,
    pub(super) peer: String,
    /// Subscriptions by the id the client uses (the destination for 1.0 without `id`).
    pub(super) subs: BTreeMap<ByteString, SubKey>,
    /// Delivery tags of unacknowledged client-mode deliveries, to their subscription.
    pub(super) tags: BTreeMap<u64, SubKey>,
    pub(super) txs: BTreeMap<ByteString, Vec<TxOp>>,
    /// Temporary destinations this connection created: (kind, local name) → internal name.
    pub(super) temps: BTreeMap<(Kind, Arc<str>), Arc<str>>,
    /// Frames emitted and not yet reported flushed.
    pub(super) outbound_frames: usize,
    /// One slot per emitted frame, in order; `Some` for auto-ack queue deliveries.
    pub(super) inflight: VecDeque<Option<Unflushed>>,
    /// Since when `outbound_frames` has been at or over the window, if it is.
    pub(super) behind_since_ms: Option<u64>,
    pub(super) hb_send_ms: u64,
    pub(super) hb_recv_ms: u64,
    pub(super) last_sent_ms: u64,
    pub(super) last_recv_ms: u64,
    /// Frames waiting behind a SEND that found no room (see [`super::flow`]).
    pub(super) parked: Option<Parked>,
    /// The common name of the client certificate a TLS listener verified, if any.
    pub(super) certificate_cn: Option<String>,
    /// CONNECT's `client-id` (ActiveMQ's JMS client id), which durable subscriptions
    /// belong to.
    pub(super) client_id: Option<ByteString>,
    /// The vhost CONNECT chose (`None` without vhosts).
    pub(super) vhost: Option<crate::vhost::VhostId>,
}

impl Conn {
    pub(super) fn has_room(&self, outbound_frames_max: usize) -> bool {
        self.outbound_frames < outbound_frames_max
    }

    /// Whether a topic message may still be queued for this connection: below the
    /// window, or within the burst allowance during the grace period.
    pub(super) fn takes_topic_message(
        &self,
        limits: &super::Limits,
        grace_ms: u64,
        now_ms: u64,
    ) -> bool {
        if self.has_room(limits.outbound_frames_max) {
            return true;
        }
        let hard = limits.outbound_frames_max + limits.outbound_burst_frames_max;
        let in_grace = self
            .behind_since_ms
            .is_none_or(|since| now_ms.saturating_sub(since) < grace_ms);
        self.outbound_frames < hard && in_grace
    }
}

/// How a frame's processing failed.
#[derive(Debug)]
pub(super) enum FrameError {
    /// Bad input: ERROR, then close.
    Fatal(String),
    /// A refused operation on a healthy session (authorization, full queue): ERROR, and
    /// the connection stays open, as ActiveMQ does.
    Refused(String),
    /// Refused by a RabbitMQ-convention vhost's permissions: ERROR with RabbitMQ's
    /// `message` header (`access_refused`, `Bad CONNECT`) and `body` as its text, then
    /// close, as RabbitMQ closes the connection.
    Denied {
        /// The ERROR's `message` header.
        message: &'static str,
        /// The ERROR's body (one line).
        body: String,
    },
}

pub(super) type FrameResult = Result<(), FrameError>;

pub(super) fn fatal<T>(msg: impl Into<String>) -> Result<T, FrameError> {
    Err(FrameError::Fatal(msg.into()))
}

impl Broker {
    /// A connection was accepted. `peer` is for logs and error messages.
    pub fn handle_open(&mut self, now_ms: u64, conn: ConnId, peer: &str) {
        self.work.events += 1;
        self.work.connections += 1;
        self.stats.connections_opened += 1;
        self.conns.insert(
            conn,
            Conn {
                state: State::AwaitingConnect,
                version: Version::V1_0,
                principal: None,
                peer: peer.to_owned(),
                subs: BTreeMap::new(),
                tags: BTreeMap::new(),
                txs: BTreeMap::new(),
                temps: BTreeMap::new(),
                outbound_frames: 0,
                inflight: VecDeque::new(),
                behind_since_ms: None,
                hb_send_ms: 0,
                hb_recv_ms: 0,
                last_sent_ms: now_ms,
                last_recv_ms: now_ms,
                parked: None,
                certificate_cn: None,
                client_id: None,
                vhost: None,
            },
        );
        let address = peer_address(peer);
        let limits = &self.config.limits;
        let from_address = self.unauthenticated.get(&address).copied().unwrap_or(0);
        let refusal = if self.unauthenticated_total >= limits.unauthenticated_connections_max {
            Some(format!(
                "too many connections waiting for CONNECT \
                 (limits.unauthenticated_connections_max = {})",
                limits.unauthenticated_connections_max
            ))
        } else if from_address >= limits.unauthenticated_connections_per_address_max {
            Some(format!(
                "too many connections from {address} waiting for CONNECT \
                 (limits.unauthenticated_connections_per_address_max = {})",
                limits.unauthenticated_connections_per_address_max
            ))
        } else {
            None
        };
        *self.unauthenticated.entry(address).or_insert(0) += 1;
        self.unauthenticated_total += 1;
        if let Some(msg) = refusal {
            self.stats.connections_refused += 1;
            tracing::warn!(conn = %conn, %peer, "refusing connection: {msg}");
            self.error_and_close(conn, &msg, None, "connection refused");
            return;
        }
        let deadline = now_ms.saturating_add(self.config.limits.connect_timeout_ms);
        self.set_timer(deadline, Timer::ConnectDeadline(conn));
    }

    /// A connection leaves the waiting-for-CONNECT state (connected or gone).
    fn forget_unauthenticated(&mut self, peer: &str) {
        let address = peer_address(peer);
        if let Some(n) = self.unauthenticated.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                self.unauthenticated.remove(&address);
            }
        }
        self.unauthenticated_total = self.unauthenticated_total.saturating_sub(1);
    }

    /// The TLS listener verified a client certificate with common name `cn` for `conn`
    /// (call right after [`Broker::handle_open`]). A CONNECT without a `login` then logs in
    /// as the user whose `certificate_cns` matches it.
    pub fn handle_peer_certificate(&mut self, conn: ConnId, cn: &str) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.certificate_cn = Some(cn.to_owned());
        }
    }

    /// The operator reloaded users, groups and authorization (SIGHUP). Sessions stay up;
    /// each session's groups are looked up again ([`Security::refreshed`]), so the new
    /// rules apply from the next frame. Subscriptions already made keep receiving (as
    /// ActiveMQ checks read access when subscribing, not per message).
    pub fn handle_reload_security(&mut self, now_ms: u64, security: Security) {
        self.now_ms = now_ms;
        for c in self.conns.values_mut() {
            if let Some(p) = &c.principal {
                c.principal = Some(security.refreshed(p));
            }
        }
        self.security = security;
        self.stats.security_reloads += 1;
    }

    /// Bytes arrived that were not a frame (a heart-beat end-of-line).
    pub fn handle_heartbeat(&mut self, now_ms: u64, conn: ConnId) {
        self.work.events += 1;
        self.work.heartbeats += 1;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_recv_ms = now_ms;
        }
    }

    /// The peer closed the connection or the socket failed; or, after [`Output::Close`],
    /// the shell's report that it has written all it will.
    pub fn handle_close(&mut self, now_ms: u64, conn: ConnId) {
        self.now_ms = now_ms;
        if self.conns.contains_key(&conn) {
            self.work.events += 1;
            self.work.connections += 1;
            self.teardown(conn, false);
        } else if let Some(slots) = self.closing.remove(&conn) {
            self.give_back(slots.into_iter().flatten());
            self.run_drains();
        }
        self.retry_parked();
    }

    /// The shell's writer for `conn` cannot take another frame: the connection is closed
    /// (with no ERROR, which could not be written either). The writer still writes what
    /// it holds, and reports that and the close as after [`Output::Close`].
    pub fn handle_writer_full(&mut self, now_ms: u64, conn: ConnId) {
        self.now_ms = now_ms;
        self.work.events += 1;
        self.work.connections += 1;
        if self.conns.contains_key(&conn) {
            self.close(conn);
        }
        self.retry_parked();
    }

    /// The byte stream was not valid STOMP: ERROR, then close.
    pub fn handle_decode_error(&mut self, now_ms: u64, conn: ConnId, error: &DecodeError) {
        self.now_ms = now_ms;
        self.work.events += 1;
        if self.conns.contains_key(&conn) {
            self.error_and_close(
                conn,
                &error.to_string(),
                None,
                "the frame could not be decoded",
            );
        }
    }

    /// The shell wrote `frames` more frames for `conn` to its socket.
    ///
    /// Not counted in [`Work::events`](super::Work): the cost of writing is the frames'
    /// own (`frames_out`, `bytes_out`), priced when they are emitted, so that a cost model
    /// makes a delivery wait for its writing rather than for the reports that follow it.
    pub fn handle_flushed(&mut self, now_ms: u64, conn_id: ConnId, frames: usize) {
        self.now_ms = now_ms;
        let max = self.config.limits.outbound_frames_max;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            self.closing_flushed(conn_id, frames);
            self.retry_parked();
            return;
        };
        let was_blocked = !conn.has_room(max);
        let n = frames.min(conn.outbound_frames);
        conn.outbound_frames -= n;
        let mut consumed = Vec::new();
        for _ in 0..n {
            if let Some(Some(u)) = conn.inflight.pop_front() {
                consumed.push(u);
            }
        }
        if conn.has_room(max) {
            conn.behind_since_ms = None;
        }
        let room = conn.has_room(max);
        // Auto-ack queue messages are consumed once written.
        for u in consumed {
            self.settle_inflight(&u.queue);
            self.persist_ack(&u.queue, &u.message);
        }
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        if was_blocked && room {
            let subs: Vec<SubKey> = conn.subs.values().copied().collect();
            self.pending_drains.extend(subs);
            self.run_drains();
        }
        self.retry_parked();
    }

    /// A decoded frame from `conn`.
    pub fn handle_frame(&mut self, now_ms: u64, conn_id: ConnId, frame: Frame) {
        self.now_ms = now_ms;
        self.work.events += 1;
        self.work.frames_in += 1;
        self.work.bytes_in += super::work::frame_bytes(&frame);
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.last_recv_ms = now_ms;
        if let Some(frame) = self.park_if_needed(conn_id, frame) {
            self.process_frame(conn_id, frame);
        }
        self.retry_parked();
    }

    /// Handles one frame of a connection that has nothing parked before it.
    pub(super) fn process_frame(&mut self, conn_id: ConnId, mut frame: Frame) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let state = conn.state;
        let receipt = frame.headers.get_shared("receipt").cloned();
        let command = frame.command;
        // A SEND that asks how many subscriptions it reached (a Redis PUBLISH).
        let count_receivers = command == Command::Send
            && receipt.is_some()
            && frame.headers.contains(super::message::RECEIVERS_HEADER);
        let deliveries_before = self.work.deliveries;
        self.start_frame_persistence();
        let result = match (state, command) {
            (State::AwaitingConnect, Command::Connect | Command::Stomp) => {
                self.on_connect(conn_id, &frame)
            }
            (State::AwaitingConnect, other) => fatal(format!(
                "expected CONNECT or STOMP as the first frame, got {other}"
            )),
            (State::Connected, Command::Connect | Command::Stomp) => {
                fatal("the session is already connected")
            }
            (State::Connected, Command::Send) => self
                .translate_frame(conn_id, &mut frame)
                .and_then(|()| self.on_send(conn_id, frame)),
            (State::Connected, Command::Subscribe) => self
                .translate_frame(conn_id, &mut frame)
                .and_then(|()| self.on_subscribe(conn_id, &frame)),
            (State::Connected, Command::Unsubscribe) => self.on_unsubscribe(conn_id, &frame),
            (State::Connected, Command::Ack) => self.on_ack(conn_id, &frame, false),
            (State::Connected, Command::Nack) => self.on_ack(conn_id, &frame, true),
            (State::Connected, Command::Begin) => self.on_begin(conn_id, &frame),
            (State::Connected, Command::Commit) => self.on_commit(conn_id, &frame),
            (State::Connected, Command::Abort) => self.on_abort(conn_id, &frame),
            (State::Connected, Command::Disconnect) => {
                // After the receipts that wait for the store, if any.
                self.answer_disconnect(conn_id, receipt);
                return;
            }
            (_, other) => fatal(format!("{other} is a server frame; clients cannot send it")),
        };
        match result {
            Ok(()) => {
                if let (Some(r), false) = (
                    receipt,
                    matches!(command, Command::Connect | Command::Stomp),
                ) {
                    // Held until the store has synced what the frame wrote, if anything.
                    if count_receivers {
                        let receivers = self.work.deliveries - deliveries_before;
                        let frame = Frame::new(Command::Receipt)
                            .header("receipt-id", r)
                            .header(super::message::RECEIVERS_HEADER, receivers.to_string());
                        self.answer_receipt_frame(conn_id, frame);
                    } else {
                        self.answer_receipt(conn_id, r);
                    }
                }
            }
            Err(FrameError::Fatal(msg)) => {
                let detail = format!("the {command} frame was refused");
                self.error_and_close(conn_id, &msg, receipt, &detail);
            }
            Err(FrameError::Refused(msg)) => {
                self.stats.errors_sent += 1;
                let frame = error_frame(&msg, receipt, &format!("the {command} frame was refused"));
                self.emit_control(conn_id, frame);
            }
            Err(FrameError::Denied { message, body }) => {
                if let Some(c) = self.conns.get(&conn_id) {
                    tracing::info!(conn = %conn_id, peer = %c.peer, "{command} refused: {body}");
                }
                self.stats.errors_sent += 1;
                self.stats.sends_refused += u64::from(command == Command::Send);
                let mut frame = Frame::new(Command::Error).header("message", message);
                if let Some(r) = receipt {
                    frame = frame.header("receipt-id", r);
                }
                let frame = frame.header("content-type", "text/plain").body(body);
                self.emit_control(conn_id, frame);
                self.close(conn_id);
            }
        }
        self.run_drains();
    }

    fn on_connect(&mut self, conn_id: ConnId, frame: &Frame) -> super::session::FrameResult {
        let h = &frame.headers;
        let Some(version) = Version::negotiate(h.get("accept-version")) else {
            return fatal("Supported protocol versions are 1.0,1.1,1.2");
        };
        let (cx, cy) = match (version, h.get("heart-beat")) {
            (Version::V1_0, _) | (_, None) => (0, 0),
            (_, Some(hb)) => parse_heartbeat(hb, self.config.heartbeat.interval_ms_max)?,
        };
        // Errors from here on are encoded in the negotiated version.
        if let Some(c) = self.conns.get_mut(&conn_id) {
            c.version = version;
        }
        let by_certificate = match (
            h.get("login").filter(|l| !l.is_empty()),
            self.conns
                .get(&conn_id)
                .and_then(|c| c.certificate_cn.as_deref()),
        ) {
            (None, Some(cn)) => self.security.authenticate_certificate(cn),
            _ => None,
        };
        let principal = match by_certificate.map(Ok).unwrap_or_else(|| {
            self.security
                .authenticate(h.get("login"), h.get("passcode"))
        }) {
            Ok(p) => p,
            Err(e) => return fatal(e.to_string()),
        };
        let vhost = self.select_vhost(h.get("host"))?;
        self.check_vhost_access(&principal, vhost)?;
        let client_id = h.get_shared("client-id").cloned().filter(|c| !c.is_empty());
        if let Some(id) = &client_id
            && self
                .conns
                .iter()
                .any(|(c, other)| *c != conn_id && other.client_id.as_ref() == Some(id))
        {
            return fatal(format!(
                "client-id '{id}' is already connected (a client id belongs to one connection \
                 at a time)"
            ));
        }
        let min = self.config.heartbeat.interval_ms_min;
        let sx = if cy == 0 { 0 } else { cy.max(min) };
        let sy = if cx == 0 { 0 } else { cx.max(min) };
        if self.sessions_current >= self.config.limits.connections_max {
            self.stats.connections_refused += 1;
            return fatal(format!(
                "too many connections (limits.connections_max = {})",
                self.config.limits.connections_max
            ));
        }
        let now = self.now_ms;
        let session = format!(
            "ID:{}-{}-{}",
            self.config.broker_name, self.incarnation, conn_id.0
        );
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Ok(());
        };
        conn.state = State::Connected;
        conn.principal = Some(principal);
        conn.client_id = client_id;
        conn.vhost = vhost;
        let peer = conn.peer.clone();
        self.sessions_current += 1;
        self.forget_unauthenticated(&peer);
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Ok(());
        };
        conn.hb_send_ms = sx;
        conn.hb_recv_ms = sy;
        self.stats.sessions_connected += 1;
        let connected = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("server", SERVER)
            .header("session", session)
            .header("heart-beat", format!("{sx},{sy}"));
        self.emit_control(conn_id, connected);
        if sx > 0 {
            self.set_timer(
                now.saturating_add(send_period(sx)),
                Timer::HeartBeatSend(conn_id),
            );
        }
        if sy > 0 {
            let window = self.recv_window(sy);
            self.set_timer(now.saturating_add(window), Timer::HeartBeatRecv(conn_id));
        }
        Ok(())
    }

    /// How long a client that promised a heart-beat every `interval_ms` may stay silent.
    /// Saturates (a float-to-int cast does) rather than wrapping.
    fn recv_window(&self, interval_ms: u64) -> u64 {
        let w = interval_ms as f64 * self.config.heartbeat.grace_factor.max(1.0);
        (w.ceil() as u64).max(1)
    }

    pub(super) fn connect_deadline(&mut self, now_ms: u64, conn: ConnId) {
        self.now_ms = now_ms;
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.state == State::AwaitingConnect)
        {
            let msg = format!(
                "no CONNECT frame within {} ms",
                self.config.limits.connect_timeout_ms
            );
            self.error_and_close(conn, &msg, None, "connect timeout");
        }
    }

    pub(super) fn heartbeat_send_check(&mut self, now_ms: u64, conn_id: ConnId) {
        self.now_ms = now_ms;
        let max = self.config.limits.outbound_frames_max;
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let period = send_period(conn.hb_send_ms);
        let due = conn.last_sent_ms.saturating_add(period);
        if now_ms >= due {
            // A connection whose buffer is full is not idle; it needs no heart-beat.
            if conn.has_room(max) {
                self.emit(conn_id, OutFrame::HeartBeat);
            } else if let Some(c) = self.conns.get_mut(&conn_id) {
                c.last_sent_ms = now_ms;
            }
            self.set_timer(now_ms.saturating_add(period), Timer::HeartBeatSend(conn_id));
        } else {
            self.set_timer(due, Timer::HeartBeatSend(conn_id));
        }
    }

    pub(super) fn heartbeat_recv_check(&mut self, now_ms: u64, conn_id: ConnId) {
        self.now_ms = now_ms;
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let window = self.recv_window(conn.hb_recv_ms);
        // While its SEND waits for room the shell does not read the connection, so its
        // heart-beats cannot arrive: it counts as alive.
        let last_recv_ms = if conn.parked.is_some() {
            now_ms
        } else {
            conn.last_recv_ms
        };
        let silent_ms = now_ms.saturating_sub(last_recv_ms);
        if silent_ms >= window {
            self.stats.heartbeat_timeouts += 1;
            let msg = format!(
                "no data from the client for {silent_ms} ms (heart-beat {} ms x grace {})",
                conn.hb_recv_ms, self.config.heartbeat.grace_factor
            );
            tracing::info!(conn = %conn_id, peer = %conn.peer, "{msg}");
            self.error_and_close(conn_id, &msg, None, "heart-beat timeout");
        } else {
            let at = last_recv_ms.saturating_add(window);
            self.set_timer(at, Timer::HeartBeatRecv(conn_id));
        }
    }

    /// Sends an ERROR frame, asks the shell to close, and forgets the connection.
    pub(super) fn error_and_close(
        &mut self,
        conn: ConnId,
        message: &str,
        receipt: Option<ByteString>,
        detail: &str,
    ) {
        if let Some(c) = self.conns.get(&conn) {
            tracing::debug!(conn = %conn, peer = %c.peer, "closing with ERROR: {message}");
        }
        self.stats.errors_sent += 1;
        self.emit_control(conn, error_frame(message, receipt, detail));
        self.close(conn);
    }

    /// Asks the shell to write what is queued for `conn` and close it, and forgets the
    /// connection. Its `auto` ack deliveries not yet reported written wait for the
    /// shell's last reports (see [`Output::Close`]).
    pub(super) fn close(&mut self, conn: ConnId) {
        self.outputs.push_back(Output::Close { conn });
        self.teardown(conn, true);
    }

    /// Forgets a connection: redelivers what it held, drops its subscriptions,
    /// transactions and temporary destinations. With `written_later`, the shell still
    /// writes what was queued: `auto` ack deliveries wait for its reports instead.
    pub(super) fn teardown(&mut self, conn_id: ConnId, written_later: bool) {
        let Some(mut conn) = self.conns.remove(&conn_id) else {
            return;
        };
        if conn.parked.is_some() {
            self.blocked_conns.retain(|c| *c != conn_id);
        }
        self.forget_held(conn_id);
        if conn.state == State::AwaitingConnect {
            self.forget_unauthenticated(&conn.peer);
        } else {
            self.sessions_current = self.sessions_current.saturating_sub(1);
        }
        let subs: Vec<SubKey> = conn.subs.values().copied().collect();
        for sub in subs {
            self.remove_subscription(sub);
        }
        if written_later && conn.inflight.iter().any(Option::is_some) {
            self.closing
                .insert(conn_id, std::mem::take(&mut conn.inflight));
        } else {
            self.give_back(conn.inflight.drain(..).flatten());
        }
        for ((kind, _), internal) in std::mem::take(&mut conn.temps) {
            self.delete_temporary(kind, internal);
        }
        self.run_drains();
    }
}

impl Broker {
    /// Returns `auto` ack deliveries that were never written to their queues.
    fn give_back(&mut self, unwritten: impl IntoIterator<Item = Unflushed>) {
        for u in unwritten {
            self.settle_inflight(&u.queue);
            self.requeue(u.queue, u.key, u.message, u.redeliveries + 1);
        }
    }

    /// `frames` more frames written to a connection the core has closed.
    fn closing_flushed(&mut self, conn: ConnId, frames: usize) {
        let Some(slots) = self.closing.get_mut(&conn) else {
            return;
        };
        let n = frames.min(slots.len());
        let written: Vec<Unflushed> = slots.drain(..n).flatten().collect();
        if !slots.iter().any(Option::is_some) {
            self.closing.remove(&conn);
        }
        for u in written {
            self.settle_inflight(&u.queue);
            self.persist_ack(&u.queue, &u.message);
        }
    }
}

/// The address part of a peer written `ip:port` or `[ipv6]:port` (or the whole string
/// when it has no port). Text only: the core never touches `std::net`.
pub(super) fn peer_address(peer: &str) -> String {
    match peer.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            host.to_owned()
        }
        _ => peer.to_owned(),
    }
}

/// Builds an ERROR frame; `message` must be one line.
pub(super) fn error_frame(message: &str, receipt: Option<ByteString>, detail: &str) -> Frame {
    let one_line: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let mut f = Frame::new(Command::Error).header("message", one_line);
    if let Some(r) = receipt {
        f = f.header("receipt-id", r);
    }
    f.header("content-type", "text/plain")
        .body(format!("{message}\n{detail}\n"))
}

/// Heart-beats are sent a little before the negotiated interval, so that network jitter
/// never makes a strict peer give up on us.
fn send_period(interval_ms: u64) -> u64 {
    (interval_ms - interval_ms / 10).max(1)
}

/// Reads a CONNECT `heart-beat:<cx>,<cy>`; an interval over `max_ms` (milliseconds) is
/// refused like a malformed one.
fn parse_heartbeat(value: &str, max_ms: u64) -> Result<(u64, u64), FrameError> {
    let bad = || FrameError::Fatal(format!("invalid heart-beat header: '{value}'"));
    let (a, b) = value.split_once(',').ok_or_else(bad)?;
    let cx = a.trim().parse::<u64>().map_err(|_| bad())?;
    let cy = b.trim().parse::<u64>().map_err(|_| bad())?;
    if cx > max_ms || cy > max_ms {
        return Err(FrameError::Fatal(format!(
            "invalid heart-beat header: '{value}' (the longest interval accepted is {max_ms} ms)"
        )));
    }
    Ok((cx, cy))
}
