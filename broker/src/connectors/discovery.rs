//! Broker discovery over UDP multicast, as ActiveMQ's `multicast://` discovery does:
//! brokers with a `[discovery] group` announce themselves every `interval_ms` on the
//! discovery address, and connectors with `uri = "multicast://<group>"` bridge to every
//! broker they hear on that group.
//!
//! An announcement is one datagram of text:
//! `stampede-discovery 1 group=<group> broker=<name> port=<port>[ host=<host>]`. Without
//! `host`, the listener connects to the datagram's sender address.
//!
//! A discovered broker keeps its bridge for the life of the connector (the bridge
//! reconnects with backoff when the broker goes away); a broker that announces a new
//! address gets a new bridge. As with static URIs, a `duplex` connector carries both
//! directions, so the discovered broker must not also bridge back (for example: spokes
//! with duplex `multicast://` connectors, and a hub that only announces itself).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::bridge::{self, BridgeSpec};
use super::config::{BridgeSettings, DiscoveryConfig};
use crate::client::{ReconnectConfig, ServerAddr};
use crate::net::SharedNet;

/// First word of every announcement.
const MAGIC: &str = "stampede-discovery";
/// Version of the announcement format.
const FORMAT_VERSION: &str = "1";
/// Largest announcement read.
const DATAGRAM_BYTES_MAX: usize = 512;
/// Wait before retrying a UDP bind that failed.
const BIND_RETRY: Duration = Duration::from_secs(5);
/// Distinct brokers one discovery listener bridges to, at most.
const DISCOVERED_BROKERS_MAX: usize = 1024;

/// One broker's announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// Discovery group.
    pub group: String,
    /// Broker name.
    pub broker: String,
    /// STOMP port.
    pub port: u16,
    /// Host to connect to, if not the sender's address.
    pub host: Option<String>,
}

impl Announcement {
    /// The datagram text.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{MAGIC} {FORMAT_VERSION} group={} broker={} port={}",
            self.group, self.broker, self.port
        );
        if let Some(h) = &self.host {
            s.push_str(&format!(" host={h}"));
        }
        s
    }

    /// Parses a datagram; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Announcement> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut words = text.split_ascii_whitespace();
        if words.next()? != MAGIC || words.next()? != FORMAT_VERSION {
            return None;
        }
        let (mut group, mut broker, mut port, mut host) = (None, None, None, None);
        for w in words {
            let (k, v) = w.split_once('=')?;
            match k {
                "group" => group = Some(v.to_owned()),
                "broker" => broker = Some(v.to_owned()),
                "port" => port = v.parse::<u16>().ok(),
                "host" => host = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(Announcement {
            group: group?,
            broker: broker?,
            port: port.filter(|p| *p > 0)?,
            host,
        })
    }

    /// Where to connect, given the datagram's sender.
    pub fn server(&self, from: SocketAddr) -> ServerAddr {
        match &self.host {
            Some(h) => ServerAddr::new(h.clone(), self.port),
            None => ServerAddr::new(from.ip().to_string(), self.port),
        }
    }
}

/// Announces this broker on `config.group` every `config.interval_ms` until `stop`.
pub async fn announce(
    net: SharedNet,
    config: DiscoveryConfig,
    broker: String,
    listen_port: u16,
    mut stop: watch::Receiver<bool>,
) {
    let (Some(group), Ok(target)) = (config.group.clone(), config.socket_addr()) else {
        return;
    };
    let (host, port) = match config.advertise.as_deref().and_then(|a| a.rsplit_once(':')) {
        Some((h, p)) => (Some(h.to_owned()), p.parse().unwrap_or(listen_port)),
        None => (None, listen_port),
    };
    let text = Announcement {
        group,
        broker,
        port,
        host,
    }
    .encode();
    let interval = Duration::from_millis(config.interval_ms.max(1));
    let socket = loop {
        match net.bind_udp("0.0.0.0:0", None).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!("discovery: cannot bind a UDP socket to announce on: {e}");
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(BIND_RETRY) => {}
                }
            }
        }
    };
    loop {
        if let Err(e) = socket.send_to(text.as_bytes(), target.into()).await {
            tracing::debug!("discovery: announcement not sent: {e}");
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// A `multicast://` connector waiting for brokers to bridge to.
#[derive(Clone, Debug)]
pub struct DiscoveringConnector {
    /// Its group.
    pub group: String,
    /// Its bridges' settings.
    pub settings: Arc<BridgeSettings>,
}

/// Listens on the discovery address and starts a bridge for each connector to every
/// broker announced on its group (except this one), until `stop`.
pub async fn connect_discovered(
    net: SharedNet,
    config: DiscoveryConfig,
    connectors: Vec<DiscoveringConnector>,
    local_name: String,
    local: ServerAddr,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(address) = config.socket_addr() else {
        return;
    };
    let group = address.ip().is_multicast().then_some(*address.ip());
    let bind = format!("0.0.0.0:{}", address.port());
    let socket = loop {
        match net.bind_udp(&bind, group).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!("discovery: cannot listen on {bind}: {e}");
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(BIND_RETRY) => {}
                }
            }
        }
    };
    let mut bridges = JoinSet::new();
    // (connector index, broker name) → its address and the bridge's stop switch.
    let mut known: BTreeMap<(usize, String), (ServerAddr, watch::Sender<bool>)> = BTreeMap::new();
    let mut buf = [0u8; DATAGRAM_BYTES_MAX];
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(_) = bridges.join_next(), if !bridges.is_empty() => continue,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, from) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("discovery: receive failed: {e}");
                continue;
            }
        };
        let Some(a) = Announcement::decode(&buf[..n]) else {
            continue;
        };
        if a.broker == local_name {
            continue;
        }
        let server = a.server(from);
        for (index, c) in connectors.iter().enumerate() {
            if c.group != a.group {
                continue;
            }
            let key = (index, a.broker.clone());
            if known.get(&key).is_some_and(|(s, _)| *s == server) {
                continue;
            }
            if !known.contains_key(&key) && known.len() >= DISCOVERED_BROKERS_MAX {
                tracing::warn!(broker = %a.broker, "discovery: too many brokers, ignored");
                continue;
            }
            tracing::info!(
                connector = %c.settings.name,
                broker = %a.broker,
                %server,
                "discovery: bridging to announced broker"
            );
            let (stop_tx, stop_rx) = watch::channel(false);
            if let Some((_, old)) = known.insert(key, (server.clone(), stop_tx)) {
                let _ = old.send(true);
            }
            let spec = BridgeSpec {
                settings: c.settings.clone(),
                local_name: local_name.clone(),
                local: local.clone(),
                remote: server.clone(),
                reconnect: ReconnectConfig::activemq_network(),
            };
            crate::task::spawn_into(&mut bridges, bridge::run(net.clone(), spec, stop_rx));
        }
    }
    for (_, (_, stop)) in known {
        let _ = stop.send(true);
    }
    while bridges.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_garbage_is_ignored() {
        let a = Announcement {
            group: "default".into(),
            broker: "b1".into(),
            port: 61613,
            host: None,
        };
        assert_eq!(
            a.encode(),
            "stampede-discovery 1 group=default broker=b1 port=61613"
        );
        assert_eq!(Announcement::decode(a.encode().as_bytes()), Some(a.clone()));
        let from: SocketAddr = "10.0.0.7:40000".parse().unwrap();
        assert_eq!(a.server(from).to_string(), "10.0.0.7:61613");
        let b = Announcement {
            host: Some("broker-2".into()),
            ..a
        };
        assert_eq!(Announcement::decode(b.encode().as_bytes()), Some(b.clone()));
        assert_eq!(b.server(from).to_string(), "broker-2:61613");
        for bad in [
            &b""[..],
            b"hello",
            b"stampede-discovery 2 group=a broker=b port=1",
            b"stampede-discovery 1 group=a port=1",
            b"stampede-discovery 1 group=a broker=b port=0",
            b"stampede-discovery 1 group=a broker=b port=1 junk",
            b"\xff\xfe",
        ] {
            assert_eq!(Announcement::decode(bad), None, "{bad:?}");
        }
    }
}
