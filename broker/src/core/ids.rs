//! Identifier newtypes.

use std::fmt;
use std::sync::Arc;

use crate::destination::Kind;

/// A connection, numbered by the shell (unique for the broker's lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A subscription, numbered by the core in creation order (so the smallest key is the
/// oldest subscription, which decides exclusive-consumer ownership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SubKey(pub(crate) u64);

/// Position of a message in a queue: higher priority first, then arrival order. The
/// sequence number is broker-wide, so a redelivered message returns to its old place even
/// if its queue was collected and created again meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EntryKey {
    /// `9 - priority`, so that ascending order is descending priority.
    pub(crate) rank: u8,
    /// Broker-wide arrival number.
    pub(crate) seq: u64,
}

/// A queue or topic as the core keys it: kind plus broker-wide name (temporary
/// destinations use their internal name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct QueueKey {
    pub(crate) kind: Kind,
    pub(crate) name: Arc<str>,
}

impl QueueKey {
    pub(crate) fn queue(name: &str) -> QueueKey {
        QueueKey {
            kind: Kind::Queue,
            name: Arc::from(name),
        }
    }

    pub(crate) fn display(&self) -> String {
        if self.kind.is_temporary() {
            format!("{}{}", self.kind.remote_prefix(), self.name)
        } else {
            format!("{}{}", self.kind.prefix(), self.name)
        }
    }
}
