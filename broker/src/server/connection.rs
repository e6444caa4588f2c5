//! Per-connection reader and writer tasks.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use super::metrics::Traffic;
use super::{Event, Flushed};
use crate::core::memory::MemoryGauge;
use crate::core::{ConnId, OutFrame};
use crate::net::BoxStream;
use crate::proto::{Command, Decoder, Frame, FrameLimits, Item, Version, encode};

/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// A writer batches at most this many bytes before writing.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// An idle connection keeps buffers of at most this many bytes: a reader whose buffer
/// holds no partial frame, and a writer with nothing queued, give larger ones back, so
/// that ten thousand idle connections do not each hold a read chunk and a write batch.
const IDLE_BUFFER_BYTES: usize = 1024;

/// What the core task tells a writer.
#[derive(Debug)]
pub(super) enum WriterMsg {
    /// Encode and write this frame.
    Frame(Version, OutFrame),
    /// Write these bytes as they are: a Redis connection's reply that the core does not
    /// make (not counted as a frame in flush reports).
    Raw(bytes::Bytes),
    /// Write what is queued, then close the socket.
    Close,
}

/// Writes the core's frames in another protocol's words (a Redis connection's replies).
pub(super) trait Translate: Send + Sync + std::fmt::Debug {
    /// Appends what `frame` becomes on the wire to `buf` (nothing, for a frame the other
    /// protocol has no word for).
    fn encode(&self, frame: &OutFrame, buf: &mut BytesMut);
}

/// How a connection's frames are written: STOMP, or translated by another listener.
#[derive(Clone, Debug)]
pub(super) enum Encoding {
    Stomp,
    Translated(Arc<dyn Translate>),
}

/// What every connection's tasks share: where to report, and their limits.
#[derive(Clone, Debug)]
pub(super) struct Links {
    pub(super) inbox: mpsc::Sender<Event>,
    pub(super) flushes: mpsc::Sender<Flushed>,
    /// Bytes in and out, for the metrics endpoint.
    pub(super) traffic: Arc<super::metrics::Traffic>,
    pub(super) limits: FrameLimits,
    pub(super) write_timeout: Duration,
    /// The core's memory gauge; partial frames are charged to it.
    pub(super) memory: Arc<MemoryGauge>,
}

/// Starts the reader and writer tasks of one connection.
pub(super) fn spawn(
    conn: ConnId,
    stream: BoxStream,
    links: Links,
    writer_rx: mpsc::Receiver<WriterMsg>,
    paused: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let Links {
        inbox,
        flushes,
        traffic,
        limits,
        write_timeout,
        memory,
    } = links;
    let (read_half, write_half) = tokio::io::split(stream);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = Reader {
        conn,
        inbox: inbox.clone(),
        traffic: traffic.clone(),
        limits,
        memory,
        paused,
        ended: Some(ended_tx),
    };
    crate::task::spawn(reader.run(read_half, stop_rx));
    crate::task::spawn(async move {
        let writer = Writer {
            conn,
            inbox,
            flushes,
            traffic,
            write_timeout,
            encoding: Encoding::Stomp,
        };
        writer.run(write_half, writer_rx, Some(ended_rx)).await;
        // Closing the writer ends the reader too, and frees the connection slot.
        let _ = stop_tx.send(());
        drop(permit);
    });
}

/// A connection's reader task and what it reports to.
struct Reader {
    conn: ConnId,
    inbox: mpsc::Sender<Event>,
    traffic: Arc<Traffic>,
    limits: FrameLimits,
    /// Bytes of a frame still being read are charged here.
    memory: Arc<MemoryGauge>,
    /// True while the core's producer flow control wants this connection left unread.
    paused: watch::Receiver<bool>,
    /// Tells the writer that the peer has gone (end of stream or a read error): the
    /// writer reports the close, after the flushes it has reported, so that the core
    /// counts every frame written before it takes the connection away (an `ack:auto`
    /// message the client received is consumed, not redelivered).
    ended: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Reader {
    async fn run(
        mut self,
        read: ReadHalf<BoxStream>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut charged = 0u64;
        self.read_frames(read, &mut stop, &mut charged).await;
        self.memory.sub(charged);
    }

    async fn read_frames(
        &mut self,
        mut read: ReadHalf<BoxStream>,
        stop: &mut tokio::sync::oneshot::Receiver<()>,
        charged: &mut u64,
    ) {
        let conn = self.conn;
        let inbox = self.inbox.clone();
        let mut decoder = Decoder::new(self.limits);
        let mut buf = BytesMut::new();
        // How much room to make before the next read: a whole chunk while reads fill
        // what they are given (a stream of frames), a small buffer while they do not (an
        // idle connection's heart-beats, the odd request).
        let mut want = IDLE_BUFFER_BYTES;
        loop {
            // Producer flow control: read nothing more until the core has room.
            while *self.paused.borrow_and_update() {
                tokio::select! {
                    biased;
                    _ = &mut *stop => return,
                    r = self.paused.changed() => if r.is_err() { return },
                }
            }
            buf.reserve(want);
            let spare = buf.capacity() - buf.len();
            let n = tokio::select! {
                biased;
                _ = &mut *stop => return,
                r = read.read_buf(&mut buf) => r,
            };
            match n {
                Ok(0) | Err(_) => {
                    if let Some(ended) = self.ended.take()
                        && ended.send(()).is_err()
                    {
                        // The writer has already ended (and the core knows).
                        tracing::trace!(%conn, "reader ended after its writer");
                    }
                    return;
                }
                Ok(n) => {
                    self.traffic.read(n);
                    want = if n >= spare {
                        READ_CHUNK_BYTES
                    } else {
                        IDLE_BUFFER_BYTES
                    };
                }
            }
            let mut beat = false;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(Item::HeartBeat)) => beat = true,
                    Ok(Some(Item::Frame(frame))) => {
                        beat = false;
                        if matches!(frame.command, Command::Connect | Command::Stomp) {
                            let v = Version::negotiate(frame.headers.get("accept-version"))
                                .unwrap_or(Version::V1_0);
                            decoder.set_version(v);
                        }
                        if inbox.send(Event::Frame { conn, frame }).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        // The core answers with ERROR and closes; stop reading.
                        let _ = inbox.send(Event::DecodeError { conn, error }).await;
                        return;
                    }
                }
            }
            // Nothing partial left after a quiet read: give the chunk back rather than
            // keep it for a connection that may stay idle.
            if buf.is_empty() && want == IDLE_BUFFER_BYTES && buf.capacity() > 2 * IDLE_BUFFER_BYTES
            {
                buf = BytesMut::new();
            }
            // What is left is part of a frame still coming: it counts against the
            // broker's memory limit until it is complete.
            let held = buf.len() as u64;
            if held > *charged {
                self.memory.add(held - *charged);
            } else {
                self.memory.sub(*charged - held);
            }
            *charged = held;
            if beat && inbox.send(Event::HeartBeat { conn }).await.is_err() {
                return;
            }
        }
    }
}

/// A connection's writer task and what it reports to.
pub(super) struct Writer {
    pub(super) conn: ConnId,
    pub(super) inbox: mpsc::Sender<Event>,
    pub(super) flushes: mpsc::Sender<Flushed>,
    pub(super) traffic: Arc<Traffic>,
    pub(super) write_timeout: Duration,
    pub(super) encoding: Encoding,
}

impl Writer {
    /// Writes what the core sends until it lets go of this writer or a write fails.
    /// `reader_ended` fires when the connection's reader saw the peer go: the writer then
    /// reports the close itself, after every flush it has reported.
    pub(super) async fn run(
        self,
        mut write: WriteHalf<BoxStream>,
        mut rx: mpsc::Receiver<WriterMsg>,
        mut reader_ended: Option<tokio::sync::oneshot::Receiver<()>>,
    ) {
        let Writer {
            conn,
            inbox,
            flushes,
            traffic,
            write_timeout,
            encoding,
        } = self;
        let mut buf = BytesMut::new();
        loop {
            let ended = async {
                match reader_ended.as_mut() {
                    Some(r) => r.await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            // The peer's end first: frames still queued for it are not written (the core
            // takes them back when it handles the close).
            let first = tokio::select! {
                biased;
                gone = ended => {
                    reader_ended = None;
                    if gone {
                        let _ = inbox.send(Event::Closed { conn }).await;
                        // Nothing more is written; wait for the core to let go.
                        while rx.recv().await.is_some() {}
                        break;
                    }
                    continue;
                }
                m = rx.recv() => m,
            };
            let Some(first) = first else {
                // The core gave up on this writer (it fell too far behind) and has
                // closed the connection: what was queued is written, so the close is
                // reported after those flushes.
                let _ = inbox.send(Event::Closed { conn }).await;
                break;
            };
            let mut frames = 0usize;
            let mut close = false;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    WriterMsg::Frame(version, frame) => {
                        match &encoding {
                            Encoding::Stomp => encode_out(&frame, version, &mut buf),
                            Encoding::Translated(t) => t.encode(&frame, &mut buf),
                        }
                        frames += 1;
                    }
                    WriterMsg::Raw(bytes) => buf.extend_from_slice(&bytes),
                    WriterMsg::Close => {
                        close = true;
                        break;
                    }
                }
                if buf.len() < WRITE_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if !buf.is_empty() {
                match tokio::time::timeout(write_timeout, write.write_all(&buf)).await {
                    Ok(Ok(())) => {
                        traffic.wrote(buf.len());
                        buf.clear();
                        // Nothing more queued: an idle connection keeps no batch buffer.
                        if rx.is_empty() && buf.capacity() > IDLE_BUFFER_BYTES {
                            buf = BytesMut::new();
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        tracing::debug!(%conn, "write failed or timed out; closing");
                        let _ = inbox.send(Event::Closed { conn }).await;
                        return;
                    }
                }
            }
            if frames > 0 && flushes.send(Flushed { conn, frames }).await.is_err() {
                break;
            }
            if close {
                // After the flushes: the core settles what it closed with (an `ack:auto`
                // message written counts as consumed, one not written goes back).
                let _ = inbox.send(Event::Closed { conn }).await;
                let _ = tokio::time::timeout(write_timeout, write.shutdown()).await;
                return;
            }
        }
        let _ = tokio::time::timeout(write_timeout, write.shutdown()).await;
    }
}

/// Encodes one outbound frame.
fn encode_out(frame: &OutFrame, version: Version, buf: &mut BytesMut) {
    match frame {
        OutFrame::Control(f) => encode(f, version, buf),
        OutFrame::Message(d) => d.encode(version, buf),
        OutFrame::HeartBeat => buf.extend_from_slice(b"\n"),
    }
}

/// Answers a connection over the connection limit with an ERROR and closes it.
pub(super) async fn refuse(mut stream: BoxStream, message: String) {
    let mut buf = BytesMut::new();
    let frame = Frame::new(Command::Error)
        .header("message", message)
        .header("content-type", "text/plain");
    encode(&frame, Version::V1_0, &mut buf);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&buf).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
