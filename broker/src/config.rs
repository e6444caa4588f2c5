//! The broker's TOML configuration file: [`BrokerConfig`], assembled from each part's
//! own section.
//!
//! Every table is optional and every key has a default, so an empty file is a valid
//! configuration; unknown keys are errors. See `broker.example.toml` for every key.
//!
//! Each part validates its own section next to its type ([`CoreConfig::validate`],
//! [`SecurityConfig::validate`], [`validate_connectors`], [`DiscoveryConfig::validate`]);
//! this module validates `[server]` and places the errors of the others under their
//! table. Errors name file, line and key path through the TOML toolkit in
//! [`crate::toml_config`], whose items are re-exported here for existing users.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::connectors::{ConnectorConfig, DiscoveryConfig, validate_connectors};
use crate::core::CoreConfig;
use crate::security::SecurityConfig;
use crate::store::StoreConfig;
use crate::tls::TlsConfig;
use crate::toml_config::positive;
pub use crate::toml_config::{
    ConfigError, InvalidSetting, KeyPath, KeySegment, load_toml, parse_toml,
};

/// Settings of the tokio server shell.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to listen on (`host:port`).
    pub listen: Vec<String>,
    /// A connection whose socket accepts no bytes for this long is closed.
    pub write_timeout_ms: u64,
    /// Events buffered towards the core task before connection readers wait.
    pub inbox_events_max: usize,
    /// Connections the kernel queues for the STOMP and Redis listeners before the server
    /// accepts them (`listen(2)`'s backlog, capped by `net.core.somaxconn`). When a
    /// failover storm outruns it, the SYNs that do not fit are dropped and those clients
    /// retry after 1 s. ActiveMQ's transport `backlog` defaults to 5000, RabbitMQ's
    /// `tcp_listen_options.backlog` to 128, std's `TcpListener::bind` uses 128.
    pub listen_backlog_connections: u32,
    /// `[server.tls]`: the certificate for `ssl://` listeners.
    pub tls: TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["127.0.0.1:61613".to_owned()],
            write_timeout_ms: 30_000,
            inbox_events_max: 4_096,
            listen_backlog_connections: 4_096,
            tls: TlsConfig::default(),
        }
    }
}

/// `[metrics]`: where the Prometheus endpoint listens, if anywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address (`host:port`) of the HTTP endpoint serving `GET /metrics`; none by default.
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// An empty `listen` is a mistake rather than "off" (leave the key out for that).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        match &self.listen {
            Some(addr) if addr.trim().is_empty() => Err(InvalidSetting::new(
                KeyPath::root().key("listen"),
                "must be host:port (leave the key out to serve no metrics)".to_owned(),
            )),
            _ => Ok(()),
        }
    }
}

/// `[redis]`: Redis pub/sub (RESP2) listeners, for fleets on MCollective's Redis
/// connector. Channels are topics: `PUBLISH c` is a SEND to `/topic/c`, `SUBSCRIBE c` a
/// subscription to it, so Redis and STOMP clients meet. See `server::redis`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Addresses (`host:port`) to accept Redis connections on; none by default.
    pub listen: Vec<String>,
    /// The user an `AUTH password` (no user name, Redis before 6) logs in as; `AUTH user
    /// password` names its own. Empty: `AUTH password` is refused when users exist.
    pub default_user: String,
}

impl RedisConfig {
    /// Listen entries must not be empty.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (i, addr) in self.listen.iter().enumerate() {
            if addr.trim().is_empty() {
                return Err(InvalidSetting::new(
                    KeyPath::root().key("listen").index(i),
                    "must be host:port".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `[server]`: listeners and socket behaviour.
    pub server: ServerConfig,
    /// `[core]`: broker name, limits, heart-beats, policies.
    pub core: CoreConfig,
    /// `[security]`: users, groups, authorization entries.
    pub security: SecurityConfig,
    /// `[[connectors]]`: network connectors to other brokers.
    pub connectors: Vec<ConnectorConfig>,
    /// `[discovery]`: announcing this broker to `multicast://` connectors.
    pub discovery: DiscoveryConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[redis]`: Redis pub/sub listeners.
    pub redis: RedisConfig,
    /// `[store]`: the message store for persistent messages (off without `dir`).
    pub store: StoreConfig,
}

impl BrokerConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        load_toml(path, BrokerConfig::validate)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<BrokerConfig, ConfigError> {
        parse_toml(text, file, BrokerConfig::validate)
    }

    /// Checks the settings that deserialization accepts but the broker cannot use. The
    /// configuration loader calls this; call it too for configurations built in code.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        validate_server(&self.server).map_err(|e| e.within("server"))?;
        self.core.validate().map_err(|e| e.within("core"))?;
        self.security.validate().map_err(|e| e.within("security"))?;
        validate_permission_vhosts(self).map_err(|e| e.within("security"))?;
        validate_connectors(&self.connectors)?;
        self.discovery
            .validate()
            .map_err(|e| e.within("discovery"))?;
        self.metrics.validate().map_err(|e| e.within("metrics"))?;
        self.redis.validate().map_err(|e| e.within("redis"))?;
        self.store.validate().map_err(|e| e.within("store"))?;
        self.store.validate_group().map_err(|e| e.within("store"))
    }
}

/// Each `[[security.permissions]]` entry names a RabbitMQ-convention vhost of
/// `[[core.vhosts]]` (ActiveMQ-convention vhosts keep `[[security.authorization]]`).
/// Paths are relative to `[security]`.
fn validate_permission_vhosts(config: &BrokerConfig) -> Result<(), InvalidSetting> {
    use crate::vhost::Convention;
    for (i, entry) in config.security.permissions.iter().enumerate() {
        let at = || KeyPath::root().key("permissions").index(i).key("vhost");
        match config.core.vhosts.iter().find(|v| v.name == entry.vhost) {
            None => {
                let names: Vec<&str> = config
                    .core
                    .vhosts
                    .iter()
                    .filter(|v| v.convention == Convention::RabbitMq)
                    .map(|v| v.name.as_str())
                    .collect();
                return Err(InvalidSetting::new(
                    at(),
                    format!(
                        "`{}` is not one of [[core.vhosts]] (RabbitMQ-convention vhosts: {})",
                        entry.vhost,
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            }
            Some(v) if v.convention != Convention::RabbitMq => {
                return Err(InvalidSetting::new(
                    at(),
                    format!(
                        "vhost `{}` follows the activemq convention; permissions govern \
                         rabbitmq-convention vhosts (use [[security.authorization]] there)",
                        entry.vhost
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `[server]`: usable listen addresses and non-zero sizes.
fn validate_server(server: &ServerConfig) -> Result<(), InvalidSetting> {
    let listen = KeyPath::root().key("listen");
    if server.listen.is_empty() {
        return Err(InvalidSetting::new(
            listen,
            "at least one listen address is needed",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, entry) in server.listen.iter().enumerate() {
        let at = |message| InvalidSetting::new(listen.index(i), message);
        let (transport, address) = crate::tls::parse_listen(entry).map_err(at)?;
        check_listen(address).map_err(at)?;
        if transport == crate::tls::Transport::Tls
            && (server.tls.cert_file.is_empty() || server.tls.key_file.is_empty())
        {
            return Err(at(format!(
                "`{entry}` is a TLS listener: set [server.tls] cert_file and key_file"
            )));
        }
        let address = entry;
        if !seen.insert(address.as_str()) {
            return Err(InvalidSetting::new(
                listen.index(i),
                format!("`{address}` is listed twice"),
            ));
        }
    }
    positive(server.write_timeout_ms, "write_timeout_ms")?;
    positive(server.inbox_events_max, "inbox_events_max")?;
    if server.tls.handshake_timeout_ms == 0 {
        return Err(InvalidSetting::new(
            KeyPath::root().key("tls").key("handshake_timeout_ms"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// A listen address: `host:port`, with an IPv6 host in brackets (`[::1]:61613`).
fn check_listen(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` is not `host:port`"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "`{address}`: the port must be a number from 0 to 65535"
        ));
    }
    if host.is_empty() {
        return Err(format!(
            "`{address}`: the host is missing (0.0.0.0 or [::] listens on all interfaces)"
        ));
    }
    if let Some(bracketed) = host.strip_prefix('[') {
        return match bracketed.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(format!(
                "`{address}`: `{host}` is not a bracketed IPv6 address"
            )),
        };
    }
    if host.contains(':') {
        return Err(format!(
            "`{address}`: put an IPv6 address in brackets, e.g. `[::1]:61613`"
        ));
    }
    let name_like = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !name_like {
        return Err(format!(
            "`{address}`: `{host}` is neither an IP address nor a host name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Limits, SlowConsumerPolicy};

    fn error(text: &str) -> ConfigError {
        BrokerConfig::parse(text, "broker.toml").unwrap_err()
    }

    fn at(text: &str) -> (usize, String) {
        let e = error(text);
        (e.line, e.key)
    }

    #[test]
    fn empty_text_gives_defaults() {
        assert_eq!(
            BrokerConfig::parse("", "x").unwrap(),
            BrokerConfig::default()
        );
        assert_eq!(
            BrokerConfig::parse("# nothing\n\n", "x").unwrap(),
            BrokerConfig::default()
        );
        BrokerConfig::default().validate().unwrap();
    }

    #[test]
    fn values_are_read() {
        let config = BrokerConfig::parse(
            "[server]\nlisten = [\"0.0.0.0:61613\", \"[::1]:61614\", \"localhost:0\"]\n\
             [core]\nbroker_name = \"b1\"\nslow_consumer_policy = \"drop-topic-messages\"\n\
             [core.limits]\nframe_bytes_max = 4096\n[core.heartbeat]\ngrace_factor = 2\n",
            "x",
        )
        .unwrap();
        assert_eq!(config.server.listen.len(), 3);
        assert_eq!(config.core.broker_name, "b1");
        assert_eq!(
            config.core.slow_consumer_policy,
            SlowConsumerPolicy::DropTopicMessages
        );
        assert_eq!(config.core.limits.frame_bytes_max, 4096);
        assert_eq!(
            config.core.limits.body_bytes_max,
            Limits::default().body_bytes_max
        );
        assert_eq!(config.core.heartbeat.grace_factor, 2.0);
    }

    #[test]
    fn display_names_file_line_and_key() {
        let e = error("[core.limits]\nframe_bytes_max = 0\n");
        assert_eq!(
            e.to_string(),
            "broker.toml:2: core.limits.frame_bytes_max: must be greater than zero"
        );
        let e = ConfigError {
            file: "f".into(),
            line: 0,
            key: String::new(),
            message: "gone".into(),
        };
        assert_eq!(e.to_string(), "f: gone");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = error("[core]\nbroker_name = 'x\nfoo = 1\n");
        assert_eq!((e.line, e.key.as_str()), (2, "core.broker_name"));
        let e = error("[core]\nbroker_name = 'x'\n[core.limits]\nframe_bytes_max = 12x\n");
        assert_eq!((e.line, e.key.as_str()), (4, "core.limits.frame_bytes_max"));
        let e = error("[core]\nbroker_name = 'x'\nbroker_name = 'y'\n");
        assert_eq!((e.line, e.key.as_str()), (3, "core"));
        assert_eq!(e.message, "duplicate key `broker_name`");
        let e = error("[core.limits]\nx y = 3\n");
        assert_eq!((e.line, e.key.as_str()), (2, "core.limits"));
        let e = error("[core\n");
        assert_eq!(e.line, 1);
        let e = error("[[security.users]]\nname = 'a'\npassword = 'b'\nx y\n");
        assert_eq!((e.line, e.key.as_str()), (4, "security.users[0]"));
        let e = error("[[security.users]]\nname = 'a'\n[[security.users]]\nname = 'b'\nx y\n");
        assert_eq!((e.line, e.key.as_str()), (5, "security.users[1]"));
    }

    #[test]
    fn deserialization_errors_are_located() {
        assert_eq!(
            at("[core]\nbroker_name = 'x'\n[core.limits]\nframe_bytes_max = 1\nbogus = 2\n"),
            (5, "core.limits.bogus".into())
        );
        assert_eq!(at("bogus = 1"), (1, "bogus".into()));
        assert_eq!(
            at("\n[core.limits]\nframe_bytes_max = 'big'\n"),
            (3, "core.limits.frame_bytes_max".into())
        );
        assert_eq!(
            at("[server]\nwrite_timeout_ms = -1\n"),
            (2, "server.write_timeout_ms".into())
        );
        assert_eq!(
            at("[core]\nslow_consumer_policy = 'panic'\n"),
            (2, "core.slow_consumer_policy".into())
        );
        assert_eq!(
            at(
                "[[security.users]]\nname = 'a'\npassword = 'b'\n\n[[security.users]]\nname = 'c'\npassword = 'd'\ngroups = ['x', 3]\n"
            ),
            (8, "security.users[1].groups[1]".into())
        );
        assert_eq!(
            at("[[security.users]]\nname = 'a'\n"),
            (1, "security.users[0]".into())
        );
        let e = error("[core]\nslow_consumer_policy = 'panic'\n");
        assert!(e.message.contains("disconnect"), "{e}");
    }

    #[test]
    fn semantic_errors_are_located() {
        assert_eq!(at("[server]\nlisten = []\n"), (2, "server.listen".into()));
        assert_eq!(
            at("[server]\nlisten = [\n  '127.0.0.1:61613',\n  'nohost',\n]\n"),
            (4, "server.listen[1]".into())
        );
        assert_eq!(
            at("[server]\ninbox_events_max = 0\n"),
            (2, "server.inbox_events_max".into())
        );
        assert_eq!(
            at("[core]\n\nbroker_name = ''\n"),
            (3, "core.broker_name".into())
        );
        assert_eq!(
            at("core.broker_name = 'a b'\n"),
            (1, "core.broker_name".into())
        );
        assert_eq!(
            at("[core]\nbroker_name = 'a:b'\n"),
            (2, "core.broker_name".into())
        );
        assert_eq!(
            at("[core.heartbeat]\ngrace_factor = 0.5\n"),
            (2, "core.heartbeat.grace_factor".into())
        );
        assert_eq!(
            at("[core.heartbeat]\ninterval_ms_min = 5000\ninterval_ms_max = 4000\n"),
            (3, "core.heartbeat.interval_ms_max".into())
        );
        assert_eq!(
            at("[metrics]\nlisten = \" \"\n"),
            (2, "metrics.listen".into())
        );
        assert_eq!(
            at("[server]\nlisten = [\"ssl://127.0.0.1:61614\"]\n"),
            (2, "server.listen[0]".into())
        );
        assert_eq!(
            at("[server]\nlisten = [\"amqp://127.0.0.1:5672\"]\n"),
            (2, "server.listen[0]".into())
        );
        assert_eq!(
            at("[core.limits]\nunauthenticated_connections_per_address_max = 0\n"),
            (
                2,
                "core.limits.unauthenticated_connections_per_address_max".into()
            )
        );
        assert_eq!(
            at("[core.heartbeat]\ngrace_factor = nan\n"),
            (2, "core.heartbeat.grace_factor".into())
        );
        assert_eq!(at("[store]\ndir = ' '\n"), (2, "store.dir".into()));
        assert_eq!(
            at("[store]\ngroup_window_ms = 0\n"),
            (2, "store.group_window_ms".into())
        );
        assert_eq!(
            at("[store]\nsegment_bytes_max = 10\n"),
            (2, "store.segment_bytes_max".into())
        );
        assert_eq!(at("[store]\nsync = 'never'\n"), (2, "store.sync".into()));
        assert_eq!(
            at("[store]\nfull_policy = 'drop'\n"),
            (2, "store.full_policy".into())
        );
        assert_eq!(
            at("[core]\ndead_letter_queue = ''\n"),
            (2, "core.dead_letter_queue".into())
        );
        assert_eq!(
            at("[core.limits]\nconnect_timeout_ms = 0\n"),
            (2, "core.limits.connect_timeout_ms".into())
        );
        assert_eq!(
            at(
                "[[security.users]]\nname = 'a'\npassword = 'p'\n[[security.users]]\nname = 'a'\npassword = 'q'\n"
            ),
            (5, "security.users[1].name".into())
        );
        assert_eq!(
            at("[security]\nusers = [\n  { name = 'a', password = 'p', groups = [''] },\n]\n"),
            (3, "security.users[0].groups[0]".into())
        );
        assert_eq!(
            at(
                "[[security.authorization]]\nqueue = 'q'\n\n[[security.authorization]]\nread = ['g']\n"
            ),
            (4, "security.authorization[1]".into())
        );
    }

    #[test]
    fn zero_is_allowed_where_it_means_something() {
        let config = BrokerConfig::parse(
            "[core.limits]\ntransactions_per_connection_max = 0\nredeliveries_max = 0\n",
            "x",
        )
        .unwrap();
        assert_eq!(config.core.limits.transactions_per_connection_max, 0);
    }

    #[test]
    fn listen_addresses() {
        for good in [
            "127.0.0.1:61613",
            "0.0.0.0:0",
            "[::]:61613",
            "[::1]:1",
            "broker-1.example:61613",
        ] {
            assert_eq!(check_listen(good), Ok(()), "{good}");
        }
        for bad in [
            "61613",
            ":61613",
            "host:",
            "host:70000",
            "::1:61613",
            "[::1:61613",
            "[x]:1",
            "a b:1",
            "h:p",
        ] {
            assert!(check_listen(bad).is_err(), "{bad}");
        }
        assert_eq!(
            at("[server]\nlisten = ['127.0.0.1:1', '127.0.0.1:1']\n"),
            (2, "server.listen[1]".into())
        );
    }

    const PERMISSIONS_BASE: &str = "[[core.vhosts]]\nname = '/'\nconvention = 'rabbitmq'\n\n\
        [[core.vhosts]]\nname = 'amq'\n\n\
        [[security.users]]\nname = 'bob'\npassword = 'p'\n\n";

    #[test]
    fn permissions_are_read_and_checked_with_file_line_and_key() {
        let good = format!(
            "{PERMISSIONS_BASE}[[security.permissions]]\nuser = 'bob'\nvhost = '/'\n\
             configure = '^$'\nwrite = '^app$'\nread = '.*'\n"
        );
        let config = BrokerConfig::parse(&good, "broker.toml").unwrap();
        assert_eq!(config.security.permissions[0].write, "^app$");
        // Lines 1-11 are the base; the entry starts on line 12.
        let bad_regex = format!(
            "{PERMISSIONS_BASE}[[security.permissions]]\nuser = 'bob'\nvhost = '/'\n\
             write = '^(app'\n"
        );
        let e = error(&bad_regex);
        assert_eq!(
            (e.line, e.key.as_str()),
            (15, "security.permissions[0].write")
        );
        assert!(e.message.contains("not a regular expression"), "{e}");
        assert!(e.to_string().starts_with("broker.toml:15: "), "{e}");
        let unknown_vhost =
            format!("{PERMISSIONS_BASE}[[security.permissions]]\nuser = 'bob'\nvhost = '/nope'\n");
        let e = error(&unknown_vhost);
        assert_eq!(
            (e.line, e.key.as_str()),
            (14, "security.permissions[0].vhost")
        );
        assert!(e.message.contains("not one of [[core.vhosts]]"), "{e}");
        let activemq_vhost =
            format!("{PERMISSIONS_BASE}[[security.permissions]]\nuser = 'bob'\nvhost = 'amq'\n");
        let e = error(&activemq_vhost);
        assert_eq!(
            (e.line, e.key.as_str()),
            (14, "security.permissions[0].vhost")
        );
        assert!(e.message.contains("activemq convention"), "{e}");
        let unknown_user =
            format!("{PERMISSIONS_BASE}[[security.permissions]]\nuser = 'eve'\nvhost = '/'\n");
        let e = error(&unknown_user);
        assert_eq!(
            (e.line, e.key.as_str()),
            (13, "security.permissions[0].user")
        );
        let unknown_key = format!(
            "{PERMISSIONS_BASE}[[security.permissions]]\nuser = 'bob'\nvhost = '/'\nwrites = ''\n"
        );
        assert_eq!(
            at(&unknown_key),
            (15, "security.permissions[0].writes".into())
        );
    }
}
