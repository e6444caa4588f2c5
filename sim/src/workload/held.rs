//! Bytes read that a client may not see yet: a lost segment waiting for its
//! retransmission ([`super::link`]), or a chunk the clients' CPU has not got through
//! ([`super::cpu`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::ReadBuf;

/// Bytes taken back from a read, handed over when a timer fires.
pub(super) struct Held {
    bytes: Vec<u8>,
    until: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Held {
    /// Takes back what the last read put into `buf` after `before` bytes; it is handed
    /// over when `until` is ready.
    pub(super) fn take(
        buf: &mut ReadBuf<'_>,
        before: usize,
        until: impl Future<Output = ()> + Send + 'static,
    ) -> Held {
        let bytes = buf.filled()[before..].to_vec();
        buf.set_filled(before);
        Held {
            bytes,
            until: Box::pin(until),
        }
    }

    /// Once the timer has fired, hands over as much as `buf` takes; `true` when nothing
    /// is left. Pending (the timer registered to wake the task) before.
    pub(super) fn poll_hand_over(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<bool> {
        ready!(self.poll_due(cx));
        Poll::Ready(self.hand_over(buf))
    }

    /// Ready once the timer has fired (and again at every later poll).
    pub(super) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.until.as_mut().poll(cx)
    }

    /// Holds `more` after the bytes already held, until `until` is ready (with `None`,
    /// until the timer already set: it may have fired, and stays ready).
    pub(super) fn top_up(
        &mut self,
        more: &[u8],
        until: Option<impl Future<Output = ()> + Send + 'static>,
    ) {
        self.bytes.extend_from_slice(more);
        if let Some(until) = until {
            self.until = Box::pin(until);
        }
    }

    /// Hands over as much as `buf` takes, timer or not; `true` when nothing is left.
    pub(super) fn hand_over(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let n = self.bytes.len().min(buf.remaining());
        buf.put_slice(&self.bytes[..n]);
        self.bytes.drain(..n);
        self.bytes.is_empty()
    }
}
