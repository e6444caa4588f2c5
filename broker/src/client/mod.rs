//! The failover STOMP client: server lists, reconnect policies, session and driver.
//!
//! [`driver`] is the client applications use: [`Client::start`] over any
//! [`Net`](crate::net::Net) (real TCP or a turmoil simulation) returns a [`Client`] handle
//! and the [`ClientStreams`] of messages and [`ClientEvent`]s. It is built on a pure
//! (sans-IO) foundation:
//!
//! - [`servers`]: [`ServerAddr`] and [`ServerList`].
//! - [`uri`]: [`parse_uri`] for `tcp://`, `stomp://` and ActiveMQ `failover:(…)?…` URIs.
//! - [`mcollective`]: MCollective 2.12 `server.cfg`/`client.cfg` connector settings
//!   (`plugin.activemq.pool.*`, `plugin.rabbitmq.*`, the legacy `stomp` connector).
//! - [`policy`]: [`Reconnector`], a deterministic state machine deciding which server to
//!   try next and how long to wait, faithful to the stomp gem or to ActiveMQ's failover
//!   transport, or jittered to spread reconnect storms.
//! - [`session`]: [`Session`], the client side of the STOMP protocol: CONNECT and
//!   CONNECTED, the subscriptions to replay, receipts outstanding, typed incoming frames.
//! - [`events`]: [`ClientEvent`], what the client did, as plain data.
//!
//! Nothing in the sans-IO modules reads a clock, the process environment or a global
//! random generator; delays are [`std::time::Duration`] values the driver sleeps with
//! `tokio::time`, its only source of time.

pub mod driver;
pub mod events;
pub mod mcollective;
pub mod policy;
pub mod roboconf;
pub mod servers;
pub mod session;
pub mod uri;

pub use crate::proto::AckMode;
pub use driver::{
    Client, ClientConfig, ClientError, ClientStreams, PendingReceipt, PendingSubscribe,
    PendingWrite, SendOutcome, Status, StopReason,
};
pub use events::{ClientEvent, DisconnectReason};
pub use mcollective::{ConfigWarning, McoClientConfig, McoConfigError, McoConnector};
pub use policy::{
    Attempt, BackoffMultiplier, ConnreadTimeout, GaveUp, PolicyKind, ReconnectConfig, Reconnector,
    TriedServer,
};
pub use servers::{ServerAddr, ServerList};
pub use session::{
    ConnectError, Credentials, IdHeader, Incoming, Message, Negotiated, ReceiptId, Receipted,
    Session, SessionConfig, SessionError, SubscribeSpec, SubscriptionId,
};
pub use uri::{UriConfig, UriError, UriErrorKind, parse_uri};
