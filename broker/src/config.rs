//! The broker's TOML configuration file and its errors (which name file, line and key).
//!
//! Placeholder: being written.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::CoreConfig;
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
}

/// A configuration error, located in its file.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    /// The file that was read.
    pub file: String,
    /// 1-based line of the offending key (0 when the file could not be read).
    pub line: usize,
    /// Dotted path of the offending key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl BrokerConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: String::new(),
            message: e.to_string(),
        })?;
        BrokerConfig::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<BrokerConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_owned(),
            line: 0,
            key: String::new(),
            message: e.to_string(),
        })
    }
}
