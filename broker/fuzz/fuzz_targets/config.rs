//! The broker's TOML configuration and the simulator's scenarios: arbitrary text gives a
//! configuration or an error naming file, line and key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampede_broker::config::BrokerConfig;
use stampede_sim::scenario::Scenario;

fuzz_target!(|text: &str| {
    let _ = BrokerConfig::parse(text, "fuzz.toml");
    let _ = Scenario::parse(text, "fuzz.toml");
});
