//! What a STOMP transaction holds until COMMIT: its buffered operations.

use super::SharedMessage;
use super::ids::{QueueKey, SubKey};

/// An operation buffered in a transaction.
#[derive(Debug)]
pub(crate) enum TxOp {
    Send(QueueKey, SharedMessage),
    Ack {
        sub: SubKey,
        tag: u64,
        kind: AckKind,
    },
}

/// What an ACK or NACK asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckKind {
    /// Consumed.
    Ack,
    /// Refused: back to the queue, or (with `requeue:false`) to the dead-letter queue.
    Nack { requeue: bool },
}
