//! `stampede`: run scenarios in the simulator and write reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;

/// Deterministic simulation of STOMP broker networks with fleets of client nodes: faults
/// from a schedule or a seed, losses and failover times checked, reports written.
#[derive(Debug, Parser)]
#[command(name = "stampede", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a scenario and write its report (summary.json, timeseries.csv,
    /// report.html, histograms). Exits 2 when an expectation fails, printing the command
    /// that replays the run.
    Run {
        /// Scenario file (see scenarios/).
        scenario: PathBuf,
        /// Seed (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: out/<scenario>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the simulated duration in seconds (shortened runs).
        #[arg(long)]
        duration: Option<f64>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Validate a scenario file and print what it would simulate.
    Check {
        /// Scenario file.
        scenario: PathBuf,
    },
    /// List the scenarios in a directory with their descriptions.
    List {
        /// Directory to list.
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run {
            scenario,
            seed,
            out,
            duration,
            quiet,
        } => run_command(&scenario, seed, out, duration, quiet),
        Command::Check { scenario } => {
            let s = Scenario::load(&scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}: ok", scenario.display());
            println!("  {}", s.description.trim());
            println!(
                "  {} s simulated, seed {}, {} broker(s), {} rack(s) with {} node(s), {} fault(s){}",
                s.duration_s,
                s.seed,
                s.brokers.len(),
                s.racks.len(),
                s.node_count(),
                s.faults.len(),
                if s.nemesis.is_some() {
                    " + nemesis"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::List { dir } => {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            entries.sort();
            for p in entries {
                match Scenario::load(&p) {
                    Ok(s) => println!(
                        "{:<44} {}",
                        p.display(),
                        s.description.lines().next().unwrap_or("").trim()
                    ),
                    Err(e) => println!("{:<44} INVALID: {e}", p.display()),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_command(
    path: &Path,
    seed: Option<u64>,
    out: Option<PathBuf>,
    duration: Option<f64>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let mut scenario = Scenario::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(d) = duration {
        scenario.duration_s = d;
        scenario
            .validate()
            .map_err(|e| anyhow::anyhow!("--duration {d}: {e}"))?;
    }
    let seed = seed.unwrap_or(scenario.seed);
    let out = out.unwrap_or_else(|| PathBuf::from(format!("out/{}-{seed}", scenario.name)));
    let mut replay = format!("stampede run {} --seed {seed}", path.display());
    if let Some(d) = duration {
        replay.push_str(&format!(" --duration {d}"));
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new((scenario.duration_s * 1000.0) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {msg} (wall {elapsed_precise})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} seed {seed}", scenario.name));
        bar
    };
    let started = Instant::now();
    let outcome = run(&scenario, seed, &replay, &mut |p| {
        bar.set_position(p.sim_ms);
        let wall = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{:.0}/{:.0} s simulated, {:.1} sim-s/s",
            p.sim_ms as f64 / 1000.0,
            p.total_ms as f64 / 1000.0,
            p.sim_ms as f64 / 1000.0 / wall
        ));
    })?;
    bar.finish_and_clear();
    let files = stampede_reports::write_report(&outcome.report, &out)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    println!("{}", stampede_reports::summary_text(&outcome.report));
    println!(
        "{:.1} simulated seconds in {:.1} s of wall time ({:.1} sim-s/s)",
        outcome.report.sim_seconds,
        outcome.report.wall_seconds,
        outcome.report.sim_seconds / outcome.report.wall_seconds.max(1e-9)
    );
    println!("report: {}", out.join("report.html").display());
    for f in files {
        tracing::debug!("wrote {}", f.display());
    }
    if outcome.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("\nan expectation failed; replay this run with:\n  {replay}");
        eprintln!(
            "  (or: cargo run --release -p stampede-sim -- {})",
            replay.trim_start_matches("stampede ")
        );
        Ok(ExitCode::from(2))
    }
}
