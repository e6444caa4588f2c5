//! The client side of one STOMP session, sans IO: frames in, frames and typed events out.
//!
//! A [`Session`] outlives connections. It remembers what must survive a reconnect (the
//! subscriptions to replay) and what is tied to one connection (the negotiated version and
//! heart-beats, the receipts outstanding, the open transactions), and forgets the latter in
//! [`Session::connection_lost`], reporting every receipt-tracked SEND (and COMMIT) still
//! outstanding as *indeterminate*: written, but never confirmed or refused.
//!
//! ```text
//!   connect_frame(server) ──► CONNECT
//!   handle_connect_reply(CONNECTED | ERROR) ──► Negotiated | ConnectError
//!   replay() ──► SUBSCRIBE × n          (same ids, selectors, ack modes)
//!   send / subscribe / unsubscribe / ack / nack / begin / commit / abort ──► frames
//!   handle_frame(MESSAGE | RECEIPT | ERROR) ──► Incoming
//!   connection_lost() ──► Lost { indeterminate receipts, forgotten receipts, transactions }
//! ```
//!
//! Nothing here reads a clock, touches a socket or spawns a task; the async driver
//! ([`super::driver`]) owns the I/O and the timers and asks the session what to write.
//!
//! # Heart-beats
//!
//! The CONNECT header `heart-beat:cx,cy` says "I can send every `cx` ms" and "I want to
//! receive every `cy` ms"; the broker answers `heart-beat:sx,sy`. Per the STOMP 1.1
//! specification the client then sends at least every `max(cx, sy)` ms when both are
//! non-zero, and expects data at least every `max(sx, cy)` ms when both are non-zero
//! ([`Negotiated::send_every`], [`Negotiated::expect_every`]). STOMP 1.0 has no
//! heart-beats.
//!
//! # Subscription ids
//!
//! Every subscription has a [`SubscriptionId`] (a number local to the session) and a wire
//! `id` header: the one given in the [`SubscribeSpec`], or `sub-<n>`. STOMP 1.1 and 1.2
//! require the `id`. A spec built with [`SubscribeSpec::without_id`] omits it on STOMP 1.0
//! connections only (as old 1.0 clients do); such a subscription is then unsubscribed by
//! `destination`, and its MESSAGE frames (which carry no `subscription` header) are
//! attributed to it by destination.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::servers::ServerAddr;
use crate::proto::{AckMode, Command, Frame, Headers, Version};

/// Prefix of generated subscription ids (`sub-1`, `sub-2`, …).
const GENERATED_SUB_ID_PREFIX: &str = "sub-";
/// Prefix of receipt ids (`rcpt-1`, `rcpt-2`, …).
const RECEIPT_ID_PREFIX: &str = "rcpt-";
/// Headers the session writes itself on SEND and SUBSCRIBE frames; caller-supplied extra
/// headers with these names are dropped.
const RESERVED_SEND_HEADERS: &[&str] = &["destination", "receipt", "content-length"];
const RESERVED_SUBSCRIBE_HEADERS: &[&str] = &[
    "destination",
    "id",
    "ack",
    "selector",
    "receipt",
    "content-length",
    PREFETCH_HEADER,
];
/// ActiveMQ's (and Stampede's) prefetch header.
const PREFETCH_HEADER: &str = "activemq.prefetchSize";

/// A subscription, as the session numbers them (not the wire `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscription {}", self.0)
    }
}

/// A receipt the session asked for; written as `receipt:rcpt-<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceiptId(pub u64);

impl ReceiptId {
    /// The header value (`rcpt-<n>`).
    pub fn header_value(self) -> String {
        format!("{RECEIPT_ID_PREFIX}{}", self.0)
    }

    /// Parses a `receipt-id` header value written by [`header_value`](Self::header_value).
    pub fn parse(value: &str) -> Option<ReceiptId> {
        let n = value.strip_prefix(RECEIPT_ID_PREFIX)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok().map(ReceiptId)
    }
}

impl fmt::Display for ReceiptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

/// Which `id` header a SUBSCRIBE carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IdHeader {
    /// A generated id, `sub-<n>`.
    #[default]
    Generated,
    /// This id.
    Given(String),
    /// No id on STOMP 1.0 connections (a generated one on 1.1 and 1.2, which require it).
    OmitOn1_0,
}

/// What to subscribe to, and how. Kept by the session and replayed verbatim after every
/// reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeSpec {
    /// The destination (`/queue/…`, `/topic/…`, wildcards allowed by the broker).
    pub destination: String,
    /// The `id` header.
    pub id: IdHeader,
    /// The acknowledgement mode.
    pub ack: AckMode,
    /// A JMS selector (`selector` header).
    pub selector: Option<String>,
    /// `activemq.prefetchSize`: how many unacknowledged messages the broker may send.
    pub prefetch: Option<u32>,
    /// More headers, in order. Names the session writes itself (`destination`, `id`,
    /// `ack`, `selector`, `receipt`, `content-length`, `activemq.prefetchSize`) are ignored.
    pub headers: Vec<(String, String)>,
}

impl SubscribeSpec {
    /// An auto-acknowledged subscription to `destination` with a generated id.
    pub fn new(destination: impl Into<String>) -> Self {
        Self {
            destination: destination.into(),
            id: IdHeader::Generated,
            ack: AckMode::Auto,
            selector: None,
            prefetch: None,
            headers: Vec::new(),
        }
    }

    /// Uses `id` as the wire `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = IdHeader::Given(id.into());
        self
    }

    /// Sends no `id` on STOMP 1.0 connections.
    pub fn without_id(mut self) -> Self {
        self.id = IdHeader::OmitOn1_0;
        self
    }

    /// Sets the acknowledgement mode.
    pub fn ack(mut self, ack: AckMode) -> Self {
        self.ack = ack;
        self
    }

    /// Sets a JMS selector.
    pub fn selector(mut self, selector: impl Into<String>) -> Self {
        self.selector = Some(selector.into());
        self
    }

    /// Sets `activemq.prefetchSize`.
    pub fn prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The session's number for it.
    pub id: SubscriptionId,
    /// What was asked for.
    pub spec: SubscribeSpec,
    /// The `id` header value sent on STOMP 1.1/1.2 (and on 1.0 unless omitted).
    pub wire_id: String,
}

impl Subscription {
    /// The `id` header sent on a connection speaking `version`, if any.
    pub fn wire_id_for(&self, version: Version) -> Option<&str> {
        match (&self.spec.id, version) {
            (IdHeader::OmitOn1_0, Version::V1_0) => None,
            _ => Some(&self.wire_id),
        }
    }
}

/// Login and passcode for CONNECT.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The `login` header.
    pub login: String,
    /// The `passcode` header.
    pub passcode: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("passcode", &"***")
            .finish()
    }
}

/// What the session puts in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The `accept-version` header (e.g. `1.0,1.1,1.2`); `None` sends none, which a
    /// broker reads as STOMP 1.0 only.
    pub accept_version: Option<String>,
    /// The `host` header. `None` sends the server's host name when `accept-version` is
    /// sent (STOMP 1.1+ requires `host`), and nothing otherwise.
    pub host: Option<String>,
    /// Overrides the server list's per-server login and passcode.
    pub credentials: Option<Credentials>,
    /// The `heart-beat` header `(cx, cy)` in milliseconds; `(0, 0)` sends none.
    pub heart_beat_ms: (u64, u64),
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            accept_version: Some("1.0,1.1,1.2".to_owned()),
            host: None,
            credentials: None,
            heart_beat_ms: (0, 0),
        }
    }
}

/// What CONNECTED settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol version (`version` header; 1.0 when absent).
    pub version: Version,
    /// Send something at least this often: `max(cx, sy)` when both are non-zero.
    pub send_every: Option<Duration>,
    /// Expect data at least this often: `max(sx, cy)` when both are non-zero.
    pub expect_every: Option<Duration>,
    /// The `server` header.
    pub server: Option<String>,
    /// The `session` header.
    pub session: Option<String>,
}

/// Why CONNECT did not open a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The broker answered with ERROR (its `message` header, or the body's first line).
    #[error("the broker refused the connection: {0}")]
    Refused(String),
    /// The broker answered with something other than CONNECTED or ERROR.
    #[error("expected CONNECTED, got {0}")]
    Unexpected(Command),
    /// CONNECTED names a version that was not offered.
    #[error("the broker chose STOMP version `{0}`, which was not offered")]
    UnsupportedVersion(String),
    /// CONNECTED has a `heart-beat` header that is not `sx,sy`.
    #[error("invalid heart-beat header in CONNECTED: `{0}`")]
    BadHeartBeat(String),
}

/// What a receipt confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipted {
    /// A SEND to this destination.
    Send {
        /// The destination.
        destination: String,
    },
    /// A SUBSCRIBE.
    Subscribe(SubscriptionId),
    /// An UNSUBSCRIBE.
    Unsubscribe(SubscriptionId),
    /// BEGIN of this transaction.
    Begin(String),
    /// COMMIT of this transaction.
    Commit(String),
    /// ABORT of this transaction.
    Abort(String),
    /// DISCONNECT.
    Disconnect,
}

impl Receipted {
    /// Whether losing the connection before the receipt leaves the outcome unknown in a
    /// way the application must hear about (a SEND or a COMMIT may or may not have taken
    /// effect).
    pub fn is_indeterminate_when_lost(&self) -> bool {
        matches!(self, Receipted::Send { .. } | Receipted::Commit(_))
    }
}

/// A frame to write, and the receipt it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The frame.
    pub frame: Frame,
    /// Its receipt, when one was asked for.
    pub receipt: Option<ReceiptId>,
}

/// What the broker sent, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A MESSAGE.
    Message(Message),
    /// A RECEIPT for something the session asked for.
    Receipt {
        /// The receipt.
        id: ReceiptId,
        /// What it confirms.
        receipted: Receipted,
    },
    /// A RECEIPT whose `receipt-id` the session does not know.
    UnknownReceipt(String),
    /// An ERROR frame; `receipt` is set when its `receipt-id` names a frame the session
    /// asked a receipt for (that frame failed).
    Error {
        /// The `message` header (or the body's first line).
        message: String,
        /// The receipted frame it refers to.
        receipt: Option<(ReceiptId, Receipted)>,
        /// The whole frame.
        frame: Frame,
    },
    /// A frame a broker should not send on an open session (CONNECTED again, or a client
    /// command).
    Unexpected(Frame),
}

/// Everything needed to ACK or NACK a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckInfo {
    connection: u64,
    subscription: Option<SubscriptionId>,
    message_id: Option<String>,
    ack_id: Option<String>,
    subscription_header: Option<String>,
}

/// A MESSAGE frame, attributed to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subscription it was delivered for, when known.
    pub subscription: Option<SubscriptionId>,
    /// The `destination` header.
    pub destination: String,
    /// The `message-id` header.
    pub message_id: String,
    /// All headers, in wire order.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
    ack: AckInfo,
}

impl Message {
    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The number of the connection it arrived on (see [`Session::connection`]); it can
    /// only be acknowledged on that connection.
    pub fn connection(&self) -> u64 {
        self.ack.connection
    }

    /// What an ACK or NACK needs.
    pub fn ack_info(&self) -> &AckInfo {
        &self.ack
    }
}

/// Why the session cannot build a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The operation needs an open session.
    #[error("not connected")]
    NotConnected,
    /// The message arrived on an earlier connection; the broker has forgotten it (and will
    /// redeliver it if it was not acknowledged).
    #[error("the message arrived on an earlier connection")]
    StaleMessage,
    /// ACK or NACK of a message from an auto-acknowledged subscription.
    #[error("{0} is auto-acknowledged")]
    AutoAck(SubscriptionId),
    /// NACK needs STOMP 1.1 or later.
    #[error("NACK needs STOMP 1.1 or later (the session speaks {0})")]
    NackNeeds1_1(Version),
    /// The message has no `message-id` (nor a 1.2 `ack` header) to acknowledge it with.
    #[error("the message has no id to acknowledge it with")]
    NoMessageId,
    /// No such subscription.
    #[error("unknown {0}")]
    UnknownSubscription(SubscriptionId),
    /// A subscription with this wire `id` exists.
    #[error("subscription id `{0}` is already in use")]
    DuplicateSubscriptionId(String),
    /// The transaction is not open on the current connection.
    #[error("transaction `{0}` is not open on this connection")]
    UnknownTransaction(String),
    /// The transaction is already open.
    #[error("transaction `{0}` is already open")]
    DuplicateTransaction(String),
}

/// What [`Session::connection_lost`] forgot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lost {
    /// Receipted SENDs and COMMITs still outstanding: written, neither confirmed nor
    /// refused. Whether they took effect is unknown.
    pub indeterminate: Vec<(ReceiptId, Receipted)>,
    /// Other receipts still outstanding (SUBSCRIBE, UNSUBSCRIBE, BEGIN, ABORT, DISCONNECT).
    pub forgotten: Vec<(ReceiptId, Receipted)>,
    /// Transactions that were open (the broker rolls them back).
    pub transactions: Vec<String>,
}

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    /// No connection.
    Closed,
    /// CONNECT written, no answer yet.
    Connecting,
    /// CONNECTED received.
    Open(Negotiated),
}

/// The client side of a STOMP session; see the module documentation.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    link: Link,
    /// Connections opened so far; the current one's number while open.
    connection: u64,
    subs: BTreeMap<SubscriptionId, Subscription>,
    /// `subs` by wire id, so that a MESSAGE finds its subscription without a scan (a
    /// network bridge holds thousands).
    by_wire: BTreeMap<String, SubscriptionId>,
    /// The subscriptions that go without an `id` on STOMP 1.0, by destination, so that an
    /// id-less MESSAGE finds its subscription without a scan (an `mco` client holds a
    /// reply subscription per request, thousands at a time).
    omitting: BTreeMap<String, BTreeSet<SubscriptionId>>,
    next_sub: u64,
    receipts: BTreeMap<ReceiptId, Receipted>,
    next_receipt: u64,
    transactions: BTreeSet<String>,
}

impl Session {
    /// A session that is not connected.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            link: Link::Closed,
            connection: 0,
            subs: BTreeMap::new(),
            by_wire: BTreeMap::new(),
            omitting: BTreeMap::new(),
            next_sub: 0,
            receipts: BTreeMap::new(),
            next_receipt: 0,
            transactions: BTreeSet::new(),
        }
    }

    /// The CONNECT settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// What the current connection negotiated, while open.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        match &self.link {
            Link::Open(n) => Some(n),
            _ => None,
        }
    }

    /// The negotiated version, while open.
    pub fn version(&self) -> Option<Version> {
        self.negotiated().map(|n| n.version)
    }

    /// Whether CONNECTED was received and the connection not lost since.
    pub fn is_open(&self) -> bool {
        matches!(self.link, Link::Open(_))
    }

    /// The number of the current (or last) connection: 1 for the first CONNECTED.
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// The subscriptions, in the order they were made (the replay order).
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subs.values()
    }

    /// One subscription.
    pub fn subscription(&self, id: SubscriptionId) -> Option<&Subscription> {
        self.subs.get(&id)
    }

    /// Receipts asked for on the current connection and not answered yet, oldest first.
    pub fn outstanding_receipts(&self) -> impl Iterator<Item = (&ReceiptId, &Receipted)> {
        self.receipts.iter()
    }

    /// Transactions open on the current connection.
    pub fn transactions(&self) -> impl Iterator<Item = &str> {
        self.transactions.iter().map(String::as_str)
    }

    /// The CONNECT frame for `server`. Forgets anything left of a previous connection.
    pub fn connect_frame(&mut self, server: &ServerAddr) -> Frame {
        self.reset_connection();
        self.link = Link::Connecting;
        let c = &self.config;
        let mut f = Frame::new(Command::Connect);
        if let Some(v) = &c.accept_version {
            f = f.header("accept-version", v.as_str());
        }
        match (&c.host, &c.accept_version) {
            (Some(h), _) => f = f.header("host", h.as_str()),
            (None, Some(_)) => f = f.header("host", server.host.as_str()),
            (None, None) => {}
        }
        let (login, passcode) = match &c.credentials {
            Some(cr) => (Some(cr.login.as_str()), Some(cr.passcode.as_str())),
            None => (server.login.as_deref(), server.passcode.as_deref()),
        };
        if let Some(l) = login {
            f = f.header("login", l);
        }
        if let Some(p) = passcode {
            f = f.header("passcode", p);
        }
        let (cx, cy) = c.heart_beat_ms;
        if (cx, cy) != (0, 0) {
            f = f.header("heart-beat", format!("{cx},{cy}"));
        }
        f
    }

    /// Handles the broker's answer to CONNECT. On CONNECTED the session is open, with a
    /// new [`connection`](Self::connection) number.
    pub fn handle_connect_reply(&mut self, frame: &Frame) -> Result<Negotiated, ConnectError> {
        let result = self.negotiate(frame);
        match &result {
            Ok(n) => {
                self.connection += 1;
                self.link = Link::Open(n.clone());
            }
            Err(_) => self.link = Link::Closed,
        }
        result
    }

    fn negotiate(&self, frame: &Frame) -> Result<Negotiated, ConnectError> {
        match frame.command {
            Command::Connected => {}
            Command::Error => return Err(ConnectError::Refused(error_message(frame))),
            other => return Err(ConnectError::Unexpected(other)),
        }
        let h = &frame.headers;
        let version = match h.get("version") {
            None => Version::V1_0,
            Some(v) => {
                let offered = self.config.accept_version.as_deref().unwrap_or("1.0");
                let parsed = v.trim().parse::<Version>().ok();
                match parsed {
                    Some(p) if offered.split(',').any(|o| o.trim() == p.as_str()) => p,
                    _ => return Err(ConnectError::UnsupportedVersion(v.to_owned())),
                }
            }
        };
        let (sx, sy) = match (version, h.get("heart-beat")) {
            (Version::V1_0, _) | (_, None) => (0, 0),
            (_, Some(hb)) => {
                parse_heart_beat(hb).ok_or_else(|| ConnectError::BadHeartBeat(hb.to_owned()))?
            }
        };
        let (cx, cy) = if version == Version::V1_0 {
            (0, 0)
        } else {
            self.config.heart_beat_ms
        };
        let every = |a: u64, b: u64| (a > 0 && b > 0).then(|| Duration::from_millis(a.max(b)));
        Ok(Negotiated {
            version,
            send_every: every(cx, sy),
            expect_every: every(sx, cy),
            server: h.get("server").map(str::to_owned),
            session: h.get("session").map(str::to_owned),
        })
    }

    /// The SUBSCRIBE frames to write right after CONNECTED, in subscription order.
    /// Empty unless the session is open.
    pub fn replay(&self) -> Vec<Frame> {
        let Some(v) = self.version() else {
            return Vec::new();
        };
        self.subs.values().map(|s| subscribe_frame(s, v)).collect()
    }

    /// Records a subscription. Returns its id and, when the session is open, the SUBSCRIBE
    /// frame to write now (otherwise it goes out with the next [`replay`](Self::replay)).
    pub fn subscribe(
        &mut self,
        spec: SubscribeSpec,
    ) -> Result<(SubscriptionId, Option<Frame>), SessionError> {
        let n = self.next_sub + 1;
        let wire_id = match &spec.id {
            IdHeader::Given(given) => given.clone(),
            IdHeader::Generated | IdHeader::OmitOn1_0 => {
                format!("{GENERATED_SUB_ID_PREFIX}{n}")
            }
        };
        if self.by_wire.contains_key(&wire_id) {
            return Err(SessionError::DuplicateSubscriptionId(wire_id));
        }
        self.by_wire.insert(wire_id.clone(), SubscriptionId(n));
        self.next_sub = n;
        let id = SubscriptionId(n);
        let sub = Subscription { id, spec, wire_id };
        if sub.spec.id == IdHeader::OmitOn1_0 {
            self.omitting
                .entry(sub.spec.destination.clone())
                .or_default()
                .insert(id);
        }
        let frame = self.version().map(|v| subscribe_frame(&sub, v));
        self.subs.insert(id, sub);
        Ok((id, frame))
    }

    /// The SUBSCRIBE frame of a stored subscription for the current connection.
    pub fn subscribe_frame(&self, id: SubscriptionId) -> Option<Frame> {
        let v = self.version()?;
        self.subs.get(&id).map(|s| subscribe_frame(s, v))
    }

    /// Forgets a subscription. Returns the UNSUBSCRIBE frame to write when the session is
    /// open (by `id`, or by `destination` for a STOMP 1.0 subscription without one).
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<Option<Frame>, SessionError> {
        let sub = self
            .subs
            .remove(&id)
            .ok_or(SessionError::UnknownSubscription(id))?;
        self.by_wire.remove(&sub.wire_id);
        if let Some(ids) = self.omitting.get_mut(&sub.spec.destination) {
            ids.remove(&id);
            if ids.is_empty() {
                self.omitting.remove(&sub.spec.destination);
            }
        }
        let Some(v) = self.version() else {
            return Ok(None);
        };
        let f = Frame::new(Command::Unsubscribe);
        Ok(Some(match sub.wire_id_for(v) {
            Some(wire) => f.header("id", wire),
            None => f.header("destination", sub.spec.destination.as_str()),
        }))
    }

    /// A SEND frame. `headers` follow `destination` in order (any `destination`,
    /// `receipt` or `content-length` among them is dropped); a `transaction` header must
    /// name a transaction open on this connection.
    pub fn send(
        &mut self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
        with_receipt: bool,
    ) -> Result<Outgoing, SessionError> {
        if !self.is_open() {
            return Err(SessionError::NotConnected);
        }
        if let Some(tx) = headers.get("transaction") {
            if !self.transactions.contains(tx) {
                return Err(SessionError::UnknownTransaction(tx.to_owned()));
            }
        }
        let mut frame = Frame::new(Command::Send).header("destination", destination);
        for (name, value) in headers.iter() {
            if !RESERVED_SEND_HEADERS.contains(&&**name) {
                frame.headers.push(name.clone(), value.clone());
            }
        }
        frame.body = body;
        let receipted = Receipted::Send {
            destination: destination.to_owned(),
        };
        Ok(self.with_receipt(frame, with_receipt.then_some(receipted)))
    }

    /// An ACK (or NACK) frame for `message`, in the form the negotiated version wants:
    /// `id` (1.2), `message-id` and `subscription` (1.1), `message-id` (1.0).
    pub fn ack(&mut self, message: &AckInfo, nack: bool) -> Result<Frame, SessionError> {
        let v = self.version().ok_or(SessionError::NotConnected)?;
        if message.connection != self.connection {
            return Err(SessionError::StaleMessage);
        }
        if nack && v == Version::V1_0 {
            return Err(SessionError::NackNeeds1_1(v));
        }
        let sub = message.subscription.and_then(|s| self.subs.get(&s));
        if let Some(sub) = sub.filter(|s| s.spec.ack == AckMode::Auto) {
            return Err(SessionError::AutoAck(sub.id));
        }
        let mut f = Frame::new(if nack { Command::Nack } else { Command::Ack });
        match v {
            Version::V1_2 => {
                let id = message
                    .ack_id
                    .as_deref()
                    .or(message.message_id.as_deref())
                    .ok_or(SessionError::NoMessageId)?;
                f = f.header("id", id);
            }
            Version::V1_1 | Version::V1_0 => {
                let id = message
                    .message_id
                    .as_deref()
                    .ok_or(SessionError::NoMessageId)?;
                f = f.header("message-id", id);
                if let Some(s) = &message.subscription_header {
                    f = f.header("subscription", s.as_str());
                }
            }
        }
        Ok(f)
    }

    /// A BEGIN frame; the transaction is open on this connection from now on.
    pub fn begin(&mut self, tx: &str, with_receipt: bool) -> Result<Outgoing, SessionError> {
        if !self.is_open() {
            return Err(SessionError::NotConnected);
        }
        if !self.transactions.insert(tx.to_owned()) {
            return Err(SessionError::DuplicateTransaction(tx.to_owned()));
        }
        let f = Frame::new(Command::Begin).header("transaction", tx);
        Ok(self.with_receipt(f, with_receipt.then(|| Receipted::Begin(tx.to_owned()))))
    }

    /// A COMMIT frame for an open transaction.
    pub fn commit(&mut self, tx: &str, with_receipt: bool) -> Result<Outgoing, SessionError> {
        self.end_transaction(Command::Commit, tx, with_receipt)
    }

    /// An ABORT frame for an open transaction.
    pub fn abort(&mut self, tx: &str, with_receipt: bool) -> Result<Outgoing, SessionError> {
        self.end_transaction(Command::Abort, tx, with_receipt)
    }

    fn end_transaction(
        &mut self,
        command: Command,
        tx: &str,
        with_receipt: bool,
    ) -> Result<Outgoing, SessionError> {
        if !self.is_open() {
            return Err(SessionError::NotConnected);
        }
        if !self.transactions.remove(tx) {
            return Err(SessionError::UnknownTransaction(tx.to_owned()));
        }
        let f = Frame::new(command).header("transaction", tx);
        let receipted = if command == Command::Commit {
            Receipted::Commit(tx.to_owned())
        } else {
            Receipted::Abort(tx.to_owned())
        };
        Ok(self.with_receipt(f, with_receipt.then_some(receipted)))
    }

    /// A DISCONNECT frame, always with a receipt (wait for it before closing the socket,
    /// so that everything written before has been handled).
    pub fn disconnect(&mut self) -> Result<Outgoing, SessionError> {
        if !self.is_open() {
            return Err(SessionError::NotConnected);
        }
        Ok(self.with_receipt(Frame::new(Command::Disconnect), Some(Receipted::Disconnect)))
    }

    fn with_receipt(&mut self, mut frame: Frame, receipted: Option<Receipted>) -> Outgoing {
        let receipt = receipted.map(|r| {
            self.next_receipt += 1;
            let id = ReceiptId(self.next_receipt);
            frame.headers.push("receipt", id.header_value());
            self.receipts.insert(id, r);
            id
        });
        Outgoing { frame, receipt }
    }

    /// Forgets an outstanding receipt (for a frame that was built but never reached the
    /// socket). Returns what it was for.
    pub fn forget_receipt(&mut self, id: ReceiptId) -> Option<Receipted> {
        self.receipts.remove(&id)
    }

    /// Handles a frame received on an open session.
    pub fn handle_frame(&mut self, frame: Frame) -> Incoming {
        match frame.command {
            Command::Message => Incoming::Message(self.message(frame)),
            Command::Receipt => {
                let value = frame.headers.get("receipt-id").unwrap_or_default();
                match ReceiptId::parse(value)
                    .and_then(|id| self.receipts.remove(&id).map(|r| (id, r)))
                {
                    Some((id, receipted)) => Incoming::Receipt { id, receipted },
                    None => Incoming::UnknownReceipt(value.to_owned()),
                }
            }
            Command::Error => {
                let receipt = frame
                    .headers
                    .get("receipt-id")
                    .and_then(ReceiptId::parse)
                    .and_then(|id| self.receipts.remove(&id).map(|r| (id, r)));
                if let Some((_, r)) = &receipt {
                    self.undo_refused(r);
                }
                Incoming::Error {
                    message: error_message(&frame),
                    receipt,
                    frame,
                }
            }
            _ => Incoming::Unexpected(frame),
        }
    }

    /// A refused BEGIN leaves no transaction behind; a refused COMMIT/ABORT ends it anyway
    /// (the broker forgets a transaction it could not commit).
    fn undo_refused(&mut self, r: &Receipted) {
        if let Receipted::Begin(tx) = r {
            self.transactions.remove(tx);
        }
    }

    fn message(&self, frame: Frame) -> Message {
        let h = &frame.headers;
        let destination = h.get("destination").unwrap_or_default().to_owned();
        let sub_header = h.get("subscription").map(str::to_owned);
        let subscription = match &sub_header {
            Some(wire) => self.by_wire.get(wire.as_str()).copied(),
            None => self.id_less_subscription(&destination),
        };
        let message_id = h.get("message-id").map(str::to_owned);
        let ack = AckInfo {
            connection: self.connection,
            subscription,
            message_id: message_id.clone(),
            ack_id: h.get("ack").map(str::to_owned),
            subscription_header: sub_header,
        };
        Message {
            subscription,
            destination,
            message_id: message_id.unwrap_or_default(),
            headers: frame.headers,
            body: frame.body,
            ack,
        }
    }

    /// A MESSAGE without `subscription` (STOMP 1.0): the first id-less subscription to
    /// its destination, else the only id-less subscription. Only STOMP 1.0 leaves a
    /// subscription's `id` out.
    fn id_less_subscription(&self, destination: &str) -> Option<SubscriptionId> {
        if self.version()? != Version::V1_0 {
            return None;
        }
        let exact = self
            .omitting
            .get(destination)
            .and_then(|ids| ids.first().copied());
        exact.or_else(|| match self.omitting.first_key_value() {
            Some((_, ids)) if self.omitting.len() == 1 && ids.len() == 1 => ids.first().copied(),
            _ => None,
        })
    }

    /// The connection is gone: forgets the negotiated state, outstanding receipts and open
    /// transactions, keeping the subscriptions for the next [`replay`](Self::replay).
    pub fn connection_lost(&mut self) -> Lost {
        self.link = Link::Closed;
        let mut lost = Lost::default();
        for (id, r) in std::mem::take(&mut self.receipts) {
            if r.is_indeterminate_when_lost() {
                lost.indeterminate.push((id, r));
            } else {
                lost.forgotten.push((id, r));
            }
        }
        lost.transactions = std::mem::take(&mut self.transactions).into_iter().collect();
        lost
    }

    fn reset_connection(&mut self) {
        if !matches!(self.link, Link::Closed) || !self.receipts.is_empty() {
            let _ = self.connection_lost();
        }
        self.transactions.clear();
    }
}

/// The SUBSCRIBE frame of `sub` for a connection speaking `version`.
fn subscribe_frame(sub: &Subscription, version: Version) -> Frame {
    let s = &sub.spec;
    let mut f = Frame::new(Command::Subscribe).header("destination", s.destination.as_str());
    if let Some(id) = sub.wire_id_for(version) {
        f = f.header("id", id);
    }
    if s.ack != AckMode::Auto {
        f = f.header("ack", s.ack.as_str());
    }
    if let Some(sel) = &s.selector {
        f = f.header("selector", sel.as_str());
    }
    if let Some(p) = s.prefetch {
        f = f.header(PREFETCH_HEADER, p.to_string());
    }
    for (name, value) in &s.headers {
        if !RESERVED_SUBSCRIBE_HEADERS.contains(&name.as_str()) {
            f = f.header(name.as_str(), value.as_str());
        }
    }
    f
}

/// An ERROR frame's `message` header, else the first line of its body.
fn error_message(frame: &Frame) -> String {
    match frame.headers.get("message") {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(&frame.body)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
    }
}

fn parse_heart_beat(value: &str) -> Option<(u64, u64)> {
    let (a, b) = value.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerAddr {
        ServerAddr::new("b1.example", 61613)
            .with_credentials(Some("mco".into()), Some("secret".into()))
    }

    fn connected(heart_beat: &str, version: &str) -> Frame {
        Frame::new(Command::Connected)
            .header("version", version)
            .header("heart-beat", heart_beat)
            .header("server", "stampede/0.1")
            .header("session", "ID:x-1")
    }

    fn open(config: SessionConfig, version: &str) -> Session {
        let mut s = Session::new(config);
        s.connect_frame(&server());
        s.handle_connect_reply(&connected("0,0", version)).unwrap();
        s
    }

    fn headers(f: &Frame) -> Vec<(String, String)> {
        f.headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(sub: Option<&str>, dest: &str, id: &str) -> Frame {
        let mut f = Frame::new(Command::Message)
            .header("destination", dest)
            .header("message-id", id);
        if let Some(s) = sub {
            f = f.header("subscription", s);
        }
        f.body("hi")
    }

    #[test]
    fn unsubscribed_wire_ids_are_free_again_and_messages_find_their_subscription() {
        let mut s = Session::new(SessionConfig::default());
        s.connect_frame(&server());
        s.handle_connect_reply(&connected("0,0", "1.2")).unwrap();
        let (a, _) = s
            .subscribe(SubscribeSpec::new("/topic/t").id("mine"))
            .unwrap();
        let (b, _) = s.subscribe(SubscribeSpec::new("/topic/u")).unwrap();
        s.unsubscribe(a).unwrap();
        let (c, _) = s
            .subscribe(SubscribeSpec::new("/topic/v").id("mine"))
            .unwrap();
        assert_ne!(a, c);
        let message = |sub: &str| {
            Frame::new(Command::Message)
                .header("destination", "/topic/v")
                .header("message-id", "m")
                .header("subscription", sub)
        };
        let Incoming::Message(m) = s.handle_frame(message("mine")) else {
            panic!("not a message");
        };
        assert_eq!(m.subscription, Some(c));
        let wire = s.subscription(b).unwrap().wire_id.clone();
        let Incoming::Message(m) = s.handle_frame(message(&wire)) else {
            panic!("not a message");
        };
        assert_eq!(m.subscription, Some(b));
    }

    #[test]
    fn connect_frame_has_versions_host_credentials_and_heart_beat() {
        let mut s = Session::new(SessionConfig {
            heart_beat_ms: (30_500, 29_500),
            ..SessionConfig::default()
        });
        let f = s.connect_frame(&server());
        assert_eq!(f.command, Command::Connect);
        assert_eq!(
            headers(&f),
            pairs(&[
                ("accept-version", "1.0,1.1,1.2"),
                ("host", "b1.example"),
                ("login", "mco"),
                ("passcode", "secret"),
                ("heart-beat", "30500,29500"),
            ])
        );
        // Overrides, and STOMP 1.0 style without accept-version and host.
        let mut s = Session::new(SessionConfig {
            accept_version: None,
            host: None,
            credentials: Some(Credentials {
                login: "u".into(),
                passcode: "p".into(),
            }),
            heart_beat_ms: (0, 0),
        });
        let f = s.connect_frame(&server());
        assert_eq!(headers(&f), pairs(&[("login", "u"), ("passcode", "p")]));
        assert!(!format!("{:?}", s.config().credentials).contains("\"p\""));
        let mut s = Session::new(SessionConfig {
            host: Some("mcollective".into()),
            ..SessionConfig::default()
        });
        let f = s.connect_frame(&ServerAddr::new("h", 1));
        assert_eq!(f.headers.get("host"), Some("mcollective"));
        assert_eq!(f.headers.get("login"), None);
        assert_eq!(f.headers.get("heart-beat"), None);
    }

    #[test]
    fn connected_negotiates_version_and_heart_beats() {
        let config = SessionConfig {
            heart_beat_ms: (30_500, 29_500),
            ..SessionConfig::default()
        };
        let mut s = Session::new(config.clone());
        s.connect_frame(&server());
        assert!(!s.is_open());
        // ActiveMQ answers with the pair swapped: sx = 29500, sy = 30500.
        let n = s
            .handle_connect_reply(&connected("29500,30500", "1.1"))
            .unwrap();
        assert_eq!(n.version, Version::V1_1);
        // send every max(cx, sy) = 30.5 s; expect every max(sx, cy) = 29.5 s.
        assert_eq!(n.send_every, Some(Duration::from_millis(30_500)));
        assert_eq!(n.expect_every, Some(Duration::from_millis(29_500)));
        assert_eq!(n.server.as_deref(), Some("stampede/0.1"));
        assert_eq!(n.session.as_deref(), Some("ID:x-1"));
        assert!(s.is_open());
        assert_eq!(s.connection(), 1);

        // The broker sends nothing (sx = 0) but wants 10 s from us.
        s.connect_frame(&server());
        let n = s
            .handle_connect_reply(&connected("0,10000", "1.2"))
            .unwrap();
        assert_eq!(n.send_every, Some(Duration::from_millis(30_500)));
        assert_eq!(n.expect_every, None);
        assert_eq!(s.connection(), 2);
        // sy = 40 s > cx: the larger wins.
        s.connect_frame(&server());
        let n = s
            .handle_connect_reply(&connected("50000,40000", "1.2"))
            .unwrap();
        assert_eq!(n.send_every, Some(Duration::from_millis(40_000)));
        assert_eq!(n.expect_every, Some(Duration::from_millis(50_000)));

        // A client that offers no heart-beats never gets any.
        let mut s = Session::new(SessionConfig::default());
        s.connect_frame(&server());
        let n = s
            .handle_connect_reply(&connected("1000,1000", "1.2"))
            .unwrap();
        assert_eq!((n.send_every, n.expect_every), (None, None));

        // No version header: STOMP 1.0, no heart-beats whatever the header says.
        let mut s = Session::new(config);
        s.connect_frame(&server());
        let f = Frame::new(Command::Connected).header("heart-beat", "1000,1000");
        let n = s.handle_connect_reply(&f).unwrap();
        assert_eq!(n.version, Version::V1_0);
        assert_eq!((n.send_every, n.expect_every), (None, None));
    }

    #[test]
    fn connect_refusals() {
        let mut s = Session::new(SessionConfig {
            accept_version: Some("1.1".into()),
            ..SessionConfig::default()
        });
        s.connect_frame(&server());
        let err = Frame::new(Command::Error).header("message", "bad credentials");
        assert_eq!(
            s.handle_connect_reply(&err),
            Err(ConnectError::Refused("bad credentials".into()))
        );
        assert!(!s.is_open());
        assert_eq!(s.connection(), 0);
        let err = Frame::new(Command::Error).body("first line\nsecond");
        assert_eq!(
            s.handle_connect_reply(&err),
            Err(ConnectError::Refused("first line".into()))
        );
        assert_eq!(
            s.handle_connect_reply(&connected("0,0", "1.2")),
            Err(ConnectError::UnsupportedVersion("1.2".into()))
        );
        assert_eq!(
            s.handle_connect_reply(&connected("soon", "1.1")),
            Err(ConnectError::BadHeartBeat("soon".into()))
        );
        assert_eq!(
            s.handle_connect_reply(&Frame::new(Command::Receipt)),
            Err(ConnectError::Unexpected(Command::Receipt))
        );
    }

    #[test]
    fn subscriptions_are_replayed_verbatim_in_order() {
        let mut s = Session::new(SessionConfig::default());
        // Subscribing while disconnected records only.
        let (a, frame) = s
            .subscribe(
                SubscribeSpec::new("/queue/q")
                    .ack(AckMode::ClientIndividual)
                    .selector("prio > 3")
                    .prefetch(10)
                    .header("activemq.priority", "5")
                    .header("id", "ignored"),
            )
            .unwrap();
        assert_eq!(frame, None);
        let (b, _) = s
            .subscribe(SubscribeSpec::new("/topic/t").id("mine"))
            .unwrap();
        assert_eq!(
            s.subscribe(SubscribeSpec::new("/topic/u").id("mine")),
            Err(SessionError::DuplicateSubscriptionId("mine".into()))
        );
        assert!(s.replay().is_empty(), "nothing to replay while closed");
        s.connect_frame(&server());
        s.handle_connect_reply(&connected("0,0", "1.2")).unwrap();
        let replay = s.replay();
        assert_eq!(replay.len(), 2);
        assert!(replay.iter().all(|f| f.command == Command::Subscribe));
        assert_eq!(
            headers(&replay[0]),
            pairs(&[
                ("destination", "/queue/q"),
                ("id", "sub-1"),
                ("ack", "client-individual"),
                ("selector", "prio > 3"),
                ("activemq.prefetchSize", "10"),
                ("activemq.priority", "5"),
            ])
        );
        assert_eq!(
            headers(&replay[1]),
            pairs(&[("destination", "/topic/t"), ("id", "mine")])
        );
        // Identical after another reconnect.
        s.connection_lost();
        s.connect_frame(&server());
        s.handle_connect_reply(&connected("0,0", "1.2")).unwrap();
        assert_eq!(s.replay(), replay);
        // Subscribing while open gives the frame to write now.
        let (c, frame) = s.subscribe(SubscribeSpec::new("/queue/c")).unwrap();
        assert_eq!(
            headers(&frame.unwrap()),
            pairs(&[("destination", "/queue/c"), ("id", "sub-3")])
        );
        assert_eq!(
            s.subscribe_frame(c).unwrap().headers.get("id"),
            Some("sub-3")
        );
        // Unsubscribing removes it from the replay.
        let f = s.unsubscribe(a).unwrap().unwrap();
        assert_eq!(headers(&f), pairs(&[("id", "sub-1")]));
        assert_eq!(s.subscriptions().map(|x| x.id).collect::<Vec<_>>(), [b, c]);
        assert_eq!(s.unsubscribe(a), Err(SessionError::UnknownSubscription(a)));
        s.connection_lost();
        assert_eq!(s.unsubscribe(b), Ok(None), "closed: nothing to write");
    }

    #[test]
    fn stomp_1_0_subscription_without_id() {
        let mut s = open(
            SessionConfig {
                accept_version: Some("1.0".into()),
                ..SessionConfig::default()
            },
            "1.0",
        );
        let (id, frame) = s
            .subscribe(SubscribeSpec::new("/queue/a").without_id())
            .unwrap();
        assert_eq!(
            headers(&frame.unwrap()),
            pairs(&[("destination", "/queue/a")])
        );
        let (other, _) = s.subscribe(SubscribeSpec::new("/queue/b")).unwrap();
        // MESSAGE without `subscription`: attributed by destination.
        let Incoming::Message(m) = s.handle_frame(message(None, "/queue/a", "m1")) else {
            panic!("not a message")
        };
        assert_eq!(m.subscription, Some(id));
        // The only id-less subscription takes messages to other destinations too
        // (e.g. a wildcard subscription).
        let Incoming::Message(m) = s.handle_frame(message(None, "/queue/zzz", "m2")) else {
            panic!("not a message")
        };
        assert_eq!(m.subscription, Some(id));
        let Incoming::Message(m) = s.handle_frame(message(Some("sub-2"), "/queue/b", "m3")) else {
            panic!("not a message")
        };
        assert_eq!(m.subscription, Some(other));
        // UNSUBSCRIBE by destination.
        let f = s.unsubscribe(id).unwrap().unwrap();
        assert_eq!(headers(&f), pairs(&[("destination", "/queue/a")]));
        // The same spec on a 1.1 connection gets a generated id.
        let mut s = open(SessionConfig::default(), "1.1");
        let (_, frame) = s
            .subscribe(SubscribeSpec::new("/queue/a").without_id())
            .unwrap();
        assert_eq!(frame.unwrap().headers.get("id"), Some("sub-1"));
    }

    #[test]
    fn id_less_messages_find_their_subscription_among_thousands() {
        let mut s = open(
            SessionConfig {
                accept_version: Some("1.0".into()),
                ..SessionConfig::default()
            },
            "1.0",
        );
        let ids: Vec<SubscriptionId> = (0..3000)
            .map(|n| {
                s.subscribe(SubscribeSpec::new(format!("/queue/reply.{n}")).without_id())
                    .unwrap()
                    .0
            })
            .collect();
        let to = |s: &mut Session, dest: &str| match s.handle_frame(message(None, dest, "m")) {
            Incoming::Message(m) => m.subscription,
            _ => panic!("not a message"),
        };
        assert_eq!(to(&mut s, "/queue/reply.1234"), Some(ids[1234]));
        assert_eq!(to(&mut s, "/queue/reply.0"), Some(ids[0]));
        // Several id-less subscriptions and none to the destination: nobody's.
        assert_eq!(to(&mut s, "/queue/elsewhere"), None);
        // A second subscription to one destination: the first still takes its messages,
        // and the second once the first is gone.
        let (twin, _) = s
            .subscribe(SubscribeSpec::new("/queue/reply.7").without_id())
            .unwrap();
        assert_eq!(to(&mut s, "/queue/reply.7"), Some(ids[7]));
        s.unsubscribe(ids[7]).unwrap();
        assert_eq!(to(&mut s, "/queue/reply.7"), Some(twin));
        // Unsubscribed: its messages find nobody while others remain, and the one left
        // takes every id-less message.
        s.unsubscribe(ids[1234]).unwrap();
        assert_eq!(to(&mut s, "/queue/reply.1234"), None);
        for (n, id) in ids.iter().enumerate().skip(1) {
            if n != 7 && n != 1234 {
                s.unsubscribe(*id).unwrap();
            }
        }
        s.unsubscribe(twin).unwrap();
        assert_eq!(to(&mut s, "/queue/reply.1234"), Some(ids[0]));
    }

    #[test]
    fn messages_receipts_and_errors_are_typed() {
        let mut s = open(SessionConfig::default(), "1.2");
        let (sub, _) = s
            .subscribe(SubscribeSpec::new("/queue/q").ack(AckMode::Client))
            .unwrap();
        let Incoming::Message(m) =
            s.handle_frame(message(Some("sub-1"), "/queue/q", "ID:m-1").header("ack", "ack-7"))
        else {
            panic!("not a message")
        };
        assert_eq!(m.subscription, Some(sub));
        assert_eq!(m.destination, "/queue/q");
        assert_eq!(m.message_id, "ID:m-1");
        assert_eq!(m.text(), Some("hi"));
        assert_eq!(m.header("ack"), Some("ack-7"));
        assert_eq!(m.connection(), 1);
        // A message for a subscription the session does not know.
        let Incoming::Message(u) = s.handle_frame(message(Some("other"), "/queue/q", "x")) else {
            panic!("not a message")
        };
        assert_eq!(u.subscription, None);

        let out = s
            .send("/queue/q", &Headers::new(), Bytes::from_static(b"b"), true)
            .unwrap();
        let r = out.receipt.unwrap();
        assert_eq!(out.frame.headers.get("receipt"), Some("rcpt-1"));
        assert_eq!(
            s.handle_frame(Frame::new(Command::Receipt).header("receipt-id", "rcpt-1")),
            Incoming::Receipt {
                id: r,
                receipted: Receipted::Send {
                    destination: "/queue/q".into()
                }
            }
        );
        // Answered once only.
        assert_eq!(
            s.handle_frame(Frame::new(Command::Receipt).header("receipt-id", "rcpt-1")),
            Incoming::UnknownReceipt("rcpt-1".into())
        );
        // ERROR naming a receipted SEND: that SEND failed.
        let out = s
            .send("/queue/no", &Headers::new(), Bytes::new(), true)
            .unwrap();
        let err = Frame::new(Command::Error)
            .header("message", "denied")
            .header("receipt-id", out.receipt.unwrap().header_value());
        match s.handle_frame(err) {
            Incoming::Error {
                message, receipt, ..
            } => {
                assert_eq!(message, "denied");
                assert_eq!(
                    receipt,
                    Some((
                        out.receipt.unwrap(),
                        Receipted::Send {
                            destination: "/queue/no".into()
                        }
                    ))
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.outstanding_receipts().count(), 0);
        // ERROR without a receipt.
        assert!(matches!(
            s.handle_frame(Frame::new(Command::Error).body("boom")),
            Incoming::Error { receipt: None, ref message, .. } if message == "boom"
        ));
        assert!(matches!(
            s.handle_frame(Frame::new(Command::Connected)),
            Incoming::Unexpected(_)
        ));
    }

    #[test]
    fn send_frames() {
        let mut s = Session::new(SessionConfig::default());
        assert_eq!(
            s.send("/queue/q", &Headers::new(), Bytes::new(), false),
            Err(SessionError::NotConnected)
        );
        s.connect_frame(&server());
        s.handle_connect_reply(&connected("0,0", "1.2")).unwrap();
        let h: Headers = [
            ("priority", "4"),
            ("destination", "/queue/evil"),
            ("receipt", "theirs"),
            ("content-length", "99"),
            ("reply-to", "/temp-queue/r"),
        ]
        .into_iter()
        .collect();
        let out = s
            .send("/queue/q", &h, Bytes::from_static(b"body"), false)
            .unwrap();
        assert_eq!(out.receipt, None);
        assert_eq!(
            headers(&out.frame),
            pairs(&[
                ("destination", "/queue/q"),
                ("priority", "4"),
                ("reply-to", "/temp-queue/r"),
            ])
        );
        assert_eq!(&out.frame.body[..], b"body");
        // Transactions must be open on this connection.
        let h: Headers = [("transaction", "t1")].into_iter().collect();
        assert_eq!(
            s.send("/queue/q", &h, Bytes::new(), false),
            Err(SessionError::UnknownTransaction("t1".into()))
        );
        s.begin("t1", false).unwrap();
        assert_eq!(
            s.begin("t1", false),
            Err(SessionError::DuplicateTransaction("t1".into()))
        );
        assert!(s.send("/queue/q", &h, Bytes::new(), false).is_ok());
        assert_eq!(s.transactions().collect::<Vec<_>>(), ["t1"]);
        let c = s.commit("t1", true).unwrap();
        assert_eq!(c.frame.command, Command::Commit);
        assert_eq!(c.frame.headers.get("transaction"), Some("t1"));
        assert!(c.receipt.is_some());
        assert_eq!(
            s.abort("t1", false),
            Err(SessionError::UnknownTransaction("t1".into()))
        );
        s.begin("t2", false).unwrap();
        let a = s.abort("t2", false).unwrap();
        assert_eq!((a.frame.command, a.receipt), (Command::Abort, None));
        let d = s.disconnect().unwrap();
        assert_eq!(d.frame.command, Command::Disconnect);
        assert_eq!(
            s.handle_frame(
                Frame::new(Command::Receipt)
                    .header("receipt-id", d.receipt.unwrap().header_value())
            ),
            Incoming::Receipt {
                id: d.receipt.unwrap(),
                receipted: Receipted::Disconnect
            }
        );
    }

    #[test]
    fn ack_and_nack_per_version() {
        let cases = [
            ("1.2", vec![("id", "ack-1")]),
            (
                "1.1",
                vec![("message-id", "ID:m"), ("subscription", "sub-1")],
            ),
            (
                "1.0",
                vec![("message-id", "ID:m"), ("subscription", "sub-1")],
            ),
        ];
        for (version, expected) in cases {
            let mut s = open(SessionConfig::default(), version);
            s.subscribe(SubscribeSpec::new("/queue/q").ack(AckMode::Client))
                .unwrap();
            let Incoming::Message(m) =
                s.handle_frame(message(Some("sub-1"), "/queue/q", "ID:m").header("ack", "ack-1"))
            else {
                panic!("not a message")
            };
            let f = s.ack(m.ack_info(), false).unwrap();
            assert_eq!(f.command, Command::Ack);
            assert_eq!(headers(&f), pairs(&expected), "{version}");
            let nack = s.ack(m.ack_info(), true);
            if version == "1.0" {
                assert_eq!(nack, Err(SessionError::NackNeeds1_1(Version::V1_0)));
            } else {
                assert_eq!(nack.unwrap().command, Command::Nack);
            }
            // After a reconnect the message is stale.
            s.connection_lost();
            assert_eq!(s.ack(m.ack_info(), false), Err(SessionError::NotConnected));
            s.connect_frame(&server());
            s.handle_connect_reply(&connected("0,0", version)).unwrap();
            assert_eq!(s.ack(m.ack_info(), false), Err(SessionError::StaleMessage));
        }
        // Auto-acknowledged subscriptions need no ACK.
        let mut s = open(SessionConfig::default(), "1.2");
        let (sub, _) = s.subscribe(SubscribeSpec::new("/queue/q")).unwrap();
        let Incoming::Message(m) = s.handle_frame(message(Some("sub-1"), "/queue/q", "ID:m"))
        else {
            panic!("not a message")
        };
        assert_eq!(s.ack(m.ack_info(), false), Err(SessionError::AutoAck(sub)));
    }

    #[test]
    fn connection_loss_reports_outstanding_sends_as_indeterminate() {
        let mut s = open(SessionConfig::default(), "1.2");
        let (sub, _) = s.subscribe(SubscribeSpec::new("/topic/t")).unwrap();
        let sent = s
            .send("/queue/a", &Headers::new(), Bytes::new(), true)
            .unwrap()
            .receipt
            .unwrap();
        let confirmed = s
            .send("/queue/b", &Headers::new(), Bytes::new(), true)
            .unwrap()
            .receipt
            .unwrap();
        let unreceipted = s
            .send("/queue/c", &Headers::new(), Bytes::new(), false)
            .unwrap();
        assert_eq!(unreceipted.receipt, None);
        let never_written = s
            .send("/queue/d", &Headers::new(), Bytes::new(), true)
            .unwrap()
            .receipt
            .unwrap();
        s.begin("t", true).unwrap();
        let commit = s.commit("t", true).unwrap().receipt.unwrap();
        s.begin("open", false).unwrap();
        let unsub = s.unsubscribe(sub).unwrap();
        assert!(unsub.is_some());
        assert!(matches!(
            s.handle_frame(
                Frame::new(Command::Receipt).header("receipt-id", confirmed.header_value())
            ),
            Incoming::Receipt { .. }
        ));
        assert_eq!(
            s.forget_receipt(never_written),
            Some(Receipted::Send {
                destination: "/queue/d".into()
            })
        );
        let lost = s.connection_lost();
        assert_eq!(
            lost.indeterminate,
            [
                (
                    sent,
                    Receipted::Send {
                        destination: "/queue/a".into()
                    }
                ),
                (commit, Receipted::Commit("t".into())),
            ]
        );
        assert_eq!(lost.forgotten.len(), 1, "{:?}", lost.forgotten);
        assert!(matches!(lost.forgotten[0].1, Receipted::Begin(_)));
        assert_eq!(lost.transactions, ["open"]);
        assert!(!s.is_open());
        assert_eq!(s.outstanding_receipts().count(), 0);
        assert_eq!(s.transactions().count(), 0);
        // A receipt from the old connection arriving late is unknown.
        s.connect_frame(&server());
        s.handle_connect_reply(&connected("0,0", "1.2")).unwrap();
        assert_eq!(
            s.handle_frame(Frame::new(Command::Receipt).header("receipt-id", sent.header_value())),
            Incoming::UnknownReceipt(sent.header_value())
        );
        // A second loss reports nothing twice.
        assert_eq!(s.connection_lost(), Lost::default());
    }

    #[test]
    fn refused_begin_leaves_no_transaction() {
        let mut s = open(SessionConfig::default(), "1.2");
        let b = s.begin("t", true).unwrap().receipt.unwrap();
        let err = Frame::new(Command::Error)
            .header("message", "no transactions")
            .header("receipt-id", b.header_value());
        assert!(matches!(s.handle_frame(err), Incoming::Error { .. }));
        assert_eq!(s.transactions().count(), 0);
    }

    #[test]
    fn receipt_ids_round_trip() {
        assert_eq!(ReceiptId::parse("rcpt-42"), Some(ReceiptId(42)));
        assert_eq!(ReceiptId(42).to_string(), "rcpt-42");
        for bad in ["rcpt-", "rcpt-x", "42", "rcpt--1", "rcpt-+1"] {
            assert_eq!(ReceiptId::parse(bad), None, "{bad}");
        }
    }
}
