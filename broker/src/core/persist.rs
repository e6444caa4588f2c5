//! Persistence requests: what the core asks the shell to write to the message store, and
//! the RECEIPTs that wait until it is synced.
//!
//! With a store ([`Broker::enable_persistence`]), every persistent message (`persistent:
//! true`) put into a queue (a `/queue/` or a durable subscription's) becomes an
//! [`Record::Enqueue`], and leaving it for good (ACK, auto-ack write, expiry, dead letter)
//! a [`Record::Ack`]; a COMMIT's operations become one [`Record::Commit`]; durable
//! subscriptions are recorded as they come and go. Non-persistent messages never make a
//! record. Each record goes out as [`Output::Persist`] with a ticket (increasing), and
//! the shell reports, with [`Broker::handle_synced`], the ticket through which everything
//! is on disk. The RECEIPT of a frame that made a record (a persistent SEND, a COMMIT, a
//! durable SUBSCRIBE) waits until then; so do the receipts after it on the same
//! connection, to keep their order, and a DISCONNECT.
//!
//! The store's size is counted here, as the bytes of the persistent messages held per
//! queue ([`Message::size_bytes`]), against `store.bytes_max` (see [`super::flow`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use super::ids::{ConnId, QueueKey};
use super::message::Message;
use super::{Broker, Output};
use crate::destination::Kind;
use crate::proto::{Command, Frame};
use crate::store::{FullPolicy, Record, StoredMessage};

/// What the core needs to know of `[store]`.
#[derive(Clone, Copy, Debug)]
pub struct PersistSettings {
    /// `store.bytes_max`.
    pub bytes_max: u64,
    /// `store.full_policy`.
    pub full_policy: FullPolicy,
}

/// A frame's answer waiting for its record to be synced.
#[derive(Debug)]
enum Held {
    Receipt(Frame),
    /// A DISCONNECT (with its receipt, if any): answered and closed once synced.
    Disconnect(Option<ByteString>),
}

/// The core's side of the store.
#[derive(Debug)]
pub(super) struct Persistence {
    pub(super) settings: PersistSettings,
    /// The next store id.
    next_id: u64,
    /// Bytes of persistent messages held, per queue holding them.
    pub(super) bytes: u64,
    /// The last ticket given out.
    ticket: u64,
    /// Everything through this ticket is synced.
    synced: u64,
    /// While a COMMIT is applied, its records gather here.
    batch: Option<Vec<Record>>,
    /// The ticket the frame being handled must wait for, if it made a record.
    frame_ticket: Option<u64>,
    /// Answers waiting, in ticket order.
    held: VecDeque<(u64, ConnId, Held)>,
    /// Answers waiting per connection, with the last ticket among them.
    held_per_conn: BTreeMap<ConnId, (usize, u64)>,
}

impl Broker {
    /// Gives the broker a store: from now on persistent messages make records
    /// ([`Output::Persist`]) and their receipts wait for [`Broker::handle_synced`]. Call
    /// before any connection opens, then [`Broker::restore`] what the store recovered.
    pub fn enable_persistence(&mut self, settings: PersistSettings) {
        self.persist = Some(Persistence {
            settings,
            next_id: 1,
            bytes: 0,
            ticket: 0,
            synced: 0,
            batch: None,
            frame_ticket: None,
            held: VecDeque::new(),
            held_per_conn: BTreeMap::new(),
        });
    }

    /// Bytes of persistent messages the store holds (0 without a store).
    pub fn store_bytes(&self) -> u64 {
        self.persist.as_ref().map_or(0, |p| p.bytes)
    }

    /// The shell has synced (or, with `sync = "interval_ms"`, written) every record through
    /// `ticket`: the answers waiting for them go out.
    pub fn handle_synced(&mut self, now_ms: u64, ticket: u64) {
        self.now_ms = now_ms;
        let Some(p) = self.persist.as_mut() else {
            return;
        };
        p.synced = p.synced.max(ticket);
        let mut released = Vec::new();
        while p.held.front().is_some_and(|(t, _, _)| *t <= p.synced) {
            if let Some((_, conn, held)) = p.held.pop_front() {
                if let Some(entry) = p.held_per_conn.get_mut(&conn) {
                    entry.0 -= 1;
                    if entry.0 == 0 {
                        p.held_per_conn.remove(&conn);
                    }
                }
                released.push((conn, held));
            }
        }
        for (conn, held) in released {
            if !self.conns.contains_key(&conn) {
                continue;
            }
            match held {
                Held::Receipt(frame) => self.emit_control(conn, frame),
                Held::Disconnect(receipt) => self.finish_disconnect(conn, receipt),
            }
        }
        self.retry_parked();
    }

    /// A fresh store id for a persistent message, when there is a store.
    pub(super) fn next_persist_id(&mut self, persistent: bool) -> Option<u64> {
        let p = self.persist.as_mut().filter(|_| persistent)?;
        let id = p.next_id;
        p.next_id += 1;
        Some(id)
    }

    /// Sets the next store id after a recovery.
    pub(super) fn set_next_persist_id(&mut self, next: u64) {
        if let Some(p) = self.persist.as_mut() {
            p.next_id = p.next_id.max(next);
        }
    }

    /// Whether `message` in `queue` is in the store.
    pub(super) fn is_stored(&self, queue: &QueueKey, message: &Message) -> bool {
        self.persist.is_some()
            && message.persist_id.is_some()
            && queue.kind == Kind::Queue
            && self.queues.get(queue).is_none_or(|q| !q.transient)
    }

    /// Records `message` entering `queues` (those that keep it on disk); false when none
    /// does.
    pub(super) fn persist_enqueue(&mut self, message: &Message, queues: &[QueueKey]) -> bool {
        let stored: Vec<Arc<str>> = queues
            .iter()
            .filter(|q| self.is_stored(q, message))
            .map(|q| q.name.clone())
            .collect();
        let (Some(id), false) = (message.persist_id, stored.is_empty()) else {
            return false;
        };
        let record = Record::Enqueue(StoredMessage {
            id,
            message_id: message.id.to_string(),
            destination: message.destination_text.to_string(),
            headers: message
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: message.body.clone(),
            priority: message.priority,
            expires_ms: message.expires_ms,
            broker_path: message.broker_path.iter().map(|p| p.to_string()).collect(),
            origin_id: message.origin_id.as_ref().map(|o| o.to_string()),
            queues: stored.clone(),
        });
        if let Some(p) = self.persist.as_mut() {
            p.bytes = p
                .bytes
                .saturating_add(message.size_bytes().saturating_mul(stored.len() as u64));
        }
        self.persist_record(record, true);
        true
    }

    /// Records `message` leaving `queue` for good, if it was stored there.
    pub(super) fn persist_ack(&mut self, queue: &QueueKey, message: &Message) {
        if !self.is_stored(queue, message) {
            return;
        }
        let Some(id) = message.persist_id else {
            return;
        };
        self.forget_stored_bytes(message);
        self.persist_record(
            Record::Ack {
                id,
                queue: queue.name.clone(),
            },
            false,
        );
    }

    /// `message`'s bytes leave the store's count (its queue went away with a record that
    /// says so).
    pub(super) fn forget_stored_bytes(&mut self, message: &Message) {
        if let Some(p) = self.persist.as_mut() {
            p.bytes = p.bytes.saturating_sub(message.size_bytes());
        }
    }

    /// Counts a recovered message's bytes (it is on disk already).
    pub(super) fn count_recovered_bytes(&mut self, message: &Message) {
        if let Some(p) = self.persist.as_mut() {
            p.bytes = p.bytes.saturating_add(message.size_bytes());
        }
    }

    /// Emits `record` (or adds it to the COMMIT being applied). With `hold`, the frame
    /// being handled answers only once it is synced.
    pub(super) fn persist_record(&mut self, record: Record, hold: bool) {
        let Some(p) = self.persist.as_mut() else {
            return;
        };
        if let Some(batch) = p.batch.as_mut() {
            batch.push(record);
            return;
        }
        p.ticket += 1;
        let ticket = p.ticket;
        if hold {
            p.frame_ticket = Some(ticket);
        }
        self.outputs.push_back(Output::Persist { ticket, record });
    }

    /// Starts gathering records into one COMMIT record.
    pub(super) fn begin_persist_batch(&mut self) {
        if let Some(p) = self.persist.as_mut() {
            p.batch = Some(Vec::new());
        }
    }

    /// Emits the gathered records as one COMMIT record, if there are any.
    pub(super) fn end_persist_batch(&mut self) {
        let Some(ops) = self.persist.as_mut().and_then(|p| p.batch.take()) else {
            return;
        };
        if ops.is_empty() {
            return;
        }
        let hold = ops.iter().any(|r| matches!(r, Record::Enqueue(_)));
        self.persist_record(Record::Commit(ops), hold);
    }

    /// A frame starts being handled: it has made no record yet.
    pub(super) fn start_frame_persistence(&mut self) {
        if let Some(p) = self.persist.as_mut() {
            p.frame_ticket = None;
        }
    }

    /// The ticket `conn`'s answer to the frame just handled must wait for, if any: its own
    /// record's, or the last one an earlier answer of the connection waits for.
    fn answer_ticket(&mut self, conn: ConnId) -> Option<u64> {
        let p = self.persist.as_mut()?;
        let own = p.frame_ticket.take().filter(|t| *t > p.synced);
        let earlier = p.held_per_conn.get(&conn).map(|(_, t)| *t);
        own.max(earlier)
    }

    fn hold(&mut self, ticket: u64, conn: ConnId, held: Held) {
        if let Some(p) = self.persist.as_mut() {
            p.held.push_back((ticket, conn, held));
            let entry = p.held_per_conn.entry(conn).or_insert((0, ticket));
            entry.0 += 1;
            entry.1 = entry.1.max(ticket);
        }
    }

    /// Sends the RECEIPT of the frame just handled, or holds it until its record (or an
    /// earlier held answer's) is synced.
    pub(super) fn answer_receipt(&mut self, conn: ConnId, receipt: ByteString) {
        let frame = Frame::new(Command::Receipt).header("receipt-id", receipt);
        self.answer_receipt_frame(conn, frame);
    }

    /// [`Self::answer_receipt`] with a RECEIPT frame of the caller's.
    pub(super) fn answer_receipt_frame(&mut self, conn: ConnId, frame: Frame) {
        match self.answer_ticket(conn) {
            Some(t) => self.hold(t, conn, Held::Receipt(frame)),
            None => self.emit_control(conn, frame),
        }
    }

    /// Handles a DISCONNECT now, or once the receipts it follows are out.
    pub(super) fn answer_disconnect(&mut self, conn: ConnId, receipt: Option<ByteString>) {
        match self.answer_ticket(conn) {
            Some(t) => self.hold(t, conn, Held::Disconnect(receipt)),
            None => self.finish_disconnect(conn, receipt),
        }
    }

    fn finish_disconnect(&mut self, conn: ConnId, receipt: Option<ByteString>) {
        if let Some(r) = receipt {
            self.emit_control(conn, Frame::new(Command::Receipt).header("receipt-id", r));
        }
        self.close(conn);
    }

    /// Why a persistent SEND to `dest_kind` cannot be stored now, if the store is full.
    pub(super) fn store_full(&self, dest_kind: Kind) -> Option<(u64, u64, FullPolicy)> {
        let p = self.persist.as_ref()?;
        let stored_kind =
            dest_kind == Kind::Queue || (dest_kind == Kind::Topic && !self.durables.is_empty());
        (stored_kind && p.bytes >= p.settings.bytes_max).then_some((
            p.bytes,
            p.settings.bytes_max,
            p.settings.full_policy,
        ))
    }

    /// Forgets the answers a closed connection still had waiting.
    pub(super) fn forget_held(&mut self, conn: ConnId) {
        if let Some(p) = self.persist.as_mut()
            && p.held_per_conn.remove(&conn).is_some()
        {
            p.held.retain(|(_, c, _)| *c != conn);
        }
    }
}
