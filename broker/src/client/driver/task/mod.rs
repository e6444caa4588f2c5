//! The driver task: one loop that owns the socket, the
//! [`Session`](crate::client::Session) and the reconnect policy, and serves the
//! [`Client`](crate::client::Client) handles' commands (see the module documentation of
//! [`super`] for its behaviour). This file holds its state and the loop; its parts
//! (connecting, losing a connection, timers, writing, commands, reading) are the files
//! beside it.

mod commands;
mod connecting;
mod losing;
mod reading;
mod timers;
mod writing;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::ops::*;
use super::{ClientConfig, SendOutcome, Status};
use crate::client::events::ClientEvent;
use crate::client::policy::{Attempt, Reconnector};
use crate::client::session::{Message, ReceiptId, Session};
use crate::net::{BoxFuture, BoxStream, SharedNet};
use crate::proto::{Decoder, Frame, FrameLimits, Version, encode};

/// Bytes reserved in the input buffer before each read.
const READ_CHUNK_BYTES: usize = 4 * 1024;
/// Queued operations wait while the output buffer holds at least this many bytes.
const WRITE_BUFFER_HIGH_WATER_BYTES: usize = 64 * 1024;
/// Commands handled in a row before the driver checks the socket for input anyway.
const COMMAND_STREAK_MAX: u32 = 64;
/// Commands already waiting that the driver takes after the one that woke it, before it
/// writes: a burst of SENDs then leaves in one write rather than one write each.
const COMMAND_BATCH_MAX: u32 = 64;
/// Stand-in for "never" when a deadline would overflow `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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
    /// The last SUBSCRIBE replayed after CONNECTED: once it has left, the subscriptions
    /// are back ([`ClientEvent::Resubscribed`], then [`ClientEvent::Failover`] if the
    /// server changed).
    Replayed {
        count: usize,
        failover: Option<(usize, usize)>,
    },
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

/// The ends of the channels between a [`Client`](super::Client) handle and its driver.
pub(super) struct Channels {
    /// Commands from the handles.
    pub(super) commands: mpsc::Receiver<Cmd>,
    /// MESSAGE frames for the application.
    pub(super) messages: mpsc::Sender<Message>,
    /// Events for the application.
    pub(super) events: mpsc::Sender<ClientEvent>,
    /// Events dropped because the application did not read them.
    pub(super) events_dropped: Arc<AtomicU64>,
    /// Becomes `true` when the application asks to stop.
    pub(super) shutdown: watch::Receiver<bool>,
    /// The connection status the handles read.
    pub(super) status: watch::Sender<Status>,
}

pub(super) struct Driver {
    net: SharedNet,
    session: Session,
    policy: Reconnector,
    connect_timeout: Option<Duration>,
    connread_timeout: crate::client::policy::ConnreadTimeout,
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
    /// A driver for `config`, serving the handle's `channels`; nothing happens until
    /// [`Driver::run`].
    pub(super) fn new(
        net: SharedNet,
        config: &ClientConfig,
        policy: Reconnector,
        channels: Channels,
    ) -> Driver {
        Driver {
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
            commands: channels.commands,
            messages: channels.messages,
            messages_closed: false,
            events: channels.events,
            events_dropped: channels.events_dropped,
            shutdown: channels.shutdown,
            shutting_down: false,
            status: channels.status,
            last_server: None,
            command_streak: 0,
        }
    }

    pub(super) async fn run(mut self) {
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
                Wake::Command(Some(c)) => {
                    self.on_command(c);
                    let taken = self.take_waiting_commands();
                    self.command_streak = self.command_streak.saturating_add(taken);
                }
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

    /// Takes commands that are already waiting (up to [`COMMAND_BATCH_MAX`], while the
    /// driver accepts commands), so that they share the next write; returns how many.
    fn take_waiting_commands(&mut self) -> u32 {
        let mut taken = 0;
        while taken < COMMAND_BATCH_MAX && self.accepts_commands() {
            match self.commands.try_recv() {
                Ok(c) => self.on_command(c),
                Err(_) => break,
            }
            taken += 1;
        }
        taken
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
}

/// Heart-beats go out at 90 % of the negotiated interval.
pub(super) fn heartbeat_send_period(interval: Duration) -> Duration {
    (interval - interval / 10).max(Duration::from_millis(1))
}

pub(super) fn after(t: Instant, d: Duration) -> Instant {
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
