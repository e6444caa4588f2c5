//! Messages as the core stores them, and how a delivery becomes a MESSAGE frame.
//!
//! A [`Message`] is built once from a SEND frame and shared (`Arc`) by every queue entry
//! and every delivery, so fan-out to 800 subscribers copies a pointer, not the body. The
//! pass-through headers are encoded once per protocol version and reused by every
//! delivery in that version.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::destination::Destination;
use crate::proto::codec::encode_header;
use crate::proto::{Headers, Version};
use crate::selector::{Properties, Value};

/// Priority given to messages that name none (JMS default).
pub const DEFAULT_PRIORITY: u8 = 4;

/// SEND headers the broker consumes instead of passing them on to MESSAGE frames.
pub(crate) const CONSUMED_SEND_HEADERS: &[&str] = &[
    "destination",
    "content-length",
    "receipt",
    "transaction",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
];

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
    /// Whether the sender asked for `persistent:true` (kept for a future store).
    pub persistent: bool,
    /// `JMSXGroupID`, for message groups.
    pub group: Option<ByteString>,
    /// The connection that sent it (for `activemq.noLocal`), if local.
    pub origin_conn: Option<super::ConnId>,
    encoded: [OnceLock<Bytes>; 3],
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
            group,
            origin_conn,
            encoded: Default::default(),
        }
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
    /// STOMP 1.2 `ack` header for client ack modes.
    pub ack: Option<ByteString>,
    /// Whether this is not the first delivery.
    pub redelivered: bool,
}

impl Delivery {
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
        if let Some(ack) = &self.ack {
            encode_header(buf, "ack", ack, version, true);
        }
        if self.redelivered {
            buf.put_slice(b"redelivered:true\n");
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
