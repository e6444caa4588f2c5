//! `stampede`: run scenarios in the simulator or against real brokers, and write, compare
//! and merge reports.

/// `print!` to standard output. After the reader closed the pipe (`stampede run … | head
/// -1`), output is dropped instead of panicking, and the command still ends with its own
/// exit status (2 for a failed expectation).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if !STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
            stdout_result(write!(std::io::stdout(), $($arg)*));
        }
    }};
}

/// `println!` with [`out!`]'s handling of a closed pipe.
macro_rules! outln {
    () => {
        out!("\n")
    };
    ($($arg:tt)*) => {
        out!("{}\n", format_args!($($arg)*))
    };
}

/// Standard output was a pipe that its reader closed.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes a closed pipe (later output is dropped); any other write error is reported on
/// standard error and ends the process with status 1.
fn stdout_result(r: std::io::Result<()>) {
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use stampede_broker::client::Credentials;
use stampede_reports::RunReport;
use stampede_sim::calibrate::{self, CalibrateOptions, CpuSource, WorkSource};
use stampede_sim::explore::{self, Seeds};
use stampede_sim::live::generator::{GeneratorRow, GeneratorStats, generator_csv};
use stampede_sim::live::shard::Shard;
use stampede_sim::live::target::{TargetKind, TargetUri};
use stampede_sim::live::{self, LiveOptions};
use stampede_sim::overrides::{self, Override};
use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;
use stampede_sim::sweep::knee::KneeAt;
use stampede_sim::sweep::{self, SweepOptions, grid::Vary, objective::Expr, runner::RunSpec};

/// Deterministic simulation of STOMP broker networks with fleets of client nodes: faults
/// from a schedule or a seed, losses and failover times checked, reports written. The
/// same workloads also run live against real brokers (`load`), side by side (`compare`).
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
        /// Change a scenario key before it is validated (repeatable), e.g.
        /// `--set racks.nodes=1600` (every rack), `--set racks.0.nodes=1600` (the first),
        /// `--set workload.mcollective.discovery_interval_s=5`, `--set brokers.0.profile=…`.
        /// VALUE is TOML (`400`, `"a"`, `[1, 2]`), or else a string. The applied overrides
        /// are written to OUT/overrides.txt.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<Override>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Validate a scenario file and print what it would simulate.
    Check {
        /// Scenario file.
        scenario: PathBuf,
        /// Change a scenario key before it is validated (repeatable; see `run --set`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<Override>,
    },
    /// List the scenarios in a directory with their descriptions.
    List {
        /// Directory to list.
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Live load mode: run a scenario's workloads against a real broker over TCP and write
    /// the same report files as `run`, with `target` set, plus `generator.json` (the load
    /// generator's CPU use).
    ///
    /// Every client is the failover client, on open-loop schedules: latency is measured
    /// from each message's intended send time, the send delay is recorded separately. The
    /// run has a setup phase (clients connect), a warm-up (`--warmup`, excluded from the
    /// results), the measured window (`--duration`) and a drain (deliveries of messages
    /// sent in the window still count).
    ///
    /// Faults and the nemesis are IGNORED, with a printed note: they apply only in the
    /// simulator. So are the expectations only faults or the simulated duration can
    /// satisfy (delivered_min, failover_count_min, failover_p99_ms_max,
    /// fault_losses_min); the others are checked, and a failed one exits with status 2.
    #[command(verbatim_doc_comment)]
    Load {
        /// Scenario file (see scenarios/).
        scenario: PathBuf,
        /// The broker: tcp://HOST:PORT, a failover:(tcp://…,tcp://…) URI, or
        /// redis://HOST:PORT. Every scenario broker is mapped to it (one server each when
        /// the counts match, otherwise every pool gets all servers).
        #[arg(long)]
        target: String,
        /// What the target is: stampede, activemq, rabbitmq or redis. Default: redis for
        /// redis:// targets, otherwise the CONNECTED `server` header decides. It selects
        /// the destination conventions (RabbitMQ: exchanges and temp queues for
        /// MCollective, `expiration`; Redis: MCollective's Redis connector channels).
        #[arg(long, value_name = "KIND")]
        target_kind: Option<TargetKind>,
        /// Measured seconds (default: the scenario's duration_s).
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Messages per second per queue producer, and discovery requests per second per
        /// mco client (directed requests, in a scenario that has no discovery) (default:
        /// the scenario's rates).
        #[arg(long, value_name = "R")]
        rate: Option<f64>,
        /// Seconds of load before the measured window, excluded from the results.
        #[arg(long, value_name = "S", default_value_t = 5.0)]
        warmup: f64,
        /// Least seconds after the window for in-flight deliveries (at least the
        /// MCollective reply window).
        #[arg(long, value_name = "S", default_value_t = 2.0)]
        drain: f64,
        /// Output directory (default: out/load-<scenario>-<kind>[-s<i>of<n>]).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run shard i of n: a self-contained part of the load (every n-th node,
        /// consumer, queue producer; sub-collective and destinations of its own), so that
        /// several processes or machines can share a load; combine with `stampede merge`.
        #[arg(long, value_name = "I/N", default_value = "1/1")]
        shard: Shard,
        /// Seed of the schedules (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// STOMP login (default: guest for RabbitMQ, none otherwise).
        #[arg(long)]
        user: Option<String>,
        /// STOMP passcode.
        #[arg(long)]
        password: Option<String>,
        /// stampede-broker's Prometheus endpoint (HOST:PORT of its `[metrics] listen`):
        /// read before and after the run, and the broker's own counters (messages
        /// received and delivered, expired, redelivered, connections, memory…) go into the
        /// report beside the clients' counts.
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
        /// Apply the scenario's crash, restart, hold, release and heal-all faults to the
        /// target's brokers (one server per scenario broker, in order) by running
        /// `sh -c 'CMD ACTION HOST:PORT'` at each fault's time from the start of the
        /// measured window; e.g. 'scripts/peers/peer fault' (crash = SIGKILL, restart,
        /// hold = SIGSTOP, release = SIGCONT). Other fault kinds and the nemesis are
        /// ignored with a note. Brokers left crashed or held are restored at the end.
        #[arg(long, value_name = "CMD", conflicts_with = "shard")]
        faults_via: Option<String>,
        /// Worker threads of the generator (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Find the live knee: run once per rate (a list `1000,2000`, a step range
        /// `1000..8000:1000` or a factor range `1000..64000*2`), in increasing order,
        /// until --objective fails, then bisect; each run in OUT/rate-<R>/, the table
        /// in OUT/knee.csv and OUT/knee.txt. Replaces --rate.
        #[arg(long, value_name = "LIST", conflicts_with = "rate")]
        rates: Option<String>,
        /// With --rates: what a rate must meet, in `stampede sweep`'s objective
        /// language over its metrics (throughput_msg_s, latency_p99_ms, loss_ratio,
        /// mco_p99_ms, mco_reply_ratio, …). Default: "loss_ratio <= 0.001 and
        /// latency_p99_ms < 1000", and with `mco` clients in the scenario also
        /// "mco_reply_ratio >= 0.99" (a request whose replies miss the client's window
        /// has not been served).
        #[arg(long, value_name = "EXPR", requires = "rates")]
        objective: Option<String>,
        /// With --rates: bisection steps between the last rate that held and the first
        /// that failed.
        #[arg(long, value_name = "N", default_value_t = 2, requires = "rates")]
        bisect: u32,
    },
    /// Fit a broker's cost profile (nanoseconds of CPU per operation kind, for the
    /// simulator's `[[brokers]] profile = "profiles/<name>.toml"`) from short live
    /// workloads against it: a discarded warm-up, the broker's idle CPU rate (3 s), then
    /// fan-out 1 -> 800 at 1, 4 and 20 broadcasts/s, queue 1 -> 1 (20 B at 1,000 and
    /// 5,000 msg/s, 1 KiB at 3,000 and 30,000), queue 10 -> 10 (1 KiB, 3,000 and
    /// 30,000 msg/s), directed request/reply at 10, 40 and 600 requests/s (to 10 nodes
    /// each), 600 idle connections with 1 s heart-beats and 1,200 without (about 3
    /// minutes in all with the default --duration).
    ///
    /// CPU: utime + stime of /proc/PID/stat (--pid, or the process listening on the
    /// target's port), or what --cpu-command prints (CPU seconds; for a remote broker,
    /// e.g. "ssh host cat /proc/PID/stat | awk '{print ($14+$15)/100}'"). The idle rate
    /// times each run's wall time is subtracted.
    ///
    /// Work: from stampede-broker's stampede_work_*_total counters when --metrics
    /// answers; otherwise counted on the client side (frames and bytes each way,
    /// MESSAGE frames delivered, ACKs, heart-beats, connections opened and closed).
    ///
    /// Fit: non-negative least squares of each run's CPU on frames (frames_in +
    /// frames_out, one cost: the two move together in these workloads), bytes_in,
    /// bytes_out, heartbeats and connections (with the broker's counters also events and
    /// io_calls, frames that wake an idle writer; every other cost 0); the residuals and R² are printed. R² < 0.9 writes the
    /// profile anyway, with fit_poor = true and a warning. The profile starts with a
    /// comment giving this command.
    ///
    /// --clients-out also fits the generator's own CPU (frames and bytes either way,
    /// heart-beats, connections) into a profile for a scenario's [clients].
    #[command(verbatim_doc_comment)]
    Calibrate {
        /// The broker: tcp://HOST:PORT (or HOST:PORT).
        #[arg(long)]
        target: String,
        /// stampede, activemq or rabbitmq (default: from CONNECTED's server header).
        #[arg(long, value_name = "KIND")]
        target_kind: Option<TargetKind>,
        /// The broker's process id (default: the process listening on the target's port,
        /// found through /proc/net/tcp and /proc/*/fd).
        #[arg(long, conflicts_with = "cpu_command")]
        pid: Option<u32>,
        /// A shell command printing the broker's CPU seconds so far (its last word).
        #[arg(long, value_name = "CMD")]
        cpu_command: Option<String>,
        /// stampede-broker's Prometheus endpoint (HOST:PORT of `[metrics] listen`):
        /// count the work from its stampede_work_*_total counters.
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
        /// Seconds of load per workload.
        #[arg(long, value_name = "S", default_value_t = 4.0)]
        duration: f64,
        /// Multiply every rate and node count by this (0 < F <= 1; quick checks).
        #[arg(long, value_name = "F", default_value_t = 1.0)]
        scale: f64,
        /// A description for the profile (default: the broker, its version, the machine).
        #[arg(long)]
        description: Option<String>,
        /// STOMP login (default: guest for RabbitMQ, none otherwise).
        #[arg(long)]
        user: Option<String>,
        /// STOMP passcode.
        #[arg(long)]
        password: Option<String>,
        /// Worker threads of the generator (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// The profile to write.
        #[arg(long)]
        out: PathBuf,
        /// Also write the clients' profile: the generator's own CPU fitted on what its
        /// connections carried, for a scenario's `[clients] profile` (the simulated
        /// clients then cost what this machine's live clients did).
        #[arg(long, value_name = "FILE")]
        clients_out: Option<PathBuf>,
        /// How the fit weighs the workloads: `absolute` (least squares over CPU time, the
        /// busiest decide: for profiles that find knees) or `relative` (over each one's
        /// relative error, all weigh the same: for profiles that replay reconnection
        /// storms and idle fleets).
        #[arg(long, value_enum, default_value_t = calibrate::Weighting::Absolute)]
        fit: calibrate::Weighting,
        /// Leave out the workloads whose name starts with this (repeatable), e.g. the
        /// loaded runs for a broker they would overload: `--skip fanout-800@40`.
        #[arg(long, value_name = "NAME")]
        skip: Vec<String>,
    },
    /// Run a scenario over many seeds, each in its own process, and write explore.csv
    /// (seed, verdict, lost, unexplained_lost, failover_p99_ms, failed_expectations) and
    /// explore.txt (a summary with the replay command of every failing seed). Each seed's
    /// report stays in OUT/seeds/<seed>: run again with the same --out and only the seeds
    /// without a result run (resume). Exits 2 when any seed fails.
    ///
    /// --emit-jobs prints one `stampede run` command per seed instead, for an external
    /// runner (GNU parallel, a Slurm array, a Kubernetes indexed Job); --collect gathers
    /// the reports those commands wrote into the same table.
    #[command(verbatim_doc_comment)]
    Explore {
        /// Scenario file (see scenarios/).
        scenario: PathBuf,
        /// Seeds: A..B (both ends included: 1..200 is 200 seeds), A..=B, S, or a
        /// comma-separated list of those.
        #[arg(long, value_name = "A..B")]
        seeds: Option<Seeds>,
        /// Seeds simulated at once, one process each (default: one per CPU).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Output directory (default: out/explore-<scenario>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the simulated duration in seconds of every run.
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Change a scenario key in every run (repeatable), as `stampede run --set` does,
        /// e.g. `--set brokers.0.store.sync=group`.
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<Override>,
        /// Print one command per seed (writing to OUT/seeds/<seed>) and run nothing.
        #[arg(long, conflicts_with = "collect")]
        emit_jobs: bool,
        /// Gather the reports in these directories (report directories, or directories
        /// of them such as OUT or OUT/seeds) into the table instead of running seeds.
        #[arg(long, value_name = "DIR", num_args = 1..)]
        collect: Vec<PathBuf>,
        /// Shrink the first failing seed (see `stampede shrink`) into OUT/shrink-<seed>.
        #[arg(long, conflicts_with_all = ["collect", "emit_jobs"])]
        shrink: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Run a scenario over a grid of `--set` overrides and find the knee: the largest
    /// value of the first --vary key (the load) that meets the objective, per
    /// combination of the other keys, bisecting where the grid is coarse. Each point and
    /// seed is a `stampede run … --set …` child process (--jobs at a time) writing to
    /// OUT/points/<point>/<seed>; run again with the same --out and finished runs are
    /// reused (resume). Writes OUT/sweep.csv (one row per run: varied keys, seed,
    /// metrics), OUT/sweep.html (charts against the load key, knee marked) and
    /// OUT/sweep.txt.
    ///
    /// Metrics (for --objective and sweep.csv): mco_p99_ms, mco_p50_ms, mco_max_ms
    /// (discovery rounds: last reply in the window, ms after the scheduled send),
    /// mco_reply_ratio, mco_complete_ratio, mco_requests, latency_p50_ms,
    /// latency_p99_ms, latency_max_ms, attempted, delivered, lost, loss_ratio,
    /// unexplained_lost, duplicated, throughput_msg_s, failover_p99_ms,
    /// expectations_failed, broker_cpu (the busiest broker's share of a core; needs
    /// brokers with a cost profile), clients_cpu (cores the simulated clients used;
    /// needs a [clients] cost profile).
    ///
    /// Across machines: --emit-jobs FILE writes one `stampede run` command per missing
    /// run (the grid, or, once the grid's results are collected, the next bisection
    /// round) for GNU parallel, a Slurm array or a Kubernetes indexed Job; --collect
    /// DIR... copies the report directories they wrote into OUT and writes the outputs.
    #[command(verbatim_doc_comment)]
    Sweep {
        /// Scenario file (see scenarios/).
        scenario: PathBuf,
        /// A key and its values (repeatable; the first is the load key, numeric):
        /// KEY=A..B:STEP (both ends included; STEP default 1), or KEY=V1,V2,… (numbers,
        /// TOML values or words). Keys as for `run --set`: racks.nodes (every rack),
        /// racks.0.nodes, workload.mcollective.discovery_interval_s, brokers.0.profile.
        #[arg(long, value_name = "KEY=RANGE", required = true)]
        vary: Vec<String>,
        /// What a good run is, e.g. "mco_p99_ms < 2000 and mco_reply_ratio >= 0.999":
        /// comparisons (< <= > >= == !=) of metrics and numbers joined by and, or,
        /// not, parentheses. A metric without data in a run makes its comparison
        /// unknown, and unknown is not met. Every seed of a point must meet it.
        #[arg(long, value_name = "EXPR")]
        objective: String,
        /// A fixed override for every run (repeatable; see `run --set`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<Override>,
        /// Seeds of every point: A..B (both ends included), A..=B, S, or a list
        /// (default: the scenario's seed).
        #[arg(long, value_name = "A..B")]
        seeds: Option<Seeds>,
        /// Runs at once, one process each (default: one per CPU).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Output directory (default: out/sweep-<scenario>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the simulated duration in seconds of every run.
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Bisection steps per series between the knee and the first failing grid value
        /// (0: the grid only). An integer key stops early at neighbouring values.
        #[arg(long, value_name = "N", default_value_t = 3)]
        bisect: usize,
        /// largest: the knee is the largest value meeting the objective (load grows
        /// with the key: nodes, rate); smallest: the smallest (load shrinks as the key
        /// grows: brokers, discovery interval).
        #[arg(long, value_name = "END", default_value = "largest")]
        knee_at: KneeAt,
        /// Write one command per missing run to FILE ("-": standard output) and run
        /// nothing.
        #[arg(long, value_name = "FILE", conflicts_with = "collect")]
        emit_jobs: Option<PathBuf>,
        /// Copy the report directories under these directories (written by the
        /// --emit-jobs commands) into OUT, then write the outputs from what is there.
        #[arg(long, value_name = "DIR", num_args = 1..)]
        collect: Vec<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Reduce a failing run to a minimal scenario that still fails the same expectation:
    /// the nemesis becomes the explicit faults it drew for the seed, then faults are
    /// dropped (delta debugging), racks, nodes, mco clients and queue workloads removed or
    /// halved, the run and every fault shortened and faults moved earlier. A candidate is
    /// kept when the seed still fails the same expectation the same way (measured, or
    /// without data) and loses messages to no cause the original run did not have. Writes
    /// OUT/shrunk.toml and prints the command that replays it.
    Shrink {
        /// Scenario file.
        scenario: PathBuf,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// The expectation that must keep failing (default: the first that failed).
        #[arg(long, value_name = "NAME")]
        expectation: Option<String>,
        /// Override the simulated duration in seconds (as given to `run`).
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Change a scenario key before it is validated (repeatable; see `run --set`), as
        /// the failing run had it; the shrunk file has the change written in it.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<Override>,
        /// Output directory (default: out/shrink-<scenario>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Most candidate runs to try.
        #[arg(long, value_name = "N", default_value_t = 150)]
        max_runs: usize,
        /// No progress spinner.
        #[arg(long)]
        quiet: bool,
    },
    /// Put reports side by side: compare.html (tables with ratios against the first run,
    /// charts with one series per run) and compare.csv. Reports of several scenarios get
    /// one comparison each under OUT/<scenario>/, and OUT/compare.csv lists them all.
    Compare {
        /// Report directories (written by `run`, `load` or `merge`), the baseline first.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "out/compare")]
        out: PathBuf,
    },
    /// Merge the reports of the shards of one run (`load --shard i/n`) into one: counts
    /// summed, histograms added (never percentiles averaged), per-second rows combined.
    /// Every expectation is judged again on the merged counts and histograms (its
    /// measure is in each shard's summary.json); one without a measure holds in the merge
    /// when it held in every shard.
    Merge {
        /// Shard report directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
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
            set,
            quiet,
        } => run_command(&scenario, seed, out, duration, &set, quiet),
        Command::Check { scenario, set } => {
            let s = overrides::load(&scenario, &set)?;
            outln!("{}: ok", scenario.display());
            outln!("  {}", s.description.trim());
            outln!(
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
        Command::Load {
            scenario,
            target,
            target_kind,
            duration,
            rate,
            warmup,
            drain,
            out,
            shard,
            seed,
            user,
            password,
            threads,
            metrics,
            faults_via,
            quiet,
            rates,
            objective,
            bisect,
        } => {
            let credentials = match (user, password) {
                (Some(login), passcode) => Some(Credentials {
                    login,
                    passcode: passcode.unwrap_or_default(),
                }),
                (None, Some(_)) => anyhow::bail!("--password needs --user"),
                (None, None) => None,
            };
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let opts = LiveOptions {
                target: TargetUri::parse(&target).map_err(|e| anyhow::anyhow!("--target: {e}"))?,
                kind: target_kind,
                duration_s: duration,
                warmup_s: warmup,
                drain_s: drain,
                rate,
                shard,
                seed,
                credentials,
                threads,
                metrics,
                faults_via,
            };
            match rates {
                None => load_command(&scenario, &opts, out, quiet),
                Some(rates) => {
                    let rates = live::rates::parse_rates(&rates)
                        .map_err(|e| anyhow::anyhow!("--rates: {e}"))?;
                    let objective: Expr = match objective {
                        Some(o) => o,
                        None => live::rates::default_objective(
                            &Scenario::load(&scenario).map_err(|e| anyhow::anyhow!("{e}"))?,
                        ),
                    }
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--objective: {e}"))?;
                    load_rates_command(&scenario, opts, out, quiet, &rates, &objective, bisect)
                }
            }
        }
        Command::Calibrate {
            target,
            target_kind,
            pid,
            cpu_command,
            metrics,
            duration,
            scale,
            description,
            user,
            password,
            threads,
            out,
            clients_out,
            fit,
            skip,
        } => {
            let credentials = credentials(user, password)?;
            let target = TargetUri::parse(&target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
            let cpu = match (pid, cpu_command) {
                (Some(pid), _) => CpuSource::Pid(pid),
                (None, Some(cmd)) => CpuSource::Command(cmd),
                (None, None) => {
                    let port = target.servers.first().map_or(0, |s| s.1);
                    let pid = calibrate::pid_listening_on(port)
                        .context("finding the broker's process (give --pid or --cpu-command)")?;
                    eprintln!("broker process: pid {pid} (listening on port {port})");
                    CpuSource::Pid(pid)
                }
            };
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let opts = CalibrateOptions {
                target,
                kind: target_kind,
                cpu,
                metrics,
                duration_s: duration,
                scale,
                credentials,
                threads,
                baseline_s: calibrate::BASELINE_S,
                workloads_max: None,
                skip,
                weighting: fit,
            };
            calibrate_command(&opts, description, &out, clients_out.as_deref())
        }
        Command::Explore {
            scenario,
            seeds,
            jobs,
            out,
            duration,
            set,
            emit_jobs,
            collect,
            shrink,
            quiet,
        } => explore_command(
            &scenario,
            &ExploreArgs {
                seeds,
                jobs,
                out,
                duration,
                set,
                emit_jobs,
                collect,
                shrink,
                quiet,
            },
        ),
        Command::Shrink {
            scenario,
            seed,
            expectation,
            duration,
            set,
            out,
            max_runs,
            quiet,
        } => shrink_command(
            &scenario,
            ShrinkArgs {
                seed,
                expectation: expectation.as_deref(),
                duration,
                set: &set,
                out,
                max_runs,
                quiet,
            },
        ),
        Command::Sweep {
            scenario,
            vary,
            objective,
            set,
            seeds,
            jobs,
            out,
            duration,
            bisect,
            knee_at,
            emit_jobs,
            collect,
            quiet,
        } => sweep_command(
            &scenario,
            &SweepArgs {
                vary,
                objective,
                set,
                seeds,
                jobs,
                out,
                duration,
                bisect,
                knee_at,
                emit_jobs,
                collect,
                quiet,
            },
        ),
        Command::Compare { dirs, out } => compare_command(&dirs, &out),
        Command::Merge { dirs, out } => {
            let reports = read_reports(&dirs)?;
            let scenarios: std::collections::BTreeSet<&str> =
                reports.iter().map(|r| r.scenario.as_str()).collect();
            anyhow::ensure!(
                scenarios.len() == 1,
                "these reports are of different scenarios: {scenarios:?}"
            );
            let merged = stampede_reports::merge(&reports);
            stampede_reports::write_report(&merged, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            // The generators' CPU: summed over the shards (they ran side by side).
            let gens: Vec<_> = dirs
                .iter()
                .filter_map(|d| std::fs::read_to_string(d.join("generator.json")).ok())
                .filter_map(|t| GeneratorStats::read_json(&t))
                .collect();
            if gens.len() == dirs.len() {
                let cores: f64 = gens.iter().map(|g| g.0).sum();
                let machine = gens.iter().map(|g| g.1).fold(0.0, f64::max);
                let p99 = if merged.send_delay_us.is_empty() {
                    "null".to_owned()
                } else {
                    merged.send_delay_us.value_at_quantile(0.99).to_string()
                };
                std::fs::write(
                    out.join("generator.json"),
                    format!(
                        "{{\n  \"shards\": {},\n  \"cores\": {cores:.3},\n  \"machine_cores\": {machine:.3},\n  \"cpus\": {},\n  \"send_delay_p99_us\": {p99}\n}}\n",
                        gens.len(),
                        gens[0].2
                    ),
                )?;
            }
            outln!("{}", stampede_reports::summary_text(&merged));
            outln!(
                "merged {} report(s): {}",
                reports.len(),
                out.join("report.html").display()
            );
            Ok(if merged.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
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
                    Ok(s) => outln!(
                        "{:<44} {}",
                        p.display(),
                        s.description.lines().next().unwrap_or("").trim()
                    ),
                    Err(e) => outln!("{:<44} INVALID: {e}", p.display()),
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
    set: &[Override],
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let scenario = load_with_duration(path, set, duration)?;
    let seed = seed.unwrap_or(scenario.seed);
    let out = out.unwrap_or_else(|| PathBuf::from(format!("out/{}-{seed}", scenario.name)));
    let mut replay = format!("stampede run {} --seed {seed}", path.display());
    if let Some(d) = duration {
        replay.push_str(&format!(" --duration {d}"));
    }
    for o in set {
        replay.push_str(&format!(" --set {}", explore::shell_word(&o.arg())));
    }
    let bar = progress_bar(
        quiet,
        (scenario.duration_s * 1000.0) as u64,
        "{spinner} {prefix} [{bar:30}] {msg} (wall {elapsed_precise})",
        format!("{} seed {seed}", scenario.name),
    );
    // Wall time for the progress bar's sim-s/s rate; it never reaches the simulation.
    #[allow(clippy::disallowed_methods)]
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
    if !set.is_empty() {
        let file = out.join(overrides::OVERRIDES_FILE);
        std::fs::write(&file, overrides::overrides_file(set))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    outln!("{}", stampede_reports::summary_text(&outcome.report));
    outln!(
        "{:.1} simulated seconds in {:.1} s of wall time ({:.1} sim-s/s)",
        outcome.report.sim_seconds,
        outcome.report.wall_seconds,
        outcome.report.sim_seconds / outcome.report.wall_seconds.max(1e-9)
    );
    outln!("report: {}", out.join("report.html").display());
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

/// `stampede load --rates`: one live run per rate until the objective fails, then
/// bisection; the knee table in OUT/knee.csv and OUT/knee.txt.
fn load_rates_command(
    path: &Path,
    mut opts: LiveOptions,
    out: Option<PathBuf>,
    quiet: bool,
    grid: &[f64],
    objective: &Expr,
    bisect: u32,
) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("out/knee-{}", scenario.name)));
    let mut done: Vec<live::rates::RatePoint> = Vec::new();
    while let Some(rate) = live::rates::next_rate(grid, &done, bisect) {
        opts.rate = Some(rate);
        eprintln!("==> rate {rate}");
        let dir = out.join(format!("rate-{rate}"));
        let (outcome, _) = load_once(&scenario, &opts, Some(dir), quiet)?;
        let metrics = sweep::metrics::of(&outcome.report);
        let ok = objective.holds(&metrics);
        eprintln!(
            "    rate {rate}: {} (delivered {:.1}/s, p99 {} ms)",
            if ok {
                "meets the objective"
            } else {
                "FAILS the objective"
            },
            outcome.report.throughput(),
            metrics
                .get("latency_p99_ms")
                .map_or("-".to_string(), |v| format!("{v:.1}"))
        );
        done.push(live::rates::RatePoint {
            rate,
            metrics,
            ok,
            generator_cores: outcome.generator.cores(),
            machine_cores: outcome.generator.machine_cores(),
            cpus: outcome.generator.cpus,
        });
        std::fs::write(out.join("knee.csv"), live::rates::knee_csv(&done))
            .with_context(|| format!("writing {}", out.join("knee.csv").display()))?;
    }
    let text = live::rates::knee_text(&opts.target.uri, objective, &done);
    std::fs::write(out.join("knee.txt"), &text)
        .with_context(|| format!("writing {}", out.join("knee.txt").display()))?;
    outln!("{text}");
    outln!("table: {}", out.join("knee.csv").display());
    Ok(ExitCode::SUCCESS)
}

fn load_command(
    path: &Path,
    opts: &LiveOptions,
    out: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (outcome, out) = load_once(&scenario, opts, out, quiet)?;
    outln!("report: {}", out.join("report.html").display());
    if outcome.report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("\nan expectation failed (see the report)");
        Ok(ExitCode::from(2))
    }
}

/// One live run of `scenario` into `out`: the report, generator.json, and the summary
/// on stdout.
fn load_once(
    scenario: &Scenario,
    opts: &LiveOptions,
    out: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<(live::LiveOutcome, PathBuf)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let bar = progress_bar(
        quiet,
        1000,
        "{spinner} {prefix} [{bar:30}] {msg}",
        format!("{} -> {}", scenario.name, opts.target.uri),
    );
    let progress = {
        let bar = bar.clone();
        move |p: live::LiveProgress| {
            bar.set_position((p.elapsed_s / p.total_s.max(1e-9) * 1000.0).min(1000.0) as u64);
            bar.set_message(format!(
                "{:>9} {:.0}/{:.0} s, sent {}, received {}",
                p.phase, p.elapsed_s, p.total_s, p.sent, p.received
            ));
        }
    };
    let scrape =
        |addr: &String| -> anyhow::Result<_> { Ok(live::scrape::parse(&live::scrape::get(addr)?)) };
    let before = opts.metrics.as_ref().map(scrape).transpose()?;
    let mut outcome = runtime.block_on(live::run(scenario, opts, &progress))?;
    bar.finish_and_clear();
    if let (Some(addr), Some(before)) = (&opts.metrics, &before) {
        let after = scrape(addr)?;
        outcome.report.broker_counters = live::scrape::counters(before, &after);
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    for note in &outcome.plan.notes {
        eprintln!("note: {note}");
    }
    let out = out.unwrap_or_else(|| {
        let mut name = format!("out/load-{}-{}", scenario.name, outcome.kind);
        if !opts.shard.is_whole() {
            name.push_str(&format!("-{}", opts.shard.tag()));
        }
        PathBuf::from(name)
    });
    stampede_reports::write_report(&outcome.report, &out)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    let p99 = (!outcome.report.send_delay_us.is_empty())
        .then(|| outcome.report.send_delay_us.value_at_quantile(0.99));
    std::fs::write(out.join("generator.json"), outcome.generator.to_json(p99))
        .with_context(|| format!("writing {}", out.join("generator.json").display()))?;
    outln!("{}", stampede_reports::summary_text(&outcome.report));
    let g = &outcome.generator;
    outln!(
        "phases: setup {:.1} s, warm-up {:.1} s, measured {:.1} s, drain {:.1} s",
        outcome.plan.setup_s,
        outcome.plan.warmup_s,
        outcome.plan.measure_s,
        outcome.plan.drain_s
    );
    outln!(
        "generator: {:.2} core(s) of {} ({} worker threads); whole machine {:.2} core(s) busy",
        g.cores(),
        g.cpus,
        g.threads,
        g.machine_cores()
    );
    if outcome.stale > 0 {
        outln!(
            "{} stale message(s) from an earlier run were consumed and ignored",
            outcome.stale
        );
    }
    Ok((outcome, out))
}

/// `--user` and `--password` as credentials.
fn credentials(
    user: Option<String>,
    password: Option<String>,
) -> anyhow::Result<Option<Credentials>> {
    match (user, password) {
        (Some(login), passcode) => Ok(Some(Credentials {
            login,
            passcode: passcode.unwrap_or_default(),
        })),
        (None, Some(_)) => anyhow::bail!("--password needs --user"),
        (None, None) => Ok(None),
    }
}

/// How a profile's header names the fit's weighting.
fn weighting_words(w: calibrate::Weighting) -> &'static str {
    match w {
        calibrate::Weighting::Absolute => " (of the runs' CPU times)",
        calibrate::Weighting::Relative => {
            " (of the runs' relative errors, every run weighing the same: --fit relative)"
        }
    }
}

fn calibrate_command(
    opts: &CalibrateOptions,
    description: Option<String>,
    out: &Path,
    clients_out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    // The command that made the profile, for its header.
    let command = std::iter::once("stampede".to_owned())
        .chain(std::env::args().skip(1).map(|a| explore::shell_word(&a)))
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "calibrating {} (CPU from {}); {} s of load per workload",
        opts.target.uri,
        opts.cpu.describe(),
        opts.duration_s
    );
    let c = calibrate::calibrate(opts, &|line| eprintln!("  {line}"))?;
    let source = match &c.work_source {
        WorkSource::Metrics(addr) => format!("the broker's stampede_work_*_total counters ({addr}/metrics)"),
        WorkSource::Client => "the client side (frames, bytes, MESSAGEs, ACKs, heart-beats and connections seen by the workloads)".to_owned(),
    };
    let machine = format!(
        "{} CPU(s), {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l
                .strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())))
            .unwrap_or_else(|| "unknown CPU".to_owned())
    );
    let description = description.unwrap_or_else(|| {
        format!(
            "{} ({}), calibrated on {machine}",
            c.kind,
            c.server.as_deref().unwrap_or("no server header")
        )
    });
    let fit = &c.fit;
    outln!("\n{}", fit.table());
    outln!(
        "R² = {:.4} over {} workloads; work counted from {source}",
        fit.r2,
        c.samples.len()
    );
    print_costs(fit);
    if fit.poor() {
        eprintln!(
            "warning: the fit is poor (R² {:.3} < {}): the profile is written with fit_poor = true; use it with care",
            fit.r2,
            calibrate::R2_POOR
        );
    }
    let date = {
        // The profile's date (live mode: the wall clock).
        #[allow(clippy::disallowed_methods)]
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        civil_date(secs)
    };
    let mut header = vec![
        format!(
            "Cost profile of {} made by `stampede calibrate` on {date}:",
            c.kind
        ),
        format!("  {command}"),
        format!("Machine: {machine}."),
        format!("Work counted from {source}."),
        format!(
            "Broker CPU from {}, less its idle rate ({:.3} cores) times each run's wall time.",
            opts.cpu.describe(),
            c.idle_cores
        ),
        format!(
            "Non-negative least squares{} over {}frames (frames_in + frames_out, one cost), bytes_in, bytes_out, heartbeats, connections{}{} (other costs 0); R² {:.4}.",
            weighting_words(opts.weighting),
            if matches!(c.work_source, WorkSource::Metrics(_)) {
                "events, "
            } else {
                ""
            },
            if matches!(c.work_source, WorkSource::Metrics(_)) {
                ", io_calls (frames that wake an idle writer)"
            } else {
                ""
            },
            if opts.cpu.counts_wakeups() {
                ", wake-ups (its threads' voluntary context switches, less the idle rate)"
            } else {
                ""
            },
            fit.r2
        ),
        String::new(),
    ];
    header.extend(fit.table().lines().map(str::to_owned));
    let text = calibrate::profile_text(fit, &description, &header)?;
    calibrate::write_profile(out, &text)?;
    outln!("profile: {}", out.display());
    if let Some(clients_out) = clients_out {
        let fit = &c.clients_fit;
        outln!(
            "\nThe clients (this generator's own CPU, {} worker threads):\n{}",
            opts.threads,
            fit.table()
        );
        outln!("R² = {:.4}", fit.r2);
        print_costs(fit);
        if fit.poor() {
            eprintln!(
                "warning: the clients' fit is poor (R² {:.3} < {}): written with fit_poor = true",
                fit.r2,
                calibrate::R2_POOR
            );
        }
        let mut header = vec![
            format!("Clients' cost profile (the stampede load generator's own CPU) made by `stampede calibrate` on {date}:"),
            format!("  {command}"),
            format!("Machine: {machine}; {} generator worker threads.", opts.threads),
            "Generator CPU from /proc/self/stat; work counted on its connections, as the broker sees it".to_owned(),
            "(what the clients wrote is frames_in/bytes_in, what they read frames_out/bytes_out and deliveries).".to_owned(),
            format!(
                "Non-negative least squares{} over frames (frames_in + frames_out, one cost), bytes (bytes_in + bytes_out, one cost), heartbeats, connections, io_calls (chunks read or written), wake-ups (its threads' voluntary context switches); R² {:.4}.",
                weighting_words(opts.weighting),
                fit.r2
            ),
            "For a scenario's `[clients] profile` (with `cores` = the threads).".to_owned(),
            String::new(),
        ];
        header.extend(fit.table().lines().map(str::to_owned));
        let text = calibrate::profile_text(
            fit,
            &format!(
                "stampede load generator ({} threads), calibrated on {machine}",
                opts.threads
            ),
            &header,
        )?;
        calibrate::write_profile(clients_out, &text)?;
        outln!("clients' profile: {}", clients_out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The fitted costs that are not zero, one per line.
fn print_costs(fit: &calibrate::Fit) {
    let costs = stampede_broker::server::cost::CostProfile::from_ns_array(fit.ns).costs();
    let wakeups = ("wakeups_ns".to_owned(), fit.wakeups_ns);
    for (key, ns) in costs.into_iter().chain(std::iter::once(wakeups)) {
        if ns > 0.0 {
            outln!("  {key:<28} {ns:>12.3}");
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
fn civil_date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A run's label in a comparison: the target's kind (`activemq`, …) or `simulation`,
/// made unique with the directory name when two runs share it.
fn labels(dirs: &[PathBuf], reports: &[RunReport]) -> Vec<String> {
    let base: Vec<String> = reports
        .iter()
        .map(|r| {
            r.target
                .as_deref()
                .and_then(|t| t.split_whitespace().next())
                .unwrap_or("simulation")
                .to_owned()
        })
        .collect();
    base.iter()
        .zip(dirs)
        .map(|(b, d)| {
            if base.iter().filter(|x| *x == b).count() > 1 {
                d.file_name()
                    .map_or_else(|| b.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                b.clone()
            }
        })
        .collect()
}

/// Reads the report in each directory, naming the one that fails.
fn read_reports(dirs: &[PathBuf]) -> anyhow::Result<Vec<RunReport>> {
    dirs.iter()
        .map(|d| {
            stampede_reports::read_report(d)
                .with_context(|| format!("reading the report in {}", d.display()))
        })
        .collect()
}

fn compare_command(dirs: &[PathBuf], out: &Path) -> anyhow::Result<ExitCode> {
    let reports = read_reports(dirs)?;
    let labels = labels(dirs, &reports);
    // Scenarios in first-seen order.
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &reports {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let mut all = Vec::new();
    let mut generator_rows = Vec::new();
    for scenario in &scenarios {
        let group: Vec<(String, RunReport)> = reports
            .iter()
            .zip(&labels)
            .filter(|(r, _)| r.scenario == *scenario)
            .map(|(r, l)| (l.clone(), r.clone()))
            .collect();
        let dir = if scenarios.len() == 1 {
            out.to_path_buf()
        } else {
            out.join(scenario)
        };
        stampede_reports::write_comparison(&group, &dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        outln!("{scenario}: {}", dir.join("compare.html").display());
        let base = &group[0].1;
        let base_p99 =
            (!base.latency_us.is_empty()).then(|| base.latency_us.value_at_quantile(0.99));
        for (label, r) in &group {
            let p99 = (!r.latency_us.is_empty()).then(|| r.latency_us.value_at_quantile(0.99));
            let thr = r.throughput();
            outln!(
                "  {label:<24} delivered {:>9.1} msg/s ({:>5.2}x)  p99 {:>10}  ({})  lost {}",
                thr,
                if base.throughput() > 0.0 {
                    thr / base.throughput()
                } else {
                    0.0
                },
                p99.map_or("-".to_owned(), |v| format!("{:.2} ms", v as f64 / 1000.0)),
                match (p99, base_p99) {
                    (Some(a), Some(b)) if b > 0 => format!("{:.2}x", a as f64 / b as f64),
                    _ => "-".to_owned(),
                },
                r.messages.lost,
            );
        }
        for ((label, r), d) in group.iter().zip(
            dirs.iter()
                .zip(&reports)
                .filter(|(_, r)| r.scenario == *scenario)
                .map(|(d, _)| d),
        ) {
            if let Some(numbers) = std::fs::read_to_string(d.join("generator.json"))
                .ok()
                .and_then(|t| GeneratorStats::read_json(&t))
            {
                generator_rows.push(GeneratorRow::new(scenario, label, numbers));
            }
            all.push((format!("{scenario}: {label}"), r.clone()));
        }
    }
    if scenarios.len() > 1 {
        std::fs::create_dir_all(out)?;
        std::fs::write(
            out.join("compare.csv"),
            stampede_reports::compare::compare_csv(&all),
        )?;
    }
    if !generator_rows.is_empty() {
        std::fs::write(out.join("generator.csv"), generator_csv(&generator_rows)?)?;
    }
    outln!("comparison: {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `stampede explore`'s options.
struct ExploreArgs {
    seeds: Option<Seeds>,
    jobs: Option<usize>,
    out: Option<PathBuf>,
    duration: Option<f64>,
    set: Vec<Override>,
    emit_jobs: bool,
    collect: Vec<PathBuf>,
    shrink: bool,
    quiet: bool,
}

/// Loads a scenario with its `--set` overrides and a `--duration` override.
fn load_with_duration(
    path: &Path,
    set: &[Override],
    duration: Option<f64>,
) -> anyhow::Result<Scenario> {
    let mut scenario = overrides::load(path, set)?;
    if let Some(d) = duration {
        scenario.duration_s = d;
        scenario
            .validate()
            .map_err(|e| anyhow::anyhow!("--duration {d}: {e}"))?;
    }
    Ok(scenario)
}

fn explore_command(path: &Path, args: &ExploreArgs) -> anyhow::Result<ExitCode> {
    let scenario = load_with_duration(path, &args.set, args.duration)?;
    let flags = explore::RunFlags {
        duration_s: args.duration,
        sets: args.set.iter().map(Override::arg).collect(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("out/explore-{}", scenario.name)));
    if args.emit_jobs {
        let seeds = args.seeds.as_ref().context("--emit-jobs needs --seeds")?;
        for line in explore::job_commands("stampede", path, &seeds.0, &flags, &out) {
            outln!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows = if args.collect.is_empty() {
        let seeds = args
            .seeds
            .clone()
            .context("give --seeds A..B (or --collect DIR...)")?;
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let opts = explore::ExploreOptions {
            program: std::env::current_exe().context("cannot find the stampede executable")?,
            scenario: path.to_path_buf(),
            seeds: seeds.0,
            jobs,
            out: out.clone(),
            flags: flags.clone(),
        };
        let bar = progress_bar(
            args.quiet,
            opts.seeds.len() as u64,
            "{spinner} {prefix} [{bar:30}] {pos}/{len} seeds {msg} (wall {elapsed_precise}, eta {eta})",
            format!("{} x{jobs}", scenario.name),
        );
        let rows = explore::explore(&opts, &mut |p| {
            bar.set_position(p.done as u64);
            bar.set_message(format!(
                "{} failed{}",
                p.failed,
                if p.resumed > 0 {
                    format!(", {} kept from before", p.resumed)
                } else {
                    String::new()
                }
            ));
        })?;
        bar.finish_and_clear();
        rows
    } else {
        let (rows, missing) = explore::collect(&scenario.name, &args.collect)?;
        for m in &missing {
            eprintln!(
                "note: no report of scenario {} in {}",
                scenario.name,
                m.display()
            );
        }
        if let Some(seeds) = &args.seeds {
            let absent: Vec<String> = seeds
                .0
                .iter()
                .filter(|s| !rows.iter().any(|r| r.seed == **s))
                .map(u64::to_string)
                .collect();
            if !absent.is_empty() {
                eprintln!("note: no result for seed(s) {}", absent.join(", "));
            }
        }
        anyhow::ensure!(!rows.is_empty(), "no report found in {:?}", args.collect);
        rows
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let table = out.join(explore::TABLE_FILE);
    explore::write_table(&table, &rows)?;
    let text = explore::summary(path, &flags, &rows);
    std::fs::write(out.join(explore::SUMMARY_FILE), &text)
        .with_context(|| format!("writing {}", out.join(explore::SUMMARY_FILE).display()))?;
    out!("{text}");
    outln!("table: {}", table.display());
    let first_failure = rows.iter().find(|r| r.verdict == "fail");
    if args.shrink
        && let Some(r) = first_failure
    {
        outln!("\nshrinking seed {}:", r.seed);
        shrink_command(
            path,
            ShrinkArgs {
                seed: r.seed,
                expectation: None,
                duration: args.duration,
                set: &args.set,
                out: Some(out.join(format!("shrink-{}", r.seed))),
                max_runs: 150,
                quiet: args.quiet,
            },
        )?;
    }
    Ok(if rows.iter().all(explore::SeedResult::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// How an expectation failed: its name, and whether it had no data to judge (an empty
/// ratio or histogram) rather than a measured value beyond its limit.
type Failure = (String, bool);

/// What one in-process run of a shrink candidate showed: its failed expectations, and
/// the causes (`crash`, `no-route`, …) of its lost messages.
struct Verdicts {
    failed: Vec<Failure>,
    causes: std::collections::BTreeSet<String>,
}

/// Runs `scenario` with `seed` in this process; `None` when the run did not finish.
fn failed_expectations(scenario: &Scenario, seed: u64) -> Option<Verdicts> {
    let outcome = run(scenario, seed, "", &mut |_| {}).ok()?;
    let report = &outcome.report;
    let failed = report
        .expectations
        .iter()
        .filter(|e| !e.ok)
        .map(|e| {
            let no_data = e.check.as_ref().is_some_and(|c| c.value(report).is_none());
            (e.name.clone(), no_data)
        })
        .collect();
    let causes = report
        .losses_by_cause
        .iter()
        .filter(|l| l.lost > 0)
        .map(|l| l.label.clone())
        .collect();
    Some(Verdicts { failed, causes })
}

/// What `stampede shrink` (or `explore --shrink`) was asked to do.
struct ShrinkArgs<'a> {
    seed: u64,
    expectation: Option<&'a str>,
    duration: Option<f64>,
    set: &'a [Override],
    out: Option<PathBuf>,
    max_runs: usize,
    quiet: bool,
}

fn shrink_command(path: &Path, args: ShrinkArgs<'_>) -> anyhow::Result<ExitCode> {
    let ShrinkArgs {
        seed,
        expectation,
        duration,
        set,
        out,
        max_runs,
        quiet,
    } = args;
    let scenario = load_with_duration(path, set, duration)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("out/shrink-{}-{seed}", scenario.name)));
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} (wall {elapsed_precise})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("shrink {} seed {seed}", scenario.name));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    };
    bar.set_message("running the original");
    let original =
        failed_expectations(&scenario, seed).context("the original run failed to run")?;
    let failed = &original.failed;
    // The failure to keep: the same expectation, failing the same way (without data, or
    // with a measured value), so that a run cut too short to measure anything does not
    // pass for the same failure.
    let failure: Failure = match expectation {
        Some(name) => failed
            .iter()
            .find(|f| f.0 == name)
            .cloned()
            .with_context(|| {
                format!(
                    "seed {seed} does not fail `{name}` (it fails: {})",
                    if failed.is_empty() {
                        "nothing".to_owned()
                    } else {
                        failed
                            .iter()
                            .map(|f| f.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            })?,
        None => failed
            .first()
            .cloned()
            .with_context(|| format!("seed {seed} passes every expectation: nothing to shrink"))?,
    };
    let target = failure.0.clone();
    let mut runs = 0usize;
    let mut fails = |c: &Scenario| {
        runs += 1;
        bar.set_message(format!(
            "run {runs}, keeping `{target}` failing; now {}",
            explore::size(c)
        ));
        // The same failure, and no loss of a kind the original run did not have (a
        // candidate that lost its only client on one broker loses by `no-route`: a
        // different failure).
        failed_expectations(c, seed)
            .is_some_and(|v| v.failed.contains(&failure) && v.causes.is_subset(&original.causes))
    };
    let shrunk = explore::shrink(&scenario, seed, max_runs, &mut fails);
    bar.finish_and_clear();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let file = out.join("shrunk.toml");
    let mut original_text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if !set.is_empty() {
        // The shrunk file starts from the scenario as the failing run had it: the file
        // with the overrides written in (its comments are lost then).
        let mut doc: toml::Table = original_text
            .parse()
            .with_context(|| format!("reading {}", path.display()))?;
        for o in set {
            overrides::apply(&mut doc, o).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        original_text = toml::to_string(&doc).context("writing the overridden scenario")?;
    }
    let text = explore::shrunk_file(&shrunk.scenario, path, &original_text, seed, &target, &file)?;
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    // The file, read back as `stampede run` will read it, must fail the same way.
    let reloaded = Scenario::load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let again = failed_expectations(&reloaded, seed).map(|v| v.failed);
    anyhow::ensure!(
        again.as_ref().is_some_and(|f| f.contains(&failure)),
        "{} does not fail `{target}` when read back (it fails: {:?}); please report this",
        file.display(),
        again
    );
    outln!(
        "shrunk seed {seed} of {} in {} run(s), still failing `{target}`:",
        path.display(),
        shrunk.runs + 1
    );
    outln!("  from {}", explore::size(&scenario));
    outln!("  to   {}", explore::size(&shrunk.scenario));
    for step in &shrunk.steps {
        outln!("  - {step}");
    }
    outln!("wrote {}; replay it with:", file.display());
    outln!("  stampede run {} --seed {seed}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// A progress bar of `len` steps with `template` and `prefix` (hidden when `quiet`).
fn progress_bar(quiet: bool, len: u64, template: &str, prefix: String) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

/// `stampede sweep`'s options.
struct SweepArgs {
    vary: Vec<String>,
    objective: String,
    set: Vec<Override>,
    seeds: Option<Seeds>,
    jobs: Option<usize>,
    out: Option<PathBuf>,
    duration: Option<f64>,
    bisect: usize,
    knee_at: KneeAt,
    emit_jobs: Option<PathBuf>,
    collect: Vec<PathBuf>,
    quiet: bool,
}

/// The command that describes a sweep (without --jobs, --out, --emit-jobs, --collect,
/// which do not change its results), for the page and the summary.
fn sweep_description(path: &Path, args: &SweepArgs, seeds: &[u64]) -> String {
    let w = |s: &str| explore::shell_word(s);
    let mut c = format!("stampede sweep {}", w(&path.display().to_string()));
    for v in &args.vary {
        c.push_str(&format!(" --vary {}", w(v)));
    }
    c.push_str(&format!(" --objective {}", w(&args.objective)));
    for o in &args.set {
        c.push_str(&format!(" --set {}", w(&o.arg())));
    }
    if args.seeds.is_some() {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        c.push_str(&format!(" --seeds {}", list.join(",")));
    }
    if let Some(d) = args.duration {
        c.push_str(&format!(" --duration {d}"));
    }
    if args.bisect != 3 {
        c.push_str(&format!(" --bisect {}", args.bisect));
    }
    if args.knee_at == KneeAt::Smallest {
        c.push_str(" --knee-at smallest");
    }
    c
}

fn sweep_command(path: &Path, args: &SweepArgs) -> anyhow::Result<ExitCode> {
    // Everything is checked before anything runs.
    let varies = args
        .vary
        .iter()
        .map(|v| v.parse::<Vary>())
        .collect::<Result<Vec<_>, _>>()?;
    let objective: Expr = args.objective.parse()?;
    let scenario = load_with_duration(path, &args.set, args.duration)?;
    let seeds = args
        .seeds
        .as_ref()
        .map_or_else(|| vec![scenario.seed], |s| s.0.clone());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("out/sweep-{}", scenario.name)));
    let offline = args.emit_jobs.is_some() || !args.collect.is_empty();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let opts = SweepOptions {
        program: std::env::current_exe().context("cannot find the stampede executable")?,
        spec: RunSpec {
            scenario: path.to_path_buf(),
            base: args.set.clone(),
            duration_s: args.duration,
            out: out.clone(),
        },
        scenario_name: scenario.name.clone(),
        varies,
        seeds: seeds.clone(),
        objective,
        objective_text: args.objective.clone(),
        knee_at: args.knee_at,
        bisect: args.bisect,
        jobs,
        mode: if offline {
            sweep::Mode::Offline
        } else {
            sweep::Mode::Run
        },
    };
    sweep::validate(&opts)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if !args.collect.is_empty() {
        let (copied, skipped) =
            sweep::runner::collect(&opts.spec, &opts.scenario_name, &opts.varies, &args.collect)?;
        outln!("collected {copied} run(s) into {}", out.display());
        for s in skipped {
            eprintln!("note: {} is not a run of this sweep; skipped", s.display());
        }
    }
    let points = sweep::grid::points(&opts.varies).len();
    let bar = progress_bar(
        args.quiet || offline,
        (points * seeds.len()) as u64,
        "{spinner} {prefix} [{bar:30}] {pos}/{len} runs {msg} (wall {elapsed_precise}, eta {eta})",
        format!("{} x{jobs}", scenario.name),
    );
    let outcome = sweep::sweep(&opts, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(format!(
            "{}{}",
            if p.round > 0 {
                format!("bisection round {}", p.round)
            } else {
                "grid".to_owned()
            },
            if p.errors > 0 {
                format!(", {} error(s)", p.errors)
            } else {
                String::new()
            }
        ));
    })?;
    bar.finish_and_clear();
    if let Some(file) = &args.emit_jobs {
        let lines: Vec<String> = outcome
            .missing
            .iter()
            .map(|j| opts.spec.command("stampede", &opts.varies, j))
            .collect();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        if file.as_os_str() == "-" {
            out!("{text}");
        } else {
            std::fs::write(file, &text).with_context(|| format!("writing {}", file.display()))?;
            eprintln!(
                "{} command(s) written to {}; after they ran: stampede sweep … --collect DIR --out {}",
                lines.len(),
                file.display(),
                out.display()
            );
        }
        if !lines.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let description = sweep_description(path, args, &seeds);
    let table = out.join(sweep::table::TABLE_FILE);
    sweep::table::write_csv(&table, &opts, &outcome.rows)?;
    let page = sweep::table::page(&opts, &description, &outcome);
    let html = out.join(sweep::table::PAGE_FILE);
    std::fs::write(&html, stampede_reports::sweep::sweep_page(&page))
        .with_context(|| format!("writing {}", html.display()))?;
    let text = sweep::table::summary(&opts, &description, &outcome);
    std::fs::write(out.join(sweep::table::SUMMARY_FILE), &text)
        .with_context(|| format!("writing {}", out.join(sweep::table::SUMMARY_FILE).display()))?;
    out!("{text}");
    if outcome.resumed > 0 {
        outln!("({} run(s) reused from {})", outcome.resumed, out.display());
    }
    outln!("table: {}\npage:  {}", table.display(), html.display());
    Ok(if outcome.rows.iter().any(|r| r.error.is_some()) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
