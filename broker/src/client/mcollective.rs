//! MCollective 2.12 client/server configuration (`server.cfg`, `client.cfg`): the STOMP
//! connector's pool, reconnect and heart-beat settings.
//!
//! The text format is MCollective's: one `key = value` per line, trailing whitespace
//! stripped, lines whose first non-blank character is `#` and lines without `=` or
//! without a value ignored, later keys overriding earlier ones. A `#` later in the line is part of the value, as
//! in MCollective. See [`parse_config_text`].
//!
//! [`McoClientConfig::from_text`] then reads the connector named by `connector` (default
//! `activemq`):
//!
//! * `activemq` and `rabbitmq`: `plugin.<c>.pool.size`, `plugin.<c>.pool.N.{host, port,
//!   user, password, ssl}`, `plugin.<c>.{initial_reconnect_delay, max_reconnect_delay,
//!   use_exponential_back_off, back_off_multiplier, max_reconnect_attempts, randomize,
//!   connect_timeout, heartbeat_interval, stomp_1_0_fallback, max_hbread_fails,
//!   max_hbrlck_fails, vhost}` with MCollective's defaults (protocols.md §1.1). The
//!   environment variables `STOMP_USER` and `STOMP_PASSWORD`, when set (even to an empty
//!   string), replace the user and password of every pool entry, as MCollective's
//!   `get_env_or_option` does.
//! * the legacy `stomp` connector (MCollective ≤ 2.2) in its non-pool mode:
//!   `plugin.stomp.host`/`port` (default 6163)/`user`/`password`, each overridden by
//!   `STOMP_SERVER`/`STOMP_PORT`/`STOMP_USER`/`STOMP_PASSWORD`. That connector hands the
//!   stomp gem positional arguments, so it reconnects to its one host every 5 s, forever,
//!   without backoff and without a connect timeout.
//! * the legacy `stomp` connector in pool mode (`plugin.stomp.pool.size` set):
//!   `plugin.stomp.pool.hostN`/`portN` (default 6163)/`userN`/`passwordN` (replaced by
//!   `STOMP_USER`/`STOMP_PASSWORD` when set)/`sslN` (TLS without certificate checks, as
//!   the gem's `ssl: true`), and `plugin.stomp.pool.{initial_reconnect_delay,
//!   max_reconnect_delay, use_exponential_back_off, max_reconnect_attempts, randomize}`
//!   with that connector's defaults. It reads `back_off_multiplier` as a boolean, so the
//!   multiplier stays 2 (a warning says so). No heart-beats, no connect timeout.
//!
//! `STOMP_SERVER` and `STOMP_PORT` only ever meant something to the legacy `stomp`
//! connector; the `activemq` and `rabbitmq` connectors ignore them. We do the same (a
//! config that names a pool keeps its pool) and report a [`ConfigWarning::EnvIgnored`] so
//! the user learns why the variable had no effect.
//!
//! Where MCollective is lenient by accident (`"abc".to_i` is a port 0), we reject the
//! value and name the key. Booleans accept MCollective's `1/yes/true/y/t` and
//! `0/no/false/n/f` (case-insensitive).
//!
//! TLS (`pool.N.ssl = 1`) follows MCollective's `ssl_parameters`: verified TLS needs all
//! of `pool.N.ssl.ca` (one or more PEM files, comma-separated), `pool.N.ssl.cert` and
//! `pool.N.ssl.key` (the last two overridden by `MCOLLECTIVE_<CONNECTOR>_POOL<N>_SSL_CERT`
//! / `_SSL_KEY`); if one is missing, `pool.N.ssl.fallback = 1` falls back to unverified TLS
//! (with a [`ConfigWarning::TlsUnverified`]) and otherwise the configuration is refused,
//! naming what is missing. `pool.N.ssl.ciphers` is accepted and ignored (rustls chooses
//! its own safe suites), with a warning.
//!
//! The environment is passed in as a map; this module never reads the process
//! environment.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::policy::{BackoffMultiplier, PolicyKind, ReconnectConfig};
use super::servers::{ServerAddr, ServerList, parse_port};

/// Environment variable overriding every pool entry's user.
pub const ENV_USER: &str = "STOMP_USER";
/// Environment variable overriding every pool entry's password.
pub const ENV_PASSWORD: &str = "STOMP_PASSWORD";
/// Legacy `stomp` connector: overrides `plugin.stomp.host`.
pub const ENV_SERVER: &str = "STOMP_SERVER";
/// Legacy `stomp` connector: overrides `plugin.stomp.port`.
pub const ENV_PORT: &str = "STOMP_PORT";

/// MCollective forces a configured heart-beat interval up to this minimum.
const MIN_HEARTBEAT: Duration = Duration::from_secs(30);

/// The CONNECT `heart-beat` header values `(cx, cy)` in milliseconds that MCollective's
/// connectors send for a heart-beat interval: `(interval + 500 ms, interval − 500 ms)`.
/// The one home of this arithmetic (the simulator's MCollective clients use it too).
pub fn heart_beat_header(interval: Duration) -> (u64, u64) {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    (ms.saturating_add(500), ms.saturating_sub(500))
}

/// Which MCollective connector plugin the settings are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum McoConnector {
    /// `connector = activemq` (the default).
    ActiveMq,
    /// `connector = rabbitmq`.
    RabbitMq,
    /// `connector = stomp`, the connector of MCollective ≤ 2.2 (non-pool mode only).
    LegacyStomp,
}

impl McoConnector {
    /// The plugin name, as used in `plugin.<name>.…` keys.
    pub fn name(self) -> &'static str {
        match self {
            McoConnector::ActiveMq => "activemq",
            McoConnector::RabbitMq => "rabbitmq",
            McoConnector::LegacyStomp => "stomp",
        }
    }
}

impl fmt::Display for McoConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something in the configuration that has no effect, or not the effect written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// `heartbeat_interval` below 30 s was raised to 30 s, as MCollective does.
    HeartbeatRaised {
        /// The key.
        key: String,
        /// The configured seconds.
        configured: i64,
    },
    /// An environment variable that only the legacy `stomp` connector reads.
    EnvIgnored {
        /// The variable.
        var: &'static str,
        /// The connector in use.
        connector: McoConnector,
    },
    /// An option MCollective passes to the stomp gem but gem 1.4.10 ignores.
    OptionIgnored {
        /// The key.
        key: String,
    },
    /// `pool.N.ssl.fallback` took effect: TLS without checking the broker's certificate.
    TlsUnverified {
        /// The `pool.N.ssl` key.
        key: String,
    },
    /// `plugin.stomp.pool.sslN = true`: the legacy connector hands the stomp gem
    /// `ssl: true`, which encrypts without checking the broker's certificate.
    LegacyTlsUnverified {
        /// The `plugin.stomp.pool.sslN` key.
        key: String,
    },
    /// `plugin.stomp.pool.back_off_multiplier`, which the legacy connector reads as a
    /// boolean (`get_bool_option(…, 2).to_i`), so any other value leaves the multiplier 2.
    LegacyMultiplierFixed {
        /// The key.
        key: String,
        /// The value written.
        value: String,
    },
    /// `max_hbread_fails`, which cannot act in mcollectived: its receiver thread blocks in
    /// `Stomp::Connection#receive` holding the gem's read lock, so the heart-beat ticker
    /// (`connection/heartbeats.rb#_start_receive_ticker`) never gets the lock and counts
    /// lock failures (`max_hbrlck_fails`) instead of read failures.
    ReadFailsNeverCounted {
        /// The key.
        key: String,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::HeartbeatRaised { key, configured } => {
                write!(
                    f,
                    "{key} = {configured} is below the minimum; using 30 seconds"
                )
            }
            ConfigWarning::EnvIgnored { var, connector } => write!(
                f,
                "environment variable {var} is ignored: only the legacy `stomp` connector reads it, \
                 the `{connector}` connector uses its pool"
            ),
            ConfigWarning::OptionIgnored { key } => {
                write!(
                    f,
                    "{key} is ignored (the stomp gem 1.4.10 does not implement it)"
                )
            }
            ConfigWarning::TlsUnverified { key } => write!(
                f,
                "{key}: CA, certificate or key missing; falling back to unverified TLS \
                 ({key}.fallback = 1), so the broker's certificate is not checked"
            ),
            ConfigWarning::LegacyTlsUnverified { key } => write!(
                f,
                "{key} = true: the legacy `stomp` connector asks for TLS without checking the \
                 broker's certificate (the stomp gem's `ssl: true`), and so do we"
            ),
            ConfigWarning::LegacyMultiplierFixed { key, value } => write!(
                f,
                "{key} = {value} has no effect: the legacy `stomp` connector reads it as a \
                 boolean and keeps the multiplier 2"
            ),
            ConfigWarning::ReadFailsNeverCounted { key } => write!(
                f,
                "{key} has no effect: mcollectived waits in receive holding the stomp gem's \
                 read lock, so heart-beat read failures are never counted (max_hbrlck_fails \
                 is what ends a silent connection)"
            ),
        }
    }
}

/// A configuration MCollective would reject, or one Stampede cannot honour. Every
/// variant names the key (or environment variable) and, where there is one, the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McoConfigError {
    /// `connector` names a plugin we do not speak.
    #[error(
        "connector = {value}: only `activemq`, `rabbitmq` and the legacy `stomp` connector are supported"
    )]
    UnsupportedConnector {
        /// The value.
        value: String,
    },
    /// A required setting is absent.
    #[error("{what} is missing")]
    Missing {
        /// The key, or "VAR environment variable or key".
        what: String,
    },
    /// `pool.size` promises an entry whose host is absent.
    #[error("plugin.{connector}.pool.size = {size} but pool.{index}.host is missing")]
    MissingPoolHost {
        /// The connector.
        connector: McoConnector,
        /// The configured pool size.
        size: i64,
        /// The 1-based entry.
        index: i64,
    },
    /// `pool.size` is zero or negative.
    #[error("plugin.{connector}.pool.size = {size}: the pool needs at least one host")]
    EmptyPool {
        /// The connector.
        connector: McoConnector,
        /// The configured size.
        size: i64,
    },
    /// Not 1–65535.
    #[error("{key}: `{value}` is not a port number")]
    NotAPort {
        /// The key or environment variable.
        key: String,
        /// The value.
        value: String,
    },
    /// Not an integer (Ruby `Integer()`).
    #[error("{key}: `{value}` is not an integer")]
    NotAnInteger {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Not a number (Ruby `Float()`).
    #[error("{key}: `{value}` is not a number")]
    NotANumber {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Not one of MCollective's boolean spellings.
    #[error("{key}: `{value}` is not a boolean (use true/false, yes/no, y/n, t/f or 1/0)")]
    NotABoolean {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Parses, but is out of range.
    #[error("{key}: `{value}` is out of range ({expected})")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// `pool.N.ssl = 1` without all of the CA, certificate and key, and no fallback.
    #[error(
        "{key} = 1 needs {missing} for verified TLS (as MCollective: cert, key and ca have \
         to be supplied), or {key}.fallback = 1 for unverified TLS"
    )]
    TlsIncomplete {
        /// The `pool.N.ssl` key.
        key: String,
        /// The settings missing, e.g. `plugin.activemq.pool.1.ssl.ca`.
        missing: String,
    },
}

/// The connection settings an MCollective daemon or client would use.
#[derive(Debug, Clone, PartialEq)]
pub struct McoClientConfig {
    /// The connector the settings were read for.
    pub connector: McoConnector,
    /// The pool, in `pool.1 … pool.N` order.
    pub servers: ServerList,
    /// The reconnect settings, in the stomp gem's terms.
    pub reconnect: ReconnectConfig,
    /// The policy real MCollective uses: always [`PolicyKind::StompGem`].
    pub policy: PolicyKind,
    /// `heartbeat_interval` (at least 30 s), or `None` for STOMP 1.0 without heart-beats.
    pub heartbeat_interval: Option<Duration>,
    /// `stomp_1_0_fallback`: offer `accept-version:1.1,1.0` rather than `1.1`.
    pub stomp_1_0_fallback: bool,
    /// `max_hbread_fails` (default 2).
    pub max_hbread_fails: u32,
    /// `max_hbrlck_fails` (default 0).
    pub max_hbrlck_fails: u32,
    /// The CONNECT `host` header (`vhost`; default `mcollective` for ActiveMQ, `/` for
    /// RabbitMQ); `None` for the legacy connector, which sends none.
    pub vhost: Option<String>,
    /// Settings that have no effect.
    pub warnings: Vec<ConfigWarning>,
}

impl McoClientConfig {
    /// Parses configuration text (see [`parse_config_text`]) and reads the connector
    /// settings, with `env` standing in for the process environment.
    pub fn from_text(text: &str, env: &BTreeMap<String, String>) -> Result<Self, McoConfigError> {
        Self::from_settings(&parse_config_text(text), env)
    }

    /// Reads the connector settings from already parsed `key → value` settings (full
    /// keys, e.g. `plugin.activemq.pool.size`; merge `plugin.d/*.cfg` in first).
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, McoConfigError> {
        let connector = match settings
            .get("connector")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => McoConnector::ActiveMq,
            Some(v) if v == "activemq" => McoConnector::ActiveMq,
            Some(v) if v == "rabbitmq" => McoConnector::RabbitMq,
            Some(v) if v == "stomp" => McoConnector::LegacyStomp,
            Some(_) => {
                return Err(McoConfigError::UnsupportedConnector {
                    value: settings.get("connector").cloned().unwrap_or_default(),
                });
            }
        };
        let reader = Reader {
            settings,
            env,
            connector,
        };
        let config = match connector {
            McoConnector::LegacyStomp => reader.legacy_stomp(),
            McoConnector::ActiveMq | McoConnector::RabbitMq => reader.pool_connector(),
        }?;
        // Each reading warns once for every setting that has no effect.
        for warning in &config.warnings {
            tracing::warn!("MCollective configuration: {warning}");
        }
        Ok(config)
    }

    /// The heart-beat read grace factor (× the negotiated receive interval) after which
    /// the stomp gem force-closes a silent connection, or `None` when it never does.
    ///
    /// With heart-beats, the gem's receive ticker wakes every receive interval; each tick
    /// that finds nothing read for longer than the interval, and the read lock held by
    /// mcollectived's `receive`, counts a lock failure, and at `max_hbrlck_fails` (when
    /// above 0) it closes the socket (`connection/heartbeats.rb`). The last of those ticks
    /// comes at most `max_hbrlck_fails + 1` intervals after the last byte read, which is
    /// the factor returned. `max_hbrlck_fails = 0` (MCollective's default) never closes.
    pub fn heartbeat_read_grace_factor(&self) -> Option<f64> {
        match (self.heartbeat_interval, self.max_hbrlck_fails) {
            (Some(_), n) if n > 0 => Some(f64::from(n) + 1.0),
            _ => None,
        }
    }

    /// The CONNECT `heart-beat` header values `(cx, cy)` in milliseconds that MCollective
    /// sends (see [`heart_beat_header`]); `None` without heart-beats.
    pub fn heart_beat_header(&self) -> Option<(u64, u64)> {
        self.heartbeat_interval.map(heart_beat_header)
    }

    /// The CONNECT `accept-version` header MCollective sends.
    pub fn accept_version(&self) -> &'static str {
        match (self.heartbeat_interval, self.stomp_1_0_fallback) {
            (None, _) => "1.0",
            (Some(_), true) => "1.1,1.0",
            (Some(_), false) => "1.1",
        }
    }
}

/// Splits MCollective configuration text into `key → value`. Never fails: like
/// MCollective, lines that are not `key = value` are ignored.
pub fn parse_config_text(text: &str) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim_start();
        if key.is_empty() || value.is_empty() {
            continue;
        }
        settings.insert(key.to_owned(), value.to_owned());
    }
    settings
}

/// Reads typed values for one connector, naming keys in errors.
struct Reader<'a> {
    settings: &'a BTreeMap<String, String>,
    env: &'a BTreeMap<String, String>,
    connector: McoConnector,
}

impl Reader<'_> {
    fn key(&self, name: &str) -> String {
        format!("plugin.{}.{name}", self.connector)
    }

    fn raw(&self, name: &str) -> Option<(String, &str)> {
        let key = self.key(name);
        let value = self.settings.get(&key)?;
        Some((key, value.as_str()))
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, McoConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some((key, value)) => {
                parse_ruby_int(value).ok_or_else(|| McoConfigError::NotAnInteger {
                    key,
                    value: value.to_owned(),
                })
            }
        }
    }

    /// A non-negative integer that fits in `u32`.
    fn count(&self, name: &str, default: u32) -> Result<u32, McoConfigError> {
        let v = self.int(name, i64::from(default))?;
        u32::try_from(v).map_err(|_| McoConfigError::OutOfRange {
            key: self.key(name),
            value: v.to_string(),
            expected: "0 or more",
        })
    }

    fn seconds(&self, name: &str, default: f64) -> Result<Duration, McoConfigError> {
        let (key, value) = match self.raw(name) {
            None => return Ok(Duration::from_secs_f64(default)),
            Some(kv) => kv,
        };
        let secs = parse_ruby_float(value).ok_or_else(|| McoConfigError::NotANumber {
            key: key.clone(),
            value: value.to_owned(),
        })?;
        Duration::try_from_secs_f64(secs).map_err(|_| McoConfigError::OutOfRange {
            key,
            value: value.to_owned(),
            expected: "seconds ≥ 0",
        })
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, McoConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some((key, value)) => str_to_bool(value).ok_or_else(|| McoConfigError::NotABoolean {
                key,
                value: value.to_owned(),
            }),
        }
    }

    /// The environment variable if set, else the option, else `default`.
    fn env_or(&self, var: &str, name: &str) -> Option<String> {
        self.env
            .get(var)
            .cloned()
            .or_else(|| self.raw(name).map(|(_, v)| v.to_owned()))
    }

    /// Pool entry `n`'s TLS settings, as MCollective's `ssl_parameters` reads them.
    fn pool_tls(
        &self,
        n: i64,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<Option<crate::tls::ClientTls>, McoConfigError> {
        if !self.boolean(&format!("pool.{n}.ssl"), false)? {
            return Ok(None);
        }
        let env = |what: &str| {
            format!(
                "MCOLLECTIVE_{}_POOL{n}_SSL_{what}",
                self.connector.name().to_ascii_uppercase()
            )
        };
        let setting = |name: String| -> Option<String> {
            self.raw(&name)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let cert = self
            .env
            .get(&env("CERT"))
            .cloned()
            .filter(|v| !v.is_empty())
            .or_else(|| setting(format!("pool.{n}.ssl.cert")));
        let key = self
            .env
            .get(&env("KEY"))
            .cloned()
            .filter(|v| !v.is_empty())
            .or_else(|| setting(format!("pool.{n}.ssl.key")));
        let ca = setting(format!("pool.{n}.ssl.ca"));
        if self.raw(&format!("pool.{n}.ssl.ciphers")).is_some() {
            warnings.push(ConfigWarning::OptionIgnored {
                key: self.key(&format!("pool.{n}.ssl.ciphers")),
            });
        }
        match (ca, cert, key) {
            (Some(ca_file), Some(cert_file), Some(key_file)) => Ok(Some(crate::tls::ClientTls {
                ca_file,
                cert_file,
                key_file,
                insecure_skip_verify: false,
            })),
            (ca, cert, key) => {
                let ssl_key = self.key(&format!("pool.{n}.ssl"));
                if self.boolean(&format!("pool.{n}.ssl.fallback"), false)? {
                    warnings.push(ConfigWarning::TlsUnverified { key: ssl_key });
                    return Ok(Some(crate::tls::ClientTls {
                        insecure_skip_verify: true,
                        ..crate::tls::ClientTls::default()
                    }));
                }
                let missing: Vec<String> = [("ca", ca), ("cert", cert), ("key", key)]
                    .into_iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(what, _)| format!("{ssl_key}.{what}"))
                    .collect();
                Err(McoConfigError::TlsIncomplete {
                    key: ssl_key,
                    missing: missing.join(", "),
                })
            }
        }
    }

    fn pool_connector(&self) -> Result<McoClientConfig, McoConfigError> {
        let c = self.connector;
        let size_key = self.key("pool.size");
        if !self.settings.contains_key(&size_key) {
            return Err(McoConfigError::Missing { what: size_key });
        }
        let size = self.int("pool.size", 0)?;
        if size <= 0 {
            return Err(McoConfigError::EmptyPool { connector: c, size });
        }
        let mut servers = Vec::new();
        let mut tls_warnings = Vec::new();
        for n in 1..=size {
            let Some((_, host)) = self.raw(&format!("pool.{n}.host")) else {
                return Err(McoConfigError::MissingPoolHost {
                    connector: c,
                    size,
                    index: n,
                });
            };
            let port = match self.raw(&format!("pool.{n}.port")) {
                None => 61613,
                Some((key, value)) => {
                    parse_port(value.trim()).ok_or_else(|| McoConfigError::NotAPort {
                        key,
                        value: value.to_owned(),
                    })?
                }
            };
            let tls = self.pool_tls(n, &mut tls_warnings)?;
            let login = self.env_or(ENV_USER, &format!("pool.{n}.user"));
            let passcode = self.env_or(ENV_PASSWORD, &format!("pool.{n}.password"));
            let server = ServerAddr::new(host.trim(), port).with_credentials(
                login.filter(|l| !l.is_empty()),
                passcode.filter(|p| !p.is_empty()),
            );
            servers.push(match tls {
                Some(tls) => server.with_tls(tls),
                None => server,
            });
        }
        // `size > 0`, so at least one server was pushed.
        let servers = ServerList::new(servers)
            .map_err(|_| McoConfigError::EmptyPool { connector: c, size })?;

        let multiplier_raw = self.int("back_off_multiplier", 2)?;
        let multiplier = u32::try_from(multiplier_raw)
            .ok()
            .and_then(|m| BackoffMultiplier::new(f64::from(m)))
            .ok_or_else(|| McoConfigError::OutOfRange {
                key: self.key("back_off_multiplier"),
                value: multiplier_raw.to_string(),
                expected: "an integer ≥ 1",
            })?;
        // 0 means "retry forever" to the stomp gem.
        let max_attempts = match self.count("max_reconnect_attempts", 0)? {
            0 => None,
            n => Some(n),
        };
        let connect_timeout = match self.count("connect_timeout", 30)? {
            0 => None,
            s => Some(Duration::from_secs(u64::from(s))),
        };
        let reconnect = ReconnectConfig {
            initial_delay: self.seconds("initial_reconnect_delay", 0.01)?,
            max_delay: self.seconds("max_reconnect_delay", 30.0)?,
            exponential: self.boolean("use_exponential_back_off", true)?,
            multiplier,
            max_attempts,
            startup_max_attempts: None,
            randomize: self.boolean("randomize", false)?,
            connect_timeout,
            ..ReconnectConfig::stomp_gem()
        };

        let mut warnings = tls_warnings;
        let hb = self.int("heartbeat_interval", 0)?;
        let heartbeat_interval = if hb <= 0 {
            None
        } else if hb < 30 {
            warnings.push(ConfigWarning::HeartbeatRaised {
                key: self.key("heartbeat_interval"),
                configured: hb,
            });
            Some(MIN_HEARTBEAT)
        } else {
            Some(Duration::from_secs(hb.unsigned_abs()))
        };
        // MCollective passes these to the gem; validate them as it does, then warn.
        self.boolean("backup", false)?;
        self.int("timeout", -1)?;
        for name in ["backup", "timeout"] {
            if let Some((key, _)) = self.raw(name) {
                warnings.push(ConfigWarning::OptionIgnored { key });
            }
        }
        if let Some((key, _)) = self.raw("max_hbread_fails") {
            warnings.push(ConfigWarning::ReadFailsNeverCounted { key });
        }
        for var in [ENV_SERVER, ENV_PORT] {
            if self.env.contains_key(var) {
                warnings.push(ConfigWarning::EnvIgnored { var, connector: c });
            }
        }
        let default_vhost = match c {
            McoConnector::RabbitMq => "/",
            _ => "mcollective",
        };
        Ok(McoClientConfig {
            connector: c,
            servers,
            reconnect,
            policy: PolicyKind::StompGem,
            heartbeat_interval,
            stomp_1_0_fallback: self.boolean("stomp_1_0_fallback", true)?,
            max_hbread_fails: self.count("max_hbread_fails", 2)?,
            max_hbrlck_fails: self.count("max_hbrlck_fails", 0)?,
            vhost: Some(
                self.raw("vhost")
                    .map_or(default_vhost, |(_, v)| v)
                    .to_owned(),
            ),
            warnings,
        })
    }

    /// The legacy `stomp` connector's pool mode (MCollective 1.x–2.2): entries
    /// `plugin.stomp.pool.hostN`/`portN` (default 6163)/`userN`/`passwordN` (each of the
    /// last two replaced by `STOMP_USER`/`STOMP_PASSWORD` when set)/`sslN`, and the
    /// stomp gem's reconnect options under `plugin.stomp.pool.`, with that connector's
    /// defaults and its quirks: `back_off_multiplier` is read as a boolean, so it stays 2;
    /// `sslN` is TLS without certificate checks; no connect timeout and no heart-beats.
    fn legacy_stomp_pool(&self) -> Result<McoClientConfig, McoConfigError> {
        let c = self.connector;
        let size = self.int("pool.size", 0)?;
        if size <= 0 {
            return Err(McoConfigError::EmptyPool { connector: c, size });
        }
        let mut servers = Vec::new();
        let mut warnings = Vec::new();
        for n in 1..=size {
            let Some((_, host)) = self.raw(&format!("pool.host{n}")) else {
                return Err(McoConfigError::Missing {
                    what: self.key(&format!("pool.host{n}")),
                });
            };
            let port = match self.raw(&format!("pool.port{n}")) {
                None => 6163,
                Some((key, value)) => {
                    parse_port(value.trim()).ok_or_else(|| McoConfigError::NotAPort {
                        key,
                        value: value.to_owned(),
                    })?
                }
            };
            let required = |var: &str, name: String| {
                self.env_or(var, &name)
                    .ok_or_else(|| McoConfigError::Missing {
                        what: format!("{var} environment variable or {}", self.key(&name)),
                    })
            };
            let login = required(ENV_USER, format!("pool.user{n}"))?;
            let passcode = required(ENV_PASSWORD, format!("pool.password{n}"))?;
            let server = ServerAddr::new(host.trim(), port).with_credentials(
                Some(login).filter(|l| !l.is_empty()),
                Some(passcode).filter(|p| !p.is_empty()),
            );
            let ssl_name = format!("pool.ssl{n}");
            servers.push(if self.boolean(&ssl_name, false)? {
                warnings.push(ConfigWarning::LegacyTlsUnverified {
                    key: self.key(&ssl_name),
                });
                server.with_tls(crate::tls::ClientTls {
                    insecure_skip_verify: true,
                    ..crate::tls::ClientTls::default()
                })
            } else {
                server
            });
        }
        let servers = ServerList::new(servers)
            .map_err(|_| McoConfigError::EmptyPool { connector: c, size })?;
        if let Some((key, value)) = self.raw("pool.back_off_multiplier") {
            let v = value.trim();
            // MCollective calls `.to_i` on the boolean these spellings give: it fails.
            if v.starts_with(['1', '0'])
                || ["yes", "true", "no", "false"].iter().any(|b| v.contains(b))
            {
                return Err(McoConfigError::OutOfRange {
                    key,
                    value: value.to_owned(),
                    expected: "not a boolean: MCollective's stomp connector fails on it",
                });
            }
            if v != "2" {
                warnings.push(ConfigWarning::LegacyMultiplierFixed {
                    key,
                    value: value.to_owned(),
                });
            }
        }
        let max_attempts = match self.count("pool.max_reconnect_attempts", 0)? {
            0 => None,
            n => Some(n),
        };
        let reconnect = ReconnectConfig {
            initial_delay: self.seconds("pool.initial_reconnect_delay", 0.01)?,
            max_delay: self.seconds("pool.max_reconnect_delay", 30.0)?,
            exponential: self.boolean("pool.use_exponential_back_off", true)?,
            multiplier: BackoffMultiplier::TWO,
            max_attempts,
            startup_max_attempts: None,
            randomize: self.boolean("pool.randomize", false)?,
            // The legacy connector passes no connect timeout to the gem.
            connect_timeout: None,
            ..ReconnectConfig::stomp_gem()
        };
        self.boolean("pool.backup", false)?;
        self.int("pool.timeout", -1)?;
        for name in ["pool.backup", "pool.timeout"] {
            if let Some((key, _)) = self.raw(name) {
                warnings.push(ConfigWarning::OptionIgnored { key });
            }
        }
        for var in [ENV_SERVER, ENV_PORT] {
            if self.env.contains_key(var) {
                warnings.push(ConfigWarning::EnvIgnored { var, connector: c });
            }
        }
        Ok(McoClientConfig {
            connector: c,
            servers,
            reconnect,
            policy: PolicyKind::StompGem,
            heartbeat_interval: None,
            stomp_1_0_fallback: true,
            max_hbread_fails: 0,
            max_hbrlck_fails: 0,
            vhost: None,
            warnings,
        })
    }

    fn legacy_stomp(&self) -> Result<McoClientConfig, McoConfigError> {
        if self.settings.contains_key("plugin.stomp.pool.size") {
            return self.legacy_stomp_pool();
        }
        let required = |var: &str, name: &str| {
            self.env_or(var, name)
                .ok_or_else(|| McoConfigError::Missing {
                    what: format!("{var} environment variable or {}", self.key(name)),
                })
        };
        let host = required(ENV_SERVER, "host")?;
        let port = match (self.env.get(ENV_PORT), self.raw("port")) {
            (Some(v), _) => parse_port(v.trim()).ok_or_else(|| McoConfigError::NotAPort {
                key: ENV_PORT.to_owned(),
                value: v.clone(),
            })?,
            (None, Some((key, v))) => {
                parse_port(v.trim()).ok_or_else(|| McoConfigError::NotAPort {
                    key,
                    value: v.to_owned(),
                })?
            }
            (None, None) => 6163,
        };
        let login = required(ENV_USER, "user")?;
        let passcode = required(ENV_PASSWORD, "password")?;
        let server = ServerAddr::new(host.trim(), port).with_credentials(
            Some(login).filter(|l| !l.is_empty()),
            Some(passcode).filter(|p| !p.is_empty()),
        );
        // `Stomp::Connection.new(user, password, host, port, true)`: positional arguments,
        // so `reconnect_delay = 5`, no `@parameters`, hence no backoff, no host change, no
        // attempt limit and no connect timeout.
        let reconnect = ReconnectConfig {
            initial_delay: Duration::from_secs(5),
            exponential: false,
            connect_timeout: None,
            ..ReconnectConfig::stomp_gem()
        };
        Ok(McoClientConfig {
            connector: McoConnector::LegacyStomp,
            servers: ServerList::single(server),
            reconnect,
            policy: PolicyKind::StompGem,
            heartbeat_interval: None,
            stomp_1_0_fallback: true,
            max_hbread_fails: 0,
            max_hbrlck_fails: 0,
            vhost: None,
            warnings: Vec::new(),
        })
    }
}

/// Ruby `Integer(str)` for decimal input: optional sign, digits, single underscores
/// between digits, surrounding whitespace.
fn parse_ruby_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    let magnitude: i64 = cleaned.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Ruby `Float(str)`: a finite decimal number (integers included).
fn parse_ruby_float(text: &str) -> Option<f64> {
    let t = text.trim();
    // Rust also accepts `inf`, `NaN` and `.5`; Ruby accepts none of them.
    let starts_ok = t
        .trim_start_matches(['+', '-'])
        .starts_with(|c: char| c.is_ascii_digit());
    if !starts_ok || t.ends_with('.') {
        return None;
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// MCollective's `Util.str_to_bool`.
fn str_to_bool(text: &str) -> Option<bool> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "1" | "yes" | "true" | "y" | "t" => Some(true),
        "0" | "no" | "false" | "n" | "f" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(text: &str) -> Result<McoClientConfig, McoConfigError> {
        McoClientConfig::from_text(text, &no_env())
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const TWO_BROKERS: &str = "\
# MCollective server.cfg
connector = activemq
plugin.activemq.pool.size = 2
plugin.activemq.pool.1.host = broker1
plugin.activemq.pool.1.port = 61613
plugin.activemq.pool.1.user = mcollective
plugin.activemq.pool.1.password = marionette
plugin.activemq.pool.2.host = broker2
plugin.activemq.pool.2.user = mcollective
plugin.activemq.pool.2.password = marionette
";

    #[test]
    fn defaults_match_mcollective() {
        let c = parse(TWO_BROKERS).unwrap();
        assert_eq!(c.connector, McoConnector::ActiveMq);
        assert_eq!(c.policy, PolicyKind::StompGem);
        let hosts: Vec<String> = c.servers.iter().map(ToString::to_string).collect();
        assert_eq!(hosts, ["broker1:61613", "broker2:61613"]);
        let s = c.servers.get(1).unwrap();
        assert_eq!(s.login.as_deref(), Some("mcollective"));
        assert_eq!(s.passcode.as_deref(), Some("marionette"));
        assert_eq!(c.reconnect, ReconnectConfig::stomp_gem());
        assert_eq!(c.heartbeat_interval, None);
        assert_eq!(c.heart_beat_header(), None);
        assert_eq!(c.accept_version(), "1.0");
        assert_eq!(c.max_hbread_fails, 2);
        assert_eq!(c.max_hbrlck_fails, 0);
        assert_eq!(c.vhost.as_deref(), Some("mcollective"));
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn every_option_is_read() {
        let text = format!(
            "{TWO_BROKERS}
plugin.activemq.initial_reconnect_delay = 0.5
plugin.activemq.max_reconnect_delay = 60
plugin.activemq.use_exponential_back_off = n
plugin.activemq.back_off_multiplier = 3
plugin.activemq.max_reconnect_attempts = 7
plugin.activemq.randomize = Yes
plugin.activemq.connect_timeout = 0
plugin.activemq.heartbeat_interval = 45
plugin.activemq.stomp_1_0_fallback = 0
plugin.activemq.max_hbread_fails = 4
plugin.activemq.max_hbrlck_fails = 1
plugin.activemq.vhost = /mco
"
        );
        let c = parse(&text).unwrap();
        let r = &c.reconnect;
        assert_eq!(r.initial_delay, Duration::from_millis(500));
        assert_eq!(r.max_delay, Duration::from_secs(60));
        assert!(!r.exponential);
        assert_eq!(r.multiplier.get(), 3.0);
        assert_eq!(r.max_attempts, Some(7));
        assert!(r.randomize);
        assert_eq!(r.connect_timeout, None);
        assert_eq!(c.heartbeat_interval, Some(Duration::from_secs(45)));
        assert_eq!(c.heart_beat_header(), Some((45_500, 44_500)));
        assert_eq!(c.accept_version(), "1.1");
        assert_eq!((c.max_hbread_fails, c.max_hbrlck_fails), (4, 1));
        assert_eq!(c.vhost.as_deref(), Some("/mco"));
        // `max_hbrlck_fails = 1` closes a silent connection after at most 2 intervals;
        // `max_hbread_fails` can never act in mcollectived and says so.
        assert_eq!(c.heartbeat_read_grace_factor(), Some(2.0));
        assert_eq!(
            c.warnings,
            [ConfigWarning::ReadFailsNeverCounted {
                key: "plugin.activemq.max_hbread_fails".into()
            }]
        );
        assert!(c.warnings[0].to_string().contains("max_hbrlck_fails"));
    }

    #[test]
    fn heartbeat_lock_failures_close_only_with_heartbeats_and_a_limit() {
        let grace = |extra: &str| {
            parse(&format!("{TWO_BROKERS}{extra}"))
                .unwrap()
                .heartbeat_read_grace_factor()
        };
        assert_eq!(grace(""), None);
        assert_eq!(grace("plugin.activemq.heartbeat_interval = 30\n"), None);
        assert_eq!(grace("plugin.activemq.max_hbrlck_fails = 3\n"), None);
        assert_eq!(
            grace(
                "plugin.activemq.heartbeat_interval = 30\nplugin.activemq.max_hbrlck_fails = 3\n"
            ),
            Some(4.0)
        );
    }

    #[test]
    fn connect_timeout_bounds_only_the_tcp_open() {
        let c = parse(TWO_BROKERS).unwrap();
        assert_eq!(c.reconnect.connect_timeout, Some(Duration::from_secs(30)));
        // MCollective does not set `connread_timeout`: the gem's 0 means no limit.
        assert_eq!(
            c.reconnect.connread_timeout,
            crate::client::policy::ConnreadTimeout::Separate(None)
        );
    }

    #[test]
    fn heartbeat_is_forced_to_30s() {
        let c = parse(&format!(
            "{TWO_BROKERS}plugin.activemq.heartbeat_interval = 10\n"
        ))
        .unwrap();
        assert_eq!(c.heartbeat_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.heart_beat_header(), Some((30_500, 29_500)));
        assert_eq!(c.accept_version(), "1.1,1.0");
        assert_eq!(
            c.warnings,
            [ConfigWarning::HeartbeatRaised {
                key: "plugin.activemq.heartbeat_interval".into(),
                configured: 10
            }]
        );
    }

    #[test]
    fn rabbitmq_connector() {
        let text = "connector = RabbitMQ\nplugin.rabbitmq.pool.size = 1\nplugin.rabbitmq.pool.1.host = r1\n\
                    plugin.rabbitmq.pool.1.port = 61614\nplugin.activemq.pool.size = 9\n";
        let c = parse(text).unwrap();
        assert_eq!(c.connector, McoConnector::RabbitMq);
        assert_eq!(c.servers.get(0), Some(&ServerAddr::new("r1", 61614)));
        assert_eq!(c.vhost.as_deref(), Some("/"));
    }

    #[test]
    fn env_overrides_credentials_of_every_entry() {
        let e = env(&[("STOMP_USER", "ops"), ("STOMP_PASSWORD", "")]);
        let c = McoClientConfig::from_text(TWO_BROKERS, &e).unwrap();
        for s in &c.servers {
            assert_eq!(s.login.as_deref(), Some("ops"));
            // Set but empty still overrides, leaving no passcode.
            assert_eq!(s.passcode, None);
        }
    }

    #[test]
    fn stomp_server_env_is_ignored_by_pool_connectors_with_a_warning() {
        let e = env(&[("STOMP_SERVER", "elsewhere"), ("STOMP_PORT", "1")]);
        let c = McoClientConfig::from_text(TWO_BROKERS, &e).unwrap();
        assert_eq!(c.servers.get(0).unwrap().host, "broker1");
        assert_eq!(
            c.warnings,
            [
                ConfigWarning::EnvIgnored {
                    var: "STOMP_SERVER",
                    connector: McoConnector::ActiveMq
                },
                ConfigWarning::EnvIgnored {
                    var: "STOMP_PORT",
                    connector: McoConnector::ActiveMq
                },
            ]
        );
        assert!(
            c.warnings[0]
                .to_string()
                .contains("STOMP_SERVER is ignored")
        );
    }

    #[test]
    fn legacy_stomp_connector_uses_stomp_server_and_port() {
        let text = "connector = stomp\nplugin.stomp.host = old\nplugin.stomp.user = u\nplugin.stomp.password = p\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c.servers.get(0).map(ToString::to_string).as_deref(),
            Some("old:6163")
        );
        assert_eq!(c.reconnect.initial_delay, Duration::from_secs(5));
        assert!(!c.reconnect.exponential);
        assert_eq!(c.reconnect.connect_timeout, None);
        assert_eq!(c.vhost, None);
        let e = env(&[
            ("STOMP_SERVER", "new"),
            ("STOMP_PORT", "61613"),
            ("STOMP_USER", "eu"),
        ]);
        let c = McoClientConfig::from_text(text, &e).unwrap();
        let s = c.servers.get(0).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.login.as_deref()),
            ("new", 61613, Some("eu"))
        );
        let e = env(&[("STOMP_PORT", "x")]);
        assert_eq!(
            McoClientConfig::from_text(text, &e)
                .unwrap_err()
                .to_string(),
            "STOMP_PORT: `x` is not a port number"
        );
        assert_eq!(
            err("connector = stomp\nplugin.stomp.user = u\nplugin.stomp.password = p\n"),
            "STOMP_SERVER environment variable or plugin.stomp.host is missing"
        );
        assert_eq!(
            err("connector = stomp\nplugin.stomp.pool.size = 1\n"),
            "plugin.stomp.pool.host1 is missing"
        );
        assert_eq!(
            err("connector = stomp\nplugin.stomp.pool.size = 1\nplugin.stomp.pool.host1 = a\n"),
            "STOMP_USER environment variable or plugin.stomp.pool.user1 is missing"
        );
    }

    #[test]
    fn legacy_stomp_pool_mode_reads_host_n_keys_with_that_connector_s_quirks() {
        let text = "connector = stomp\n\
                    plugin.stomp.pool.size = 2\n\
                    plugin.stomp.pool.host1 = stomp1\n\
                    plugin.stomp.pool.user1 = me\n\
                    plugin.stomp.pool.password1 = secret\n\
                    plugin.stomp.pool.host2 = stomp2\n\
                    plugin.stomp.pool.port2 = 61614\n\
                    plugin.stomp.pool.user2 = me\n\
                    plugin.stomp.pool.password2 = secret\n\
                    plugin.stomp.pool.ssl2 = true\n\
                    plugin.stomp.pool.initial_reconnect_delay = 0.5\n\
                    plugin.stomp.pool.back_off_multiplier = 3\n\
                    plugin.stomp.pool.max_reconnect_attempts = 4\n\
                    plugin.stomp.pool.randomize = true\n";
        let c = parse(text).unwrap();
        assert_eq!(c.connector, McoConnector::LegacyStomp);
        let first = c.servers.get(0).unwrap();
        assert_eq!(
            first.to_string(),
            "stomp1:6163",
            "6163 is that connector's port"
        );
        assert_eq!(first.login.as_deref(), Some("me"));
        let second = c.servers.get(1).unwrap();
        assert_eq!(second.port, 61614);
        assert!(second.tls.as_ref().is_some_and(|t| t.insecure_skip_verify));
        assert_eq!(c.reconnect.initial_delay, Duration::from_millis(500));
        assert_eq!(c.reconnect.multiplier.get(), 2.0, "read as a boolean, so 2");
        assert_eq!(c.reconnect.max_attempts, Some(4));
        assert!(c.reconnect.randomize);
        assert_eq!(c.reconnect.connect_timeout, None);
        assert_eq!(c.heartbeat_interval, None);
        assert!(c.warnings.iter().any(|w| matches!(
            w,
            ConfigWarning::LegacyMultiplierFixed { key, .. }
                if key == "plugin.stomp.pool.back_off_multiplier"
        )));
        assert!(c.warnings.iter().any(|w| matches!(
            w,
            ConfigWarning::LegacyTlsUnverified { key } if key == "plugin.stomp.pool.ssl2"
        )));
        // STOMP_USER and STOMP_PASSWORD replace every entry's; STOMP_SERVER is ignored.
        let e = env(&[("STOMP_USER", "envu"), ("STOMP_SERVER", "elsewhere")]);
        let c = McoClientConfig::from_text(text, &e).unwrap();
        assert_eq!(c.servers.get(1).unwrap().login.as_deref(), Some("envu"));
        assert_eq!(c.servers.get(0).unwrap().host, "stomp1");
        assert!(
            c.warnings
                .iter()
                .any(|w| matches!(w, ConfigWarning::EnvIgnored { .. }))
        );
        // MCollective fails on a boolean-looking multiplier (`true.to_i`); so do we.
        let bad = text.replace("multiplier = 3", "multiplier = yes");
        assert!(err(&bad).contains("plugin.stomp.pool.back_off_multiplier"));
    }

    #[test]
    fn error_messages_name_key_and_value() {
        assert_eq!(
            err("plugin.activemq.pool.size = 2\nplugin.activemq.pool.1.host = a\n"),
            "plugin.activemq.pool.size = 2 but pool.2.host is missing"
        );
        assert_eq!(
            err(
                "plugin.activemq.pool.size = 2\nplugin.activemq.pool.1.host = a\n\
                 plugin.activemq.pool.2.host = b\nplugin.activemq.pool.2.port = abc\n"
            ),
            "plugin.activemq.pool.2.port: `abc` is not a port number"
        );
        assert_eq!(
            err("connector = activemq\n"),
            "plugin.activemq.pool.size is missing"
        );
        assert_eq!(
            err("plugin.activemq.pool.size = 0\n"),
            "plugin.activemq.pool.size = 0: the pool needs at least one host"
        );
        assert_eq!(
            err("plugin.activemq.pool.size = two\n"),
            "plugin.activemq.pool.size: `two` is not an integer"
        );
        assert_eq!(
            err(&format!("{TWO_BROKERS}plugin.activemq.pool.1.ssl = 1\n")),
            "plugin.activemq.pool.1.ssl = 1 needs plugin.activemq.pool.1.ssl.ca, \
             plugin.activemq.pool.1.ssl.cert, plugin.activemq.pool.1.ssl.key for verified TLS \
             (as MCollective: cert, key and ca have to be supplied), or \
             plugin.activemq.pool.1.ssl.fallback = 1 for unverified TLS"
        );
        assert_eq!(
            err(&format!("{TWO_BROKERS}plugin.activemq.randomize = maybe\n")),
            "plugin.activemq.randomize: `maybe` is not a boolean (use true/false, yes/no, y/n, t/f or 1/0)"
        );
        assert_eq!(
            err(&format!(
                "{TWO_BROKERS}plugin.activemq.initial_reconnect_delay = soon\n"
            )),
            "plugin.activemq.initial_reconnect_delay: `soon` is not a number"
        );
        assert_eq!(
            err(&format!(
                "{TWO_BROKERS}plugin.activemq.max_reconnect_delay = -1\n"
            )),
            "plugin.activemq.max_reconnect_delay: `-1` is out of range (seconds ≥ 0)"
        );
        assert_eq!(
            err(&format!(
                "{TWO_BROKERS}plugin.activemq.back_off_multiplier = 0\n"
            )),
            "plugin.activemq.back_off_multiplier: `0` is out of range (an integer ≥ 1)"
        );
        assert_eq!(
            err(&format!(
                "{TWO_BROKERS}plugin.activemq.back_off_multiplier = 1.5\n"
            )),
            "plugin.activemq.back_off_multiplier: `1.5` is not an integer"
        );
        assert_eq!(
            err(&format!(
                "{TWO_BROKERS}plugin.activemq.max_reconnect_attempts = -3\n"
            )),
            "plugin.activemq.max_reconnect_attempts: `-3` is out of range (0 or more)"
        );
        assert_eq!(
            err(&format!("{TWO_BROKERS}plugin.activemq.timeout = never\n")),
            "plugin.activemq.timeout: `never` is not an integer"
        );
        assert_eq!(
            err("connector = redis\n"),
            "connector = redis: only `activemq`, `rabbitmq` and the legacy `stomp` connector are supported"
        );
        assert!(matches!(
            parse(
                "plugin.activemq.pool.size = 1\nplugin.activemq.pool.1.host = a\nplugin.activemq.pool.1.port = 0\n"
            ),
            Err(McoConfigError::NotAPort { .. })
        ));
    }

    #[test]
    fn ignored_gem_options_warn() {
        let c = parse(&format!(
            "{TWO_BROKERS}plugin.activemq.backup = true\nplugin.activemq.timeout = 5\n"
        ))
        .unwrap();
        assert_eq!(
            c.warnings,
            [
                ConfigWarning::OptionIgnored {
                    key: "plugin.activemq.backup".into()
                },
                ConfigWarning::OptionIgnored {
                    key: "plugin.activemq.timeout".into()
                },
            ]
        );
    }

    #[test]
    fn config_text_rules() {
        let s = parse_config_text(
            "# comment = ignored\n  # indented comment = ignored\nno equals sign\nempty.value =\n\
             a = 1\na = 2\nspaced   =   x y # not a comment   \n=novalue\nk=v=w\n",
        );
        let got: Vec<(&str, &str)> = s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [("a", "2"), ("k", "v=w"), ("spaced", "x y # not a comment")]
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_ruby_int(" 1_000 "), Some(1000));
        assert_eq!(parse_ruby_int("-5"), Some(-5));
        assert_eq!(parse_ruby_int("+5"), Some(5));
        for bad in ["", "1__0", "_1", "1_", "0.5", "1e3", "--1", "abc"] {
            assert_eq!(parse_ruby_int(bad), None, "{bad}");
        }
        assert_eq!(parse_ruby_float("0.01"), Some(0.01));
        assert_eq!(parse_ruby_float("30"), Some(30.0));
        assert_eq!(parse_ruby_float("1e-2"), Some(0.01));
        for bad in ["inf", "NaN", ".5", "5.", "", "1e999"] {
            assert_eq!(parse_ruby_float(bad), None, "{bad}");
        }
        for t in ["1", "YES", "true", "y", "T"] {
            assert_eq!(str_to_bool(t), Some(true), "{t}");
        }
        for f in ["0", "no", "FALSE", "n", "f"] {
            assert_eq!(str_to_bool(f), Some(false), "{f}");
        }
        assert_eq!(str_to_bool("on"), None);
    }

    #[test]
    fn exact_default_delay_is_10ms() {
        let c = parse(TWO_BROKERS).unwrap();
        assert_eq!(c.reconnect.initial_delay.as_nanos(), 10_000_000);
    }

    #[test]
    fn pool_tls_follows_mcollective_ssl_parameters() {
        let verified = format!(
            "{TWO_BROKERS}plugin.activemq.pool.1.ssl = 1\n\
             plugin.activemq.pool.1.ssl.ca = /etc/mco/ca.pem\n\
             plugin.activemq.pool.1.ssl.cert = /etc/mco/cert.pem\n\
             plugin.activemq.pool.1.ssl.key = /etc/mco/key.pem\n\
             plugin.activemq.pool.2.ssl = 1\n\
             plugin.activemq.pool.2.ssl.fallback = 1\n"
        );
        let c = parse(&verified).unwrap();
        let one = c.servers.get(0).unwrap().tls.clone().unwrap();
        assert_eq!(one.ca_file, "/etc/mco/ca.pem");
        assert_eq!(one.cert_file, "/etc/mco/cert.pem");
        assert_eq!(one.key_file, "/etc/mco/key.pem");
        assert!(!one.insecure_skip_verify);
        // Pool entry 2 has no CA, certificate or key: unverified, with a warning.
        let two = c.servers.get(1).unwrap().tls.clone().unwrap();
        assert!(two.insecure_skip_verify);
        assert!(c.warnings.iter().any(|w| matches!(
            w,
            ConfigWarning::TlsUnverified { key } if key == "plugin.activemq.pool.2.ssl"
        )));
        // The environment overrides the certificate and key, per pool entry.
        let e = env(&[("MCOLLECTIVE_ACTIVEMQ_POOL1_SSL_CERT", "/run/cert.pem")]);
        let c = McoClientConfig::from_text(&verified, &e).unwrap();
        assert_eq!(
            c.servers.get(0).unwrap().tls.as_ref().unwrap().cert_file,
            "/run/cert.pem"
        );
        // Plain entries stay plain.
        assert!(
            parse(TWO_BROKERS)
                .unwrap()
                .servers
                .get(0)
                .unwrap()
                .tls
                .is_none()
        );
    }
}
