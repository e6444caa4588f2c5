//! STOMP frames as plain data: a command, ordered headers and a binary body.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use bytestring::ByteString;

/// A STOMP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: no header escaping, no heart-beats required, no `id` on SUBSCRIBE.
    V1_0,
    /// STOMP 1.1: `\n \c \\` escaping, heart-beats, NACK, mandatory subscription ids.
    V1_1,
    /// STOMP 1.2: adds `\r` escaping, CRLF line ends and the MESSAGE `ack` header.
    V1_2,
}

impl Version {
    /// All versions, oldest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version's wire spelling, as used in `accept-version` and `version`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Picks the highest version both sides speak from an `accept-version` header.
    ///
    /// A missing header means the client speaks only 1.0. Returns `None` when the client
    /// lists versions but none of them is supported.
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        let Some(list) = accept_version else {
            return Some(Version::V1_0);
        };
        list.split(',')
            .filter_map(|v| v.trim().parse::<Version>().ok())
            .max()
    }
}

impl FromStr for Version {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.0" => Ok(Version::V1_0),
            "1.1" => Ok(Version::V1_1),
            "1.2" => Ok(Version::V1_2),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A STOMP command, client or server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client: open a session.
    Connect,
    /// Client: open a session (1.1+ spelling of CONNECT).
    Stomp,
    /// Client: publish a message.
    Send,
    /// Client: start receiving from a destination.
    Subscribe,
    /// Client: stop receiving.
    Unsubscribe,
    /// Client: acknowledge a message.
    Ack,
    /// Client: refuse a message (1.1+).
    Nack,
    /// Client: start a transaction.
    Begin,
    /// Client: commit a transaction.
    Commit,
    /// Client: roll back a transaction.
    Abort,
    /// Client: end the session.
    Disconnect,
    /// Server: the session is open.
    Connected,
    /// Server: a message for a subscription.
    Message,
    /// Server: a frame that asked for a receipt was processed.
    Receipt,
    /// Server: something went wrong.
    Error,
}

impl Command {
    /// The command's wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Parses a command line (without its line end). Unknown commands give `None`.
    pub fn from_bytes(line: &[u8]) -> Option<Command> {
        Some(match line {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// CONNECT, STOMP and CONNECTED headers are never escaped (STOMP 1.2 §"Value Encoding").
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ordered frame headers. Repeated names are kept; lookups return the first, as the
/// STOMP specification requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(ByteString, ByteString)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// An empty header list with room for `n` entries.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    /// The first header called `name`, as the shared string it was decoded into.
    pub fn get_shared(&self, name: &str) -> Option<&ByteString> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Whether a header called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == name)
    }

    /// Appends a header (after any existing header of the same name).
    pub fn push(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Removes every header called `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(k, _)| k != name);
    }

    /// Headers in wire order, repeats included.
    pub fn iter(&self) -> impl Iterator<Item = (&ByteString, &ByteString)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The number of header lines, repeats included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Into<ByteString>, V: Into<ByteString>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Headers {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// One STOMP frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The command line.
    pub command: Command,
    /// Headers in wire order.
    pub headers: Headers,
    /// The body; binary, may contain NUL when framed by `content-length`.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Builder-style header append.
    pub fn header(mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) -> Frame {
        self.headers.push(name, value);
        self
    }

    /// Builder-style body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common_version() {
        assert_eq!(Version::negotiate(None), Some(Version::V1_0));
        assert_eq!(Version::negotiate(Some("1.0")), Some(Version::V1_0));
        assert_eq!(Version::negotiate(Some("1.1,1.0")), Some(Version::V1_1));
        assert_eq!(
            Version::negotiate(Some("1.0, 1.2 ,1.1")),
            Some(Version::V1_2)
        );
        assert_eq!(Version::negotiate(Some("2.0")), None);
        assert_eq!(Version::negotiate(Some("2.0,1.1")), Some(Version::V1_1));
    }

    #[test]
    fn first_repeated_header_wins() {
        let h: Headers = [("a", "1"), ("a", "2")].into_iter().collect();
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.len(), 2);
    }
}
