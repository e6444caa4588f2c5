//! Self-test of fault injection: every fault kind has an observable effect on the run,
//! and the same run without the fault does not. (A fault that silently does nothing
//! would make every failover test pass vacuously.) `storage-partition`, which needs a
//! shared-store pair, is checked in `master_slave.rs` (the cut-off master stops, its lease
//! lapses, the slave takes the lock).

use stampede_broker::client::{ClientEvent, DisconnectReason};
use stampede_sim::history::{ClientId, Role, SendOutcome};
use stampede_sim::run::{Outcome, run};
use stampede_sim::scenario::Scenario;

/// Two brokers; rack-1's 20 nodes all start on broker-1 and rack-2's on broker-2; one `mco`
/// client per broker asks for discovery every 5 s.
fn scenario(heartbeat_s: u64, faults: &str) -> Scenario {
    let text = format!(
        r#"
name = "fault-self-test"
duration_s = 45
[network]
jitter_ms = 0
[[brokers]]
name = "broker-1"
[[brokers]]
name = "broker-2"
[[racks]]
name = "rack-1"
nodes = 20
servers = ["broker-1", "broker-2"]
heartbeat_s = {heartbeat_s}
heartbeat_read_timeout = true
start_spread_s = 1
[[racks]]
name = "rack-2"
nodes = 20
servers = ["broker-2", "broker-1"]
heartbeat_s = {heartbeat_s}
heartbeat_read_timeout = true
start_spread_s = 1
[workload.mcollective]
agents = ["discovery"]
clients = [{{ name = "mco-1", servers = ["broker-1"] }}, {{ name = "mco-2", servers = ["broker-2"] }}]
discovery_interval_s = 5
start_s = 5
{faults}
"#
    );
    Scenario::parse(&text, "self-test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn go(s: &Scenario) -> Outcome {
    run(s, 3, "test", &mut |_| {}).expect("the simulation ran")
}

fn rack1_nodes(o: &Outcome) -> Vec<ClientId> {
    o.history
        .clients
        .iter()
        .enumerate()
        .filter(|(_, c)| c.role == Role::Node && c.name.starts_with("rack-1"))
        .map(|(i, _)| ClientId(i as u32))
        .collect()
}

/// Disconnections of rack-1 nodes between `from_s` and `to_s`, with their reasons.
fn rack1_disconnects(o: &Outcome, from_s: f64, to_s: f64) -> Vec<DisconnectReason> {
    let nodes = rack1_nodes(o);
    o.history
        .events
        .iter()
        .filter(|(at, c, _)| {
            nodes.contains(c) && *at as f64 >= from_s * 1e6 && (*at as f64) < to_s * 1e6
        })
        .filter_map(|(_, _, e)| match e {
            ClientEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn connected_at(o: &Outcome, t_s: u64) -> Vec<u64> {
    o.report
        .seconds
        .iter()
        .find(|s| s.t_s == t_s)
        .unwrap()
        .connected
        .clone()
}

fn applied(o: &Outcome, prefix: &str) -> usize {
    o.history
        .applied
        .iter()
        .filter(|(_, w)| w.starts_with(prefix))
        .count()
}

#[test]
fn control_run_without_faults_is_quiet() {
    let o = go(&scenario(2, ""));
    assert!(rack1_disconnects(&o, 0.0, 45.0).is_empty());
    assert_eq!(
        connected_at(&o, 20),
        vec![20 + 1, 20 + 1],
        "nodes plus one mco client each"
    );
    assert!(o.report.latency_us.value_at_quantile(1.0) < 10_000);
    assert_eq!(o.report.messages.lost, 0);
}

#[test]
fn crash_closes_connections_at_once_and_restart_brings_the_broker_back() {
    let o = go(&scenario(
        0,
        r#"
[[faults]]
at_s = 12
kind = "crash"
target = ["broker-1"]
duration_s = 10
"#,
    ));
    assert_eq!(applied(&o, "crash broker-1"), 1);
    assert_eq!(applied(&o, "restart broker-1"), 1);
    assert_eq!(
        applied(&o, "broker-1 started"),
        2,
        "{:?}",
        o.history.applied
    );
    // Every rack-1 node saw its connection end within a tick or two of the crash, even
    // without heart-beats, and moved to broker-2.
    let d = rack1_disconnects(&o, 12.0, 12.1);
    assert_eq!(d.len(), 20, "{d:?}");
    assert_eq!(connected_at(&o, 15), vec![0, 40 + 1]);
}

#[test]
fn partition_is_noticed_only_through_heartbeats() {
    let faults = r#"
[[faults]]
at_s = 12
kind = "partition"
a = ["rack-1"]
b = ["broker-1"]
duration_s = 20
"#;
    let o = go(&scenario(2, faults));
    let d = rack1_disconnects(&o, 12.0, 20.0);
    assert_eq!(d.len(), 20, "{d:?}");
    assert!(
        d.iter().all(|r| *r == DisconnectReason::HeartbeatTimeout),
        "{d:?}"
    );
    // Without heart-beats nobody notices: the connections just stall.
    let o = go(&scenario(0, faults));
    assert!(rack1_disconnects(&o, 12.0, 45.0).is_empty());
    assert!(
        o.report.messages.lost > 0,
        "requests to the stalled nodes are lost"
    );
}

#[test]
fn oneway_partition_silences_one_direction() {
    let o = go(&scenario(
        2,
        r#"
[[faults]]
at_s = 12
kind = "partition-oneway"
a = ["broker-1"]
b = ["rack-1"]
duration_s = 20
"#,
    ));
    // The nodes stop hearing broker-1 and leave it.
    let d = rack1_disconnects(&o, 12.0, 20.0);
    assert_eq!(d.len(), 20, "{d:?}");
    assert_eq!(connected_at(&o, 25)[0], 1, "only mco-1 is left on broker-1");
}

#[test]
fn hold_delays_everything_and_loses_nothing() {
    let o = go(&scenario(
        30,
        r#"
[[faults]]
at_s = 14
kind = "hold"
a = ["rack-1"]
b = ["broker-1"]
duration_s = 4
"#,
    ));
    assert!(rack1_disconnects(&o, 0.0, 45.0).is_empty());
    assert_eq!(o.report.messages.lost, 0);
    // The round at 15 s reached rack-1 only when the hold was released at 18 s.
    assert!(
        o.report.latency_us.max() >= 2_900_000,
        "max {}",
        o.report.latency_us.max()
    );
}

#[test]
fn latency_fault_raises_latency_for_its_window() {
    let o = go(&scenario(
        30,
        r#"
[[faults]]
at_s = 12
kind = "latency"
a = ["rack-1"]
b = ["broker-1"]
latency_ms = 250
duration_s = 10
"#,
    ));
    let during = &o
        .report
        .seconds
        .iter()
        .find(|s| s.t_s == 15)
        .unwrap()
        .latency;
    let after = &o
        .report
        .seconds
        .iter()
        .find(|s| s.t_s == 30)
        .unwrap()
        .latency;
    assert!(during.max() >= 250_000, "during {}", during.max());
    assert!(after.max() < 10_000, "after {}", after.max());
}

/// Replies from rack-1's or rack-2's nodes that arrived between `from_s` and `to_s`.
fn replies_from(o: &Outcome, rack: &str, from_s: f64, to_s: f64) -> usize {
    o.history
        .replies
        .iter()
        .filter(|r| {
            o.history.clients[r.node.0 as usize].name.starts_with(rack)
                && r.at_us as f64 >= from_s * 1e6
                && (r.at_us as f64) < to_s * 1e6
        })
        .count()
}

#[test]
fn clock_skew_silences_the_racks_nodes_while_their_clocks_are_wrong() {
    let skewed = go(&scenario(
        2,
        r#"
[[faults]]
at_s = 12
kind = "clock-skew"
target = ["rack-1"]
skew_ms = 120000
duration_s = 10
"#,
    ));
    assert_eq!(applied(&skewed, "clock-skew +120000ms rack-1"), 1);
    assert_eq!(applied(&skewed, "clocks set right rack-1"), 1);
    // The requests of 15 s and 20 s are two minutes old by rack-1's clocks, past their
    // TTL: its nodes drop them, and rack-2's answer as usual.
    assert_eq!(replies_from(&skewed, "rack-1", 12.0, 22.0), 0);
    assert!(replies_from(&skewed, "rack-2", 12.0, 22.0) >= 40);
    // Once the clocks are right, rack-1 answers again; nothing was lost on the wire.
    assert!(replies_from(&skewed, "rack-1", 24.0, 45.0) >= 40);
    assert_eq!(skewed.report.messages.lost, 0);
    assert!(rack1_disconnects(&skewed, 0.0, 45.0).is_empty());
    // Without the fault, rack-1 answers in the same window.
    let control = go(&scenario(2, ""));
    assert!(replies_from(&control, "rack-1", 12.0, 22.0) >= 40);
}

#[test]
fn isolate_nodes_cuts_off_a_seeded_share_of_a_rack_and_nobody_else() {
    let o = go(&scenario(
        2,
        r#"
[[faults]]
at_s = 12
kind = "isolate-nodes"
target = ["rack-1"]
fraction = 0.25
duration_s = 10
"#,
    ));
    assert_eq!(applied(&o, "isolate 5 node(s) of rack-1"), 1);
    assert_eq!(applied(&o, "reconnect 5 node(s) of rack-1"), 1);
    // What the cut-off nodes missed is lost, and every loss has its cause.
    assert!(o.report.messages.lost > 0);
    assert_eq!(
        o.report.unexplained_lost, 0,
        "{:?}",
        o.report.losses_by_cause
    );
    // Five of rack-1's 20 nodes notice through heart-beats (2 s, read grace 1.5), and only
    // they; rack-2 never notices anything.
    let d = rack1_disconnects(&o, 12.0, 22.0);
    let timeouts = d
        .iter()
        .filter(|r| **r == DisconnectReason::HeartbeatTimeout)
        .count();
    assert_eq!(timeouts, 5, "{d:?}");
    // Then their reconnects fail at once while the cable is out, and nobody else's do.
    let nodes = rack1_nodes(&o);
    let affected: std::collections::BTreeSet<ClientId> = o
        .history
        .events
        .iter()
        .filter(|(at, c, e)| {
            nodes.contains(c)
                && (12_000_000..22_000_000).contains(at)
                && matches!(e, ClientEvent::Disconnected { .. })
        })
        .map(|(_, c, _)| *c)
        .collect();
    assert_eq!(affected.len(), 5, "{affected:?}");
    assert!(
        d.iter().all(|r| match r {
            DisconnectReason::HeartbeatTimeout => true,
            DisconnectReason::ConnectFailed(e) => e.contains("isolated"),
            _ => false,
        }),
        "{d:?}"
    );
    // While cut off they answer nothing; the other 15 and rack-2 answer every request.
    // (After the first heart-beat window, 16 s on.)
    let control = go(&scenario(2, ""));
    let healthy = replies_from(&control, "rack-1", 16.0, 22.0);
    assert!(healthy >= 20, "{healthy}");
    assert_eq!(replies_from(&o, "rack-1", 16.0, 22.0), healthy * 15 / 20);
    assert_eq!(
        replies_from(&o, "rack-2", 12.0, 22.0),
        replies_from(&control, "rack-2", 12.0, 22.0)
    );
    // After the window they are back, on one broker or the other.
    let c = connected_at(&o, 35);
    assert_eq!(c.iter().sum::<u64>(), 40 + 2, "{c:?}");
    assert_eq!(
        replies_from(&o, "rack-1", 35.0, 45.0),
        replies_from(&control, "rack-1", 35.0, 45.0)
    );
}

#[test]
fn isolating_nodes_from_one_broker_moves_them_to_the_next_in_their_pool() {
    let o = go(&scenario(
        2,
        r#"
[[faults]]
at_s = 12
kind = "isolate-nodes"
target = ["rack-1"]
fraction = 0.25
from = ["broker-1"]
duration_s = 10
"#,
    ));
    assert_eq!(applied(&o, "isolate 5 node(s) of rack-1 from broker-1"), 1);
    assert_eq!(
        applied(&o, "reconnect 5 node(s) of rack-1 from broker-1"),
        1
    );
    // Five nodes notice through heart-beats, and only they.
    let d = rack1_disconnects(&o, 12.0, 22.0);
    let timeouts = d
        .iter()
        .filter(|r| **r == DisconnectReason::HeartbeatTimeout)
        .count();
    assert_eq!(timeouts, 5, "{d:?}");
    assert!(
        d.iter().all(|r| match r {
            DisconnectReason::HeartbeatTimeout => true,
            DisconnectReason::ConnectFailed(e) => e.contains("isolated") && e.contains("broker-1"),
            _ => false,
        }),
        "{d:?}"
    );
    // Their path to broker-2 works: they are there within the window (15 nodes and mco-1
    // on broker-1; rack-2, the five and mco-2 on broker-2), and stay once it is over, as
    // a failover client does.
    assert_eq!(connected_at(&o, 20), [16, 26]);
    assert_eq!(connected_at(&o, 35), [16, 26]);
    // Whatever the cut stranded is explained.
    assert_eq!(
        o.report.unexplained_lost, 0,
        "{:?}",
        o.report.losses_by_cause
    );
    // Without the fault everyone stays where they started.
    let control = go(&scenario(2, ""));
    assert_eq!(connected_at(&control, 20), [21, 21]);
}

/// The last incarnation's counters of each broker, by name.
fn broker_stats(o: &Outcome, broker: &str) -> stampede_broker::core::Stats {
    o.history
        .broker_stats
        .iter()
        .rev()
        .find(|(b, _)| b == broker)
        .map(|(_, s)| s.get())
        .unwrap()
}

#[test]
fn crash_nodes_kills_a_seeded_share_of_a_rack_and_starts_it_again() {
    let fault = r#"
[[faults]]
at_s = 12
kind = "crash-nodes"
target = ["rack-1"]
fraction = 0.25
duration_s = 10
"#;
    let o = go(&scenario(2, fault));
    let control = go(&scenario(2, ""));
    assert_eq!(applied(&o, "crash 5 node(s) of rack-1"), 1);
    assert_eq!(applied(&o, "start 5 node(s) of rack-1"), 1);
    let nodes = rack1_nodes(&o);
    assert_eq!(o.history.crashes.len(), 5, "{:?}", o.history.crashes);
    assert!(
        o.history
            .crashes
            .iter()
            .all(|(at, c)| nodes.contains(c) && (12_000_000..12_010_000).contains(at)),
        "{:?}",
        o.history.crashes
    );
    // A dead process records nothing: no disconnect, no failed connect.
    assert!(rack1_disconnects(&o, 0.0, 45.0).is_empty());
    // From the crash on, the dead five answer nothing; the other 15 and rack-2 answer as
    // in the control run.
    let healthy = replies_from(&control, "rack-1", 12.5, 22.0);
    assert!(healthy >= 20, "{healthy}");
    assert_eq!(replies_from(&o, "rack-1", 12.5, 22.0), healthy * 15 / 20);
    assert_eq!(
        replies_from(&o, "rack-2", 12.0, 22.0),
        replies_from(&control, "rack-2", 12.0, 22.0)
    );
    assert_eq!(connected_at(&o, 15), vec![15 + 1, 20 + 1]);
    // Started again, they connect afresh (five more connections on broker-1) and answer
    // every request; a restart is not a failover.
    assert_eq!(
        broker_stats(&o, "broker-1").connections_opened,
        broker_stats(&control, "broker-1").connections_opened + 5
    );
    assert_eq!(connected_at(&o, 30), vec![20 + 1, 20 + 1]);
    assert_eq!(
        replies_from(&o, "rack-1", 30.0, 45.0),
        replies_from(&control, "rack-1", 30.0, 45.0)
    );
    assert_eq!(o.report.failover_ms.len(), 0);
    assert!(o.report.failovers_unfinished.is_empty());
    // The requests they missed are lost, each blamed on the crash.
    assert!(o.report.messages.lost > 0);
    assert_eq!(
        o.report.unexplained_lost, 0,
        "{:?}",
        o.report.losses_by_cause
    );
    assert_eq!(
        o.report.lost_to("target-crashed"),
        o.report.messages.lost,
        "{:?}",
        o.report.losses_by_cause
    );
}

/// How long each reply from `rack`'s nodes to a request due between `from_s` and `to_s`
/// took, from the request's due time, in milliseconds.
fn reply_ms(o: &Outcome, rack: &str, from_s: u64, to_s: u64) -> Vec<u64> {
    let due: std::collections::BTreeMap<u64, u64> = o
        .history
        .requests
        .iter()
        .filter(|r| (from_s * 1_000_000..to_s * 1_000_000).contains(&r.intended_us))
        .map(|r| (r.id, r.intended_us))
        .collect();
    o.history
        .replies
        .iter()
        .filter(|r| o.history.clients[r.node.0 as usize].name.starts_with(rack))
        .filter_map(|r| due.get(&r.request).map(|t| (r.at_us - t) / 1000))
        .collect()
}

#[test]
fn packet_loss_delays_a_racks_segments_by_retransmission_timeouts_and_loses_nothing() {
    let o = go(&scenario(
        2,
        r#"
[[faults]]
at_s = 12
kind = "packet-loss"
target = ["rack-1"]
loss_percent = 5
duration_s = 20
"#,
    ));
    let control = go(&scenario(2, ""));
    assert_eq!(
        applied(&o, "packet loss 50000 ppm on 20 node(s) of rack-1"),
        1
    );
    assert_eq!(applied(&o, "packet loss 0 ppm on 20 node(s) of rack-1"), 1);
    // Without the fault every reply takes a few milliseconds (and its reply delay).
    let calm = reply_ms(&control, "rack-1", 0, 45);
    assert!(calm.iter().all(|ms| *ms < 50), "{calm:?}");
    // In the window some of rack-1's replies wait for one or more retransmission
    // timeouts (200 ms, then 400 more, …), as TCP recovers a lost segment; rack-2's do
    // not, and after the window nobody's do.
    let lossy = reply_ms(&o, "rack-1", 13, 32);
    assert_eq!(lossy.len(), reply_ms(&control, "rack-1", 13, 32).len());
    let late = lossy.iter().filter(|ms| **ms >= 200).count();
    assert!(late > 0 && late < lossy.len() / 2, "{late} of {lossy:?}");
    assert!(lossy.iter().all(|ms| *ms < 50 || *ms >= 200), "{lossy:?}");
    assert_eq!(
        reply_ms(&o, "rack-2", 0, 45),
        reply_ms(&control, "rack-2", 0, 45)
    );
    let after = reply_ms(&o, "rack-1", 35, 45);
    assert!(after.iter().all(|ms| *ms < 50), "{after:?}");
    // Nothing is lost: TCP delivers every segment in the end.
    assert_eq!(o.report.messages.lost, 0);
    assert_eq!(
        o.report.messages.delivered,
        control.report.messages.delivered
    );
}

/// The client id of the one named `name`.
fn client_named(o: &Outcome, name: &str) -> ClientId {
    let i = o.history.clients.iter().position(|c| c.name == name);
    ClientId(i.expect("a client of that name") as u32)
}

/// When `client`'s requests were due, in seconds.
fn requests_of(o: &Outcome, client: ClientId) -> Vec<u64> {
    o.history
        .requests
        .iter()
        .filter(|r| r.client == client)
        .map(|r| r.intended_us / 1_000_000)
        .collect()
}

#[test]
fn crash_clients_kills_an_mco_client_and_starts_it_again() {
    let fault = r#"
[[faults]]
at_s = 12
kind = "crash-clients"
target = ["mco-1"]
duration_s = 10
"#;
    let o = go(&scenario(2, fault));
    let control = go(&scenario(2, ""));
    assert_eq!(applied(&o, "crash 1 node(s) of mco-1"), 1);
    assert_eq!(applied(&o, "start 1 node(s) of mco-1"), 1);
    let mco1 = client_named(&o, "mco-1");
    assert_eq!(o.history.crashes, [(12_000_000, mco1)]);
    // While it is down it makes no requests (those due at 15 and 20 s); started again it
    // makes the next ones; mco-2 makes all of its own.
    let every: Vec<u64> = (1..9).map(|i| 5 * i).collect();
    assert_eq!(requests_of(&control, mco1), every);
    let without: Vec<u64> = every
        .iter()
        .copied()
        .filter(|t| !(12..22).contains(t))
        .collect();
    assert_eq!(requests_of(&o, mco1), without);
    let mco2 = client_named(&o, "mco-2");
    assert_eq!(requests_of(&o, mco2), every);
    // Its connection closed at once (broker-1 holds rack-1's 20 nodes only), and the new
    // process connected afresh: one more connection, no failover.
    assert_eq!(connected_at(&o, 15), vec![20, 21]);
    assert_eq!(connected_at(&o, 30), vec![21, 21]);
    assert_eq!(
        broker_stats(&o, "broker-1").connections_opened,
        broker_stats(&control, "broker-1").connections_opened + 1
    );
    assert_eq!(o.report.failover_ms.len(), 0);
    assert!(o.report.failovers_unfinished.is_empty());
    // Its requests after the restart get every reply they did in the control run (its
    // new reply queues are subscribed).
    let replies_to = |o: &Outcome, from_s: u64| {
        let mine: std::collections::BTreeSet<u64> = o
            .history
            .requests
            .iter()
            .filter(|r| r.client == mco1 && r.intended_us >= from_s * 1_000_000)
            .map(|r| r.id)
            .collect();
        o.history
            .replies
            .iter()
            .filter(|r| mine.contains(&r.request))
            .count()
    };
    assert!(
        replies_to(&control, 25) >= 20,
        "{}",
        replies_to(&control, 25)
    );
    assert_eq!(replies_to(&o, 25), replies_to(&control, 25));
    // The two discovery rounds it missed reached rack-1 through nobody (mco-2's
    // requests have no route to broker-1): 2 × 20 lost, each for that reason.
    assert_eq!(control.report.messages.lost, 0);
    assert_eq!(o.report.messages.lost, 40);
    assert_eq!(
        o.report.lost_to("no-route"),
        40,
        "{:?}",
        o.report.losses_by_cause
    );
}

#[test]
fn crashed_nodes_connections_end_on_the_broker_at_once() {
    // No heart-beats: a broker that heard of no close would keep the dead connections
    // to the end of the run.
    let o = go(&scenario(
        0,
        r#"
[[faults]]
at_s = 12
kind = "crash-nodes"
target = ["rack-1"]
fraction = 0.25
"#,
    ));
    assert_eq!(applied(&o, "crash 5 node(s) of rack-1"), 1);
    assert_eq!(broker_stats(&o, "broker-1").connections_current, 15 + 1);
    assert_eq!(broker_stats(&o, "broker-2").connections_current, 20 + 1);
    // Never started again: they are down at the end, but not failing over.
    assert_eq!(connected_at(&o, 40), vec![15 + 1, 20 + 1]);
    assert!(o.report.failovers_unfinished.is_empty());
}

#[test]
fn heal_all_undoes_partitions_and_restarts_brokers() {
    let o = go(&scenario(
        2,
        r#"
[[faults]]
at_s = 8
kind = "crash"
target = ["broker-2"]
[[faults]]
at_s = 12
kind = "partition"
a = ["rack-1"]
b = ["broker-1"]
[[faults]]
at_s = 25
kind = "heal-all"
"#,
    ));
    assert_eq!(applied(&o, "heal-all"), 1);
    assert_eq!(
        applied(&o, "broker-2 started"),
        2,
        "{:?}",
        o.history.applied
    );
    // After the heal the last discovery round reaches every node again.
    let last = o.analysis.rounds.last().unwrap();
    assert_eq!(last.received, 40, "{last:?}");
}

/// One broker with a store (`sync` keys), a producer of receipted persistent messages
/// and a consumer (`consumer` keys); the fault `fault` (its keys) hits the broker at 12 s
/// for 5 s.
fn one_broker_with_a_store(name: &str, sync: &str, consumer: &str, fault: &str) -> Scenario {
    let text = format!(
        r#"
name = "{name}"
duration_s = 40
[[brokers]]
name = "broker-1"
[brokers.store]
{sync}
[[workload.queues]]
name = "q"
destination = "/queue/q"
producers = 1
consumers = 1
rate_per_s = 50
persistent = true
receipts = true
ack = "client-individual"
producer_servers = ["broker-1"]
consumer_servers = ["broker-1"]
{consumer}
stop_s = 30
[[faults]]
at_s = 12
target = ["broker-1"]
duration_s = 5
{fault}
"#
    );
    Scenario::parse(&text, &format!("{name}.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// A store syncing every second (`interval_ms`); the consumer subscribes only after the
/// broker is back (20 s); `kind` hits the broker.
fn store_scenario(kind: &str) -> Scenario {
    one_broker_with_a_store(
        "fault-self-test-store",
        "sync = \"interval_ms\"\ninterval_ms = 1000",
        "consumer_start_s = 20",
        &format!("kind = \"{kind}\""),
    )
}

#[test]
fn power_loss_closes_connections_like_a_crash_and_drops_what_the_store_had_not_synced() {
    let crash = go(&store_scenario("crash"));
    let power = go(&store_scenario("power-loss"));
    assert_eq!(applied(&power, "power-loss broker-1"), 1);
    assert_eq!(applied(&power, "restart broker-1"), 1);
    assert_eq!(applied(&power, "broker-1 started"), 2);
    // Both end the producer's connection at once.
    for o in [&crash, &power] {
        let producer = o
            .history
            .clients
            .iter()
            .position(|c| c.role == Role::Producer)
            .unwrap();
        let cut = o.history.events.iter().any(|(at, c, e)| {
            c.0 as usize == producer
                && (12_000_000..12_100_000).contains(at)
                && matches!(e, ClientEvent::Disconnected { .. })
        });
        assert!(cut, "{:?}", o.history.applied);
    }
    // The crash keeps everything the broker wrote (the operating system had it); the
    // power loss takes what was written since the last sync, and only that.
    assert_eq!(crash.report.messages.lost, 0);
    let lost = power.report.messages.lost;
    assert!((1..=50).contains(&lost), "lost {lost}");
    assert!(
        power
            .analysis
            .losses
            .iter()
            .all(|l| l.cause.as_ref().is_some_and(|c| c.label() == "power-loss"))
    );
}

/// Attempts of the producer that ended with a refused connect between 12 s and 17 s (the
/// fault's window).
fn refused_in_window(o: &Outcome) -> usize {
    let producer = o
        .history
        .clients
        .iter()
        .position(|c| c.role == Role::Producer)
        .unwrap();
    o.history
        .events
        .iter()
        .filter(|(at, c, e)| {
            c.0 as usize == producer
                && (12_000_000..17_000_000).contains(at)
                && matches!(
                    e,
                    ClientEvent::Disconnected {
                        reason: DisconnectReason::ConnectFailed(_)
                    }
                )
        })
        .count()
}

#[test]
fn a_crashed_process_refuses_connects_at_once_and_a_powered_off_machine_is_silent() {
    // After a crash the machine is up and nothing listens: the operating system refuses
    // every connect at once, so the producer's back-off tries are each refused.
    let crash = go(&store_scenario("crash"));
    let refused = refused_in_window(&crash);
    assert!(
        refused >= 3,
        "refused {refused}: {:?}",
        crash.history.applied
    );
    // After a power loss nothing answers: the first try waits until the restart.
    let power = go(&store_scenario("power-loss"));
    assert_eq!(refused_in_window(&power), 0, "{:?}", power.history.applied);
}

/// A store syncing every persistent SEND (`always`) and a consumer from the start; the
/// disk fault `kind` (with `extra` keys) hits the broker's store.
fn disk_scenario(kind: &str, extra: &str) -> Scenario {
    one_broker_with_a_store(
        "fault-self-test-disk",
        "sync = \"always\"",
        "",
        &format!("kind = \"{kind}\"\n{extra}"),
    )
}

/// Receipted SENDs whose outcome was known within `[from_s, to_s)`.
fn confirmed_between(o: &Outcome, from_s: f64, to_s: f64) -> usize {
    let (from, to) = ((from_s * 1e6) as u64, (to_s * 1e6) as u64);
    o.history
        .sends
        .iter()
        .filter(|s| s.outcome == SendOutcome::Confirmed)
        .filter(|s| s.settled_us.is_some_and(|t| (from..to).contains(&t)))
        .count()
}

#[test]
fn a_failing_disk_stops_the_broker_and_the_repair_starts_it_again() {
    // A full disk does the same when the store is told to stop on one.
    let stop_on_full = |kind: &str| {
        let mut s = disk_scenario(kind, "");
        if kind == "disk-full" {
            let store = s.brokers[0].store.as_mut().unwrap();
            store.disk_full = stampede_broker::store::DiskFullPolicy::Stop;
        }
        s
    };
    for (kind, os_error) in [("disk-error", "os error 5"), ("disk-full", "os error 28")] {
        let o = go(&stop_on_full(kind));
        let stopped: Vec<&String> = o
            .history
            .applied
            .iter()
            .filter(|(_, w)| w.starts_with("broker-1 stopped"))
            .map(|(_, w)| w)
            .collect();
        assert_eq!(stopped.len(), 1, "{kind}: {:?}", o.history.applied);
        assert!(stopped[0].contains(os_error), "{kind}: {stopped:?}");
        assert_eq!(applied(&o, &format!("{kind} broker-1")), 1);
        assert_eq!(applied(&o, "disk repaired broker-1"), 1);
        assert_eq!(
            applied(&o, "broker-1 started"),
            2,
            "{:?}",
            o.history.applied
        );
        // The broker stopped at its first write after 12 s, so no SEND was confirmed
        // while the disk failed; after the repair they are again.
        assert_eq!(confirmed_between(&o, 12.1, 17.0), 0, "{kind}");
        assert!(confirmed_between(&o, 17.0, 30.0) > 300, "{kind}");
        // Every receipted persistent message was synced before its receipt, so none is
        // lost; the unreceipted ones may be, and are not counted.
        assert_eq!(o.report.messages.lost, 0, "{kind}");
        assert!(
            o.passed(),
            "{kind}: {}",
            stampede_reports::summary_text(&o.report)
        );
    }
}

#[test]
fn a_full_disk_holds_the_receipts_until_there_is_room_and_loses_nothing() {
    let o = go(&disk_scenario("disk-full", ""));
    let control = go(&disk_scenario("slow-disk", "latency_ms = 0"));
    assert_eq!(applied(&o, "disk-full broker-1"), 1);
    assert_eq!(applied(&o, "disk repaired broker-1"), 1);
    // The broker waits for space (the store's default): it never stops, and starts once.
    assert_eq!(
        applied(&o, "broker-1 stopped"),
        0,
        "{:?}",
        o.history.applied
    );
    assert_eq!(
        applied(&o, "broker-1 started"),
        1,
        "{:?}",
        o.history.applied
    );
    // No SEND is confirmed while the disk is full; the receipts held back come once the
    // space is back, and everything confirmed is delivered.
    assert_eq!(confirmed_between(&o, 12.1, 17.0), 0);
    assert!(
        confirmed_between(&o, 17.0, 18.0) > 10,
        "{}",
        confirmed_between(&o, 17.0, 18.0)
    );
    assert_eq!(o.report.messages.lost, 0);
    assert_eq!(o.report.failover_ms.len(), 0);
    // The producer was held back, not refused: as many SENDs were confirmed as without
    // the fault.
    let confirmed = |o: &Outcome| {
        o.history
            .sends
            .iter()
            .filter(|s| s.outcome == SendOutcome::Confirmed)
            .count()
    };
    assert_eq!(confirmed(&o), confirmed(&control));
    assert!(o.passed(), "{}", stampede_reports::summary_text(&o.report));
}

#[test]
fn a_slow_disk_delays_every_receipt_by_its_latency() {
    let o = go(&disk_scenario("slow-disk", "latency_ms = 400"));
    assert_eq!(applied(&o, "slow-disk +400ms broker-1"), 1);
    assert_eq!(applied(&o, "disk repaired broker-1"), 1);
    // The broker stays up.
    assert_eq!(
        applied(&o, "broker-1 started"),
        1,
        "{:?}",
        o.history.applied
    );
    let receipt_ms = |from_s: f64, to_s: f64| -> Vec<u64> {
        o.history
            .sends
            .iter()
            .filter(|s| s.outcome == SendOutcome::Confirmed)
            .filter(|s| (from_s * 1e6..to_s * 1e6).contains(&(s.intended_us as f64)))
            .map(|s| (s.settled_us.unwrap() - s.sent_us.unwrap()) / 1000)
            .collect()
    };
    let before = receipt_ms(5.0, 11.0);
    let during = receipt_ms(12.5, 16.0);
    assert!(before.iter().all(|ms| *ms < 100), "{before:?}");
    assert!(
        !during.is_empty() && during.iter().all(|ms| *ms >= 400),
        "{during:?}"
    );
    assert_eq!(o.report.messages.lost, 0);
}
