//! Several queue workloads in one scenario are accounted for separately.

use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;

#[test]
fn a_queue_and_a_topic_workload_side_by_side_lose_and_duplicate_nothing() {
    let text = r#"
name = "two-workloads"
duration_s = 20
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
[[workload.queues]]
name = "news"
destination = "/topic/news"
producers = 1
consumers = 3
rate_per_s = 10
producer_servers = ["broker-1"]
consumer_servers = ["broker-1"]
[expectations]
lost_max = 0
duplicated_max = 0
unexpected_max = 0
"#;
    let scenario = Scenario::parse(text, "two.toml").unwrap_or_else(|e| panic!("{e}"));
    let o = run(&scenario, 1, "test", &mut |_| {}).unwrap();
    assert!(o.passed(), "{}", stampede_reports::summary_text(&o.report));
    let jobs = o.history.sends.iter().filter(|s| s.workload == 0).count() as u64;
    let news = o.history.sends.iter().filter(|s| s.workload == 1).count() as u64;
    assert!(jobs > 0 && news > 0);
    // Queue messages count once, topic messages once per consumer of their own workload.
    assert_eq!(o.report.messages.attempted, jobs + 3 * news);
    assert_eq!(o.report.messages.delivered, o.report.messages.attempted);
}
