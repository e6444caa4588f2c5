//! `stampede load --faults-via`: a scenario's broker crash applied to real stampede-broker
//! processes (two instances started by `scripts/peers/peer` on loopback ports that were
//! free when the test began), with `scripts/peers/peer fault` as the command.
//!
//! Asserts that the crash and the restart ran at their times, that the nodes on the
//! crashed broker failed over and the run's report shows the fault window, that the
//! crashed broker is running again afterwards, and that a fault command that fails fails
//! the run. Everything the test started is stopped when it ends, also when it fails.

// Live mode against real brokers: elapsed times are on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{broker_bin, repo};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stampede_reports::read_report;

/// Two brokers; 20 nodes start on broker-1 and fail over to broker-2 when it crashes, 2 s
/// after the queue workload (on broker-2, so nothing it sends is lost) started; broker-1
/// restarts 3 s later.
const SCENARIO: &str = r#"
name = "live-failover"
description = "Live failover test: broker-1 crashes and restarts."
duration_s = 10

[[brokers]]
name = "broker-1"
[[brokers]]
name = "broker-2"

[[racks]]
name = "rack-1"
nodes = 20
servers = ["broker-1", "broker-2"]
heartbeat_s = 30
start_spread_s = 1

[[workload.queues]]
name = "work"
destination = "/queue/live-failover.work"
producers = 1
consumers = 1
rate_per_s = 50
message_bytes = 128
receipts = true
ack = "client-individual"
producer_servers = ["broker-2", "broker-1"]
consumer_servers = ["broker-2", "broker-1"]
policy = "activemq"
reconnect = { randomize = false }

[[faults]]
at_s = 4
kind = "crash"
target = ["broker-1"]
duration_s = 3

[expectations]
failover_count_min = 20
lost_max = 0
unexpected_max = 0
"#;

/// A loopback port that is free, and so is the one 100 above it (instance 2's).
fn free_pair() -> (TcpListener, TcpListener) {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = a.local_addr().expect("bound").port();
        if port > u16::MAX - 100 {
            continue;
        }
        if let Ok(b) = TcpListener::bind(("127.0.0.1", port + 100)) {
            return (a, b);
        }
    }
}

/// Two stampede-broker instances; both stopped when dropped.
struct Pair {
    state: PathBuf,
    /// The peer script's environment: the ports, and any other settings.
    ports: Vec<(&'static str, String)>,
}

impl Pair {
    /// Starts the pair; `name` keeps its state apart from other tests' pairs.
    fn start(name: &str) -> Pair {
        Pair::start_with(name, &[])
    }

    /// Starts the pair with more of the peer script's settings (`env`).
    fn start_with(name: &str, env: &[(&'static str, &str)]) -> Pair {
        let stomp = free_pair();
        let metrics = free_pair();
        let mut ports = vec![
            (
                "STAMPEDE_PORT",
                stomp.0.local_addr().unwrap().port().to_string(),
            ),
            (
                "STAMPEDE_METRICS_PORT",
                metrics.0.local_addr().unwrap().port().to_string(),
            ),
        ];
        ports.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
        drop((stomp, metrics));
        let state = std::env::temp_dir().join(format!("stampede-{name}-{}", std::process::id()));
        let pair = Pair { state, ports };
        let out = pair
            .peer(&["start", "stampede", "stampede@2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe("peer start", &out));
        pair
    }

    fn peer(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(repo().join("scripts/peers/peer"))
            .args(args)
            .env("PEERS_STATE", &self.state)
            .env("STAMPEDE_BROKER_BIN", broker_bin());
        for (k, v) in &self.ports {
            c.env(k, v);
        }
        c
    }

    fn uri(&self) -> String {
        let out = self
            .peer(&["uri", "stampede", "stampede@2"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `stampede load` of `scenario` with `--faults-via CMD`, where CMD runs with this
    /// pair's environment; an empty CMD runs without `--faults-via`.
    fn load(&self, scenario: &Path, faults_via: &str, out_dir: &Path, duration: &str) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stampede"));
        c.args([
            "load",
            scenario.to_str().unwrap(),
            "--target",
            &self.uri(),
            "--target-kind",
            "stampede",
            "--warmup",
            "0",
            "--duration",
            duration,
            "--quiet",
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .env("PEERS_STATE", &self.state)
        .env("STAMPEDE_BROKER_BIN", broker_bin());
        if !faults_via.is_empty() {
            c.args(["--faults-via", faults_via]);
        }
        for (k, v) in &self.ports {
            c.env(k, v);
        }
        c.output().expect("stampede runs")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Ok(out) = self.peer(&["stop", "stampede", "stampede@2"]).output() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        if std::env::var_os("STAMPEDE_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_crash_and_restart_reach_real_brokers_and_the_clients_fail_over() {
    let pair = Pair::start("live-failover");
    std::fs::create_dir_all(&pair.state).unwrap();
    let scenario = pair.state.join("live-failover.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let first = format!("127.0.0.1:{}", pair.ports[0].1);
    let peer = repo().join("scripts/peers/peer");
    let via = format!("bash {} fault", peer.display());

    let out_dir = pair.state.join("run");
    let out = pair.load(&scenario, &via, &out_dir, "10");
    let what = describe("stampede load --faults-via", &out);
    assert!(out.status.success(), "{what}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Crash at 4 s after the queue's start (2 s in the scenario), restart 3 s later.
    for line in [
        format!("fault: crash {first} at "),
        format!("fault: restart {first} at "),
    ] {
        let found = stderr
            .lines()
            .find(|l| l.contains(&line))
            .unwrap_or_else(|| panic!("no `{line}` note\n{what}"));
        assert!(found.contains("done in"), "{found}\n{what}");
    }
    assert!(stderr.contains("(planned 2.000 s)"), "{what}");
    assert!(stderr.contains("(planned 5.000 s)"), "{what}");

    let r = read_report(&out_dir).unwrap();
    assert_eq!(r.faults.len(), 1, "{:?}", r.faults);
    assert_eq!(r.faults[0].kind, "crash");
    assert_eq!(
        (r.faults[0].start_ms, r.faults[0].end_ms),
        (2_000, Some(5_000))
    );
    // Every node on broker-1 failed over.
    assert!(
        r.failover_ms.len() >= 20,
        "{} failovers\n{what}",
        r.failover_ms.len()
    );
    assert!(
        r.failovers_unfinished.is_empty(),
        "{:?}",
        r.failovers_unfinished
    );
    assert!(
        r.messages.acknowledged > 0 && r.messages.lost == 0,
        "{what}"
    );
    // broker-1 runs again.
    let check = pair.peer(&["check", "stampede"]).output().unwrap();
    assert!(check.status.success(), "{}", describe("peer check", &check));

    // A fault command that fails fails the run, with the command's words.
    let out = pair.load(
        &scenario,
        "echo cannot reach the broker >&2; false",
        &pair.state.join("bad"),
        "4",
    );
    let what = describe("stampede load --faults-via false", &out);
    assert!(!out.status.success(), "{what}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a live fault failed"), "{what}");
    assert!(stderr.contains("cannot reach the broker"), "{what}");
}

/// Runs `text` (a 16 s scenario named `name`) with `stampede load` against a fresh pair,
/// without `--faults-via`; asserts that it passed its expectations and returns its report
/// with the run's output for messages.
fn load_without_faults_via(name: &str, text: &str) -> (stampede_reports::RunReport, String) {
    load_on(Pair::start(name), name, text)
}

/// As [`load_without_faults_via`], on `pair`.
fn load_on(pair: Pair, name: &str, text: &str) -> (stampede_reports::RunReport, String) {
    std::fs::create_dir_all(&pair.state).unwrap();
    let scenario = pair.state.join(format!("{name}.toml"));
    std::fs::write(&scenario, text).unwrap();
    let out_dir = pair.state.join("run");
    let out = pair.load(&scenario, "", &out_dir, "16");
    let what = describe(&format!("stampede load ({name})"), &out);
    assert!(out.status.success(), "{what}");
    let r = read_report(&out_dir).unwrap_or_else(|e| panic!("{e}\n{what}"));
    (r, what)
}

/// Two racks of 10 nodes on a real broker (the pair's first); rack-b's node clocks jump
/// 90 s ahead (past the requests' 60 s TTL) from 2 s to 12 s after the discoveries start.
const CLOCK_SKEW: &str = r#"
name = "live-clock-skew"
description = "Live clock skew: rack-b's nodes drop requests while their clocks are wrong."
duration_s = 16

[[brokers]]
name = "broker-1"
[[brokers]]
name = "broker-2"

[[racks]]
name = "rack-a"
nodes = 10
servers = ["broker-1", "broker-2"]
start_spread_s = 1
[[racks]]
name = "rack-b"
nodes = 10
servers = ["broker-1", "broker-2"]
start_spread_s = 1

[workload.mcollective]
agents = ["discovery"]
clients = [{ name = "mco", servers = ["broker-1", "broker-2"] }]
discovery_interval_s = 1
discovery_timeout_s = 1
ttl_s = 60
start_s = 1

[[faults]]
at_s = 3
kind = "clock-skew"
target = ["rack-b"]
skew_ms = 90000
duration_s = 10

[expectations]
mco_healthy_reply_ratio_min = 1.0
mco_fault_reply_ratio_min = 0.5
mco_fault_reply_ratio_max = 0.5
"#;

#[test]
fn a_clock_skew_is_applied_to_the_generators_own_nodes_without_faults_via() {
    // The expectations hold: every node answers outside the window, and well inside it
    // exactly rack-a's half does, from real brokers.
    let (r, what) = load_without_faults_via("live-clock-skew", CLOCK_SKEW);
    let m = r.mcollective.as_ref().expect("an MCollective summary");
    assert!(m.replies_received < m.replies_expected, "{m:?}\n{what}");
    assert_eq!(r.messages.lost, 0, "{what}");
    assert!(
        r.faults.iter().any(|f| f.label.starts_with("clock-skew")),
        "{:?}",
        r.faults
    );
}

/// Twenty nodes with 1 s heart-beats on a real broker (the pair's first only: the two are
/// not networked); a quarter of them (chosen from the seed) lose their network from 2 s
/// to 10 s after the discoveries start.
const ISOLATE: &str = r#"
name = "live-isolate-nodes"
description = "Live isolate-nodes: a quarter of the nodes lose their network for 8 s."
duration_s = 16

[[brokers]]
name = "broker-1"
[[brokers]]
name = "broker-2"

[[racks]]
name = "rack-1"
nodes = 20
servers = ["broker-1"]
heartbeat_s = 1
heartbeat_read_timeout = true
start_spread_s = 1
# Retry at least every second, so that the nodes are back soon after the window.
reconnect = { max_delay_ms = 1000 }

[workload.mcollective]
agents = ["discovery"]
clients = [{ name = "mco", servers = ["broker-1"] }]
discovery_interval_s = 1
discovery_timeout_s = 1
start_s = 1

[[faults]]
at_s = 3
kind = "isolate-nodes"
target = ["rack-1"]
fraction = 0.25
duration_s = 8

[expectations]
mco_fault_reply_ratio_min = 0.75
mco_fault_reply_ratio_max = 0.75
mco_final_reply_ratio_min = 1.0
"#;

#[test]
fn isolate_nodes_cuts_the_generators_own_nodes_off_a_real_broker() {
    // Well inside the window exactly the other three quarters answer; the five cut-off
    // nodes notice through heart-beats, come back after it, and answer the last request.
    let (r, what) = load_without_faults_via("live-isolate-nodes", ISOLATE);
    assert!(r.messages.lost > 0, "{what}");
    assert_eq!(r.unexplained_lost, 0, "{what}");
    assert!(r.failover_ms.len() >= 5, "{what}");
}

/// The isolate-nodes run's fleet, but a quarter of the nodes' processes crash from 2 s to
/// 10 s after the discoveries start, and start again after.
fn crash_nodes_scenario() -> String {
    ISOLATE
        .replace("live-isolate-nodes", "live-crash-nodes")
        .replace(
            "Live isolate-nodes: a quarter of the nodes lose their network for 8 s.",
            "Live crash-nodes: a quarter of the nodes' processes die for 8 s.",
        )
        .replace("kind = \"isolate-nodes\"", "kind = \"crash-nodes\"")
}

#[test]
fn crash_nodes_kills_the_generators_own_nodes_on_a_real_broker() {
    // Well inside the window exactly the other three quarters answer; the five dead nodes
    // start again as new processes after it (no failover) and answer the last request.
    let text = crash_nodes_scenario();
    assert!(text.contains("crash-nodes"));
    let (r, what) = load_without_faults_via("live-crash-nodes", &text);
    assert!(r.messages.lost > 0, "{what}");
    assert_eq!(r.unexplained_lost, 0, "{what}");
    assert!(
        r.lost_to("target-crashed") > 0,
        "{:?}\n{what}",
        r.losses_by_cause
    );
    assert_eq!(r.failover_ms.len(), 0, "{what}");
}

/// Twenty nodes with 1 s heart-beats on a network of two real brokers (the peer script's
/// `STAMPEDE_NETWORK=1`: the second bridges to the first); all start on broker-1, the
/// `mco` client is there too, and a quarter of the nodes lose their path to broker-1 (not
/// to broker-2) from 2 s to 10 s after the discoveries start.
const PARTITION: &str = r#"
name = "live-partition-nodes"
description = "Live partition of nodes from one broker: a quarter lose their path to broker-1 for 8 s."
duration_s = 16

[[brokers]]
name = "broker-1"
[[brokers.connectors]]
name = "topics"
uri = "static:(tcp://broker-2:61613)"
duplex = true
network_ttl = 2
conduit_subscriptions = true
excluded_destinations = ["/queue/>"]
[[brokers.connectors]]
name = "queues"
uri = "static:(tcp://broker-2:61613)"
duplex = true
network_ttl = 2
conduit_subscriptions = false
excluded_destinations = ["/topic/>"]
[[brokers]]
name = "broker-2"

[[racks]]
name = "rack-1"
nodes = 20
servers = ["broker-1", "broker-2"]
heartbeat_s = 1
heartbeat_read_timeout = true
start_spread_s = 1

[workload.mcollective]
agents = ["discovery"]
clients = [{ name = "mco", servers = ["broker-1"] }]
discovery_interval_s = 1
discovery_timeout_s = 1
start_s = 1

[[faults]]
at_s = 3
kind = "isolate-nodes"
target = ["rack-1"]
fraction = 0.25
from = ["broker-1"]
duration_s = 8

[expectations]
mco_fault_reply_ratio_min = 1.0
mco_final_reply_ratio_min = 1.0
"#;

#[test]
fn partitioning_nodes_from_one_real_broker_moves_them_to_the_other() {
    // The five cut-off nodes notice through heart-beats and fail over to broker-2, where
    // the network of brokers brings them the requests: well inside the window everyone
    // answers again. What they missed before is lost on the severed connections, and
    // nothing is lost for want of a route.
    let pair = Pair::start_with("live-partition-nodes", &[("STAMPEDE_NETWORK", "1")]);
    let (r, what) = load_on(pair, "live-partition-nodes", PARTITION);
    assert_eq!(r.failover_ms.len(), 5, "{what}");
    assert!(r.messages.lost > 0, "{what}");
    assert_eq!(r.unexplained_lost, 0, "{what}");
    assert_eq!(
        r.lost_to("stranded-delivery"),
        r.messages.lost,
        "{:?}\n{what}",
        r.losses_by_cause
    );
}

/// The isolate-nodes run's fleet, but the `mco` client's process crashes from 2.5 s to
/// 10.5 s after the discoveries start, and starts again after.
fn crash_clients_scenario() -> String {
    ISOLATE
        .replace("live-isolate-nodes", "live-crash-clients")
        .replace(
            "Live isolate-nodes: a quarter of the nodes lose their network for 8 s.",
            "Live crash-clients: the mco client's process dies for 8 s.",
        )
        // Half-way between two requests, so that none races the crash.
        .replace("at_s = 3\n", "at_s = 3.5\n")
        .replace("kind = \"isolate-nodes\"", "kind = \"crash-clients\"")
        .replace(
            "target = [\"rack-1\"]\nfraction = 0.25\n",
            "target = [\"mco\"]\n",
        )
        .replace(
            "mco_fault_reply_ratio_min = 0.75\nmco_fault_reply_ratio_max = 0.75\n",
            "mco_healthy_reply_ratio_min = 1.0\n",
        )
}

#[test]
fn crash_clients_kills_the_generators_own_mco_client_on_a_real_broker() {
    // While the client is dead it asks nothing (about 8 of the 16 discoveries are never
    // made); started again as a new process it subscribes its new reply queue, and
    // every request it makes gets every reply. Nothing fails over.
    let text = crash_clients_scenario();
    assert!(
        text.contains("at_s = 3.5\nkind = \"crash-clients\"\ntarget = [\"mco\"]"),
        "{text}"
    );
    let (r, what) = load_without_faults_via("live-crash-clients", &text);
    let m = r.mcollective.as_ref().expect("an MCollective summary");
    assert!((6..=10).contains(&m.requests), "{m:?}\n{what}");
    assert_eq!(m.replies_received, m.replies_expected, "{m:?}\n{what}");
    assert_eq!(r.messages.lost, 0, "{what}");
    assert_eq!(r.failover_ms.len(), 0, "{what}");
    assert!(
        r.faults.iter().any(|f| f.label == "crash-clients mco"),
        "{:?}",
        r.faults
    );
}

/// The isolate-nodes run's fleet, but every node loses 10% of its segments from 2 s to
/// 10 s after the discoveries start (about 16 of the window's 160 deliveries are late:
/// enough to be over the 99th percentile in any run).
fn packet_loss_scenario() -> String {
    ISOLATE
        .replace("live-isolate-nodes", "live-packet-loss")
        .replace(
            "Live isolate-nodes: a quarter of the nodes lose their network for 8 s.",
            "Live packet-loss: every node loses 10% of its segments for 8 s.",
        )
        .replace("kind = \"isolate-nodes\"", "kind = \"packet-loss\"")
        .replace("fraction = 0.25\n", "loss_percent = 10\n")
        // MCollective's heart-beats: 1 s ones with a read timeout would time out now and
        // then behind two losses in a row (as they would on a real lossy link), and fail
        // over, which is not what this test is about.
        .replace(
            "heartbeat_s = 1\nheartbeat_read_timeout = true\n",
            "heartbeat_s = 30\n",
        )
        .replace(
            "mco_fault_reply_ratio_min = 0.75\nmco_fault_reply_ratio_max = 0.75\n",
            "lost_max = 0\n",
        )
}

#[test]
fn packet_loss_delays_the_generators_own_nodes_on_a_real_broker() {
    // A lost segment arrives one retransmission timeout (200 ms) late, so the slowest
    // percent of the deliveries takes over 200 ms where the rest take a few; nothing is
    // lost and every reply arrives.
    let text = packet_loss_scenario();
    assert!(
        text.contains("kind = \"packet-loss\"\ntarget = [\"rack-1\"]\nloss_percent = 10\n")
            && text.contains("heartbeat_s = 30\n"),
        "{text}"
    );
    let (r, what) = load_without_faults_via("live-packet-loss", &text);
    assert_eq!(r.messages.lost, 0, "{what}");
    let p50 = r.latency_us.value_at_quantile(0.5);
    let p99 = r.latency_us.value_at_quantile(0.99);
    assert!(p50 < 100_000, "p50 {p50} µs\n{what}");
    assert!(p99 >= 200_000, "p99 {p99} µs\n{what}");
    let m = r.mcollective.as_ref().expect("an MCollective summary");
    assert_eq!(m.replies_received, m.replies_expected, "{m:?}\n{what}");
}
