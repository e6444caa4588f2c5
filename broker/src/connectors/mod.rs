//! Network of brokers: connectors that bridge this broker to others, ActiveMQ style.
//!
//! A *connector* (`[[connectors]]` in the configuration, [`ConnectorConfig`]) runs beside
//! the broker, started by [`Server::run`](crate::server::Server::run) over the same
//! [`Net`](crate::net::Net), so it works over real TCP and in the simulator alike. It
//! makes one [`bridge`] per remote broker: listed in a `static:(…)` URI, or found on a
//! discovery group (`multicast://<group>`, see [`discovery`]). Bridges speak STOMP through
//! the project's failover client, to this broker and to the remote one.
//!
//! Demand flows by consumer advisories and messages by demand subscriptions; the core
//! enforces the loop and TTL rules (see [`crate::core::interbroker`]). What a bridge user
//! needs on each broker, as with ActiveMQ: read on `ActiveMQ.Advisory.Consumer.>` topics
//! (open to everyone unless `security.allow_advisory_topics = false`), read on the
//! forwarded destinations (where demand subscriptions are made), write on them (where
//! forwarded messages are sent), and admin on them when a forward or a demand
//! subscription may be the first to use a destination.

pub mod bridge;
pub mod config;
pub mod discovery;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{
    BridgeSettings, ConnectorConfig, DestinationFilter, DiscoveryConfig, Peers, validate_connectors,
};

use crate::client::ServerAddr;
use crate::net::SharedNet;

/// The address a connector uses to reach its own broker: the bound address, with an
/// unspecified IP (`0.0.0.0`, `::`) replaced by loopback.
pub fn local_server(bound: SocketAddr) -> ServerAddr {
    let ip = match bound.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        other => other,
    };
    ServerAddr::new(ip.to_string(), bound.port())
}

/// What [`start`] needs from the broker's configuration: its name, its `[[connectors]]`
/// and its `[discovery]` section.
#[derive(Clone, Copy, Debug)]
pub struct StartConfig<'a> {
    /// This broker's `core.broker_name`.
    pub broker_name: &'a str,
    /// The connectors to run.
    pub connectors: &'a [ConnectorConfig],
    /// The discovery group to announce on, and where `multicast://` connectors listen.
    pub discovery: &'a DiscoveryConfig,
}

/// Starts the connectors and the discovery announcer of `config` as tasks in `tasks`;
/// they stop when `stop` changes. `bound` is the broker's first listening address.
pub fn start(
    net: &SharedNet,
    config: StartConfig<'_>,
    bound: SocketAddr,
    tasks: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
) {
    let local = local_server(bound);
    let name = config.broker_name.to_owned();
    let mut discovering = Vec::new();
    for connector in config.connectors {
        let settings = Arc::new(connector.settings());
        match connector.peers() {
            Ok(Peers::Static { servers, reconnect }) => {
                for remote in servers {
                    let spec = bridge::BridgeSpec {
                        settings: settings.clone(),
                        local_name: name.clone(),
                        local: local.clone(),
                        remote,
                        reconnect: reconnect.clone(),
                    };
                    tasks.spawn(bridge::run(net.clone(), spec, stop.clone()));
                }
            }
            Ok(Peers::Multicast { group }) => {
                discovering.push(discovery::DiscoveringConnector { group, settings });
            }
            Err(e) => tracing::error!(connector = %connector.name, "not started: {e}"),
        }
    }
    if !discovering.is_empty() {
        tasks.spawn(discovery::connect_discovered(
            net.clone(),
            config.discovery.clone(),
            discovering,
            name.clone(),
            local,
            stop.clone(),
        ));
    }
    if config.discovery.group.is_some() {
        tasks.spawn(discovery::announce(
            net.clone(),
            config.discovery.clone(),
            name,
            bound.port(),
            stop.clone(),
        ));
    }
}
