//! The failover STOMP client: server lists, reconnect policies, session and driver.
//!
//! This module holds the pure (sans-IO) foundation:
//!
//! - [`servers`]: [`ServerAddr`], [`ServerList`] and [`parse_uri`] for `tcp://`,
//!   `stomp://` and ActiveMQ `failover:(…)?…` URIs.
//! - [`mcollective`]: MCollective 2.12 `server.cfg`/`client.cfg` connector settings
//!   (`plugin.activemq.pool.*`, `plugin.rabbitmq.*`, the legacy `stomp` connector).
//! - [`policy`]: [`Reconnector`], a deterministic state machine deciding which server to
//!   try next and how long to wait, faithful to the stomp gem or to ActiveMQ's failover
//!   transport, or jittered to spread reconnect storms.
//! - [`events`]: [`ClientEvent`], what the client did, as plain data.
//!
//! Nothing here reads a clock, the process environment or a global random generator;
//! delays are [`std::time::Duration`] values the async driver sleeps with `tokio::time`.

pub mod events;
pub mod mcollective;
pub mod policy;
pub mod servers;
pub mod session;

pub use events::{ClientEvent, DisconnectReason};
pub use mcollective::{ConfigWarning, Connector, McoClientConfig, McoConfigError};
pub use policy::{
    Attempt, BackoffMultiplier, GaveUp, PolicyKind, ReconnectConfig, Reconnector, TriedServer,
};
pub use servers::{ServerAddr, ServerList, UriConfig, UriError, UriErrorKind, parse_uri};
pub use session::{
    AckMode, ConnectError, Credentials, IdHeader, Incoming, Message, Negotiated, ReceiptId,
    Receipted, Session, SessionConfig, SessionError, SubscribeSpec, SubscriptionId,
};
