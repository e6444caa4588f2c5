//! Stampede's run reports: plain data in, files out.
//!
//! The simulator (`stampede run`) and the live load generator (`stampede load`) fill a
//! [`RunReport`] and call [`write_report`]; `stampede compare` calls
//! [`write_comparison`]; shards of one run (`--shard i/n`) are read back with
//! [`read_report`] and combined with [`merge()`]. This crate knows nothing about brokers or
//! simulation: it depends on neither.
//!
//! Latency follows the coordinated-omission rules: end-to-end latency is measured from
//! the *intended* send time, the generator's own lag is a separate send-delay histogram,
//! and histograms are merged by adding counts, never by averaging percentiles.
//!
//! # Module map
//!
//! - [`model`]: the plain data: [`RunReport`], [`MessageCounts`] (Jepsen `total-queue`
//!   vocabulary), [`SecondSample`], [`FaultWindow`], [`McoSummary`], and the standard
//!   histogram constructors [`latency_histogram`] and [`failover_histogram`].
//! - [`stats`]: the percentiles every output reports ([`HistogramStats`]) and the
//!   duration formats.
//! - [`summary`]: `summary.json`, its exact shape documented there.
//! - `csv` (private): `timeseries.csv`, `failovers.csv`, `mcollective.csv`, `compare.csv`.
//! - [`hgrm`]: `*.hgrm`, HdrHistogram's percentile-distribution text.
//! - [`histograms`]: `histograms.json`, lossless base64 HdrHistogram V2 encodings.
//! - `merge` (private): [`merge()`], combining shard reports exactly.
//! - `charts` (private): the SVG charts, drawn with `plotters`.
//! - `html` (private): `report.html` and `compare.html`, self-contained pages.
//! - `markup` (private): escaping text for the HTML pages and their SVG charts.
//! - [`compare`]: [`write_comparison`], several runs side by side.
//! - [`text`]: [`summary_text`], the terminal summary.
//! - [`sweep`]: `sweep.html`, a sweep's metrics against its load key with the knee.
//! - [`error`]: [`ReportError`], why a report directory could not be read back.
//!
//! # Files written by [`write_report`]
//!
//! | file | content |
//! | --- | --- |
//! | `summary.json` | counts, percentiles, expectations, faults; `wall_seconds` last |
//! | `timeseries.csv` | one row per second, with the active fault labels |
//! | `histograms.json` | every histogram, lossless, for [`read_report`] and [`merge()`] |
//! | `latency_us.hgrm`, `send_delay_us.hgrm`, `failover_ms.hgrm` | percentile distributions |
//! | `failovers.csv` | one row per client failover: where to, attempts, back-off, first failure |
//! | `mcollective.csv` | one row per MCollective request (only with MCollective traffic) |
//! | `report.html` | the page a person reads: verdicts, tables, charts |
//!
//! Every file except `summary.json` is a function of the report without
//! `wall_seconds`: identical input writes identical bytes. Nothing is timestamped, no
//! map with data-dependent order is serialized, and floats are printed either with a
//! fixed number of decimals or as the shortest text that reads back to the same value.
//!
//! ## `timeseries.csv`
//!
//! One row per [`SecondSample`], ordered by `t_s`:
//!
//! ```text
//! t_s,attempted,delivered,lost,latency_p50_us,latency_p99_us,latency_max_us,mco_replies,connected_<broker>...,in_fault
//! 31,200,151,0,655,1320012,2105343,0,100,0,103,crash broker-2
//! ```
//!
//! - the latency cells are empty in a second without deliveries;
//! - there is one `connected_<broker>` column per entry of [`RunReport::brokers`], in
//!   that order;
//! - `in_fault` lists the labels of the fault windows that overlap the second,
//!   `;`-joined, empty outside every window;
//! - fields are quoted (RFC 4180) only when they hold a comma, a quote or a line break.
//!
//! ## `failovers.csv`
//!
//! `client,from,to,down_ms,connected_ms,up_ms,failover_ms,attempts,failed,waited_ms,first_failure`,
//! one row per [`Failover`] ordered by `down_ms`: times are ms since the start of the
//! run, `connected_ms`, `up_ms` and `failover_ms` empty for a failover unfinished at the
//! end; `waited_ms` is the back-off the client's policy waited before its attempts, so
//! `failover_ms - waited_ms` is the time spent connecting and subscribing.
//!
//! ## `mcollective.csv`
//!
//! `request_id,sent_ms,expected,received,first_reply_ms,last_reply_ms`, one row per
//! [`McoRequest`]; reply times are ms since the start of the run, empty when no reply
//! came.
//!
//! The other formats are documented with their modules: [`summary`], [`hgrm`],
//! [`histograms`], [`compare`].
//!
//! # Example
//!
//! ```
//! use stampede_reports::{RunReport, SecondSample, write_report, read_report, summary_text};
//!
//! let mut report = RunReport::new("smoke", 7);
//! report.brokers = vec!["broker-1".into()];
//! report.sim_seconds = 1.0;
//! report.messages.attempted = 2;
//! report.messages.acknowledged = 2;
//! report.messages.delivered = 2;
//! let mut second = SecondSample::new(0, 1);
//! second.attempted = 2;
//! second.delivered = 2;
//! second.connected = vec![1];
//! for latency in [850, 1_200] {
//!     report.latency_us.record(latency).unwrap();
//!     second.latency.record(latency).unwrap();
//!     report.send_delay_us.record(0).unwrap();
//! }
//! report.seconds.push(second);
//!
//! let dir = std::env::temp_dir().join("stampede-reports-doc-example");
//! let files = write_report(&report, &dir)?;
//! assert!(files.iter().any(|f| f.ends_with("report.html")));
//! assert_eq!(read_report(&dir)?, report);
//! assert!(summary_text(&report).starts_with("PASS  smoke  seed 7"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod charts;
pub mod compare;
mod csv;
pub mod error;
pub mod hgrm;
pub mod histograms;
mod html;
mod markup;
mod merge;
pub mod model;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod text;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use hdrhistogram;
pub use hdrhistogram::Histogram;

pub use compare::write_comparison;
pub use error::ReportError;
pub use merge::merge;
pub use model::{
    BrokerCounter, BrokerCpu, Check, ClientsCpu, ExpectationResult, Failover, FaultLoss,
    FaultWindow, HistogramName, McoRequest, McoSummary, Measure, MessageCounts, NO_FAULT_LABEL,
    NetworkSummary, RoboconfSummary, RunReport, SecondSample, UNEXPLAINED_LABEL,
    UNEXPLAINED_LISTED_MAX, UnexplainedLoss, UnfinishedFailover, failover_histogram,
    latency_histogram,
};
pub use stats::HistogramStats;
pub use summary::Summary;
pub use text::summary_text;

/// `summary.json`.
pub const SUMMARY_FILE: &str = "summary.json";
/// `timeseries.csv`.
pub const TIMESERIES_FILE: &str = "timeseries.csv";
/// `histograms.json`.
pub const HISTOGRAMS_FILE: &str = "histograms.json";
/// `latency_us.hgrm`.
pub const LATENCY_HGRM_FILE: &str = "latency_us.hgrm";
/// `send_delay_us.hgrm`.
pub const SEND_DELAY_HGRM_FILE: &str = "send_delay_us.hgrm";
/// `failover_ms.hgrm`.
pub const FAILOVER_HGRM_FILE: &str = "failover_ms.hgrm";
/// `failovers.csv`.
pub const FAILOVERS_FILE: &str = "failovers.csv";
/// `mcollective.csv`.
pub const MCOLLECTIVE_FILE: &str = "mcollective.csv";
/// `report.html`.
pub const HTML_FILE: &str = "report.html";
/// `broker_cpu.csv` (only when the report has broker CPU).
pub const BROKER_CPU_FILE: &str = "broker_cpu.csv";

/// Writes the report files into `dir` (created if missing) and returns their paths in the
/// order of the table in the crate documentation.
///
/// `mcollective.csv` is written only when `report.mcollective` is `Some`; otherwise a
/// stale one from an earlier run in the same directory is removed, so that the directory
/// never mixes two runs.
pub fn write_report(report: &RunReport, dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut put = |name: &str, content: &str| -> io::Result<()> {
        let path = dir.join(name);
        fs::write(&path, content)?;
        written.push(path);
        Ok(())
    };
    put(SUMMARY_FILE, &Summary::of(report).to_json())?;
    put(TIMESERIES_FILE, &csv::timeseries(report))?;
    put(HISTOGRAMS_FILE, &histograms_json(report))?;
    put(
        LATENCY_HGRM_FILE,
        &hgrm::percentile_distribution(&report.latency_us),
    )?;
    put(
        SEND_DELAY_HGRM_FILE,
        &hgrm::percentile_distribution(&report.send_delay_us),
    )?;
    put(
        FAILOVER_HGRM_FILE,
        &hgrm::percentile_distribution(&report.failover_ms),
    )?;
    put(FAILOVERS_FILE, &csv::failovers(&report.failovers))?;
    match &report.mcollective {
        Some(mco) => put(MCOLLECTIVE_FILE, &csv::mcollective(&mco.per_request))?,
        None => match fs::remove_file(dir.join(MCOLLECTIVE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        },
    }
    if report.broker_cpu.is_empty() {
        match fs::remove_file(dir.join(BROKER_CPU_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    } else {
        put(BROKER_CPU_FILE, &csv::broker_cpu(report))?;
    }
    put(HTML_FILE, &html::report_page(report))?;
    Ok(written)
}

/// Pretty `histograms.json` with a trailing newline.
fn histograms_json(report: &RunReport) -> String {
    // Invariant: the file is strings and integers only, which serde_json always
    // serializes.
    let mut s = serde_json::to_string_pretty(&histograms::file_for(report))
        .expect("histograms.json serializes");
    s.push('\n');
    s
}

/// Reads a directory written by [`write_report`] back into the report it was written
/// from: `summary.json` for the scalar fields, `histograms.json` for every histogram,
/// `timeseries.csv` for the per-second counts and `mcollective.csv` for the per-request
/// rows. `read_report(dir)` after `write_report(&r, dir)` equals `r` (with NaN durations
/// the exception, as NaN is not equal to itself).
///
/// [`ReportError`] converts into `io::Error` for callers that return `io::Result`.
pub fn read_report(dir: &Path) -> Result<RunReport, ReportError> {
    let read = |name: &str| -> Result<(PathBuf, String), ReportError> {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(cause) => Err(ReportError::Io { path, cause }),
        }
    };

    let (path, text) = read(SUMMARY_FILE)?;
    let summary: Summary = serde_json::from_str(&text).map_err(|cause| ReportError::Json {
        path: path.clone(),
        cause,
    })?;
    if summary.schema != summary::SCHEMA {
        return Err(ReportError::Inconsistent {
            path,
            message: format!(
                "schema {:?}, this reader knows {:?}",
                summary.schema,
                summary::SCHEMA
            ),
        });
    }
    let mut report = summary.to_report_skeleton();

    let (path, text) = read(HISTOGRAMS_FILE)?;
    let hists: histograms::HistogramsFile =
        serde_json::from_str(&text).map_err(|cause| ReportError::Json {
            path: path.clone(),
            cause,
        })?;
    if hists.encoding != histograms::ENCODING {
        return Err(ReportError::Inconsistent {
            path,
            message: format!(
                "encoding {:?}, this reader knows {:?}",
                hists.encoding,
                histograms::ENCODING
            ),
        });
    }
    let decode = |name: &str, text: &str| {
        histograms::decode(text).map_err(|message| ReportError::Histogram {
            path: path.clone(),
            name: name.to_string(),
            message,
        })
    };
    report.latency_us = decode("latency_us", &hists.latency_us)?;
    report.send_delay_us = decode("send_delay_us", &hists.send_delay_us)?;
    report.failover_ms = decode("failover_ms", &hists.failover_ms)?;

    let (ts_path, text) = read(TIMESERIES_FILE)?;
    let rows = csv::read_timeseries(&text, &report.brokers).map_err(|(line, message)| {
        ReportError::Csv {
            path: ts_path.clone(),
            line,
            message,
        }
    })?;
    if rows.len() != hists.seconds.len() {
        return Err(ReportError::Inconsistent {
            path: path.clone(),
            message: format!(
                "{} per-second histograms for {} rows of {TIMESERIES_FILE}",
                hists.seconds.len(),
                rows.len()
            ),
        });
    }
    for (row, h) in rows.into_iter().zip(&hists.seconds) {
        if row.t_s != h.t_s {
            return Err(ReportError::Inconsistent {
                path: path.clone(),
                message: format!(
                    "per-second histogram for t_s {} where {TIMESERIES_FILE} has t_s {}",
                    h.t_s, row.t_s
                ),
            });
        }
        report.seconds.push(SecondSample {
            t_s: row.t_s,
            attempted: row.attempted,
            delivered: row.delivered,
            lost: row.lost,
            latency: decode(&format!("seconds[t_s={}].latency_us", h.t_s), &h.latency_us)?,
            connected: row.connected,
            mco_replies: row.mco_replies,
        });
    }

    // Directories written before `failovers.csv` existed read back without failovers.
    if dir.join(FAILOVERS_FILE).exists() {
        let (path, text) = read(FAILOVERS_FILE)?;
        report.failovers =
            csv::read_failovers(&text).map_err(|(line, message)| ReportError::Csv {
                path,
                line,
                message,
            })?;
    }
    if let Some(mco) = &mut report.mcollective {
        let (path, text) = read(MCOLLECTIVE_FILE)?;
        mco.per_request =
            csv::read_mcollective(&text).map_err(|(line, message)| ReportError::Csv {
                path,
                line,
                message,
            })?;
    }
    if !report.broker_cpu.is_empty() {
        let (path, text) = read(BROKER_CPU_FILE)?;
        let names: Vec<String> = report.broker_cpu.iter().map(|c| c.broker.clone()).collect();
        let series =
            csv::read_broker_cpu(&text, &names).map_err(|(line, message)| ReportError::Csv {
                path,
                line,
                message,
            })?;
        for (c, s) in report.broker_cpu.iter_mut().zip(series) {
            c.per_second_us = s;
        }
    }
    Ok(report)
}
