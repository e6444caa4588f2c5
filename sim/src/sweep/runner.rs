//! Running grid points: one `stampede run … --set …` child process per point and seed.
//!
//! A run writes into `OUT/points/<point>/<seed>.partial` and is renamed to
//! `OUT/points/<point>/<seed>` when it finished, so that an interrupted sweep leaves no
//! half-written result; a directory holding a readable report whose `overrides.txt`
//! names the point's overrides is a finished result and is never run again (resume).
//! `--emit-jobs` writes the same commands for an external runner, and `--collect` copies
//! the report directories they wrote into this layout.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stampede_reports::RunReport;

use crate::explore::shell_word;
use crate::overrides::{OVERRIDES_FILE, Override, read_overrides_file};

use super::SweepError;
use super::grid::{Point, Vary};

/// The directory (under the output directory) holding one directory per point.
pub const POINTS_DIR: &str = "points";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |cause| SweepError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// What every run of a sweep shares.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The scenario file, as given.
    pub scenario: PathBuf,
    /// `--set`s applied to every point, before the point's own.
    pub base: Vec<Override>,
    /// A shortened duration passed to every run.
    pub duration_s: Option<f64>,
    /// The output directory.
    pub out: PathBuf,
}

/// One run: a point and a seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// The point.
    pub point: Point,
    /// The seed.
    pub seed: u64,
}

impl RunSpec {
    /// Every override of `job`'s run: the base ones, then the point's.
    pub fn overrides(&self, varies: &[Vary], job: &Job) -> Vec<Override> {
        let mut o = self.base.clone();
        o.extend(job.point.overrides(varies));
        o
    }

    /// The finished result directory of `job`.
    pub fn dir(&self, varies: &[Vary], job: &Job) -> PathBuf {
        self.out
            .join(POINTS_DIR)
            .join(job.point.dir_name(varies))
            .join(job.seed.to_string())
    }

    /// The arguments (after the program) of the run that computes `job` into `out`.
    pub fn args(&self, varies: &[Vary], job: &Job, out: &Path) -> Vec<String> {
        let mut args = vec![
            "run".to_owned(),
            self.scenario.display().to_string(),
            "--seed".to_owned(),
            job.seed.to_string(),
            "--quiet".to_owned(),
            "--out".to_owned(),
            out.display().to_string(),
        ];
        if let Some(d) = self.duration_s {
            args.push("--duration".to_owned());
            args.push(d.to_string());
        }
        for o in self.overrides(varies, job) {
            args.push("--set".to_owned());
            args.push(o.arg());
        }
        args
    }

    /// The command line an external runner executes for `job` (writing straight to its
    /// result directory).
    pub fn command(&self, program: &str, varies: &[Vary], job: &Job) -> String {
        std::iter::once(program.to_owned())
            .chain(self.args(varies, job, &self.dir(varies, job)))
            .map(|a| shell_word(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The report of `job`, when its directory holds a finished run of exactly its
    /// overrides.
    pub fn finished(&self, varies: &[Vary], job: &Job) -> Option<RunReport> {
        finished_in(&self.dir(varies, job), &self.overrides(varies, job))
    }
}

/// The report in `dir`, when `dir` holds a finished run with `overrides`.
fn finished_in(dir: &Path, overrides: &[Override]) -> Option<RunReport> {
    let text = std::fs::read_to_string(dir.join(OVERRIDES_FILE)).ok()?;
    let found = read_overrides_file(&text).ok()?;
    if found != overrides {
        return None;
    }
    stampede_reports::read_report(dir).ok()
}

/// How one run ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// It finished (its expectations passed or failed).
    Report(Box<RunReport>),
    /// It did not finish: the last line of its log.
    Error(String),
}

/// A running child.
struct Running {
    index: usize,
    child: Child,
    partial: PathBuf,
    dir: PathBuf,
}

/// Runs `jobs` with `program`, `parallel` processes at a time; `done` is called after
/// each finished run with its index. Returns one outcome per job, in order.
pub fn run_jobs(
    program: &Path,
    spec: &RunSpec,
    varies: &[Vary],
    jobs: &[Job],
    parallel: usize,
    done: &mut dyn FnMut(usize, &Outcome),
) -> Result<Vec<Outcome>, SweepError> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    let mut pending: VecDeque<usize> = (0..jobs.len()).collect();
    let mut running: Vec<Running> = Vec::new();
    while !pending.is_empty() || !running.is_empty() {
        while running.len() < parallel.max(1)
            && let Some(index) = pending.pop_front()
        {
            running.push(start(program, spec, varies, &jobs[index], index)?);
        }
        let mut still = Vec::with_capacity(running.len());
        let mut any = false;
        for mut r in running {
            match r.child.try_wait().map_err(io(&r.partial))? {
                None => still.push(r),
                Some(status) => {
                    any = true;
                    let outcome = finish(&r, status, &spec.overrides(varies, &jobs[r.index]))?;
                    done(r.index, &outcome);
                    outcomes[r.index] = Some(outcome);
                }
            }
        }
        running = still;
        if !any && !running.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Error("not run".into())))
        .collect())
}

fn start(
    program: &Path,
    spec: &RunSpec,
    varies: &[Vary],
    job: &Job,
    index: usize,
) -> Result<Running, SweepError> {
    let dir = spec.dir(varies, job);
    let partial = dir.with_file_name(format!("{}.partial", job.seed));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    let log_path = partial.join("run.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let err_log = log.try_clone().map_err(io(&log_path))?;
    let args = spec.args(varies, job, &partial);
    let child = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|cause| SweepError::Spawn {
            command: format!("{} {}", program.display(), args.join(" ")),
            cause,
        })?;
    Ok(Running {
        index,
        child,
        partial,
        dir,
    })
}

/// Exit status 0 and 2 are finished runs (passed or failed an expectation).
fn finish(
    r: &Running,
    status: std::process::ExitStatus,
    overrides: &[Override],
) -> Result<Outcome, SweepError> {
    let report = matches!(status.code(), Some(0 | 2))
        .then(|| finished_in(&r.partial, overrides))
        .flatten();
    match report {
        Some(report) => {
            if r.dir.exists() {
                std::fs::remove_dir_all(&r.dir).map_err(io(&r.dir))?;
            }
            std::fs::rename(&r.partial, &r.dir).map_err(io(&r.dir))?;
            Ok(Outcome::Report(Box::new(report)))
        }
        None => {
            let log = std::fs::read_to_string(r.partial.join("run.log")).unwrap_or_default();
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned();
            Ok(Outcome::Error(format!(
                "exit {status}: {last} (log: {})",
                r.partial.join("run.log").display()
            )))
        }
    }
}

/// Copies the report directories found under `dirs` (each a report directory, or a
/// directory holding them at any depth up to 4) that are runs of scenario `scenario`
/// with the sweep's base overrides and a value for every varied key, into `spec.out`'s
/// layout. Returns how many were copied and the directories skipped.
pub fn collect(
    spec: &RunSpec,
    scenario: &str,
    varies: &[Vary],
    dirs: &[PathBuf],
) -> Result<(usize, Vec<PathBuf>), SweepError> {
    let mut found = Vec::new();
    for d in dirs {
        find_reports(d, 4, &mut found)?;
    }
    found.sort();
    let mut copied = 0;
    let mut skipped = Vec::new();
    for d in found {
        let Some(job) = job_of(spec, scenario, varies, &d) else {
            skipped.push(d);
            continue;
        };
        let target = spec.dir(varies, &job);
        if target == d || spec.finished(varies, &job).is_some() {
            continue;
        }
        std::fs::create_dir_all(&target).map_err(io(&target))?;
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let path = entry.map_err(io(&d))?.path();
            if path.is_file()
                && let Some(name) = path.file_name()
            {
                let to = target.join(name);
                std::fs::copy(&path, &to).map_err(io(&to))?;
            }
        }
        copied += 1;
    }
    Ok((copied, skipped))
}

/// Report directories (holding `overrides.txt` and `summary.json`) under `d`.
fn find_reports(d: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), SweepError> {
    if d.join(OVERRIDES_FILE).is_file() && d.join(stampede_reports::SUMMARY_FILE).is_file() {
        out.push(d.to_path_buf());
        return Ok(());
    }
    if depth == 0 || !d.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(d).map_err(io(d))? {
        let path = entry.map_err(io(d))?.path();
        if path.is_dir() && !path.to_string_lossy().ends_with(".partial") {
            find_reports(&path, depth - 1, out)?;
        }
    }
    Ok(())
}

/// The job a report directory holds, when it belongs to this sweep.
fn job_of(spec: &RunSpec, scenario: &str, varies: &[Vary], d: &Path) -> Option<Job> {
    let text = std::fs::read_to_string(d.join(OVERRIDES_FILE)).ok()?;
    let overrides = read_overrides_file(&text).ok()?;
    let report = stampede_reports::read_report(d).ok()?;
    if report.scenario != scenario || overrides.len() != spec.base.len() + varies.len() {
        return None;
    }
    if overrides[..spec.base.len()] != spec.base[..] {
        return None;
    }
    let values = varies
        .iter()
        .zip(&overrides[spec.base.len()..])
        .map(|(v, o)| (o.key == v.key).then(|| o.value.clone()))
        .collect::<Option<Vec<_>>>()?;
    Some(Job {
        point: Point { values },
        seed: report.seed,
    })
}
