//! Networks of brokers in the simulator: the bridges are what carries traffic between
//! brokers (a control run without connectors reaches only the local broker's nodes),
//! stranded queue messages come back with `replay_when_no_consumers` (and stay stranded
//! without it), and connector settings in scenarios are checked like the broker's own.

use stampede_sim::run::{Outcome, run};
use stampede_sim::scenario::Scenario;

fn go(text: &str) -> Outcome {
    let s = Scenario::parse(text, "network-test.toml").unwrap_or_else(|e| panic!("{e}"));
    run(&s, 5, "test", &mut |_| {}).expect("the simulation ran")
}

/// Two brokers, 30 nodes on each, one `mco` client on broker-1; `connectors` goes under
/// broker-1.
fn two_brokers(connectors: &str) -> String {
    format!(
        r#"
name = "two-brokers"
duration_s = 40
[[brokers]]
name = "broker-1"
{connectors}
[[brokers]]
name = "broker-2"
[[racks]]
name = "rack-1"
nodes = 30
servers = ["broker-1"]
[[racks]]
name = "rack-2"
nodes = 30
servers = ["broker-2"]
[workload.mcollective]
agents = ["discovery"]
clients = [{{ name = "mco-1", servers = ["broker-1"] }}]
discovery_interval_s = 5
directed_interval_s = 5
directed_targets = 6
start_s = 5
"#
    )
}

const DUPLEX: &str = r#"
[[brokers.connectors]]
name = "topics"
uri = "static:(tcp://broker-2:61613)"
duplex = true
excluded_destinations = ["/queue/>"]
[[brokers.connectors]]
name = "queues"
uri = "static:(tcp://broker-2:61613)"
duplex = true
conduit_subscriptions = false
excluded_destinations = ["/topic/>"]
"#;

#[test]
fn bridges_are_what_reaches_the_other_brokers_nodes() {
    let bridged = go(&two_brokers(DUPLEX));
    let m = bridged.report.mcollective.as_ref().unwrap();
    assert_eq!(m.replies_received, m.replies_expected, "{m:?}");
    let n = bridged.report.network.expect("a network report");
    assert!(n.bridged_deliveries > 0);
    assert_eq!(n.max_hops, 1);

    // Control: the same brokers without connectors; broker-2's nodes never hear a request.
    let alone = go(&two_brokers(""));
    let m = alone.report.mcollective.as_ref().unwrap();
    let rounds = &alone.analysis.rounds;
    assert!(!rounds.is_empty());
    assert!(
        rounds
            .iter()
            .all(|r| r.received < r.expected && r.received > 0),
        "{rounds:?}"
    );
    assert!(m.replies_received < m.replies_expected);
    assert!(alone.report.network.is_none());
    assert!(alone.history.bridged.is_empty());
}

/// A producer on broker-1 and a consumer that starts on broker-2 (pool broker-2,
/// broker-1), acknowledging each message, behind a duplex queues connector on broker-1.
/// At 15 s the consumer's host loses broker-2 for 30 s: broker-2 requeues what it had
/// delivered into the dead connection, with no local consumer left for it, while the
/// consumer fails over to broker-1.
fn stranded(replay: bool) -> String {
    format!(
        r#"
name = "stranded"
duration_s = 60
[[brokers]]
name = "broker-1"
[[brokers.connectors]]
name = "queues"
uri = "static:(tcp://broker-2:61613)"
duplex = true
conduit_subscriptions = false
replay_when_no_consumers = {replay}
[[brokers]]
name = "broker-2"
[[workload.queues]]
name = "work"
destination = "/queue/work"
producers = 1
consumers = 1
rate_per_s = 50
receipts = true
ack = "client-individual"
producer_servers = ["broker-1"]
consumer_servers = ["broker-2", "broker-1"]
reconnect = {{ randomize = false }}
start_s = 5
stop_s = 40
[[faults]]
at_s = 15
kind = "partition"
a = ["work"]
b = ["broker-2"]
duration_s = 30
"#
    )
}

#[test]
fn stranded_queue_messages_come_back_only_with_replay_when_no_consumers() {
    let with = go(&stranded(true));
    let n = with.report.network.expect("a network report");
    // The consumer failed over, and messages went back to the broker they came from.
    assert!(!with.report.failover_ms.is_empty());
    assert!(n.returned_messages > 0, "{n:?}");
    assert_eq!(n.loop_messages, 0, "{n:?}");
    assert_eq!(with.report.messages.lost, 0, "{:?}", with.report.messages);
    assert!(with.report.messages.delivered > 1000);

    // Without replay the same messages stay stranded on broker-2.
    let without = go(&stranded(false));
    let n = without.report.network.expect("a network report");
    assert_eq!(n.returned_messages, 0, "{n:?}");
    assert!(
        without.report.messages.lost > 0,
        "{:?}",
        without.report.messages
    );
}

#[test]
fn scenario_connectors_are_checked_with_file_line_and_key() {
    let err = |connectors: &str| {
        Scenario::parse(&two_brokers(connectors), "net.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err("[[brokers.connectors]]\nname = 'x'\nuri = 'static:(tcp://broker-9:61613)'\n");
    assert!(
        e.starts_with(
            "net.toml:8: brokers[0].connectors[0].uri: `broker-9:61613` is not another broker"
        ),
        "{e}"
    );
    let e = err("[[brokers.connectors]]\nname = 'x'\nuri = 'static:(tcp://broker-1:61613)'\n");
    assert!(e.contains("`broker-1:61613` is not another broker"), "{e}");
    let e = err(
        "[[brokers.connectors]]\nname = 'x'\nuri = 'static:(tcp://broker-2:61613)'\nconsumer_ttl = 0\n",
    );
    assert!(
        e.starts_with("net.toml:9: brokers[0].connectors[0].consumer_ttl: must be at least 1"),
        "{e}"
    );
    let e = err("[brokers.discovery]\ngroup = 'has space'\n");
    assert!(e.contains("brokers[0].discovery.group"), "{e}");
}

/// The catalog's hub and spoke (120 nodes here), with its TTLs replaced.
fn hub_and_spoke(message_ttl: u32, consumer_ttl: u32) -> Outcome {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/network-hub-and-spoke.toml");
    let mut s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    s.duration_s = 45.0;
    s.expectations = Default::default();
    for r in &mut s.racks {
        r.nodes = 40;
    }
    for b in &mut s.brokers {
        for c in &mut b.connectors {
            c.network_ttl = None;
            c.message_ttl = Some(message_ttl);
            c.consumer_ttl = Some(consumer_ttl);
        }
    }
    run(&s, 5, "test", &mut |_| {}).expect("the simulation ran")
}

#[test]
fn ttls_bound_how_far_demand_and_messages_travel() {
    let replies = |o: &Outcome| {
        o.analysis
            .rounds
            .iter()
            .map(|r| (r.received, r.expected))
            .collect::<Vec<_>>()
    };
    // With two hops allowed, every node of the three spokes answers.
    let two = hub_and_spoke(2, 2);
    assert!(replies(&two).iter().all(|(got, want)| got == want));
    assert_eq!(two.report.network.unwrap().max_hops, 2);
    // consumer_ttl 1: the hub's demand for spoke-2/3 consumers is one hop old already,
    // so spoke-1 makes none and only its own 40 nodes answer discovery.
    let near = hub_and_spoke(2, 1);
    let discovery: Vec<_> = near
        .analysis
        .rounds
        .iter()
        .filter(|r| r.expected == 120)
        .collect();
    assert!(!discovery.is_empty());
    assert!(discovery.iter().all(|r| r.received == 40), "{discovery:?}");
    // message_ttl 1: demand reaches spoke-1, but the hub may not pass messages on.
    let short = hub_and_spoke(1, 2);
    let discovery: Vec<_> = short
        .analysis
        .rounds
        .iter()
        .filter(|r| r.expected == 120)
        .collect();
    assert!(!discovery.is_empty());
    assert!(discovery.iter().all(|r| r.received == 40), "{discovery:?}");
    assert_eq!(short.report.network.unwrap().max_hops, 0);
}
