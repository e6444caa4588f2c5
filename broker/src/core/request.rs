//! The typed step between a client frame and the broker's state.
//!
//! Each frame that changes state (SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT,
//! ABORT) is first parsed into a request: its headers are read and checked here, without
//! looking at or changing any state, and the handlers in `dispatch/` then act on the
//! request. A frame whose headers are wrong is refused before anything happens; which
//! error a frame with several problems gets is: header problems first, in the order
//! below, then problems with the state (an id already in use, a destination not allowed).

use bytestring::ByteString;

use super::message::DEFAULT_PRIORITY;
use super::session::{FrameError, fatal};
use crate::destination::Destination;
use crate::proto::{AckMode, Command, Frame, Version};
use crate::selector::Selector;

/// A SEND's headers, checked.
#[derive(Debug)]
pub(super) struct SendRequest {
    /// Where the message goes (never a wildcard).
    pub(super) destination: Destination,
    /// The transaction it belongs to, if any.
    pub(super) transaction: Option<ByteString>,
    /// `priority`, clamped to 0–9.
    pub(super) priority: u8,
    /// `expires` in epoch milliseconds; `None` for none (or 0).
    pub(super) expires_ms: Option<u64>,
    /// In a vhost: the destination as the client wrote it, for MESSAGE frames (set by
    /// the handler from the translation, never by parsing).
    pub(super) display: Option<ByteString>,
}

impl SendRequest {
    /// Checks `destination` (present, valid, not a wildcard), `priority` and `expires`.
    pub(super) fn parse(frame: &Frame) -> Result<SendRequest, FrameError> {
        let h = &frame.headers;
        let Some(dest_text) = h.get("destination") else {
            return fatal("SEND frame has no destination header");
        };
        let destination =
            Destination::parse(dest_text).map_err(|e| FrameError::Fatal(e.to_string()))?;
        if destination.is_wildcard() {
            return fatal(format!(
                "cannot send to a wildcard destination: {dest_text}"
            ));
        }
        let priority = match h.get("priority") {
            None => DEFAULT_PRIORITY,
            Some(p) => match p.trim().parse::<i64>() {
                Ok(n) => n.clamp(0, 9) as u8,
                Err(_) => return fatal(format!("invalid priority header: '{p}'")),
            },
        };
        let expires_ms = match h.get("expires") {
            None => None,
            Some(e) => match e.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => return fatal(format!("invalid expires header: '{e}'")),
            },
        };
        Ok(SendRequest {
            destination,
            transaction: h.get_shared("transaction").cloned(),
            priority,
            expires_ms,
            display: None,
        })
    }
}

/// A SUBSCRIBE's headers, checked.
#[derive(Debug)]
pub(super) struct SubscribeRequest {
    /// The destination as the client wrote it.
    pub(super) dest_text: ByteString,
    /// The parsed destination (a pattern for wildcard subscriptions).
    pub(super) destination: Destination,
    /// Whether `destination` has wildcards (never on a temporary destination).
    pub(super) wildcard: bool,
    /// The `id` header, if any (required since STOMP 1.1).
    pub(super) id_header: Option<ByteString>,
    /// The id the client uses for it: its `id`, or the destination in STOMP 1.0.
    pub(super) client_id: ByteString,
    /// `ack`.
    pub(super) ack: AckMode,
    /// `selector`; `None` when absent or blank.
    pub(super) selector: Option<Selector>,
    /// `activemq.prefetchSize` (greater than zero); `None` for the broker's default.
    pub(super) prefetch: Option<usize>,
    /// `activemq.priority` (0 when absent).
    pub(super) priority: i32,
    /// `activemq.exclusive:true`.
    pub(super) exclusive: bool,
    /// `activemq.noLocal:true`.
    pub(super) no_local: bool,
}

impl SubscribeRequest {
    /// Checks `destination`, `id` (for `version`), `ack`, wildcards, `selector`,
    /// `activemq.prefetchSize` and `activemq.priority`.
    pub(super) fn parse(frame: &Frame, version: Version) -> Result<SubscribeRequest, FrameError> {
        let h = &frame.headers;
        let Some(dest_text) = h.get_shared("destination").cloned() else {
            return fatal("SUBSCRIBE frame has no destination header");
        };
        let id_header = h.get_shared("id").cloned();
        if id_header.is_none() && version != Version::V1_0 {
            return fatal("SUBSCRIBE frame has no id header (required since STOMP 1.1)");
        }
        let client_id = id_header.clone().unwrap_or_else(|| dest_text.clone());
        let ack = match h.get("ack") {
            None => AckMode::Auto,
            Some(value) => match AckMode::parse(value) {
                Some(mode) => mode,
                None => return fatal(format!("invalid ack mode '{value}'")),
            },
        };
        let destination =
            Destination::parse(&dest_text).map_err(|e| FrameError::Fatal(e.to_string()))?;
        let wildcard = destination.is_wildcard();
        if wildcard && destination.kind.is_temporary() {
            return fatal("wildcards are not allowed on temporary destinations");
        }
        let selector = match h.get("selector") {
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) => {
                Some(Selector::parse(text).map_err(|e| FrameError::Fatal(e.to_string()))?)
            }
        };
        let prefetch = match h.get("activemq.prefetchSize") {
            None => None,
            Some(p) => match p.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return fatal(format!("invalid activemq.prefetchSize '{p}' (must be > 0)")),
            },
        };
        let priority = match h.get("activemq.priority") {
            None => 0,
            Some(p) => p
                .trim()
                .parse::<i32>()
                .map_err(|_| FrameError::Fatal(format!("invalid activemq.priority '{p}'")))?,
        };
        Ok(SubscribeRequest {
            dest_text,
            destination,
            wildcard,
            id_header,
            client_id,
            ack,
            selector,
            prefetch,
            priority,
            exclusive: h.get("activemq.exclusive") == Some("true"),
            no_local: h.get("activemq.noLocal") == Some("true"),
        })
    }
}

/// Which subscription an UNSUBSCRIBE names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum UnsubscribeRequest {
    /// By `id`.
    Id(ByteString),
    /// STOMP 1.0 without `id`: by `destination`.
    Destination(ByteString),
}

impl UnsubscribeRequest {
    /// Checks that the frame has an `id` (or, in STOMP 1.0, a `destination`) header.
    pub(super) fn parse(frame: &Frame) -> Result<UnsubscribeRequest, FrameError> {
        let h = &frame.headers;
        if let Some(id) = h.get_shared("id") {
            Ok(UnsubscribeRequest::Id(id.clone()))
        } else if let Some(dest) = h.get_shared("destination") {
            Ok(UnsubscribeRequest::Destination(dest.clone()))
        } else {
            fatal("UNSUBSCRIBE frame needs an id (or, in STOMP 1.0, a destination) header")
        }
    }

    /// The header value that names the subscription.
    pub(super) fn name(&self) -> &ByteString {
        match self {
            UnsubscribeRequest::Id(id) | UnsubscribeRequest::Destination(id) => id,
        }
    }
}

/// How an ACK or NACK names the delivery it acknowledges.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AckTargetName {
    /// STOMP 1.2: the MESSAGE's `ack` value, given as `id`.
    Id(ByteString),
    /// STOMP 1.0 and 1.1: `message-id`, optionally narrowed by `subscription`.
    MessageId {
        /// The message's id.
        message_id: ByteString,
        /// The subscription the client names, if any.
        subscription: Option<ByteString>,
    },
}

/// An ACK's or NACK's headers, checked.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AckRequest {
    /// ACK or NACK.
    pub(super) command: Command,
    /// Which delivery.
    pub(super) target: AckTargetName,
    /// NACK with `requeue:false`: to the dead-letter queue rather than back.
    pub(super) requeue: bool,
    /// The transaction it belongs to, if any.
    pub(super) transaction: Option<ByteString>,
}

impl AckRequest {
    /// Checks the header that names the delivery: `id` in STOMP 1.2, `message-id`
    /// before.
    pub(super) fn parse(frame: &Frame, version: Version) -> Result<AckRequest, FrameError> {
        let h = &frame.headers;
        let what = frame.command;
        let target = if version == Version::V1_2 {
            let Some(id) = h.get_shared("id") else {
                return fatal(format!("{what} frame has no id header (STOMP 1.2)"));
            };
            AckTargetName::Id(id.clone())
        } else {
            let Some(message_id) = h.get_shared("message-id") else {
                return fatal(format!("{what} frame has no message-id header"));
            };
            AckTargetName::MessageId {
                message_id: message_id.clone(),
                subscription: h.get_shared("subscription").cloned(),
            }
        };
        Ok(AckRequest {
            command: what,
            target,
            // stomp.py sends Python's `False`: any case means no.
            requeue: !h
                .get("requeue")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("false")),
            transaction: h.get_shared("transaction").cloned(),
        })
    }
}

/// A BEGIN's, COMMIT's or ABORT's transaction id.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TxRequest {
    /// The `transaction` header.
    pub(super) transaction: ByteString,
}

impl TxRequest {
    /// Checks that the frame has a `transaction` header.
    pub(super) fn parse(frame: &Frame) -> Result<TxRequest, FrameError> {
        frame
            .headers
            .get_shared("transaction")
            .cloned()
            .map(|transaction| TxRequest { transaction })
            .ok_or_else(|| {
                FrameError::Fatal(format!("{} frame has no transaction header", frame.command))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Kind;

    fn frame(command: Command, headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(command), |f, (name, value)| {
                f.header(*name, *value)
            })
    }

    fn fatal_message<T: std::fmt::Debug>(result: Result<T, FrameError>) -> String {
        match result {
            Err(FrameError::Fatal(m)) => m,
            other => panic!("not a fatal error: {other:?}"),
        }
    }

    #[test]
    fn send_headers_are_checked() {
        let r = SendRequest::parse(&frame(
            Command::Send,
            &[
                ("destination", "/queue/a"),
                ("priority", " 12 "),
                ("expires", "0"),
                ("transaction", "t1"),
            ],
        ))
        .unwrap();
        assert_eq!(r.destination.kind, Kind::Queue);
        assert_eq!((r.priority, r.expires_ms), (9, None));
        assert_eq!(r.transaction.as_deref(), Some("t1"));
        let r = SendRequest::parse(&frame(
            Command::Send,
            &[("destination", "/topic/t"), ("expires", "5")],
        ))
        .unwrap();
        assert_eq!((r.priority, r.expires_ms), (DEFAULT_PRIORITY, Some(5)));
        assert_eq!(
            fatal_message(SendRequest::parse(&frame(Command::Send, &[]))),
            "SEND frame has no destination header"
        );
        assert_eq!(
            fatal_message(SendRequest::parse(&frame(
                Command::Send,
                &[("destination", "/queue/a.>")]
            ))),
            "cannot send to a wildcard destination: /queue/a.>"
        );
        assert_eq!(
            fatal_message(SendRequest::parse(&frame(
                Command::Send,
                &[("destination", "/queue/a"), ("priority", "high")]
            ))),
            "invalid priority header: 'high'"
        );
        assert_eq!(
            fatal_message(SendRequest::parse(&frame(
                Command::Send,
                &[("destination", "/queue/a"), ("expires", "-1")]
            ))),
            "invalid expires header: '-1'"
        );
    }

    #[test]
    fn subscribe_headers_are_checked() {
        let r = SubscribeRequest::parse(
            &frame(
                Command::Subscribe,
                &[
                    ("destination", "/queue/q"),
                    ("id", "s1"),
                    ("ack", "client-individual"),
                    ("selector", " "),
                    ("activemq.prefetchSize", "10"),
                    ("activemq.priority", "-3"),
                    ("activemq.exclusive", "true"),
                ],
            ),
            Version::V1_2,
        )
        .unwrap();
        assert_eq!(r.client_id, "s1");
        assert_eq!(r.ack, AckMode::ClientIndividual);
        assert!(r.selector.is_none());
        assert_eq!((r.prefetch, r.priority), (Some(10), -3));
        assert!(r.exclusive && !r.no_local && !r.wildcard);
        // STOMP 1.0 needs no id: the destination names the subscription.
        let r = SubscribeRequest::parse(
            &frame(Command::Subscribe, &[("destination", "/topic/a.*")]),
            Version::V1_0,
        )
        .unwrap();
        assert_eq!(r.client_id, "/topic/a.*");
        assert!(r.wildcard);
        assert_eq!(r.ack, AckMode::Auto);
        let refused = |headers: &[(&str, &str)]| {
            fatal_message(SubscribeRequest::parse(
                &frame(Command::Subscribe, headers),
                Version::V1_1,
            ))
        };
        assert_eq!(
            refused(&[("destination", "/queue/q")]),
            "SUBSCRIBE frame has no id header (required since STOMP 1.1)"
        );
        assert_eq!(
            refused(&[("id", "s")]),
            "SUBSCRIBE frame has no destination header"
        );
        assert_eq!(
            refused(&[("destination", "/queue/q"), ("id", "s"), ("ack", "Client")]),
            "invalid ack mode 'Client'"
        );
        assert_eq!(
            refused(&[("destination", "/temp-queue/a.*"), ("id", "s")]),
            "wildcards are not allowed on temporary destinations"
        );
        assert_eq!(
            refused(&[
                ("destination", "/queue/q"),
                ("id", "s"),
                ("activemq.prefetchSize", "0")
            ]),
            "invalid activemq.prefetchSize '0' (must be > 0)"
        );
        assert_eq!(
            refused(&[
                ("destination", "/queue/q"),
                ("id", "s"),
                ("activemq.priority", "x")
            ]),
            "invalid activemq.priority 'x'"
        );
        assert!(
            !refused(&[
                ("destination", "/queue/q"),
                ("id", "s"),
                ("selector", "a =")
            ])
            .is_empty()
        );
    }

    #[test]
    fn unsubscribe_names_a_subscription() {
        assert_eq!(
            UnsubscribeRequest::parse(&frame(
                Command::Unsubscribe,
                &[("id", "s1"), ("destination", "/queue/q")]
            ))
            .unwrap(),
            UnsubscribeRequest::Id("s1".into())
        );
        let r =
            UnsubscribeRequest::parse(&frame(Command::Unsubscribe, &[("destination", "/queue/q")]))
                .unwrap();
        assert_eq!(r.name(), "/queue/q");
        assert_eq!(
            fatal_message(UnsubscribeRequest::parse(&frame(Command::Unsubscribe, &[]))),
            "UNSUBSCRIBE frame needs an id (or, in STOMP 1.0, a destination) header"
        );
    }

    #[test]
    fn acks_name_their_delivery_by_version() {
        let r = AckRequest::parse(
            &frame(Command::Nack, &[("id", "7"), ("requeue", "false")]),
            Version::V1_2,
        )
        .unwrap();
        assert_eq!(r.target, AckTargetName::Id("7".into()));
        assert!(!r.requeue);
        for no in ["False", "FALSE", " false"] {
            let r = AckRequest::parse(
                &frame(Command::Nack, &[("id", "7"), ("requeue", no)]),
                Version::V1_2,
            )
            .unwrap();
            assert!(!r.requeue, "requeue:{no} must not requeue");
        }
        let r = AckRequest::parse(
            &frame(
                Command::Ack,
                &[
                    ("message-id", "m1"),
                    ("subscription", "s"),
                    ("transaction", "t"),
                ],
            ),
            Version::V1_1,
        )
        .unwrap();
        assert_eq!(
            r.target,
            AckTargetName::MessageId {
                message_id: "m1".into(),
                subscription: Some("s".into())
            }
        );
        assert!(r.requeue);
        assert_eq!(r.transaction.as_deref(), Some("t"));
        assert_eq!(
            fatal_message(AckRequest::parse(
                &frame(Command::Ack, &[("message-id", "m1")]),
                Version::V1_2
            )),
            "ACK frame has no id header (STOMP 1.2)"
        );
        assert_eq!(
            fatal_message(AckRequest::parse(
                &frame(Command::Nack, &[("id", "7")]),
                Version::V1_1
            )),
            "NACK frame has no message-id header"
        );
    }

    #[test]
    fn transactions_need_an_id() {
        assert_eq!(
            TxRequest::parse(&frame(Command::Begin, &[("transaction", "t1")]))
                .unwrap()
                .transaction,
            "t1"
        );
        assert_eq!(
            fatal_message(TxRequest::parse(&frame(Command::Commit, &[]))),
            "COMMIT frame has no transaction header"
        );
    }
}
