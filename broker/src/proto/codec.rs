//! Incremental STOMP decoder and encoder (pure; no I/O).
//!
//! Placeholder: the decoder and encoder are being written.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use super::frame::{Frame, Version};

/// Size limits enforced while decoding; exceeding one is a [`DecodeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Whole frame (command, headers and body) in bytes.
    pub frame_bytes_max: usize,
    /// Header lines per frame.
    pub header_count_max: usize,
    /// One header line in bytes.
    pub header_line_bytes_max: usize,
    /// Body in bytes.
    pub body_bytes_max: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            frame_bytes_max: 16 * 1024 * 1024,
            header_count_max: 1000,
            header_line_bytes_max: 10 * 1024,
            body_bytes_max: 16 * 1024 * 1024 - 64 * 1024,
        }
    }
}

/// What the decoder found at the front of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// A bare end-of-line between frames (a heart-beat).
    HeartBeat,
}

/// Why a byte stream is not valid STOMP. Every variant ends the connection.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame grew past `frame_bytes_max`.
    #[error("frame exceeds {limit} bytes")]
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },
}

/// Incremental decoder; keeps no state between frames except the negotiated version.
#[derive(Clone, Debug)]
pub struct Decoder {
    limits: FrameLimits,
    version: Option<Version>,
}

impl Decoder {
    /// A decoder that has not seen CONNECT yet.
    pub fn new(limits: FrameLimits) -> Decoder {
        Decoder {
            limits,
            version: None,
        }
    }

    /// Sets the negotiated version, which decides header unescaping.
    pub fn set_version(&mut self, version: Version) {
        self.version = Some(version);
    }

    /// Decodes one item from the front of `buf`, consuming its bytes.
    /// `Ok(None)` means more bytes are needed.
    pub fn decode(&mut self, _buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        let _ = self.limits;
        unimplemented!("decoder")
    }
}

/// Appends the wire form of `frame` for a session speaking `version`.
pub fn encode(frame: &Frame, _version: Version, buf: &mut BytesMut) {
    buf.put_slice(frame.command.as_str().as_bytes());
    unimplemented!("encoder")
}

/// Appends one `name:value` header line, escaped for `version` when `escape` is set.
pub fn encode_header(buf: &mut BytesMut, name: &str, value: &str, version: Version, escape: bool) {
    let esc = |buf: &mut BytesMut, s: &str| {
        if !escape || version == Version::V1_0 {
            buf.put_slice(s.as_bytes());
            return;
        }
        for b in s.bytes() {
            match b {
                b'\\' => buf.put_slice(b"\\\\"),
                b'\n' => buf.put_slice(b"\\n"),
                b':' => buf.put_slice(b"\\c"),
                b'\r' if version == Version::V1_2 => buf.put_slice(b"\\r"),
                _ => buf.put_u8(b),
            }
        }
    };
    esc(buf, name);
    buf.put_u8(b':');
    esc(buf, value);
    buf.put_u8(b'\n');
}
