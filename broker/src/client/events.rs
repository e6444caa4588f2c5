//! Client events as plain data, for logs and for the simulation harness's assertions.

use std::fmt;
use std::time::Duration;

/// Why a connection ended or an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The broker closed the TCP connection (read EOF).
    Eof,
    /// A read or write failed.
    Io(String),
    /// No data arrived within the negotiated heart-beat window.
    HeartbeatTimeout,
    /// The broker sent an ERROR frame (its `message` header).
    ErrorFrame(String),
    /// TCP connect plus CONNECT/CONNECTED took longer than the connect timeout.
    ConnectTimeout,
    /// The TCP connection was refused or could not be opened.
    ConnectFailed(String),
    /// The application asked the client to disconnect.
    Shutdown,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Eof => f.write_str("connection closed by the broker"),
            DisconnectReason::Io(e) => write!(f, "I/O error: {e}"),
            DisconnectReason::HeartbeatTimeout => f.write_str("heart-beat timeout"),
            DisconnectReason::ErrorFrame(m) => write!(f, "ERROR frame: {m}"),
            DisconnectReason::ConnectTimeout => f.write_str("connect timeout"),
            DisconnectReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DisconnectReason::Shutdown => f.write_str("shut down"),
        }
    }
}

/// Something the failover client did. Servers are indices into its
/// [`ServerList`](super::servers::ServerList).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// About to wait `delay`, then try `server` (the `number`th attempt since start-up or
    /// the last successful connection).
    Attempt {
        /// The server to try.
        server: usize,
        /// The attempt number, from 1.
        number: u32,
        /// The wait before the attempt.
        delay: Duration,
    },
    /// CONNECTED received from `server`.
    Connected {
        /// The server.
        server: usize,
    },
    /// The connection, or the attempt in progress, ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// Subscriptions replayed after a (re)connect: emitted once the replayed SUBSCRIBE
    /// frames have been written to the socket, not when they were queued.
    Resubscribed {
        /// How many SUBSCRIBE frames were sent.
        count: usize,
    },
    /// Connected to a different server than the one last connected to.
    Failover {
        /// The previous server.
        from: usize,
        /// The new server.
        to: usize,
    },
}

impl From<super::policy::Attempt> for ClientEvent {
    fn from(a: super::policy::Attempt) -> Self {
        ClientEvent::Attempt {
            server: a.server,
            number: a.number,
            delay: a.delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::policy::Attempt;

    #[test]
    fn attempt_converts_and_compares() {
        let a = Attempt {
            server: 2,
            delay: Duration::from_millis(10),
            number: 3,
        };
        let e = ClientEvent::from(a);
        assert_eq!(
            e,
            ClientEvent::Attempt {
                server: 2,
                number: 3,
                delay: Duration::from_millis(10)
            }
        );
        assert_ne!(e, ClientEvent::Connected { server: 2 });
        let d = ClientEvent::Disconnected {
            reason: DisconnectReason::Io("reset".into()),
        };
        assert_eq!(d.clone(), d);
        assert_eq!(
            DisconnectReason::Io("reset".into()).to_string(),
            "I/O error: reset"
        );
    }
}
