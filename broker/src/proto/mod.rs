//! The STOMP wire protocol: frames, versions and the incremental codec.
//!
//! Everything here is pure: bytes in, frames out (and back). Nothing reads a clock or a
//! socket. The broker core consumes [`Frame`]s; the server shell owns a [`codec::Decoder`]
//! per connection.

pub mod ack;
pub mod codec;
pub mod frame;

pub use ack::AckMode;
pub use codec::{
    DecodeError, Decoder, FrameLimits, Item, encode, encode_body, encode_command, encode_header,
    wants_content_length, write_content_length,
};
pub use frame::{Command, Frame, Headers, Version};
