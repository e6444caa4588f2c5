//! Stampede's STOMP broker: protocol, sans-IO core, tokio server shell.
//!
//! # Layout
//!
//! - [`proto`]: STOMP 1.0–1.2 frames and the incremental codec (bytes ↔ [`proto::Frame`]).
//! - [`destination`]: destination names (`/queue/…`, `/topic/…`, temporary) and `*`/`>`
//!   wildcard patterns.
//! - [`selector`]: JMS selectors, parsed once and evaluated against message headers.
//! - [`vhost`]: virtual hosts chosen by CONNECT's `host`, and RabbitMQ's STOMP
//!   destinations (`/exchange/…`, `/amq/queue/…`, `/reply-queue/…`) translated into the
//!   core's names.
//! - [`security`]: users, groups and the ActiveMQ-style authorization map.
//! - [`core`]: the broker state machine. Frames and `now` go in, frames to send come out;
//!   it never reads a clock, spawns a task or touches a socket.
//! - [`net`]: the [`net::Net`] trait, the only way the broker reaches the network.
//! - [`server`]: the tokio shell that drives one [`core::Broker`] over a [`net::Net`].
//! - [`store`]: the message store (a checksummed journal behind the [`store::Disk`] seam)
//!   that the server keeps persistent messages in.
//! - [`client`]: the failover STOMP client (server pools, reconnect policies).
//! - [`connectors`]: network connectors: bridges to other brokers (demand forwarding,
//!   store and forward, discovery).
//! - [`task`]: where tasks are spawned (tokio's scheduler, or the host's `LocalSet` on a
//!   simulation's thread, so that a crash drops them in a reproducible order).
//! - [`clock`]: epoch milliseconds derived from `tokio::time` (simulated under turmoil).
//! - [`config`]: the TOML configuration file.
//! - [`toml_config`]: the TOML toolkit (errors located by file, line and key path).

pub mod client;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod core;
pub mod destination;
pub mod net;
pub mod permissions;
pub mod proto;
pub mod security;
pub mod selector;
pub mod server;
pub mod store;
pub mod task;
pub mod tls;
pub mod toml_config;
pub mod vhost;
