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
//! the policy picks the next one. After CONNECTED it writes every stored SUBSCRIBE (same
//! ids, selectors, ack modes; see [`Session::replay`]) before anything else, then emits
//! [`ClientEvent::Connected`], [`ClientEvent::Resubscribed`] (after every CONNECTED, with
//! the number of SUBSCRIBE frames replayed, possibly 0) and, when the server differs
//! from the one last connected to, [`ClientEvent::Failover`]. A lost connection (EOF, I/O
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

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::events::{ClientEvent, DisconnectReason};
use super::mcollective::McoClientConfig;
use super::policy::{Attempt, ConnreadTimeout, GaveUp, PolicyKind, ReconnectConfig, Reconnector};
use super::servers::ServerList;
use super::session::{
    AckInfo, ConnectError, Credentials, Incoming, Message, Negotiated, ReceiptId, Session,
    SessionConfig, SessionError, SubscribeSpec, SubscriptionId,
};
use crate::net::{BoxFuture, BoxStream, SharedNet};
use crate::proto::{Decoder, Frame, FrameLimits, Headers, Item, Version, encode};

/// Bytes reserved in the input buffer before each read.
const READ_CHUNK_BYTES: usize = 4 * 1024;
/// Queued operations wait while the output buffer holds at least this many bytes.
const WRITE_BUFFER_HIGH_WATER_BYTES: usize = 64 * 1024;
/// Commands handled in a row before the driver checks the socket for input anyway.
const COMMAND_STREAK_MAX: u32 = 64;
/// Stand-in for "never" when a deadline would overflow `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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
        let driver = Driver {
            net,
            session: Session::new(config.session_config()),
            policy,
            connect_timeout: config.reconnect.connect_timeout,
            connread_timeout: config.reconnect.connread_timeout,
            heartbeat_read_timeout: config.heartbeat_read_timeout,
            heartbeat_grace_factor: if config.heartbeat_grace_factor.is_finite() {
                config.heartbeat_grace_factor.max(1.0)
            } else {
                1.0
            },
            pending_sends_max: config.pending_sends_max.max(1),
            write_timeout: config.write_timeout,
            disconnect_timeout: config.disconnect_timeout,
            frame_limits: config.frame_limits,
            phase: Phase::Stopped,
            io: None,
            pending: VecDeque::new(),
            waiters: BTreeMap::new(),
            delivery: None,
            commands: cmd_rx,
            messages: msg_tx,
            messages_closed: false,
            events: ev_tx,
            events_dropped: events_dropped.clone(),
            shutdown: shutdown_rx,
            shutting_down: false,
            status: status_tx,
            last_server: None,
            command_streak: 0,
        };
        tokio::spawn(driver.run());
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
        let op = Op::Send(SendOp {
            destination: destination.into(),
            headers,
            body: body.into(),
            reply: SendReply::Plain(tx),
        });
        self.submit_op(op).await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Sends a message with a `receipt` header and waits for the outcome.
    pub async fn send_with_receipt(
        &self,
        destination: impl Into<String>,
        headers: Headers,
        body: impl Into<Bytes>,
    ) -> SendOutcome {
        let (tx, rx) = oneshot::channel();
        let op = Op::Send(SendOp {
            destination: destination.into(),
            headers,
            body: body.into(),
            reply: SendReply::Receipt(tx),
        });
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
        let op = Op::Send(SendOp {
            destination: destination.into(),
            headers,
            body: body.into(),
            reply: SendReply::Receipt(tx),
        });
        self.submit_op(op).await?;
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

    /// Ends a subscription.
    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Cmd::Unsubscribe { id, reply: tx }, None)
            .await?;
        rx.await.unwrap_or(Err(ClientError::Closed))
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

// ------------------------------------------------------------------------ the driver

/// A command from a [`Client`] handle.
enum Cmd {
    Op(Queued),
    Subscribe {
        spec: SubscribeSpec,
        reply: oneshot::Sender<Result<SubscriptionId, ClientError>>,
    },
    Unsubscribe {
        id: SubscriptionId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// An operation waiting to be written, with its deadline.
struct Queued {
    op: Op,
    deadline: Option<Instant>,
}

type Done = oneshot::Sender<Result<(), ClientError>>;

/// An operation that writes a frame.
enum Op {
    Send(SendOp),
    /// SUBSCRIBE for a subscription made while connection `connection` was open.
    Subscribe {
        id: SubscriptionId,
        connection: u64,
    },
    /// UNSUBSCRIBE built while connection `connection` was open.
    Unsubscribe {
        frame: Frame,
        connection: u64,
    },
    Ack {
        info: AckInfo,
        nack: bool,
        reply: Done,
    },
    Begin {
        tx: String,
        reply: Done,
    },
    Commit {
        tx: String,
        reply: oneshot::Sender<SendOutcome>,
    },
    Abort {
        tx: String,
        reply: Done,
    },
}

impl Op {
    fn fail(self, e: ClientError) {
        match self {
            Op::Send(s) => s.reply.fail(e),
            Op::Ack { reply, .. } | Op::Begin { reply, .. } | Op::Abort { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Op::Commit { reply, .. } => {
                let _ = reply.send(SendOutcome::Failed(e.to_string()));
            }
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => {}
        }
    }

    /// Whether writing it asks for a receipt.
    fn wants_receipt(&self) -> bool {
        matches!(
            self,
            Op::Send(SendOp {
                reply: SendReply::Receipt(_),
                ..
            }) | Op::Commit { .. }
        )
    }

    /// Whether nobody waits for the outcome any more (the caller's future was dropped).
    fn abandoned(&self) -> bool {
        match self {
            Op::Send(s) => s.reply.is_closed(),
            Op::Ack { reply, .. } | Op::Begin { reply, .. } | Op::Abort { reply, .. } => {
                reply.is_closed()
            }
            Op::Commit { reply, .. } => reply.is_closed(),
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => false,
        }
    }
}

struct SendOp {
    destination: String,
    headers: Headers,
    body: Bytes,
    reply: SendReply,
}

enum SendReply {
    Plain(Done),
    Receipt(oneshot::Sender<SendOutcome>),
    /// The receipt waiter moved to `Driver::waiters` under this id.
    Moved(ReceiptId),
}

impl SendReply {
    fn fail(self, e: ClientError) {
        match self {
            SendReply::Plain(tx) => {
                let _ = tx.send(Err(e));
            }
            SendReply::Receipt(tx) => {
                let _ = tx.send(SendOutcome::Failed(e.to_string()));
            }
            SendReply::Moved(_) => {}
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            SendReply::Plain(tx) => tx.is_closed(),
            SendReply::Receipt(tx) => tx.is_closed(),
            SendReply::Moved(_) => false,
        }
    }
}

/// A frame in the output buffer whose writing someone waits for.
struct Inflight {
    /// Its last byte's position in the connection's output (bytes ever queued).
    end: u64,
    what: Flushing,
}

enum Flushing {
    /// A SEND; kept whole so that it can be requeued if it never left the buffer.
    Send {
        op: SendOp,
        deadline: Option<Instant>,
    },
    /// ACK, NACK, BEGIN or ABORT: answered once written.
    Reply(Done),
    /// A COMMIT, answered by its receipt.
    Commit(ReceiptId),
}

/// One open socket and its buffers.
struct Io {
    reader: ReadHalf<BoxStream>,
    writer: WriteHalf<BoxStream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    /// The version frames are encoded for (1.0 rules until CONNECTED).
    version: Version,
    /// Bytes ever queued for writing and ever written.
    queued: u64,
    written: u64,
    inflight: VecDeque<Inflight>,
    last_read: Instant,
    last_write: Instant,
    /// When the output buffer last became non-empty or last made progress.
    write_since: Instant,
    /// The last ERROR frame's message.
    error: Option<String>,
}

impl Io {
    fn new(stream: BoxStream, limits: FrameLimits, now: Instant) -> Io {
        let (reader, writer) = tokio::io::split(stream);
        Io {
            reader,
            writer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            decoder: Decoder::new(limits),
            version: Version::V1_0,
            queued: 0,
            written: 0,
            inflight: VecDeque::new(),
            last_read: now,
            last_write: now,
            write_since: now,
            error: None,
        }
    }

    /// Appends `frame` to the output buffer; returns its end position.
    fn queue(&mut self, frame: &Frame, now: Instant) -> u64 {
        if self.wbuf.is_empty() {
            self.write_since = now;
        }
        let before = self.wbuf.len();
        encode(frame, self.version, &mut self.wbuf);
        self.queued += (self.wbuf.len() - before) as u64;
        self.queued
    }

    /// Queues `frame` and answers `reply` once its last byte is written.
    fn queue_then_reply(&mut self, frame: &Frame, now: Instant, reply: Done) {
        let end = self.queue(frame, now);
        self.inflight.push_back(Inflight {
            end,
            what: Flushing::Reply(reply),
        });
    }
}

enum Phase {
    /// Waiting before an attempt.
    Backoff {
        attempt: Attempt,
        until: Instant,
    },
    /// TCP connect in progress.
    Opening {
        attempt: Attempt,
        deadline: Option<Instant>,
        connect: BoxFuture<'static, io::Result<BoxStream>>,
    },
    /// CONNECT written, waiting for CONNECTED.
    Handshake {
        deadline: Option<Instant>,
    },
    /// Connected.
    Up {
        since: Instant,
        send_period: Option<Duration>,
        read_window: Option<Duration>,
    },
    /// DISCONNECT written; waiting for its receipt until `until`.
    Closing {
        until: Instant,
        receipt: Option<ReceiptId>,
    },
    Stopped,
}

/// What woke the driver.
enum Wake {
    Shutdown,
    Opened(io::Result<BoxStream>),
    Wrote(io::Result<usize>),
    Deliver(Result<mpsc::OwnedPermit<Message>, mpsc::error::SendError<()>>),
    Timer,
    Command(Option<Cmd>),
    Read(io::Result<usize>),
}

struct Driver {
    net: SharedNet,
    session: Session,
    policy: Reconnector,
    connect_timeout: Option<Duration>,
    connread_timeout: ConnreadTimeout,
    heartbeat_read_timeout: bool,
    heartbeat_grace_factor: f64,
    pending_sends_max: usize,
    write_timeout: Duration,
    disconnect_timeout: Duration,
    frame_limits: FrameLimits,
    phase: Phase,
    io: Option<Io>,
    /// Operations waiting for a connection or for room in the output buffer.
    pending: VecDeque<Queued>,
    /// Receipted SENDs and COMMITs written and not answered yet.
    waiters: BTreeMap<ReceiptId, oneshot::Sender<SendOutcome>>,
    /// A message waiting for room in the message channel (reading stops meanwhile).
    delivery: Option<Message>,
    commands: mpsc::Receiver<Cmd>,
    messages: mpsc::Sender<Message>,
    messages_closed: bool,
    events: mpsc::Sender<ClientEvent>,
    events_dropped: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
    shutting_down: bool,
    status: watch::Sender<Status>,
    last_server: Option<usize>,
    command_streak: u32,
}

impl Driver {
    async fn run(mut self) {
        let first = self.policy.first_attempt();
        self.begin_attempt(first);
        while !matches!(self.phase, Phase::Stopped) {
            let wake = self.next_wake().await;
            if matches!(wake, Wake::Command(Some(_))) {
                self.command_streak += 1;
            } else {
                self.command_streak = 0;
            }
            match wake {
                Wake::Shutdown => self.on_shutdown(),
                Wake::Opened(r) => self.on_opened(r),
                Wake::Wrote(r) => self.on_wrote(r),
                Wake::Deliver(p) => self.on_deliverable(p),
                Wake::Timer => self.on_timer(),
                Wake::Command(Some(c)) => self.on_command(c),
                Wake::Command(None) => self.on_shutdown(),
                Wake::Read(r) => self.on_read(r),
            }
        }
        tracing::debug!("client driver stopped");
    }

    async fn next_wake(&mut self) -> Wake {
        let deadline = self.next_deadline();
        let take_commands = self.accepts_commands();
        let reading = self.delivery.is_none();
        let messages = self.delivery.is_some().then(|| self.messages.clone());
        if self.command_streak >= COMMAND_STREAK_MAX && reading {
            // Commands keep coming: give input a turn without waiting for it.
            if let Some(r) = self.try_read_now().await {
                return Wake::Read(r);
            }
        }
        let (reader, writer) = match &mut self.io {
            Some(io) => {
                if reading {
                    io.rbuf.reserve(READ_CHUNK_BYTES);
                }
                let Io {
                    reader,
                    writer,
                    rbuf,
                    wbuf,
                    ..
                } = io;
                (
                    reading.then_some((reader, rbuf)),
                    (!wbuf.is_empty()).then_some((writer, &wbuf[..])),
                )
            }
            None => (None, None),
        };
        let connect = match &mut self.phase {
            Phase::Opening { connect, .. } => Some(connect),
            _ => None,
        };
        let shutdown_armed = !self.shutting_down;
        tokio::select! {
            biased;
            _ = self.shutdown.changed(), if shutdown_armed => Wake::Shutdown,
            r = poll_some(connect) => Wake::Opened(r),
            r = write_some(writer) => Wake::Wrote(r),
            p = reserve_some(messages) => Wake::Deliver(p),
            () = sleep_some(deadline) => Wake::Timer,
            c = self.commands.recv(), if take_commands => Wake::Command(c),
            r = read_some(reader) => Wake::Read(r),
        }
    }

    /// Polls a read once; `None` if nothing is ready.
    async fn try_read_now(&mut self) -> Option<io::Result<usize>> {
        let io = self.io.as_mut()?;
        io.rbuf.reserve(READ_CHUNK_BYTES);
        let mut read = std::pin::pin!(io.reader.read_buf(&mut io.rbuf));
        std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }

    fn accepts_commands(&self) -> bool {
        !self.shutting_down
            && !matches!(self.phase, Phase::Closing { .. } | Phase::Stopped)
            && self.pending.len() < self.pending_sends_max
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut at = |t: Instant| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        match &self.phase {
            Phase::Backoff { until, .. } | Phase::Closing { until, .. } => at(*until),
            Phase::Opening { deadline, .. } | Phase::Handshake { deadline, .. } => {
                if let Some(d) = deadline {
                    at(*d);
                }
            }
            Phase::Up {
                send_period,
                read_window,
                ..
            } => {
                if let Some(io) = &self.io {
                    if let Some(p) = send_period {
                        if io.wbuf.is_empty() {
                            at(after(io.last_write, *p));
                        }
                    }
                    if let Some(w) = read_window {
                        if self.delivery.is_none() {
                            at(after(io.last_read, *w));
                        }
                    }
                }
            }
            Phase::Stopped => {}
        }
        if let Some(io) = &self.io {
            if !io.wbuf.is_empty() {
                at(after(io.write_since, self.write_timeout));
            }
        }
        if let Some(d) = self.pending.front().and_then(|q| q.deadline) {
            at(d);
        }
        earliest
    }

    fn emit(&self, event: ClientEvent) {
        tracing::debug!(?event, "client event");
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(?event, "client event dropped: the event channel is full");
        }
    }

    fn server_name(&self, index: usize) -> String {
        self.policy
            .servers()
            .get(index)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    // ------------------------------------------------------------- connecting

    fn begin_attempt(&mut self, attempt: Attempt) {
        self.emit(ClientEvent::from(attempt));
        let until = after(Instant::now(), attempt.delay);
        self.phase = Phase::Backoff { attempt, until };
        self.status.send_replace(Status::Connecting);
    }

    fn open(&mut self, attempt: Attempt, now: Instant) {
        let addr = self.server_name(attempt.server);
        tracing::debug!(server = %addr, number = attempt.number, "connecting");
        let net = self.net.clone();
        let connect: BoxFuture<'static, io::Result<BoxStream>> =
            Box::pin(async move { net.connect(&addr).await });
        self.phase = Phase::Opening {
            attempt,
            deadline: self.connect_timeout.map(|t| after(now, t)),
            connect,
        };
    }

    fn on_opened(&mut self, result: io::Result<BoxStream>) {
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

    fn attempt_failed(&mut self, reason: DisconnectReason) {
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

    fn on_connected(&mut self, negotiated: Negotiated) {
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
        self.emit(ClientEvent::Resubscribed {
            count: replay.len(),
        });
        if let Some(previous) = self.last_server.replace(server) {
            if previous != server {
                self.emit(ClientEvent::Failover {
                    from: previous,
                    to: server,
                });
            }
        }
        self.pump(now);
    }

    // ------------------------------------------------------------- losing it

    /// The socket ended (EOF, error, bad input) in whatever phase.
    fn io_ended(&mut self, reason: DisconnectReason) {
        match self.phase {
            Phase::Opening { .. } | Phase::Handshake { .. } => self.attempt_failed(reason),
            Phase::Up { .. } | Phase::Closing { .. } => self.connection_lost(reason),
            Phase::Backoff { .. } | Phase::Stopped => self.io = None,
        }
    }

    fn connection_lost(&mut self, reason: DisconnectReason) {
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
    fn settle_io(&mut self) {
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

    fn stop(&mut self, reason: StopReason) {
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

    fn on_shutdown(&mut self) {
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

    // ------------------------------------------------------------- timers

    fn on_timer(&mut self) {
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
    fn expire_pending(&mut self, now: Instant) {
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

    // ------------------------------------------------------------- writing

    fn on_wrote(&mut self, result: io::Result<usize>) {
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
                    }
                }
                self.pump(now);
            }
            Err(e) => self.io_ended(DisconnectReason::Io(e.to_string())),
        }
    }

    /// Moves queued operations into the output buffer while connected and there is room.
    fn pump(&mut self, now: Instant) {
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
    fn write_op(&mut self, q: Queued, now: Instant) {
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

    // ------------------------------------------------------------- commands

    fn on_command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Op(q) => {
                if q.deadline.is_some_and(|d| d <= now) {
                    q.op.fail(ClientError::Timeout);
                    return;
                }
                self.pending.push_back(q);
                self.pump(now);
            }
            Cmd::Subscribe { spec, reply } => match self.session.subscribe(spec) {
                Ok((id, frame)) => {
                    if frame.is_some() && matches!(self.phase, Phase::Up { .. }) {
                        let connection = self.session.connection();
                        self.pending.push_back(Queued {
                            op: Op::Subscribe { id, connection },
                            deadline: None,
                        });
                        self.pump(now);
                    }
                    let _ = reply.send(Ok(id));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Cmd::Unsubscribe { id, reply } => match self.session.unsubscribe(id) {
                Ok(frame) => {
                    let queued_subscribe = self
                        .pending
                        .iter()
                        .position(|q| matches!(q.op, Op::Subscribe { id: s, .. } if s == id));
                    match (queued_subscribe, frame) {
                        // The broker never saw the SUBSCRIBE: drop both.
                        (Some(pos), _) => {
                            let _ = self.pending.remove(pos);
                        }
                        (None, Some(frame)) if matches!(self.phase, Phase::Up { .. }) => {
                            let connection = self.session.connection();
                            self.pending.push_back(Queued {
                                op: Op::Unsubscribe { frame, connection },
                                deadline: None,
                            });
                            self.pump(now);
                        }
                        (None, _) => {}
                    }
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
        }
    }

    // ------------------------------------------------------------- reading

    fn on_read(&mut self, result: io::Result<usize>) {
        match result {
            Ok(0) => {
                let reason = match self.io.as_mut().and_then(|io| io.error.take()) {
                    Some(message) => DisconnectReason::ErrorFrame(message),
                    None => DisconnectReason::Eof,
                };
                self.io_ended(reason);
            }
            Ok(_) => {
                if let Some(io) = self.io.as_mut() {
                    io.last_read = Instant::now();
                }
                self.process_input();
            }
            Err(e) => self.io_ended(DisconnectReason::Io(e.to_string())),
        }
    }

    /// Decodes and handles the frames in the input buffer, stopping while a message
    /// waits for room in the message channel.
    fn process_input(&mut self) {
        while self.delivery.is_none() {
            let Some(io) = self.io.as_mut() else {
                return;
            };
            match io.decoder.decode(&mut io.rbuf) {
                Ok(None) => return,
                Ok(Some(Item::HeartBeat)) => {}
                Ok(Some(Item::Frame(frame))) => self.on_frame(frame),
                Err(e) => {
                    self.io_ended(DisconnectReason::Io(format!(
                        "invalid frame from the broker: {e}"
                    )));
                    return;
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        match self.phase {
            Phase::Handshake { .. } => match self.session.handle_connect_reply(&frame) {
                Ok(negotiated) => self.on_connected(negotiated),
                Err(ConnectError::Refused(message)) => {
                    self.attempt_failed(DisconnectReason::ErrorFrame(message))
                }
                Err(e) => self.attempt_failed(DisconnectReason::Io(format!("protocol error: {e}"))),
            },
            Phase::Up { .. } | Phase::Closing { .. } => {
                let incoming = self.session.handle_frame(frame);
                self.on_incoming(incoming);
            }
            _ => {}
        }
    }

    fn on_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Message(m) => self.deliver(m),
            Incoming::Receipt { id, .. } => {
                if let Phase::Closing {
                    receipt: Some(r), ..
                } = self.phase
                {
                    if r == id {
                        self.connection_lost(DisconnectReason::Shutdown);
                        return;
                    }
                }
                if let Some(tx) = self.waiters.remove(&id) {
                    let _ = tx.send(SendOutcome::Confirmed);
                    // A receipt slot is free: receipted operations may be waiting for it.
                    self.pump(Instant::now());
                }
            }
            Incoming::UnknownReceipt(id) => {
                tracing::debug!(receipt = %id, "RECEIPT for an unknown receipt id");
            }
            Incoming::Error {
                message, receipt, ..
            } => {
                let refused = receipt.and_then(|(id, _)| self.waiters.remove(&id));
                match &refused {
                    Some(_) => tracing::debug!(%message, "the broker refused a receipted frame"),
                    None => tracing::warn!(%message, "ERROR frame from the broker"),
                }
                if let Some(io) = self.io.as_mut() {
                    io.error = Some(message.clone());
                }
                if let Some(tx) = refused {
                    let _ = tx.send(SendOutcome::Failed(message));
                    self.pump(Instant::now());
                }
            }
            Incoming::Unexpected(frame) => {
                tracing::warn!(command = %frame.command, "unexpected frame from the broker");
            }
        }
    }

    fn deliver(&mut self, message: Message) {
        if self.messages_closed {
            return;
        }
        match self.messages.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(m)) => {
                if matches!(self.phase, Phase::Closing { .. }) {
                    tracing::debug!("message dropped while disconnecting: the channel is full");
                } else {
                    self.delivery = Some(m);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.messages_closed = true,
        }
    }

    fn on_deliverable(
        &mut self,
        permit: Result<mpsc::OwnedPermit<Message>, mpsc::error::SendError<()>>,
    ) {
        match permit {
            Ok(p) => {
                if let Some(m) = self.delivery.take() {
                    p.send(m);
                }
            }
            Err(_) => {
                self.messages_closed = true;
                self.delivery = None;
            }
        }
        // Reading was paused; silence meanwhile says nothing about the broker.
        if let Some(io) = self.io.as_mut() {
            io.last_read = Instant::now();
        }
        self.process_input();
    }
}

/// Heart-beats go out at 90 % of the negotiated interval.
fn heartbeat_send_period(interval: Duration) -> Duration {
    (interval - interval / 10).max(Duration::from_millis(1))
}

fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(FAR_FUTURE))
        .unwrap_or(t)
}

async fn poll_some<F: Future + Unpin>(f: Option<&mut F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn write_some(w: Option<(&mut WriteHalf<BoxStream>, &[u8])>) -> io::Result<usize> {
    match w {
        Some((w, buf)) => w.write(buf).await,
        None => std::future::pending().await,
    }
}

async fn read_some(r: Option<(&mut ReadHalf<BoxStream>, &mut BytesMut)>) -> io::Result<usize> {
    match r {
        Some((r, buf)) => r.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

async fn reserve_some(
    tx: Option<mpsc::Sender<Message>>,
) -> Result<mpsc::OwnedPermit<Message>, mpsc::error::SendError<()>> {
    match tx {
        Some(tx) => tx.reserve_owned().await,
        None => std::future::pending().await,
    }
}

async fn sleep_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::servers::ServerAddr;
    use crate::net::{Listener, Net};
    use crate::proto::Command;
    use tokio::io::DuplexStream;

    /// A network whose connections are in-memory pipes of `capacity` bytes; the far end
    /// of each goes to the test.
    struct PipeNet {
        capacity: usize,
        far_ends: mpsc::UnboundedSender<DuplexStream>,
    }

    impl Net for PipeNet {
        fn bind<'a>(&'a self, _: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
            Box::pin(async { Err(io::Error::other("PipeNet cannot listen")) })
        }

        fn connect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
            let (near, far) = tokio::io::duplex(self.capacity);
            let sent = self.far_ends.send(far);
            Box::pin(async move {
                sent.map_err(|_| io::Error::other("test over"))?;
                Ok(Box::new(near) as BoxStream)
            })
        }
    }

    /// The broker end of a pipe.
    struct Far {
        pipe: DuplexStream,
        buf: BytesMut,
        decoder: Decoder,
    }

    impl Far {
        fn new(pipe: DuplexStream) -> Far {
            Far {
                pipe,
                buf: BytesMut::new(),
                decoder: Decoder::new(FrameLimits::default()),
            }
        }

        async fn frame(&mut self) -> Option<Frame> {
            loop {
                match self.decoder.decode(&mut self.buf).expect("valid STOMP") {
                    Some(Item::Frame(f)) => return Some(f),
                    Some(Item::HeartBeat) => {}
                    None => {
                        if self.pipe.read_buf(&mut self.buf).await.ok()? == 0 {
                            return None;
                        }
                    }
                }
            }
        }

        async fn write(&mut self, f: Frame) {
            let mut out = BytesMut::new();
            encode(&f, Version::V1_2, &mut out);
            self.pipe.write_all(&out).await.unwrap();
        }

        async fn handshake(&mut self) {
            let connect = self.frame().await.expect("CONNECT");
            assert_eq!(connect.command, Command::Connect);
            self.decoder.set_version(Version::V1_2);
            self.write(Frame::new(Command::Connected).header("version", "1.2"))
                .await;
        }
    }

    fn pipe_client(
        capacity: usize,
    ) -> (Client, ClientStreams, mpsc::UnboundedReceiver<DuplexStream>) {
        pipe_client_with(capacity, |_| {})
    }

    fn pipe_client_with(
        capacity: usize,
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> (Client, ClientStreams, mpsc::UnboundedReceiver<DuplexStream>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let servers = ServerList::single(ServerAddr::new("pipe", 1));
        let mut cfg = ClientConfig::new(servers, PolicyKind::StompGem);
        cfg.heart_beat_ms = (0, 0);
        adjust(&mut cfg);
        let net = Arc::new(PipeNet {
            capacity,
            far_ends: tx,
        });
        let (client, streams) = Client::start(net, cfg);
        (client, streams, rx)
    }

    /// Frames still in the output buffer (not, or only partly, written) when the connection
    /// dies are written again on the next connection, each exactly once and whole; none is
    /// reported indeterminate.
    #[tokio::test(start_paused = true)]
    async fn unwritten_sends_are_requeued_not_indeterminate() {
        let (client, mut streams, mut pipes) = pipe_client(256);
        let mut far = Far::new(pipes.recv().await.unwrap());
        far.handshake().await;
        let body = |i: u8| Bytes::from(vec![b'a' + i; 1000]);
        let mut receipted = Vec::new();
        for i in 0..3 {
            let c = client.clone();
            let b = body(i);
            receipted.push(tokio::spawn(async move {
                c.send_with_receipt("/queue/q", Headers::new(), b).await
            }));
        }
        let c = client.clone();
        let plain = tokio::spawn(async move { c.send("/queue/q", Headers::new(), body(3)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The pipe holds the first 256 bytes of the first SEND; the rest waits in the
        // client. Take them and cut the connection.
        let mut partial = BytesMut::with_capacity(4096);
        far.pipe.read_buf(&mut partial).await.unwrap();
        assert_eq!(partial.len(), 256);
        assert!(partial.starts_with(b"SEND\n"));
        let mut d = Decoder::new(FrameLimits::default());
        d.set_version(Version::V1_2);
        assert_eq!(d.decode(&mut partial), Ok(None), "an incomplete frame");
        drop(far);
        assert!(receipted.iter().all(|t| !t.is_finished()) && !plain.is_finished());

        let mut far = Far::new(pipes.recv().await.unwrap());
        far.handshake().await;
        for i in 0..4u8 {
            let f = far.frame().await.expect("a SEND");
            assert_eq!(f.command, Command::Send);
            assert_eq!(f.body, body(i), "SEND {i} whole and in order");
            if let Some(r) = f.headers.get("receipt") {
                let r = r.to_owned();
                far.write(Frame::new(Command::Receipt).header("receipt-id", r))
                    .await;
            }
        }
        for t in receipted {
            assert_eq!(t.await.unwrap(), SendOutcome::Confirmed);
        }
        assert_eq!(plain.await.unwrap(), Ok(()));
        // Nothing was written twice.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), far.frame())
                .await
                .is_err()
        );
        let mut kinds = Vec::new();
        while let Ok(e) = streams.events.try_recv() {
            kinds.push(e);
        }
        assert!(
            kinds
                .iter()
                .filter(|e| matches!(e, ClientEvent::Disconnected { .. }))
                .count()
                == 1,
            "{kinds:?}"
        );
        drop(far);
    }

    /// A send whose caller gave up before it could be written is never written.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_send_is_never_written() {
        let (client, _streams, mut pipes) = pipe_client(64 * 1024);
        // Connected at TCP level, but the broker has not answered CONNECT yet.
        let mut far = Far::new(pipes.recv().await.unwrap());
        let c = client.clone();
        let cancelled =
            tokio::spawn(async move { c.send("/queue/q", Headers::new(), "cancelled").await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        let c = client.clone();
        let kept = tokio::spawn(async move { c.send("/queue/q", Headers::new(), "kept").await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        far.handshake().await;
        let f = far.frame().await.expect("a SEND");
        assert_eq!(&f.body[..], b"kept");
        assert_eq!(kept.await.unwrap(), Ok(()));
        client.disconnect().await;
        let f = far.frame().await.expect("DISCONNECT");
        assert_eq!(f.command, Command::Disconnect);
    }

    /// At most `pending_sends_max` receipts are outstanding; further receipted sends wait
    /// for answers.
    #[tokio::test(start_paused = true)]
    async fn outstanding_receipts_are_bounded() {
        let (client, _streams, mut pipes) =
            pipe_client_with(64 * 1024, |c| c.pending_sends_max = 2);
        let mut far = Far::new(pipes.recv().await.unwrap());
        far.handshake().await;
        let mut sends = Vec::new();
        for i in 0..3 {
            let c = client.clone();
            sends.push(tokio::spawn(async move {
                c.send_with_receipt("/queue/q", Headers::new(), format!("{i}"))
                    .await
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first = far.frame().await.unwrap();
        let second = far.frame().await.unwrap();
        assert_eq!((&first.body[..], &second.body[..]), (&b"0"[..], &b"1"[..]));
        assert!(
            tokio::time::timeout(Duration::from_secs(1), far.frame())
                .await
                .is_err(),
            "the third waits while two receipts are outstanding"
        );
        let r = first.headers.get("receipt").unwrap().to_owned();
        far.write(Frame::new(Command::Receipt).header("receipt-id", r))
            .await;
        let third = far.frame().await.unwrap();
        assert_eq!(&third.body[..], b"2");
        for f in [second, third] {
            let r = f.headers.get("receipt").unwrap().to_owned();
            far.write(Frame::new(Command::Receipt).header("receipt-id", r))
                .await;
        }
        for s in sends {
            assert_eq!(s.await.unwrap(), SendOutcome::Confirmed);
        }
    }

    #[test]
    fn heartbeats_go_out_a_little_early() {
        assert_eq!(
            heartbeat_send_period(Duration::from_millis(30_500)),
            Duration::from_millis(27_450)
        );
        assert_eq!(
            heartbeat_send_period(Duration::from_millis(1)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn mcollective_config_maps_to_the_client_config() {
        let text = "\
connector = activemq
plugin.activemq.pool.size = 2
plugin.activemq.pool.1.host = b1
plugin.activemq.pool.1.user = mco
plugin.activemq.pool.1.password = pw
plugin.activemq.pool.2.host = b2
plugin.activemq.heartbeat_interval = 30
";
        let mco = McoClientConfig::from_text(text, &BTreeMap::new()).unwrap();
        let c = ClientConfig::from_mcollective(&mco);
        assert_eq!(c.policy, PolicyKind::StompGem);
        assert_eq!(c.reconnect, mco.reconnect);
        assert_eq!(c.heart_beat_ms, (30_500, 29_500));
        assert_eq!(c.accept_version.as_deref(), Some(mco.accept_version()));
        assert!(c.accept_version.as_deref().unwrap().starts_with("1.1"));
        assert_eq!(c.host.as_deref(), Some("mcollective"));
        assert!(!c.heartbeat_read_timeout);
        assert_eq!(c.servers.get(0).unwrap().login.as_deref(), Some("mco"));
        let legacy = McoClientConfig::from_text(
            "connector = activemq\nplugin.activemq.pool.size = 1\nplugin.activemq.pool.1.host = b1\n",
            &BTreeMap::new(),
        )
        .unwrap();
        let c = ClientConfig::from_mcollective(&legacy);
        assert_eq!(
            (c.accept_version, c.host, c.heart_beat_ms),
            (None, None, (0, 0))
        );
    }
}
