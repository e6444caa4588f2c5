//! Every scenario in `scenarios/` runs (some shortened) and its expectations hold.

use std::path::PathBuf;

use stampede_sim::run::{Outcome, run};
use stampede_sim::scenario::Scenario;

/// Clients connected to each broker in second `t_s` of the run.
fn connected_at(o: &Outcome, t_s: u64) -> Option<Vec<u64>> {
    o.report
        .seconds
        .iter()
        .find(|s| s.t_s == t_s)
        .map(|s| s.connected.clone())
}

fn run_catalog(file: &str, duration_s: Option<f64>) -> Outcome {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    let mut scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    if let Some(d) = duration_s {
        scenario.duration_s = d;
    }
    let outcome = run(&scenario, scenario.seed, "test", &mut |_| {}).expect("the simulation ran");
    assert!(
        outcome.passed(),
        "{file}: an expectation failed:\n{}",
        stampede_reports::summary_text(&outcome.report)
    );
    outcome
}

#[test]
fn mcollective_1x800_baseline_gets_every_reply() {
    let o = run_catalog("mcollective-1x800.toml", Some(60.0));
    let m = o.report.mcollective.as_ref().unwrap();
    assert!(m.requests >= 6, "{m:?}");
    assert_eq!(m.replies_received, m.replies_expected);
    assert!(m.replies_expected >= 5 * 800);
}

#[test]
fn mcollective_3x800_failover_moves_nodes_and_attributes_loss_to_the_crash() {
    let o = run_catalog("mcollective-3x800-failover.toml", Some(200.0));
    // The crash really happened and its nodes moved: broker-2 is empty afterwards.
    let after = o.report.seconds.iter().find(|s| s.t_s == 150).unwrap();
    assert_eq!(after.connected[1], 0, "{:?}", after.connected);
    assert!(
        after.connected[0] + after.connected[2] >= 2399,
        "{:?}",
        after.connected
    );
    let crash = o
        .report
        .losses_by_fault
        .iter()
        .find(|l| l.label == "crash broker-2")
        .unwrap();
    assert_eq!(crash.lost, o.report.messages.lost);
    assert!(o.report.failover_ms.len() >= 700);
}

#[test]
fn broker_crash_failover_loses_only_in_the_crash_window() {
    let o = run_catalog("broker-crash-failover.toml", None);
    assert!(o.report.messages.lost > 0);
    // Every loss has a cause, and every cause happened in the crash window.
    assert_eq!(o.report.unexplained_lost, 0);
    assert_eq!(o.analysis.losses_outside, 0);
}

#[test]
fn broker_crash_persistent_recovers_every_receipted_message_from_its_store() {
    let o = run_catalog("broker-crash-persistent.toml", None);
    assert_eq!(o.report.messages.lost, 0);
    // The crash held messages, which the restarted broker recovered and delivered.
    assert!(!o.history.incarnations[0].held.is_empty());
    assert!(o.report.messages.delivered >= 3000);
}

#[test]
fn queue_competing_consumers_survive_a_broker_restart() {
    let o = run_catalog("queue-competing-consumers-crash.toml", None);
    // All three consumers took part.
    let consumers: std::collections::BTreeSet<_> =
        o.history.deliveries.iter().map(|d| d.consumer).collect();
    assert_eq!(consumers.len(), 3);
}

#[test]
fn partition_heal_recovers_full_coverage() {
    let o = run_catalog("partition-heal.toml", None);
    let fired = o
        .history
        .applied
        .iter()
        .any(|(_, what)| what.starts_with("partition rack-1"));
    assert!(fired, "{:?}", o.history.applied);
}

#[test]
fn nemesis_seeds_differ_and_always_heal() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/nemesis-mcollective.toml");
    let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut schedules = std::collections::BTreeSet::new();
    for seed in 1..=3 {
        let o = run(&scenario, seed, "test", &mut |_| {}).expect("the simulation ran");
        assert!(
            o.passed(),
            "seed {seed}:\n{}",
            stampede_reports::summary_text(&o.report)
        );
        assert!(o.history.applied.iter().any(|(_, w)| w == "heal-all"));
        schedules.insert(format!("{:?}", o.timeline.windows));
    }
    assert_eq!(schedules.len(), 3, "every seed draws its own faults");
}

/// Sums one counter over every incarnation of every broker.
fn broker_total(o: &Outcome, counter: fn(&stampede_broker::core::Stats) -> u64) -> u64 {
    o.history
        .broker_stats
        .iter()
        .map(|(_, h)| counter(&h.get()))
        .sum()
}

#[test]
fn mcollective_3x800_mesh_partition_misses_exactly_the_cut_off_share() {
    let o = run_catalog("mcollective-3x800-mesh-partition.toml", Some(200.0));
    // Requests crossed the bridges, and never looped.
    let n = o.report.network.expect("a network report");
    assert!(n.bridged_deliveries > 10_000, "{n:?}");
    assert_eq!((n.loop_messages, n.returned_messages), (0, 0));
    assert!(broker_total(&o, |s| s.messages_forwarded) > 10_000);
    // The partition fired: every round well inside it got exactly the replies of the 1,600
    // nodes on broker-1 and broker-2, and the losses are attributed to it.
    let inside: Vec<_> = o
        .analysis
        .rounds
        .iter()
        .filter(|r| r.inside_fault)
        .collect();
    assert!(inside.len() >= 4, "{:?}", o.analysis.rounds);
    for r in &inside {
        assert_eq!((r.received, r.expected), (1600, 2400), "{r:?}");
    }
    assert_eq!(o.analysis.losses_outside, 0);
    assert_eq!(o.report.unexplained_lost, 0);
    assert!(o.report.messages.lost >= 4 * 800);
    // Healed: the last rounds reach all 2,400 nodes again.
    let last = o.analysis.rounds.last().unwrap();
    assert!(last.sent_ms > 170_000, "{last:?}");
    assert_eq!(last.received, 2400);
}

#[test]
fn network_hub_and_spoke_found_by_discovery_crosses_two_bridges() {
    let o = run_catalog("network-hub-and-spoke.toml", Some(60.0));
    let n = o.report.network.expect("a network report");
    // Spoke-1 to spoke-N through the hub: two hops, which only multicast discovery set up.
    assert_eq!(n.max_hops, 2, "{n:?}");
    let m = o.report.mcollective.as_ref().unwrap();
    assert_eq!(m.replies_received, m.replies_expected);
    assert!(m.replies_expected >= 3 * 900, "{m:?}");
}

#[test]
fn network_ring_drops_the_second_copy_and_never_loops() {
    let o = run_catalog("network-ring.toml", Some(60.0));
    let n = o.report.network.expect("a network report");
    assert_eq!(n.max_hops, 2, "{n:?}");
    assert_eq!((n.loop_messages, n.returned_messages), (0, 0));
    // Messages did go both ways round the ring: the broker opposite the sender got two
    // copies and its duplicate audit dropped one each time; no client saw a duplicate.
    assert!(broker_total(&o, |s| s.network_duplicates_dropped) > 0);
    assert_eq!(o.report.messages.duplicated, 0);
    assert_eq!(o.report.messages.lost, 0);
    assert!(o.history.deliveries.len() > 1000);
}

#[test]
fn network_mesh_crash_moves_demand_to_the_surviving_broker() {
    let o = run_catalog("network-mesh-crash.toml", Some(120.0));
    // broker-2 crashed: its 300 nodes failed over to broker-3 and stayed there.
    let after = o.report.seconds.iter().find(|s| s.t_s == 100).unwrap();
    assert_eq!(
        after.connected,
        vec![301, 0, 600],
        "nodes and the mco client"
    );
    assert!(o.report.failover_ms.len() >= 300);
    // Every request after the crash reached them through broker-3.
    let m = o.report.mcollective.as_ref().unwrap();
    assert_eq!(m.replies_received, m.replies_expected);
}

#[test]
fn mcollective_clock_skew_silences_exactly_the_skewed_rack() {
    let o = run_catalog("mcollective-clock-skew.toml", None);
    let m = o.report.mcollective.as_ref().unwrap();
    // Six discoveries fall in the minute of wrong clocks, each missing rack-b's 400.
    assert_eq!(m.replies_expected - m.replies_received, 6 * 400, "{m:?}");
    assert_eq!(o.report.messages.lost, 0);
}

#[test]
fn mcollective_isolate_nodes_silences_exactly_the_cut_off_tenth() {
    let o = run_catalog("mcollective-isolate-nodes.toml", None);
    // The 80 cut-off nodes miss the requests of the window, each loss explained; the
    // first heart-beat after the window brings every one of them back.
    assert!(
        o.report.messages.lost >= 80 * 8,
        "{}",
        o.report.messages.lost
    );
    assert_eq!(o.report.unexplained_lost, 0);
    assert_eq!(o.report.failover_ms.len(), 80);
}

#[test]
fn mcollective_partition_nodes_moves_exactly_the_cut_off_tenth_to_the_other_broker() {
    let o = run_catalog("mcollective-partition-nodes.toml", None);
    // The 80 nodes cut off from broker-1 miss the requests until their heart-beat read
    // timeout (four of them), each loss explained by the severed connection; then they
    // answer through broker-2 and the network of brokers, and stay there.
    assert_eq!(o.report.messages.lost, 80 * 4);
    assert_eq!(
        o.report.lost_to("stranded-delivery"),
        80 * 4,
        "{:?}",
        o.report.losses_by_cause
    );
    assert_eq!(o.report.failover_ms.len(), 80);
    let connected = |t_s: u64| connected_at(&o, t_s);
    assert_eq!(connected(50), Some(vec![801, 0]));
    assert_eq!(connected(200), Some(vec![721, 80]));
}

#[test]
fn mcollective_packet_loss_delays_the_slowest_deliveries_and_loses_nothing() {
    let o = run_catalog("mcollective-packet-loss.toml", None);
    // With 3% of segments lost for 90 s of 230, over one percent of the deliveries wait
    // for a retransmission timeout (200 ms), the median none; nothing is lost.
    let l = &o.report.latency_us;
    assert!(
        l.value_at_quantile(0.5) < 10_000,
        "{}",
        l.value_at_quantile(0.5)
    );
    assert!(
        l.value_at_quantile(0.99) >= 200_000,
        "{}",
        l.value_at_quantile(0.99)
    );
    assert_eq!(o.report.messages.lost, 0);
    assert_eq!(o.report.messages.delivered, o.report.messages.attempted);
    assert_eq!(o.report.failover_ms.len(), 0);
}

#[test]
fn mcollective_crash_nodes_silences_exactly_the_crashed_tenth() {
    let o = run_catalog("mcollective-crash-nodes.toml", None);
    // The 80 dead nodes miss the six discoveries of the window, each loss blamed on the
    // crash; started again, they connect afresh (no failover) and answer to the end.
    let lost = o.report.messages.lost;
    assert!(lost >= 80 * 5, "{lost}");
    assert_eq!(o.report.unexplained_lost, 0);
    assert_eq!(
        o.report.lost_to("target-crashed"),
        lost,
        "{:?}",
        o.report.losses_by_cause
    );
    assert_eq!(o.report.failover_ms.len(), 0);
    assert_eq!(o.history.crashes.len(), 80);
}

#[test]
fn roboconf_deploys_every_agent_and_moves_the_fleet_to_another_broker_at_run_time() {
    let o = run_catalog("roboconf-1x800.toml", None);
    let rc = o.report.roboconf.as_ref().expect("a Roboconf summary");
    assert_eq!((rc.agents, rc.ready), (800, 800));
    assert_eq!(rc.dm_problems, 0);
    // One model per agent: none was lost or asked for twice.
    assert_eq!(rc.models, 800);
    // Every agent and the DM took the new configuration and switched.
    assert_eq!(rc.reconfigured, 801);
    let connected = |t_s: u64| connected_at(&o, t_s);
    assert_eq!(connected(100), Some(vec![801, 0]));
    assert_eq!(connected(190), Some(vec![0, 801]));
    assert_eq!(connected(399), Some(vec![0, 801]));
    // Heartbeats reach the DM from every agent after the move.
    assert!(rc.heartbeats >= 800 * 6, "{rc:?}");
}

#[test]
fn a_roboconf_agent_restarted_after_a_reconfiguration_reads_the_new_configuration() {
    // Agents whose process dies after the move to broker-2 (and after broker-1's crash)
    // start again with the messaging file as it is then: they reach the DM on broker-2.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/roboconf-1x800.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace(
        "[expectations]",
        "[[faults]]\nat_s = 230\nkind = \"crash-nodes\"\ntarget = [\"rack-1\"]\nfraction = 0.1\nduration_s = 20\n\n[expectations]",
    );
    let s = Scenario::parse(&text, "roboconf-restarts.toml").unwrap();
    let o = run(&s, s.seed, "test", &mut |_| {}).unwrap();
    let rc = o.report.roboconf.as_ref().expect("a Roboconf summary");
    assert_eq!(o.history.crashes.len(), 80);
    assert_eq!(rc.dm_problems, 0, "{rc:?}");
    assert_eq!(connected_at(&o, 399), Some(vec![0, 801]));
}
