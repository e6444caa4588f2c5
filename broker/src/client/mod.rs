//! The failover STOMP client: server lists, reconnect policies, session and driver.
