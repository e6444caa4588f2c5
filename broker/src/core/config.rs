//! Settings of the broker core. Every limit has its unit last in its name.

use serde::{Deserialize, Serialize};

use crate::proto::FrameLimits;
use crate::toml_config::{InvalidSetting, KeyPath, positive};
use crate::vhost::VhostConfig;

/// Everything the sans-IO core needs to know, with production defaults.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// Name of this broker: shown in CONNECTED `server`, part of message ids, and the
    /// broker's identity in a network of brokers. Must be unique within a network.
    pub broker_name: String,
    /// Size and count limits.
    pub limits: Limits,
    /// Heart-beat negotiation and dead-peer detection.
    pub heartbeat: HeartbeatConfig,
    /// What to do with a slow consumer (see [`SlowConsumerPolicy`]).
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// How long a connection may stay over `limits.outbound_frames_max` (while topic
    /// messages keep coming, up to `limits.outbound_burst_frames_max` more) before the
    /// slow-consumer policy applies to it.
    pub slow_consumer_grace_ms: u64,
    /// Queue that receives messages NACKed with `requeue:false` or redelivered more than
    /// `limits.redeliveries_max` times (ActiveMQ's name, so ActiveMQ users find it).
    pub dead_letter_queue: String,
    /// Default `activemq.prefetchSize` for queue subscriptions in client ack modes.
    pub queue_prefetch_default: usize,
    /// Default prefetch for topic subscriptions in client ack modes.
    pub topic_prefetch_default: usize,
    /// `[[core.vhosts]]`: virtual hosts, each an isolated namespace with its naming
    /// convention (see [`crate::vhost`]). None (the default): one namespace, ActiveMQ's
    /// names, and CONNECT's `host` is ignored.
    pub vhosts: Vec<VhostConfig>,
    /// The vhost a CONNECT without `host` gets (RabbitMQ's `/` is usual). Without it,
    /// clients must name a vhost.
    pub default_vhost: Option<String>,
    /// Simulator only: keep every message the core drops on purpose (expiry, slow
    /// consumer, refusal, dead-letter) for [`Broker::take_dropped`](super::Broker), so
    /// that a checker can explain losses by evidence. Never read from a configuration
    /// file; off by default, since the record grows with every drop.
    #[serde(skip)]
    #[doc(hidden)]
    pub record_drops: bool,
    /// Test only: silently drop the SEND with this number (counted from 1 by each
    /// `Broker`, so once per incarnation), as a bug would, without any record. Never read from a
    /// configuration file; off by default.
    #[serde(skip)]
    #[doc(hidden)]
    pub test_drop_send_number: Option<u64>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            broker_name: "stampede".to_owned(),
            limits: Limits::default(),
            heartbeat: HeartbeatConfig::default(),
            slow_consumer_policy: SlowConsumerPolicy::Disconnect,
            slow_consumer_grace_ms: 5_000,
            dead_letter_queue: "ActiveMQ.DLQ".to_owned(),
            queue_prefetch_default: 1000,
            topic_prefetch_default: 32767,
            vhosts: Vec::new(),
            default_vhost: None,
            record_drops: false,
            test_drop_send_number: None,
        }
    }
}

/// Named limits. Every queue in the broker is bounded by one of these.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Whole frame (command line, headers and body) in bytes.
    pub frame_bytes_max: usize,
    /// Header lines in one frame.
    pub header_count_max: usize,
    /// Bytes in one header line.
    pub header_line_bytes_max: usize,
    /// Bytes in one frame body.
    pub body_bytes_max: usize,
    /// Sessions (connections that completed CONNECT) open at once; a CONNECT beyond it
    /// gets an ERROR. Connections still waiting for CONNECT do not count here.
    pub connections_max: usize,
    /// Connections open at once that have not completed CONNECT yet; one more is closed
    /// with an ERROR at once. Each gets `connect_timeout_ms` to send CONNECT.
    pub unauthenticated_connections_max: usize,
    /// Connections from one IP address that have not completed CONNECT yet, so that one
    /// address cannot take every `unauthenticated_connections_max` slot. A whole rack or a
    /// NAT'd fleet shares one address while it reconnects: keep it above such a group.
    pub unauthenticated_connections_per_address_max: usize,
    /// Subscriptions one connection may hold. An MCollective `mco` client holds one reply
    /// subscription per request still inside its window (a reply queue per request), so
    /// 1,000 requests a second with a 10 s timeout is 10,000; ActiveMQ and RabbitMQ set no
    /// such limit by default.
    pub subscriptions_per_connection_max: usize,
    /// Subscriptions one connection may hold when it is a network connector making
    /// demand subscriptions (one per remote consumer with `conduit_subscriptions =
    /// false`: thousands for an MCollective fleet).
    pub network_subscriptions_per_connection_max: usize,
    /// Open transactions one connection may hold.
    pub transactions_per_connection_max: usize,
    /// Frames (SEND and ACK) buffered in one open transaction.
    pub transaction_frames_max: usize,
    /// Queues and topics that may exist at once.
    pub destinations_max: usize,
    /// Messages one queue may hold, waiting or delivered and not yet acknowledged (or, in
    /// `auto` mode, not yet written); a SEND
    /// to a queue this full waits for room (producer flow control), then is refused after
    /// `send_fail_if_no_space_after_ms`.
    pub queue_messages_max: usize,
    /// Bytes of waiting messages one queue may hold before SENDs to it wait for room.
    pub queue_bytes_max: u64,
    /// Bytes the broker may hold in messages (queued, unacknowledged, in open
    /// transactions and in outbound buffers) and partial frames before every SEND waits
    /// for room, as ActiveMQ's memory limit and producer flow control do.
    pub memory_bytes_max: u64,
    /// How long a SEND may wait for room before it is refused with an ERROR (ActiveMQ's
    /// `sendFailIfNoSpaceAfterTimeout`).
    pub send_fail_if_no_space_after_ms: u64,
    /// Frames a connection may send while one of its SENDs waits for room (they wait
    /// behind it, in order); one more closes the connection with an ERROR.
    pub blocked_frames_max: usize,
    /// Frames queued towards one connection that it has not yet taken off the wire.
    /// Queue messages are only dispatched below it.
    pub outbound_frames_max: usize,
    /// Topic messages that may queue beyond `outbound_frames_max` during the
    /// slow-consumer grace period, so that a consumer that is only briefly behind loses
    /// nothing.
    pub outbound_burst_frames_max: usize,
    /// Upper bound on a subscription's `activemq.prefetchSize`.
    pub prefetch_max: usize,
    /// A new connection must send CONNECT within this time.
    pub connect_timeout_ms: u64,
    /// Deliveries of one message before it goes to the dead-letter queue.
    pub redeliveries_max: u32,
    /// Messages from network bridges remembered to drop duplicates (see
    /// [`interbroker`](super::interbroker)).
    pub network_audit_messages_max: usize,
    /// Consumer advisories that may wait for one advisory subscriber before its
    /// connection is closed.
    pub advisory_backlog_messages_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let frame = FrameLimits::default();
        Limits {
            frame_bytes_max: frame.frame_bytes_max,
            header_count_max: frame.header_count_max,
            header_line_bytes_max: frame.header_line_bytes_max,
            body_bytes_max: frame.body_bytes_max,
            connections_max: 10_000,
            unauthenticated_connections_max: 10_000,
            unauthenticated_connections_per_address_max: 2_000,
            subscriptions_per_connection_max: 10_000,
            network_subscriptions_per_connection_max: 100_000,
            transactions_per_connection_max: 100,
            transaction_frames_max: 10_000,
            destinations_max: 100_000,
            queue_messages_max: 100_000,
            queue_bytes_max: 256 * 1024 * 1024,
            memory_bytes_max: 1024 * 1024 * 1024,
            send_fail_if_no_space_after_ms: 30_000,
            blocked_frames_max: 10_000,
            outbound_frames_max: 1_000,
            outbound_burst_frames_max: 1_000,
            prefetch_max: 32_767,
            connect_timeout_ms: 30_000,
            redeliveries_max: 6,
            network_audit_messages_max: 65_536,
            advisory_backlog_messages_max: 100_000,
        }
    }
}

impl Limits {
    /// The subset of limits the frame decoder enforces.
    pub fn frame(&self) -> FrameLimits {
        FrameLimits {
            frame_bytes_max: self.frame_bytes_max,
            header_count_max: self.header_count_max,
            header_line_bytes_max: self.header_line_bytes_max,
            body_bytes_max: self.body_bytes_max,
        }
    }
}

/// Heart-beat settings. The broker accepts the intervals a client proposes, as ActiveMQ
/// does (it answers `heart-beat:<cy>,<cx>`), raised to at least `interval_ms_min`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Shortest interval the broker agrees to, in either direction.
    pub interval_ms_min: u64,
    /// Longest interval a client may propose in either direction; a CONNECT that asks for
    /// more gets an ERROR (`invalid heart-beat header`), as ActiveMQ answers a value it
    /// cannot read. It keeps every heart-beat deadline far from the end of `u64` time.
    pub interval_ms_max: u64,
    /// A client is declared dead after `grace_factor` × its send interval of silence.
    pub grace_factor: f64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_ms_min: 1_000,
            interval_ms_max: 86_400_000,
            grace_factor: 1.5,
        }
    }
}

/// What happens to a slow consumer: a connection that has had more than
/// `limits.outbound_frames_max` frames waiting for longer than `slow_consumer_grace_ms`,
/// or more than `outbound_frames_max + outbound_burst_frames_max` at any time, when
/// another topic message arrives for it. Queue messages never trigger it: they wait in
/// their queue or go to other consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumerPolicy {
    /// Send an ERROR and close the connection; its unacknowledged queue messages are
    /// redelivered to other consumers.
    Disconnect,
    /// Keep the connection and drop topic messages for it (counted). Queue messages are
    /// never dropped: they wait in the queue or go to other consumers.
    DropTopicMessages,
}

impl CoreConfig {
    /// Checks `[core]`: a usable broker name, non-zero limits, a grace factor of at least
    /// 1, a concrete dead-letter queue. Paths in errors are relative to `[core]`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let name = &self.broker_name;
        if name.is_empty() {
            return Err(InvalidSetting::new(
                KeyPath::root().key("broker_name"),
                "the broker name is empty",
            ));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        {
            return Err(InvalidSetting::new(
                KeyPath::root().key("broker_name"),
                format!("{name:?} must not contain whitespace, control characters or `:`"),
            ));
        }
        self.limits.validate().map_err(|e| e.within("limits"))?;
        self.heartbeat
            .validate()
            .map_err(|e| e.within("heartbeat"))?;
        check_queue_name(&self.dead_letter_queue).map_err(|message| {
            InvalidSetting::new(KeyPath::root().key("dead_letter_queue"), message)
        })?;
        positive(self.queue_prefetch_default, "queue_prefetch_default")?;
        positive(self.topic_prefetch_default, "topic_prefetch_default")?;
        crate::vhost::validate(&self.vhosts, self.default_vhost.as_deref())
    }
}

impl Limits {
    /// Checks `[core.limits]`: every limit except `transactions_per_connection_max` (where
    /// zero disables transactions) and `redeliveries_max` (where zero means no redelivery)
    /// must be greater than zero.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        positive(self.frame_bytes_max, "frame_bytes_max")?;
        positive(self.header_count_max, "header_count_max")?;
        positive(self.header_line_bytes_max, "header_line_bytes_max")?;
        positive(self.body_bytes_max, "body_bytes_max")?;
        positive(self.connections_max, "connections_max")?;
        positive(
            self.unauthenticated_connections_max,
            "unauthenticated_connections_max",
        )?;
        positive(
            self.unauthenticated_connections_per_address_max,
            "unauthenticated_connections_per_address_max",
        )?;
        positive(
            self.subscriptions_per_connection_max,
            "subscriptions_per_connection_max",
        )?;
        positive(
            self.network_subscriptions_per_connection_max,
            "network_subscriptions_per_connection_max",
        )?;
        positive(self.transaction_frames_max, "transaction_frames_max")?;
        positive(self.destinations_max, "destinations_max")?;
        positive(self.queue_messages_max, "queue_messages_max")?;
        positive(self.queue_bytes_max, "queue_bytes_max")?;
        positive(self.memory_bytes_max, "memory_bytes_max")?;
        positive(self.blocked_frames_max, "blocked_frames_max")?;
        positive(self.outbound_frames_max, "outbound_frames_max")?;
        positive(self.prefetch_max, "prefetch_max")?;
        positive(
            self.network_audit_messages_max,
            "network_audit_messages_max",
        )?;
        positive(
            self.advisory_backlog_messages_max,
            "advisory_backlog_messages_max",
        )?;
        positive(self.connect_timeout_ms, "connect_timeout_ms")
    }
}

impl HeartbeatConfig {
    /// Checks `[core.heartbeat]`: a dead-peer grace factor of at least one interval.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.interval_ms_max < self.interval_ms_min {
            return Err(InvalidSetting::new(
                KeyPath::root().key("interval_ms_max"),
                format!(
                    "must be at least interval_ms_min ({}), not {}",
                    self.interval_ms_min, self.interval_ms_max
                ),
            ));
        }
        let factor = self.grace_factor;
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(InvalidSetting::new(
                KeyPath::root().key("grace_factor"),
                format!(
                    "must be a number of at least 1.0 (a peer gets one full interval), not {factor}"
                ),
            ));
        }
        Ok(())
    }
}

/// A concrete queue name, without prefix or wildcards.
fn check_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the queue name is empty".to_owned());
    }
    if name.starts_with('/') {
        return Err(format!(
            "`{name}`: give the queue name without a `/queue/` prefix"
        ));
    }
    if name.contains(',')
        || name
            .split('.')
            .any(|s| s.is_empty() || s == "*" || s == ">")
    {
        return Err(format!(
            "`{name}` is not a queue name (empty segment, wildcard or comma)"
        ));
    }
    Ok(())
}
