//! The message store in the simulator: a broker with `[brokers.store]` keeps its journal
//! on its host's simulated disk, so a restart recovers the receipted persistent messages a
//! crash would otherwise lose; a power loss takes only what the store had not synced.

use std::path::PathBuf;

use stampede_broker::store::SyncPolicy;
use stampede_sim::checker::Cause;
use stampede_sim::run::{Outcome, run};
use stampede_sim::scenario::{FaultKind, Scenario};

/// `scenarios/broker-crash-persistent.toml`: the broker crashes at 15 s and restarts at
/// 20 s; consumers subscribe at 30 s.
fn catalog() -> Scenario {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/broker-crash-persistent.toml");
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The catalog scenario with another fault kind and sync policy (`None`: no store), and
/// no expectations (the caller asserts).
fn variant(kind: FaultKind, sync: Option<SyncPolicy>) -> Scenario {
    let mut s = catalog();
    s.faults[0].kind = kind;
    match sync {
        Some(sync) => s.brokers[0].store.as_mut().unwrap().sync = sync,
        None => s.brokers[0].store = None,
    }
    s.expectations = Default::default();
    s
}

fn go(s: &Scenario) -> Outcome {
    run(s, s.seed, "test", &mut |_| {}).expect("the simulation ran")
}

/// Messages the first incarnation held when it crashed.
fn held_at_crash(o: &Outcome) -> usize {
    let first = &o.history.incarnations[0];
    assert!(first.crashed_us.is_some(), "{first:?}");
    first.held.len()
}

fn causes(o: &Outcome) -> Vec<&'static str> {
    let mut c: Vec<&'static str> = o
        .analysis
        .losses
        .iter()
        .map(|l| l.cause.as_ref().map_or("unexplained", Cause::label))
        .collect();
    c.dedup();
    c
}

#[test]
fn a_synced_store_recovers_every_receipted_message_after_a_crash() {
    let o = go(&catalog());
    assert!(o.passed(), "{}", stampede_reports::summary_text(&o.report));
    assert_eq!(o.report.messages.lost, 0);
    // The crash really held messages (confirmed, waiting for the consumers)...
    let held = held_at_crash(&o);
    assert!(held >= 1000, "held {held}");
    // ...and they were delivered after the restart, by the broker's second incarnation.
    assert_eq!(o.history.incarnations.len(), 2);
    let restarted_us = o.history.incarnations[1].started_us;
    let after = o
        .history
        .deliveries
        .iter()
        .filter(|d| d.at_us > restarted_us)
        .count();
    assert!(
        after >= held,
        "{after} delivered after the restart, {held} held"
    );
}

#[test]
fn without_a_store_the_same_crash_loses_what_the_broker_held() {
    let o = go(&variant(FaultKind::Crash, None));
    assert!(o.report.messages.lost >= 1000, "{:?}", o.report.messages);
    assert_eq!(causes(&o), ["crash"]);
}

#[test]
fn always_and_group_survive_a_power_loss() {
    for sync in [SyncPolicy::Always, SyncPolicy::Group] {
        let o = go(&variant(FaultKind::PowerLoss, Some(sync)));
        assert!(held_at_crash(&o) >= 1000, "{sync:?}");
        assert_eq!(o.report.messages.lost, 0, "{sync:?}");
        assert!(o.report.messages.delivered >= 3000, "{sync:?}");
    }
}

#[test]
fn interval_ms_survives_a_crash_but_a_power_loss_takes_the_unsynced_interval() {
    let crash = go(&variant(FaultKind::Crash, Some(SyncPolicy::IntervalMs)));
    assert_eq!(crash.report.messages.lost, 0);

    let power = go(&variant(FaultKind::PowerLoss, Some(SyncPolicy::IntervalMs)));
    let lost = power.report.messages.lost;
    // At most one interval (1 s) of the producer's 100 messages per second, and some.
    assert!((1..=100).contains(&lost), "lost {lost}");
    assert_eq!(causes(&power), ["power-loss"]);
    assert_eq!(power.report.unexplained_lost, 0);
    assert_eq!(power.analysis.losses_outside, 0);
}
