//! A minimal Redis pub/sub client of our own over the [`Net`](stampede_broker::net::Net)
//! trait: PUBLISH and SUBSCRIBE/UNSUBSCRIBE only, RESP2, as MCollective's Redis connector
//! uses Redis.
//!
//! Like that connector, a client has two connections: a subscriber (which, once it has
//! subscribed, may only subscribe and unsubscribe) and a publisher. Both reconnect after
//! a failure, trying the servers of its [`ClientConfig`] in turn with the exponential
//! backoff of its reconnect settings; the subscriber subscribes to every channel again and
//! reports [`ClientEvent`]s as the STOMP client does (`Connected`, `Resubscribed`,
//! `Disconnected`), so that reports show Redis connections like STOMP ones.
//!
//! A message is MCollective-style: headers and body wrapped in one payload, written as the
//! YAML that Ruby's `YAML.dump({:body => body, :headers => headers})` gives for a binary
//! body:
//!
//! ```text
//! ---
//! :body: !binary |-
//!   cmVxPTQyO3Q9MTc5NTQzNzQxMzAwMAB4eHg=
//! :headers:
//!   reply-to: "mcollective::reply::mco::16202"
//! ```
//!
//! Every buffer is bounded: commands waiting for a connection (`commands_queued_max`),
//! messages for the application (`messages_buffered_max`; when it is full the subscriber
//! stops reading and Redis buffers, up to its own `client-output-buffer-limit`), and the
//! input buffer (one reply of at most [`REPLY_BYTES_MAX`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Buf, Bytes, BytesMut};
use stampede_broker::client::{ClientConfig, ClientError, ClientEvent, DisconnectReason};
use stampede_broker::net::{BoxStream, SharedNet};
use stampede_broker::proto::Headers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

/// Largest reply (or pushed message) accepted from Redis.
pub const REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A message received on a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisMessage {
    /// The channel.
    pub channel: String,
    /// Headers unwrapped from the payload.
    pub headers: Headers,
    /// The body unwrapped from the payload.
    pub body: Bytes,
}

// ------------------------------------------------------------------------------ RESP

/// A RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`.
    Simple(String),
    /// `-ERR …`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bulk string, `None` for `$-1`.
    Bulk(Option<Bytes>),
    /// `*n` array, `None` for `*-1`.
    Array(Option<Vec<Resp>>),
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(out: &mut BytesMut, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one value from the front of `buf`: `Ok(None)` when more bytes are needed,
/// otherwise the value and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: u32) -> Result<Option<(Resp, usize)>, String> {
    if depth > 8 {
        return Err("RESP nesting too deep".into());
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(end) = find_crlf(buf, at + 1) else {
        if buf.len() - at > 64 && kind != b'$' {
            return Err("RESP line too long".into());
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[at + 1..end]).map_err(|_| "RESP line is not UTF-8")?;
    let next = end + 2;
    let int = || {
        line.parse::<i64>()
            .map_err(|_| format!("bad RESP integer {line:?}"))
    };
    match kind {
        b'+' => Ok(Some((Resp::Simple(line.to_owned()), next))),
        b'-' => Ok(Some((Resp::Error(line.to_owned()), next))),
        b':' => Ok(Some((Resp::Int(int()?), next))),
        b'$' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Resp::Bulk(None), next)));
            }
            let n = n as usize;
            if n > REPLY_BYTES_MAX {
                return Err(format!("RESP bulk string of {n} bytes"));
            }
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err("RESP bulk string without CRLF".into());
            }
            let v = Bytes::copy_from_slice(&buf[next..next + n]);
            Ok(Some((Resp::Bulk(Some(v)), next + n + 2)))
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Resp::Array(None), next)));
            }
            if n > 1024 {
                return Err(format!("RESP array of {n} elements"));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((v, p)) => {
                        items.push(v);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(Some(items)), pos)))
        }
        other => Err(format!("unknown RESP type byte {other:#04x}")),
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

// -------------------------------------------------------------------------- envelope

/// Wraps headers and body into one payload (see the module documentation).
pub fn wrap(headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = String::from("---\n:body: !binary |-\n");
    let encoded = B64.encode(body);
    for chunk in encoded.as_bytes().chunks(60) {
        out.push_str("  ");
        // Invariant: base64 output is ASCII.
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(":headers:\n");
    for (k, v) in headers.iter() {
        out.push_str("  ");
        out.push_str(k);
        out.push_str(": \"");
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push_str("\"\n");
    }
    out.into_bytes()
}

/// Unwraps a payload made by [`wrap`].
pub fn unwrap(payload: &[u8]) -> Result<(Headers, Bytes), String> {
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8")?;
    let mut lines = text.lines().peekable();
    if lines.next() != Some("---") {
        return Err("payload does not start with ---".into());
    }
    if lines.next() != Some(":body: !binary |-") {
        return Err("payload has no binary :body:".into());
    }
    let mut b64 = String::new();
    while let Some(l) = lines.peek() {
        match l.strip_prefix("  ") {
            Some(chunk) => {
                b64.push_str(chunk);
                lines.next();
            }
            None => break,
        }
    }
    let body = B64
        .decode(b64.as_bytes())
        .map_err(|e| format!("bad base64 body: {e}"))?;
    if lines.next() != Some(":headers:") {
        return Err("payload has no :headers:".into());
    }
    let mut headers = Headers::new();
    for l in lines {
        let l = l
            .strip_prefix("  ")
            .ok_or_else(|| format!("bad header line {l:?}"))?;
        let (k, v) = l
            .split_once(": ")
            .ok_or_else(|| format!("bad header line {l:?}"))?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| format!("unquoted header value {v:?}"))?;
        let mut value = String::with_capacity(v.len());
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return Err("dangling escape in a header value".into()),
                }
            } else {
                value.push(c);
            }
        }
        headers.push(k.to_owned(), value);
    }
    Ok((headers, Bytes::from(body)))
}

// ---------------------------------------------------------------------------- client

enum SubCmd {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String, oneshot::Sender<()>),
}

struct PubCmd {
    channel: String,
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<i64, PublishError>>,
}

/// Why a PUBLISH did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Not sent, or the connection was lost before Redis answered.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Redis answered with an error.
    #[error("Redis refused the PUBLISH: {0}")]
    Refused(String),
}

/// A Redis pub/sub client (see the module documentation); cheap to clone.
#[derive(Clone)]
pub struct RedisClient {
    subs: mpsc::Sender<SubCmd>,
    pubs: mpsc::Sender<PubCmd>,
    shutdown: Arc<watch::Sender<bool>>,
    send_timeout: Option<Duration>,
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClient").finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Starts the subscriber and publisher tasks. `events` gets the subscriber's
    /// connection events.
    pub fn start(
        net: SharedNet,
        config: ClientConfig,
        events: impl Fn(ClientEvent) + Send + Sync + 'static,
    ) -> (RedisClient, mpsc::Receiver<RedisMessage>) {
        let (sub_tx, sub_rx) = mpsc::channel(config.commands_queued_max.max(1));
        let (pub_tx, pub_rx) = mpsc::channel(config.commands_queued_max.max(1));
        let (msg_tx, msg_rx) = mpsc::channel(config.messages_buffered_max.max(1));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let servers: Vec<String> = config
            .servers
            .iter()
            .map(|s| format!("{}:{}", s.host, s.port))
            .collect();
        let link = Link {
            net,
            servers,
            initial: config.reconnect.initial_delay,
            max: config.reconnect.max_delay,
            write_timeout: config.write_timeout,
            shutdown: shutdown_rx,
        };
        stampede_broker::task::spawn(subscriber(link.clone(), sub_rx, msg_tx, Arc::new(events)));
        stampede_broker::task::spawn(publisher(link, pub_rx));
        (
            RedisClient {
                subs: sub_tx,
                pubs: pub_tx,
                shutdown: Arc::new(shutdown_tx),
                send_timeout: config.send_timeout,
            },
            msg_rx,
        )
    }

    /// Subscribes to `channel` (kept across reconnects); resolves once the command is
    /// queued for the subscriber connection.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.subs
            .send(SubCmd::Subscribe(channel.to_owned(), tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Unsubscribes from `channel`.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.subs
            .send(SubCmd::Unsubscribe(channel.to_owned(), tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// PUBLISHes the wrapped message; resolves with the number of subscribers Redis
    /// delivered it to.
    pub async fn publish(
        &self,
        channel: &str,
        headers: &Headers,
        body: &[u8],
    ) -> Result<i64, PublishError> {
        let (tx, rx) = oneshot::channel();
        let cmd = PubCmd {
            channel: channel.to_owned(),
            payload: wrap(headers, body),
            reply: tx,
        };
        let go = async {
            self.pubs
                .send(cmd)
                .await
                .map_err(|_| PublishError::Client(ClientError::Closed))?;
            rx.await.unwrap_or(Err(ClientError::Closed.into()))
        };
        match self.send_timeout {
            Some(t) => tokio::time::timeout(t, go)
                .await
                .unwrap_or(Err(ClientError::Timeout.into())),
            None => go.await,
        }
    }

    /// Stops both connections.
    pub async fn disconnect(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// What both connections share: where to connect and how to back off.
#[derive(Clone)]
struct Link {
    net: SharedNet,
    servers: Vec<String>,
    initial: Duration,
    max: Duration,
    write_timeout: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Link {
    /// Connects to the next server in turn, backing off between failures; `None` on
    /// shutdown.
    async fn connect(
        &mut self,
        next: &mut usize,
        delay: &mut Duration,
        events: Option<&(dyn Fn(ClientEvent) + Send + Sync)>,
    ) -> Option<(usize, BoxStream)> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            let server = *next % self.servers.len().max(1);
            *next = next.wrapping_add(1);
            let addr = self.servers.get(server).cloned().unwrap_or_default();
            let attempt = tokio::time::timeout(self.write_timeout, self.net.connect(&addr)).await;
            match attempt {
                Ok(Ok(stream)) => {
                    *delay = self.initial;
                    return Some((server, stream));
                }
                Ok(Err(e)) => {
                    if let Some(ev) = events {
                        ev(ClientEvent::Disconnected {
                            reason: DisconnectReason::ConnectFailed(e.to_string()),
                        });
                    }
                }
                Err(_) => {
                    if let Some(ev) = events {
                        ev(ClientEvent::Disconnected {
                            reason: DisconnectReason::ConnectTimeout,
                        });
                    }
                }
            }
            let wait = *delay;
            *delay = (*delay * 2).min(self.max.max(self.initial));
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return None,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Reads from `stream` into `buf` until one value is parsed.
async fn read_value(stream: &mut BoxStream, buf: &mut BytesMut) -> Result<Resp, String> {
    loop {
        if let Some((v, used)) = parse(buf)? {
            buf.advance(used);
            return Ok(v);
        }
        if buf.len() > REPLY_BYTES_MAX + 64 {
            return Err("reply too large".into());
        }
        buf.reserve(16 * 1024);
        let n = stream.read_buf(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed by Redis".into());
        }
    }
}

async fn subscriber(
    mut link: Link,
    mut cmds: mpsc::Receiver<SubCmd>,
    messages: mpsc::Sender<RedisMessage>,
    events: Arc<dyn Fn(ClientEvent) + Send + Sync>,
) {
    let mut channels: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut next = 0usize;
    let mut delay = link.initial;
    'connection: loop {
        let Some((server, mut stream)) = link.connect(&mut next, &mut delay, Some(&*events)).await
        else {
            break;
        };
        let mut out = BytesMut::new();
        if !channels.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(channels.iter().map(|c| c.as_bytes()));
            encode_command(&mut out, &args);
            if let Err(e) = stream.write_all(&out).await {
                events(ClientEvent::Disconnected {
                    reason: DisconnectReason::Io(e.to_string()),
                });
                continue;
            }
        }
        events(ClientEvent::Connected { server });
        events(ClientEvent::Resubscribed {
            count: channels.len(),
        });
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            // Deliver whatever complete values are buffered before reading more.
            match parse(&buf) {
                Err(e) => {
                    events(ClientEvent::Disconnected {
                        reason: DisconnectReason::Io(e),
                    });
                    continue 'connection;
                }
                Ok(Some((v, used))) => {
                    buf.advance(used);
                    if let Some(m) = pushed_message(v)
                        && messages.send(m).await.is_err()
                    {
                        break 'connection;
                    }
                    continue;
                }
                Ok(None) => {}
            }
            buf.reserve(16 * 1024);
            tokio::select! {
                biased;
                _ = link.shutdown.changed() => break 'connection,
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { break 'connection };
                    let mut out = BytesMut::new();
                    let done = match cmd {
                        SubCmd::Subscribe(ch, done) => {
                            encode_command(&mut out, &[b"SUBSCRIBE", ch.as_bytes()]);
                            channels.insert(ch);
                            done
                        }
                        SubCmd::Unsubscribe(ch, done) => {
                            encode_command(&mut out, &[b"UNSUBSCRIBE", ch.as_bytes()]);
                            channels.remove(&ch);
                            done
                        }
                    };
                    let _ = done.send(());
                    if let Err(e) = stream.write_all(&out).await {
                        events(ClientEvent::Disconnected { reason: DisconnectReason::Io(e.to_string()) });
                        continue 'connection;
                    }
                }
                read = stream.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => {
                            events(ClientEvent::Disconnected { reason: DisconnectReason::Eof });
                            continue 'connection;
                        }
                        Ok(_) if buf.len() > REPLY_BYTES_MAX + 64 => {
                            events(ClientEvent::Disconnected { reason: DisconnectReason::Io("message too large".into()) });
                            continue 'connection;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            events(ClientEvent::Disconnected { reason: DisconnectReason::Io(e.to_string()) });
                            continue 'connection;
                        }
                    }
                }
            }
        }
    }
    // Channel commands still waiting get their answer (the client has stopped).
    cmds.close();
    events(ClientEvent::Disconnected {
        reason: DisconnectReason::Shutdown,
    });
}

/// A `message` push as a [`RedisMessage`]; subscription confirmations and payloads that
/// are not wrapped messages give `None`.
fn pushed_message(v: Resp) -> Option<RedisMessage> {
    let Resp::Array(Some(items)) = v else {
        return None;
    };
    let mut it = items.into_iter();
    let (
        Some(Resp::Bulk(Some(kind))),
        Some(Resp::Bulk(Some(channel))),
        Some(Resp::Bulk(Some(payload))),
    ) = (it.next(), it.next(), it.next())
    else {
        return None;
    };
    if &kind[..] != b"message" {
        return None;
    }
    let (headers, body) = match unwrap(&payload) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!("ignoring a payload that is not a wrapped message: {e}");
            return None;
        }
    };
    Some(RedisMessage {
        channel: String::from_utf8_lossy(&channel).into_owned(),
        headers,
        body,
    })
}

async fn publisher(mut link: Link, mut cmds: mpsc::Receiver<PubCmd>) {
    let mut next = 0usize;
    let mut delay = link.initial;
    // A command taken from the queue while the connection was down waits here.
    let mut held: Option<PubCmd> = None;
    'connection: loop {
        let Some((_, mut stream)) = link.connect(&mut next, &mut delay, None).await else {
            break;
        };
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            let cmd = match held.take() {
                Some(c) => c,
                None => tokio::select! {
                    biased;
                    _ = link.shutdown.changed() => break 'connection,
                    c = cmds.recv() => match c {
                        Some(c) => c,
                        None => break 'connection,
                    },
                },
            };
            if cmd.reply.is_closed() {
                continue;
            }
            let mut out = BytesMut::new();
            encode_command(
                &mut out,
                &[b"PUBLISH", cmd.channel.as_bytes(), &cmd.payload],
            );
            let round_trip = async {
                stream
                    .write_all(&out)
                    .await
                    .map_err(|e| (false, e.to_string()))?;
                read_value(&mut stream, &mut buf)
                    .await
                    .map_err(|e| (true, e))
            };
            match tokio::time::timeout(link.write_timeout, round_trip).await {
                Ok(Ok(Resp::Int(n))) => {
                    let _ = cmd.reply.send(Ok(n));
                }
                Ok(Ok(Resp::Error(e))) => {
                    let _ = cmd.reply.send(Err(PublishError::Refused(e)));
                }
                Ok(Ok(other)) => {
                    let _ = cmd.reply.send(Err(PublishError::Refused(format!(
                        "unexpected reply {other:?}"
                    ))));
                }
                Ok(Err((false, _))) => {
                    // Nothing (or only part) was written: try again on the next connection.
                    held = Some(cmd);
                    continue 'connection;
                }
                Ok(Err((true, _))) | Err(_) => {
                    let _ = cmd.reply.send(Err(ClientError::ConnectionLost.into()));
                    continue 'connection;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_bulk_arrays() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &[b"PUBLISH", b"ch", b"a\r\nb"]);
        assert_eq!(
            &out[..],
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n"
        );
    }

    #[test]
    fn replies_parse_incrementally() {
        let push = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..push.len() - 4 {
            assert_eq!(parse(&push[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (v, used) = parse(push).unwrap().unwrap();
        assert_eq!(used, push.len() - 4);
        assert_eq!(
            v,
            Resp::Array(Some(vec![
                Resp::Bulk(Some(Bytes::from_static(b"message"))),
                Resp::Bulk(Some(Bytes::from_static(b"ch"))),
                Resp::Bulk(Some(Bytes::from_static(b"hello"))),
            ]))
        );
        assert_eq!(parse(&push[used..]).unwrap(), Some((Resp::Int(7), 4)));
        assert_eq!(
            parse(b"-ERR wrong\r\n").unwrap(),
            Some((Resp::Error("ERR wrong".into()), 12))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Resp::Bulk(None), 5)));
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
    }

    #[test]
    fn envelopes_round_trip_binary_bodies_and_headers() {
        let mut h = Headers::new();
        h.push("reply-to", "mcollective::reply::mco::16202");
        h.push("odd", "a \"quoted\" \\ value");
        let body: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let payload = wrap(&h, &body);
        let text = std::str::from_utf8(&payload).unwrap();
        assert!(text.starts_with("---\n:body: !binary |-\n  "), "{text}");
        let (h2, b2) = unwrap(&payload).unwrap();
        assert_eq!(&b2[..], &body[..]);
        assert_eq!(h2.get("reply-to"), Some("mcollective::reply::mco::16202"));
        assert_eq!(h2.get("odd"), Some("a \"quoted\" \\ value"));
        assert!(unwrap(b"hello").is_err());
        let empty = wrap(&Headers::new(), b"");
        assert_eq!(unwrap(&empty).unwrap().1.len(), 0);
    }

    #[test]
    fn only_message_pushes_become_messages() {
        let payload = wrap(&Headers::new(), b"x");
        let push = Resp::Array(Some(vec![
            Resp::Bulk(Some(Bytes::from_static(b"message"))),
            Resp::Bulk(Some(Bytes::from_static(b"c::server::agents"))),
            Resp::Bulk(Some(Bytes::from(payload))),
        ]));
        let m = pushed_message(push).unwrap();
        assert_eq!(m.channel, "c::server::agents");
        assert_eq!(&m.body[..], b"x");
        let confirm = Resp::Array(Some(vec![
            Resp::Bulk(Some(Bytes::from_static(b"subscribe"))),
            Resp::Bulk(Some(Bytes::from_static(b"c"))),
            Resp::Int(1),
        ]));
        assert_eq!(pushed_message(confirm), None);
    }
}
