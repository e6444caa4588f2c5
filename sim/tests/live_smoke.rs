//! Live load mode against real brokers: `stampede-broker`, ActiveMQ, RabbitMQ and Redis,
//! started by the project's own `scripts/peers/peer` on loopback ports that were free when
//! the test began (never the brokers' defaults, so that it collides neither with running
//! brokers nor with another run of this test), each given a few seconds of load by the
//! real `stampede load` binary.
//!
//! Asserts that every report was written, that messages flowed (delivered > 0) and that
//! nothing acknowledged was lost in the receipted queue workload; that two shards merge
//! into one report; that `stampede compare` puts the runs side by side. A peer that
//! cannot be installed or started FAILS the test (never skips it): run
//! `scripts/install-test-deps` (as root) first. Everything the test started is stopped
//! when it ends, also when it fails.

// Live mode against real brokers: elapsed times are on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{broker_bin, repo};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use stampede_reports::read_report;

/// The port variables of `scripts/peers/peer`.
const PORT_VARS: [&str; 9] = [
    "STAMPEDE_PORT",
    "STAMPEDE_METRICS_PORT",
    "ACTIVEMQ_PORT",
    "ACTIVEMQ_OPENWIRE_PORT",
    "RABBITMQ_PORT",
    "RABBITMQ_AMQP_PORT",
    "RABBITMQ_DIST_PORT",
    "RABBITMQ_EPMD_PORT",
    "REDIS_PORT",
];

/// A free loopback port for each variable: all bound at once (so they differ), then
/// released for the peers to take.
fn free_ports() -> Vec<(&'static str, String)> {
    let listeners: Vec<std::net::TcpListener> = PORT_VARS
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    PORT_VARS
        .iter()
        .zip(&listeners)
        .map(|(var, l)| (*var, l.local_addr().expect("bound").port().to_string()))
        .collect()
}

/// A receipted, client-acknowledged queue workload (two producers and consumers, so that
/// it can be sharded) and a small MCollective fleet.
const SCENARIO: &str = r#"
name = "live-smoke"
description = "Live smoke test: a receipted queue and 20 MCollective nodes."
duration_s = 20

[[brokers]]
name = "broker-1"

[[racks]]
name = "rack-1"
nodes = 20
servers = ["broker-1"]
heartbeat_s = 30
start_spread_s = 1

[workload.mcollective]
clients = [{ name = "mco", servers = ["broker-1"] }]
discovery_interval_s = 1
discovery_timeout_s = 1
directed_interval_s = 1
directed_targets = 3
request_bytes = 400

[[workload.queues]]
name = "work"
destination = "/queue/smoke.work"
producers = 2
consumers = 2
rate_per_s = 100
message_bytes = 256
receipts = true
ack = "client-individual"
producer_servers = ["broker-1"]
consumer_servers = ["broker-1"]

[expectations]
lost_max = 0
unexpected_max = 0
"#;

/// The same fleet without the queue workload, for Redis (which has no queues).
fn mco_only(text: &str) -> String {
    let cut = text
        .find("[[workload.queues]]")
        .expect("the scenario has a queue workload");
    let tail = &text[cut..];
    let expectations = tail.find("[expectations]").expect("expectations follow");
    format!("{}{}", &text[..cut], &tail[expectations..])
        .replace("name = \"live-smoke\"", "name = \"live-smoke-mco\"")
}

/// The peers of this test; stops them all when dropped (also on a failed assertion).
struct Peers {
    state: PathBuf,
    broker: PathBuf,
    ports: Vec<(&'static str, String)>,
}

impl Peers {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(repo().join("scripts/peers/peer"))
            .args(args)
            .env("PEERS_STATE", &self.state)
            .env("STAMPEDE_BROKER_BIN", &self.broker)
            .env("READY_TIMEOUT_S", "180");
        for (k, v) in &self.ports {
            c.env(k, v);
        }
        c
    }

    fn start(&self, kind: &str) {
        let t0 = Instant::now();
        let out = self
            .command(&["start", kind])
            .output()
            .expect("bash runs scripts/peers/peer");
        assert!(
            out.status.success(),
            "could not install or start {kind} with scripts/peers/peer ({}); run \
             `scripts/install-test-deps` as root and look at the log below.\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{kind} started in {:.1} s", t0.elapsed().as_secs_f64());
    }

    fn uri(&self, kind: &str) -> String {
        let out = self.command(&["uri", kind]).output().expect("peer uri");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        match self.command(&["stop", "all"]).output() {
            Ok(out) => eprint!("{}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("could not run scripts/peers/peer stop all: {e}"),
        }
        if std::env::var_os("STAMPEDE_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}

fn stampede(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stampede"));
    c.args(args).env("RUST_LOG", "warn");
    c
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a short load and checks its report.
fn load(scenario: &Path, uri: &str, kind: &str, out_dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "load",
        scenario.to_str().expect("utf-8 path"),
        "--target",
        uri,
        "--duration",
        "3",
        "--warmup",
        "1",
        "--drain",
        "1",
        "--quiet",
        "--out",
        out_dir.to_str().expect("utf-8 path"),
    ];
    // ActiveMQ and RabbitMQ are recognised by their CONNECTED `server` header (RabbitMQ
    // after a retry with its vhost and guest login), Redis by its URI; Stampede is named.
    if kind == "stampede" {
        args.extend(["--target-kind", "stampede"]);
    }
    args.extend_from_slice(extra);
    let out = stampede(&args).output().expect("stampede runs");
    let what = format!("stampede load against {kind}");
    assert!(out.status.success(), "{}", describe(&what, &out));
    check_report(out_dir, kind, &what, &out);
}

fn check_report(dir: &Path, kind: &str, what: &str, out: &Output) {
    for f in [
        "summary.json",
        "timeseries.csv",
        "histograms.json",
        "latency_us.hgrm",
        "send_delay_us.hgrm",
        "report.html",
        "mcollective.csv",
        "generator.json",
    ] {
        assert!(
            dir.join(f).is_file(),
            "{what}: {f} is missing in {}",
            dir.display()
        );
    }
    let r = read_report(dir).unwrap_or_else(|e| panic!("{what}: {e}"));
    let target = r.target.clone().unwrap_or_default();
    assert!(
        target.starts_with(kind),
        "{what}: target {target:?}\n{}",
        describe(what, out)
    );
    assert!(r.messages.delivered > 0, "{}", describe(what, out));
    // No loss means something only if something was acknowledged.
    assert!(r.messages.acknowledged > 0, "{}", describe(what, out));
    assert_eq!(r.messages.lost, 0, "{}", describe(what, out));
    assert_eq!(r.unexplained_lost, 0, "{}", describe(what, out));
    assert_eq!(r.messages.unexpected, 0, "{}", describe(what, out));
    assert!(!r.latency_us.is_empty(), "{what}: no latency recorded");
    let mco = r.mcollective.as_ref().expect("MCollective traffic");
    assert!(
        mco.requests > 0 && mco.replies_received > 0,
        "{what}: {mco:?}"
    );
}

#[test]
fn live_load_against_stampede_activemq_rabbitmq_and_redis() {
    let work = std::env::temp_dir().join(format!("stampede-live-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("temp dir");
    let scenario = work.join("live-smoke.toml");
    std::fs::write(&scenario, SCENARIO).expect("write scenario");
    let mco_scenario = work.join("live-smoke-mco.toml");
    std::fs::write(&mco_scenario, mco_only(SCENARIO)).expect("write scenario");
    let peers = Peers {
        state: work.join("peers"),
        broker: broker_bin(),
        ports: free_ports(),
    };
    eprintln!("peer ports: {:?}", peers.ports);

    let mut dirs = Vec::new();
    let metrics = format!(
        "127.0.0.1:{}",
        peers
            .ports
            .iter()
            .find(|(v, _)| *v == "STAMPEDE_METRICS_PORT")
            .expect("a metrics port")
            .1
    );
    for kind in ["stampede", "activemq", "rabbitmq"] {
        peers.start(kind);
        let dir = work.join(format!("out-{kind}"));
        let extra: &[&str] = if kind == "stampede" {
            &["--metrics", &metrics]
        } else {
            &[]
        };
        load(&scenario, &peers.uri(kind), kind, &dir, extra);
        dirs.push(dir);
    }
    // The broker's own counters, read around the run, sit beside the clients' counts:
    // it received at least every SEND the clients got a receipt for in the window, and
    // delivered at least what they received.
    let r = read_report(&dirs[0]).expect("the stampede report");
    let count = |series: &str| {
        r.broker_counters
            .iter()
            .find(|c| c.series == series)
            .unwrap_or_else(|| panic!("no {series} in {:?}", r.broker_counters))
            .delta()
    };
    assert!(
        count("messages_received_total") >= r.messages.acknowledged as f64,
        "{:?}",
        r.broker_counters
    );
    assert!(count("messages_delivered_total") >= r.messages.delivered as f64);
    let html = std::fs::read_to_string(dirs[0].join("report.html")).expect("report.html");
    assert!(html.contains("The broker's own counters"));
    peers.start("redis");
    let dir = work.join("out-redis");
    load(&mco_scenario, &peers.uri("redis"), "redis", &dir, &[]);

    // Two generator processes side by side, merged.
    let uri = peers.uri("stampede");
    let shards: Vec<PathBuf> = (1..=2).map(|i| work.join(format!("shard-{i}"))).collect();
    std::thread::scope(|s| {
        for (i, d) in shards.iter().enumerate() {
            let shard = format!("{}/2", i + 1);
            let (scenario, uri) = (&scenario, &uri);
            s.spawn(move || load(scenario, uri, "stampede", d, &["--shard", &shard]));
        }
    });
    let merged = work.join("merged");
    let out = stampede(&[
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ])
    .output()
    .expect("stampede runs");
    assert!(out.status.success(), "{}", describe("stampede merge", &out));
    let whole = read_report(&merged).expect("merged report");
    let parts: Vec<_> = shards.iter().map(|d| read_report(d).unwrap()).collect();
    assert_eq!(
        whole.messages.delivered,
        parts.iter().map(|p| p.messages.delivered).sum::<u64>()
    );
    assert_eq!(
        whole.latency_us.len(),
        parts.iter().map(|p| p.latency_us.len()).sum::<u64>()
    );

    dirs.push(merged);
    let cmp = work.join("compare");
    let mut args = vec!["compare"];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    args.extend(["--out", cmp.to_str().unwrap()]);
    let out = stampede(&args).output().expect("stampede runs");
    assert!(
        out.status.success(),
        "{}",
        describe("stampede compare", &out)
    );
    let csv = std::fs::read_to_string(cmp.join("compare.csv")).expect("compare.csv");
    assert_eq!(csv.lines().count(), 1 + dirs.len(), "{csv}");
    for label in ["stampede", "activemq", "rabbitmq", "merged"] {
        assert!(csv.contains(label), "{label} in\n{csv}");
    }
    assert!(cmp.join("compare.html").is_file());

    drop(peers);
    if std::env::var_os("STAMPEDE_KEEP_TEST_DIRS").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
}
