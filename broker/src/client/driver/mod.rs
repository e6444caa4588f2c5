//! The async failover client: one task that owns the connection, the [`Session`] and the
//! [`Reconnector`], driven over the project's [`Net`](crate::net::Net) trait so that it
//! runs over real TCP ([`TokioNet`](crate::net::TokioNet)) and inside turmoil simulations.
//!
//! # Use
//!
//! ```no_run
//! use std::sync::Arc;
//! use stampede_broker::client::{
//!     Client, ClientConfig, PolicyKind, SendOutcome, ServerAddr, ServerList, SubscribeSpec,
//! };
//! use stampede_broker::net::TokioNet;
//! use stampede_broker::proto::Headers;
//!
//! # async fn example() {
//! let servers = ServerList::new(vec![
//!     ServerAddr::new("broker-a", 61613),
//!     ServerAddr::new("broker-b", 61613),
//! ])
//! .unwrap();
//! let config = ClientConfig::new(servers, PolicyKind::StompGem);
//! let (client, mut streams) = Client::start(Arc::new(TokioNet), config);
//!
//! // Subscriptions are kept and replayed after every reconnect.
//! let _sub = client.subscribe(SubscribeSpec::new("/queue/work")).await.unwrap();
//! match client
//!     .send_with_receipt("/queue/work", Headers::new(), "hello")
//!     .await
//! {
//!     SendOutcome::Confirmed => {}
//!     SendOutcome::Failed(why) => eprintln!("refused: {why}"),
//!     SendOutcome::Indeterminate => eprintln!("connection lost; it may or may not have arrived"),
//! }
//! while let Some(message) = streams.messages.recv().await {
//!     println!("{}: {:?}", message.destination, message.text());
//!     # break;
//! }
//! // What the client did: attempts, connections, failovers.
//! while let Ok(event) = streams.events.try_recv() {
//!     println!("{event:?}");
//! }
//! client.disconnect().await;
//! # }
//! ```
//!
//! # Tasks and buffers
//!
//! [`Client::start`] spawns exactly one task (with `tokio::spawn`), the *driver*. It
//! owns the socket (both halves), the [`Session`], the [`Reconnector`] and every timer,
//! and waits in a single `tokio::select!` (`biased`, so its choices are deterministic) on:
//! a shutdown signal, the TCP connect in progress, writing its output buffer, handing a
//! message to the application, its next timer (backoff, connect timeout, heart-beat
//! send, heart-beat read deadline, write stall, send deadlines), commands from
//! [`Client`] handles, and reading. Time comes only from `tokio::time`, so the driver runs
//! unchanged under paused or simulated time. [`Client`] is a cheap, cloneable handle that
//! talks to the driver over a bounded command channel and gets answers on oneshots.
//!
//! Every buffer is bounded: commands (`commands_queued_max`), operations waiting to be
//! written (`pending_sends_max`), the output buffer (64 KiB before pending operations
//! wait, plus one frame), the input buffer (one frame plus one 4 KiB read; the decoder's
//! [`FrameLimits`] cap a frame), messages for the application
//! (`messages_buffered_max`) and events (`events_buffered_max`). When the message channel
//! is full the driver stops reading the socket (TCP pushes back on the broker) but keeps
//! writing and sending heart-beats. When the event channel is full, events are dropped
//! and counted ([`Client::events_dropped`]) rather than stall the connection.
//!
//! # Connecting and failing over
//!
//! The driver follows its [`Reconnector`] exactly: for every [`Attempt`] it emits
//! [`ClientEvent::Attempt`], sleeps the attempt's delay, opens TCP, writes CONNECT and
//! waits for CONNECTED, all within the per-attempt `connect_timeout` of the
//! [`ReconnectConfig`]. A refused TCP connect, a timeout, an ERROR answer, EOF or a
//! protocol error fails the attempt ([`ClientEvent::Disconnected`] with the reason) and
//! the policy picks the next one. After CONNECTED it queues every stored SUBSCRIBE (same
//! ids, selectors, ack modes; see [`Session::replay`]) before anything else and emits
//! [`ClientEvent::Connected`]; once the last of them has been written to the socket (at
//! once when there are none) it emits [`ClientEvent::Resubscribed`] (after every
//! CONNECTED, with the number of SUBSCRIBE frames replayed, possibly 0) and, when the
//! server differs from the one last connected to, [`ClientEvent::Failover`]; a connection
//! lost before that emits neither, and the failover goes on. A lost connection (EOF, I/O
//! error, heart-beat timeout, write stall) is reported with
//! [`Reconnector::connection_lost`]. When the policy gives up the client stops
//! ([`Status::Stopped`] with [`StopReason::GaveUp`]) and its streams end.
//!
//! # Heart-beats
//!
//! With `heart_beat_ms = (cx, cy)` the session negotiates intervals from CONNECTED (see
//! [`Negotiated`]). The driver writes `\n` whenever it has written nothing for 90 % of the
//! send interval (a little early, like the broker, so that scheduling jitter never makes a
//! strict peer give up). With `heartbeat_read_timeout` on, a connection on which nothing
//! arrived for `heartbeat_grace_factor` × the expected interval is declared dead
//! ([`DisconnectReason::HeartbeatTimeout`]) and the client fails over; with it off the
//! client never notices a silent broker, like mcollectived (protocols notes §3.4), and
//! only EOF, I/O errors or a write stall end the connection.
//!
//! # Sends and other operations while disconnected
//!
//! Operations that write a frame ([`Client::send`], [`Client::send_with_receipt`],
//! [`Client::ack`], [`Client::nack`], [`Client::begin`], [`Client::commit`],
//! [`Client::abort`]) go through one FIFO queue of at most `pending_sends_max`
//! operations, so they reach the broker in call order:
//!
//! * While connected and the output buffer has room, an operation is written at once.
//! * Otherwise it waits in the queue, and goes out on the next connection right after
//!   the subscriptions are replayed. When the queue is full the driver stops taking
//!   commands, so callers wait (backpressure) in the command channel. Receipted
//!   operations also wait while `pending_sends_max` receipts are outstanding.
//! * With `send_timeout` set, an operation that has not been handed to a socket within
//!   that time of the call fails with [`ClientError::Timeout`] (or
//!   [`SendOutcome::Failed`]) and is never written, whether it waited in the command
//!   channel or in the queue.
//! * [`Client::send`] resolves once the whole frame has been written to the socket (handed
//!   to the operating system): at most once, never confirmed. If the connection is lost
//!   while the frame is still in the driver's output buffer (not or only partly written),
//!   it is put back at the head of the queue and written again on the next connection, so
//!   a frame is never written twice and never half.
//! * [`Client::send_with_receipt`] asks for a RECEIPT: [`SendOutcome::Confirmed`] when it
//!   arrives, [`SendOutcome::Failed`] for an ERROR naming the receipt (or a send that
//!   could not be written: timeout, shutdown, unknown transaction), and
//!   [`SendOutcome::Indeterminate`] when the connection was lost after the frame was
//!   written and before the answer: the broker may or may not have it.
//! * ACK, NACK, BEGIN and ABORT resolve once written; they belong to one connection, so
//!   an ACK of a message that arrived on an earlier connection fails with
//!   [`SessionError::StaleMessage`] (the broker redelivers it), and a transaction does
//!   not survive a reconnect (sends naming it then fail with
//!   [`SessionError::UnknownTransaction`]). [`Client::commit`] waits for a receipt, like
//!   `send_with_receipt`.
//! * [`Client::subscribe`] and [`Client::unsubscribe`] change the stored subscriptions at
//!   once and return; the SUBSCRIBE/UNSUBSCRIBE frame is queued behind earlier operations
//!   when connected, and subscriptions made while disconnected go out with the replay.
//!
//! All [`Client`] methods are cancel-safe: dropping a call's future before it resolves
//! means its frame is either never written (it is dropped from the queue when the driver
//! reaches it) or written exactly once (if it already had been), never partly.
//!
//! # Shutdown
//!
//! [`Client::disconnect`] (or dropping every [`Client`]) stops taking commands. When
//! connected, the driver writes the operations already queued, sends DISCONNECT with a
//! receipt and waits for it (at most `disconnect_timeout`), so that everything written
//! before was handled; then it closes the socket, emits
//! `Disconnected { reason: Shutdown }` and fails whatever is left with
//! [`ClientError::Closed`].
//!
//! # Layout
//!
//! This file is the handle: [`Client`], [`ClientConfig`], [`ClientStreams`] and the
//! outcomes and errors. `ops.rs` holds the commands a handle sends to its task, and
//! `task/` the driver loop: `task/mod.rs` its state and the loop, and one file per part
//! (`connecting.rs`, `losing.rs`, `timers.rs`, `writing.rs`, `commands.rs`, `reading.rs`).
//!
//! [`Session`]: crate::client::Session
//! [`Session::replay`]: crate::client::Session::replay
//! [`Attempt`]: crate::client::Attempt
//! [`Negotiated`]: crate::client::Negotiated
//! [`DisconnectReason::HeartbeatTimeout`]: crate::client::DisconnectReason::HeartbeatTimeout

mod ops;
mod task;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::events::ClientEvent;
use super::mcollective::McoClientConfig;
use super::policy::{GaveUp, PolicyKind, ReconnectConfig, Reconnector};
use super::servers::ServerList;
use super::session::{
    Credentials, Message, SessionConfig, SessionError, SubscribeSpec, SubscriptionId,
};
use crate::net::SharedNet;
use crate::proto::{FrameLimits, Headers, Version};

use ops::{Cmd, Op, Queued, SendOp, SendReply};
use task::{Channels, Driver, after};

/// Everything [`Client::start`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The servers to choose from.
    pub servers: ServerList,
    /// The reconnect algorithm.
    pub policy: PolicyKind,
    /// Its settings; `connect_timeout` bounds each attempt (TCP connect plus
    /// CONNECT/CONNECTED).
    pub reconnect: ReconnectConfig,
    /// Seed of the policy's random generator (host shuffling, jitter).
    pub seed: u64,
    /// Login and passcode for every server, overriding the server list's.
    pub credentials: Option<Credentials>,
    /// The CONNECT `accept-version` header; `None` sends none (STOMP 1.0).
    pub accept_version: Option<String>,
    /// The CONNECT `host` header; `None` uses the server's host name when
    /// `accept-version` is sent.
    pub host: Option<String>,
    /// The CONNECT `heart-beat` header `(cx, cy)` in milliseconds; `(0, 0)` for none.
    pub heart_beat_ms: (u64, u64),
    /// Whether silence longer than `heartbeat_grace_factor` × the negotiated receive interval
    /// ends the connection. `false` mimics mcollectived, which never notices.
    pub heartbeat_read_timeout: bool,
    /// The grace factor for the read timeout (at least 1).
    pub heartbeat_grace_factor: f64,
    /// MESSAGE frames buffered for the application before the driver stops reading.
    pub messages_buffered_max: usize,
    /// Events buffered for the application before new ones are dropped (and counted).
    pub events_buffered_max: usize,
    /// Commands from [`Client`] handles buffered before callers wait.
    pub commands_queued_max: usize,
    /// Operations (sends, acks, transaction frames) waiting for a connection or for room
    /// in the output buffer before the driver stops taking commands; also the most
    /// receipted SENDs and COMMITs written and awaiting their RECEIPT (more wait).
    pub pending_sends_max: usize,
    /// How long an operation may wait to be written before it fails; `None`: forever.
    pub send_timeout: Option<Duration>,
    /// A connection whose socket accepts no bytes for this long is declared dead.
    pub write_timeout: Duration,
    /// How long [`Client::disconnect`] waits for the DISCONNECT receipt.
    pub disconnect_timeout: Duration,
    /// Limits on frames from the broker.
    pub frame_limits: FrameLimits,
}

impl ClientConfig {
    /// `policy` with its default settings (see [`ReconnectConfig::defaults_for`]),
    /// STOMP 1.0–1.2, heart-beats of 10 s both ways with a read timeout of 2 × the
    /// interval, seed 0 and modest buffers.
    pub fn new(servers: ServerList, policy: PolicyKind) -> Self {
        Self {
            servers,
            policy,
            reconnect: ReconnectConfig::defaults_for(policy),
            seed: 0,
            credentials: None,
            accept_version: Some("1.0,1.1,1.2".to_owned()),
            host: None,
            heart_beat_ms: (10_000, 10_000),
            heartbeat_read_timeout: true,
            heartbeat_grace_factor: 2.0,
            messages_buffered_max: 64,
            events_buffered_max: 256,
            commands_queued_max: 32,
            pending_sends_max: 256,
            send_timeout: None,
            write_timeout: Duration::from_secs(30),
            disconnect_timeout: Duration::from_secs(5),
            frame_limits: FrameLimits::default(),
        }
    }

    /// What an MCollective 2.12 daemon configured with `mco` would do: the stomp gem
    /// policy and settings, its pool and credentials, STOMP 1.0 without heart-beats unless
    /// `heartbeat_interval` is set (then `accept-version:1.1`, `host:<vhost>` and
    /// `heart-beat:<interval+500>,<interval-500>`), and no heart-beat read timeout.
    pub fn from_mcollective(mco: &McoClientConfig) -> Self {
        let mut c = Self::new(mco.servers.clone(), mco.policy);
        c.reconnect = mco.reconnect.clone();
        match mco.heart_beat_header() {
            Some(hb) => {
                c.accept_version = Some(mco.accept_version().to_owned());
                c.host = mco.vhost.clone();
                c.heart_beat_ms = hb;
            }
            None => {
                c.accept_version = None;
                c.host = None;
                c.heart_beat_ms = (0, 0);
            }
        }
        // mcollectived blocks in `receive`, so the gem's heart-beat ticker counts lock
        // failures, not read failures: only `max_hbrlck_fails` can end a silent connection.
        match mco.heartbeat_read_grace_factor() {
            Some(grace) => {
                c.heartbeat_read_timeout = true;
                c.heartbeat_grace_factor = grace;
            }
            None => c.heartbeat_read_timeout = false,
        }
        c
    }

    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            accept_version: self.accept_version.clone(),
            host: self.host.clone(),
            credentials: self.credentials.clone(),
            heart_beat_ms: self.heart_beat_ms,
        }
    }
}

/// Why an operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The client has stopped (disconnected, or the policy gave up).
    #[error("the client has stopped")]
    Closed,
    /// It could not be written within the send timeout.
    #[error("not written within the send timeout")]
    Timeout,
    /// The connection was lost before the frame was written.
    #[error("the connection was lost before the frame was written")]
    ConnectionLost,
    /// The session refused to build the frame.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// The outcome of a receipted SEND (or COMMIT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The broker confirmed it with a RECEIPT.
    Confirmed,
    /// The broker refused it (an ERROR naming its receipt; the `message` header), or it
    /// was never written (the reason).
    Failed(String),
    /// Written, but the connection was lost before the broker answered: it may or may not
    /// have taken effect.
    Indeterminate,
}

/// Why the client stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// [`Client::disconnect`], or every [`Client`] was dropped.
    Disconnected,
    /// The reconnect policy ran out of attempts.
    GaveUp(GaveUp),
}

/// Where the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Trying to connect (waiting, connecting or handshaking).
    Connecting,
    /// CONNECTED received from `server`.
    Connected {
        /// Index of the server in the [`ServerList`].
        server: usize,
        /// The negotiated version.
        version: Version,
    },
    /// The driver task has ended.
    Stopped(StopReason),
}

/// What the application receives: messages and events, on bounded channels. Both end
/// (`recv` returns `None`) when the client stops.
#[derive(Debug)]
pub struct ClientStreams {
    /// MESSAGE frames, in arrival order.
    pub messages: mpsc::Receiver<Message>,
    /// What the client did.
    pub events: mpsc::Receiver<ClientEvent>,
}

/// The outcome of a [`Client::send_with_receipt_queued`], once known.
#[derive(Debug)]
pub struct PendingReceipt(oneshot::Receiver<SendOutcome>);

impl Future for PendingReceipt {
    type Output = SendOutcome;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<SendOutcome> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| SendOutcome::Failed(ClientError::Closed.to_string())))
    }
}

/// Whether a [`Client::send_queued`] SEND was written, once known.
#[derive(Debug)]
pub struct PendingWrite(oneshot::Receiver<Result<(), ClientError>>);

impl Future for PendingWrite {
    type Output = Result<(), ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ClientError>> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

/// The id of a [`Client::subscribe_queued`] subscription, once the driver has made it.
#[derive(Debug)]
pub struct PendingSubscribe(oneshot::Receiver<Result<SubscriptionId, ClientError>>);

impl Future for PendingSubscribe {
    type Output = Result<SubscriptionId, ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<SubscriptionId, ClientError>> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

/// A handle on a running client; cheap to clone. See the module documentation.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Cmd>,
    shutdown: Arc<watch::Sender<bool>>,
    status: watch::Receiver<Status>,
    events_dropped: Arc<AtomicU64>,
    send_timeout: Option<Duration>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Spawns the driver task (call from within a tokio runtime) and returns a handle and
    /// the application's streams. The first attempt starts at once.
    pub fn start(net: SharedNet, config: ClientConfig) -> (Client, ClientStreams) {
        let (cmd_tx, cmd_rx) = mpsc::channel(config.commands_queued_max.max(1));
        let (msg_tx, msg_rx) = mpsc::channel(config.messages_buffered_max.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(config.events_buffered_max.max(1));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (status_tx, status_rx) = watch::channel(Status::Connecting);
        let events_dropped = Arc::new(AtomicU64::new(0));
        let policy = Reconnector::new(
            config.policy,
            config.reconnect.clone(),
            config.servers.clone(),
            config.seed,
        );
        let driver = Driver::new(
            net,
            &config,
            policy,
            Channels {
                commands: cmd_rx,
                messages: msg_tx,
                events: ev_tx,
                events_dropped: events_dropped.clone(),
                shutdown: shutdown_rx,
                status: status_tx,
            },
        );
        crate::task::spawn(driver.run());
        let client = Client {
            commands: cmd_tx,
            shutdown: Arc::new(shutdown_tx),
            status: status_rx,
            events_dropped,
            send_timeout: config.send_timeout,
        };
        (
            client,
            ClientStreams {
                messages: msg_rx,
                events: ev_rx,
            },
        )
    }

    /// Where the client is now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits until the client has stopped, and says why.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.status.clone();
        let result = rx.wait_for(|s| matches!(s, Status::Stopped(_))).await;
        match result.as_deref() {
            Ok(Status::Stopped(reason)) => reason.clone(),
            _ => StopReason::Disconnected,
        }
    }

    /// Events dropped because the event channel was full.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.load(Ordering::Relaxed)
    }

    /// Sends a message; resolves once the frame has been written to a socket (see the
    /// module documentation for what happens while disconnected).
    pub async fn send(
        &self,
        destination: impl Into<String>,
        headers: Headers,
        body: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit_op(send_op(destination, headers, body, SendReply::Plain(tx)))
            .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Queues a SEND and returns once the driver has taken it, with a [`PendingWrite`]
    /// that resolves once it is written. SENDs queued one after the other go out in that
    /// order, and those the driver takes together share a write.
    pub async fn send_queued(
        &self,
        destination: impl Into<String>,
        headers: Headers,
        body: impl Into<Bytes>,
    ) -> Result<PendingWrite, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit_op(send_op(destination, headers, body, SendReply::Plain(tx)))
            .await?;
        Ok(PendingWrite(rx))
    }

    /// Sends a message with a `receipt` header and waits for the outcome.
    pub async fn send_with_receipt(
        &self,
        destination: impl Into<String>,
        headers: Headers,
        body: impl Into<Bytes>,
    ) -> SendOutcome {
        let (tx, rx) = oneshot::channel();
        let op = send_op(destination, headers, body, SendReply::Receipt(tx));
        if let Err(e) = self.submit_op(op).await {
            return SendOutcome::Failed(e.to_string());
        }
        rx.await
            .unwrap_or_else(|_| SendOutcome::Failed(ClientError::Closed.to_string()))
    }

    /// Queues a SEND with a `receipt` header and returns once the driver has taken it
    /// (so calls made one after the other are written in that order), with a
    /// [`PendingReceipt`] that resolves to the outcome. Lets a caller keep many receipted
    /// sends in flight without giving up their order, as a network bridge does.
    pub async fn send_with_receipt_queued(
        &self,
        destination: impl Into<String>,
        headers: Headers,
        body: impl Into<Bytes>,
    ) -> Result<PendingReceipt, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit_op(send_op(destination, headers, body, SendReply::Receipt(tx)))
            .await?;
        Ok(PendingReceipt(rx))
    }

    /// Subscribes; the subscription is replayed after every reconnect until
    /// [`unsubscribe`](Self::unsubscribe)d.
    pub async fn subscribe(&self, spec: SubscribeSpec) -> Result<SubscriptionId, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Cmd::Subscribe { spec, reply: tx }, None)
            .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Queues a subscription and returns once the driver has the command, with its id to
    /// come: a caller that subscribes for every request need not wait for the driver's
    /// turn each time. Frames queued after it are written after its SUBSCRIBE.
    pub async fn subscribe_queued(
        &self,
        spec: SubscribeSpec,
    ) -> Result<PendingSubscribe, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Cmd::Subscribe { spec, reply: tx }, None)
            .await?;
        Ok(PendingSubscribe(rx))
    }

    /// Ends a subscription.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Cmd::Unsubscribe { id, reply: tx }, None)
            .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Queues the end of a subscription and returns once the driver has the command,
    /// without waiting for the driver to act on it.
    pub async fn unsubscribe_queued(&self, id: SubscriptionId) -> Result<(), ClientError> {
        let (tx, _) = oneshot::channel();
        self.submit(Cmd::Unsubscribe { id, reply: tx }, None).await
    }

    /// Acknowledges a message (of a `client` or `client-individual` subscription).
    pub async fn ack(&self, message: &Message) -> Result<(), ClientError> {
        self.ack_or_nack(message, false).await
    }

    /// Refuses a message (STOMP 1.1+).
    pub async fn nack(&self, message: &Message) -> Result<(), ClientError> {
        self.ack_or_nack(message, true).await
    }

    async fn ack_or_nack(&self, message: &Message, nack: bool) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        let op = Op::Ack {
            info: message.ack_info().clone(),
            nack,
            reply: tx,
        };
        self.submit_op(op).await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Starts a transaction on the current (or next) connection. Add a `transaction`
    /// header naming it to sends that belong to it.
    pub async fn begin(&self, transaction: &str) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit_op(Op::Begin {
            tx: transaction.to_owned(),
            reply: tx,
        })
        .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Commits a transaction and waits for the broker's receipt.
    pub async fn commit(&self, transaction: &str) -> SendOutcome {
        let (tx, rx) = oneshot::channel();
        let op = Op::Commit {
            tx: transaction.to_owned(),
            reply: tx,
        };
        if let Err(e) = self.submit_op(op).await {
            return SendOutcome::Failed(e.to_string());
        }
        rx.await
            .unwrap_or_else(|_| SendOutcome::Failed(ClientError::Closed.to_string()))
    }

    /// Rolls a transaction back.
    pub async fn abort(&self, transaction: &str) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit_op(Op::Abort {
            tx: transaction.to_owned(),
            reply: tx,
        })
        .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Stops the client gracefully (see the module documentation) and waits until it has
    /// stopped.
    pub async fn disconnect(&self) {
        let _ = self.shutdown.send(true);
        let _ = self.stopped().await;
    }

    async fn submit_op(&self, op: Op) -> Result<(), ClientError> {
        let deadline = self.send_timeout.map(|t| after(Instant::now(), t));
        self.submit(Cmd::Op(Queued { op, deadline }), deadline)
            .await
    }

    async fn submit(&self, cmd: Cmd, deadline: Option<Instant>) -> Result<(), ClientError> {
        let send = self.commands.send(cmd);
        match deadline {
            None => send.await.map_err(|_| ClientError::Closed),
            Some(d) => match tokio::time::timeout_at(d, send).await {
                Ok(r) => r.map_err(|_| ClientError::Closed),
                Err(_) => Err(ClientError::Timeout),
            },
        }
    }
}

/// The driver command for a SEND answered through `reply`.
fn send_op(
    destination: impl Into<String>,
    headers: Headers,
    body: impl Into<Bytes>,
    reply: SendReply,
) -> Op {
    Op::Send(SendOp {
        destination: destination.into(),
        headers,
        body: body.into(),
        reply,
    })
}
