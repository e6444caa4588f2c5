//! `stampede sweep` end to end: the child runs, `sweep.csv`, the knee in `sweep.txt`, and
//! the charts of `sweep.html`, on a scenario whose knee its cost model puts in one place.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One producer and one consumer on a free broker; the clients' one core reads a message
/// in 1 ms (when `clients` is set), so it keeps up with 500 messages a second and not 1,500.
fn scenario(dir: &Path, clients: bool) -> PathBuf {
    let cost = if clients {
        "[clients]\ncores = 1\n[clients.cost]\ndeliveries_ns = 1000000.0\n"
    } else {
        ""
    };
    let text = format!(
        r#"
name = "sweep-test"
seed = 3
duration_s = 16

[network]
latency_ms = 1
jitter_ms = 0

[[brokers]]
name = "broker-1"

[[workload.queues]]
name = "q"
destination = "/queue/sweep"
producers = 1
consumers = 1
rate_per_s = 100
message_bytes = 100
ack = "auto"
producer_servers = ["broker-1"]
consumer_servers = ["broker-1"]
start_s = 2
stop_s = 8

{cost}"#
    );
    let path = dir.join(if clients { "clients.toml" } else { "free.toml" });
    std::fs::write(&path, text).expect("scenario written");
    path
}

/// Runs `stampede sweep` over 500 and 1,500 messages a second; returns its output directory.
fn sweep(scenario: &Path, out: &Path) -> PathBuf {
    let output = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .arg("sweep")
        .arg(scenario)
        .args([
            "--vary",
            "workload.queues.rate_per_s=500,1500",
            "--objective",
            "loss_ratio <= 0.001 and latency_p99_ms < 1000",
            "--bisect",
            "0",
            "--jobs",
            "2",
            "--quiet",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("stampede sweep runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.join("sweep.csv").exists(), "{stderr}");
    out.to_path_buf()
}

/// `sweep.csv`'s rows as (rate, objective, clients_cpu) in file order (`objective`: `met`
/// or `not met`; `verdict` is the scenario's own expectations').
fn rows(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("sweep.csv")).expect("sweep.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    let (rate, verdict, cpu) = (
        col("workload.queues.rate_per_s"),
        col("objective"),
        col("clients_cpu"),
    );
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (
                cells[rate].to_owned(),
                cells[verdict].to_owned(),
                cells[cpu].to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_sweep_finds_the_clients_knee_and_charts_their_cpu() {
    let dir = tempdir("clients");
    let out = sweep(&scenario(&dir, true), &dir.join("out"));
    let rows = rows(&out);
    let row = |rate: &str| {
        rows.iter()
            .find(|r| r.0 == rate)
            .unwrap_or_else(|| panic!("no row for {rate}: {rows:?}"))
    };
    // 500 messages a second for 6 s at 1 ms each: 3 s of the one core over a 16 s run.
    let (_, objective, cpu) = row("500");
    assert_eq!(objective, "met", "{rows:?}");
    let cpu: f64 = cpu.parse().expect("clients_cpu is a number");
    assert!((cpu - 3.0 / 16.0).abs() < 0.01, "clients_cpu {cpu}");
    // 1,500 a second is past the core: a backlog, and the run fails the objective.
    let (_, objective, cpu) = row("1500");
    assert_eq!(objective, "not met", "{rows:?}");
    let cpu: f64 = cpu.parse().expect("clients_cpu is a number");
    assert!(cpu > 0.5, "a saturated core: clients_cpu {cpu}");

    let txt = std::fs::read_to_string(out.join("sweep.txt")).expect("sweep.txt");
    assert!(txt.contains("= 500"), "{txt}");
    let html = std::fs::read_to_string(out.join("sweep.html")).expect("sweep.html");
    assert!(
        html.contains("Simulated clients&apos; CPU vs workload.queues.rate_per_s"),
        "a chart of the clients' CPU"
    );
}

#[test]
fn without_a_clients_profile_there_is_no_clients_cpu() {
    let dir = tempdir("free");
    let out = sweep(&scenario(&dir, false), &dir.join("out"));
    let rows = rows(&out);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (rate, objective, cpu) in &rows {
        // Free clients keep up with both rates.
        assert_eq!(objective, "met", "{rate}: {rows:?}");
        assert_eq!(cpu, "", "{rate}: {rows:?}");
    }
    let html = std::fs::read_to_string(out.join("sweep.html")).expect("sweep.html");
    assert!(
        !html.contains("Simulated clients"),
        "an empty chart for no data"
    );
    assert!(html.contains("Busiest broker"), "the other charts stay");
}

/// A fresh directory under the target directory for this test's files.
fn tempdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sweep-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}
