//! RabbitMQ's STOMP conventions on `stampede-broker`, driven by Debian's stomp.py
//! (`tests/interop/stomp_py_rabbitmq.py`): a RabbitMQ-convention vhost chosen by CONNECT's
//! `host` with MCollective's two exchanges, `/exchange/` routing by exchange type,
//! `/temp-queue/` replies through `/reply-queue/`, `/queue/` and `/amq/queue/`, isolation
//! from a second vhost, and an unknown vhost refused. The same script passes against real
//! RabbitMQ 3.10 (`--port 62615 --vhost /` after `scripts/peers/peer start rabbitmq`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Broker, assert_passed, require_python_stomp, run_bounded};

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[core]
broker_name = "interop"
default_vhost = "/mcollective"

[[core.vhosts]]
name = "/mcollective"
convention = "rabbitmq"

[[core.vhosts.exchanges]]
name = "mcollective_broadcast"
type = "topic"

[[core.vhosts.exchanges]]
name = "mcollective_directed"
type = "direct"

[[core.vhosts]]
name = "/other"
convention = "rabbitmq"

[[core.vhosts.exchanges]]
name = "mcollective_broadcast"
type = "topic"

[[core.vhosts.exchanges]]
name = "mcollective_directed"
type = "direct"
"#;

#[test]
fn stomp_py_with_rabbitmq_conventions_in_a_vhost() {
    require_python_stomp();
    let broker = Broker::start_with_config("py-rabbitmq", CONFIG);
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/stomp_py_rabbitmq.py"
    ))
    .args(["--host", &broker.host(), "--port", &broker.port()])
    .args(["--vhost", "/mcollective", "--other-vhost", "/other"])
    .arg("--unknown-vhost-refused");
    let run = run_bounded("stomp.py rabbitmq cases", cmd, Duration::from_secs(150));
    assert_passed(&run, &broker);
}
