//! Messages as the core stores them, and how a delivery becomes a MESSAGE frame.
//!
//! A [`Message`] is built once from a SEND frame and shared (`Arc`) by every queue entry
//! and every delivery, so fan-out to 800 subscribers copies a pointer, not the body. The
//! pass-through headers are encoded once per protocol version and reused by every
//! delivery in that version.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::interbroker_headers::{BROKER_PATH_HEADER, ORIGIN_ID_HEADER};
use crate::destination::Destination;
use crate::proto::codec::encode_header;
use crate::proto::{Headers, Version};
use crate::selector::{Properties, Value};

/// Priority given to messages that name none (JMS default).
pub const DEFAULT_PRIORITY: u8 = 4;

/// On a SEND with a receipt: its RECEIPT carries this header with the number of
/// subscriptions the message was delivered to at once (what a Redis `PUBLISH` answers).
/// The value sent does not matter; the header is not passed on.
pub const RECEIVERS_HEADER: &str = "stampede-receivers";

/// SEND headers the broker consumes instead of passing them on to MESSAGE frames.
pub(crate) const CONSUMED_SEND_HEADERS: &[&str] = &[
    "destination",
    "content-length",
    "receipt",
    RECEIVERS_HEADER,
    "transaction",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    BROKER_PATH_HEADER,
    ORIGIN_ID_HEADER,
];

/// Why the core dropped a message on purpose (see `CoreConfig::record_drops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// It expired before it could be delivered.
    Expired,
    /// A topic subscriber was too slow to take it (the slow-consumer policy).
    SlowConsumer,
    /// The SEND was refused with an ERROR (for example a full queue).
    Refused,
    /// It was moved to the dead-letter queue.
    DeadLettered,
}

/// One message, immutable once built.
#[derive(Debug)]
pub struct Message {
    /// Broker-unique id, sent as `message-id`.
    pub id: ByteString,
    /// Where it was sent.
    pub destination: Destination,
    /// The destination as MESSAGE frames spell it.
    pub destination_text: ByteString,
    /// Headers passed through to MESSAGE frames, in SEND order.
    pub headers: Headers,
    /// The body, verbatim.
    pub body: Bytes,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    /// Absolute expiry in epoch milliseconds, if any.
    pub expires_ms: Option<u64>,
    /// Whether the sender asked for `persistent:true`.
    pub persistent: bool,
    /// The store's id for it, when it is persistent and the broker has a store.
    pub persist_id: Option<u64>,
    /// `JMSXGroupID`, for message groups.
    pub group: Option<ByteString>,
    /// The connection that sent it (for `activemq.noLocal`), if local.
    pub origin_conn: Option<super::ConnId>,
    /// The brokers it passed through before this one, oldest first (empty for a message a
    /// local client sent); from the `stampede-broker-path` header of the SEND.
    pub broker_path: Box<[Arc<str>]>,
    /// Its message id at the first broker (`stampede-origin-id`), for messages that came
    /// over a network bridge.
    pub origin_id: Option<ByteString>,
    /// `broker_path` as the header spells it (`None` when empty).
    path_text: Option<ByteString>,
    /// `broker_path` plus this broker, as sent to network subscriptions (computed once).
    forward_path: OnceLock<ByteString>,
    encoded: [OnceLock<Bytes>; 3],
    /// Its bytes, charged to the broker's memory gauge while any handle to it lives.
    charge: Option<super::memory::MemoryCharge>,
}

impl Message {
    /// Builds a message. `headers` must already exclude [`CONSUMED_SEND_HEADERS`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: ByteString,
        destination: Destination,
        destination_text: ByteString,
        headers: Headers,
        body: Bytes,
        priority: u8,
        expires_ms: Option<u64>,
        persistent: bool,
        origin_conn: Option<super::ConnId>,
    ) -> Message {
        let group = headers.get_shared("JMSXGroupID").cloned();
        Message {
            id,
            destination,
            destination_text,
            headers,
            body,
            priority,
            expires_ms,
            persistent,
            persist_id: None,
            group,
            origin_conn,
            broker_path: Box::new([]),
            origin_id: None,
            path_text: None,
            forward_path: OnceLock::new(),
            encoded: Default::default(),
            charge: None,
        }
    }

    /// Bytes the message takes: body, headers and the names the core keeps for it. An
    /// estimate of the heap it holds, not of its encoding (which is cached separately).
    pub fn size_bytes(&self) -> u64 {
        const OVERHEAD_BYTES: u64 = 256;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + self.id.len() + self.destination_text.len()) as u64
            + OVERHEAD_BYTES
    }

    /// The same message, charged to `gauge` until the last handle to it is dropped.
    pub(crate) fn charged(mut self, gauge: &std::sync::Arc<super::memory::MemoryGauge>) -> Message {
        self.charge = Some(gauge.charge(self.size_bytes()));
        self
    }

    /// The same message with the store id `id` (see [`Message::persist_id`]).
    pub(crate) fn with_persist_id(mut self, id: Option<u64>) -> Message {
        self.persist_id = id;
        self
    }

    /// The same message marked as having passed through `path` (see
    /// [`Message::broker_path`]), first sent as `origin_id`.
    pub(crate) fn with_network(
        mut self,
        path: Vec<Arc<str>>,
        origin_id: Option<ByteString>,
    ) -> Message {
        self.path_text = (!path.is_empty()).then(|| ByteString::from(path.join(",")));
        self.broker_path = path.into_boxed_slice();
        self.origin_id = origin_id;
        self
    }

    /// The `stampede-broker-path` header value of deliveries to local consumers.
    pub(crate) fn path_text(&self) -> Option<&ByteString> {
        self.path_text.as_ref()
    }

    /// The `stampede-broker-path` header value of deliveries to network subscriptions:
    /// the path plus `this_broker`.
    pub(crate) fn forward_path(&self, this_broker: &str) -> ByteString {
        self.forward_path
            .get_or_init(|| match &self.path_text {
                Some(p) => ByteString::from(format!("{p},{this_broker}")),
                None => ByteString::from(this_broker),
            })
            .clone()
    }

    /// Whether the message has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// The pass-through headers encoded for `version`, computed on first use.
    fn encoded_headers(&self, version: Version) -> &Bytes {
        let slot = match version {
            Version::V1_0 => &self.encoded[0],
            Version::V1_1 => &self.encoded[1],
            Version::V1_2 => &self.encoded[2],
        };
        slot.get_or_init(|| {
            let mut buf = BytesMut::with_capacity(256);
            for (k, v) in self.headers.iter() {
                encode_header(&mut buf, k, v, version, true);
            }
            buf.freeze()
        })
    }
}

impl Properties for Message {
    fn property(&self, name: &str) -> Option<Value<'_>> {
        if let Some(jms) = name.strip_prefix("JMS") {
            match jms {
                "Priority" => return Some(Value::Long(i64::from(self.priority))),
                "MessageID" => return Some(Value::Str(&self.id)),
                "DeliveryMode" => {
                    return Some(Value::Str(if self.persistent {
                        "PERSISTENT"
                    } else {
                        "NON_PERSISTENT"
                    }));
                }
                "Expiration" => {
                    return Some(Value::Long(
                        self.expires_ms
                            .map_or(0, |e| i64::try_from(e).unwrap_or(i64::MAX)),
                    ));
                }
                "Timestamp" => {
                    return self
                        .headers
                        .get("timestamp")
                        .and_then(|t| t.parse::<i64>().ok())
                        .map(Value::Long);
                }
                "CorrelationID" => return self.headers.get("correlation-id").map(Value::Str),
                "Type" => return self.headers.get("type").map(Value::Str),
                "ReplyTo" => return self.headers.get("reply-to").map(Value::Str),
                _ => {}
            }
        }
        self.headers.get(name).map(Value::Str)
    }
}

/// One message on its way to one subscription.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// `destination` header: the subscription's own destination when it is not a
    /// wildcard (so a temporary queue's owner sees the name it used), else the message's.
    pub destination: ByteString,
    /// The subscription id the client gave (absent for STOMP 1.0 subscriptions without id).
    pub subscription: Option<ByteString>,
    /// STOMP 1.2 `ack` header for client ack modes: the delivery tag, written as a
    /// decimal number (kept as a number so that a delivery allocates nothing).
    pub ack: Option<u64>,
    /// Whether this is not the first delivery.
    pub redelivered: bool,
    /// `stampede-broker-path` header: the brokers the message passed through (plus this
    /// one, for a network subscription); `None` for a local message to a local consumer.
    pub broker_path: Option<ByteString>,
    /// `stampede-origin-id` header, on deliveries to network subscriptions.
    pub origin_id: Option<ByteString>,
}

impl Delivery {
    /// The MESSAGE frame's size, near enough for costing (see [`super::Work`]): fixed
    /// headers, the message's own headers and its body.
    pub fn wire_bytes_estimate(&self) -> u64 {
        let m = &*self.message;
        let headers: usize = m.headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        (64 + self.destination.len() + m.id.len() + headers + m.body.len()) as u64
    }

    /// Appends the MESSAGE frame for a session speaking `version`.
    pub fn encode(&self, version: Version, buf: &mut BytesMut) {
        let m = &*self.message;
        let shared = m.encoded_headers(version);
        buf.reserve(64 + self.destination.len() + m.id.len() + shared.len() + m.body.len());
        buf.put_slice(b"MESSAGE\n");
        encode_header(buf, "destination", &self.destination, version, true);
        encode_header(buf, "message-id", &m.id, version, true);
        if let Some(sub) = &self.subscription {
            encode_header(buf, "subscription", sub, version, true);
        }
        if let Some(ack) = self.ack {
            buf.put_slice(b"ack:");
            buf.put_slice(itoa_buf(ack as usize).as_bytes_mut());
            buf.put_u8(b'\n');
        }
        if self.redelivered {
            buf.put_slice(b"redelivered:true\n");
        }
        if let Some(path) = &self.broker_path {
            encode_header(buf, BROKER_PATH_HEADER, path, version, true);
        }
        if let Some(origin) = &self.origin_id {
            encode_header(buf, ORIGIN_ID_HEADER, origin, version, true);
        }
        buf.put_slice(shared);
        buf.put_slice(b"content-length:");
        let mut digits = itoa_buf(m.body.len());
        buf.put_slice(digits.as_bytes_mut());
        buf.put_slice(b"\n\n");
        buf.put_slice(&m.body);
        buf.put_u8(0);
    }
}

/// A tiny stack buffer for formatting a `usize` without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: usize) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_format_like_display() {
        for n in [0usize, 7, 10, 335, 1_000_000, usize::MAX] {
            assert_eq!(itoa_buf(n).as_bytes_mut(), n.to_string().as_bytes());
        }
    }
}
