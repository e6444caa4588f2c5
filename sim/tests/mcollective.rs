//! MCollective-specific behaviour of the simulated fleet.

use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;

fn fleet(skew: &str) -> Scenario {
    let text = format!(
        r#"
name = "skew"
duration_s = 30
[[brokers]]
name = "broker-1"
[[racks]]
name = "rack-1"
nodes = 10
servers = ["broker-1"]
{skew}
[workload.mcollective]
clients = [{{ name = "mco", servers = ["broker-1"] }}]
discovery_interval_s = 5
start_s = 5
ttl_s = 60
"#
    );
    Scenario::parse(&text, "skew.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn nodes_whose_clock_runs_ahead_by_more_than_the_ttl_drop_every_request() {
    // MCollective's Message#validate: age by the node's clock = now - msgtime > ttl.
    let ok = run(
        &fleet("clock_skew_ms = [59000, 59000]"),
        1,
        "test",
        &mut |_| {},
    )
    .unwrap();
    let skewed = run(
        &fleet("clock_skew_ms = [61000, 61000]"),
        1,
        "test",
        &mut |_| {},
    )
    .unwrap();
    let behind = run(
        &fleet("clock_skew_ms = [-3600000, -3600000]"),
        1,
        "test",
        &mut |_| {},
    )
    .unwrap();
    let replies =
        |o: &stampede_sim::run::Outcome| o.analysis.rounds.iter().map(|r| r.received).sum::<u64>();
    let rounds = ok.analysis.rounds.len() as u64;
    assert!(rounds >= 4);
    assert_eq!(replies(&ok), rounds * 10);
    // The requests still reached the nodes (delivered), but nobody answered.
    assert_eq!(skewed.report.messages.delivered, rounds * 10);
    assert_eq!(replies(&skewed), 0);
    // A node clock behind the client is accepted (the check is one-sided).
    assert_eq!(replies(&behind), rounds * 10);
}
