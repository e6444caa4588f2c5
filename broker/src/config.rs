//! The broker's TOML configuration file and its errors (which name file, line and key).
//!
//! Every table is optional and every key has a default, so an empty file is a valid
//! configuration; unknown keys are errors. See `broker.example.toml` for every key.
//!
//! Loading happens in three steps, each of which reports the file, the 1-based line and
//! the dotted key path (`core.limits.frame_bytes_max`, `security.users[1].groups`, with
//! 0-based array indices) of the first problem:
//!
//! 1. TOML syntax, with the position the TOML parser reports.
//! 2. Deserialization (unknown keys, wrong types, out-of-range numbers), with the key path
//!    tracked by `serde_path_to_error` and the position of the offending value.
//! 3. Semantic validation ([`BrokerConfig::validate`]), whose errors carry a [`KeyPath`]
//!    that is looked up in a spanned parse of the document to find its line.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::core::{CoreConfig, HeartbeatConfig, Limits};
use crate::network::{ConnectorConfig, DiscoveryConfig, validate_connectors};
use crate::security::SecurityConfig;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["127.0.0.1:61613".to_owned()],
            write_timeout_ms: 30_000,
            inbox_events_max: 4_096,
        }
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
}

/// A configuration error, located in its file.
///
/// Displayed as `file:line: key: message`; the key is left out when the problem is not
/// tied to one (some syntax errors), and the line when the file could not be read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that was read.
    pub file: String,
    /// 1-based line of the offending key (0 when the file could not be read).
    pub line: usize,
    /// Dotted path of the offending key (empty when unknown).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySegment {
    /// A key of a table.
    Key(String),
    /// A 0-based index into an array (or array of tables).
    Index(usize),
}

/// The path of a key in the configuration document, displayed dotted:
/// `security.users[1].groups`. Keys that are not bare TOML keys are shown quoted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyPath {
    segments: Vec<KeySegment>,
}

impl KeyPath {
    /// The document itself.
    pub fn root() -> KeyPath {
        KeyPath::default()
    }

    /// This path extended by the table key `key`.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut path = self.clone();
        path.segments.push(KeySegment::Key(key.to_owned()));
        path
    }

    /// This path extended by the array index `index`.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.segments.push(KeySegment::Index(index));
        path
    }

    /// `self` placed under the table `key` (used to place the errors of a sub-table).
    pub fn within(mut self, key: &str) -> KeyPath {
        self.segments.insert(0, KeySegment::Key(key.to_owned()));
        self
    }

    /// The steps from the document root.
    pub fn segments(&self) -> &[KeySegment] {
        &self.segments
    }

    /// Converts the path `serde_path_to_error` tracked during deserialization.
    fn from_serde(path: &serde_path_to_error::Path) -> KeyPath {
        use serde_path_to_error::Segment;
        let segments = path
            .iter()
            .filter_map(|segment| match segment {
                Segment::Seq { index } => Some(KeySegment::Index(*index)),
                Segment::Map { key } => Some(KeySegment::Key(key.clone())),
                Segment::Enum { variant } => Some(KeySegment::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect();
        KeyPath { segments }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                KeySegment::Index(index) => write!(f, "[{index}]")?,
                KeySegment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A setting that deserialized but makes no sense, with the path of its key.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{path}: {message}")]
pub struct InvalidSetting {
    /// Where the setting is.
    pub path: KeyPath,
    /// What is wrong with it.
    pub message: String,
}

impl InvalidSetting {
    /// An error about the key at `path`.
    pub fn new(path: KeyPath, message: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            path,
            message: message.into(),
        }
    }

    /// The same error with its path placed under the table `key`.
    pub fn within(self, key: &str) -> InvalidSetting {
        InvalidSetting {
            path: self.path.within(key),
            message: self.message,
        }
    }
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
        validate_core(&self.core).map_err(|e| e.within("core"))?;
        self.security.validate().map_err(|e| e.within("security"))?;
        validate_connectors(&self.connectors)?;
        self.discovery.validate().map_err(|e| e.within("discovery"))
    }
}

/// Reads the TOML file at `path` into `T` and validates it, with [`parse_toml`]'s errors;
/// a file that cannot be read is reported with line 0.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), InvalidSetting>,
) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        key: String::new(),
        message: e.to_string(),
    })?;
    parse_toml(&text, &file, validate)
}

/// Parses TOML text into `T` and validates it, locating every error (syntax, unknown
/// key, wrong type, or a [`InvalidSetting`] from `validate`) by file, line and key path.
/// Other TOML files of the project (simulator scenarios) use it too.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    validate: impl FnOnce(&T) -> Result<(), InvalidSetting>,
) -> Result<T, ConfigError> {
    let error = |line: usize, key: &KeyPath, message: String| ConfigError {
        file: file.to_owned(),
        line,
        key: key.to_string(),
        message,
    };
    let document = DeTable::parse(text).map_err(|e| {
        let (line, key, message) = syntax_error(text, &e);
        error(line, &key, message)
    })?;
    let value: T =
        serde_path_to_error::deserialize(toml::Deserializer::from(document)).map_err(|e| {
            let key = KeyPath::from_serde(e.path());
            let inner = e.into_inner();
            let line = match inner.span() {
                Some(span) => line_of(text, span.start),
                None => locate(text, &key),
            };
            error(line, &key, inner.message().to_owned())
        })?;
    validate(&value)
        .map_err(|invalid| error(locate(text, &invalid.path), &invalid.path, invalid.message))?;
    Ok(value)
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
    for (i, address) in server.listen.iter().enumerate() {
        check_listen(address).map_err(|message| InvalidSetting::new(listen.index(i), message))?;
        if !seen.insert(address.as_str()) {
            return Err(InvalidSetting::new(
                listen.index(i),
                format!("`{address}` is listed twice"),
            ));
        }
    }
    positive(server.write_timeout_ms, "write_timeout_ms")?;
    positive(server.inbox_events_max, "inbox_events_max")
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

/// `[core]`: a usable broker name, non-zero limits, a grace factor of at least 1, a
/// concrete dead-letter queue.
fn validate_core(core: &CoreConfig) -> Result<(), InvalidSetting> {
    let name = &core.broker_name;
    if name.is_empty() {
        return Err(InvalidSetting::new(
            KeyPath::root().key("broker_name"),
            "the broker name is empty",
        ));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(InvalidSetting::new(
            KeyPath::root().key("broker_name"),
            format!("{name:?} must not contain whitespace, control characters or `:`"),
        ));
    }
    validate_limits(&core.limits).map_err(|e| e.within("limits"))?;
    validate_heartbeat(&core.heartbeat).map_err(|e| e.within("heartbeat"))?;
    check_queue_name(&core.dead_letter_queue).map_err(|message| {
        InvalidSetting::new(KeyPath::root().key("dead_letter_queue"), message)
    })?;
    positive(core.queue_prefetch_default, "queue_prefetch_default")?;
    positive(core.topic_prefetch_default, "topic_prefetch_default")
}

/// `[core.limits]`: every limit except `transactions_per_connection_max` (where zero
/// disables transactions) and `redeliveries_max` (where zero means no redelivery) must be
/// greater than zero.
fn validate_limits(limits: &Limits) -> Result<(), InvalidSetting> {
    positive(limits.frame_bytes_max, "frame_bytes_max")?;
    positive(limits.header_count_max, "header_count_max")?;
    positive(limits.header_line_bytes_max, "header_line_bytes_max")?;
    positive(limits.body_bytes_max, "body_bytes_max")?;
    positive(limits.connections_max, "connections_max")?;
    positive(
        limits.subscriptions_per_connection_max,
        "subscriptions_per_connection_max",
    )?;
    positive(
        limits.network_subscriptions_per_connection_max,
        "network_subscriptions_per_connection_max",
    )?;
    positive(limits.transaction_frames_max, "transaction_frames_max")?;
    positive(limits.destinations_max, "destinations_max")?;
    positive(limits.queue_messages_max, "queue_messages_max")?;
    positive(limits.outbound_frames_max, "outbound_frames_max")?;
    positive(limits.prefetch_max, "prefetch_max")?;
    positive(
        limits.network_audit_messages_max,
        "network_audit_messages_max",
    )?;
    positive(
        limits.advisory_backlog_messages_max,
        "advisory_backlog_messages_max",
    )?;
    positive(limits.connect_timeout_ms, "connect_timeout_ms")
}

/// `[core.heartbeat]`: a dead-peer grace factor of at least one interval.
fn validate_heartbeat(heartbeat: &HeartbeatConfig) -> Result<(), InvalidSetting> {
    let factor = heartbeat.grace_factor;
    if !(factor.is_finite() && factor >= 1.0) {
        return Err(InvalidSetting::new(
            KeyPath::root().key("grace_factor"),
            format!(
                "must be a number of at least 1.0 (a peer gets one full interval), not {factor}"
            ),
        ));
    }
    Ok(())
}

/// A concrete queue name, without prefix or wildcards.
fn check_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the queue name is empty".to_owned());
    }
    if name.starts_with('/') {
        return Err(format!(
            "`{name}`: give the queue name without a `/queue/` prefix"
        ));
    }
    if name.contains(',')
        || name
            .split('.')
            .any(|s| s.is_empty() || s == "*" || s == ">")
    {
        return Err(format!(
            "`{name}` is not a queue name (empty segment, wildcard or comma)"
        ));
    }
    Ok(())
}

/// Zero is refused for `key`.
fn positive<T: Default + PartialEq>(value: T, key: &str) -> Result<(), InvalidSetting> {
    if value == T::default() {
        Err(InvalidSetting::new(
            KeyPath::root().key(key),
            "must be greater than zero",
        ))
    } else {
        Ok(())
    }
}

/// The 1-based line that byte `offset` of `text` is on.
fn line_of(text: &str, offset: usize) -> usize {
    // Clamped to the text's length, so the slice below cannot panic.
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of the key at `path`, or of its nearest ancestor that is in the document
/// (line 1 when none is, e.g. for a problem with a default value).
fn locate(text: &str, path: &KeyPath) -> usize {
    let Ok(document) = DeTable::parse(text) else {
        return 1;
    };
    let mut span: Option<Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(document.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for segment in path.segments() {
        let found = match segment {
            KeySegment::Key(key) => table
                .and_then(|t| t.get_key_value(key.as_str()))
                .map(|(k, v)| (k.span(), v)),
            KeySegment::Index(index) => array.and_then(|a| a.get(*index)).map(|v| (v.span(), v)),
        };
        let Some((at, value)) = found else {
            break;
        };
        span = Some(at);
        table = value.get_ref().as_table();
        array = value.get_ref().as_array().map(|a| &a[..]);
    }
    span.map_or(1, |s| line_of(text, s.start))
}

/// Line, best-effort key and message of a TOML syntax error.
fn syntax_error(text: &str, error: &toml::de::Error) -> (usize, KeyPath, String) {
    let mut message = error.message().to_owned();
    let Some(span) = error.span() else {
        return (1, KeyPath::root(), message);
    };
    if message == "duplicate key" {
        if let Some(key) = text.get(span.clone()).filter(|k| !k.is_empty()) {
            message = format!("duplicate key `{key}`");
        }
    }
    let line = line_of(text, span.start);
    (line, syntax_error_key(text, span.start, line), message)
}

/// How well an entry of a partially parsed document explains an error position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    /// A table whose header (or key) comes before the error.
    Enclosing,
    /// A key on the error's line.
    SameLine,
    /// A key or value whose text ends at the error position (a value cut short).
    EndingAt,
    /// A key or value whose text contains the error position.
    Containing,
}

/// The key a syntax error at `offset` (on `line`) most likely belongs to, found in the
/// parser's best-effort recovery of the document.
fn syntax_error_key(text: &str, offset: usize, line: usize) -> KeyPath {
    let (document, _) = DeTable::parse_recoverable(text);
    let mut best: Option<((Fit, usize, usize), KeyPath)> = None;
    let mut consider = |rank: (Fit, usize, usize), path: &KeyPath| {
        if best.as_ref().is_none_or(|(r, _)| rank >= *r) {
            best = Some((rank, path.clone()));
        }
    };
    let mut visit = |path: &KeyPath, key: Option<Range<usize>>, value: &Spanned<DeValue<'_>>| {
        let depth = path.segments().len();
        let contains = |s: &Range<usize>| s.start <= offset && offset < s.end;
        let ends_at = |s: &Range<usize>| s.end == offset;
        let span = value.span();
        if key.as_ref().is_some_and(contains) || contains(&span) {
            consider((Fit::Containing, depth, span.start), path);
        } else if key.as_ref().is_some_and(ends_at) || ends_at(&span) {
            // The outermost value cut short is the one left unclosed.
            consider((Fit::EndingAt, usize::MAX - depth, span.start), path);
        } else if key.as_ref().is_some_and(|k| line_of(text, k.start) == line) {
            consider((Fit::SameLine, depth, span.start), path);
        } else if value.get_ref().is_table() && span.start <= offset {
            // The latest header wins; its span ends after those of its implicit parents.
            consider((Fit::Enclosing, span.end, depth), path);
        }
    };
    walk(document.get_ref(), &KeyPath::root(), &mut visit);
    best.map(|(_, path)| path).unwrap_or_default()
}

/// Calls `visit` with the path, key span and value of every entry below `table`.
fn walk(
    table: &DeTable<'_>,
    at: &KeyPath,
    visit: &mut impl FnMut(&KeyPath, Option<Range<usize>>, &Spanned<DeValue<'_>>),
) {
    for (key, value) in table.iter() {
        let path = at.key(key.get_ref());
        visit(&path, Some(key.span()), value);
        walk_value(value, &path, visit);
    }
}

/// [`walk`] for a value: descends into tables and arrays.
fn walk_value(
    value: &Spanned<DeValue<'_>>,
    at: &KeyPath,
    visit: &mut impl FnMut(&KeyPath, Option<Range<usize>>, &Spanned<DeValue<'_>>),
) {
    match value.get_ref() {
        DeValue::Table(table) => walk(table, at, visit),
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let path = at.index(i);
                visit(&path, None, element);
                walk_value(element, &path, visit);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::SlowConsumerPolicy;

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
            at("[core.heartbeat]\ngrace_factor = nan\n"),
            (2, "core.heartbeat.grace_factor".into())
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

    #[test]
    fn key_paths_display_dotted_and_quoted() {
        let path = KeyPath::root()
            .key("security")
            .key("users")
            .index(1)
            .key("groups");
        assert_eq!(path.to_string(), "security.users[1].groups");
        assert_eq!(KeyPath::root().key("a b").key("c").to_string(), "\"a b\".c");
        assert_eq!(
            KeyPath::root().key("x").within("core").to_string(),
            "core.x"
        );
    }

    #[test]
    fn locate_falls_back_to_the_nearest_ancestor() {
        let text = "[core]\nbroker_name = 'b'\n";
        assert_eq!(locate(text, &KeyPath::root().key("core").key("limits")), 1);
        assert_eq!(
            locate(text, &KeyPath::root().key("core").key("broker_name")),
            2
        );
        assert_eq!(locate(text, &KeyPath::root().key("server")), 1);
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("", 0), 1);
        assert_eq!(line_of("a\nb\r\nc", 5), 3);
        assert_eq!(line_of("a\n", 100), 2);
    }
}
