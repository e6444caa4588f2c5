//! The sweep's outputs: `sweep.csv`, the text summary (`sweep.txt`), and the data of
//! `sweep.html`.
//!
//! `sweep.csv` has one row per run: the varied keys (one column each, named by the
//! key), `seed`, `source` (`grid` or `bisect`), `verdict` (the scenario's own
//! expectations: `pass`, `fail`, `error`), `objective` (`met` or `not met`), then every
//! metric of [`super::metrics::METRICS`] (empty without data), then `error`. Rows are
//! sorted by series, load value and seed; numbers are printed as the shortest text that
//! reads back to the same value, so the same sweep writes the same bytes.

use std::fmt::Write as _;
use std::path::Path;

use stampede_reports::sweep::{SweepChart, SweepKnee, SweepLine, SweepPage, YKind};

use crate::overrides::value_text;

use super::metrics::{METRICS, Metrics};
use super::{Row, Series, SweepError, SweepOptions, fmt_x};

/// The table file.
pub const TABLE_FILE: &str = "sweep.csv";
/// The text summary.
pub const SUMMARY_FILE: &str = "sweep.txt";
/// The page.
pub const PAGE_FILE: &str = "sweep.html";

/// Writes `sweep.csv`.
pub fn write_csv(path: &Path, opts: &SweepOptions, rows: &[Row]) -> Result<(), SweepError> {
    let err = |cause| SweepError::Csv {
        path: path.to_path_buf(),
        cause,
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    let mut header: Vec<String> = opts.varies.iter().map(|v| v.key.to_string()).collect();
    header.extend(["seed", "source", "verdict", "objective"].map(String::from));
    header.extend(METRICS.iter().map(|d| d.name.to_owned()));
    header.push("error".to_owned());
    w.write_record(&header).map_err(err)?;
    for r in rows {
        let mut rec: Vec<String> = r.point.values.iter().map(value_text).collect();
        rec.push(r.seed.to_string());
        rec.push(if r.probe { "bisect" } else { "grid" }.to_owned());
        rec.push(r.verdict.clone());
        rec.push(if r.meets { "met" } else { "not met" }.to_owned());
        rec.extend(
            r.metrics
                .0
                .iter()
                .map(|v| v.map(fmt_num).unwrap_or_default()),
        );
        rec.push(r.error.clone().unwrap_or_default());
        w.write_record(&rec).map_err(err)?;
    }
    w.flush().map_err(|cause| SweepError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// A metric value: shortest text that reads back the same.
pub fn fmt_num(v: f64) -> String {
    format!("{v}")
}

/// One sentence per series about its knee.
pub fn knee_sentence(opts: &SweepOptions, s: &Series) -> String {
    let key = &opts.varies[0].key;
    let word = match opts.knee_at {
        super::knee::KneeAt::Largest => "largest",
        super::knee::KneeAt::Smallest => "smallest",
    };
    let k = &s.knee;
    let mut out = match (k.knee, k.first_fail) {
        (Some(x), Some(f)) => format!(
            "{}: knee at {key} = {} (the {word} value meeting the objective; {} fails)",
            s.label,
            fmt_x(x),
            fmt_x(f)
        ),
        (Some(x), None) => format!(
            "{}: no knee in the range: the objective holds up to {key} = {} (the knee is beyond it)",
            s.label,
            fmt_x(x)
        ),
        (None, Some(f)) => format!(
            "{}: no knee: the objective fails already at {key} = {}",
            s.label,
            fmt_x(f)
        ),
        (None, None) => format!("{}: no results", s.label),
    };
    if !s.probes.is_empty() {
        let _ = write!(
            out,
            "; bisection ran {}",
            s.probes
                .iter()
                .map(|x| fmt_x(*x))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if k.non_monotone {
        out.push_str("; NOT monotone: a value past the first failure meets it again");
    }
    out
}

/// The text summary.
pub fn summary(opts: &SweepOptions, command: &str, outcome: &super::SweepOutcome) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{command}");
    let _ = writeln!(
        out,
        "{} run(s): {} point(s) x {} seed(s) on the grid, {} bisection run(s); {} error(s)",
        outcome.rows.len(),
        crate::sweep::grid::points(&opts.varies).len(),
        opts.seeds.len(),
        outcome.rows.iter().filter(|r| r.probe).count(),
        outcome.rows.iter().filter(|r| r.error.is_some()).count(),
    );
    let _ = writeln!(out, "objective: {}", opts.objective_text);
    for s in &outcome.series {
        let _ = writeln!(out, "  {}", knee_sentence(opts, s));
    }
    for r in outcome.rows.iter().filter(|r| r.error.is_some()) {
        let _ = writeln!(
            out,
            "  error at {} seed {}: {}",
            r.point.dir_name(&opts.varies),
            r.seed,
            r.error.as_deref().unwrap_or("")
        );
    }
    if !outcome.missing.is_empty() {
        let _ = writeln!(
            out,
            "  {} run(s) without a result yet (run them with --emit-jobs, then --collect)",
            outcome.missing.len()
        );
    }
    out
}

/// The charts: which metric, how it is drawn.
const CHARTS: &[(&str, &str, &str, YKind)] = &[
    (
        "mco_p99_ms",
        "p99 discovery time (last reply in the window)",
        "ms",
        YKind::Ms,
    ),
    (
        "mco_reply_ratio",
        "MCollective reply ratio",
        "replies / expected",
        YKind::Ratio,
    ),
    ("loss_ratio", "Loss", "lost / attempted", YKind::Ratio),
    ("latency_p99_ms", "p99 delivery latency", "ms", YKind::Ms),
    (
        "broker_cpu",
        "Busiest broker's CPU",
        "utilisation",
        YKind::Ratio,
    ),
    (
        "clients_cpu",
        "Simulated clients' CPU",
        "cores",
        YKind::Count,
    ),
];

/// Charts drawn only when some run has their metric (the clients' CPU needs a `[clients]`
/// cost profile, which most scenarios do not have).
const CHARTS_IF_ANY: &[&str] = &["clients_cpu"];

/// The data of `sweep.html`: for each chart, one line per series with the worst value
/// over the seeds at each load value.
pub fn page(opts: &SweepOptions, command: &str, outcome: &super::SweepOutcome) -> SweepPage {
    let x_key = opts.varies[0].key.to_string();
    let knees: Vec<SweepKnee> = outcome
        .series
        .iter()
        .map(|s| SweepKnee {
            series: s.label.clone(),
            knee: s.knee.knee,
            first_fail: s.knee.first_fail,
            sentence: knee_sentence(opts, s),
        })
        .collect();
    let charts = CHARTS
        .iter()
        .filter_map(|(metric, title, y_desc, kind)| {
            let lines: Vec<SweepLine> = outcome
                .series
                .iter()
                .map(|s| {
                    let mut xs: Vec<f64> = outcome
                        .rows
                        .iter()
                        .filter(|r| r.point.others() == s.others.as_slice())
                        .map(|r| r.point.x())
                        .collect();
                    xs.dedup();
                    let points = xs
                        .iter()
                        .map(|&x| {
                            let runs: Vec<&Row> = outcome
                                .rows
                                .iter()
                                .filter(|r| {
                                    r.point.others() == s.others.as_slice() && r.point.x() == x
                                })
                                .collect();
                            let ms: Vec<&Metrics> = runs.iter().map(|r| &r.metrics).collect();
                            let v = Metrics::worst(&ms).get(metric);
                            (x, v, runs.iter().all(|r| r.meets))
                        })
                        .collect();
                    SweepLine {
                        label: s.label.clone(),
                        points,
                    }
                })
                .collect();
            let any = lines.iter().any(|l| l.points.iter().any(|p| p.1.is_some()));
            if !any && CHARTS_IF_ANY.contains(metric) {
                return None;
            }
            Some(SweepChart {
                name: (*metric).to_owned(),
                title: format!("{title} vs {x_key}"),
                y_desc: (*y_desc).to_owned(),
                kind: *kind,
                lines,
                empty_note: (!any).then(|| {
                    if *metric == "broker_cpu" {
                        "no broker CPU in these reports: the brokers have no cost profile \
                         (`profile` or `[brokers.cost]` in the scenario)"
                            .to_owned()
                    } else {
                        format!("no data for {metric}")
                    }
                }),
            })
        })
        .collect();
    let mut notes = Vec::new();
    if outcome.series.iter().all(|s| s.knee.first_fail.is_none()) {
        notes.push(
            "The objective held at every point. A simulated broker without a CPU cost profile \
             handles any load in zero simulated time, so load alone cannot break it; give \
             the brokers a cost profile (or widen the range) to find a knee."
                .to_owned(),
        );
    }
    SweepPage {
        title: format!("Sweep of {}", opts.scenario_name),
        command: command.to_owned(),
        x_key,
        objective: opts.objective_text.clone(),
        seeds: opts.seeds.len(),
        knees,
        charts,
        notes,
    }
}
