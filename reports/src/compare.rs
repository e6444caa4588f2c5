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
//! | `failover_p99_ms` | p99 of the failover time |
//! | `acknowledged`, `unexpected`, `duplicated`, `recovered`, `reorders` | the remaining counts |
//! | `scenario`, `seed`, `sim_seconds` (3 decimals), `passed` (`true`/`false`) | the run itself |
//!
//! Percentile cells are empty when the histogram is empty.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::csv::push_row;
use crate::html;
use crate::model::RunReport;
use crate::stats::HistogramStats;

/// `compare.html`.
pub const COMPARE_HTML_FILE: &str = "compare.html";
/// `compare.csv`.
pub const COMPARE_CSV_FILE: &str = "compare.csv";

/// The header of `compare.csv`.
pub const COMPARE_CSV_HEADER: [&str; 21] = [
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
    "failover_p99_ms",
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

/// The text of `compare.csv`.
pub fn compare_csv(reports: &[(String, RunReport)]) -> String {
    let mut out = String::new();
    push_row(&mut out, &COMPARE_CSV_HEADER);
    for (label, r) in reports {
        let lat = HistogramStats::of(&r.latency_us);
        let sd = HistogramStats::of(&r.send_delay_us);
        let fo = HistogramStats::of(&r.failover_ms);
        let pct = |s: &HistogramStats, v: u64| {
            if s.count == 0 {
                String::new()
            } else {
                v.to_string()
            }
        };
        let m = &r.messages;
        let sim = if r.sim_seconds.is_finite() {
            format!("{:.3}", r.sim_seconds)
        } else {
            String::new()
        };
        push_row(
            &mut out,
            &[
                label.clone(),
                r.target.clone().unwrap_or_default(),
                m.attempted.to_string(),
                m.delivered.to_string(),
                m.lost.to_string(),
                format!("{:.3}", r.throughput()),
                pct(&lat, lat.p50),
                pct(&lat, lat.p99),
                pct(&lat, lat.p999),
                pct(&lat, lat.max),
                pct(&sd, sd.p99),
                pct(&fo, fo.p99),
                m.acknowledged.to_string(),
                m.unexpected.to_string(),
                m.duplicated.to_string(),
                m.recovered.to_string(),
                r.reorders.to_string(),
                r.scenario.clone(),
                r.seed.to_string(),
                sim,
                r.passed().to_string(),
            ],
        );
    }
    out
}
