//! `stampede explore` and `stampede shrink` end to end, through the binary: many seeds in
//! parallel processes, a resumable table with replay commands, jobs for external runners
//! collected into the same table, and a failing run shrunk to a smaller scenario file that
//! still fails the same expectation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stampede_sim::explore::{SeedResult, read_table};
use stampede_sim::scenario::{FaultKind, Scenario};

/// A small, fast MCollective fleet under a crash-only nemesis, with an expectation that
/// a crash breaks: every request must get every reply.
const BROKEN: &str = r#"
name = "explore-test"
description = "A small fleet under a crash nemesis, expecting every reply (it cannot)."
seed = 1
duration_s = 30

[[brokers]]
name = "broker-1"
[[brokers]]
name = "broker-2"

[[racks]]
name = "rack-1"
nodes = 4
servers = ["broker-1", "broker-2"]
policy = "jittered"
heartbeat_s = 5
heartbeat_read_timeout = true
start_spread_s = 1
[[racks]]
name = "rack-2"
nodes = 4
servers = ["broker-2", "broker-1"]
policy = "jittered"
heartbeat_s = 5
heartbeat_read_timeout = true
start_spread_s = 1

[workload.mcollective]
clients = [
  { name = "mco-1", servers = ["broker-1"] },
  { name = "mco-2", servers = ["broker-2"] },
]
discovery_interval_s = 2
start_s = 3

[nemesis]
start_s = 4
end_s = 20
gap_s = [2, 4]
duration_s = [3, 6]
weights = { crash = 2, latency = 1 }
crash_targets = ["broker-*"]
partition_hosts = ["rack-*"]

[expectations]
mco_reply_ratio_min = 1.0
"#;

fn stampede(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(args)
        .output()
        .expect("the stampede binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh directory for one test.
fn workdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn explore_writes_a_resumable_table_with_replay_commands() {
    let dir = workdir("explore");
    let scenario = dir.join("broken.toml");
    std::fs::write(&scenario, BROKEN).unwrap();
    let out = dir.join("out");

    let o = stampede(&[
        "explore",
        s(&scenario),
        "--seeds",
        "1..2",
        "--jobs",
        "2",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let rows = read_table(&out.join("explore.csv")).unwrap();
    assert_eq!(rows.iter().map(|r| r.seed).collect::<Vec<_>>(), [1, 2]);
    let failing: Vec<&SeedResult> = rows.iter().filter(|r| !r.passed()).collect();
    assert!(!failing.is_empty(), "{rows:?}");
    for r in &failing {
        assert_eq!(r.verdict, "fail", "{r:?}");
        assert!(
            r.failed_expectations.contains("mco_reply_ratio_min"),
            "{r:?}"
        );
        let replay = format!("stampede run {} --seed {}", scenario.display(), r.seed);
        assert!(stdout.contains(&replay), "no `{replay}` in\n{}", text(&o));
    }
    let summary = std::fs::read_to_string(out.join("explore.txt")).unwrap();
    assert!(summary.contains("2 seed(s)"), "{summary}");
    // Each seed's report is kept, and agrees with the table.
    let report = stampede_reports::read_report(&out.join("seeds/1")).unwrap();
    assert_eq!(SeedResult::of(&report), rows[0]);

    // The same seed gives the same verdict in a run of its own.
    let o = stampede(&[
        "run",
        s(&scenario),
        "--seed",
        "2",
        "--quiet",
        "--out",
        s(&dir.join("again")),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 2)), "{}", text(&o));
    let report = stampede_reports::read_report(&dir.join("again")).unwrap();
    assert_eq!(SeedResult::of(&report), rows[1]);

    // Resume: the finished seeds are kept as they are (the marker survives), only seed 3
    // runs.
    let marker = out.join("seeds/1/marker");
    std::fs::write(&marker, "kept").unwrap();
    let o = stampede(&[
        "explore",
        s(&scenario),
        "--seeds",
        "1..3",
        "--jobs",
        "2",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(matches!(o.status.code(), Some(2)), "{}", text(&o));
    assert!(marker.exists(), "seed 1 ran again");
    let again = read_table(&out.join("explore.csv")).unwrap();
    assert_eq!(again.len(), 3);
    assert_eq!(&again[..2], &rows[..], "a resumed seed changed its result");

    // Jobs for an external runner: one `stampede run` per seed, into the layout that
    // --collect (and a resumed explore) reads.
    let o = stampede(&[
        "explore",
        s(&scenario),
        "--seeds",
        "4..5",
        "--out",
        s(&out),
        "--duration",
        "25",
        "--emit-jobs",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let jobs = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = jobs.lines().collect();
    assert_eq!(lines.len(), 2, "{jobs}");
    for (line, seed) in lines.iter().zip([4, 5]) {
        assert!(line.starts_with("stampede run "), "{line}");
        assert!(line.contains(&format!("--seed {seed} ")), "{line}");
        assert!(line.contains("--duration 25"), "{line}");
        assert!(
            line.contains(&format!("{}/seeds/{seed}", out.display())),
            "{line}"
        );
    }
    let collected = dir.join("collected");
    let o = stampede(&[
        "explore",
        s(&scenario),
        "--collect",
        s(&out),
        "--out",
        s(&collected),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(read_table(&collected.join("explore.csv")).unwrap(), again);
}

#[test]
fn shrink_writes_a_smaller_scenario_that_fails_the_same_way() {
    let dir = workdir("shrink");
    let scenario = dir.join("broken.toml");
    std::fs::write(&scenario, BROKEN).unwrap();
    let original = Scenario::load(&scenario).unwrap();
    let out = dir.join("shrunk");
    let o = stampede(&[
        "shrink",
        s(&scenario),
        "--seed",
        "1",
        "--expectation",
        "mco_reply_ratio_min",
        "--max-runs",
        "15",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let file = out.join("shrunk.toml");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("stampede run {} --seed 1", file.display())),
        "{}",
        text(&o)
    );
    let body = std::fs::read_to_string(&file).unwrap();
    assert!(body.starts_with("# Shrunk by `stampede shrink`"), "{body}");
    assert!(body.contains("mco_reply_ratio_min"), "{body}");
    assert!(
        body.contains(&format!("{}, seed 1", scenario.display())),
        "{body}"
    );

    // It is a valid scenario, smaller than the original: the nemesis is gone, fewer
    // faults than it drew or fewer nodes.
    let o = stampede(&["check", s(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let shrunk = Scenario::load(&file).unwrap();
    assert!(shrunk.nemesis.is_none());
    let drawn = stampede_sim::explore::materialise_nemesis(&original, 1);
    assert!(
        shrunk.faults.len() < drawn.faults.len() || shrunk.node_count() < original.node_count(),
        "{body}"
    );
    assert!(
        shrunk.faults.iter().any(|f| f.kind == FaultKind::Crash),
        "a reply can only go missing through a crash here: {body}"
    );

    // Replayed as printed, it still fails the same expectation.
    let o = stampede(&[
        "run",
        s(&file),
        "--seed",
        "1",
        "--quiet",
        "--out",
        s(&dir.join("replay")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let report = stampede_reports::read_report(&dir.join("replay")).unwrap();
    assert!(
        report
            .expectations
            .iter()
            .any(|e| e.name == "mco_reply_ratio_min" && !e.ok),
        "{:?}",
        report.expectations
    );
}

/// A failure that only `--set` brings (the file expects nothing of the replies) shrinks
/// too, and the shrunk file has the overrides written in, so that it fails on its own.
#[test]
fn shrink_takes_the_overrides_of_the_failing_run_into_the_shrunk_file() {
    let dir = workdir("shrink-set");
    let scenario = dir.join("lenient.toml");
    std::fs::write(
        &scenario,
        BROKEN.replace("mco_reply_ratio_min = 1.0\n", "unexpected_max = 0\n"),
    )
    .unwrap();
    let out = dir.join("shrunk");
    let o = stampede(&[
        "shrink",
        s(&scenario),
        "--seed",
        "1",
        "--set",
        "expectations.mco_reply_ratio_min=1.0",
        "--set",
        "racks.nodes=3",
        "--max-runs",
        "8",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let file = out.join("shrunk.toml");
    let shrunk = Scenario::load(&file).unwrap();
    assert_eq!(shrunk.expectations.mco_reply_ratio_min, Some(1.0));
    assert!(
        shrunk.racks.iter().all(|r| r.nodes <= 3),
        "{:?}",
        shrunk.racks
    );
    let o = stampede(&[
        "run",
        s(&file),
        "--seed",
        "1",
        "--quiet",
        "--out",
        s(&dir.join("replay")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
