//! `[[connectors]]` and `[discovery]`: network connector settings, with ActiveMQ's names in
//! snake_case where they fit, and their validation.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::uri::{
    normalise_option, parse_java_bool, parse_millis, parse_multiplier, parse_query,
};
use crate::client::{ReconnectConfig, ServerAddr, UriErrorKind, parse_uri};
use crate::destination::{Destination, Kind, Pattern};
use crate::toml_config::{InvalidSetting, KeyPath};

/// ActiveMQ's default multicast discovery address (`multicast://default`).
pub const DEFAULT_DISCOVERY_ADDRESS: &str = "239.255.2.3:6155";

/// One network connector: bridges from this broker to other brokers.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Unique among this broker's connectors; names the bridges in logs.
    pub name: String,
    /// The brokers to bridge to:
    ///
    /// - `static:(tcp://host:port,tcp://host:port)?options`: one bridge to each listed
    ///   broker (as ActiveMQ's static discovery), reconnecting with
    ///   `initialReconnectDelay` (ms, default 1000), `maxReconnectDelay` (ms, default
    ///   30000), `useExponentialBackOff` (default true) and `backOffMultiplier` (default
    ///   2), read as failover URI options are (see [`crate::client::uri`]).
    ///   `static:tcp://host:port` names one broker.
    /// - `multicast://<group>`: one bridge to every broker that announces itself on the
    ///   discovery group `<group>` (see [`DiscoveryConfig`]).
    pub uri: String,
    /// Login on the remote brokers (also on this broker unless `local_login` is set).
    pub login: Option<String>,
    /// Passcode on the remote brokers (also on this broker unless `local_passcode` is set).
    pub passcode: Option<String>,
    /// Login for the connector's own connection to this broker.
    pub local_login: Option<String>,
    /// Passcode for the connector's own connection to this broker.
    pub local_passcode: Option<String>,
    /// Also bridge the other way over the same connections: mirror this broker's
    /// consumers on the remote broker and forward its messages here. The remote broker
    /// then needs no connector back.
    pub duplex: bool,
    /// Sets both `message_ttl` and `consumer_ttl` (ActiveMQ's `networkTTL`; default 1).
    pub network_ttl: Option<u32>,
    /// Hops a message may make through the network (default: `network_ttl`).
    pub message_ttl: Option<u32>,
    /// Hops a consumer's demand may travel (default: `network_ttl`).
    pub consumer_ttl: Option<u32>,
    /// Merge all remote consumers of a destination into one demand subscription without
    /// selector (true, ActiveMQ's default). When false, queue consumers get one demand
    /// subscription each, with their selector (what MCollective's directed requests and
    /// reply queues need), and topic consumers one per destination and selector.
    pub conduit_subscriptions: bool,
    /// Demand subscriptions get priority -5 minus their extra hops, below local
    /// consumers (priority 0), so local consumers are served first and nearer brokers
    /// before farther ones. When false they get priority 0.
    pub decrease_network_consumer_priority: bool,
    /// ActiveMQ's `dynamicOnly` concerns durable subscriptions, which Stampede does not
    /// have; accepted for familiarity, without effect.
    pub dynamic_only: bool,
    /// Destinations never bridged: `/queue/…` or `/topic/…` patterns with `*` and `>`.
    pub excluded_destinations: Vec<String>,
    /// When not empty, only destinations matching one of these patterns are bridged.
    pub dynamically_included_destinations: Vec<String>,
    /// Let queue messages that reached the remote broker through this bridge come back
    /// when no consumer is left there (ActiveMQ's `conditionalNetworkBridgeFilterFactory
    /// replayWhenNoConsumers`). Applies to the demand subscriptions this connector makes.
    pub replay_when_no_consumers: bool,
    /// Prefetch of demand subscriptions: messages forwarded and not yet confirmed. Queue
    /// messages beyond it wait; topic messages beyond it meet the broker's slow-consumer
    /// policy, as for any consumer that falls this far behind.
    pub prefetch: u32,
    /// Heart-beat interval of bridge connections in both directions (ms; 0 = none). A
    /// bridge whose peer is silent for twice this long is declared dead and reconnects.
    pub heartbeat_ms: u64,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            name: String::new(),
            uri: String::new(),
            login: None,
            passcode: None,
            local_login: None,
            local_passcode: None,
            duplex: false,
            network_ttl: None,
            message_ttl: None,
            consumer_ttl: None,
            conduit_subscriptions: true,
            decrease_network_consumer_priority: true,
            dynamic_only: false,
            excluded_destinations: Vec::new(),
            dynamically_included_destinations: Vec::new(),
            replay_when_no_consumers: false,
            prefetch: 1000,
            heartbeat_ms: 5_000,
        }
    }
}

/// Where a connector's peers come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Peers {
    /// A fixed list, one bridge each.
    Static {
        /// The brokers.
        servers: Vec<ServerAddr>,
        /// How each bridge reconnects.
        reconnect: ReconnectConfig,
    },
    /// Whatever announces itself on this discovery group.
    Multicast {
        /// The group name.
        group: String,
    },
}

/// A `/queue/…` or `/topic/…` pattern of `excluded_destinations` and
/// `dynamically_included_destinations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationFilter {
    kind: Kind,
    pattern: Pattern,
}

impl DestinationFilter {
    /// Parses `/queue/pattern` or `/topic/pattern`.
    pub fn parse(text: &str) -> Result<DestinationFilter, String> {
        let (kind, name) = if let Some(n) = text.strip_prefix("/queue/") {
            (Kind::Queue, n)
        } else if let Some(n) = text.strip_prefix("/topic/") {
            (Kind::Topic, n)
        } else {
            return Err(format!(
                "`{text}` must start with `/queue/` or `/topic/` (e.g. `/queue/>` for all queues)"
            ));
        };
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(format!("`{text}` has an empty name or segment"));
        }
        Ok(DestinationFilter {
            kind,
            pattern: Pattern::new(name),
        })
    }

    /// Whether `dest` (possibly itself a wildcard) matches.
    pub fn matches(&self, dest: &Destination) -> bool {
        dest.kind == self.kind && self.pattern.matches(&dest.name)
    }
}

/// The settings a bridge works with, resolved from a [`ConnectorConfig`].
#[derive(Clone, Debug)]
pub struct BridgeSettings {
    /// The connector's name.
    pub name: String,
    /// See [`ConnectorConfig::duplex`].
    pub duplex: bool,
    /// Hops a message may make.
    pub message_ttl: u32,
    /// Hops a consumer's demand may travel.
    pub consumer_ttl: u32,
    /// See [`ConnectorConfig::conduit_subscriptions`].
    pub conduit: bool,
    /// See [`ConnectorConfig::decrease_network_consumer_priority`].
    pub decrease_priority: bool,
    /// Never bridged.
    pub excluded: Vec<DestinationFilter>,
    /// If not empty, only these are bridged.
    pub included: Vec<DestinationFilter>,
    /// See [`ConnectorConfig::replay_when_no_consumers`].
    pub replay: bool,
    /// Demand subscription prefetch.
    pub prefetch: u32,
    /// Bridge heart-beats.
    pub heartbeat: Duration,
    /// Credentials on the remote broker.
    pub remote_login: Option<String>,
    /// Credentials on the remote broker.
    pub remote_passcode: Option<String>,
    /// Credentials on this broker.
    pub local_login: Option<String>,
    /// Credentials on this broker.
    pub local_passcode: Option<String>,
}

impl BridgeSettings {
    /// Whether consumers of `dest` are bridged.
    pub fn permits(&self, dest: &Destination) -> bool {
        if dest.kind.is_temporary()
            || dest
                .name
                .starts_with(crate::core::interbroker::ADVISORY_PREFIX)
        {
            return false;
        }
        if self.excluded.iter().any(|f| f.matches(dest)) {
            return false;
        }
        self.included.is_empty() || self.included.iter().any(|f| f.matches(dest))
    }
}

impl ConnectorConfig {
    /// Where the peers come from. Valid after [`ConnectorConfig::validate`].
    pub fn peers(&self) -> Result<Peers, String> {
        let uri = self.uri.trim();
        if let Some(group) = uri.strip_prefix("multicast://") {
            let group = group.trim_end_matches('/');
            check_group(group)?;
            return Ok(Peers::Multicast {
                group: group.to_owned(),
            });
        }
        let Some(rest) = uri.strip_prefix("static:") else {
            return Err(format!(
                "`{uri}`: expected `static:(tcp://host:port,…)` or `multicast://group`"
            ));
        };
        let rest = rest.trim();
        let (list, query) = if rest.starts_with('(') {
            let close = rest
                .rfind(')')
                .ok_or_else(|| format!("`{uri}`: unbalanced parentheses"))?;
            let after = rest[close + 1..].trim();
            let query = match after.strip_prefix('?') {
                Some(q) => q,
                None if after.is_empty() => "",
                None => return Err(format!("`{uri}`: unexpected `{after}` after the list")),
            };
            (&rest[..=close], query)
        } else {
            match rest.split_once(")?") {
                Some(_) => return Err(format!("`{uri}`: unbalanced parentheses")),
                None => (rest, ""),
            }
        };
        let parsed = parse_uri(&format!("failover:{list}")).map_err(|e| e.kind.to_string())?;
        let reconnect = static_options(query)?;
        Ok(Peers::Static {
            servers: parsed.servers.iter().cloned().collect(),
            reconnect,
        })
    }

    /// The settings its bridges use.
    pub fn settings(&self) -> BridgeSettings {
        let ttl = self.network_ttl.unwrap_or(1);
        BridgeSettings {
            name: self.name.clone(),
            duplex: self.duplex,
            message_ttl: self.message_ttl.unwrap_or(ttl),
            consumer_ttl: self.consumer_ttl.unwrap_or(ttl),
            conduit: self.conduit_subscriptions,
            decrease_priority: self.decrease_network_consumer_priority,
            excluded: filters(&self.excluded_destinations),
            included: filters(&self.dynamically_included_destinations),
            replay: self.replay_when_no_consumers,
            prefetch: self.prefetch,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            remote_login: self.login.clone(),
            remote_passcode: self.passcode.clone(),
            local_login: self.local_login.clone().or_else(|| self.login.clone()),
            local_passcode: self
                .local_passcode
                .clone()
                .or_else(|| self.passcode.clone()),
        }
    }

    /// Checks one connector; paths are relative to its table.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let at = |key: &str| KeyPath::root().key(key);
        if self.name.trim().is_empty() {
            return Err(InvalidSetting::new(
                at("name"),
                "every connector needs a name",
            ));
        }
        if self.uri.trim().is_empty() {
            return Err(InvalidSetting::new(
                at("uri"),
                "every connector needs a uri (`static:(tcp://host:port)` or `multicast://group`)",
            ));
        }
        self.peers()
            .map_err(|message| InvalidSetting::new(at("uri"), message))?;
        for (key, value) in [
            ("network_ttl", self.network_ttl),
            ("message_ttl", self.message_ttl),
            ("consumer_ttl", self.consumer_ttl),
        ] {
            if value == Some(0) {
                return Err(InvalidSetting::new(
                    at(key),
                    "must be at least 1 (one hop: the neighbouring broker)",
                ));
            }
        }
        if self.prefetch == 0 {
            return Err(InvalidSetting::new(
                at("prefetch"),
                "must be greater than zero",
            ));
        }
        for key in ["excluded_destinations", "dynamically_included_destinations"] {
            let list = if key == "excluded_destinations" {
                &self.excluded_destinations
            } else {
                &self.dynamically_included_destinations
            };
            for (i, text) in list.iter().enumerate() {
                DestinationFilter::parse(text)
                    .map_err(|message| InvalidSetting::new(at(key).index(i), message))?;
            }
        }
        if self.login.is_none() && self.passcode.is_some() {
            return Err(InvalidSetting::new(
                at("passcode"),
                "a passcode needs a login",
            ));
        }
        if self.local_login.is_none() && self.local_passcode.is_some() {
            return Err(InvalidSetting::new(
                at("local_passcode"),
                "a passcode needs a login",
            ));
        }
        Ok(())
    }
}

/// Checks every connector, and that names are unique; paths are relative to the document.
pub fn validate_connectors(connectors: &[ConnectorConfig]) -> Result<(), InvalidSetting> {
    let mut names = BTreeSet::new();
    for (i, c) in connectors.iter().enumerate() {
        let at = KeyPath::root().key("connectors").index(i);
        c.validate().map_err(|e| InvalidSetting {
            path: at.join(&e.path),
            message: e.message,
        })?;
        if !names.insert(c.name.as_str()) {
            return Err(InvalidSetting::new(
                at.key("name"),
                format!("connector name `{}` is used twice", c.name),
            ));
        }
    }
    Ok(())
}

fn filters(texts: &[String]) -> Vec<DestinationFilter> {
    texts
        .iter()
        .filter_map(|t| DestinationFilter::parse(t).ok())
        .collect()
}

fn check_group(group: &str) -> Result<(), String> {
    let ok = !group.is_empty()
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "discovery group `{group}` must be non-empty letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// The options of a `static:(…)?…` URI: ActiveMQ's network connector defaults
/// ([`ReconnectConfig::activemq_network`]) changed by `initialReconnectDelay`,
/// `maxReconnectDelay`, `useExponentialBackOff` and `backOffMultiplier`, read with the
/// option rules every ActiveMQ URI of the crate shares (see [`crate::client::uri`]).
fn static_options(query: &str) -> Result<ReconnectConfig, String> {
    let mut r = ReconnectConfig::activemq_network();
    let options = parse_query(query).map_err(|kind| match kind {
        UriErrorKind::OptionWithoutValue { option } => {
            format!("static option `{option}` has no value")
        }
        UriErrorKind::DuplicateOption { option } => {
            format!("static option `{option}` is given twice")
        }
        other => format!("static options: {other}"),
    })?;
    for (name, value) in options {
        let invalid = |what: &str| format!("static option `{name}`: `{value}` is not {what}");
        match normalise_option(&name).as_str() {
            "initialReconnectDelay" => {
                r.initial_delay = parse_millis(&value).ok_or_else(|| invalid("milliseconds"))?;
            }
            "maxReconnectDelay" => {
                r.max_delay = parse_millis(&value).ok_or_else(|| invalid("milliseconds"))?;
            }
            "useExponentialBackOff" => {
                r.exponential = parse_java_bool(&value).ok_or_else(|| invalid("a boolean"))?;
            }
            "backOffMultiplier" => {
                r.multiplier =
                    parse_multiplier(&value).ok_or_else(|| invalid("a number of at least 1"))?;
            }
            _ => {
                return Err(format!(
                    "static option `{name}` is unknown (known: initialReconnectDelay, \
                     maxReconnectDelay, useExponentialBackOff, backOffMultiplier)"
                ));
            }
        }
    }
    if r.max_delay < r.initial_delay {
        r.max_delay = r.initial_delay;
    }
    Ok(r)
}

/// `[discovery]`: announcing this broker on a discovery group, so that other brokers'
/// `multicast://<group>` connectors find it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The group to announce on; none: this broker does not announce itself.
    pub group: Option<String>,
    /// The UDP multicast address and port announcements go to (and connectors listen on).
    pub address: String,
    /// Milliseconds between announcements.
    pub interval_ms: u64,
    /// The `host:port` other brokers should connect to. Default: the sender address of
    /// the announcement with the port of the first `server.listen` address.
    pub advertise: Option<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            group: None,
            address: DEFAULT_DISCOVERY_ADDRESS.to_owned(),
            interval_ms: 1_000,
            advertise: None,
        }
    }
}

impl DiscoveryConfig {
    /// The multicast address as a socket address.
    pub fn socket_addr(&self) -> Result<SocketAddrV4, String> {
        let addr: SocketAddrV4 = self
            .address
            .parse()
            .map_err(|_| format!("`{}` is not an IPv4 `address:port`", self.address))?;
        if !addr.ip().is_multicast() && *addr.ip() != Ipv4Addr::BROADCAST {
            return Err(format!(
                "`{}` is not a multicast address (224.0.0.0/4) or 255.255.255.255",
                self.address
            ));
        }
        Ok(addr)
    }

    /// Checks the table; paths are relative to it.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let at = |key: &str| KeyPath::root().key(key);
        if let Some(group) = &self.group {
            check_group(group).map_err(|m| InvalidSetting::new(at("group"), m))?;
        }
        self.socket_addr()
            .map_err(|m| InvalidSetting::new(at("address"), m))?;
        if self.interval_ms == 0 {
            return Err(InvalidSetting::new(
                at("interval_ms"),
                "must be greater than zero",
            ));
        }
        if let Some(a) = &self.advertise {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(InvalidSetting::new(
                    at("advertise"),
                    format!("`{a}` is not `host:port`"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(uri: &str) -> ConnectorConfig {
        ConnectorConfig {
            name: "n".into(),
            uri: uri.into(),
            ..ConnectorConfig::default()
        }
    }

    #[test]
    fn static_uris_list_one_bridge_per_broker_with_activemq_backoff() {
        let Peers::Static { servers, reconnect } = connector(
            "static:(tcp://b2:61613,tcp://b3:61614)?maxReconnectDelay=5000&backOffMultiplier=3",
        )
        .peers()
        .unwrap() else {
            panic!("not static");
        };
        assert_eq!(servers.len(), 2);
        assert_eq!((servers[1].host.as_str(), servers[1].port), ("b3", 61614));
        assert_eq!(reconnect.initial_delay, Duration::from_secs(1));
        assert_eq!(reconnect.max_delay, Duration::from_secs(5));
        assert_eq!(reconnect.multiplier.get(), 3.0);
        let Peers::Static { servers, reconnect } =
            connector("static:tcp://b2:61613").peers().unwrap()
        else {
            panic!("not static");
        };
        assert_eq!(servers.len(), 1);
        assert_eq!(reconnect.max_delay, Duration::from_secs(30));
        assert_eq!(
            connector("multicast://default").peers(),
            Ok(Peers::Multicast {
                group: "default".into()
            })
        );
        for bad in [
            "tcp://b2:61613",
            "static:(tcp://b2)",
            "static:(tcp://b2:1)?bogus=1",
            "static:(tcp://b2:1)?initialReconnectDelay=x",
            "static:(tcp://b2:1",
            "multicast://",
            "multicast://a b",
        ] {
            assert!(connector(bad).peers().is_err(), "{bad}");
        }
    }

    fn static_reconnect(uri: &str) -> Result<ReconnectConfig, String> {
        match connector(uri).peers()? {
            Peers::Static { reconnect, .. } => Ok(reconnect),
            Peers::Multicast { .. } => panic!("not static"),
        }
    }

    #[test]
    fn static_options_follow_the_failover_uri_rules() {
        // Booleans in any letter case, names with either first letter, percent-decoded
        // values: the same as failover URIs, which share the option functions.
        let r = static_reconnect(
            "static:(tcp://b:1)?UseExponentialBackOff=FALSE&initialReconnectDelay=%32%30",
        )
        .unwrap();
        assert!(!r.exponential);
        assert_eq!(r.initial_delay, Duration::from_millis(20));
        let failover =
            crate::client::parse_uri("failover:(tcp://b:1)?UseExponentialBackOff=FALSE").unwrap();
        assert!(!failover.reconnect.exponential);
        // Anything else than true/false is refused by both, not read as false.
        assert_eq!(
            static_reconnect("static:(tcp://b:1)?useExponentialBackOff=yes"),
            Err("static option `useExponentialBackOff`: `yes` is not a boolean".into())
        );
        assert!(
            crate::client::parse_uri("failover:(tcp://b:1)?useExponentialBackOff=yes").is_err()
        );
        // An option given twice is refused by both.
        assert_eq!(
            static_reconnect("static:(tcp://b:1)?maxReconnectDelay=1&maxReconnectDelay=2"),
            Err("static option `maxReconnectDelay` is given twice".into())
        );
        assert!(
            crate::client::parse_uri("failover:(tcp://b:1)?randomize=true&randomize=false")
                .is_err()
        );
        assert_eq!(
            static_reconnect("static:(tcp://b:1)?maxReconnectDelay"),
            Err("static option `maxReconnectDelay` has no value".into())
        );
        // Defaults: ActiveMQ's network connector ones, written once.
        assert_eq!(
            static_reconnect("static:(tcp://b:1)").unwrap(),
            ReconnectConfig::activemq_network()
        );
    }

    #[test]
    fn ttls_and_filters_resolve() {
        let mut c = connector("static:(tcp://b:1)");
        c.network_ttl = Some(3);
        c.consumer_ttl = Some(2);
        c.excluded_destinations = vec!["/queue/>".into()];
        c.dynamically_included_destinations = vec!["/topic/mcollective.>".into()];
        let s = c.settings();
        assert_eq!((s.message_ttl, s.consumer_ttl), (3, 2));
        let d = |t: &str| Destination::parse(t).unwrap();
        assert!(s.permits(&d("/topic/mcollective.discovery.agent")));
        assert!(s.permits(&d("/topic/mcollective.>")));
        assert!(!s.permits(&d("/topic/other")));
        assert!(!s.permits(&d("/queue/mcollective.nodes")));
        assert!(!s.permits(&d("/temp-queue/x")));
        assert!(!s.permits(&d("/topic/ActiveMQ.Advisory.Consumer.Queue.x")));
        assert_eq!(connector("static:(tcp://b:1)").settings().message_ttl, 1);
    }
}
