//! [`Work`]: what the core did, counted as it does it (plain counters, always on).
//!
//! The core never measures time; it counts operations. A shell that wants to model CPU
//! (the simulator's cost model, `server::cost`) reads [`Broker::work`](super::Broker::work)
//! before and after each `handle_*` call and prices the difference. The counters are
//! monotonic over the broker's life.

use crate::proto::Frame;

/// Operations the core performed, by kind. Monotonic; subtract two readings with
/// [`Work::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// `handle_*` calls (each a wake-up of the core task), except the writers' flush
    /// reports (`handle_flushed`), whose work is the writing priced per frame out.
    pub events: u64,
    /// Frames the shell decoded and handed in (`handle_frame`).
    pub frames_in: u64,
    /// Bytes of those frames (command, headers and body, as they arrived).
    pub bytes_in: u64,
    /// Frames emitted for encoding (MESSAGE, RECEIPT, CONNECTED, ERROR, advisories).
    pub frames_out: u64,
    /// Bytes of those frames, estimated from headers and body before encoding.
    pub bytes_out: u64,
    /// Heart-beat end-of-lines received or emitted.
    pub heartbeats: u64,
    /// Subscriptions a message was matched against (topic targets, queue consumers
    /// considered).
    pub subscriptions_matched: u64,
    /// JMS selectors evaluated against a message.
    pub selectors_evaluated: u64,
    /// MESSAGE frames delivered to subscriptions.
    pub deliveries: u64,
    /// ACK and NACK frames handled.
    pub acks: u64,
    /// Messages handed to network (demand) subscriptions, to cross a bridge.
    pub bridge_hops: u64,
    /// Connections opened or closed.
    pub connections: u64,
    /// Calls that move data. The core counts the frames (or heart-beats) emitted to a
    /// connection with nothing else waiting to be written: each wakes the connection's
    /// writer for a write of its own, where frames that queue behind one another share
    /// one. Clients' work (the simulator's `[clients]`, a calibration's client side)
    /// counts every read or write that moved a chunk of bytes.
    pub io_calls: u64,
}

impl Work {
    /// How many kinds [`Work::counts`] gives.
    pub const KINDS: usize = 13;

    /// Every kind, in a fixed order, with its name (the profile's keys and the metrics'
    /// names are built from these).
    pub fn counts(&self) -> [(&'static str, u64); Work::KINDS] {
        [
            ("events", self.events),
            ("frames_in", self.frames_in),
            ("bytes_in", self.bytes_in),
            ("frames_out", self.frames_out),
            ("bytes_out", self.bytes_out),
            ("heartbeats", self.heartbeats),
            ("subscriptions_matched", self.subscriptions_matched),
            ("selectors_evaluated", self.selectors_evaluated),
            ("deliveries", self.deliveries),
            ("acks", self.acks),
            ("bridge_hops", self.bridge_hops),
            ("connections", self.connections),
            ("io_calls", self.io_calls),
        ]
    }

    /// The work done between `earlier` and `self` (saturating, so a reset reads as zero).
    #[must_use]
    pub fn since(&self, earlier: &Work) -> Work {
        Work {
            events: self.events.saturating_sub(earlier.events),
            frames_in: self.frames_in.saturating_sub(earlier.frames_in),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            frames_out: self.frames_out.saturating_sub(earlier.frames_out),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            heartbeats: self.heartbeats.saturating_sub(earlier.heartbeats),
            subscriptions_matched: self
                .subscriptions_matched
                .saturating_sub(earlier.subscriptions_matched),
            selectors_evaluated: self
                .selectors_evaluated
                .saturating_sub(earlier.selectors_evaluated),
            deliveries: self.deliveries.saturating_sub(earlier.deliveries),
            acks: self.acks.saturating_sub(earlier.acks),
            bridge_hops: self.bridge_hops.saturating_sub(earlier.bridge_hops),
            connections: self.connections.saturating_sub(earlier.connections),
            io_calls: self.io_calls.saturating_sub(earlier.io_calls),
        }
    }
}

/// A frame's size on the wire, near enough for costing: command, headers, body.
pub(crate) fn frame_bytes(frame: &Frame) -> u64 {
    let headers: usize = frame
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 2)
        .sum();
    (frame.command.as_str().len() + 2 + headers + frame.body.len()) as u64
}
