//! Network of brokers: connectors that bridge this broker to others, ActiveMQ style.
//!
//! A *connector* (`[[connectors]]` in the configuration, [`ConnectorConfig`]) runs beside
//! the broker in a [`Network`] that [`Server::run`](crate::server::Server::run) starts,
//! over the same [`Net`](crate::net::Net), so it works over real TCP and in the simulator
//! alike. It makes one [`bridge`] per remote broker: listed in a `static:(…)` URI, or
//! found on a discovery group (`multicast://<group>`, see [`discovery`]). Bridges speak
//! STOMP through the project's failover client, to this broker and to the remote one.
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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// The network of one broker: its connectors' bridges and its discovery announcer, run as
/// tasks beside the broker. Each static connector runs (and stops) on its own, so a
/// reload ([`Network::apply`]) restarts only what changed; `multicast://` connectors and
/// the announcer share the discovery group's socket and restart together when any of
/// them, or `[discovery]`, changed.
pub struct Network {
    net: SharedNet,
    broker_name: String,
    bound: SocketAddr,
    /// Static connectors by name, with the configuration each runs with.
    statics: BTreeMap<String, (ConnectorConfig, Unit)>,
    /// The multicast connectors and `[discovery]` the discovery unit runs with.
    discovering: (Vec<ConnectorConfig>, DiscoveryConfig),
    discovery: Option<Unit>,
}

/// Tasks that start and stop together.
struct Unit {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Unit {
    fn new() -> (Unit, watch::Receiver<bool>) {
        let (stop, stopped) = watch::channel(false);
        let unit = Unit {
            stop,
            tasks: JoinSet::new(),
        };
        (unit, stopped)
    }

    /// Asks the tasks to stop (bridges disconnect cleanly) and waits up to `grace` for
    /// them, then aborts the rest.
    async fn stop(self, grace: Duration) {
        stop_all(vec![self], grace).await;
    }
}

/// Stops `units` together: every one is asked at once, then all get `grace` in total.
async fn stop_all(mut units: Vec<Unit>, grace: Duration) {
    for unit in &units {
        let _ = unit.stop.send(true);
    }
    let _ = tokio::time::timeout(grace, async {
        for unit in &mut units {
            while unit.tasks.join_next().await.is_some() {}
        }
    })
    .await;
    for unit in &mut units {
        unit.tasks.abort_all();
        while unit.tasks.join_next().await.is_some() {}
    }
}

/// What [`Network::apply`] changed, by connector name (`"discovery"` for the discovery
/// group's unit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkChanges {
    /// Started.
    pub started: Vec<String>,
    /// Stopped.
    pub stopped: Vec<String>,
    /// Stopped and started again with a new configuration.
    pub restarted: Vec<String>,
}

impl NetworkChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.stopped.is_empty() && self.restarted.is_empty()
    }
}

fn is_multicast(c: &ConnectorConfig) -> bool {
    matches!(c.peers(), Ok(Peers::Multicast { .. }))
}

impl Network {
    /// Starts the connectors and the discovery announcer of `config`. `bound` is the
    /// broker's first listening address.
    pub fn start(net: &SharedNet, config: StartConfig<'_>, bound: SocketAddr) -> Network {
        let mut network = Network {
            net: net.clone(),
            broker_name: config.broker_name.to_owned(),
            bound,
            statics: BTreeMap::new(),
            discovering: (Vec::new(), DiscoveryConfig::default()),
            discovery: None,
        };
        for c in config.connectors.iter().filter(|c| !is_multicast(c)) {
            let unit = network.start_static(c);
            network.statics.insert(c.name.clone(), (c.clone(), unit));
        }
        let multicast: Vec<ConnectorConfig> = config
            .connectors
            .iter()
            .filter(|c| is_multicast(c))
            .cloned()
            .collect();
        network.discovering = (multicast, config.discovery.clone());
        network.discovery = network.start_discovery();
        network
    }

    fn start_static(&self, connector: &ConnectorConfig) -> Unit {
        let (mut unit, stopped) = Unit::new();
        let settings = Arc::new(connector.settings());
        match connector.peers() {
            Ok(Peers::Static { servers, reconnect }) => {
                for remote in servers {
                    let spec = bridge::BridgeSpec {
                        settings: settings.clone(),
                        local_name: self.broker_name.clone(),
                        local: local_server(self.bound),
                        remote,
                        reconnect: reconnect.clone(),
                    };
                    crate::task::spawn_into(
                        &mut unit.tasks,
                        bridge::run(self.net.clone(), spec, stopped.clone()),
                    );
                }
            }
            Ok(Peers::Multicast { .. }) => {}
            Err(e) => tracing::error!(connector = %connector.name, "not started: {e}"),
        }
        unit
    }

    fn start_discovery(&self) -> Option<Unit> {
        let (connectors, discovery) = &self.discovering;
        if connectors.is_empty() && discovery.group.is_none() {
            return None;
        }
        let (mut unit, stopped) = Unit::new();
        let discovering: Vec<discovery::DiscoveringConnector> = connectors
            .iter()
            .filter_map(|c| match c.peers() {
                Ok(Peers::Multicast { group }) => Some(discovery::DiscoveringConnector {
                    group,
                    settings: Arc::new(c.settings()),
                }),
                _ => None,
            })
            .collect();
        if !discovering.is_empty() {
            crate::task::spawn_into(
                &mut unit.tasks,
                discovery::connect_discovered(
                    self.net.clone(),
                    discovery.clone(),
                    discovering,
                    self.broker_name.clone(),
                    local_server(self.bound),
                    stopped.clone(),
                ),
            );
        }
        if discovery.group.is_some() {
            crate::task::spawn_into(
                &mut unit.tasks,
                discovery::announce(
                    self.net.clone(),
                    discovery.clone(),
                    self.broker_name.clone(),
                    self.bound.port(),
                    stopped,
                ),
            );
        }
        Some(unit)
    }

    /// Makes `connectors` and `discovery` the running network: connectors that are gone
    /// or changed stop (each waiting up to `grace` for its bridges to disconnect), new and
    /// changed ones start, unchanged ones keep their bridges and connections.
    pub async fn apply(
        &mut self,
        connectors: &[ConnectorConfig],
        discovery: &DiscoveryConfig,
        grace: Duration,
    ) -> NetworkChanges {
        let mut changes = NetworkChanges::default();
        let wanted: BTreeMap<&str, &ConnectorConfig> = connectors
            .iter()
            .filter(|c| !is_multicast(c))
            .map(|c| (c.name.as_str(), c))
            .collect();
        let running: Vec<String> = self.statics.keys().cloned().collect();
        for name in running {
            let same = match (wanted.get(name.as_str()), self.statics.get(&name)) {
                (Some(new), Some((old, _))) => *new == old,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some((_, unit)) = self.statics.remove(&name) {
                unit.stop(grace).await;
            }
            if wanted.contains_key(name.as_str()) {
                changes.restarted.push(name);
            } else {
                changes.stopped.push(name);
            }
        }
        for (name, c) in wanted {
            if !self.statics.contains_key(name) {
                let unit = self.start_static(c);
                self.statics.insert(name.to_owned(), (c.clone(), unit));
                if !changes.restarted.iter().any(|r| r == name) {
                    changes.started.push(name.to_owned());
                }
            }
        }
        let multicast: Vec<ConnectorConfig> = connectors
            .iter()
            .filter(|c| is_multicast(c))
            .cloned()
            .collect();
        let discovering = (multicast, discovery.clone());
        if discovering != self.discovering {
            let was_running = self.discovery.is_some();
            if let Some(unit) = self.discovery.take() {
                unit.stop(grace).await;
            }
            self.discovering = discovering;
            self.discovery = self.start_discovery();
            let name = "discovery".to_owned();
            match (was_running, self.discovery.is_some()) {
                (true, true) => changes.restarted.push(name),
                (true, false) => changes.stopped.push(name),
                (false, true) => changes.started.push(name),
                (false, false) => {}
            }
        }
        changes
    }

    /// Stops everything, waiting up to `grace` in all for bridges to disconnect.
    pub async fn stop(self, grace: Duration) {
        let mut units: Vec<Unit> = self.statics.into_values().map(|(_, u)| u).collect();
        units.extend(self.discovery);
        stop_all(units, grace).await;
    }
}

/// What [`Network::start`] needs from the broker's configuration: its name, its
/// `[[connectors]]` and its `[discovery]` section.
#[derive(Clone, Copy, Debug)]
pub struct StartConfig<'a> {
    /// This broker's `core.broker_name`.
    pub broker_name: &'a str,
    /// The connectors to run.
    pub connectors: &'a [ConnectorConfig],
    /// The discovery group to announce on, and where `multicast://` connectors listen.
    pub discovery: &'a DiscoveryConfig,
}
