//! A broker bug that loses a message is caught as an unexplained loss, even when a crash
//! in the same run loses messages for a reason the checker can show.

use stampede_sim::run::{Outcome, run};
use stampede_sim::scenario::Scenario;

const SCENARIO: &str = r#"
name = "injected-loss"
duration_s = 30
[[brokers]]
name = "broker-1"
[[workload.queues]]
name = "jobs"
destination = "/queue/jobs"
producers = 2
consumers = 2
rate_per_s = 20
receipts = true
ack = "client-individual"
producer_servers = ["broker-1"]
consumer_servers = ["broker-1"]
[[faults]]
at_s = 12
kind = "crash"
target = ["broker-1"]
duration_s = 2
"#;

fn run_with(drop_send: Option<u64>) -> Outcome {
    let mut scenario = Scenario::parse(SCENARIO, "injected.toml").unwrap_or_else(|e| panic!("{e}"));
    scenario.brokers[0].core.test_drop_send_number = drop_send;
    run(&scenario, 1, "test", &mut |_| {}).expect("the simulation ran")
}

#[test]
fn a_message_a_broker_drops_by_mistake_fails_the_scenario_as_an_unexplained_loss() {
    let control = run_with(None);
    assert!(
        control.passed(),
        "{}",
        stampede_reports::summary_text(&control.report)
    );
    assert_eq!(control.report.unexplained_lost, 0);

    // The 50th SEND each broker incarnation receives vanishes: one long before the
    // crash, one after the restart. Neither may hide behind the crash.
    let broken = run_with(Some(50));
    let text = stampede_reports::summary_text(&broken.report);
    assert!(!broken.passed(), "{text}");
    assert_eq!(broken.report.unexplained_lost, 2, "{text}");
    assert_eq!(
        broken.report.messages.lost,
        control.report.messages.lost + 2,
        "{text}"
    );
    let failed: Vec<&str> = broken
        .report
        .expectations
        .iter()
        .filter(|e| !e.ok)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(failed, ["unexplained_lost_max"], "{text}");
    assert!(text.contains("unexplained loss: message"), "{text}");
    let listed = &broken.report.unexplained_losses;
    assert_eq!(listed.len(), 2);
    assert!(listed[0].sent_ms < 12_000, "{listed:?}");
    assert!(listed[0].path.contains("jobs-producer-"), "{listed:?}");
    assert!(listed[0].path.contains("on broker-1"), "{listed:?}");
}
