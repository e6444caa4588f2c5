//! What a [`Client`] handle asks its driver task: commands and the operations they carry.

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{ClientError, SendOutcome};
use crate::client::session::{AckInfo, ReceiptId, SubscribeSpec, SubscriptionId};
use crate::proto::{Frame, Headers};

/// A command from a [`Client`] handle.
pub(super) enum Cmd {
    Op(Queued),
    Subscribe {
        spec: SubscribeSpec,
        reply: oneshot::Sender<Result<SubscriptionId, ClientError>>,
    },
    Unsubscribe {
        id: SubscriptionId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// An operation waiting to be written, with its deadline.
pub(super) struct Queued {
    pub(super) op: Op,
    pub(super) deadline: Option<Instant>,
}

pub(super) type Done = oneshot::Sender<Result<(), ClientError>>;

/// An operation that writes a frame.
pub(super) enum Op {
    Send(SendOp),
    /// SUBSCRIBE for a subscription made while connection `connection` was open.
    Subscribe {
        id: SubscriptionId,
        connection: u64,
    },
    /// UNSUBSCRIBE built while connection `connection` was open.
    Unsubscribe {
        frame: Frame,
        connection: u64,
    },
    Ack {
        info: AckInfo,
        nack: bool,
        reply: Done,
    },
    Begin {
        tx: String,
        reply: Done,
    },
    Commit {
        tx: String,
        reply: oneshot::Sender<SendOutcome>,
    },
    Abort {
        tx: String,
        reply: Done,
    },
}

impl Op {
    pub(super) fn fail(self, e: ClientError) {
        match self {
            Op::Send(s) => s.reply.fail(e),
            Op::Ack { reply, .. } | Op::Begin { reply, .. } | Op::Abort { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Op::Commit { reply, .. } => {
                let _ = reply.send(SendOutcome::Failed(e.to_string()));
            }
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => {}
        }
    }

    /// Whether writing it asks for a receipt.
    pub(super) fn wants_receipt(&self) -> bool {
        matches!(
            self,
            Op::Send(SendOp {
                reply: SendReply::Receipt(_),
                ..
            }) | Op::Commit { .. }
        )
    }

    /// Whether nobody waits for the outcome any more (the caller's future was dropped).
    pub(super) fn abandoned(&self) -> bool {
        match self {
            Op::Send(s) => s.reply.is_closed(),
            Op::Ack { reply, .. } | Op::Begin { reply, .. } | Op::Abort { reply, .. } => {
                reply.is_closed()
            }
            Op::Commit { reply, .. } => reply.is_closed(),
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => false,
        }
    }
}

pub(super) struct SendOp {
    pub(super) destination: String,
    pub(super) headers: Headers,
    pub(super) body: Bytes,
    pub(super) reply: SendReply,
}

pub(super) enum SendReply {
    Plain(Done),
    Receipt(oneshot::Sender<SendOutcome>),
    /// The receipt waiter moved to `Driver::waiters` under this id.
    Moved(ReceiptId),
}

impl SendReply {
    pub(super) fn fail(self, e: ClientError) {
        match self {
            SendReply::Plain(tx) => {
                let _ = tx.send(Err(e));
            }
            SendReply::Receipt(tx) => {
                let _ = tx.send(SendOutcome::Failed(e.to_string()));
            }
            SendReply::Moved(_) => {}
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        match self {
            SendReply::Plain(tx) => tx.is_closed(),
            SendReply::Receipt(tx) => tx.is_closed(),
            SendReply::Moved(_) => false,
        }
    }
}
