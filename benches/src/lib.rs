//! Shared fixtures for the criterion benchmarks in `benches/benches/`.
//!
//! Run them with `cargo bench -p stampede-benches`; see the README for the figures.

use bytes::Bytes;
use stampede_broker::proto::{Command, Frame};

/// A SEND frame shaped like an MCollective request: the headers the stomp gem sends and
/// a binary body of `body_bytes` (with NUL bytes, like Ruby Marshal data).
pub fn mcollective_send(destination: &str, body_bytes: usize) -> Frame {
    let body: Vec<u8> = (0..body_bytes).map(|i| (i % 251) as u8).collect();
    Frame::new(Command::Send)
        .header("timestamp", "1795437413000")
        .header("expires", "1795437483000")
        .header("reply-to", "/queue/mcollective.reply.mco-client_16202.1")
        .header("mc_sender", "mco-client")
        .header("destination", destination)
        .header("content-length", body_bytes.to_string())
        .header("content-type", "text/plain; charset=UTF-8")
        .body(Bytes::from(body))
}
