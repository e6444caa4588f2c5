//! Two `stampede-broker` processes linked by network connectors over real TCP, with
//! Debian's stomp.py (`python3-stomp`) clients on each side exchanging queue and topic
//! messages both ways, including a selector consumer on the far side
//! (`tests/interop/stomp_py_network.py`).
//!
//! Broker A carries MCollective's recommended layout towards B: a duplex topics connector
//! (conduit) and a duplex queues connector (non-conduit, selectors kept). B has no
//! connector at all.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Broker, assert_passed, require_python_stomp, run_bounded};

const SCRIPT_WATCHDOG_SECS: u64 = 90;

fn broker_b() -> String {
    "[server]\nlisten = [\"127.0.0.1:0\"]\n[core]\nbroker_name = \"B\"\n".to_owned()
}

fn broker_a(b_port: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[core]
broker_name = "A"

[[connectors]]
name = "topics"
uri = "static:(tcp://127.0.0.1:{b_port})?initialReconnectDelay=100&maxReconnectDelay=1000"
duplex = true
network_ttl = 2
conduit_subscriptions = true
excluded_destinations = ["/queue/>"]

[[connectors]]
name = "queues"
uri = "static:(tcp://127.0.0.1:{b_port})?initialReconnectDelay=100&maxReconnectDelay=1000"
duplex = true
network_ttl = 2
conduit_subscriptions = false
excluded_destinations = ["/topic/>"]
"#
    )
}

#[test]
fn python_clients_exchange_messages_across_a_bridge() {
    require_python_stomp();
    let b = Broker::start_with_config("network-b", &broker_b());
    let a = Broker::start_with_config("network-a", &broker_a(&b.port()));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/stomp_py_network.py"
    );
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .args([
            "--host",
            "127.0.0.1",
            "--port-a",
            &a.port(),
            "--port-b",
            &b.port(),
        ])
        .args(["--timeout", &SCRIPT_WATCHDOG_SECS.to_string()]);
    let run = run_bounded(
        "stomp.py across a bridge",
        cmd,
        Duration::from_secs(SCRIPT_WATCHDOG_SECS + 30),
    );
    if !run.success() {
        eprintln!("--- broker B log ---\n{}", b.log_tail(60));
    }
    assert_passed(&run, &a);
    assert!(
        a.log_tail(200).contains("remote broker identified"),
        "A's bridges should have found B:\n{}",
        a.log_tail(60)
    );
}
