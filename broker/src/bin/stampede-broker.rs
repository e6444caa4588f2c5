//! `stampede-broker`: the production STOMP broker.

fn main() {}
