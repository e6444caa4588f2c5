//! Incremental STOMP decoder and encoder (pure; no I/O).
//!
//! # Wire format
//!
//! A frame is a command line, zero or more `name:value` header lines, a blank line, a body
//! and a NUL byte. Lines end with LF. Between frames, a bare line end is a heart-beat and is
//! returned as [`Item::HeartBeat`], one item per line end; the `\0\n` that brokers and
//! clients write after each frame therefore yields a frame followed by a heart-beat.
//!
//! The body is framed in one of two ways. When a `content-length` header is present (the
//! first one counts, like every repeated header), exactly that many bytes are read, NULs
//! included, and the next byte must be NUL. Without it, the body ends at the first NUL.
//!
//! Header names and values are unescaped in STOMP 1.1 (`\n`, `\c`, `\\`) and 1.2 (also
//! `\r`); any other escape, or a lone backslash at the end, is an error there. Nothing is
//! unescaped before a version has been negotiated (the CONNECT frame), in 1.0, or in the
//! CONNECT, STOMP and CONNECTED frames of any version, as the specification requires.
//! Header values are never trimmed, and a line without `:` or with an empty name is an
//! error. Names and values must be UTF-8.
//!
//! # Leniencies and deviations
//!
//! * CRLF line ends are accepted in every version, not only 1.2: one CR directly before an
//!   LF is dropped. A CR anywhere else in a line is kept as data.
//! * Raw `:` characters in header values are accepted in every version (only the first
//!   `:` of a line separates the name from the value).
//! * The `content-length` value may be surrounded by spaces or tabs, which are ignored, as
//!   ActiveMQ does; anything else that is not a decimal number is an error.
//! * STOMP 1.0 has no escaping, so the encoder cannot represent a line end inside a header.
//!   Rather than let such a value break the framing, it writes LF and CR as the 1.1-style
//!   escapes `\n` and `\r` (which a 1.0 peer sees literally). The same applies to the
//!   never-escaped CONNECT, STOMP and CONNECTED frames in 1.1 and 1.2. A `:` in a 1.0 header
//!   *name* cannot be represented and is written as is.
//! * In 1.1, which has no `\r` escape, a CR in a header is written raw.
//!
//! # Limits
//!
//! [`FrameLimits`] bounds what a peer can make the decoder buffer. Every limit is reported
//! as soon as the bytes received prove it is exceeded, before the rest of the frame
//! arrives: the whole frame (`frame_bytes_max`, counted from the first byte of the command
//! line through the NUL), each command or header line (`header_line_bytes_max`, counted
//! without its line end), the number of header lines, and the body (`body_bytes_max`;
//! checked against `content-length` as soon as the headers end). A command line longer
//! than any command (more than 40 bytes without a line end) is reported as an unknown
//! command right away, so that a TLS or HTTP client on the STOMP port is turned away early.
//!
//! # Incremental decoding
//!
//! [`Decoder::decode`] leaves a partial frame in the buffer and remembers how far it has
//! scanned, so every byte is looked at a bounded number of times however the input is
//! split, and the result never depends on where it was split. Decoded header values and
//! the body are slices of one frozen buffer (zero-copy) unless a value had to be
//! unescaped.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use memchr::memchr;
use thiserror::Error;

use super::frame::{Command, Frame, Headers, Version};

/// The header that frames bodies.
const CONTENT_LENGTH: &str = "content-length";
/// Frames up to this size are copied out of the read buffer (see `Decoder::finish`).
const FRAME_COPY_BYTES_MAX: usize = 8 * 1024;

/// Error payloads quoting peer input are cut to this many characters.
const QUOTE_CHARS_MAX: usize = 40;

/// A command line that has this many bytes and still no line end cannot be a command: the
/// longest command, UNSUBSCRIBE, has 11 bytes. The decoder gives up at this point rather
/// than buffer up to the line limit. It is one more than [`QUOTE_CHARS_MAX`] so that the
/// quoted text never depends on where the input was split.
const COMMAND_PROBE_BYTES: usize = QUOTE_CHARS_MAX + 1;

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
    /// A body of up to 128 MiB, RabbitMQ's default `max_message_size` (3.8 to 3.13) and
    /// more than ActiveMQ's STOMP `maxDataLength` (100 MiB), so that whatever either
    /// accepts by default is accepted here; 1 MiB more for the command and headers. The
    /// broker's memory limits (`limits.memory_bytes_max`, which counts partial frames)
    /// bound what many such frames can hold at once.
    fn default() -> Self {
        FrameLimits {
            frame_bytes_max: 129 * 1024 * 1024,
            header_count_max: 1000,
            header_line_bytes_max: 10 * 1024,
            body_bytes_max: 128 * 1024 * 1024,
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
///
/// The messages are single lines meant for the `message` header of an ERROR frame; text
/// quoted from the peer is sanitized (bytes outside printable ASCII become `\xHH`) and cut
/// to 40 characters.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame grew past `frame_bytes_max`.
    #[error("frame exceeds {limit} bytes")]
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The frame has more than `header_count_max` header lines.
    #[error("frame has more than {limit} headers")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A command or header line is longer than `header_line_bytes_max`.
    #[error("command or header line exceeds {limit} bytes")]
    HeaderLineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The body is longer than `body_bytes_max`.
    #[error("frame body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The command line is not a STOMP command; carries the sanitized command text.
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    /// A header line has no `:` or an empty name; carries the sanitized line.
    #[error("malformed header line '{0}' (expected name:value)")]
    MalformedHeader(String),
    /// A header uses an escape sequence its version does not define; carries the sanitized
    /// line.
    #[error("invalid escape sequence in header line '{0}'")]
    InvalidEscape(String),
    /// The `content-length` value is not a non-negative decimal number; carries the
    /// sanitized value.
    #[error("invalid content-length '{0}'")]
    InvalidContentLength(String),
    /// The byte after `content-length` body bytes is not NUL.
    #[error("frame body is not followed by NUL where content-length says it ends")]
    ContentLengthMismatch,
    /// A header name or value is not valid UTF-8.
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
}

/// Which escape sequences a frame's headers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escaping {
    /// Headers are taken literally.
    None,
    /// `\n`, `\c` and `\\`.
    V1_1,
    /// `\n`, `\c`, `\\` and `\r`.
    V1_2,
}

impl Escaping {
    /// The escaping used for the headers of `command` when `version` has been negotiated.
    fn for_frame(version: Option<Version>, command: Command) -> Escaping {
        if !command.escapes_headers() {
            return Escaping::None;
        }
        match version {
            None | Some(Version::V1_0) => Escaping::None,
            Some(Version::V1_1) => Escaping::V1_1,
            Some(Version::V1_2) => Escaping::V1_2,
        }
    }
}

/// Where the decoder is inside the frame at the front of the buffer.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Expecting a command line or a heart-beat.
    Command,
    /// Reading header lines.
    Headers {
        command: Command,
        escaping: Escaping,
        /// The value of the first `content-length` header, once seen.
        content_length: Option<usize>,
    },
    /// Reading the body, which starts at `body_start`.
    Body {
        command: Command,
        escaping: Escaping,
        body_start: usize,
        content_length: Option<usize>,
    },
}

/// A header line seen in the current frame, as offsets into the buffer.
#[derive(Clone, Copy, Debug)]
struct RawHeader {
    /// The first byte of the name.
    start: usize,
    /// The `:` that ends the name.
    colon: usize,
    /// One past the last byte of the value (line end excluded).
    end: usize,
    /// Whether the name contains escapes to resolve.
    name_escaped: bool,
    /// Whether the value contains escapes to resolve.
    value_escaped: bool,
}

/// One line of the current frame, as offsets into the buffer.
#[derive(Clone, Copy, Debug)]
struct Line {
    /// The first byte of the line.
    start: usize,
    /// One past the last content byte (the line end and one CR before it excluded).
    end: usize,
    /// The first byte after the LF.
    next: usize,
}

/// Incremental decoder; keeps no state between frames except the negotiated version.
///
/// While a frame is incomplete, its bytes stay at the front of the caller's buffer and the
/// decoder records offsets into it; the caller must only append to the buffer between
/// calls. (If it consumes bytes anyway, the decoder starts over at the new front rather
/// than misbehave.)
#[derive(Clone, Debug)]
pub struct Decoder {
    limits: FrameLimits,
    version: Option<Version>,
    phase: Phase,
    /// The first byte of the line being read.
    line_start: usize,
    /// Bytes before this offset have been searched for the current line end or NUL.
    scan: usize,
    /// Headers of the current frame, in wire order.
    headers: Vec<RawHeader>,
    /// Bytes searched in total, for the tests that check decoding is linear.
    #[cfg(test)]
    scanned: usize,
}

impl Decoder {
    /// A decoder that has not seen CONNECT yet.
    pub fn new(limits: FrameLimits) -> Decoder {
        Decoder {
            limits,
            version: None,
            phase: Phase::Command,
            line_start: 0,
            scan: 0,
            headers: Vec::new(),
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// Sets the negotiated version, which decides header unescaping.
    pub fn set_version(&mut self, version: Version) {
        self.version = Some(version);
    }

    /// The negotiated version, if one has been set.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// Decodes one item from the front of `buf`, consuming its bytes.
    /// `Ok(None)` means more bytes are needed.
    ///
    /// A partial frame is left in `buf`; only append to `buf` before calling again. After an
    /// error the stream cannot be resynchronised and the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        if self.scan > buf.len() {
            // The caller consumed bytes of a partial frame; the offsets are meaningless now.
            self.reset();
        }
        let result = self.decode_inner(buf);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Forgets the partial frame (but not the version or the limits).
    fn reset(&mut self) {
        self.phase = Phase::Command;
        self.line_start = 0;
        self.scan = 0;
        self.headers.clear();
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        loop {
            match self.phase {
                Phase::Command => {
                    let Some(line) = self.next_line(buf, true)? else {
                        return Ok(None);
                    };
                    if line.start == line.end {
                        buf.advance(line.next);
                        self.reset();
                        return Ok(Some(Item::HeartBeat));
                    }
                    let text = &buf[line.start..line.end];
                    let command = Command::from_bytes(text)
                        .ok_or_else(|| DecodeError::UnknownCommand(quote(text)))?;
                    self.phase = Phase::Headers {
                        command,
                        escaping: Escaping::for_frame(self.version, command),
                        content_length: None,
                    };
                    self.line_start = line.next;
                    self.scan = line.next;
                }
                Phase::Headers {
                    command,
                    escaping,
                    content_length,
                } => {
                    if self.headers.len() >= self.limits.header_count_max
                        && self.header_line_started(buf)
                    {
                        return Err(DecodeError::TooManyHeaders {
                            limit: self.limits.header_count_max,
                        });
                    }
                    let Some(line) = self.next_line(buf, false)? else {
                        return Ok(None);
                    };
                    self.line_start = line.next;
                    self.scan = line.next;
                    if line.start == line.end {
                        self.start_body(command, escaping, line.next, content_length)?;
                        continue;
                    }
                    let header = parse_header(buf, line, escaping)?;
                    if content_length.is_none()
                        && &buf[header.start..header.colon] == CONTENT_LENGTH.as_bytes()
                    {
                        let length = parse_content_length(&buf[header.colon + 1..header.end])?;
                        self.phase = Phase::Headers {
                            command,
                            escaping,
                            content_length: Some(length),
                        };
                    }
                    self.headers.push(header);
                }
                Phase::Body {
                    command,
                    escaping,
                    body_start,
                    content_length,
                } => {
                    let body_end = match content_length {
                        Some(length) => {
                            // `start_body` checked that this sum fits in `frame_bytes_max`.
                            let nul = body_start + length;
                            match buf.get(nul) {
                                None => return Ok(None),
                                Some(0) => nul,
                                Some(_) => return Err(DecodeError::ContentLengthMismatch),
                            }
                        }
                        None => match self.find_nul(buf, body_start)? {
                            Some(nul) => nul,
                            None => return Ok(None),
                        },
                    };
                    return self
                        .finish(buf, command, escaping, body_start, body_end)
                        .map(|frame| Some(Item::Frame(frame)));
                }
            }
        }
    }

    /// Enters the body phase after the blank line, checking a declared length against the
    /// limits before any body byte is buffered.
    fn start_body(
        &mut self,
        command: Command,
        escaping: Escaping,
        body_start: usize,
        content_length: Option<usize>,
    ) -> Result<(), DecodeError> {
        if let Some(length) = content_length {
            if length > self.limits.body_bytes_max {
                return Err(DecodeError::BodyTooLarge {
                    limit: self.limits.body_bytes_max,
                });
            }
            // The frame is the bytes before the body, the body and the NUL.
            let frame_len = body_start
                .checked_add(length)
                .and_then(|n| n.checked_add(1));
            if frame_len.is_none_or(|n| n > self.limits.frame_bytes_max) {
                return Err(DecodeError::FrameTooLarge {
                    limit: self.limits.frame_bytes_max,
                });
            }
        }
        self.phase = Phase::Body {
            command,
            escaping,
            body_start,
            content_length,
        };
        self.scan = body_start;
        Ok(())
    }

    /// Finds the end of the line that starts at `self.line_start`.
    ///
    /// Only bytes that can still belong to an acceptable line are searched, so the outcome
    /// depends on the bytes alone, not on how many of them have arrived: if a limit is
    /// proven exceeded by some byte, every split of the input reports the same error.
    fn next_line(&mut self, buf: &[u8], command_line: bool) -> Result<Option<Line>, DecodeError> {
        let start = self.line_start;
        let line_max = self.limits.header_line_bytes_max;
        let frame_max = self.limits.frame_bytes_max;
        // A line end at `start + line_max + 1` is still acceptable if a CR precedes it.
        let line_cap = start.saturating_add(line_max).saturating_add(2);
        let mut window_end = buf.len().min(frame_max).min(line_cap);
        if command_line {
            window_end = window_end.min(start.saturating_add(COMMAND_PROBE_BYTES));
        }
        let from = self.scan.max(start);
        if from < window_end {
            let found = memchr(b'\n', &buf[from..window_end]);
            #[cfg(test)]
            {
                self.scanned += found.map_or(window_end - from, |i| i + 1);
            }
            if let Some(i) = found {
                let lf = from + i;
                let end = if lf > start && buf[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                if end - start > line_max {
                    return Err(DecodeError::HeaderLineTooLong { limit: line_max });
                }
                return Ok(Some(Line {
                    start,
                    end,
                    next: lf + 1,
                }));
            }
            self.scan = window_end;
        }

        // No line end yet. Find the earliest byte, if any, that already proves an error.
        let too_long_at = start.saturating_add(line_max);
        let line_witness = if window_end > too_long_at && buf[too_long_at] != b'\r' {
            // One content byte too many, and it is not a CR that an LF could follow.
            Some(too_long_at)
        } else if window_end > too_long_at.saturating_add(1) {
            // A CR in the last allowed place, but no LF after it.
            Some(too_long_at.saturating_add(1))
        } else {
            None
        };
        let command_witness = (command_line
            && window_end >= start.saturating_add(COMMAND_PROBE_BYTES))
        .then(|| start.saturating_add(COMMAND_PROBE_BYTES - 1));
        match (line_witness, command_witness) {
            (Some(line_at), Some(command_at)) if command_at < line_at => {
                return Err(self.unknown_long_command(buf));
            }
            (Some(_), _) => return Err(DecodeError::HeaderLineTooLong { limit: line_max }),
            (None, Some(_)) => return Err(self.unknown_long_command(buf)),
            (None, None) => {}
        }
        if window_end == frame_max && buf.len() > frame_max {
            return Err(DecodeError::FrameTooLarge { limit: frame_max });
        }
        Ok(None)
    }

    /// Whether the bytes at `self.line_start` already show a header line rather than the
    /// blank line (LF or CRLF) that ends the headers. This lets a frame with too many
    /// headers fail at the first byte of the extra line; since it is checked before the
    /// line is read, it does not matter how much of the line has arrived.
    fn header_line_started(&self, buf: &[u8]) -> bool {
        !matches!(
            buf.get(self.line_start..).unwrap_or_default(),
            [] | [b'\n', ..] | [b'\r'] | [b'\r', b'\n', ..]
        )
    }

    /// The error for a command line that grew too long to be a command.
    fn unknown_long_command(&self, buf: &[u8]) -> DecodeError {
        let start = self.line_start;
        let end = buf.len().min(start.saturating_add(QUOTE_CHARS_MAX));
        DecodeError::UnknownCommand(quote(buf.get(start..end).unwrap_or_default()))
    }

    /// Searches for the NUL that ends a body without `content-length`, resuming where the
    /// previous call stopped.
    fn find_nul(&mut self, buf: &[u8], body_start: usize) -> Result<Option<usize>, DecodeError> {
        let frame_max = self.limits.frame_bytes_max;
        // Seeing the byte at `body_start + body_bytes_max` without a NUL before it proves
        // the body too large.
        let body_cap = body_start
            .saturating_add(self.limits.body_bytes_max)
            .saturating_add(1);
        let window_end = buf.len().min(frame_max).min(body_cap);
        let from = self.scan.max(body_start);
        if from < window_end {
            let found = memchr(0, &buf[from..window_end]);
            #[cfg(test)]
            {
                self.scanned += found.map_or(window_end - from, |i| i + 1);
            }
            if let Some(i) = found {
                return Ok(Some(from + i));
            }
            self.scan = window_end;
        }
        if window_end == body_cap {
            return Err(DecodeError::BodyTooLarge {
                limit: self.limits.body_bytes_max,
            });
        }
        if window_end == frame_max && buf.len() > frame_max {
            return Err(DecodeError::FrameTooLarge { limit: frame_max });
        }
        Ok(None)
    }

    /// Cuts the complete frame off the front of `buf` and builds it.
    fn finish(
        &mut self,
        buf: &mut BytesMut,
        command: Command,
        escaping: Escaping,
        body_start: usize,
        body_end: usize,
    ) -> Result<Frame, DecodeError> {
        // Headers and body are slices of the frame's bytes. A small frame is first copied
        // out of the read buffer: as slices of it, a queued message would keep the whole
        // read chunk alive (16 KiB for a 100-byte frame), which the broker's byte limits
        // would not see.
        let bytes = if body_end < FRAME_COPY_BYTES_MAX {
            let frame = Bytes::copy_from_slice(&buf[..=body_end]);
            buf.advance(body_end + 1);
            frame
        } else {
            buf.split_to(body_end + 1).freeze()
        };
        let mut headers = Headers::with_capacity(self.headers.len());
        for raw in &self.headers {
            let name = header_string(&bytes, raw.start, raw.colon, raw.name_escaped, escaping)?;
            let value = header_string(&bytes, raw.colon + 1, raw.end, raw.value_escaped, escaping)?;
            headers.push(name, value);
        }
        let body = bytes.slice(body_start..body_end);
        self.reset();
        Ok(Frame {
            command,
            headers,
            body,
        })
    }
}

/// Splits and checks one header line: separator, escapes and UTF-8.
fn parse_header(buf: &[u8], line: Line, escaping: Escaping) -> Result<RawHeader, DecodeError> {
    let text = &buf[line.start..line.end];
    let colon = match memchr(b':', text) {
        Some(i) if i > 0 => line.start + i,
        _ => return Err(DecodeError::MalformedHeader(quote(text))),
    };
    let name = &buf[line.start..colon];
    let value = &buf[colon + 1..line.end];
    let bad_escape = |_| DecodeError::InvalidEscape(quote(text));
    let name_escaped = check_escapes(name, escaping).map_err(bad_escape)?;
    let value_escaped = check_escapes(value, escaping).map_err(bad_escape)?;
    // Escape sequences are ASCII, so checking the raw bytes checks the decoded text too.
    if std::str::from_utf8(name).is_err() || std::str::from_utf8(value).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(RawHeader {
        start: line.start,
        colon,
        end: line.end,
        name_escaped,
        value_escaped,
    })
}

/// Checks that every backslash in `raw` starts an escape `escaping` defines. Returns
/// whether there is anything to unescape.
fn check_escapes(raw: &[u8], escaping: Escaping) -> Result<bool, ()> {
    if escaping == Escaping::None {
        return Ok(false);
    }
    let mut found = false;
    let mut rest = raw;
    while let Some(i) = memchr(b'\\', rest) {
        match rest.get(i + 1) {
            Some(b'n' | b'c' | b'\\') => {}
            Some(b'r') if escaping == Escaping::V1_2 => {}
            _ => return Err(()),
        }
        found = true;
        rest = &rest[i + 2..];
    }
    Ok(found)
}

/// Resolves the escapes in `raw`, which [`check_escapes`] accepted.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..i]);
        match rest.get(i + 1) {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'c') => out.push(b':'),
            Some(b'\\') => out.push(b'\\'),
            // `check_escapes` rejected everything else; keeping the bytes is harmless.
            Some(&other) => out.extend_from_slice(&[b'\\', other]),
            None => out.push(b'\\'),
        }
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out
}

/// Builds a header name or value from `bytes[start..end]`, sharing the frame's buffer when
/// there is nothing to unescape.
fn header_string(
    bytes: &Bytes,
    start: usize,
    end: usize,
    escaped: bool,
    escaping: Escaping,
) -> Result<ByteString, DecodeError> {
    if escaped && escaping != Escaping::None {
        String::from_utf8(unescape(&bytes[start..end]))
            .map(ByteString::from)
            .map_err(|_| DecodeError::InvalidUtf8)
    } else {
        ByteString::try_from(bytes.slice(start..end)).map_err(|_| DecodeError::InvalidUtf8)
    }
}

/// Parses a `content-length` value: decimal digits, optionally surrounded by spaces or
/// tabs.
fn parse_content_length(raw: &[u8]) -> Result<usize, DecodeError> {
    let invalid = || DecodeError::InvalidContentLength(quote(raw));
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t');
    let first = raw.iter().position(|b| !is_blank(b)).unwrap_or(raw.len());
    let last = raw
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(first, |i| i + 1);
    let digits = &raw[first..last];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    digits
        .iter()
        .try_fold(0usize, |n, &d| {
            n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        })
        .ok_or_else(invalid)
}

/// Quotes peer bytes in an error: printable ASCII as is, anything else as `\xHH`, cut
/// (between characters) to [`QUOTE_CHARS_MAX`] characters.
fn quote(raw: &[u8]) -> String {
    let mut out = String::with_capacity(QUOTE_CHARS_MAX);
    for &b in raw {
        let width = if (0x20..0x7f).contains(&b) { 1 } else { 4 };
        if out.len() + width > QUOTE_CHARS_MAX {
            break;
        }
        if width == 1 {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Byte classes for the encoder: which bytes each escaping mode rewrites.
const CLASS_LINE_END: u8 = 1;
/// The STOMP 1.1 escapes.
const CLASS_V1_1: u8 = 2;
/// The STOMP 1.2 escapes.
const CLASS_V1_2: u8 = 4;

/// For every byte, the modes (`CLASS_*` bits) that must escape it.
static ESCAPE_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'\n' as usize] = CLASS_LINE_END | CLASS_V1_1 | CLASS_V1_2;
    table[b'\r' as usize] = CLASS_LINE_END | CLASS_V1_2;
    table[b':' as usize] = CLASS_V1_1 | CLASS_V1_2;
    table[b'\\' as usize] = CLASS_V1_1 | CLASS_V1_2;
    table
};

/// Appends `raw` to `buf`, escaping the bytes of class `mask`. Text without such bytes is
/// scanned once and copied once.
fn put_escaped(buf: &mut BytesMut, raw: &[u8], mask: u8) {
    let mut rest = raw;
    while let Some(i) = rest
        .iter()
        .position(|&b| ESCAPE_CLASS[usize::from(b)] & mask != 0)
    {
        let (plain, special) = rest.split_at(i);
        buf.put_slice(plain);
        let Some((&b, after)) = special.split_first() else {
            break;
        };
        buf.put_slice(match b {
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b':' => b"\\c",
            _ => b"\\\\",
        });
        rest = after;
    }
    buf.put_slice(rest);
}

/// Appends one header line, `name:value` and LF, escaped for `version`.
///
/// `escape` says whether the frame's command escapes its headers at all (see
/// [`Command::escapes_headers`]); when it does not, or in 1.0, only LF and CR are rewritten
/// (as `\n` and `\r`) so that a value can never break the framing.
pub fn encode_header(buf: &mut BytesMut, name: &str, value: &str, version: Version, escape: bool) {
    let mask = match (version, escape) {
        (Version::V1_1, true) => CLASS_V1_1,
        (Version::V1_2, true) => CLASS_V1_2,
        _ => CLASS_LINE_END,
    };
    buf.reserve(name.len() + value.len() + 2);
    put_escaped(buf, name.as_bytes(), mask);
    buf.put_u8(b':');
    put_escaped(buf, value.as_bytes(), mask);
    buf.put_u8(b'\n');
}

/// Appends the command line.
pub fn encode_command(buf: &mut BytesMut, command: Command) {
    buf.put_slice(command.as_str().as_bytes());
    buf.put_u8(b'\n');
}

/// Appends a `content-length:<length>` header line.
pub fn write_content_length(buf: &mut BytesMut, length: usize) {
    // A u64 has at most 20 decimal digits.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = length as u64;
    loop {
        at -= 1;
        // The remainder is below 10, so the cast is exact.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.reserve(CONTENT_LENGTH.len() + 2 + digits.len() - at);
    buf.put_slice(CONTENT_LENGTH.as_bytes());
    buf.put_u8(b':');
    buf.put_slice(&digits[at..]);
    buf.put_u8(b'\n');
}

/// Appends the blank line that ends the headers, the body and the NUL.
pub fn encode_body(buf: &mut BytesMut, body: &[u8]) {
    buf.reserve(body.len() + 2);
    buf.put_u8(b'\n');
    buf.put_slice(body);
    buf.put_u8(0);
}

/// Whether [`encode`] writes a `content-length` header: always for MESSAGE and ERROR (so
/// that receivers never scan bodies for NUL), and for other commands when there is a body.
pub fn wants_content_length(command: Command, body_len: usize) -> bool {
    body_len > 0 || matches!(command, Command::Message | Command::Error)
}

/// Appends the wire form of `frame` for a session speaking `version`.
///
/// Headers are written in order, except that every `content-length` header of the frame is
/// dropped and one correct `content-length` is written after the others when
/// [`wants_content_length`] says so. A frame can be assembled piecewise with the same
/// result from [`encode_command`], [`encode_header`], [`write_content_length`] and
/// [`encode_body`].
pub fn encode(frame: &Frame, version: Version, buf: &mut BytesMut) {
    let escape = frame.command.escapes_headers();
    let header_bytes: usize = frame
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2)
        .sum();
    // Command line, headers, content-length (at most 36 bytes), blank line, body and NUL.
    buf.reserve(frame.command.as_str().len() + 1 + header_bytes + 36 + frame.body.len() + 2);
    encode_command(buf, frame.command);
    for (name, value) in frame.headers.iter() {
        if name == CONTENT_LENGTH {
            continue;
        }
        encode_header(buf, name, value, version, escape);
    }
    if wants_content_length(frame.command, frame.body.len()) {
        write_content_length(buf, frame.body.len());
    }
    encode_body(buf, &frame.body);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything a run of the decoder produced.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        items: Vec<Item>,
        error: Option<DecodeError>,
        /// Bytes left in the buffer at the end (zero after an error).
        left: usize,
    }

    /// Feeds `chunks` one after the other, draining the decoder after each.
    fn run(version: Option<Version>, limits: FrameLimits, chunks: &[&[u8]]) -> Outcome {
        let mut decoder = Decoder::new(limits);
        if let Some(version) = version {
            decoder.set_version(version);
        }
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break,
                    Err(error) => {
                        return Outcome {
                            items,
                            error: Some(error),
                            left: 0,
                        };
                    }
                }
            }
        }
        Outcome {
            items,
            error: None,
            left: buf.len(),
        }
    }

    /// Decodes `input` whole, byte by byte and split in two at every position, checks that
    /// all runs agree and returns the outcome.
    fn decode_all(version: Option<Version>, limits: FrameLimits, input: &[u8]) -> Outcome {
        let whole = run(version, limits, &[input]);
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(version, limits, &bytewise), whole, "byte by byte");
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(run(version, limits, &[a, b]), whole, "split at {at}");
        }
        whole
    }

    /// Decodes `input`, which must be exactly one frame.
    fn one_frame(version: Option<Version>, input: &[u8]) -> Frame {
        let outcome = decode_all(version, FrameLimits::default(), input);
        assert_eq!(outcome.error, None);
        assert_eq!(outcome.left, 0);
        match <[Item; 1]>::try_from(outcome.items) {
            Ok([Item::Frame(frame)]) => frame,
            other => panic!("expected one frame, got {other:?}"),
        }
    }

    /// Decodes `input`, which must fail without producing anything first.
    fn error_with(version: Option<Version>, limits: FrameLimits, input: &[u8]) -> DecodeError {
        let outcome = decode_all(version, limits, input);
        assert_eq!(outcome.items, vec![], "items before the error");
        outcome.error.expect("an error")
    }

    fn error_of(version: Option<Version>, input: &[u8]) -> DecodeError {
        error_with(version, FrameLimits::default(), input)
    }

    /// Feeds `input` once, whole, and returns what the first decode call says.
    fn decode_once(limits: FrameLimits, input: &[u8]) -> Result<Option<Item>, DecodeError> {
        Decoder::new(limits).decode(&mut BytesMut::from(input))
    }

    fn headers(frame: &Frame) -> Vec<(&str, &str)> {
        frame.headers.iter().map(|(k, v)| (&**k, &**v)).collect()
    }

    const ALL: [Option<Version>; 4] = [
        None,
        Some(Version::V1_0),
        Some(Version::V1_1),
        Some(Version::V1_2),
    ];

    #[test]
    fn decodes_command_headers_and_body() {
        let frame = one_frame(None, b"SEND\ndestination:/queue/a\nreceipt:7\n\nhello\0");
        assert_eq!(frame.command, Command::Send);
        assert_eq!(
            headers(&frame),
            [("destination", "/queue/a"), ("receipt", "7")]
        );
        assert_eq!(&frame.body[..], b"hello");
    }

    #[test]
    fn decodes_frame_without_headers_or_body() {
        let frame = one_frame(Some(Version::V1_2), b"DISCONNECT\n\n\0");
        assert_eq!(frame, Frame::new(Command::Disconnect));
    }

    #[test]
    fn every_command_is_recognised() {
        for command in [
            Command::Connect,
            Command::Stomp,
            Command::Send,
            Command::Subscribe,
            Command::Unsubscribe,
            Command::Ack,
            Command::Nack,
            Command::Begin,
            Command::Commit,
            Command::Abort,
            Command::Disconnect,
            Command::Connected,
            Command::Message,
            Command::Receipt,
            Command::Error,
        ] {
            let input = format!("{command}\n\n\0");
            assert_eq!(one_frame(None, input.as_bytes()).command, command);
        }
    }

    #[test]
    fn bare_line_ends_are_heart_beats() {
        let outcome = decode_all(
            Some(Version::V1_1),
            FrameLimits::default(),
            b"\n\r\nSEND\n\nx\0\n\nRECEIPT\nreceipt-id:1\n\n\0\r\n",
        );
        let send = Frame::new(Command::Send).body(&b"x"[..]);
        let receipt = Frame::new(Command::Receipt).header("receipt-id", "1");
        assert_eq!(
            outcome,
            Outcome {
                items: vec![
                    Item::HeartBeat,
                    Item::HeartBeat,
                    Item::Frame(send),
                    Item::HeartBeat,
                    Item::HeartBeat,
                    Item::Frame(receipt),
                    Item::HeartBeat,
                ],
                error: None,
                left: 0,
            }
        );
    }

    #[test]
    fn a_lone_cr_waits_for_its_lf() {
        let outcome = decode_all(None, FrameLimits::default(), b"\r");
        assert_eq!((outcome.items.len(), outcome.left), (0, 1));
        assert_eq!(
            error_of(None, b"\rX\n"),
            DecodeError::UnknownCommand("\\x0dX".into())
        );
    }

    #[test]
    fn crlf_line_ends_are_accepted_in_every_version() {
        for version in ALL {
            let frame = one_frame(version, b"SEND\r\ndestination:/q\r\nx:y\r\n\r\nbody\r\n\0");
            assert_eq!(headers(&frame), [("destination", "/q"), ("x", "y")]);
            // Line ends in the body are data.
            assert_eq!(&frame.body[..], b"body\r\n");
        }
    }

    #[test]
    fn only_one_cr_before_lf_is_stripped() {
        for version in ALL {
            let frame = one_frame(version, b"SEND\na:b\r\r\nc:d\re\n\n\0");
            assert_eq!(headers(&frame), [("a", "b\r"), ("c", "d\re")]);
        }
    }

    #[test]
    fn repeated_headers_are_kept_and_the_first_wins() {
        let frame = one_frame(Some(Version::V1_2), b"SEND\nfoo:1\nbar:x\nfoo:2\n\n\0");
        assert_eq!(frame.headers.get("foo"), Some("1"));
        assert_eq!(headers(&frame), [("foo", "1"), ("bar", "x"), ("foo", "2")]);
    }

    #[test]
    fn content_length_allows_nul_in_the_body() {
        let frame = one_frame(None, b"SEND\ncontent-length:6\n\na\0b\0c\0\0");
        assert_eq!(&frame.body[..], b"a\0b\0c\0");
        let frame = one_frame(None, b"SEND\ncontent-length:0\n\n\0");
        assert!(frame.body.is_empty());
    }

    #[test]
    fn first_content_length_wins() {
        let frame = one_frame(None, b"SEND\ncontent-length:3\ncontent-length:1\n\na\0c\0");
        assert_eq!(&frame.body[..], b"a\0c");
        // A later, invalid repeat is ignored too.
        let frame = one_frame(None, b"SEND\ncontent-length:1\ncontent-length:x\n\na\0");
        assert_eq!(&frame.body[..], b"a");
        assert_eq!(frame.headers.len(), 2);
    }

    #[test]
    fn content_length_must_be_followed_by_nul() {
        assert_eq!(
            error_of(None, b"SEND\ncontent-length:2\n\nabc\0"),
            DecodeError::ContentLengthMismatch
        );
        assert_eq!(
            error_of(None, b"SEND\ncontent-length:4\n\nab\0\n\n"),
            DecodeError::ContentLengthMismatch
        );
    }

    #[test]
    fn content_length_must_be_a_decimal_number() {
        for value in [
            "",
            " ",
            "abc",
            "-1",
            "+1",
            "1.5",
            "0x10",
            "1 2",
            "99999999999999999999999",
        ] {
            let input = format!("SEND\ncontent-length:{value}\n\n\0");
            assert_eq!(
                error_of(None, input.as_bytes()),
                DecodeError::InvalidContentLength(value.into()),
                "{value:?}"
            );
        }
        // Escapes are not digits even where they would be resolved.
        assert!(matches!(
            error_of(Some(Version::V1_2), b"SEND\ncontent-length:1\\n\n\n\0"),
            DecodeError::InvalidContentLength(_)
        ));
        // Surrounding blanks are tolerated, as ActiveMQ does.
        let frame = one_frame(None, b"SEND\ncontent-length: 2\t\n\nab\0");
        assert_eq!(&frame.body[..], b"ab");
        assert_eq!(frame.headers.get("content-length"), Some(" 2\t"));
    }

    #[test]
    fn stomp_1_1_escapes_are_resolved() {
        let frame = one_frame(
            Some(Version::V1_1),
            b"MESSAGE\nna\\cme:a\\nb\\cc\\\\d\nplain:x\n\n\0",
        );
        assert_eq!(headers(&frame), [("na:me", "a\nb:c\\d"), ("plain", "x")]);
        assert_eq!(
            error_of(Some(Version::V1_1), b"SEND\na:b\\r\n\n\0"),
            DecodeError::InvalidEscape("a:b\\r".into())
        );
    }

    #[test]
    fn stomp_1_2_escapes_are_resolved() {
        let frame = one_frame(Some(Version::V1_2), b"SEND\nk\\r:a\\r\\n\\c\\\\\\\\\n\n\0");
        assert_eq!(headers(&frame), [("k\r", "a\r\n:\\\\")]);
    }

    #[test]
    fn undefined_escapes_are_errors_in_1_1_and_1_2() {
        for version in [Version::V1_1, Version::V1_2] {
            for line in ["a:\\t", "a:b\\", "a\\:b", "a:\\\\\\", "\\x:1", "a:\\C"] {
                let input = format!("SEND\n{line}\n\n\0");
                assert_eq!(
                    error_of(Some(version), input.as_bytes()),
                    DecodeError::InvalidEscape(line.into()),
                    "{version} {line:?}"
                );
            }
        }
    }

    #[test]
    fn nothing_is_unescaped_before_a_version_in_1_0_or_in_connect_frames() {
        let raw = b"a\\nb\\t\\";
        for (version, command) in [
            (None, "SEND"),
            (None, "CONNECT"),
            (Some(Version::V1_0), "SEND"),
            (Some(Version::V1_0), "MESSAGE"),
            (Some(Version::V1_1), "CONNECT"),
            (Some(Version::V1_2), "CONNECT"),
            (Some(Version::V1_2), "STOMP"),
            (Some(Version::V1_2), "CONNECTED"),
        ] {
            let mut input = format!("{command}\nk\\c:").into_bytes();
            input.extend_from_slice(raw);
            input.extend_from_slice(b"\n\n\0");
            let frame = one_frame(version, &input);
            assert_eq!(headers(&frame), [("k\\c", "a\\nb\\t\\")], "{command}");
        }
    }

    #[test]
    fn header_values_are_not_trimmed() {
        for version in ALL {
            let frame = one_frame(version, b"SEND\n x : a b \nempty:\n\n\0");
            assert_eq!(headers(&frame), [(" x ", " a b "), ("empty", "")]);
        }
    }

    #[test]
    fn colons_in_values_are_kept() {
        for version in ALL {
            let frame = one_frame(version, b"SEND\nmessage-id:ID:host-1:2:3\n\n\0");
            assert_eq!(headers(&frame), [("message-id", "ID:host-1:2:3")]);
        }
    }

    #[test]
    fn header_lines_need_a_name_and_a_colon() {
        assert_eq!(
            error_of(None, b"SEND\nno-colon\n\n\0"),
            DecodeError::MalformedHeader("no-colon".into())
        );
        assert_eq!(
            error_of(Some(Version::V1_2), b"SEND\n:value\n\n\0"),
            DecodeError::MalformedHeader(":value".into())
        );
        // Detected as soon as the line is complete.
        assert_eq!(
            decode_once(FrameLimits::default(), b"SEND\nno-colon\n"),
            Err(DecodeError::MalformedHeader("no-colon".into()))
        );
    }

    #[test]
    fn unknown_commands_are_quoted() {
        for (input, quoted) in [
            (&b"FOO\n"[..], "FOO"),
            (b"send\n\n\0", "send"),
            (b"SEND \n\n\0", "SEND "),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1"),
            (b"\0\n", "\\x00"),
            (b"S\xc3\xa9ND\n", "S\\xc3\\xa9ND"),
        ] {
            assert_eq!(
                error_of(None, input),
                DecodeError::UnknownCommand(quoted.into())
            );
        }
    }

    #[test]
    fn long_command_lines_are_rejected_early() {
        // A TLS ClientHello has no line end anywhere near its start.
        let mut hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec();
        hello.extend(std::iter::repeat_n(b'A', 60));
        let error = error_of(None, &hello);
        let DecodeError::UnknownCommand(quoted) = &error else {
            panic!("{error:?}");
        };
        assert!(quoted.starts_with("\\x16\\x03\\x01"), "{quoted}");
        assert!(quoted.len() <= 40);
        // Forty-one bytes without a line end are enough to decide.
        assert_eq!(decode_once(FrameLimits::default(), &hello[..40]), Ok(None));
        assert!(decode_once(FrameLimits::default(), &hello[..41]).is_err());
        // A forty-byte line is still looked at as a whole.
        let line = [b'X'; 40];
        let mut input = line.to_vec();
        input.push(b'\n');
        assert_eq!(
            error_of(None, &input),
            DecodeError::UnknownCommand("X".repeat(40))
        );
    }

    #[test]
    fn header_names_and_values_must_be_utf8() {
        assert_eq!(
            error_of(None, b"SEND\na:\xff\n\n\0"),
            DecodeError::InvalidUtf8
        );
        assert_eq!(
            error_of(Some(Version::V1_2), b"SEND\n\xc3:b\n\n\0"),
            DecodeError::InvalidUtf8
        );
        // Detected before the body arrives.
        assert_eq!(
            decode_once(FrameLimits::default(), b"SEND\na:\xff\n"),
            Err(DecodeError::InvalidUtf8)
        );
        let frame = one_frame(
            Some(Version::V1_1),
            "SEND\nnäme:vä\\nlue €\n\n\0".as_bytes(),
        );
        assert_eq!(headers(&frame), [("näme", "vä\nlue €")]);
    }

    fn limits(frame: usize, count: usize, line: usize, body: usize) -> FrameLimits {
        FrameLimits {
            frame_bytes_max: frame,
            header_count_max: count,
            header_line_bytes_max: line,
            body_bytes_max: body,
        }
    }

    #[test]
    fn frame_size_is_limited_before_the_frame_is_buffered() {
        let limits = limits(32, 100, 100, 100);
        // Exactly 32 bytes is fine.
        let exact = b"SEND\nabcdefghij:klmnopqrst\n\nxyz\0";
        assert_eq!(exact.len(), 32);
        let outcome = decode_all(None, limits, exact);
        assert_eq!((outcome.items.len(), outcome.error), (1, None));
        // One body byte more, and the thirty-third byte already proves it.
        let over = b"SEND\nabcdefghij:klmnopqrst\n\nxyzw\0";
        let too_large = DecodeError::FrameTooLarge { limit: 32 };
        assert_eq!(error_with(None, limits, over), too_large);
        assert_eq!(decode_once(limits, &over[..32]), Ok(None));
        assert_eq!(decode_once(limits, &over[..33]), Err(too_large.clone()));
        // Within the headers, too.
        let long_headers = b"SEND\nabcdefghij:klmnopqrst\nuvwxyz:";
        assert_eq!(decode_once(limits, long_headers), Err(too_large.clone()));
        // A declared body that cannot fit fails as soon as the headers end.
        assert_eq!(
            decode_once(limits, b"SEND\ncontent-length:13\n\n"),
            Err(too_large.clone())
        );
        let ok = decode_all(None, limits, b"SEND\ncontent-length:6\n\n\0\0\0\0\0\0\0");
        assert_eq!((ok.items.len(), ok.error), (1, None));
        // Heart-beats do not count towards the next frame.
        let mut input = vec![b'\n'; 100];
        input.extend_from_slice(exact);
        let outcome = decode_all(None, limits, &input);
        assert_eq!((outcome.items.len(), outcome.error), (101, None));
    }

    #[test]
    fn header_lines_are_limited_before_their_line_end() {
        let limits = limits(1000, 100, 16, 1000);
        let too_long = DecodeError::HeaderLineTooLong { limit: 16 };
        // Sixteen bytes, with LF or CRLF, are fine.
        for input in [
            &b"SEND\nabcdefg:12345678\n\n\0"[..],
            b"SEND\nabcdefg:12345678\r\n\n\0",
        ] {
            let outcome = decode_all(None, limits, input);
            assert_eq!((outcome.items.len(), outcome.error), (1, None));
        }
        // Seventeen are not, and the seventeenth byte proves it unless it is a CR.
        assert_eq!(
            error_with(None, limits, b"SEND\nabcdefgh:12345678\n\n\0"),
            too_long
        );
        assert_eq!(
            decode_once(limits, b"SEND\nabcdefgh:12345678"),
            Err(too_long.clone())
        );
        assert_eq!(decode_once(limits, b"SEND\nabcdefg:12345678\r"), Ok(None));
        assert_eq!(
            decode_once(limits, b"SEND\nabcdefg:12345678\rx"),
            Err(too_long.clone())
        );
        // The command line counts too.
        let tiny = self::limits(1000, 100, 4, 1000);
        assert_eq!(decode_all(None, tiny, b"SEND\n\n\0").error, None);
        assert_eq!(
            error_with(None, tiny, b"DISCONNECT\n\n\0"),
            DecodeError::HeaderLineTooLong { limit: 4 }
        );
    }

    #[test]
    fn header_count_is_limited() {
        let limits = limits(1000, 2, 100, 1000);
        let outcome = decode_all(None, limits, b"SEND\na:1\nb:2\n\n\0");
        assert_eq!((outcome.items.len(), outcome.error), (1, None));
        let too_many = DecodeError::TooManyHeaders { limit: 2 };
        assert_eq!(
            error_with(None, limits, b"SEND\na:1\nb:2\nc:3\n\n\0"),
            too_many
        );
        // The first byte of the extra line is enough, unless it may start the blank line.
        assert_eq!(
            decode_once(limits, b"SEND\na:1\nb:2\nc"),
            Err(too_many.clone())
        );
        assert_eq!(decode_once(limits, b"SEND\na:1\nb:2\n\r"), Ok(None));
        assert_eq!(decode_once(limits, b"SEND\na:1\nb:2\n\rc"), Err(too_many));
        let outcome = decode_all(None, limits, b"SEND\na:1\nb:2\r\n\r\n\0");
        assert_eq!((outcome.items.len(), outcome.error), (1, None));
    }

    #[test]
    fn body_size_is_limited() {
        let limits = limits(1000, 100, 100, 8);
        let too_large = DecodeError::BodyTooLarge { limit: 8 };
        for input in [
            &b"SEND\n\n12345678\0"[..],
            b"SEND\ncontent-length:8\n\n12345678\0",
        ] {
            let outcome = decode_all(None, limits, input);
            assert_eq!((outcome.items.len(), outcome.error), (1, None));
        }
        assert_eq!(error_with(None, limits, b"SEND\n\n123456789\0"), too_large);
        assert_eq!(decode_once(limits, b"SEND\n\n12345678"), Ok(None));
        assert_eq!(
            decode_once(limits, b"SEND\n\n123456789"),
            Err(too_large.clone())
        );
        // A declared length is checked before any body byte arrives.
        assert_eq!(
            decode_once(limits, b"SEND\ncontent-length:9\n\n"),
            Err(too_large.clone())
        );
        assert_eq!(
            decode_once(limits, b"SEND\ncontent-length:99999999999999999999\n\n"),
            Err(DecodeError::InvalidContentLength(
                "99999999999999999999".into()
            ))
        );
    }

    #[test]
    fn error_messages_are_single_lines() {
        let errors = [
            DecodeError::FrameTooLarge { limit: 5 },
            DecodeError::TooManyHeaders { limit: 6 },
            DecodeError::HeaderLineTooLong { limit: 7 },
            DecodeError::BodyTooLarge { limit: 8 },
            error_of(None, b"B\xffD\r\n"),
            error_of(None, b"SEND\nx\r\n"),
            error_of(Some(Version::V1_1), b"SEND\na:\\r\r\n"),
            error_of(None, b"SEND\ncontent-length:\x01\r\n"),
            DecodeError::ContentLengthMismatch,
            DecodeError::InvalidUtf8,
        ];
        for error in errors {
            let message = error.to_string();
            assert!(!message.is_empty());
            assert!(
                !message.contains(['\n', '\r', '\0']),
                "{message:?} is not a single line"
            );
        }
        assert_eq!(
            DecodeError::FrameTooLarge { limit: 5 }.to_string(),
            "frame exceeds 5 bytes"
        );
        assert_eq!(
            error_of(None, b"B\xffD\r\n").to_string(),
            "unknown command 'B\\xffD'"
        );
    }

    #[test]
    fn small_frames_are_copied_out_of_the_read_buffer_and_large_ones_shared() {
        let small = b"SEND\ndestination:/queue/a\n\nhello\0";
        let mut buf = BytesMut::from(&small[..]);
        let range = buf.as_ptr_range();
        let mut decoder = Decoder::new(FrameLimits::default());
        let Ok(Some(Item::Frame(frame))) = decoder.decode(&mut buf) else {
            panic!("no frame");
        };
        assert!(
            !range.contains(&frame.body.as_ptr()),
            "a small frame pins the buffer"
        );
        assert_eq!(&frame.body[..], b"hello");
        let mut large = b"SEND\ndestination:/queue/a\n\n".to_vec();
        large.extend(std::iter::repeat_n(b'x', FRAME_COPY_BYTES_MAX));
        large.push(0);
        let mut buf = BytesMut::from(&large[..]);
        let range = buf.as_ptr_range();
        let Ok(Some(Item::Frame(frame))) = decoder.decode(&mut buf) else {
            panic!("no frame");
        };
        assert!(
            range.contains(&frame.body.as_ptr()),
            "a large body was copied"
        );
    }

    #[test]
    fn decoded_frames_share_their_bytes() {
        let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/a\nx:a\\nb\n\nhello\0"[..]);
        let mut decoder = Decoder::new(FrameLimits::default());
        decoder.set_version(Version::V1_2);
        let Ok(Some(Item::Frame(frame))) = decoder.decode(&mut buf) else {
            panic!("no frame");
        };
        // One allocation holds the frame: body and header names point into it.
        let start = frame.body.as_ptr() as usize - "SEND\ndestination:/queue/a\nx:a\\nb\n\n".len();
        let range = start as *const u8..(start + 40) as *const u8;
        let inside = |p: *const u8| range.contains(&p);
        let (name, value) = frame.headers.iter().next().expect("a header");
        assert!(inside(name.as_bytes().as_ptr()), "name was copied");
        assert!(inside(value.as_bytes().as_ptr()), "value was copied");
        // An unescaped value cannot be a slice of the input.
        assert_eq!(frame.headers.get("x"), Some("a\nb"));
    }

    #[test]
    fn scanning_is_linear_when_bytes_trickle_in() {
        let body_len = 256 * 1024;
        let mut input = b"SEND\ndestination:/queue/big\n\n".to_vec();
        input.resize(input.len() + body_len, b'b');
        input.push(0);
        let mut decoder = Decoder::new(FrameLimits::default());
        let mut buf = BytesMut::new();
        let mut frames = 0;
        for chunk in input.chunks(3) {
            buf.extend_from_slice(chunk);
            while let Some(item) = decoder.decode(&mut buf).expect("valid") {
                assert!(matches!(item, Item::Frame(ref f) if f.body.len() == body_len));
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
        assert!(
            decoder.scanned <= input.len(),
            "scanned {} bytes for a {}-byte frame",
            decoder.scanned,
            input.len()
        );

        // A long header line, one byte at a time.
        let mut input = b"SEND\nx:".to_vec();
        input.resize(input.len() + 8000, b'v');
        input.extend_from_slice(b"\n\n\0");
        let mut decoder = Decoder::new(FrameLimits::default());
        let mut buf = BytesMut::new();
        for &b in &input {
            buf.extend_from_slice(&[b]);
            let _ = decoder.decode(&mut buf).expect("valid");
        }
        assert!(
            decoder.scanned <= input.len(),
            "scanned {}",
            decoder.scanned
        );
    }

    #[test]
    fn consuming_the_buffer_between_calls_starts_over() {
        let mut decoder = Decoder::new(FrameLimits::default());
        let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/abc"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.clear();
        buf.extend_from_slice(b"ACK\n\n\0");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Item::Frame(Frame::new(Command::Ack))))
        );
    }

    #[test]
    fn decoding_after_an_error_does_not_panic() {
        let mut decoder = Decoder::new(limits(64, 4, 16, 16));
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:3\n\nabcd\0"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::ContentLengthMismatch)
        );
        for _ in 0..3 {
            let _ = decoder.decode(&mut buf);
            buf.extend_from_slice(b"\n\0x");
        }
    }

    fn encoded(frame: &Frame, version: Version) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode(frame, version, &mut buf);
        buf.to_vec()
    }

    #[test]
    fn encoder_escapes_per_version() {
        let frame = Frame::new(Command::Send).header("k:\\", "x:y\nz\\w\rq");
        assert_eq!(
            encoded(&frame, Version::V1_0),
            b"SEND\nk:\\:x:y\\nz\\w\\rq\n\n\0"
        );
        assert_eq!(
            encoded(&frame, Version::V1_1),
            b"SEND\nk\\c\\\\:x\\cy\\nz\\\\w\rq\n\n\0"
        );
        assert_eq!(
            encoded(&frame, Version::V1_2),
            b"SEND\nk\\c\\\\:x\\cy\\nz\\\\w\\rq\n\n\0"
        );
    }

    #[test]
    fn encoder_never_escapes_connect_frames() {
        for command in [Command::Connect, Command::Stomp, Command::Connected] {
            let frame = Frame::new(command).header("host", "a:b\\c\nd");
            let expected = format!("{command}\nhost:a:b\\c\\nd\n\n\0").into_bytes();
            for version in Version::ALL {
                assert_eq!(encoded(&frame, version), expected, "{command} {version}");
            }
        }
    }

    #[test]
    fn encoder_writes_one_correct_content_length() {
        let cases: [(Frame, &[u8]); 6] = [
            (
                Frame::new(Command::Message),
                b"MESSAGE\ncontent-length:0\n\n\0",
            ),
            (Frame::new(Command::Error), b"ERROR\ncontent-length:0\n\n\0"),
            (Frame::new(Command::Send), b"SEND\n\n\0"),
            (
                Frame::new(Command::Send).body(&b"a\0c"[..]),
                b"SEND\ncontent-length:3\n\na\0c\0",
            ),
            (
                Frame::new(Command::Send)
                    .header("content-length", "99")
                    .header("a", "1")
                    .header("content-length", "x"),
                b"SEND\na:1\n\n\0",
            ),
            (
                Frame::new(Command::Message)
                    .header("content-length", "1")
                    .header("destination", "/queue/q")
                    .body(&b"hello"[..]),
                b"MESSAGE\ndestination:/queue/q\ncontent-length:5\n\nhello\0",
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(
                encoded(&frame, Version::V1_2),
                expected,
                "{}",
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[test]
    fn content_length_numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 1234567890, usize::MAX] {
            let mut buf = BytesMut::new();
            write_content_length(&mut buf, n);
            assert_eq!(buf, format!("content-length:{n}\n").as_bytes());
        }
    }

    #[test]
    fn piecewise_encoding_matches_encode() {
        let frame = Frame::new(Command::Message)
            .header("subscription", "s:1")
            .header("destination", "/topic/a")
            .body(&b"xyz"[..]);
        let mut buf = BytesMut::new();
        encode_command(&mut buf, frame.command);
        for (name, value) in frame.headers.iter() {
            encode_header(&mut buf, name, value, Version::V1_1, true);
        }
        write_content_length(&mut buf, frame.body.len());
        encode_body(&mut buf, &frame.body);
        assert_eq!(buf.to_vec(), encoded(&frame, Version::V1_1));
    }

    #[test]
    fn encoded_frames_decode_to_themselves() {
        let frame = Frame::new(Command::Message)
            .header("destination", "/queue/a")
            .header("weird:name", "line1\nline2\\end:x\r")
            .header("weird:name", "second")
            .body(&b"\0binary\0"[..]);
        let decoded = one_frame(Some(Version::V1_2), &encoded(&frame, Version::V1_2));
        assert_eq!(decoded, frame.clone().header("content-length", "8"));
        let frame = Frame::new(Command::Send).header("a", "b:c\\d");
        for version in Version::ALL {
            let decoded = one_frame(Some(version), &encoded(&frame, version));
            assert_eq!(decoded, frame);
        }
    }
}
