//! The SUBSCRIBE `ack` header's values, shared by the broker core, the client and the
//! simulator's scenario files.

use serde::{Deserialize, Serialize};

/// A SUBSCRIBE acknowledgement mode: the values of the `ack` header.
///
/// In TOML and JSON it is written as on the wire (`auto`, `client`, `client-individual`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// The broker considers a message consumed once sent (the default: no `ack` header).
    #[default]
    Auto,
    /// `ack:client`: an ACK acknowledges the message and every earlier one.
    Client,
    /// `ack:client-individual` (STOMP 1.1+): an ACK acknowledges one message.
    ClientIndividual,
}

impl AckMode {
    /// The `ack` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }

    /// The mode an `ack` header value names (exact, case-sensitive match, as in
    /// ActiveMQ), or `None` for any other text.
    pub fn parse(value: &str) -> Option<AckMode> {
        match value {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip() {
        for mode in [AckMode::Auto, AckMode::Client, AckMode::ClientIndividual] {
            assert_eq!(AckMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(AckMode::parse("Client"), None);
        assert_eq!(AckMode::parse(""), None);
        assert_eq!(AckMode::default(), AckMode::Auto);
    }
}
