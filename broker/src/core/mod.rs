//! The broker state machine (sans-IO).
//!
//! [`Broker`] owns every session, subscription, queue and topic. Its shell (the tokio
//! server, or a test) feeds it events through `handle_*` methods, each taking the current
//! time `now_ms` (epoch milliseconds), and then drains [`Output`]s with
//! [`Broker::poll_output`] and asks [`Broker::poll_timeout`] when to call
//! [`Broker::handle_timeout`] next. The core never reads a clock, never spawns and never
//! touches a socket, so the same code runs in production and in the simulator and every
//! run is reproducible from its inputs.
//!
//! # Flow control
//!
//! Every frame the core emits for a connection counts against that connection's
//! `limits.outbound_frames_max` until the shell reports it written with
//! [`Broker::handle_flushed`]. Queue messages are only dispatched to a connection with
//! room, so a slow consumer holds back only its own share; topic messages that find no
//! room trigger the [`SlowConsumerPolicy`]. Queue messages delivered in `auto` ack mode
//! count as consumed only once written: if the connection dies first they are redelivered.

mod config;
mod dispatch;
mod flow;
mod ids;
pub mod interbroker;
pub mod interbroker_headers;
pub mod memory;
mod message;
mod naming;
mod persist;
mod request;
mod session;
mod transaction;
mod work;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

pub use config::{CoreConfig, HeartbeatConfig, Limits, SlowConsumerPolicy};
pub use ids::ConnId;
pub use message::{DEFAULT_PRIORITY, Delivery, DropReason, Message, RECEIVERS_HEADER};
pub use persist::PersistSettings;
pub use work::Work;

use crate::proto::{Frame, Version};
use crate::security::Security;
use dispatch::{Durables, Queue, Subscription, TopicIndex};
use ids::{QueueKey, SubKey};
use session::Conn;

/// A frame on its way to a connection.
#[derive(Clone, Debug)]
pub enum OutFrame {
    /// CONNECTED, RECEIPT or ERROR.
    Control(Frame),
    /// A MESSAGE for a subscription.
    Message(Delivery),
    /// A heart-beat end-of-line.
    HeartBeat,
}

/// What the core asks its shell to do.
#[derive(Clone, Debug)]
pub enum Output {
    /// Write `frame` to `conn`, encoded for `version`. Report it written with
    /// [`Broker::handle_flushed`].
    Send {
        /// Target connection.
        conn: ConnId,
        /// Protocol version to encode with.
        version: Version,
        /// The frame.
        frame: OutFrame,
    },
    /// Stop reading from `conn`: a SEND from it waits for room (producer flow control).
    /// Frames already read still come in; the core keeps them in order.
    PauseReading {
        /// The connection to stop reading.
        conn: ConnId,
    },
    /// Read from `conn` again.
    ResumeReading {
        /// The connection to read again.
        conn: ConnId,
    },
    /// Append `record` to the message store (only with a store: see
    /// [`Broker::enable_persistence`]). Write records in ticket order, and report with
    /// [`Broker::handle_synced`] the ticket through which they are synced: RECEIPTs for
    /// persistent messages wait for it.
    Persist {
        /// Increases by one with every record.
        ticket: u64,
        /// What to write.
        record: crate::store::Record,
    },
    /// Write what is queued for `conn`, then close it. The core has already forgotten the
    /// connection, except for the `auto` ack queue messages it emitted and has not seen
    /// written: the shell reports the frames it still writes ([`Broker::handle_flushed`])
    /// and then the close ([`Broker::handle_close`]), and those messages count as
    /// consumed or go back to their queue accordingly. Other events for it are ignored.
    Close {
        /// The connection to close.
        conn: ConnId,
    },
}

/// Counters for reports and logs. All monotonic except the gauges noted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub connections_opened: u64,
    /// Sessions that completed CONNECT.
    pub sessions_connected: u64,
    /// Gauge: connections currently open.
    pub connections_current: u64,
    /// Gauge: connections open that have not completed CONNECT.
    pub connections_unauthenticated: u64,
    /// Connections refused by `connections_max` or the unauthenticated caps.
    pub connections_refused: u64,
    /// SEND frames accepted (transactional ones when committed).
    pub messages_received: u64,
    /// MESSAGE frames emitted.
    pub messages_delivered: u64,
    /// Messages dropped because they expired.
    pub messages_expired: u64,
    /// Topic messages dropped for slow consumers.
    pub messages_dropped_slow: u64,
    /// Messages moved to the dead-letter queue.
    pub messages_dead_lettered: u64,
    /// Messages dropped in a RabbitMQ-convention vhost as RabbitMQ drops them: refused
    /// (NACK `requeue:false`, or too many redeliveries) rather than dead-lettered, or
    /// sent to an `/amq/queue/` that does not exist.
    pub messages_discarded: u64,
    /// Deliveries that were redeliveries.
    pub messages_redelivered: u64,
    /// SENDs refused (authorization, full queue).
    pub sends_refused: u64,
    /// SENDs that had to wait for room (producer flow control).
    pub sends_blocked: u64,
    /// Gauge: connections whose SEND waits for room now.
    pub producers_blocked_current: u64,
    /// Gauge: bytes of messages (and partial frames) held, against
    /// `limits.memory_bytes_max`.
    pub memory_used_bytes: u64,
    /// ERROR frames sent.
    pub errors_sent: u64,
    /// Users, groups and authorization reloaded while running.
    pub security_reloads: u64,
    /// Virtual hosts (and their exchanges and queues) reloaded while running.
    pub vhost_reloads: u64,
    /// Connections closed for missing heart-beats.
    pub heartbeat_timeouts: u64,
    /// Connections closed by the slow-consumer policy.
    pub slow_consumer_disconnects: u64,
    /// Gauge: queues that exist now.
    pub queues_current: u64,
    /// Gauge: messages waiting in queues (not yet dispatched).
    pub queued_current: u64,
    /// MESSAGE frames emitted to network (demand) subscriptions, to be forwarded.
    pub messages_forwarded: u64,
    /// SENDs from bridges dropped because the same message had already arrived.
    pub network_duplicates_dropped: u64,
    /// Gauge: subscriptions open (all connections), network subscriptions included.
    pub subscriptions_current: u64,
    /// Gauge: network (demand) subscriptions open.
    pub network_subscriptions_current: u64,
    /// What the core has done (see [`Work`]).
    pub work: Work,
    /// Simulated CPU time the shell's cost model charged, in nanoseconds (0 without a
    /// cost profile; set by the shell, not the core).
    pub cpu_busy_ns: u64,
}

/// One queue's depth, as [`Broker::queue_depths`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    /// The queue's name with its prefix (`/queue/…`, `/temp-queue/…`).
    pub destination: String,
    /// Messages waiting (not yet dispatched).
    pub messages: u64,
    /// Consumers attached.
    pub consumers: u64,
}

/// A timer the core set for itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// CONNECT must have arrived.
    ConnectDeadline(ConnId),
    /// Time to check whether a heart-beat must be sent.
    HeartBeatSend(ConnId),
    /// Time to check whether the peer went silent.
    HeartBeatRecv(ConnId),
    /// A queued message may have expired.
    Expiry(QueueKey),
    /// A SEND parked by producer flow control may have waited long enough.
    SendBlocked(ConnId),
}

/// The broker state machine. See the module documentation.
pub struct Broker {
    config: CoreConfig,
    security: Security,
    /// Epoch milliseconds at construction; part of every id so that ids differ between
    /// incarnations of a broker with the same name.
    incarnation: u64,
    conns: BTreeMap<ConnId, Conn>,
    /// Connections the core closed while `auto` ack deliveries to them were not yet
    /// reported written: one slot per frame still unreported, as in `Conn::inflight`,
    /// until the shell reports the close (see [`Output::Close`]).
    closing: BTreeMap<ConnId, VecDeque<Option<session::Unflushed>>>,
    subs: BTreeMap<SubKey, Subscription>,
    queues: BTreeMap<QueueKey, Queue>,
    /// Messages of each queue delivered and not yet acknowledged (client modes) or not yet
    /// reported written (auto mode). They still belong to the
    /// queue (a consumer that leaves gives them back), so they count against its
    /// `queue_messages_max`, as ActiveMQ's queue size counts dispatched messages.
    inflight: BTreeMap<QueueKey, usize>,
    topics: TopicIndex,
    /// Wildcard subscriptions on queues, attached to every matching queue as it appears.
    queue_wildcard_subs: BTreeSet<SubKey>,
    /// Subscriptions to consumer advisories.
    advisory_subs: BTreeSet<SubKey>,
    /// Network (demand) subscriptions open.
    network_subs: usize,
    /// Connections waiting for CONNECT, per peer IP address.
    unauthenticated: BTreeMap<String, usize>,
    /// Connections waiting for CONNECT, in all.
    unauthenticated_total: usize,
    /// Connections that completed CONNECT and are still open.
    sessions_current: usize,
    /// Network messages seen recently, to drop duplicates.
    audit: interbroker::Audit,
    timers: BTreeSet<(u64, u64, Timer)>,
    timer_seq: u64,
    outputs: VecDeque<Output>,
    /// The time of the event being handled.
    now_ms: u64,
    /// Subscriptions that may have become ready and must be drained.
    pending_drains: Vec<SubKey>,
    /// Broker-wide arrival counter for queue entries.
    next_entry: u64,
    /// Increases with every dispatch; the least recently served consumer wins ties.
    dispatch_clock: u64,
    next_sub: u64,
    next_message: u64,
    next_delivery: u64,
    stats: Stats,
    /// Messages dropped on purpose, kept only with `config.record_drops`.
    dropped: Vec<(SharedMessage, DropReason)>,
    /// Bytes held by messages (and the shell's partial frames).
    memory: Arc<memory::MemoryGauge>,
    /// Connections with a parked SEND, oldest first (see [`flow`]).
    blocked_conns: VecDeque<ConnId>,
    /// Set while parked connections are being retried.
    retrying: bool,
    /// Operations performed, for a shell that models CPU.
    work: Work,
    /// The store's side in the core, when the broker has a store.
    persist: Option<persist::Persistence>,
    /// Durable topic subscriptions by (client-id, subscription name).
    durables: Durables,
    /// Virtual hosts (none: one namespace, ActiveMQ's names).
    vhosts: crate::vhost::Vhosts,
    /// RabbitMQ queues declared per vhost (by configuration or by `/queue/` use), which
    /// `/amq/queue/` may name.
    declared: BTreeSet<(crate::vhost::VhostId, String)>,
    /// What translating the frame being handled found (see [`naming`]).
    routed: Option<naming::Routed>,
}

impl Broker {
    /// A broker with no connections. `now_ms` marks its incarnation.
    pub fn new(config: CoreConfig, security: Security, now_ms: u64) -> Broker {
        let vhosts = crate::vhost::Vhosts::new(&config.vhosts, config.default_vhost.as_deref());
        let declared = vhosts
            .iter()
            .flat_map(|(id, v)| v.queues.iter().map(move |q| (id, q.clone())))
            .collect();
        Broker {
            config,
            security,
            incarnation: now_ms,
            conns: BTreeMap::new(),
            closing: BTreeMap::new(),
            subs: BTreeMap::new(),
            queues: BTreeMap::new(),
            inflight: BTreeMap::new(),
            topics: TopicIndex::default(),
            queue_wildcard_subs: BTreeSet::new(),
            advisory_subs: BTreeSet::new(),
            network_subs: 0,
            unauthenticated: BTreeMap::new(),
            unauthenticated_total: 0,
            sessions_current: 0,
            audit: interbroker::Audit::default(),
            timers: BTreeSet::new(),
            timer_seq: 0,
            outputs: VecDeque::new(),
            now_ms,
            pending_drains: Vec::new(),
            next_entry: 0,
            dispatch_clock: 0,
            next_sub: 0,
            next_message: 0,
            next_delivery: 0,
            stats: Stats::default(),
            dropped: Vec::new(),
            memory: Arc::new(memory::MemoryGauge::default()),
            blocked_conns: VecDeque::new(),
            retrying: false,
            work: Work::default(),
            persist: None,
            durables: Default::default(),
            vhosts,
            declared,
            routed: None,
        }
    }

    /// The gauge that counts held bytes against `limits.memory_bytes_max`; the shell
    /// charges partial frames to it.
    pub fn memory_gauge(&self) -> Arc<memory::MemoryGauge> {
        self.memory.clone()
    }

    /// Every queue with the messages waiting in it and its consumers, in name order (for
    /// the metrics endpoint; linear in the number of queues).
    pub fn queue_depths(&self) -> Vec<QueueDepth> {
        self.queues
            .iter()
            .map(|(key, q)| QueueDepth {
                destination: format!("{}{}", key.kind.prefix(), key.name),
                messages: q.pending_len() as u64,
                consumers: q.consumer_count() as u64,
            })
            .collect()
    }

    /// The configuration in use.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.connections_current = self.conns.len() as u64;
        s.connections_unauthenticated = self.unauthenticated_total as u64;
        s.queues_current = self.queues.len() as u64;
        s.queued_current = self.queues.values().map(|q| q.pending_len() as u64).sum();
        s.subscriptions_current = self.subs.len() as u64;
        s.network_subscriptions_current = self.network_subs as u64;
        s.producers_blocked_current = self.blocked_conns.len() as u64;
        s.memory_used_bytes = self.memory.used_bytes();
        s.work = self.work;
        s
    }

    /// What the core has done so far (monotonic counters; see [`Work`]).
    pub fn work(&self) -> Work {
        self.work
    }

    /// Number of subscriptions currently open (all connections).
    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    /// Messages waiting (undispatched) in the queue named `name`, if it exists.
    pub fn queue_depth(&self, name: &str) -> Option<usize> {
        self.queues
            .get(&QueueKey::queue(name))
            .map(Queue::pending_len)
    }

    /// How many outputs are waiting for [`Broker::poll_output`].
    #[must_use]
    pub fn outputs_pending(&self) -> usize {
        self.outputs.len()
    }

    /// The next output, if any. Call until `None` after every `handle_*`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Broker::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// Advances timers: heart-beats, dead peers, CONNECT deadlines, message expiry.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.work.events += 1;
        // Only the timers due when the call began fire in it: one that a handler sets at
        // or before `now_ms` waits for the next call, so no timer can keep this loop (and
        // with it every connection) busy for good.
        let mut due = Vec::new();
        while self.timers.first().is_some_and(|(at, _, _)| *at <= now_ms) {
            if let Some((_, _, timer)) = self.timers.pop_first() {
                due.push(timer);
            }
        }
        for timer in due {
            match timer {
                Timer::ConnectDeadline(conn) => self.connect_deadline(now_ms, conn),
                Timer::HeartBeatSend(conn) => self.heartbeat_send_check(now_ms, conn),
                Timer::HeartBeatRecv(conn) => self.heartbeat_recv_check(now_ms, conn),
                Timer::Expiry(key) => self.expire_queue(now_ms, &key),
                Timer::SendBlocked(conn) => self.send_blocked_deadline(conn),
            }
        }
        self.retry_parked();
    }

    fn set_timer(&mut self, at_ms: u64, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at_ms, self.timer_seq, timer));
    }

    fn message_id(&mut self) -> ByteString {
        self.next_message += 1;
        ByteString::from(format!(
            "ID:{}-{}-{}",
            self.config.broker_name, self.incarnation, self.next_message
        ))
    }

    /// Queues `frame` for `conn` and counts it against the connection's outbound room.
    fn emit(&mut self, conn_id: ConnId, frame: OutFrame) {
        self.emit_tracked(conn_id, frame, None);
    }

    fn emit_control(&mut self, conn: ConnId, frame: Frame) {
        self.emit(conn, OutFrame::Control(frame));
    }
}

/// Shared handle to a message, as queues and deliveries hold it.
pub(crate) type SharedMessage = Arc<Message>;
