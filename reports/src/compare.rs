//! Several runs side by side: `compare.html` and `compare.csv`.
//!
//! `compare.csv` has one row per run, in the order given, with these columns:
//!
//! | column | meaning |
//! | --- | --- |
//! | `label` | the run's label |
//! | `target` | what was measured; empty in simulation |
//! | `attempted`, `delivered`, `lost` | message counts |
//! | `throughput_msg_s` | delivered per second of run time, 3 decimals |
//! | `latency_p50_us`, `latency_p99_us`, `latency_p999_us`, `latency_max_us` | end-to-end latency |
//! | `send_delay_p99_us` | p99 of the send delay |
//! | `failover_count`, `failover_p50_ms`, `failover_p99_ms` | failovers, and percentiles of their time |
//! | `mco_reply_ratio` | MCollective replies received over expected, 4 decimals |
//! | `mco_fault_reply_ratio` | the same over requests sent while a fault window was open |
//! | `acknowledged`, `unexpected`, `duplicated`, `recovered`, `reorders` | the remaining counts |
//! | `scenario`, `seed`, `sim_seconds` (3 decimals), `passed` (`true`/`false`) | the run itself |
//!
//! Percentile cells are empty when the histogram is empty.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::csv::write_rows;
use crate::html;
use crate::model::RunReport;
use crate::stats::HistogramStats;

/// `compare.html`.
pub const COMPARE_HTML_FILE: &str = "compare.html";
/// `compare.csv`.
pub const COMPARE_CSV_FILE: &str = "compare.csv";

/// The header of `compare.csv`.
pub const COMPARE_CSV_HEADER: [&str; 25] = [
    "label",
    "target",
    "attempted",
    "delivered",
    "lost",
    "throughput_msg_s",
    "latency_p50_us",
    "latency_p99_us",
    "latency_p999_us",
    "latency_max_us",
    "send_delay_p99_us",
    "failover_count",
    "failover_p50_ms",
    "failover_p99_ms",
    "mco_reply_ratio",
    "mco_fault_reply_ratio",
    "acknowledged",
    "unexpected",
    "duplicated",
    "recovered",
    "reorders",
    "scenario",
    "seed",
    "sim_seconds",
    "passed",
];

/// Writes `compare.html` (side-by-side tables with ratios against the first run, and the
/// charts with one series per run) and `compare.csv` into `dir` (created if missing).
/// Returns their paths.
pub fn write_comparison(reports: &[(String, RunReport)], dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let html_path = dir.join(COMPARE_HTML_FILE);
    fs::write(&html_path, html::compare_page(reports))?;
    let csv_path = dir.join(COMPARE_CSV_FILE);
    fs::write(&csv_path, compare_csv(reports))?;
    Ok(vec![html_path, csv_path])
}

/// One row of `compare.csv`; percentile cells are `None` (empty) for empty histograms.
#[derive(Serialize)]
struct CompareRecord<'a> {
    label: &'a str,
    target: &'a str,
    attempted: u64,
    delivered: u64,
    lost: u64,
    throughput_msg_s: String,
    latency_p50_us: Option<u64>,
    latency_p99_us: Option<u64>,
    latency_p999_us: Option<u64>,
    latency_max_us: Option<u64>,
    send_delay_p99_us: Option<u64>,
    failover_count: u64,
    failover_p50_ms: Option<u64>,
    failover_p99_ms: Option<u64>,
    mco_reply_ratio: Option<String>,
    mco_fault_reply_ratio: Option<String>,
    acknowledged: u64,
    unexpected: u64,
    duplicated: u64,
    recovered: u64,
    reorders: u64,
    scenario: &'a str,
    seed: u64,
    sim_seconds: Option<String>,
    passed: bool,
}

/// The text of `compare.csv`.
pub fn compare_csv(reports: &[(String, RunReport)]) -> String {
    let rows = reports.iter().map(|(label, r)| {
        let lat = HistogramStats::of(&r.latency_us);
        let sd = HistogramStats::of(&r.send_delay_us);
        let fo = HistogramStats::of(&r.failover_ms);
        let pct = |s: &HistogramStats, v: u64| (s.count > 0).then_some(v);
        let m = &r.messages;
        CompareRecord {
            label,
            target: r.target.as_deref().unwrap_or_default(),
            attempted: m.attempted,
            delivered: m.delivered,
            lost: m.lost,
            throughput_msg_s: format!("{:.3}", r.throughput()),
            latency_p50_us: pct(&lat, lat.p50),
            latency_p99_us: pct(&lat, lat.p99),
            latency_p999_us: pct(&lat, lat.p999),
            latency_max_us: pct(&lat, lat.max),
            send_delay_p99_us: pct(&sd, sd.p99),
            failover_count: fo.count,
            failover_p50_ms: pct(&fo, fo.p50),
            failover_p99_ms: pct(&fo, fo.p99),
            mco_reply_ratio: r.mco_reply_ratio().map(|v| format!("{v:.4}")),
            mco_fault_reply_ratio: r.mco_reply_ratio_during_faults().map(|v| format!("{v:.4}")),
            acknowledged: m.acknowledged,
            unexpected: m.unexpected,
            duplicated: m.duplicated,
            recovered: m.recovered,
            reorders: r.reorders,
            scenario: &r.scenario,
            seed: r.seed,
            sim_seconds: r
                .sim_seconds
                .is_finite()
                .then(|| format!("{:.3}", r.sim_seconds)),
            passed: r.passed(),
        }
    });
    write_rows(&COMPARE_CSV_HEADER, rows)
}
