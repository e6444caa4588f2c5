//! Many seeds and shrinking: `stampede explore` and `stampede shrink`.
//!
//! `explore` runs one scenario over a range of seeds, each seed in its own process (the
//! `stampede` binary started again as `stampede run … --seed S --out DIR/seeds/S`), so
//! that a simulation never shares a process, a thread or a clock with another one. A
//! seed's report directory is its result: a seed whose directory holds a readable
//! `summary.json` is not run again, so an interrupted exploration resumes where it
//! stopped. The results become one table (`explore.csv`) and a short summary with the
//! command that replays each failing seed.
//!
//! `shrink` takes one failing seed and makes its scenario smaller while it still fails
//! the same expectation: the nemesis becomes the explicit faults it drew for that seed,
//! faults are dropped (delta debugging), racks, nodes and clients are removed or halved,
//! the run and every fault are shortened and faults move earlier. Every candidate is a
//! whole, deterministic run of the same seed; the smallest failing scenario is written as
//! a scenario file.
//!
//! Nothing here runs inside a simulation: this is the parent process that starts and
//! waits for simulations, and the only place that reads a child's exit status.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stampede_reports::RunReport;

use crate::fault::{DiskFault, Op, Timeline};
use crate::scenario::{FaultKind, FaultSpec, Scenario};

/// The file with one row per seed.
pub const TABLE_FILE: &str = "explore.csv";
/// The text summary written next to the table.
pub const SUMMARY_FILE: &str = "explore.txt";
/// The directory (under the output directory) holding one report directory per seed.
pub const SEEDS_DIR: &str = "seeds";

/// Errors of exploring and shrinking.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// A `--seeds` value that is not `A..B`, `A..=B`, `S` or a comma-separated list.
    #[error(
        "bad seed range `{0}`: expected A..B (both ends included), A..=B, S, or a list like 1..10,42"
    )]
    BadSeeds(String),
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
        /// The table file.
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
    /// Turning a scenario into TOML.
    #[error("cannot write the scenario as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
    /// Writing the shrunk scenario.
    #[error("cannot write the shrunk scenario: {0}")]
    Shrunk(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExploreError + '_ {
    move |cause| ExploreError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Seeds to explore, in increasing order without repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

impl FromStr for Seeds {
    type Err = ExploreError;

    /// `A..B` and `A..=B` both include `B` (`1..200` is 200 seeds), `S` is one seed, and
    /// parts can be joined with commas.
    fn from_str(s: &str) -> Result<Seeds, ExploreError> {
        let bad = || ExploreError::BadSeeds(s.to_owned());
        let mut seeds = std::collections::BTreeSet::new();
        for part in s.split(',').map(str::trim) {
            if let Some((a, b)) = part.split_once("..") {
                let b = b.strip_prefix('=').unwrap_or(b);
                let a: u64 = a.trim().parse().map_err(|_| bad())?;
                let b: u64 = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a >= 10_000_000 {
                    return Err(bad());
                }
                seeds.extend(a..=b);
            } else {
                seeds.insert(part.parse::<u64>().map_err(|_| bad())?);
            }
        }
        if seeds.is_empty() {
            return Err(bad());
        }
        Ok(Seeds(seeds.into_iter().collect()))
    }
}

/// What every seed's `stampede run` is given besides its seed: a shortened duration and
/// `--set` overrides (each `KEY=VALUE`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFlags {
    /// `--duration`.
    pub duration_s: Option<f64>,
    /// `--set` arguments, in order.
    pub sets: Vec<String>,
}

impl RunFlags {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(d) = self.duration_s {
            args.push("--duration".to_owned());
            args.push(d.to_string());
        }
        for s in &self.sets {
            args.push("--set".to_owned());
            args.push(s.clone());
        }
        args
    }
}

/// The command that replays one seed of `scenario` (with the same flags).
pub fn replay_command(scenario: &Path, seed: u64, flags: &RunFlags) -> String {
    let mut c = format!("stampede run {} --seed {seed}", scenario.display());
    for a in flags.args() {
        let _ = write!(c, " {}", shell_word(&a));
    }
    c
}

/// The arguments (after the program) of the `run` that computes one seed into `out`.
pub fn run_args(scenario: &Path, seed: u64, flags: &RunFlags, out: &Path) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        scenario.display().to_string(),
        "--seed".to_owned(),
        seed.to_string(),
        "--quiet".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ];
    args.extend(flags.args());
    args
}

/// A shell-safe rendering of one argument (single quotes when needed).
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One command line per seed for an external runner (GNU parallel, a Slurm array, a
/// Kubernetes indexed Job): each writes its report to `<out>/seeds/<seed>`, the layout
/// `explore --collect` (and a resumed `explore --out <out>`) reads.
pub fn job_commands(
    program: &str,
    scenario: &Path,
    seeds: &[u64],
    flags: &RunFlags,
    out: &Path,
) -> Vec<String> {
    seeds
        .iter()
        .map(|&seed| {
            let dir = out.join(SEEDS_DIR).join(seed.to_string());
            std::iter::once(program.to_owned())
                .chain(run_args(scenario, seed, flags, &dir))
                .map(|a| shell_word(&a))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// One row of `explore.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// `pass`, `fail`, or `error` (the run did not finish; see its `run.log`).
    pub verdict: String,
    /// Lost messages.
    pub lost: u64,
    /// Lost messages without a cause.
    pub unexplained_lost: u64,
    /// p99 failover time in ms; empty when no client failed over.
    pub failover_p99_ms: Option<u64>,
    /// The failed expectations, separated by `;`.
    pub failed_expectations: String,
}

impl SeedResult {
    /// The row of a finished run.
    pub fn of(report: &RunReport) -> SeedResult {
        let failed: Vec<&str> = report
            .expectations
            .iter()
            .filter(|e| !e.ok)
            .map(|e| e.name.as_str())
            .collect();
        SeedResult {
            seed: report.seed,
            verdict: if failed.is_empty() { "pass" } else { "fail" }.to_owned(),
            lost: report.messages.lost,
            unexplained_lost: report.unexplained_lost,
            failover_p99_ms: (!report.failover_ms.is_empty())
                .then(|| report.failover_ms.value_at_quantile(0.99)),
            failed_expectations: failed.join(";"),
        }
    }

    /// The row of a run that did not finish.
    pub fn error(seed: u64, what: &str) -> SeedResult {
        SeedResult {
            seed,
            verdict: "error".to_owned(),
            lost: 0,
            unexplained_lost: 0,
            failover_p99_ms: None,
            failed_expectations: what.to_owned(),
        }
    }

    /// Whether the seed passed.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// Writes `explore.csv` (rows in seed order).
pub fn write_table(path: &Path, rows: &[SeedResult]) -> Result<(), ExploreError> {
    let csv_err = |cause| ExploreError::Csv {
        path: path.to_path_buf(),
        cause,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    for r in rows {
        w.serialize(r).map_err(csv_err)?;
    }
    w.flush().map_err(io_err(path))
}

/// Reads `explore.csv` back.
pub fn read_table(path: &Path) -> Result<Vec<SeedResult>, ExploreError> {
    let csv_err = |cause| ExploreError::Csv {
        path: path.to_path_buf(),
        cause,
    };
    let mut r = csv::Reader::from_path(path).map_err(csv_err)?;
    r.deserialize().map(|row| row.map_err(csv_err)).collect()
}

/// The text summary: counts, failures by expectation, the worst failover p99, and the
/// replay command of every failing seed.
pub fn summary(scenario: &Path, flags: &RunFlags, rows: &[SeedResult]) -> String {
    let mut out = String::new();
    let failing: Vec<&SeedResult> = rows.iter().filter(|r| !r.passed()).collect();
    let _ = writeln!(
        out,
        "{}: {} seed(s), {} passed, {} failed",
        scenario.display(),
        rows.len(),
        rows.len() - failing.len(),
        failing.len()
    );
    let mut by_expectation = std::collections::BTreeMap::<&str, usize>::new();
    for r in &failing {
        if r.verdict == "fail" {
            for e in r.failed_expectations.split(';').filter(|e| !e.is_empty()) {
                *by_expectation.entry(e).or_default() += 1;
            }
        } else {
            *by_expectation
                .entry("(the run did not finish)")
                .or_default() += 1;
        }
    }
    for (e, n) in &by_expectation {
        let _ = writeln!(out, "  {e}: failed in {n} seed(s)");
    }
    let lost: u64 = rows.iter().map(|r| r.lost).sum();
    let unexplained: u64 = rows.iter().map(|r| r.unexplained_lost).sum();
    let _ = writeln!(
        out,
        "  lost {lost} message(s) in all, {unexplained} unexplained"
    );
    if let Some(worst) = rows
        .iter()
        .filter_map(|r| r.failover_p99_ms.map(|p| (p, r.seed)))
        .max()
    {
        let _ = writeln!(
            out,
            "  worst failover p99 {} ms (seed {})",
            worst.0, worst.1
        );
    }
    if !failing.is_empty() {
        let _ = writeln!(out, "replay a failing seed with:");
        for r in &failing {
            let _ = writeln!(
                out,
                "  {}    # {} {}",
                replay_command(scenario, r.seed, flags),
                r.verdict,
                r.failed_expectations
            );
        }
    }
    out
}

/// A seed's result directory, when it holds a finished report.
pub fn finished(dir: &Path) -> Option<SeedResult> {
    stampede_reports::read_report(dir)
        .ok()
        .map(|r| SeedResult::of(&r))
}

/// Gathers the results of scenario `scenario` (its name) under `dirs`: each one a report
/// directory, or a directory of report directories (such as `<out>/seeds` or `<out>`).
/// Sorted by seed; a seed found twice keeps its first result. Returns the rows and the
/// directories skipped: without a report, or with one of another scenario.
pub fn collect(
    scenario: &str,
    dirs: &[PathBuf],
) -> Result<(Vec<SeedResult>, Vec<PathBuf>), ExploreError> {
    let mut rows = std::collections::BTreeMap::new();
    let mut missing = Vec::new();
    let mut visit = |d: &Path, rows: &mut std::collections::BTreeMap<u64, SeedResult>| {
        match stampede_reports::read_report(d) {
            Ok(r) if r.scenario == scenario => {
                rows.entry(r.seed).or_insert_with(|| SeedResult::of(&r));
            }
            _ => missing.push(d.to_path_buf()),
        }
    };
    for d in dirs {
        if d.join(stampede_reports::SUMMARY_FILE).exists() {
            visit(d, &mut rows);
            continue;
        }
        let base = if d.join(SEEDS_DIR).is_dir() {
            d.join(SEEDS_DIR)
        } else {
            d.clone()
        };
        let mut subs: Vec<PathBuf> = std::fs::read_dir(&base)
            .map_err(io_err(&base))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for s in subs {
            visit(&s, &mut rows);
        }
    }
    Ok((rows.into_values().collect(), missing))
}

/// How to explore.
#[derive(Clone, Debug)]
pub struct ExploreOptions {
    /// The `stampede` executable to start for each seed.
    pub program: PathBuf,
    /// The scenario file.
    pub scenario: PathBuf,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Seeds run at once (processes).
    pub jobs: usize,
    /// The output directory.
    pub out: PathBuf,
    /// A shortened duration and overrides, passed on to every run.
    pub flags: RunFlags,
}

/// Progress of an exploration, after each finished seed.
#[derive(Clone, Copy, Debug)]
pub struct ExploreProgress {
    /// Seeds finished (including those found finished from an earlier exploration).
    pub done: usize,
    /// Seeds in all.
    pub total: usize,
    /// Seeds that failed so far.
    pub failed: usize,
    /// Seeds that were already finished when the exploration started.
    pub resumed: usize,
}

/// A running child: its seed, the process, and its temporary output directory.
struct Running {
    seed: u64,
    child: Child,
    partial: PathBuf,
}

/// Runs every seed of `opts` that has no result yet, `opts.jobs` processes at a time, and
/// returns every seed's result (in seed order). A run writes into `<seed>.partial` and is
/// renamed to `<seed>` when it finished, so that a killed exploration never leaves a
/// half-written result behind.
pub fn explore(
    opts: &ExploreOptions,
    progress: &mut dyn FnMut(ExploreProgress),
) -> Result<Vec<SeedResult>, ExploreError> {
    let seeds_dir = opts.out.join(SEEDS_DIR);
    std::fs::create_dir_all(&seeds_dir).map_err(io_err(&seeds_dir))?;
    let mut results = std::collections::BTreeMap::new();
    let mut pending = VecDeque::new();
    for &seed in &opts.seeds {
        match finished(&seeds_dir.join(seed.to_string())) {
            Some(r) => {
                results.insert(seed, r);
            }
            None => pending.push_back(seed),
        }
    }
    let resumed = results.len();
    let mut state = ExploreProgress {
        done: resumed,
        total: opts.seeds.len(),
        failed: results.values().filter(|r| !r.passed()).count(),
        resumed,
    };
    progress(state);
    let mut running: Vec<Running> = Vec::new();
    let jobs = opts.jobs.max(1);
    while !pending.is_empty() || !running.is_empty() {
        while running.len() < jobs
            && let Some(seed) = pending.pop_front()
        {
            running.push(start(opts, &seeds_dir, seed)?);
        }
        let mut still = Vec::with_capacity(running.len());
        let mut any = false;
        for mut r in running {
            let status = r.child.try_wait().map_err(io_err(&r.partial))?;
            match status {
                None => still.push(r),
                Some(status) => {
                    any = true;
                    let result = finish(&seeds_dir, r.seed, &r.partial, status)?;
                    state.done += 1;
                    if !result.passed() {
                        state.failed += 1;
                    }
                    results.insert(r.seed, result);
                    progress(state);
                }
            }
        }
        running = still;
        if !any && !running.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(results.into_values().collect())
}

fn start(opts: &ExploreOptions, seeds_dir: &Path, seed: u64) -> Result<Running, ExploreError> {
    let partial = seeds_dir.join(format!("{seed}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
    let log_path = partial.join("run.log");
    let log = std::fs::File::create(&log_path).map_err(io_err(&log_path))?;
    let err_log = log.try_clone().map_err(io_err(&log_path))?;
    let args = run_args(&opts.scenario, seed, &opts.flags, &partial);
    let child = Command::new(&opts.program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|cause| ExploreError::Spawn {
            command: format!("{} {}", opts.program.display(), args.join(" ")),
            cause,
        })?;
    Ok(Running {
        seed,
        child,
        partial,
    })
}

/// Turns a finished child into its result; exit status 0 and 2 are runs that finished
/// (passed or failed an expectation), anything else an error.
fn finish(
    seeds_dir: &Path,
    seed: u64,
    partial: &Path,
    status: std::process::ExitStatus,
) -> Result<SeedResult, ExploreError> {
    let report = matches!(status.code(), Some(0 | 2))
        .then(|| finished(partial))
        .flatten();
    match report {
        Some(r) => {
            let dir = seeds_dir.join(seed.to_string());
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            }
            std::fs::rename(partial, &dir).map_err(io_err(&dir))?;
            Ok(r)
        }
        None => {
            let log = std::fs::read_to_string(partial.join("run.log")).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            Ok(SeedResult::error(
                seed,
                &format!("exit {status}: {last}").replace(';', ","),
            ))
        }
    }
}

// ----- Shrinking -----------------------------------------------------------------------

/// The explicit `[[faults]]` equivalent of the scenario's nemesis for `seed`: the same
/// timeline (same windows, labels and times), but each fault is now a line that can be
/// dropped, shortened or moved. Returns the scenario unchanged when it has no nemesis.
pub fn materialise_nemesis(scenario: &Scenario, seed: u64) -> Scenario {
    let mut out = scenario.clone();
    let Some(nemesis) = out.nemesis.take() else {
        return out;
    };
    let mut only = scenario.clone();
    only.faults.clear();
    only.nemesis = Some(nemesis);
    let t = Timeline::build(&only, seed);
    let secs = |ms: u64| ms as f64 / 1000.0;
    for (i, w) in t.windows.iter().enumerate() {
        let Some(open) = t.actions.iter().find(|a| a.window == Some(i)) else {
            continue;
        };
        let mut skew_ms = None;
        let (kind, target, a, b, latency_ms) = match &open.op {
            Op::Crash(t) => (FaultKind::Crash, t.clone(), vec![], vec![], None),
            Op::PowerLoss(t) => (FaultKind::PowerLoss, t.clone(), vec![], vec![], None),
            Op::Partition(a, b) => (FaultKind::Partition, vec![], a.clone(), b.clone(), None),
            Op::PartitionOneway(a, b) => (
                FaultKind::PartitionOneway,
                vec![],
                a.clone(),
                b.clone(),
                None,
            ),
            Op::Hold(a, b) => (FaultKind::Hold, vec![], a.clone(), b.clone(), None),
            Op::Latency(a, b, ms) => (FaultKind::Latency, vec![], a.clone(), b.clone(), *ms),
            Op::Disk(t, DiskFault::Error) => {
                (FaultKind::DiskError, t.clone(), vec![], vec![], None)
            }
            Op::Disk(t, DiskFault::Full) => (FaultKind::DiskFull, t.clone(), vec![], vec![], None),
            Op::Disk(t, DiskFault::SlowMs(ms)) => {
                (FaultKind::SlowDisk, t.clone(), vec![], vec![], Some(*ms))
            }
            Op::StoragePartition(t, true) => {
                (FaultKind::StoragePartition, t.clone(), vec![], vec![], None)
            }
            Op::ClockSkew(t, ms) => {
                skew_ms = *ms;
                (FaultKind::ClockSkew, t.clone(), vec![], vec![], None)
            }
            _ => continue,
        };
        out.faults.push(FaultSpec {
            at_s: secs(w.start_ms),
            kind,
            target,
            a,
            b,
            latency_ms,
            skew_ms,
            fraction: None,
            from: Vec::new(),
            loss_percent: None,
            duration_s: w.end_ms.map(|e| secs(e - w.start_ms)),
            label: Some(w.label.clone()),
        });
    }
    for act in t.actions.iter().filter(|a| a.op == Op::HealAll) {
        out.faults.push(FaultSpec {
            at_s: secs(act.at_ms),
            kind: FaultKind::HealAll,
            target: vec![],
            a: vec![],
            b: vec![],
            latency_ms: None,
            skew_ms: None,
            fraction: None,
            from: Vec::new(),
            loss_percent: None,
            duration_s: None,
            label: None,
        });
    }
    out
}

/// How one shrink went.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest scenario found that still fails the expectation.
    pub scenario: Scenario,
    /// Runs made (including the first, of the original).
    pub runs: usize,
    /// What was reduced, one line per accepted step.
    pub steps: Vec<String>,
}

/// A scenario's size in the terms shrinking reduces: faults, nodes, clients, duration.
pub fn size(s: &Scenario) -> String {
    let faults = s.faults.len();
    let mco = s
        .workload
        .mcollective
        .as_ref()
        .map_or(0, |m| m.clients.len());
    format!(
        "{faults} fault(s){}, {} rack(s) with {} node(s), {mco} mco client(s), {} queue workload(s), {} s",
        if s.nemesis.is_some() {
            " + nemesis"
        } else {
            ""
        },
        s.racks.len(),
        s.node_count(),
        s.workload.queues.len(),
        s.duration_s
    )
}

/// Shrinks `start` (which must already fail) with `fails`, the judge of a candidate: it
/// returns whether the candidate still fails the same expectation. At most `max_runs`
/// candidates are tried. Every candidate passed to `fails` is valid
/// ([`Scenario::validate`]).
pub fn shrink(
    start: &Scenario,
    seed: u64,
    max_runs: usize,
    fails: &mut dyn FnMut(&Scenario) -> bool,
) -> Shrunk {
    let mut sh = Shrinker {
        best: start.clone(),
        runs: 0,
        max_runs,
        steps: Vec::new(),
        fails,
    };
    if start.nemesis.is_some() {
        let explicit = materialise_nemesis(start, seed);
        sh.try_accept(explicit, "the nemesis became explicit faults".to_owned());
    }
    loop {
        let before = sh.steps.len();
        sh.drop_faults();
        sh.reduce_fleet();
        sh.shorten_run();
        sh.shorten_faults();
        sh.move_faults_earlier();
        if sh.steps.len() == before || sh.runs >= sh.max_runs {
            break;
        }
    }
    Shrunk {
        scenario: sh.best,
        runs: sh.runs,
        steps: sh.steps,
    }
}

struct Shrinker<'a> {
    best: Scenario,
    runs: usize,
    max_runs: usize,
    steps: Vec<String>,
    fails: &'a mut dyn FnMut(&Scenario) -> bool,
}

impl Shrinker<'_> {
    /// Runs `candidate` and keeps it when it is valid and still fails.
    fn try_accept(&mut self, candidate: Scenario, what: String) -> bool {
        if self.runs >= self.max_runs || candidate.validate().is_err() {
            return false;
        }
        self.runs += 1;
        if (self.fails)(&candidate) {
            tracing::info!("shrink: kept: {what}");
            self.best = candidate;
            self.steps.push(what);
            true
        } else {
            false
        }
    }

    fn with_faults(&self, faults: Vec<FaultSpec>) -> Scenario {
        let mut s = self.best.clone();
        s.faults = faults;
        s
    }

    /// Delta debugging over the fault list: remove ever smaller chunks of faults while
    /// the run still fails.
    fn drop_faults(&mut self) {
        if self.best.faults.is_empty() {
            return;
        }
        let n0 = self.best.faults.len();
        if self.try_accept(
            self.with_faults(Vec::new()),
            format!("dropped all {n0} fault(s)"),
        ) {
            return;
        }
        let mut parts = 2usize;
        while self.best.faults.len() >= 2 && self.runs < self.max_runs {
            let faults = self.best.faults.clone();
            let len = faults.len();
            let parts_now = parts.min(len);
            let chunk = len.div_ceil(parts_now);
            let mut reduced = false;
            for start in (0..len).step_by(chunk) {
                let end = (start + chunk).min(len);
                let rest: Vec<FaultSpec> = faults[..start]
                    .iter()
                    .chain(&faults[end..])
                    .cloned()
                    .collect();
                let labels: Vec<String> = faults[start..end].iter().map(fault_label).collect();
                if self.try_accept(
                    self.with_faults(rest),
                    format!("dropped fault(s): {}", labels.join("; ")),
                ) {
                    parts = (parts_now - 1).max(2);
                    reduced = true;
                    break;
                }
            }
            if !reduced {
                if parts_now >= len {
                    break;
                }
                parts = (parts_now * 2).min(len);
            }
        }
        // Delta debugging leaves one fault when it cannot drop it with the others.
        if self.best.faults.len() == 1 {
            let label = fault_label(&self.best.faults[0]);
            self.try_accept(
                self.with_faults(Vec::new()),
                format!("dropped fault {label}"),
            );
        }
    }

    /// Fewer racks, halved node counts, fewer mco clients and queue workloads, fewer
    /// producers and consumers.
    fn reduce_fleet(&mut self) {
        let mut i = 0;
        while i < self.best.racks.len() && self.best.racks.len() > 1 {
            let mut c = self.best.clone();
            let name = c.racks.remove(i).name;
            if !self.try_accept(c, format!("removed rack {name}")) {
                i += 1;
            }
        }
        for i in 0..self.best.racks.len() {
            while self.best.racks[i].nodes > 1 && self.runs < self.max_runs {
                let mut c = self.best.clone();
                let r = &mut c.racks[i];
                let from = r.nodes;
                r.nodes = from.div_ceil(2);
                let what = format!("{}: nodes {from} -> {}", r.name, r.nodes);
                if !self.try_accept(c, what) {
                    break;
                }
            }
        }
        let mut i = 0;
        while self
            .best
            .workload
            .mcollective
            .as_ref()
            .is_some_and(|m| i < m.clients.len() && m.clients.len() > 1)
        {
            let mut c = self.best.clone();
            let Some(m) = c.workload.mcollective.as_mut() else {
                break;
            };
            let name = m.clients.remove(i).name;
            if !self.try_accept(c, format!("removed mco client {name}")) {
                i += 1;
            }
        }
        let mut i = 0;
        while i < self.best.workload.queues.len() && self.best.workload.queues.len() > 1 {
            let mut c = self.best.clone();
            let name = c.workload.queues.remove(i).name;
            if !self.try_accept(c, format!("removed queue workload {name}")) {
                i += 1;
            }
        }
        for i in 0..self.best.workload.queues.len() {
            for producers in [true, false] {
                loop {
                    let q = &self.best.workload.queues[i];
                    let n = if producers { q.producers } else { q.consumers };
                    if n <= 1 || self.runs >= self.max_runs {
                        break;
                    }
                    let mut c = self.best.clone();
                    let q = &mut c.workload.queues[i];
                    let half = n.div_ceil(2);
                    let what = if producers {
                        q.producers = half;
                        format!("{}: producers {n} -> {half}", q.name)
                    } else {
                        q.consumers = half;
                        format!("{}: consumers {n} -> {half}", q.name)
                    };
                    if !self.try_accept(c, what) {
                        break;
                    }
                }
            }
        }
    }

    /// A shorter run: cut the time after the last fault in half while it still fails.
    fn shorten_run(&mut self) {
        loop {
            let last = self
                .best
                .faults
                .iter()
                .map(|f| f.at_s + f.duration_s.unwrap_or(0.0))
                .fold(0.0, f64::max);
            let tail = self.best.duration_s - last;
            if tail < 2.0 || self.runs >= self.max_runs {
                return;
            }
            let mut c = self.best.clone();
            let from = c.duration_s;
            c.duration_s = (last + tail / 2.0).ceil();
            if c.duration_s >= from {
                return;
            }
            let what = format!("duration_s {from} -> {}", c.duration_s);
            if !self.try_accept(c, what) {
                return;
            }
        }
    }

    /// Halve each fault's duration while the run still fails.
    fn shorten_faults(&mut self) {
        for i in 0..self.best.faults.len() {
            while let Some(d) = self.best.faults[i].duration_s {
                let half = (d / 2.0 * 10.0).round() / 10.0;
                if half < 0.1 || half >= d || self.runs >= self.max_runs {
                    break;
                }
                let mut c = self.best.clone();
                c.faults[i].duration_s = Some(half);
                let what = format!("{}: duration_s {d} -> {half}", fault_label(&c.faults[i]));
                if !self.try_accept(c, what) {
                    break;
                }
            }
        }
    }

    /// Move each fault to a whole second, then halfway to the end of the fault before it
    /// (or to the start of the run), while the run still fails.
    fn move_faults_earlier(&mut self) {
        for i in 0..self.best.faults.len() {
            let at = self.best.faults[i].at_s;
            if at.fract() != 0.0 {
                let mut c = self.best.clone();
                c.faults[i].at_s = at.floor();
                let what = format!("{}: at_s {at} -> {}", fault_label(&c.faults[i]), at.floor());
                self.try_accept(c, what);
            }
            for _ in 0..3 {
                let at = self.best.faults[i].at_s;
                let floor = self.best.faults[..i]
                    .iter()
                    .map(|f| f.at_s + f.duration_s.unwrap_or(0.0))
                    .fold(0.0, f64::max);
                let to = (floor + (at - floor) / 2.0).ceil();
                if to >= at || self.runs >= self.max_runs {
                    break;
                }
                let mut c = self.best.clone();
                c.faults[i].at_s = to;
                let what = format!("{}: at_s {at} -> {to}", fault_label(&c.faults[i]));
                if !self.try_accept(c, what) {
                    break;
                }
            }
        }
    }
}

/// A fault's name in shrink steps.
fn fault_label(f: &FaultSpec) -> String {
    f.label.clone().unwrap_or_else(|| {
        let hosts = if !f.target.is_empty() {
            format!(" {}", f.target.join(","))
        } else if !f.a.is_empty() {
            format!(" {} / {}", f.a.join(","), f.b.join(","))
        } else {
            String::new()
        };
        format!("{}{hosts} at {} s", f.kind.as_str(), f.at_s)
    })
}

/// The shrunk scenario as a file: a header naming where it came from, then the original
/// file's settings with only what shrinking changed (seed, duration, faults instead of the
/// nemesis, racks, node counts, clients, queue workloads) replaced, so that defaults stay
/// implicit. `original_text` is the original file's text.
pub fn shrunk_file(
    shrunk: &Scenario,
    original: &Path,
    original_text: &str,
    seed: u64,
    expectation: &str,
    out_file: &Path,
) -> Result<String, ExploreError> {
    let mut s = shrunk.clone();
    s.seed = seed;
    s.description = format!(
        "Shrunk from {} (seed {seed}): still fails {expectation}.",
        original.display()
    );
    let bad = |m: String| ExploreError::Shrunk(m);
    let mut doc: toml::Table = original_text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    doc.insert("seed".into(), toml::Value::Integer(seed as i64));
    doc.insert("duration_s".into(), toml::Value::Float(s.duration_s));
    doc.insert(
        "description".into(),
        toml::Value::String(s.description.clone()),
    );
    doc.remove("nemesis");
    let mut faults = Vec::new();
    for f in &s.faults {
        let toml::Value::Table(mut t) = toml::Value::try_from(f)? else {
            return Err(bad("a fault is not a table".into()));
        };
        t.retain(|_, v| !matches!(v, toml::Value::Array(a) if a.is_empty()));
        faults.push(toml::Value::Table(t));
    }
    if faults.is_empty() {
        doc.remove("faults");
    } else {
        doc.insert("faults".into(), toml::Value::Array(faults));
    }
    // Racks, mco clients and queue workloads: the original entries that remain, by name,
    // with their shrunk counts.
    let keep = |list: &mut toml::value::Array, names: &[&str]| {
        list.retain(|v| {
            v.get("name")
                .and_then(toml::Value::as_str)
                .is_some_and(|n| names.contains(&n))
        });
    };
    if let Some(toml::Value::Array(racks)) = doc.get_mut("racks") {
        let names: Vec<&str> = s.racks.iter().map(|r| r.name.as_str()).collect();
        keep(racks, &names);
        for (v, r) in racks.iter_mut().zip(&s.racks) {
            if let Some(t) = v.as_table_mut() {
                t.insert("nodes".into(), toml::Value::Integer(i64::from(r.nodes)));
            }
        }
    }
    if let Some(toml::Value::Table(w)) = doc.get_mut("workload") {
        if let (Some(toml::Value::Table(m)), Some(spec)) =
            (w.get_mut("mcollective"), &s.workload.mcollective)
            && let Some(toml::Value::Array(clients)) = m.get_mut("clients")
        {
            let names: Vec<&str> = spec.clients.iter().map(|c| c.name.as_str()).collect();
            keep(clients, &names);
        }
        if let Some(toml::Value::Array(queues)) = w.get_mut("queues") {
            let names: Vec<&str> = s.workload.queues.iter().map(|q| q.name.as_str()).collect();
            keep(queues, &names);
            for (v, q) in queues.iter_mut().zip(&s.workload.queues) {
                if let Some(t) = v.as_table_mut() {
                    t.insert(
                        "producers".into(),
                        toml::Value::Integer(i64::from(q.producers)),
                    );
                    t.insert(
                        "consumers".into(),
                        toml::Value::Integer(i64::from(q.consumers)),
                    );
                }
            }
        }
    }
    let body = toml::to_string(&doc)?;
    // The file must say exactly the shrunk scenario.
    let back = Scenario::parse(&body, &out_file.display().to_string())
        .map_err(|e| bad(format!("the shrunk file does not load: {e}")))?;
    if toml::to_string(&back)? != toml::to_string(&s)? {
        return Err(bad(
            "the shrunk file does not say the shrunk scenario".into()
        ));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Shrunk by `stampede shrink` from {}, seed {seed}.",
        original.display()
    );
    let _ = writeln!(text, "# It still fails the expectation `{expectation}`.");
    let _ = writeln!(text, "# Original: {}", size_line(original));
    let _ = writeln!(text, "# Shrunk:   {}", size(&s));
    let _ = writeln!(
        text,
        "# Replay: stampede run {} --seed {seed}",
        out_file.display()
    );
    text.push('\n');
    text.push_str(&body);
    Ok(text)
}

fn size_line(path: &Path) -> String {
    Scenario::load(path).map_or_else(|e| format!("({e})"), |s| size(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_include_both_ends() {
        assert_eq!("1..3".parse::<Seeds>().unwrap().0, [1, 2, 3]);
        assert_eq!("1..=3".parse::<Seeds>().unwrap().0, [1, 2, 3]);
        assert_eq!("7".parse::<Seeds>().unwrap().0, [7]);
        assert_eq!("5..6,1,6".parse::<Seeds>().unwrap().0, [1, 5, 6]);
        assert!("3..1".parse::<Seeds>().is_err());
        assert!("x".parse::<Seeds>().is_err());
        assert!("".parse::<Seeds>().is_err());
        assert_eq!("1..200".parse::<Seeds>().unwrap().0.len(), 200);
    }

    /// Heal undoes a partition in both directions, so its groups' order is not part of
    /// what the world does.
    fn normalised(t: &Timeline) -> Timeline {
        let mut t = t.clone();
        for a in &mut t.actions {
            if let Op::Heal(x, y) = &mut a.op
                && x > y
            {
                std::mem::swap(x, y);
            }
        }
        t
    }

    #[test]
    fn a_materialised_nemesis_is_the_same_timeline() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/nemesis-mcollective.toml");
        let s = Scenario::load(&path).unwrap();
        for seed in 1..20 {
            let m = materialise_nemesis(&s, seed);
            assert!(m.nemesis.is_none());
            m.validate().unwrap();
            assert!(m.faults.len() >= 3, "{:?}", m.faults);
            assert_eq!(
                normalised(&Timeline::build(&m, seed)),
                normalised(&Timeline::build(&s, seed)),
                "seed {seed}"
            );
            // Through a file and back, too.
            let text = toml::to_string(&m).unwrap();
            let back = Scenario::parse(&text, "m.toml").unwrap();
            assert_eq!(
                normalised(&Timeline::build(&back, seed)),
                normalised(&Timeline::build(&s, seed))
            );
        }
    }

    #[test]
    fn shrinking_keeps_only_what_fails() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/nemesis-mcollective.toml");
        let s = Scenario::load(&path).unwrap();
        // A made-up failure: "fails" while a crash of broker-2 is in the schedule and at
        // least 10 nodes remain.
        let mut fails = |c: &Scenario| {
            c.node_count() >= 10
                && c.faults
                    .iter()
                    .any(|f| f.kind == FaultKind::Crash && f.target == ["broker-2"])
        };
        let seed = (1..50)
            .find(|&seed| fails(&materialise_nemesis(&s, seed)))
            .unwrap();
        let out = shrink(&s, seed, 500, &mut fails);
        let f = &out.scenario.faults;
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FaultKind::Crash);
        assert!(f[0].duration_s.unwrap() < 1.0, "{f:?}");
        assert_eq!(out.scenario.racks.len(), 1);
        assert!((10..20).contains(&out.scenario.node_count()));
        assert!(out.scenario.duration_s < 180.0);
        assert!(fails(&out.scenario));
        out.scenario.validate().unwrap();
    }
}
