//! Authentication (users, passwords, groups) and ActiveMQ-style authorization.
//!
//! Placeholder: being written.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::destination::Kind;

/// What a principal wants to do with a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// SUBSCRIBE.
    Read,
    /// SEND.
    Write,
    /// Create the destination (first use).
    Admin,
}

impl Operation {
    /// Lower-case name for error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Admin => "admin",
        }
    }
}

/// An authenticated user (or the anonymous user when authentication is off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The login, if one was given.
    pub user: Option<Arc<str>>,
    /// Groups the user belongs to.
    pub groups: Vec<Arc<str>>,
}

/// Why a CONNECT was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    /// Login missing, unknown, or wrong passcode. Deliberately does not say which.
    #[error("authentication failed for user '{0}'")]
    BadCredentials(String),
}

/// The `[security]` part of the broker configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {}

/// Compiled users, groups and authorization map.
#[derive(Clone, Debug, Default)]
pub struct Security {}

impl Security {
    /// No users and no authorization map: everyone may do everything.
    pub fn open() -> Security {
        Security::default()
    }

    /// Builds from configuration.
    pub fn from_config(_config: &SecurityConfig) -> Security {
        Security::default()
    }

    /// Checks CONNECT credentials.
    pub fn authenticate(
        &self,
        login: Option<&str>,
        _passcode: Option<&str>,
    ) -> Result<Principal, AuthError> {
        Ok(Principal {
            user: login.map(Arc::from),
            groups: Vec::new(),
        })
    }

    /// Whether `principal` may perform `op` on the destination `kind`/`name`.
    pub fn authorize(
        &self,
        _principal: &Principal,
        _op: Operation,
        _kind: Kind,
        _name: &str,
    ) -> bool {
        true
    }
}
