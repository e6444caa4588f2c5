//! The broker state machine (sans-IO).

mod config;

pub use config::{CoreConfig, HeartbeatConfig, Limits, SlowConsumerPolicy};
