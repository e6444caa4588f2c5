//! `stampede load` of a Roboconf deployment against two real stampede-broker processes
//! with RabbitMQ's conventions: the agents and the DM read their server from Roboconf's
//! messaging text (which names scenario brokers, mapped onto the target's servers), and a
//! run-time change of that text moves every client to the second broker.
//!
//! Asserts that every agent got its model and imports, that the DM called none PROBLEM,
//! that every client switched, and, from the brokers' own metrics, that both brokers
//! served every client.

// Live mode against real brokers: the test waits on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::broker_bin;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stampede_sim::live::scrape;

const SCENARIO: &str = r#"
name = "live-roboconf"
description = "Roboconf DM and 20 agents moved from broker-1 to broker-2 at run time."
duration_s = 14
middleware = "rabbitmq"

[[brokers]]
name = "broker-1"
[[brokers]]
name = "broker-2"

[[racks]]
name = "rack-1"
nodes = 20
servers = ["broker-1"]
start_spread_s = 1

[workload.roboconf]
domain = "live"
dm = "dm"
applications = 2
tiers = 2
heartbeat_interval_s = 2
model_bytes = 2048
notification_bytes = 200
messaging = """
net.roboconf.messaging.type = rabbitmq
net.roboconf.messaging.rabbitmq.server.ip = http://broker-1:61613
net.roboconf.messaging.rabbitmq.server.username = roboconf
net.roboconf.messaging.rabbitmq.server.password = roboconf
"""

[[workload.roboconf.reconfigure]]
at_s = 6
spread_s = 2
messaging = """
net.roboconf.messaging.type = rabbitmq
message-server-ip = http://broker-2
message-server-username = roboconf
message-server-password = roboconf
"""

[expectations]
roboconf_ready_ratio_min = 1.0
roboconf_dm_problems_max = 0
"#;

/// The RabbitMQ-convention vhost `/` with the exchanges Roboconf declares for domain
/// `live` and two applications.
fn broker_config(port: u16, metrics: u16, name: &str) -> String {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n\
         [core]\nbroker_name = \"{name}\"\ndefault_vhost = \"/\"\n\n\
         [[core.vhosts]]\nname = \"/\"\nconvention = \"rabbitmq\"\n"
    );
    for x in ["live.roboconf.dm", "live.app-0.agents", "live.app-1.agents"] {
        c.push_str(&format!(
            "\n[[core.vhosts.exchanges]]\nname = \"{x}\"\ntype = \"topic\"\n"
        ));
    }
    c
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("bound").port()
}

/// A stampede-broker process, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    metrics: u16,
}

impl Broker {
    fn start(dir: &Path, name: &str) -> Broker {
        let (port, metrics) = (free_port(), free_port());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, broker_config(port, metrics, name)).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(broker_bin())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("stampede-broker starts");
        let b = Broker {
            child,
            port,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{name} never listened on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    /// The value of metric `name` (`stampede_<name>`), read as `stampede load --metrics`
    /// reads it.
    fn metric(&self, name: &str) -> u64 {
        let text = scrape::get(&format!("127.0.0.1:{}", self.metrics)).expect("metrics");
        let value = scrape::parse(&text).get(name).copied();
        value.unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_roboconf_deployment_moves_between_real_brokers_when_its_messaging_text_changes() {
    let dir = std::env::temp_dir().join(format!("stampede-live-roboconf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (b1, b2) = (Broker::start(&dir, "b1"), Broker::start(&dir, "b2"));
    let scenario = dir.join("live-roboconf.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out_dir: PathBuf = dir.join("report");
    let target = format!(
        "failover:(tcp://127.0.0.1:{},tcp://127.0.0.1:{})",
        b1.port, b2.port
    );
    let out = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(["load", scenario.to_str().unwrap(), "--target", &target])
        .args([
            "--target-kind",
            "stampede",
            "--warmup",
            "0",
            "--duration",
            "12",
        ])
        .args(["--quiet", "--out", out_dir.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("stampede runs");
    let said = format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "stampede load failed: {said}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let r = &summary["roboconf"];
    assert_eq!(r["agents"], 20, "{said}");
    assert_eq!(r["ready"], 20, "{said}");
    assert_eq!(r["dm_problems"], 0, "{said}");
    assert_eq!(r["models"], 20, "{said}");
    assert!(r["imports"].as_u64().unwrap() > 0, "{said}");
    // Every agent and the DM switched once.
    assert_eq!(r["reconfigured"], 21, "{said}");
    // Both real brokers served every client: the first before the switch, the second
    // after it (heartbeats went on there).
    assert!(b1.metric("connections_opened_total") >= 21, "{said}");
    assert!(b2.metric("connections_opened_total") >= 21, "{said}");
    assert!(b2.metric("messages_received_total") >= 21, "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
