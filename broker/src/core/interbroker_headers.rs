//! Header names of the network protocol between brokers and their connectors (see
//! [`super::interbroker`] for what they mean together).

/// MESSAGE and SEND: the brokers a message passed through, oldest first,
/// comma-separated. Its length is the message's hop count.
pub const BROKER_PATH_HEADER: &str = "stampede-broker-path";
/// MESSAGE and SEND: the message's id at the first broker.
pub const ORIGIN_ID_HEADER: &str = "stampede-origin-id";

/// SUBSCRIBE: marks a demand subscription for consumers on the named broker.
pub const NETWORK_BROKER: &str = "stampede.network-broker";
/// SUBSCRIBE: the broker path of the demand (the consumer's own path plus the broker
/// named by [`NETWORK_BROKER`]); published in this subscription's advisories.
pub const NETWORK_PATH: &str = "stampede.broker-path";
/// SUBSCRIBE: hops a message may have made and still be delivered (default 1).
pub const NETWORK_MESSAGE_TTL: &str = "stampede.message-ttl";
/// SUBSCRIBE: `true` lets stranded queue messages go back (see the module docs).
pub const NETWORK_REPLAY: &str = "stampede.replay-when-no-consumers";
/// SUBSCRIBE on an advisory topic: `true` replays the current consumers first.
pub const ADVISORY_REPLAY: &str = "stampede.advisory-replay";

/// Advisory: `add`, `remove` or `replay-end`.
pub const ADVISORY_ACTION: &str = "advisory-action";
/// Advisory: the name of the broker that published it.
pub const ADVISORY_BROKER: &str = "advisory-broker";
/// Advisory: the consumer's id, unique among this broker's consumers.
pub const CONSUMER_ID: &str = "consumer-id";
/// Advisory: the consumer's destination as its client wrote it.
pub const CONSUMER_DESTINATION: &str = "consumer-destination";
/// Advisory: the consumer's selector, if it has one.
pub const CONSUMER_SELECTOR: &str = "consumer-selector";
/// Advisory: the consumer's broker path (absent for a local consumer).
pub const CONSUMER_BROKER_PATH: &str = "consumer-broker-path";
/// Advisory: the length of the consumer's broker path.
pub const CONSUMER_HOPS: &str = "consumer-hops";
/// Advisory: the consumer's `activemq.priority`.
pub const CONSUMER_PRIORITY: &str = "consumer-priority";
