//! Sweeps: `stampede sweep SCENARIO --vary KEY=RANGE … --objective EXPR`.
//!
//! A sweep runs a scenario at every point of a grid of `--set` overrides (the cartesian
//! product of its `--vary` keys), for every seed, each run a `stampede run` child process
//! (see [`runner`]); it reads each run's metrics from its report ([`metrics`]), judges
//! them against the objective ([`objective`]), and finds the *knee* ([`knee`]): the
//! largest value of the first (load) key that meets the objective, per combination of
//! the other keys (a *series*), bisecting between the last passing and the first failing
//! grid value. The results are `sweep.csv` ([`table`]) and `sweep.html`
//! (`stampede_reports::sweep`).
//!
//! - [`grid`]: `--vary` parsing (`a..b:step`, lists) and the grid's points.
//! - [`metrics`]: the metrics and how each is read from a report.
//! - [`objective`]: the objective's expression language.
//! - [`knee`]: the knee and bisection, independent of processes.
//! - [`runner`]: child processes, the result layout, resume, `--emit-jobs`, `--collect`.
//! - [`table`]: `sweep.csv`, the text summary and the page's data.
//!
//! Like `explore`, nothing here runs inside a simulation: it starts and waits for
//! simulations. A point's results depend only on its scenario, overrides and seed, and
//! the outputs are sorted, so the same sweep gives the same bytes however the runs were
//! scheduled, resumed or collected.

pub mod grid;
pub mod knee;
pub mod metrics;
pub mod objective;
pub mod runner;
pub mod table;

use std::path::PathBuf;

use crate::overrides::{self, OverrideError};
use grid::{Point, Vary, number};
use knee::{Knee, KneeAt};
use metrics::Metrics;
use objective::Expr;
use runner::{Job, Outcome, RunSpec};

/// Errors of a sweep; input errors name the argument and the key.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A bad `--vary`.
    #[error("--vary {arg}: {}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Vary {
        /// The argument.
        arg: String,
        /// Its key (empty when it could not be read).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A bad `--objective`.
    #[error("--objective \"{text}\": {message}")]
    Objective {
        /// The objective as given.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// A bad `--knee-at`.
    #[error("--knee-at {0}: expected largest or smallest")]
    KneeAt(String),
    /// A combination of arguments that cannot work.
    #[error("{0}")]
    Usage(String),
    /// A grid point the scenario refuses (checked before anything runs).
    #[error("the grid point {point} is not a valid scenario: {error}")]
    Point {
        /// The point's `--set`s.
        point: String,
        /// The scenario's error.
        error: OverrideError,
    },
    /// Reading or writing a file.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: std::io::Error,
    },
    /// Writing the table.
    #[error("writing {path}: {cause}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: csv::Error,
    },
    /// Starting a child process.
    #[error("cannot start `{command}`: {cause}")]
    Spawn {
        /// The command line.
        command: String,
        /// What went wrong.
        cause: std::io::Error,
    },
}

/// Whether runs are made, or only results already in the output directory are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run what is missing (`jobs` processes at a time).
    Run,
    /// Run nothing: use the results present and list the missing runs (`--emit-jobs`,
    /// `--collect`).
    Offline,
}

/// A whole sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// The `stampede` executable started for each run.
    pub program: PathBuf,
    /// The scenario, base overrides, duration and output directory.
    pub spec: RunSpec,
    /// The scenario's name (reports of other scenarios are not collected).
    pub scenario_name: String,
    /// The varied keys; the first is the load key.
    pub varies: Vec<Vary>,
    /// The seeds of every point.
    pub seeds: Vec<u64>,
    /// The objective.
    pub objective: Expr,
    /// The objective as given.
    pub objective_text: String,
    /// Which end the knee is.
    pub knee_at: KneeAt,
    /// Bisection steps per series.
    pub bisect: usize,
    /// Processes at a time.
    pub jobs: usize,
    /// Run, or only read.
    pub mode: Mode,
}

/// One run's row.
#[derive(Clone, Debug)]
pub struct Row {
    /// The point.
    pub point: Point,
    /// The seed.
    pub seed: u64,
    /// Whether bisection added the point (not a grid point).
    pub probe: bool,
    /// The scenario's expectations: `pass`, `fail`, or `error` (the run did not finish).
    pub verdict: String,
    /// Whether the run meets the objective.
    pub meets: bool,
    /// The metrics (all `None` for an error).
    pub metrics: Metrics,
    /// Why the run did not finish.
    pub error: Option<String>,
}

/// One series: a combination of the other keys' values, and its knee.
#[derive(Clone, Debug)]
pub struct Series {
    /// The other keys' values.
    pub others: Vec<toml::Value>,
    /// `brokers=2, …` or `all`.
    pub label: String,
    /// The knee, from every point with all its seeds' results.
    pub knee: Knee,
    /// Bisection values run (in order).
    pub probes: Vec<f64>,
}

/// What a sweep found.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// Every run, sorted by series, load value and seed.
    pub rows: Vec<Row>,
    /// Every series, in grid order.
    pub series: Vec<Series>,
    /// Runs without a result (offline mode), in the order they would run.
    pub missing: Vec<Job>,
    /// Runs found finished from before.
    pub resumed: usize,
    /// Runs made now.
    pub ran: usize,
}

/// Progress after each finished run.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Runs finished (including those found from before).
    pub done: usize,
    /// Runs known so far (bisection adds some).
    pub total: usize,
    /// Runs that did not finish.
    pub errors: usize,
    /// Bisection round (0: the grid).
    pub round: usize,
}

/// Checks everything that can be checked before running: the keys, the load key, the
/// seeds, and every grid point against the scenario (overrides applied and validated).
pub fn validate(opts: &SweepOptions) -> Result<(), SweepError> {
    let usage = |m: String| Err(SweepError::Usage(m));
    let Some(first) = opts.varies.first() else {
        return usage("give at least one --vary KEY=RANGE".into());
    };
    if !first.numeric() {
        return usage(format!(
            "--vary {}: the first --vary is the load key and must be numeric",
            first.key
        ));
    }
    for (i, v) in opts.varies.iter().enumerate() {
        if opts.varies[..i].iter().any(|w| w.key == v.key) {
            return usage(format!("--vary {}: the key is varied twice", v.key));
        }
        if opts.spec.base.iter().any(|o| o.key == v.key) {
            return usage(format!("--vary {}: the key is also given to --set", v.key));
        }
    }
    if opts.seeds.is_empty() {
        return usage("no seeds".into());
    }
    // Each key's every value once (with the others' first values), then every point.
    let points = grid::points(&opts.varies);
    for p in &points {
        let mut all = opts.spec.base.clone();
        all.extend(p.overrides(&opts.varies));
        overrides::load(&opts.spec.scenario, &all).map_err(|error| SweepError::Point {
            point: p
                .overrides(&opts.varies)
                .iter()
                .map(|o| format!("--set {o}"))
                .collect::<Vec<_>>()
                .join(" "),
            error,
        })?;
    }
    Ok(())
}

/// The series of the grid, in order: the distinct values of the other keys.
fn series_of(varies: &[Vary]) -> Vec<Vec<toml::Value>> {
    let mut out: Vec<Vec<toml::Value>> = Vec::new();
    for p in grid::points(varies) {
        if !out.iter().any(|o| o == p.others()) {
            out.push(p.others().to_vec());
        }
    }
    out
}

/// A point of series `others` at load value `x` (an integer when the key's values are).
fn point_at(varies: &[Vary], others: &[toml::Value], x: f64) -> Point {
    let value = if varies[0].integer() {
        toml::Value::Integer(x as i64)
    } else {
        toml::Value::Float(x)
    };
    let mut values = vec![value];
    values.extend(others.iter().cloned());
    Point { values }
}

/// Runs (or reads) the sweep: the grid, then up to `bisect` rounds of bisection.
pub fn sweep(
    opts: &SweepOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<SweepOutcome, SweepError> {
    let varies = &opts.varies;
    let mut rows: Vec<Row> = Vec::new();
    let mut missing: Vec<Job> = Vec::new();
    let mut state = Progress {
        done: 0,
        total: 0,
        errors: 0,
        round: 0,
    };
    let (mut resumed, mut ran) = (0, 0);
    let mut batch: Vec<(Point, bool)> = grid::points(varies)
        .into_iter()
        .map(|p| (p, false))
        .collect();
    let series_values = series_of(varies);
    let mut probes: Vec<Vec<f64>> = vec![Vec::new(); series_values.len()];
    loop {
        // Every run of the batch: results kept from before, then the rest.
        let mut to_run: Vec<(Job, bool)> = Vec::new();
        for (point, probe) in &batch {
            for &seed in &opts.seeds {
                let job = Job {
                    point: point.clone(),
                    seed,
                };
                state.total += 1;
                match opts.spec.finished(varies, &job) {
                    Some(report) => {
                        resumed += 1;
                        state.done += 1;
                        rows.push(row(opts, job, *probe, Outcome::Report(Box::new(report))));
                    }
                    None => to_run.push((job, *probe)),
                }
            }
        }
        progress(state);
        match opts.mode {
            Mode::Offline => missing.extend(to_run.drain(..).map(|(j, _)| j)),
            Mode::Run => {
                let jobs: Vec<Job> = to_run.iter().map(|(j, _)| j.clone()).collect();
                let outcomes = runner::run_jobs(
                    &opts.program,
                    &opts.spec,
                    varies,
                    &jobs,
                    opts.jobs,
                    &mut |_, o| {
                        state.done += 1;
                        if matches!(o, Outcome::Error(_)) {
                            state.errors += 1;
                        }
                        progress(state);
                    },
                )?;
                ran += outcomes.len();
                for ((job, probe), outcome) in to_run.into_iter().zip(outcomes) {
                    rows.push(row(opts, job, probe, outcome));
                }
            }
        }
        if state.round >= opts.bisect {
            break;
        }
        state.round += 1;
        // The next round: one midpoint per series whose knee is not yet narrow.
        batch.clear();
        for (i, others) in series_values.iter().enumerate() {
            let k = knee_of(opts, &rows, others);
            if let Some(x) = knee::next_probe(&k, varies[0].integer())
                && probes[i].len() < opts.bisect
                && !probes[i].contains(&x)
            {
                probes[i].push(x);
                batch.push((point_at(varies, others, x), true));
            }
        }
        if batch.is_empty() {
            break;
        }
    }
    let series = series_values
        .iter()
        .zip(probes)
        .map(|(others, probes)| Series {
            label: grid::series_label(varies, others),
            knee: knee_of(opts, &rows, others),
            others: others.clone(),
            probes,
        })
        .collect();
    rows.sort_by(|a, b| {
        let s = |r: &Row| series_values.iter().position(|o| o == r.point.others());
        s(a).cmp(&s(b))
            .then(a.point.x().total_cmp(&b.point.x()))
            .then(a.seed.cmp(&b.seed))
    });
    Ok(SweepOutcome {
        rows,
        series,
        missing,
        resumed,
        ran,
    })
}

/// A row from a run's outcome.
fn row(opts: &SweepOptions, job: Job, probe: bool, outcome: Outcome) -> Row {
    match outcome {
        Outcome::Report(report) => {
            let m = metrics::of(&report);
            Row {
                meets: opts.objective.holds(&m),
                verdict: if report.passed() { "pass" } else { "fail" }.to_owned(),
                metrics: m,
                point: job.point,
                seed: job.seed,
                probe,
                error: None,
            }
        }
        Outcome::Error(e) => Row {
            point: job.point,
            seed: job.seed,
            probe,
            verdict: "error".to_owned(),
            meets: false,
            metrics: Metrics::none(),
            error: Some(e),
        },
    }
}

/// The load values of series `others` that have every seed's result, each with whether
/// every seed met the objective.
pub fn samples(opts: &SweepOptions, rows: &[Row], others: &[toml::Value]) -> Vec<(f64, bool)> {
    let mut out: Vec<(f64, bool)> = Vec::new();
    let mut xs: Vec<f64> = rows
        .iter()
        .filter(|r| r.point.others() == others)
        .map(|r| r.point.x())
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let runs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.point.others() == others && r.point.x() == x)
            .collect();
        if opts.seeds.iter().all(|s| runs.iter().any(|r| r.seed == *s)) {
            out.push((x, runs.iter().all(|r| r.meets)));
        }
    }
    out
}

fn knee_of(opts: &SweepOptions, rows: &[Row], others: &[toml::Value]) -> Knee {
    knee::find(opts.knee_at, &samples(opts, rows, others))
}

/// A load value as the key's values are written (integers without a decimal point).
pub fn fmt_x(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Whether `v` is one of the grid's values of the load key.
pub fn on_grid(varies: &[Vary], v: f64) -> bool {
    varies[0].values.iter().any(|x| number(x) == Some(v))
}
