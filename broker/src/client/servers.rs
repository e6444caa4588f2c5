//! Server addresses and server lists: what the failover client connects to.
//!
//! [`ServerList`] is never empty. URIs that produce a list (`tcp://`, `failover:(…)`) are
//! parsed in [`uri`](super::uri).

use std::fmt;
use std::slice;

/// One broker to connect to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// STOMP `login` header; `None` sends no login.
    pub login: Option<String>,
    /// STOMP `passcode` header; `None` sends no passcode.
    pub passcode: Option<String>,
    /// TLS settings for an `ssl://` server; `None` for plain TCP.
    pub tls: Option<crate::tls::ClientTls>,
}

impl ServerAddr {
    /// A server without credentials.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            login: None,
            passcode: None,
            tls: None,
        }
    }

    /// The same server over TLS with `tls`.
    pub fn with_tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same server with the given credentials.
    pub fn with_credentials(mut self, login: Option<String>, passcode: Option<String>) -> Self {
        self.login = login;
        self.passcode = passcode;
        self
    }
}

/// Shows `host:port` (`[v6]:port` for IPv6); never the credentials.
impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Masks the passcode so that debug logs do not leak it.
impl fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAddr")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("login", &self.login)
            .field("passcode", &self.passcode.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// An attempt to build an empty [`ServerList`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a server list needs at least one server")]
pub struct EmptyServerList;

/// A non-empty, ordered list of servers (the "pool"). Policies refer to servers by their
/// index in this list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerList(Vec<ServerAddr>);

impl ServerList {
    /// Fails if `servers` is empty.
    pub fn new(servers: Vec<ServerAddr>) -> Result<Self, EmptyServerList> {
        if servers.is_empty() {
            Err(EmptyServerList)
        } else {
            Ok(Self(servers))
        }
    }

    /// A list of one server.
    pub fn single(server: ServerAddr) -> Self {
        Self(vec![server])
    }

    /// The number of servers (at least 1).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; present for symmetry with [`len`](Self::len).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The server at `index`.
    pub fn get(&self, index: usize) -> Option<&ServerAddr> {
        self.0.get(index)
    }

    /// The servers in order.
    pub fn iter(&self) -> slice::Iter<'_, ServerAddr> {
        self.0.iter()
    }

    /// The servers as a slice.
    pub fn as_slice(&self) -> &[ServerAddr] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a ServerList {
    type Item = &'a ServerAddr;
    type IntoIter = slice::Iter<'a, ServerAddr>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A decimal port number 1–65535.
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_list_is_never_empty() {
        assert_eq!(ServerList::new(Vec::new()), Err(EmptyServerList));
        let l = ServerList::single(ServerAddr::new("h", 1));
        assert_eq!(l.len(), 1);
        assert!(!l.is_empty());
        assert_eq!((&l).into_iter().count(), 1);
        assert_eq!(l.as_slice().len(), 1);
    }
}
