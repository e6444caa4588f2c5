//! Reading: decoding frames and serving what they answer.

use std::io;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::SendOutcome;
use super::*;
use crate::client::events::DisconnectReason;
use crate::client::session::{ConnectError, Incoming, Message};
use crate::proto::{Frame, Item};

impl Driver {
    pub(super) fn on_read(&mut self, result: io::Result<usize>) {
        match result {
            Ok(0) => {
                let reason = match self.io.as_mut().and_then(|io| io.error.take()) {
                    Some(message) => DisconnectReason::ErrorFrame(message),
                    None => DisconnectReason::Eof,
                };
                self.io_ended(reason);
            }
            Ok(_) => {
                if let Some(io) = self.io.as_mut() {
                    io.last_read = Instant::now();
                }
                self.process_input();
            }
            Err(e) => self.io_ended(DisconnectReason::Io(e.to_string())),
        }
    }

    /// Decodes and handles the frames in the input buffer, stopping while a message
    /// waits for room in the message channel.
    pub(super) fn process_input(&mut self) {
        while self.delivery.is_none() {
            let Some(io) = self.io.as_mut() else {
                return;
            };
            match io.decoder.decode(&mut io.rbuf) {
                Ok(None) => return,
                Ok(Some(Item::HeartBeat)) => {}
                Ok(Some(Item::Frame(frame))) => self.on_frame(frame),
                Err(e) => {
                    self.io_ended(DisconnectReason::Io(format!(
                        "invalid frame from the broker: {e}"
                    )));
                    return;
                }
            }
        }
    }

    pub(super) fn on_frame(&mut self, frame: Frame) {
        match self.phase {
            Phase::Handshake { .. } => match self.session.handle_connect_reply(&frame) {
                Ok(negotiated) => self.on_connected(negotiated),
                Err(ConnectError::Refused(message)) => {
                    self.attempt_failed(DisconnectReason::ErrorFrame(message))
                }
                Err(e) => self.attempt_failed(DisconnectReason::Io(format!("protocol error: {e}"))),
            },
            Phase::Up { .. } | Phase::Closing { .. } => {
                let incoming = self.session.handle_frame(frame);
                self.on_incoming(incoming);
            }
            _ => {}
        }
    }

    pub(super) fn on_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Message(m) => self.deliver(m),
            Incoming::Receipt { id, .. } => {
                if let Phase::Closing {
                    receipt: Some(r), ..
                } = self.phase
                {
                    if r == id {
                        self.connection_lost(DisconnectReason::Shutdown);
                        return;
                    }
                }
                if let Some(tx) = self.waiters.remove(&id) {
                    let _ = tx.send(SendOutcome::Confirmed);
                    // A receipt slot is free: receipted operations may be waiting for it.
                    self.pump(Instant::now());
                }
            }
            Incoming::UnknownReceipt(id) => {
                tracing::debug!(receipt = %id, "RECEIPT for an unknown receipt id");
            }
            Incoming::Error {
                message, receipt, ..
            } => {
                let refused = receipt.and_then(|(id, _)| self.waiters.remove(&id));
                match &refused {
                    Some(_) => tracing::debug!(%message, "the broker refused a receipted frame"),
                    None => tracing::warn!(%message, "ERROR frame from the broker"),
                }
                if let Some(io) = self.io.as_mut() {
                    io.error = Some(message.clone());
                }
                if let Some(tx) = refused {
                    let _ = tx.send(SendOutcome::Failed(message));
                    self.pump(Instant::now());
                }
            }
            Incoming::Unexpected(frame) => {
                tracing::warn!(command = %frame.command, "unexpected frame from the broker");
            }
        }
    }

    pub(super) fn deliver(&mut self, message: Message) {
        if self.messages_closed {
            return;
        }
        match self.messages.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(m)) => {
                if matches!(self.phase, Phase::Closing { .. }) {
                    tracing::debug!("message dropped while disconnecting: the channel is full");
                } else {
                    self.delivery = Some(m);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.messages_closed = true,
        }
    }

    pub(super) fn on_deliverable(
        &mut self,
        permit: Result<mpsc::OwnedPermit<Message>, mpsc::error::SendError<()>>,
    ) {
        match permit {
            Ok(p) => {
                if let Some(m) = self.delivery.take() {
                    p.send(m);
                }
            }
            Err(_) => {
                self.messages_closed = true;
                self.delivery = None;
            }
        }
        // Reading was paused; silence meanwhile says nothing about the broker.
        if let Some(io) = self.io.as_mut() {
            io.last_read = Instant::now();
        }
        self.process_input();
    }
}
