//! Live load mode (`stampede load`): a scenario's workloads against a real broker over
//! real TCP, measured and reported exactly as in the simulator.
//!
//! The same workload code runs ([`crate::workload::build_all`]), with an
//! [`Env`] of [`TokioNet`], the target's addresses and its [`Dialect`](crate::dialect::Dialect),
//! and a [`Recorder::live`] clock. What changes for a live run ([`plan`]):
//!
//! - **Brokers.** Every scenario broker is mapped to the target: when the target URI
//!   names as many servers as the scenario has brokers, one each in order; otherwise
//!   every pool becomes the whole server list (failover between them). The report's
//!   brokers are the target's `host:port`s.
//! - **Faults** on brokers and the network are applied only with `--faults-via`
//!   ([`faults`]); otherwise they are ignored, with a note (a `clock-skew`, which acts on
//!   the generator's own nodes, is always applied), and so are the expectations that only faults can satisfy (`failover_count_min`,
//!   `failover_p99_ms_max`, `fault_losses_min`) or that depend on the simulated duration
//!   (`delivered_min`).
//! - **Time.** `epoch_ms` is the real clock at the start (so `expires` means what the
//!   broker thinks it means). The run has four phases: *setup* (clients connect; node
//!   start-up spread capped at 5 s), *warm-up* (`--warmup`, load runs, nothing recorded
//!   in it counts), the *measured* window (`--duration`, default the scenario's
//!   `duration_s`), and *drain* (no new sends; deliveries of messages sent in the window
//!   still count; at least the MCollective reply window). Open-loop schedules as in the
//!   simulator: latency from the intended send time, the send delay recorded separately.
//! - **Heart-beats** are read with a grace of [`LIVE_HEARTBEAT_GRACE_FACTOR`] intervals
//!   instead of 1.5, which ActiveMQ's heart-beat timing does not meet.
//! - **Rate.** `--rate R` sets every queue producer to `R` messages per second and every
//!   `mco` client to `R` discovery requests per second.
//! - **Shards.** `--shard i/n` narrows the scenario to one self-contained part
//!   ([`shard`]).
//!
//! After the run the history is cut to the measured window (sends and requests whose
//! intended time falls in it, and everything observed about them) and shifted so that the
//! window starts at 0; then the simulator's checker and report code make the report, with
//! `target` set and `sim_seconds` the measured duration.

pub mod faults;
pub mod generator;
pub mod rates;
pub mod scrape;
pub mod shard;
pub mod target;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use stampede_broker::client::{ClientEvent, Credentials};
use stampede_broker::net::{SharedNet, TokioNet};
use stampede_reports::RunReport;

use crate::checker::{self, Analysis};
use crate::fault::Timeline;
use crate::history::{History, Recorder};
use crate::scenario::{BrokerSpec, FaultKind, FaultSpec, Scenario, glob};
use crate::workload::{self, Env, NodeLinks, RackClocks};
use generator::{CpuSample, GeneratorStats};
use shard::Shard;
use target::{Probed, TargetKind, TargetUri};

/// The longest node start-up spread a live run keeps (seconds).
const SETUP_SPREAD_MAX_S: f64 = 5.0;

/// How long the target may take to answer the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Heart-beat read grace of live clients (× the negotiated interval): ActiveMQ's
/// inactivity monitor writes a heart-beat only when a whole interval passed without a
/// write, so its heart-beats can be almost two intervals apart, and MCollective's 1.5
/// made every idle ActiveMQ consumer of a run reconnect.
const LIVE_HEARTBEAT_GRACE_FACTOR: f64 = 2.5;

/// Extra time allowed after the planned end for hosts to finish.
const WIND_DOWN: Duration = Duration::from_secs(30);

/// What `stampede load` was asked to do.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// The target.
    pub target: TargetUri,
    /// Its kind; `None`: `redis://` means Redis, otherwise guessed from CONNECTED's
    /// `server` header.
    pub kind: Option<TargetKind>,
    /// Measured seconds (default: the scenario's `duration_s`).
    pub duration_s: Option<f64>,
    /// Warm-up seconds, excluded from the results.
    pub warmup_s: f64,
    /// Least drain seconds after the window.
    pub drain_s: f64,
    /// `--rate`.
    pub rate: Option<f64>,
    /// `--shard`.
    pub shard: Shard,
    /// Seed of the schedules (default: the scenario's).
    pub seed: Option<u64>,
    /// Login and passcode (default: the kind's, see [`TargetKind::default_credentials`]).
    pub credentials: Option<Credentials>,
    /// Worker threads of the runtime the run is on (reported only).
    pub threads: usize,
    /// stampede-broker's Prometheus endpoint (`host:port`): read before and after the
    /// run into the report's broker counters.
    pub metrics: Option<String>,
    /// `--faults-via`: the command that applies the scenario's broker faults to the
    /// target's brokers ([`faults`]); `None`: faults are dropped.
    pub faults_via: Option<String>,
}

/// A scenario adapted to a live run, and what was changed.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scenario the workloads run (brokers are the target's servers).
    pub scenario: Scenario,
    /// What was ignored or changed, for people.
    pub notes: Vec<String>,
    /// Seconds of setup before the warm-up.
    pub setup_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Measured seconds.
    pub measure_s: f64,
    /// Drain seconds.
    pub drain_s: f64,
    /// The scenario's broker names → the target servers' names that replaced them (one
    /// each when the counts match, else in turn), for texts that name brokers.
    pub aliases: BTreeMap<String, String>,
}

impl Plan {
    /// When the measured window starts, in seconds since the start of the run.
    pub fn window_start_s(&self) -> f64 {
        self.setup_s + self.warmup_s
    }

    /// When it ends.
    pub fn window_end_s(&self) -> f64 {
        self.window_start_s() + self.measure_s
    }

    /// The whole run.
    pub fn total_s(&self) -> f64 {
        self.window_end_s() + self.drain_s
    }
}

/// Adapts `original` to a live run against `servers` (see the module documentation).
pub fn plan(
    original: &Scenario,
    opts: &LiveOptions,
    servers: &[(String, u16)],
) -> anyhow::Result<Plan> {
    let mut s = original.clone();
    let mut notes = Vec::new();
    let live_faults = opts.faults_via.is_some();
    if live_faults {
        keep_live_faults(&mut s, &mut notes);
    } else {
        // Client-side faults (clock-skew) act on the generator's own nodes: kept.
        let before = s.faults.len();
        s.faults.retain(|f| faults::client_side(f.kind));
        let ignored = before - s.faults.len();
        if ignored > 0 || s.nemesis.is_some() {
            notes.push(format!(
                "{ignored} fault(s){} ignored: faults on brokers and the network are applied only in the simulator (or with --faults-via)",
                if s.nemesis.is_some() {
                    " and the nemesis"
                } else {
                    ""
                }
            ));
        }
        s.nemesis = None;
    }
    let e = &mut s.expectations;
    let mut dropped = Vec::new();
    // Only faults on brokers move clients between brokers or lose what a broker held.
    let no_faults = s.faults.iter().all(|f| faults::client_side(f.kind));
    for (name, present) in [
        ("delivered_min", e.delivered_min.take().is_some()),
        (
            "failover_count_min",
            no_faults && e.failover_count_min.take().is_some(),
        ),
        (
            "failover_p99_ms_max",
            no_faults && e.failover_p99_ms_max.take().is_some(),
        ),
        ("fault_losses_min", e.fault_losses_min.take().is_some()),
    ] {
        if present {
            dropped.push(name);
        }
    }
    if !dropped.is_empty() {
        notes.push(format!(
            "expectation(s) {} not checked: they depend on {}the simulated duration",
            dropped.join(", "),
            if live_faults {
                "what a crashed broker held (a real broker does not report it) or "
            } else {
                "faults or "
            }
        ));
    }
    if !no_faults && let Some(lost_max) = e.lost_max {
        // The checker explains a loss by what the crashed broker held; a killed real
        // broker cannot say, so live losses in a fault run have no cause. They are bounded
        // by the scenario's lost_max instead of 0.
        e.unexplained_lost_max = Some(e.unexplained_lost_max.unwrap_or(0).max(lost_max));
        notes.push(format!(
            "unexplained_lost_max raised to lost_max ({lost_max}): a killed real broker does not report what it held, so no live loss can be explained by it"
        ));
    }
    if let Some(r) = opts.rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "--rate must be > 0");
        for q in &mut s.workload.queues {
            q.rate_per_s = r;
        }
        // Requests per second per `mco` client: its discovery rounds, or, in a scenario
        // of directed requests only (request/reply), its directed requests.
        if let Some(m) = &mut s.workload.mcollective {
            if m.discovery_interval_s <= 0.0 && m.directed_interval_s > 0.0 {
                m.directed_interval_s = 1.0 / r;
            } else {
                m.discovery_interval_s = 1.0 / r;
            }
        }
    }
    if !s.faults.is_empty() {
        // The simulator's workloads start at their `start_s`; a live run's start with the
        // setup phase's end. Faults keep their distance from the first workload's start.
        let first = s
            .workload
            .queues
            .iter()
            .map(|q| q.start_s)
            .chain(s.workload.mcollective.iter().map(|m| m.start_s))
            .fold(f64::INFINITY, f64::min);
        if first.is_finite() && first > 0.0 {
            for f in &mut s.faults {
                f.at_s = (f.at_s - first).max(0.0);
            }
            notes.push(format!(
                "fault times are counted from the first workload's start ({first} s in the scenario): the measured window starts with the workloads"
            ));
        }
    }
    opts.shard
        .apply(&mut s)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let spread = s
        .racks
        .iter()
        .map(|r| r.start_spread_s)
        .fold(0.0, f64::max)
        .min(SETUP_SPREAD_MAX_S);
    let setup_s = spread + 1.0;
    for r in &mut s.racks {
        r.start_spread_s = r.start_spread_s.min(spread);
    }
    let warmup_s = opts.warmup_s.max(0.0);
    let measure_s = opts.duration_s.unwrap_or(original.duration_s);
    anyhow::ensure!(
        measure_s > 0.0 && measure_s.is_finite(),
        "--duration must be > 0"
    );
    let mut drain_s = opts.drain_s.max(0.5);
    let window_end = setup_s + warmup_s + measure_s;
    if let Some(m) = &mut s.workload.mcollective {
        let reply = m.discovery_timeout_s + m.reply_delay_ms[1] as f64 / 1000.0 + 0.5;
        drain_s = drain_s.max(reply);
        m.start_s = setup_s;
        m.stop_s = Some(window_end + m.discovery_timeout_s);
    }
    for q in &mut s.workload.queues {
        q.start_s = setup_s;
        q.stop_s = Some(window_end);
    }
    s.duration_s = window_end + drain_s;

    if s.brokers.iter().any(|b| !b.connectors.is_empty()) {
        notes.push(
            "broker [[connectors]] ignored: a real target's network is its own configuration"
                .to_owned(),
        );
    }
    // Brokers become the target's servers.
    let names: Vec<String> = servers.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    let by_index = s.brokers.len() == names.len();
    let old: Vec<String> = s.brokers.iter().map(|b| b.name.clone()).collect();
    // Fault groups name hosts or patterns: resolve them against the scenario's hosts,
    // then rename the brokers.
    let hosts_before = s.hosts();
    let map_hosts = |patterns: &[String]| -> Vec<String> {
        hosts_before
            .iter()
            .filter(|h| patterns.iter().any(|p| glob(p, h)))
            .map(|h| match old.iter().position(|o| o == h) {
                Some(i) => names[i].clone(),
                None => h.clone(),
            })
            .collect()
    };
    let map_pool = |pool: &[String]| -> Vec<String> {
        if by_index {
            pool.iter()
                .filter_map(|b| old.iter().position(|o| o == b))
                .map(|i| names[i].clone())
                .collect()
        } else {
            names.clone()
        }
    };
    for r in &mut s.racks {
        r.servers = map_pool(&r.servers);
    }
    if let Some(m) = &mut s.workload.mcollective {
        for c in &mut m.clients {
            c.servers = map_pool(&c.servers);
        }
    }
    for q in &mut s.workload.queues {
        q.producer_servers = map_pool(&q.producer_servers);
        q.consumer_servers = map_pool(&q.consumer_servers);
    }
    // Faults on the generator's own nodes and clients name no broker, unless they cut
    // nodes from some.
    let names_brokers = |f: &FaultSpec| !f.from.is_empty() || !faults::client_side(f.kind);
    if s.faults.iter().any(names_brokers) {
        anyhow::ensure!(
            by_index,
            "the faults name brokers: they need one target server per scenario broker ({} brokers, {} servers), so that each fault reaches the broker it names",
            old.len(),
            names.len()
        );
    }
    if by_index {
        for f in &mut s.faults {
            for group in [&mut f.target, &mut f.a, &mut f.b, &mut f.from] {
                *group = map_hosts(group);
            }
        }
    }
    let aliases = old
        .iter()
        .enumerate()
        .map(|(i, o)| (o.clone(), names[i % names.len()].clone()))
        .collect();
    s.brokers = servers
        .iter()
        .zip(&names)
        .map(|((_, port), name)| BrokerSpec {
            name: name.clone(),
            port: *port,
            core: Default::default(),
            security: Default::default(),
            connectors: Vec::new(),
            discovery: Default::default(),
            profile: None,
            cost: None,
            cost_profile: None,
            store: None,
        })
        .collect();
    Ok(Plan {
        scenario: s,
        notes,
        setup_s,
        warmup_s,
        measure_s,
        drain_s,
        aliases,
    })
}

/// Where a live run is, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct LiveProgress {
    /// Seconds since the start.
    pub elapsed_s: f64,
    /// Planned seconds in all.
    pub total_s: f64,
    /// `setup`, `warm-up`, `measuring` or `draining`.
    pub phase: &'static str,
    /// Messages and requests sent so far.
    pub sent: usize,
    /// Deliveries, request deliveries and replies observed so far.
    pub received: usize,
}

/// The result of a live run.
pub struct LiveOutcome {
    /// The report (what `stampede load` writes).
    pub report: RunReport,
    /// The checker's analysis.
    pub analysis: Analysis,
    /// The plan that ran.
    pub plan: Plan,
    /// The target's kind.
    pub kind: TargetKind,
    /// The generator's CPU use over the measured window.
    pub generator: GeneratorStats,
    /// Messages another run had left behind (consumed and ignored).
    pub stale: u64,
}

/// Runs `scenario` live (call inside a multi-thread tokio runtime).
pub async fn run(
    scenario: &Scenario,
    opts: &LiveOptions,
    progress: &(dyn Fn(LiveProgress) + Send + Sync),
) -> anyhow::Result<LiveOutcome> {
    run_on(scenario, opts, Arc::new(TokioNet), progress).await
}

/// [`run`] with the workloads' connections opened through `net` (a real network: a
/// wrapper of [`TokioNet`] that counts what crosses it, as `stampede calibrate` does).
pub async fn run_on(
    scenario: &Scenario,
    opts: &LiveOptions,
    net: SharedNet,
    progress: &(dyn Fn(LiveProgress) + Send + Sync),
) -> anyhow::Result<LiveOutcome> {
    let servers = opts.target.servers.clone();
    anyhow::ensure!(!servers.is_empty(), "the target names no server");
    // Roboconf's clients use RabbitMQ's default vhost whatever the target is.
    let vhost = scenario
        .workload
        .roboconf
        .as_ref()
        .map(|_| crate::dialect::Dialect::RabbitMq.vhost());
    let (kind, probed, failures) = probe_target(opts, &servers, vhost).await?;
    let mut plan = plan(scenario, opts, &servers)?;
    for f in &failures {
        plan.notes.push(format!("not answering: {f}"));
    }
    if let Some(r) = &scenario.workload.roboconf {
        let exchanges = crate::workload::roboconf::exchanges(r);
        plan.notes.push(format!(
            "Roboconf's clients speak RabbitMQ's conventions on vhost `/` whatever the target: it needs the {} topic exchanges {} … {} (stampede-broker: [[core.vhosts]] convention = \"rabbitmq\" with [[core.vhosts.exchanges]]; RabbitMQ: declared as Roboconf's DM does over AMQP)",
            exchanges.len(),
            exchanges[0],
            exchanges[exchanges.len() - 1],
        ));
    } else if scenario.middleware != crate::scenario::Middleware::default() {
        plan.notes.push(format!(
            "middleware = \"{}\" ignored: live clients speak the target's dialect ({:?})",
            match scenario.middleware {
                crate::scenario::Middleware::Activemq => "activemq",
                crate::scenario::Middleware::Rabbitmq => "rabbitmq",
                crate::scenario::Middleware::Redis => "redis",
            },
            kind.dialect()
        ));
    }
    let seed = opts.seed.unwrap_or(scenario.seed);
    // Live mode runs against a real broker in real time: the run's epoch is the system
    // clock's. This module never runs in the simulator.
    #[allow(clippy::disallowed_methods)]
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_millis() as u64;
    plan.scenario.epoch_ms = epoch_ms;
    let run_tag = format!("{}-{}-{}", scenario.name, std::process::id(), epoch_ms);
    let env = Env {
        net,
        brokers: plan
            .scenario
            .brokers
            .iter()
            .zip(&servers)
            .map(|(b, (h, p))| (b.name.clone(), (h.clone(), *p)))
            .collect(),
        broker_aliases: plan.aliases.clone(),
        dialect: kind.dialect(),
        run_tag: Some(run_tag),
        credentials: opts.credentials.clone().or(kind.default_credentials()),
        heartbeat_grace_factor: Some(LIVE_HEARTBEAT_GRACE_FACTOR),
        // Clock-skew faults move these (faults::apply_client_side).
        rack_clocks: RackClocks::for_racks(&plan.scenario),
        // Isolate-nodes faults cut these (faults::apply_client_side).
        node_links: NodeLinks::for_racks(&plan.scenario),
    };
    let measured = run_workloads(
        &plan,
        seed,
        &env,
        opts.threads,
        opts.faults_via.as_deref(),
        progress,
    )
    .await?;
    for a in &measured.faults {
        plan.notes.push(format!("fault: {}", a.describe()));
    }
    if let Some(failed) = measured.faults.iter().find(|a| a.outcome.is_err()) {
        anyhow::bail!(
            "a live fault failed, so the run does not show what the scenario asked for: {}",
            failed.describe()
        );
    }
    let stale = measured.history.stale;
    let (mut report, analysis) =
        analyse_window(&plan, seed, measured.history, measured.wall_seconds);
    report.target = Some(match &probed.server {
        Some(server) => format!("{kind} {} ({server})", opts.target.uri),
        None => format!("{kind} {}", opts.target.uri),
    });
    if !opts.shard.is_whole()
        && let Some(m) = &mut report.mcollective
    {
        let tag = opts.shard.tag();
        for r in &mut m.per_request {
            r.request_id = format!("{tag}-{}", r.request_id);
        }
    }
    Ok(LiveOutcome {
        report,
        analysis,
        plan,
        kind,
        generator: measured.generator,
        stale,
    })
}

/// Probes every server of the target and decides its kind: the one given, or the one
/// recognised from the first answer. Returns the kind, the first answer and the servers
/// that did not answer; fails when none did. `vhost`, when given, is the one the
/// workload's clients use whatever the kind (else the kind's dialect decides).
async fn probe_target(
    opts: &LiveOptions,
    servers: &[(String, u16)],
    vhost: Option<&str>,
) -> anyhow::Result<(TargetKind, Probed, Vec<String>)> {
    // The kind decides the vhost and credentials of the probe; RabbitMQ is recognised
    // from its answer, so a first probe without credentials may be refused: retry as
    // RabbitMQ then.
    let mut kind = opts.kind;
    let mut probed = None;
    let mut failures = Vec::new();
    for addr in servers {
        let k = kind.unwrap_or(if opts.target.redis {
            TargetKind::Redis
        } else {
            TargetKind::Stampede
        });
        let creds = opts.credentials.clone().or(k.default_credentials());
        let mut answer = target::probe(
            addr,
            opts.target.redis,
            vhost.unwrap_or(k.dialect().vhost()),
            creds.as_ref(),
            PROBE_TIMEOUT,
        )
        .await;
        if answer.is_err() && kind.is_none() && !opts.target.redis {
            let r = TargetKind::Rabbitmq;
            let creds = opts.credentials.clone().or(r.default_credentials());
            if let Ok(p) = target::probe(
                addr,
                false,
                vhost.unwrap_or(r.dialect().vhost()),
                creds.as_ref(),
                PROBE_TIMEOUT,
            )
            .await
            {
                answer = Ok(p);
            }
        }
        match answer {
            Ok(p) => {
                if probed.is_none() {
                    probed = Some(p);
                }
            }
            Err(e) => failures.push(e),
        }
    }
    let Some(probed) = probed else {
        anyhow::bail!(
            "the target {} is not ready: {}",
            opts.target.uri,
            failures.join("; ")
        );
    };
    let kind = kind.get_or_insert_with(|| {
        if opts.target.redis {
            TargetKind::Redis
        } else {
            TargetKind::from_server_header(probed.server.as_deref().unwrap_or(""))
        }
    });
    let kind = *kind;
    anyhow::ensure!(
        (kind == TargetKind::Redis) == opts.target.redis,
        "--target-kind {kind} does not match the target {}: Redis targets are redis://host:port",
        opts.target.uri
    );
    Ok((kind, probed, failures))
}

/// With `--faults-via`: keeps the faults a live run can apply (see [`faults`]), drops the
/// others and the nemesis, and says so in `notes`.
fn keep_live_faults(s: &mut Scenario, notes: &mut Vec<String>) {
    let mut dropped = BTreeSet::new();
    s.faults.retain(|f| {
        let keep = faults::supported(f.kind);
        if !keep {
            dropped.insert(f.kind.as_str());
        }
        keep
    });
    if !dropped.is_empty() {
        notes.push(format!(
            "fault kind(s) {} ignored: live runs apply crash, restart, hold, release, clock-skew, isolate-nodes, packet-loss, crash-nodes, crash-clients and heal-all only",
            dropped.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if s.nemesis.take().is_some() {
        notes.push(
            "the nemesis ignored: live runs apply the scenario's explicit faults only".to_owned(),
        );
    }
    if s.faults
        .iter()
        .any(|f| matches!(f.kind, FaultKind::Hold | FaultKind::Release))
    {
        notes.push(
            "hold and release freeze and thaw the whole broker process (SIGSTOP/SIGCONT): it is held from every peer, not only from the fault's other group".to_owned(),
        );
    }
}

/// What [`run_workloads`] measured.
struct Measured {
    /// The whole history, setup to drain.
    history: History,
    /// Wall time of the whole run.
    wall_seconds: f64,
    /// The generator's CPU use over the measured window.
    generator: GeneratorStats,
    /// The live faults applied, in order (with `--faults-via`).
    faults: Vec<faults::Applied>,
}

/// Runs every workload of `plan` over `env` to its end, reporting progress, and samples
/// the generator's CPU at the edges of the measured window.
async fn run_workloads(
    plan: &Plan,
    seed: u64,
    env: &Env,
    threads: usize,
    faults_via: Option<&str>,
    progress: &(dyn Fn(LiveProgress) + Send + Sync),
) -> anyhow::Result<Measured> {
    let recorder = Recorder::live();
    let total = Duration::from_secs_f64(plan.total_s());
    let hosts = workload::build_all(&plan.scenario, seed, &recorder, total, env)?;
    // Live mode: the run's wall time, reported as `wall_seconds`.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for h in hosts {
        set.spawn(h.run);
    }
    // CPU samples at the edges of the measured window.
    let timebase = recorder.timebase();
    let window = (
        Duration::from_secs_f64(plan.window_start_s()),
        Duration::from_secs_f64(plan.window_end_s()),
    );
    let cpu = tokio::spawn(async move {
        timebase.sleep_until(window.0).await;
        let a = CpuSample::now();
        // Live mode: the measured window's wall time, the denominator of the CPU shares.
        #[allow(clippy::disallowed_methods)]
        let t0 = std::time::Instant::now();
        timebase.sleep_until(window.1).await;
        (a, CpuSample::now(), t0.elapsed().as_secs_f64())
    });
    let all_done = async {
        while let Some(r) = set.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    };
    // Live faults, from the start of the measured window.
    let fault_state = std::sync::Mutex::new(faults::LiveState::default());
    let applied = std::sync::Mutex::new(Vec::new());
    let servers: Vec<String> = plan
        .scenario
        .brokers
        .iter()
        .map(|b| b.name.clone())
        .collect();
    let timeline = Timeline::build(&plan.scenario, seed);
    let apply_faults = async {
        if let Some(cmd) = faults_via {
            faults::apply(
                cmd,
                &timeline,
                &servers,
                timebase,
                window.0,
                &fault_state,
                &applied,
            )
            .await;
        }
        std::future::pending::<()>().await
    };
    let apply_client_faults = async {
        faults::apply_client_side(
            &timeline,
            &env.rack_clocks,
            &env.node_links,
            timebase,
            window.0,
        )
        .await;
        std::future::pending::<()>().await
    };
    let finished = tokio::select! {
        biased;
        () = all_done => Ok(()),
        () = tokio::time::sleep(total + WIND_DOWN) => Err(anyhow::anyhow!(
            "the workloads did not finish within {:?} of the planned end", WIND_DOWN
        )),
        () = progress_ticker(&recorder, plan, progress) => Ok(()),
        () = apply_faults => Ok(()),
        () = apply_client_faults => Ok(()),
    };
    // Whatever happened, leave the brokers as the run found them.
    if let Some(cmd) = faults_via {
        let undo = fault_state.lock().expect("the fault state lock").undo_all();
        for (action, server) in undo {
            let started_ms = (timebase.now_us() / 1000).saturating_sub(window.0.as_millis() as u64);
            let outcome = faults::run_command(cmd, action, &server).await;
            applied
                .lock()
                .expect("the applied list lock")
                .push(faults::Applied {
                    planned_ms: started_ms,
                    started_ms,
                    action,
                    server,
                    outcome,
                });
        }
    }
    finished?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let (a, b, window_wall) = cpu.await.context("the CPU sampler failed")?;
    Ok(Measured {
        history: recorder.take(),
        wall_seconds,
        generator: GeneratorStats::between(a, b, window_wall, threads),
        faults: applied.into_inner().expect("the applied list lock"),
    })
}

/// Reports progress (phase, messages sent and received) four times a second; never
/// completes.
async fn progress_ticker(
    recorder: &Recorder,
    plan: &Plan,
    progress: &(dyn Fn(LiveProgress) + Send + Sync),
) {
    loop {
        let elapsed_s = recorder.now_us() as f64 / 1e6;
        let (sent, received) = {
            let h = recorder.lock();
            (
                h.sends.len() + h.requests.len(),
                h.deliveries.len() + h.request_deliveries.len() + h.replies.len(),
            )
        };
        let phase = if elapsed_s < plan.setup_s {
            "setup"
        } else if elapsed_s < plan.window_start_s() {
            "warm-up"
        } else if elapsed_s < plan.window_end_s() {
            "measuring"
        } else {
            "draining"
        };
        progress(LiveProgress {
            elapsed_s,
            total_s: plan.total_s(),
            phase,
            sent,
            received,
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Cuts `history` to the measured window (and the drain after it) and checks it as the
/// simulator would a run of that length: the report (without target and replay command)
/// and the analysis.
fn analyse_window(
    plan: &Plan,
    seed: u64,
    history: History,
    wall_seconds: f64,
) -> (RunReport, Analysis) {
    let from_us = (plan.window_start_s() * 1e6) as u64;
    let to_us = (plan.window_end_s() * 1e6) as u64;
    let history = cut(history, from_us, to_us);
    let mut analysed = plan.scenario.clone();
    analysed.duration_s = plan.measure_s + plan.drain_s;
    let timeline = Timeline::build(&analysed, seed);
    let analysis = checker::analyse(&analysed, &timeline, &history);
    let names: Vec<String> = history.clients.iter().map(|c| c.name.clone()).collect();
    let mut report = crate::run::to_report(
        &analysed,
        seed,
        &timeline,
        &analysis,
        &names,
        wall_seconds,
        "",
    );
    crate::run::add_loss_paths(&mut report, &analysed, &timeline, &history, &analysis);
    report.replay_command = None;
    report.sim_seconds = plan.measure_s;
    (report, analysis)
}

/// The part of `h` about sends and requests intended in `[from_us, to_us)`, shifted so
/// that `from_us` becomes 0. Client events before the window collapse into each client's
/// state at its start.
pub fn cut(mut h: History, from_us: u64, to_us: u64) -> History {
    let inside = |t: u64| t >= from_us && t < to_us;
    let shift = |t: u64| t.saturating_sub(from_us);
    let sends = std::mem::take(&mut h.sends);
    let deliveries = std::mem::take(&mut h.deliveries);
    let requests = std::mem::take(&mut h.requests);
    let request_deliveries = std::mem::take(&mut h.request_deliveries);
    let replies = std::mem::take(&mut h.replies);
    let events = std::mem::take(&mut h.events);
    let bridged = std::mem::take(&mut h.bridged);
    // Everything else (clients, consumers by workload, statistics, …) stays as it is.
    let mut out = h;
    for mut b in bridged {
        if b.at_us >= from_us {
            b.at_us = shift(b.at_us);
            out.bridged.push(b);
        }
    }
    let mut dropped_sends = BTreeSet::new();
    for mut s in sends {
        if inside(s.intended_us) {
            s.intended_us = shift(s.intended_us);
            s.sent_us = s.sent_us.map(shift);
            out.sends.push(s);
        } else {
            dropped_sends.insert(s.id);
        }
    }
    for mut d in deliveries {
        if !dropped_sends.contains(&d.id) {
            d.at_us = shift(d.at_us);
            out.deliveries.push(d);
        }
    }
    let mut dropped_requests = BTreeSet::new();
    for mut r in requests {
        if inside(r.intended_us) {
            r.intended_us = shift(r.intended_us);
            r.sent_us = r.sent_us.map(shift);
            r.window_end_us = shift(r.window_end_us);
            out.requests.push(r);
        } else {
            dropped_requests.insert(r.id);
        }
    }
    for (from, to) in [
        (request_deliveries, &mut out.request_deliveries),
        (replies, &mut out.replies),
    ] {
        for mut o in from {
            if !dropped_requests.contains(&o.request) {
                o.at_us = shift(o.at_us);
                to.push(o);
            }
        }
    }
    // Each client's connection state when the window opens: its last CONNECTED before
    // it, and a disconnection after that if there was one.
    let mut before: BTreeMap<_, (Option<ClientEvent>, Option<ClientEvent>)> = BTreeMap::new();
    let mut events = events;
    events.sort_by_key(|e| e.0);
    for (at, client, ev) in events {
        if at >= from_us {
            out.events.push((shift(at), client, ev));
            continue;
        }
        let state = before.entry(client).or_default();
        match ev {
            ClientEvent::Connected { .. } => *state = (Some(ev), None),
            ClientEvent::Disconnected { .. } => state.1 = Some(ev),
            _ => {}
        }
    }
    let mut opening = Vec::new();
    for (client, (connected, lost)) in before {
        for ev in [connected, lost].into_iter().flatten() {
            opening.push((0, client, ev));
        }
    }
    opening.append(&mut out.events);
    out.events = opening;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ClientId, DeliveryRecord, SendOutcome, SendRecord};
    use stampede_broker::client::DisconnectReason;

    fn send(id: u64, intended_us: u64) -> SendRecord {
        SendRecord {
            id,
            producer: ClientId(0),
            seq: id,
            intended_us,
            sent_us: Some(intended_us + 5),
            settled_us: Some(intended_us + 5),
            outcome: SendOutcome::Confirmed,
            topic: false,
            workload: 0,
        }
    }

    fn delivery(id: u64, at_us: u64) -> DeliveryRecord {
        DeliveryRecord {
            id,
            consumer: ClientId(1),
            at_us,
            redelivered: false,
        }
    }

    #[test]
    fn cut_keeps_the_window_and_what_was_observed_of_it() {
        let h = History {
            sends: vec![send(1, 500), send(2, 1_000), send(3, 1_999), send(4, 2_000)],
            deliveries: vec![
                delivery(1, 900),
                delivery(2, 1_100),
                delivery(3, 2_500),
                delivery(4, 2_100),
                delivery(99, 1_500),
            ],
            events: vec![
                (10, ClientId(0), ClientEvent::Connected { server: 0 }),
                (20, ClientId(1), ClientEvent::Connected { server: 0 }),
                (
                    30,
                    ClientId(1),
                    ClientEvent::Disconnected {
                        reason: DisconnectReason::Eof,
                    },
                ),
                (1_200, ClientId(1), ClientEvent::Resubscribed { count: 1 }),
            ],
            ..History::default()
        };
        let mut h = h;
        h.consumers_by_workload.insert(0, vec![ClientId(1)]);
        let c = cut(h, 1_000, 2_000);
        assert_eq!(c.consumers_by_workload.get(&0), Some(&vec![ClientId(1)]));
        let ids: Vec<u64> = c.sends.iter().map(|s| s.id).collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(c.sends[0].intended_us, 0);
        assert_eq!(c.sends[0].sent_us, Some(5));
        // Deliveries of sends outside the window go; unknown ids stay (unexpected).
        let got: Vec<(u64, u64)> = c.deliveries.iter().map(|d| (d.id, d.at_us)).collect();
        assert_eq!(got, [(2, 100), (3, 1_500), (99, 500)]);
        assert_eq!(c.events.len(), 4);
        assert_eq!(
            c.events[0],
            (0, ClientId(0), ClientEvent::Connected { server: 0 })
        );
        assert!(matches!(
            c.events[2],
            (0, ClientId(1), ClientEvent::Disconnected { .. })
        ));
        assert_eq!(
            c.events[3],
            (200, ClientId(1), ClientEvent::Resubscribed { count: 1 })
        );
    }

    #[test]
    fn plans_map_brokers_drop_faults_and_set_the_phases() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/queue-competing-consumers-crash.toml");
        let s = Scenario::load(&path).unwrap();
        let opts = LiveOptions {
            target: TargetUri::parse("failover:(tcp://a:1,tcp://b:2)").unwrap(),
            kind: Some(TargetKind::Stampede),
            duration_s: Some(10.0),
            warmup_s: 2.0,
            drain_s: 3.0,
            rate: Some(50.0),
            shard: Shard::default(),
            seed: None,
            credentials: None,
            threads: 1,
            metrics: None,
            faults_via: None,
        };
        let p = plan(&s, &opts, &opts.target.servers).unwrap();
        assert!(p.scenario.faults.is_empty());
        assert!(
            p.notes.iter().any(|n| n.contains("1 fault(s) ignored")),
            "{:?}",
            p.notes
        );
        assert!(p.scenario.expectations.delivered_min.is_none());
        assert_eq!(p.scenario.expectations.unexpected_max, Some(0));
        let q = &p.scenario.workload.queues[0];
        assert_eq!(q.rate_per_s, 50.0);
        assert_eq!(q.producer_servers, ["a:1", "b:2"]);
        assert_eq!(q.start_s, p.setup_s);
        assert_eq!(q.stop_s, Some(p.window_end_s()));
        assert_eq!(p.window_end_s(), p.setup_s + 12.0);
        assert_eq!(p.scenario.duration_s, p.total_s());
        let names: Vec<&str> = p.scenario.brokers.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a:1", "b:2"]);
    }

    #[test]
    fn rate_sets_discovery_rounds_or_else_directed_requests() {
        let load = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scenarios")
                .join(name);
            Scenario::load(&path).unwrap()
        };
        let opts = LiveOptions {
            target: TargetUri::parse("tcp://a:1").unwrap(),
            kind: Some(TargetKind::Stampede),
            duration_s: Some(10.0),
            warmup_s: 2.0,
            drain_s: 3.0,
            rate: Some(40.0),
            shard: Shard::default(),
            seed: None,
            credentials: None,
            threads: 1,
            metrics: None,
            faults_via: None,
        };
        let fanout = plan(&load("bench-fanout-800.toml"), &opts, &opts.target.servers).unwrap();
        let m = fanout.scenario.workload.mcollective.as_ref().unwrap();
        assert_eq!(
            (m.discovery_interval_s, m.directed_interval_s),
            (0.025, 0.0)
        );
        // Request/reply has no discovery: the rate is its directed requests', and no
        // discovery rounds appear.
        let rr = plan(
            &load("bench-request-reply.toml"),
            &opts,
            &opts.target.servers,
        )
        .unwrap();
        let m = rr.scenario.workload.mcollective.as_ref().unwrap();
        assert_eq!(
            (m.discovery_interval_s, m.directed_interval_s),
            (0.0, 0.025)
        );
    }

    #[test]
    fn with_faults_via_the_crash_stays_renamed_and_shifted_and_the_rest_goes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/broker-crash-failover.toml");
        let mut s = Scenario::load(&path).unwrap();
        s.faults.push(FaultSpec {
            at_s: 40.0,
            kind: FaultKind::Partition,
            target: Vec::new(),
            a: vec!["rack-*".to_owned()],
            b: vec!["broker-2".to_owned()],
            latency_ms: None,
            skew_ms: None,
            fraction: None,
            from: Vec::new(),
            loss_percent: None,
            duration_s: Some(5.0),
            label: None,
        });
        let target = TargetUri::parse("failover:(tcp://a:1,tcp://b:2)").unwrap();
        let opts = LiveOptions {
            target: target.clone(),
            kind: Some(TargetKind::Stampede),
            duration_s: None,
            warmup_s: 0.0,
            drain_s: 2.0,
            rate: None,
            shard: Shard::default(),
            seed: None,
            credentials: None,
            threads: 1,
            metrics: None,
            faults_via: Some("true".to_owned()),
        };
        let p = plan(&s, &opts, &target.servers).unwrap();
        // The crash at 30 s, 2 s after the producers' start, names the first server.
        assert_eq!(p.scenario.faults.len(), 1, "{:?}", p.notes);
        let f = &p.scenario.faults[0];
        assert_eq!((f.kind, f.at_s), (FaultKind::Crash, 28.0));
        assert_eq!(f.target, ["a:1"]);
        assert!(
            p.notes.iter().any(|n| n.contains("partition ignored")),
            "{:?}",
            p.notes
        );
        let e = &p.scenario.expectations;
        assert_eq!(e.failover_count_min, Some(200));
        assert!(e.fault_losses_min.is_none());
        assert_eq!(e.unexplained_lost_max, Some(2800));
        // One server for two brokers cannot take a fault per broker.
        let one = TargetUri::parse("tcp://a:1").unwrap();
        let e = plan(&s, &opts, &one.servers).unwrap_err().to_string();
        assert!(e.contains("one target server per scenario broker"), "{e}");
        // Faults on the generator's own nodes and clients name no broker: one server is
        // enough for them.
        let mut own = s.clone();
        for f in &mut own.faults {
            f.kind = FaultKind::CrashNodes;
            f.target = vec!["rack-*".to_owned()];
            f.a.clear();
            f.b.clear();
            f.latency_ms = None;
        }
        let p = plan(&own, &opts, &one.servers).unwrap();
        assert!(!p.scenario.faults.is_empty());
        // Unless they cut nodes from some broker.
        let mut from = own.clone();
        from.faults[0].kind = FaultKind::IsolateNodes;
        from.faults[0].from = vec!["broker-1".to_owned()];
        let e = plan(&from, &opts, &one.servers).unwrap_err().to_string();
        assert!(e.contains("one target server per scenario broker"), "{e}");
    }
}
