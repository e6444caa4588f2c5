//! The benchmark scenarios (`scenarios/bench-*.toml`, run live by `scripts/bench-compare`)
//! also run in the simulator, shortened, and their expectations hold there.

use std::path::PathBuf;

use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;

/// Runs `file` for `duration_s` simulated seconds; queue producers stop 2 s before the
/// end so that everything sent can be delivered.
fn run_bench(file: &str, duration_s: f64) -> stampede_reports::RunReport {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    let mut scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    scenario.duration_s = duration_s;
    for q in &mut scenario.workload.queues {
        q.stop_s = Some(duration_s - 2.0);
    }
    scenario
        .validate()
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let outcome = run(&scenario, scenario.seed, "test", &mut |_| {}).expect("the simulation ran");
    assert!(
        outcome.passed(),
        "{file}: an expectation failed:\n{}",
        stampede_reports::summary_text(&outcome.report)
    );
    assert!(
        outcome.report.messages.delivered > 0,
        "{file}: nothing delivered"
    );
    outcome.report
}

#[test]
fn every_bench_scenario_is_in_this_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bench-") && n.ends_with(".toml"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "bench-connections-2000.toml",
            "bench-fanout-800.toml",
            "bench-queue-10x10-1k.toml",
            "bench-queue-10x10-20b.toml",
            "bench-queue-1x1-1k.toml",
            "bench-queue-1x1-20b.toml",
            "bench-queue-persistent-10x10-1k.toml",
            "bench-queue-persistent-1x1-1k.toml",
            "bench-request-reply.toml",
        ]
    );
}

#[test]
fn bench_fanout_800_reaches_every_node() {
    let r = run_bench("bench-fanout-800.toml", 12.0);
    let m = r.mcollective.unwrap();
    assert!(m.requests >= 8, "{m:?}");
    assert_eq!(m.replies_received, m.replies_expected);
}

#[test]
fn bench_request_reply_answers_directed_requests() {
    let r = run_bench("bench-request-reply.toml", 8.0);
    let m = r.mcollective.unwrap();
    assert!(m.requests >= 30, "{m:?}");
}

#[test]
fn bench_queues_deliver_everything() {
    for file in [
        "bench-queue-1x1-20b.toml",
        "bench-queue-1x1-1k.toml",
        "bench-queue-10x10-20b.toml",
        "bench-queue-10x10-1k.toml",
        "bench-queue-persistent-1x1-1k.toml",
        "bench-queue-persistent-10x10-1k.toml",
    ] {
        let r = run_bench(file, 5.0);
        assert_eq!(r.messages.delivered, r.messages.attempted, "{file}");
    }
}

#[test]
fn bench_connections_2000_keeps_every_node_connected() {
    let r = run_bench("bench-connections-2000.toml", 12.0);
    let last = r.seconds.last().unwrap();
    assert_eq!(
        last.connected.iter().sum::<u64>(),
        2001,
        "{:?}",
        last.connected
    );
}
