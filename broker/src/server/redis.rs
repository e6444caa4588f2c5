//! Redis pub/sub (RESP2) connections, for fleets on MCollective's Redis connector.
//!
//! A Redis connection is an ordinary connection of the core: its reader turns Redis
//! commands into the STOMP frames the core already understands, and its writer turns the
//! core's frames back into Redis replies, so the broker's routing, limits, authorization
//! and flow control apply unchanged, and Redis and STOMP clients meet on the same topics:
//!
//! | Redis                    | core                                                  |
//! |--------------------------|-------------------------------------------------------|
//! | `AUTH [user] password`   | CONNECT with `login`/`passcode` (`redis.default_user` |
//! |                          | for the one-argument form); `+OK` or `-WRONGPASS`      |
//! | `PUBLISH c payload`      | SEND to `/topic/c`, body `payload`; `:<receivers>`    |
//! | `SUBSCRIBE c …`          | SUBSCRIBE `/topic/c` (id `c:c`); `subscribe` replies   |
//! | `PSUBSCRIBE glob`        | SUBSCRIBE to the narrowest covering wildcard (`a.b*` → |
//! |                          | `/topic/a.>`, id `p:…`); the writer keeps glob matches  |
//! | `UNSUBSCRIBE`, `PUNSUBSCRIBE` | UNSUBSCRIBE (all, without arguments)             |
//! | MESSAGE on `/topic/c`    | `message c payload` (`pmessage p c payload`)          |
//! | `PING`, `ECHO`, `QUIT`, `SELECT`, `CLIENT …` | answered here, in order          |
//!
//! Every command the core answers carries a receipt, so that replies keep the order of
//! the commands; a reply made here waits until the core has answered every command
//! before it. `PUBLISH` answers the number of subscriptions the core delivered the message
//! to (its RECEIPT's `stampede-receivers`, STOMP subscribers included); a pattern
//! subscription whose glob the writer then filters out is counted too. Glob
//! patterns keep Redis's meaning (`*`, `?`, `[…]`, `\\`): the core's topic wildcards match
//! whole dot-separated segments, so a pattern subscribes to the narrowest wildcard that
//! covers it and the writer drops what the glob does not match. Without users in `[security]`, a connection logs in at once (Redis has no
//! login by default); with users, its first command must be `AUTH`, or it logs in
//! anonymously if `allow_anonymous` lets it.
//!
//! Input is bounded: at most [`ARGS_MAX`] arguments per command, bulk strings up to the
//! frame body limit, inline commands up to [`INLINE_BYTES_MAX`]; anything else is a
//! protocol error (`-ERR Protocol error: …`) and the connection is closed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, mpsc};

use super::Event;
use super::connection::{Encoding, Links, Translate, Writer, WriterMsg};
use crate::core::RECEIVERS_HEADER;
use crate::core::{ConnId, OutFrame};
use crate::net::BoxStream;
use crate::proto::{Command, Frame};

/// Arguments one command may have.
pub const ARGS_MAX: usize = 1024;
/// Bytes of one inline (telnet-style) command line.
pub const INLINE_BYTES_MAX: usize = 64 * 1024;
/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What a Redis connection's reader and writer share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set while an `AUTH` waits for the core's CONNECTED, which is then answered `+OK`.
    auth_pending: AtomicBool,
    /// Commands the core has answered (their replies written into the output).
    answered: AtomicU64,
    answered_changed: Notify,
}

impl Shared {
    fn mark_answered(&self) {
        self.answered.fetch_add(1, Ordering::AcqRel);
        self.answered_changed.notify_waiters();
    }
}

impl Translate for Shared {
    /// Writes the Redis form of a frame the core emitted.
    fn encode(&self, frame: &OutFrame, buf: &mut BytesMut) {
        match frame {
            OutFrame::HeartBeat => {}
            OutFrame::Message(d) => {
                let channel = d
                    .destination
                    .strip_prefix("/topic/")
                    .unwrap_or(&d.destination);
                let sub = d.subscription.as_deref().unwrap_or("");
                // A subscription may be wider than what the client asked for (a glob's
                // topic wildcard; a channel named like a wildcard): keep only its matches.
                let wanted = match sub.split_once(':') {
                    Some(("p", pattern)) => glob_match(pattern.as_bytes(), channel.as_bytes()),
                    Some(("c", name)) => name == channel,
                    _ => true,
                };
                if !wanted {
                    return;
                }
                if let Some(pattern) = sub.strip_prefix("p:") {
                    array(buf, 4);
                    bulk(buf, b"pmessage");
                    bulk(buf, pattern.as_bytes());
                } else {
                    array(buf, 3);
                    bulk(buf, b"message");
                }
                bulk(buf, channel.as_bytes());
                bulk(buf, &d.message.body);
            }
            OutFrame::Control(f) => match f.command {
                Command::Connected if self.auth_pending.swap(false, Ordering::AcqRel) => {
                    buf.put_slice(b"+OK\r\n");
                }
                Command::Receipt => {
                    let id = f.headers.get("receipt-id").unwrap_or("");
                    reply_for_receipt(id, f.headers.get(RECEIVERS_HEADER), buf);
                    self.mark_answered();
                }
                Command::Error => {
                    if self.auth_pending.swap(false, Ordering::AcqRel) {
                        buf.put_slice(
                            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
                        );
                    } else {
                        let message = f.headers.get("message").unwrap_or("refused");
                        error(buf, &format!("ERR {message}"));
                    }
                    if f.headers.contains("receipt-id") {
                        self.mark_answered();
                    }
                }
                _ => {}
            },
        }
    }
}

/// The reply a receipt stands for: `publish` (the number of subscriptions that got the
/// message, which the core counted into `receivers`), or `<kind>:<count>:<name>` for the
/// (un)subscribe kinds.
fn reply_for_receipt(id: &str, receivers: Option<&str>, buf: &mut BytesMut) {
    if id == "publish" {
        let n: u64 = receivers.and_then(|r| r.parse().ok()).unwrap_or(0);
        buf.put_slice(format!(":{n}\r\n").as_bytes());
        return;
    }
    let mut parts = id.splitn(3, ':');
    let (Some(kind), Some(count), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    subscription_reply(buf, kind, Some(name), count.parse().unwrap_or(0));
}

fn subscription_reply(buf: &mut BytesMut, kind: &str, name: Option<&str>, count: usize) {
    array(buf, 3);
    bulk(buf, kind.as_bytes());
    match name {
        Some(n) => bulk(buf, n.as_bytes()),
        None => buf.put_slice(b"$-1\r\n"),
    }
    integer(buf, count as i64);
}

fn array(buf: &mut BytesMut, n: usize) {
    buf.put_slice(format!("*{n}\r\n").as_bytes());
}

fn bulk(buf: &mut BytesMut, data: &[u8]) {
    buf.put_slice(format!("${}\r\n", data.len()).as_bytes());
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

fn integer(buf: &mut BytesMut, n: i64) {
    buf.put_slice(format!(":{n}\r\n").as_bytes());
}

/// An error reply; line breaks in the message would break the protocol, so they become
/// spaces.
fn error(buf: &mut BytesMut, message: &str) {
    buf.put_u8(b'-');
    buf.put_slice(message.replace(['\r', '\n'], " ").as_bytes());
    buf.put_slice(b"\r\n");
}

/// A malformed request: answered with `-ERR Protocol error` and the connection closed.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Takes one complete command off the front of `buf`: `Ok(None)` until it is complete.
pub fn parse_command(
    buf: &mut BytesMut,
    bulk_bytes_max: usize,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf);
    }
    let mut at = 0;
    let Some(n) = number_line(buf, &mut at, b'*')? else {
        return Ok(None);
    };
    if n < 1 || n as usize > ARGS_MAX {
        return Err(ProtocolError(format!(
            "invalid multibulk length {n} (1 to {ARGS_MAX} arguments)"
        )));
    }
    let mut spans = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let Some(len) = number_line(buf, &mut at, b'$')? else {
            return Ok(None);
        };
        if len < 0 || len as usize > bulk_bytes_max {
            return Err(ProtocolError(format!(
                "invalid bulk length {len} (0 to {bulk_bytes_max} bytes)"
            )));
        }
        let len = len as usize;
        if buf.len() < at + len + 2 {
            return Ok(None);
        }
        if &buf[at + len..at + len + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not followed by CRLF".to_owned()));
        }
        spans.push((at, len));
        at += len + 2;
    }
    let frozen = buf.split_to(at).freeze();
    Ok(Some(
        spans
            .into_iter()
            .map(|(s, l)| frozen.slice(s..s + l))
            .collect(),
    ))
}

/// Reads `<prefix><decimal>\r\n` at `*at`; `Ok(None)` if the line is not complete yet.
fn number_line(buf: &[u8], at: &mut usize, prefix: u8) -> Result<Option<i64>, ProtocolError> {
    const LINE_BYTES_MAX: usize = 32;
    let rest = &buf[*at..];
    let Some(end) = rest.iter().take(LINE_BYTES_MAX).position(|b| *b == b'\n') else {
        if rest.len() >= LINE_BYTES_MAX {
            return Err(ProtocolError("length line too long".to_owned()));
        }
        return Ok(None);
    };
    let line = &rest[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.first() != Some(&prefix) {
        return Err(ProtocolError(format!(
            "expected '{}', got '{}'",
            prefix as char,
            line.first().map_or(' ', |b| *b as char)
        )));
    }
    let n = std::str::from_utf8(&line[1..])
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError("invalid length".to_owned()))?;
    *at += end + 1;
    Ok(Some(n))
}

fn parse_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(end) = buf.iter().take(INLINE_BYTES_MAX).position(|b| *b == b'\n') else {
        if buf.len() >= INLINE_BYTES_MAX {
            return Err(ProtocolError("too big inline request".to_owned()));
        }
        return Ok(None);
    };
    let line = buf.split_to(end + 1).freeze();
    let args: Vec<Bytes> = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|a| !a.is_empty())
        .map(|a| line.slice_ref(a))
        .collect();
    if args.len() > ARGS_MAX {
        return Err(ProtocolError(format!("more than {ARGS_MAX} arguments")));
    }
    Ok(Some(args))
}

/// The channels between a Redis connection's tasks and the core task.
pub(super) struct Pipes {
    /// For replies made here (the core holds another sender).
    pub(super) writer_tx: mpsc::Sender<WriterMsg>,
    pub(super) writer_rx: mpsc::Receiver<WriterMsg>,
    /// True while producer flow control wants the connection left unread.
    pub(super) paused: tokio::sync::watch::Receiver<bool>,
}

/// Starts the reader and writer of one Redis connection.
pub(super) fn spawn(
    conn: ConnId,
    stream: BoxStream,
    links: Links,
    pipes: Pipes,
    settings: Settings,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Pipes {
        writer_tx,
        writer_rx,
        paused,
    } = pipes;
    let shared = Arc::new(Shared::default());
    let (read_half, write_half) = tokio::io::split(stream);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = Reader {
        conn,
        inbox: links.inbox.clone(),
        writer: writer_tx,
        shared: shared.clone(),
        settings,
        bulk_bytes_max: links.limits.body_bytes_max,
        paused,
        connected: false,
        channels: BTreeSet::new(),
        patterns: BTreeSet::new(),
        expected: 0,
    };
    crate::task::spawn(reader.run(read_half, links.traffic.clone(), stop_rx));
    crate::task::spawn(async move {
        let writer = Writer {
            conn,
            inbox: links.inbox,
            flushes: links.flushes,
            traffic: links.traffic,
            write_timeout: links.write_timeout,
            encoding: Encoding::Translated(shared),
        };
        writer.run(write_half, writer_rx, None).await;
        let _ = stop_tx.send(());
        drop(permit);
    });
}

/// What a Redis connection needs to know of the broker's configuration.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// The user `AUTH password` logs in as (empty: none).
    pub(super) default_user: String,
    /// Whether `[security]` has users (then `AUTH` comes first).
    pub(super) users_exist: bool,
}

struct Reader {
    conn: ConnId,
    inbox: mpsc::Sender<Event>,
    writer: mpsc::Sender<WriterMsg>,
    shared: Arc<Shared>,
    settings: Settings,
    bulk_bytes_max: usize,
    paused: tokio::sync::watch::Receiver<bool>,
    connected: bool,
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
    /// Commands sent to the core that it answers (with a receipt or an error).
    expected: u64,
}

/// Whether the connection goes on after a command.
enum Next {
    Continue,
    Stop,
}

impl Reader {
    async fn run(
        mut self,
        mut read: tokio::io::ReadHalf<BoxStream>,
        traffic: Arc<super::metrics::Traffic>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let conn = self.conn;
        if !self.settings.users_exist && !self.connect(None, None).await {
            return;
        }
        let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
        loop {
            // Producer flow control: read nothing more until the core has room.
            while *self.paused.borrow_and_update() {
                tokio::select! {
                    biased;
                    _ = &mut stop => return,
                    r = self.paused.changed() => if r.is_err() { return },
                }
            }
            buf.reserve(READ_CHUNK_BYTES);
            let n = tokio::select! {
                biased;
                _ = &mut stop => return,
                r = read.read_buf(&mut buf) => r,
            };
            match n {
                Ok(0) | Err(_) => {
                    let _ = self.inbox.send(Event::Closed { conn }).await;
                    return;
                }
                Ok(n) => traffic.read(n),
            }
            loop {
                match parse_command(&mut buf, self.bulk_bytes_max) {
                    Ok(None) => break,
                    Ok(Some(args)) if args.is_empty() => {}
                    Ok(Some(args)) => match self.command(args).await {
                        Some(Next::Continue) => {}
                        Some(Next::Stop) | None => return,
                    },
                    Err(ProtocolError(why)) => {
                        let mut out = BytesMut::new();
                        error(&mut out, &format!("ERR Protocol error: {why}"));
                        self.reply(out).await;
                        // The writer reports the close after what it writes.
                        let _ = self.writer.send(WriterMsg::Close).await;
                        return;
                    }
                }
            }
        }
    }

    /// Sends CONNECT; false once the core is gone.
    async fn connect(&mut self, login: Option<&str>, passcode: Option<&str>) -> bool {
        self.connected = true;
        let mut f = Frame::new(Command::Connect).header("accept-version", "1.2");
        if let Some(l) = login {
            f = f.header("login", l);
        }
        if let Some(p) = passcode {
            f = f.header("passcode", p);
        }
        self.to_core(f).await
    }

    async fn to_core(&self, frame: Frame) -> bool {
        let conn = self.conn;
        self.inbox.send(Event::Frame { conn, frame }).await.is_ok()
    }

    /// Sends a frame the core answers (by receipt or error), in order with the replies.
    async fn ask(&mut self, frame: Frame) -> bool {
        self.expected += 1;
        self.to_core(frame).await
    }

    /// Writes a reply made here once the core has answered every command before it.
    async fn reply(&self, out: BytesMut) -> bool {
        loop {
            let notified = self.shared.answered_changed.notified();
            if self.shared.answered.load(Ordering::Acquire) >= self.expected {
                break;
            }
            notified.await;
        }
        self.writer.send(WriterMsg::Raw(out.freeze())).await.is_ok()
    }

    fn subscribed(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    async fn command(&mut self, args: Vec<Bytes>) -> Option<Next> {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let text = |i: usize| -> Option<String> {
            args.get(i)
                .and_then(|a| std::str::from_utf8(a).ok())
                .map(str::to_owned)
        };
        let mut out = BytesMut::new();
        if name == "AUTH" {
            if !self.settings.users_exist {
                error(
                    &mut out,
                    "ERR AUTH <password> called without any password configured for the default user",
                );
                return self.reply(out).await.then_some(Next::Continue);
            }
            if self.connected {
                error(&mut out, "ERR AUTH is only accepted as the first command");
                return self.reply(out).await.then_some(Next::Continue);
            }
            let (user, pass) = match args.len() {
                2 => (
                    Some(self.settings.default_user.clone()).filter(|u| !u.is_empty()),
                    text(1),
                ),
                3 => (text(1), text(2)),
                _ => {
                    error(&mut out, "ERR wrong number of arguments for 'auth' command");
                    return self.reply(out).await.then_some(Next::Continue);
                }
            };
            self.shared.auth_pending.store(true, Ordering::Release);
            // CONNECTED answers it (+OK), or ERROR (-WRONGPASS) and a close.
            return self
                .connect(user.as_deref(), pass.as_deref())
                .await
                .then_some(Next::Continue);
        }
        if name == "QUIT" {
            out.put_slice(b"+OK\r\n");
            self.reply(out).await;
            if self.connected {
                self.to_core(Frame::new(Command::Disconnect)).await;
            } else {
                // The writer reports the close after what it writes.
                let _ = self.writer.send(WriterMsg::Close).await;
            }
            return Some(Next::Stop);
        }
        if !self.connected && !self.connect(None, None).await {
            return None;
        }
        let in_pubsub = self.subscribed() > 0;
        match name.as_str() {
            "PING" => {
                match (in_pubsub, text(1)) {
                    (true, msg) => {
                        array(&mut out, 2);
                        bulk(&mut out, b"pong");
                        bulk(&mut out, msg.unwrap_or_default().as_bytes());
                    }
                    (false, Some(msg)) => bulk(&mut out, msg.as_bytes()),
                    (false, None) => out.put_slice(b"+PONG\r\n"),
                }
                self.reply(out).await.then_some(Next::Continue)
            }
            "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" => {
                self.subscriptions(&name, &args).await
            }
            _ if in_pubsub => {
                error(
                    &mut out,
                    &format!(
                        "ERR Can't execute '{}': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / \
                         QUIT are allowed in this context",
                        name.to_ascii_lowercase()
                    ),
                );
                self.reply(out).await.then_some(Next::Continue)
            }
            "PUBLISH" => {
                let (Some(channel), Some(payload)) = (text(1), args.get(2)) else {
                    error(
                        &mut out,
                        "ERR wrong number of arguments for 'publish' command",
                    );
                    return self.reply(out).await.then_some(Next::Continue);
                };
                let frame = Frame::new(Command::Send)
                    .header("destination", format!("/topic/{channel}"))
                    .header("receipt", "publish")
                    .header(RECEIVERS_HEADER, "count")
                    .body(payload.clone());
                self.ask(frame).await.then_some(Next::Continue)
            }
            "ECHO" => {
                match args.get(1) {
                    Some(a) => bulk(&mut out, a),
                    None => error(&mut out, "ERR wrong number of arguments for 'echo' command"),
                }
                self.reply(out).await.then_some(Next::Continue)
            }
            "SELECT" | "CLIENT" | "READONLY" => {
                out.put_slice(b"+OK\r\n");
                self.reply(out).await.then_some(Next::Continue)
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                error(
                    &mut out,
                    &format!(
                        "ERR unknown command '{}' (this broker speaks Redis pub/sub only)",
                        shown.to_ascii_lowercase()
                    ),
                );
                self.reply(out).await.then_some(Next::Continue)
            }
        }
    }

    /// SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE and PUNSUBSCRIBE: one reply per name.
    async fn subscriptions(&mut self, name: &str, args: &[Bytes]) -> Option<Next> {
        let kind = name.to_ascii_lowercase();
        let pattern = kind.starts_with('p');
        let subscribing = !kind.contains("unsub");
        let mut names: Vec<String> = Vec::new();
        for a in &args[1..] {
            match std::str::from_utf8(a) {
                Ok(t) => names.push(t.to_owned()),
                Err(_) => {
                    let mut out = BytesMut::new();
                    error(&mut out, "ERR channel names must be UTF-8");
                    return self.reply(out).await.then_some(Next::Continue);
                }
            }
        }
        if subscribing && names.is_empty() {
            let mut out = BytesMut::new();
            error(
                &mut out,
                &format!("ERR wrong number of arguments for '{kind}' command"),
            );
            return self.reply(out).await.then_some(Next::Continue);
        }
        if !subscribing && names.is_empty() {
            let set = if pattern {
                &self.patterns
            } else {
                &self.channels
            };
            names = set.iter().cloned().collect();
            if names.is_empty() {
                let mut out = BytesMut::new();
                subscription_reply(&mut out, &kind, None, self.subscribed());
                return self.reply(out).await.then_some(Next::Continue);
            }
        }
        for n in names {
            let destination = if pattern {
                topic_pattern(&n)
            } else {
                format!("/topic/{n}")
            };
            let id = format!("{}:{n}", if pattern { 'p' } else { 'c' });
            let set = if pattern {
                &mut self.patterns
            } else {
                &mut self.channels
            };
            let changed = if subscribing {
                set.insert(n.clone())
            } else {
                set.remove(&n)
            };
            let count = self.subscribed();
            if !changed {
                let mut out = BytesMut::new();
                subscription_reply(&mut out, &kind, Some(&n), count);
                if !self.reply(out).await {
                    return None;
                }
                continue;
            }
            let receipt = format!("{kind}:{count}:{n}");
            let frame = if subscribing {
                Frame::new(Command::Subscribe)
                    .header("id", id)
                    .header("destination", destination)
            } else {
                Frame::new(Command::Unsubscribe).header("id", id)
            };
            if !self.ask(frame.header("receipt", receipt)).await {
                return None;
            }
        }
        Some(Next::Continue)
    }
}

/// The narrowest topic subscription that receives every channel `glob` matches: the
/// literal part before the first glob character, cut back to its last `.` segment
/// boundary, then `>` (`mcollective.*` → `/topic/mcollective.>`, `mc::*` → `/topic/>`).
/// The writer then keeps only the channels the glob itself matches ([`glob_match`]).
fn topic_pattern(glob: &str) -> String {
    let literal = glob
        .find(['*', '?', '[', '\\'])
        .map_or(glob, |at| &glob[..at]);
    if literal.len() == glob.len() {
        return format!("/topic/{glob}");
    }
    match literal.rfind('.') {
        Some(dot) if dot > 0 => format!("/topic/{}.>", &literal[..dot]),
        _ => "/topic/>".to_owned(),
    }
}

/// Redis's glob matching (`stringmatchlen`): `*` any run, `?` one byte, `[abc]`, `[^a]`,
/// `[a-z]` classes and `\x` for a literal `x`.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative, with one backtrack point for the last `*`: linear in practice, and never
    // recursive, so a hostile pattern cannot exhaust the stack.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == text[t] => {
                    p += 2;
                    t += 1;
                    continue;
                }
                // An escape of another byte: no match here.
                b'\\' if p + 1 < pattern.len() => {}
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether byte `c` is in the class starting at `pattern[open] == b'['`, and where the
/// pattern goes on after the class; `None` when the class is not closed.
fn class_match(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<String>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = parse_command(&mut buf, 1024)? {
            out.push(
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn commands_parse_whole_or_not_at_all() {
        let full = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhe\r\no\r\nPING\r\n";
        assert_eq!(
            parse_all(full).unwrap(),
            vec![vec!["PUBLISH", "ch", "he\r\no"], vec!["PING"]]
        );
        // Every prefix of a command is incomplete, never an error, and consumes nothing.
        let one = b"*2\r\n$9\r\nSUBSCRIBE\r\n$3\r\nabc\r\n";
        for cut in 0..one.len() {
            let mut buf = BytesMut::from(&one[..cut]);
            assert_eq!(parse_command(&mut buf, 1024), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn garbage_and_excess_are_protocol_errors() {
        assert!(parse_all(b"*0\r\n").is_err());
        assert!(parse_all(b"*99999\r\n").is_err());
        assert!(
            parse_all(b"*1\r\n$2000\r\n").is_err(),
            "bulk over the limit"
        );
        assert!(parse_all(b"*1\r\n$-5\r\n").is_err());
        assert!(parse_all(b"*1\r\n:5\r\n").is_err());
        assert!(
            parse_all(b"*1\r\n$2\r\nabXY").is_err(),
            "no CRLF after the bulk"
        );
        assert!(parse_all(b"*1234567890123456789012345678901234567").is_err());
        assert!(parse_all(&vec![b'a'; INLINE_BYTES_MAX + 1]).is_err());
    }

    #[test]
    fn globs_subscribe_to_the_narrowest_covering_wildcard() {
        assert_eq!(topic_pattern("*"), "/topic/>");
        assert_eq!(topic_pattern("mcollective.*"), "/topic/mcollective.>");
        assert_eq!(topic_pattern("a.b.c?"), "/topic/a.b.>");
        assert_eq!(topic_pattern("mcollective::*"), "/topic/>");
        assert_eq!(topic_pattern("plain"), "/topic/plain");
    }

    #[test]
    fn globs_match_as_redis_matches_them() {
        let yes = [
            ("*", "anything"),
            ("mcollective::*", "mcollective::server::agents"),
            ("h?llo", "hello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-c]llo", "hbllo"),
            ("a\\*b", "a*b"),
            ("*.agents", "x.y.agents"),
            ("a*b*c", "aXXbYYc"),
        ];
        let no = [
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("a\\*b", "aXb"),
            ("*.agents", "x.y.agent"),
            ("a*b*c", "aXXbYY"),
            ("mcollective::*", "other::server"),
        ];
        for (p, t) in yes {
            assert!(
                glob_match(p.as_bytes(), t.as_bytes()),
                "{p} should match {t}"
            );
        }
        for (p, t) in no {
            assert!(
                !glob_match(p.as_bytes(), t.as_bytes()),
                "{p} should not match {t}"
            );
        }
        // A pathological pattern stays fast (one backtrack point, no recursion).
        let p = "*a".repeat(500);
        assert!(glob_match(p.as_bytes(), "a".repeat(10_000).as_bytes()));
        let p = format!("{p}b");
        assert!(!glob_match(p.as_bytes(), "a".repeat(10_000).as_bytes()));
    }

    #[test]
    fn receipts_become_replies_in_redis_terms() {
        let mut buf = BytesMut::new();
        reply_for_receipt("subscribe:2:mcollective::server::agents", None, &mut buf);
        assert_eq!(
            &buf[..],
            b"*3\r\n$9\r\nsubscribe\r\n$27\r\nmcollective::server::agents\r\n:2\r\n"
        );
        buf.clear();
        reply_for_receipt("publish", Some("2"), &mut buf);
        assert_eq!(&buf[..], b":2\r\n");
        buf.clear();
        reply_for_receipt("publish", None, &mut buf);
        assert_eq!(&buf[..], b":0\r\n");
    }
}
