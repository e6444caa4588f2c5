//! Producer flow control: a SEND that would take the broker past a memory limit waits.
//!
//! ActiveMQ's producer flow control stops reading from a producer whose destination is
//! full and answers an error only after `sendFailIfNoSpaceAfterTimeout`. The core does
//! the same without blocking anything: a SEND that finds the broker over
//! `limits.memory_bytes_max`, or its queue over `limits.queue_bytes_max` or
//! `limits.queue_messages_max`, is *parked* on its connection, the core asks the shell to
//! stop reading that connection ([`Output::PauseReading`]), and every later frame from it
//! waits behind the SEND, in order. Whenever the core has handled an event it retries the
//! parked connections, oldest first; a SEND that fits is then handled as if it had just
//! arrived (its RECEIPT follows), and the shell is told to read again
//! ([`Output::ResumeReading`]). A SEND still waiting after
//! `limits.send_fail_if_no_space_after_ms` gets an ERROR naming the limit (its receipt id
//! included), never silent loss, and the frames behind it go on.
//!
//! Other connections are not affected: consumers keep acknowledging (which frees the
//! room), and a producer to a destination with room is not held up by one without.

use std::collections::VecDeque;

use super::ids::{ConnId, QueueKey};
use super::session::{Parked, State, error_frame};
use super::{Broker, Output, Timer};
use crate::destination::Destination;
use crate::proto::{Command, Frame};

/// Why a SEND has to wait, for its ERROR if it waits too long.
enum NoRoom {
    Memory { used: u64, max: u64 },
    QueueBytes { queue: String, max: u64 },
    QueueMessages { queue: String, max: usize },
    Store { used: u64, max: u64 },
}

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoRoom::Memory { used, max } => write!(
                f,
                "the broker's memory limit is reached ({used} bytes held, \
                 limits.memory_bytes_max = {max})"
            ),
            NoRoom::QueueBytes { queue, max } => {
                write!(f, "queue {queue} is full (limits.queue_bytes_max = {max})")
            }
            NoRoom::Store { used, max } => write!(
                f,
                "the message store is full ({used} bytes of persistent messages held, \
                 store.bytes_max = {max})"
            ),
            NoRoom::QueueMessages { queue, max } => {
                write!(
                    f,
                    "queue {queue} is full (limits.queue_messages_max = {max})"
                )
            }
        }
    }
}

impl Broker {
    /// Parks `frame` if its connection already has frames waiting, or if it is a SEND
    /// with no room; false when it should be handled now.
    pub(super) fn park_if_needed(&mut self, conn_id: ConnId, frame: Frame) -> Option<Frame> {
        let limit = self.config.limits.blocked_frames_max;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Some(frame);
        };
        if let Some(parked) = conn.parked.as_mut() {
            // The first frame is the waiting SEND itself.
            if parked.frames.len() > limit {
                let msg = format!(
                    "too many frames sent while a SEND waits for room \
                     (limits.blocked_frames_max = {limit})"
                );
                self.error_and_close(conn_id, &msg, None, "producer flow control");
                return None;
            }
            parked.frames.push_back(frame);
            return None;
        }
        if conn.state != State::Connected || frame.command != Command::Send {
            return Some(frame);
        }
        match self.no_room_for(&frame) {
            None => return Some(frame),
            Some(why @ NoRoom::Store { .. }) if self.store_refuses_at_once() => {
                self.refuse_send(conn_id, &frame, &why.to_string());
                return None;
            }
            Some(_) => {}
        }
        let since_ms = self.now_ms;
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.parked = Some(Parked {
                since_ms,
                frames: VecDeque::from([frame]),
            });
        }
        self.stats.sends_blocked += 1;
        self.blocked_conns.push_back(conn_id);
        self.outputs
            .push_back(Output::PauseReading { conn: conn_id });
        let at = since_ms.saturating_add(self.config.limits.send_fail_if_no_space_after_ms);
        self.set_timer(at, Timer::SendBlocked(conn_id));
        None
    }

    /// Why a SEND could not be taken now, if it could not. Only what is cheap to find is
    /// checked: the broker-wide memory, and for a plain queue its depth in bytes and
    /// messages. Everything else about the frame is checked when it is handled.
    fn no_room_for(&self, frame: &Frame) -> Option<NoRoom> {
        let limits = &self.config.limits;
        let used = self.memory.used_bytes();
        if used >= limits.memory_bytes_max {
            return Some(NoRoom::Memory {
                used,
                max: limits.memory_bytes_max,
            });
        }
        let dest = Destination::parse(frame.headers.get("destination")?).ok()?;
        if frame.headers.get("persistent") == Some("true")
            && !dest.kind.is_temporary()
            && let Some((used, max, _)) = self.store_full(dest.kind)
        {
            return Some(NoRoom::Store { used, max });
        }
        if !dest.kind.is_queue() || dest.kind.is_temporary() {
            return None;
        }
        let key = QueueKey::queue(&dest.name);
        let queue = self.queues.get(&key)?;
        if queue.pending_bytes() >= limits.queue_bytes_max {
            return Some(NoRoom::QueueBytes {
                queue: key.display().to_string(),
                max: limits.queue_bytes_max,
            });
        }
        if self.queue_len(&key) >= limits.queue_messages_max {
            return Some(NoRoom::QueueMessages {
                queue: key.display().to_string(),
                max: limits.queue_messages_max,
            });
        }
        None
    }

    /// Retries every parked connection, oldest first: handles its frames in order until a
    /// SEND still finds no room.
    pub(super) fn retry_parked(&mut self) {
        if self.blocked_conns.is_empty() || self.retrying {
            return;
        }
        self.retrying = true;
        let order: Vec<ConnId> = self.blocked_conns.iter().copied().collect();
        for conn_id in order {
            self.resume_frames(conn_id, false);
        }
        self.retrying = false;
    }

    /// Handles `conn_id`'s parked frames while there is room. With `expire`, a SEND at the
    /// front that has waited its full time is refused with an ERROR first.
    fn resume_frames(&mut self, conn_id: ConnId, expire: bool) {
        let mut expire = expire;
        let limit_ms = self.config.limits.send_fail_if_no_space_after_ms;
        loop {
            let Some(parked) = self.conns.get_mut(&conn_id).and_then(|c| c.parked.as_mut()) else {
                self.blocked_conns.retain(|c| *c != conn_id);
                return;
            };
            let since_ms = parked.since_ms;
            let Some(frame) = parked.frames.pop_front() else {
                self.unpark(conn_id);
                return;
            };
            let now_ms = self.now_ms;
            if frame.command == Command::Send
                && let Some(why) = self.no_room_for(&frame)
            {
                let waited = now_ms.saturating_sub(since_ms);
                if matches!(why, NoRoom::Store { .. }) && self.store_refuses_at_once() {
                    self.refuse_send(conn_id, &frame, &why.to_string());
                    continue;
                }
                let Some(parked) = self.conns.get_mut(&conn_id).and_then(|c| c.parked.as_mut())
                else {
                    return;
                };
                if !(expire && waited >= limit_ms) {
                    parked.frames.push_front(frame);
                    return;
                }
                expire = false;
                parked.since_ms = now_ms;
                let msg = format!(
                    "{why}; the SEND waited {waited} ms for room \
                     (limits.send_fail_if_no_space_after_ms = {limit_ms})"
                );
                self.refuse_send(conn_id, &frame, &msg);
                continue;
            }
            // Whatever comes next starts its own wait from now.
            if let Some(parked) = self.conns.get_mut(&conn_id).and_then(|c| c.parked.as_mut()) {
                parked.since_ms = now_ms;
            }
            self.process_frame(conn_id, frame);
        }
    }

    /// Whether a persistent SEND that finds the store full gets an ERROR at once
    /// (`store.full_policy = "error"`) rather than waiting.
    fn store_refuses_at_once(&self) -> bool {
        self.persist
            .as_ref()
            .is_some_and(|p| p.settings.full_policy == crate::store::FullPolicy::Error)
    }

    /// Answers a SEND that cannot be taken with an ERROR naming `why` (its receipt id
    /// included); the session stays open.
    fn refuse_send(&mut self, conn_id: ConnId, frame: &Frame, why: &str) {
        let receipt = frame.headers.get_shared("receipt").cloned();
        self.stats.sends_refused += 1;
        self.stats.errors_sent += 1;
        let error = error_frame(why, receipt, "the SEND frame was refused");
        self.emit_control(conn_id, error);
    }

    /// Every parked frame of `conn_id` is handled: read from it again.
    fn unpark(&mut self, conn_id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.parked = None;
            // The client's heart-beats sat unread in the socket meanwhile.
            conn.last_recv_ms = self.now_ms;
            self.outputs
                .push_back(Output::ResumeReading { conn: conn_id });
        }
        self.blocked_conns.retain(|c| *c != conn_id);
    }

    /// The `send_fail_if_no_space_after_ms` deadline of a parked SEND passed.
    pub(super) fn send_blocked_deadline(&mut self, conn_id: ConnId) {
        self.resume_frames(conn_id, true);
        // A later SEND that waits in turn gets its own deadline.
        if let Some(p) = self.conns.get(&conn_id).and_then(|c| c.parked.as_ref()) {
            let at = p
                .since_ms
                .saturating_add(self.config.limits.send_fail_if_no_space_after_ms);
            self.set_timer(at, Timer::SendBlocked(conn_id));
        }
    }
}
