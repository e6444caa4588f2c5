//! The simulated world: one turmoil host per broker (running the real broker server over
//! [`TurmoilNet`]), one per rack of client nodes, one per `mco` client and per queue
//! workload; the step loop that advances it and applies the fault timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use stampede_broker::clock::Clock;
use stampede_broker::config::{BrokerConfig, RedisConfig, ServerConfig};
use stampede_broker::server::cost::{Cores, CostProfile};
use stampede_broker::server::{Server, replication};
use stampede_broker::store::{Disk, MasterSlave, ReplicaPeer, ReplicationConfig};
use stampede_broker::vhost::{Convention, ExchangeConfig, ExchangeType, VhostConfig};

use crate::disk::DiskSlot;
use crate::fault::{DiskFault, Op, Timeline};
use stampede_broker::core::Message;

use crate::history::{ClientId, HeldRef, Incarnation, Recorder, Role};
use crate::net::TurmoilNet;
use crate::scenario::{Middleware, REDIS_PORT, Scenario, glob};
use crate::seed;
use crate::workload;
use crate::workload::mcollective;

/// Extra simulated time allowed after the scenario's end for clients to finish.
const WIND_DOWN: Duration = Duration::from_secs(30);

/// How long a broker's supervisor (systemd's `Restart=`) waits before starting a broker
/// that stopped because it lost its shared storage or its lock.
const SUPERVISOR_RESTART: Duration = Duration::from_secs(1);

/// Progress of a run, reported once per simulated second.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Simulated milliseconds so far.
    pub sim_ms: u64,
    /// Simulated milliseconds in total.
    pub total_ms: u64,
}

/// Runs `scenario` with `seed`, recording into `recorder`.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    timeline: &Timeline,
    recorder: &Recorder,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<()> {
    // Every task of the run goes to its host's LocalSet, which a crash drops in the order
    // the tasks were spawned, whatever other threads spawn meanwhile.
    let _local_tasks = stampede_broker::task::spawn_on_local_set();
    let duration = Duration::from_secs_f64(scenario.duration_s);
    let tick = scenario.tick();
    let latency = Duration::from_millis(scenario.network.latency_ms);
    let jitter = Duration::from_millis(scenario.network.jitter_ms);
    let mut builder = turmoil::Builder::new();
    if scenario.disk.torn_write_block_bytes > 0 {
        builder
            .fs()
            .block_size(scenario.disk.torn_write_block_bytes);
    }
    let mut sim = builder
        .rng_seed(seed::derive(seed, "turmoil"))
        .epoch(UNIX_EPOCH + Duration::from_millis(scenario.epoch_ms))
        .simulation_duration(duration + WIND_DOWN)
        .tick_duration(tick)
        .min_message_latency(latency)
        .max_message_latency(latency + jitter)
        // Reconnect storms put hundreds of SYNs on one listener in one tick; turmoil
        // panics when its backlog (this capacity) overflows.
        .tcp_capacity(16_384)
        .build();

    // Brokers with a store keep it on their host's simulated disk.
    let disks = crate::disk::slots(scenario);
    // A broker whose process a `crash` killed: its host runs on, with nothing bound.
    let process_dead: BTreeMap<String, Arc<AtomicBool>> = scenario
        .brokers
        .iter()
        .map(|b| (b.name.clone(), Arc::new(AtomicBool::new(false))))
        .collect();
    // The clients' cores, which brokers with a cost profile share when the scenario puts
    // them on one machine.
    let clients_cpu = workload::cpu::ClientCpu::for_scenario(scenario);
    let sharing = scenario
        .clients
        .as_ref()
        .is_some_and(|c| c.share_with_brokers);
    let shared_cores: Option<Arc<dyn Cores>> = clients_cpu
        .clone()
        .filter(|_| sharing)
        .map(|c| c as Arc<dyn Cores>);
    for b in &scenario.brokers {
        let mut config = BrokerConfig {
            server: ServerConfig {
                listen: vec![format!("0.0.0.0:{}", b.port)],
                ..ServerConfig::default()
            },
            core: b.core.clone(),
            security: b.security.clone(),
            connectors: b.connectors.clone(),
            discovery: b.discovery.clone(),
            // Simulated brokers are observed through their stats handle, not over HTTP.
            metrics: Default::default(),
            // Redis pub/sub beside STOMP when the fleet uses it.
            redis: match scenario.middleware {
                Middleware::Redis => RedisConfig {
                    listen: vec![format!("0.0.0.0:{REDIS_PORT}")],
                    ..RedisConfig::default()
                },
                Middleware::Activemq | Middleware::Rabbitmq => RedisConfig::default(),
            },
            // Without a store (the default), persistent messages live in memory only.
            store: b.store.clone().unwrap_or_default(),
        };
        config.core.broker_name = b.name.clone();
        if config.store.master_slave == MasterSlave::Replicated {
            fill_replication(&mut config.store.replication, &b.name, scenario, seed);
        }
        if scenario.middleware == Middleware::Rabbitmq && config.core.vhosts.is_empty() {
            config.core.vhosts = vec![rabbitmq_vhost(scenario)];
            config.core.default_vhost = Some("/".to_owned());
        }
        // The checker explains losses by what brokers held and dropped.
        config.core.record_drops = true;
        let epoch_ms = scenario.epoch_ms;
        let name = b.name.clone();
        let recorder = recorder.clone();
        let cost = b.cost_profile.clone().map(|profile| BrokerCost {
            profile,
            tick,
            cores: shared_cores.clone(),
        });
        let disk = disks.get(&b.name).cloned();
        // A shared-store slave's lock tries start at an offset drawn from the seed.
        let phase = disk
            .as_ref()
            .and_then(DiskSlot::lock_retry)
            .map_or(Duration::ZERO, |retry| {
                let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX).max(1);
                Duration::from_millis(seed::derive(seed, &format!("lock-phase/{}", b.name)) % ms)
            });
        let dead = process_dead.get(&b.name).cloned().unwrap_or_default();
        sim.host(b.name.as_str(), move || {
            let config = config.clone();
            let name = name.clone();
            let recorder = recorder.clone();
            let cost = cost.clone();
            let disk = disk.clone();
            let dead = dead.load(Ordering::Relaxed);
            async move {
                if dead {
                    // The machine is up and its process is not: a connect is refused at
                    // once (turmoil drops a SYN for an unbound port, which the client
                    // sees as a refusal), as an operating system answers with RST.
                    std::future::pending::<()>().await;
                }
                let Some(slot) = disk else {
                    return Ok(serve(config, None, cost, &name, &recorder, epoch_ms).await?);
                };
                if config.store.master_slave == MasterSlave::Replicated {
                    return replica_host(config, slot, cost, &name, &recorder, epoch_ms).await;
                }
                loop {
                    // On a shared store, a slave waits for the master's lock with nothing
                    // bound.
                    slot.become_master(phase, || note(&recorder, format!("{name} waits as slave")))
                        .await;
                    if slot.is_shared() {
                        note(&recorder, format!("{name} holds the shared store's lock"));
                    }
                    // A broker whose store fails stops (for an EIO as ActiveMQ does; a full
                    // disk it waits out unless its store says `disk_full = "stop"`).
                    let opened = slot.open().map_err(io::Error::other);
                    let outcome = match opened {
                        Ok(d) => {
                            serve(
                                config.clone(),
                                Some(d),
                                cost.clone(),
                                &name,
                                &recorder,
                                epoch_ms,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    };
                    let Err(e) = outcome else {
                        break;
                    };
                    // A shared store's broker that lost its storage or its lock starts
                    // again and waits as a slave.
                    supervise(&slot, &recorder, &name, &e, slot.is_shared()).await;
                }
                Ok(())
            }
        });
    }
    let clients_meter = clients_cpu.clone();
    let env = workload::Env::simulated(scenario, clients_cpu);
    for host in workload::build_all(scenario, seed, recorder, duration, &env)? {
        let run = host.run;
        sim.client(host.name.as_str(), async move {
            run.await;
            Ok(())
        });
    }
    for l in &scenario.network.links {
        for a in expand(&l.a, scenario) {
            for b in expand(&l.b, scenario) {
                if a != b {
                    let base = Duration::from_millis(l.latency_ms);
                    sim.set_link_latency(a.as_str(), b.as_str(), base);
                    sim.set_link_max_message_latency(a.as_str(), b.as_str(), base + jitter);
                }
            }
        }
    }

    let mut world = Applier {
        scenario,
        disks,
        rack_clocks: env.rack_clocks.clone(),
        node_links: env.node_links.clone(),
        process_dead,
        crashed: BTreeSet::new(),
        just_crashed: Vec::new(),
    };
    let total_ms = duration.as_millis() as u64;
    let cost_model = scenario.has_cost_model();
    let mut next_action = 0;
    let mut next_report = 0u64;
    loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        while let Some(action) = timeline.actions.get(next_action) {
            if action.at_ms > now_ms {
                break;
            }
            let what = world.apply(&mut sim, &action.op);
            let mut h = recorder.lock();
            // A crash dropped the broker's core task, which published what it held.
            for (crashed, power_loss) in world.just_crashed.drain(..) {
                if power_loss {
                    h.power_losses.push((crashed.clone(), now_ms * 1000));
                }
                if let Some(o) = h
                    .broker_observers
                    .iter_mut()
                    .rev()
                    .find(|o| o.0 == crashed && o.2.is_none())
                {
                    o.2 = Some(now_ms * 1000);
                }
            }
            h.applied.push((now_ms, what));
            next_action += 1;
        }
        if now_ms >= next_report {
            if cost_model {
                sample_cpu(scenario, recorder, now_ms);
            }
            if let Some(c) = clients_meter.as_ref().filter(|_| now_ms <= total_ms) {
                let busy = u64::try_from(c.busy().as_nanos()).unwrap_or(u64::MAX);
                recorder.lock().clients_cpu_ns = Some(busy);
            }
            progress(Progress {
                sim_ms: now_ms.min(total_ms),
                total_ms,
            });
            next_report = now_ms + 1000;
        }
        for disk in world.disks.values() {
            disk.tick(now_ms);
        }
        let finished = sim
            .step()
            .map_err(|e| anyhow::anyhow!("simulation failed at {now_ms} ms: {e}"))?;
        if finished {
            break;
        }
    }
    progress(Progress {
        sim_ms: total_ms,
        total_ms,
    });
    if let Some(c) = clients_meter.as_ref() {
        let t = c.tally();
        tracing::info!(
            io_calls = t.io_calls,
            frames_read = t.frames_read,
            frames_written = t.frames_written,
            wakeups = t.wakeups,
            busy_ms = t.busy.as_millis() as u64,
            "the simulated clients' CPU was charged for"
        );
    }
    // Dropping the simulation drops every broker still running, which publishes what it
    // held at the end.
    drop(sim);
    collect_incarnations(recorder);
    Ok(())
}

/// The vhost a `middleware = "rabbitmq"` fleet expects: `/`, RabbitMQ's conventions, and
/// the exchanges MCollective's `rabbitmq` connector documents for its collective (and
/// Roboconf's, with its workload).
fn rabbitmq_vhost(scenario: &Scenario) -> VhostConfig {
    let collective = scenario
        .workload
        .mcollective
        .as_ref()
        .map_or("mcollective", |m| m.collective.as_str());
    let exchange = |suffix: &str, kind| ExchangeConfig {
        name: format!("{collective}_{suffix}"),
        kind,
    };
    let mut exchanges = vec![
        exchange("broadcast", ExchangeType::Topic),
        exchange("directed", ExchangeType::Direct),
    ];
    // Roboconf declares its exchanges itself over AMQP; over STOMP they must exist.
    if let Some(r) = &scenario.workload.roboconf {
        exchanges.extend(
            crate::workload::roboconf::exchanges(r)
                .into_iter()
                .map(|name| ExchangeConfig {
                    name,
                    kind: ExchangeType::Topic,
                }),
        );
    }
    VhostConfig {
        name: "/".to_owned(),
        convention: Convention::RabbitMq,
        exchanges,
        queues: Vec::new(),
    }
}

/// A broker's cost model: its profile, and the cores it shares with the clients if it
/// does (`[clients] share_with_brokers`).
#[derive(Clone)]
struct BrokerCost {
    profile: CostProfile,
    /// The simulation's tick, to which the cost model rounds.
    tick: Duration,
    cores: Option<Arc<dyn Cores>>,
}

/// One incarnation of broker `name`: binds (opening `disk`'s journal), registers its
/// stats and observations, and routes until its host is crashed, or until its store
/// fails (an error).
async fn serve(
    config: BrokerConfig,
    disk: Option<Box<dyn Disk>>,
    cost: Option<BrokerCost>,
    name: &str,
    recorder: &Recorder,
    epoch_ms: u64,
) -> io::Result<()> {
    let mut server = Server::bind_with_storage(Arc::new(TurmoilNet), config, disk).await?;
    if let Some(cost) = cost {
        server = server.with_cost_profile(cost.profile, cost.tick);
        if let Some(cores) = cost.cores {
            server = server.on_shared_cores(cores);
        }
    }
    let started_us = recorder.now_us();
    {
        let mut h = recorder.lock();
        h.broker_stats.push((name.to_owned(), server.stats()));
        h.broker_observers
            .push((name.to_owned(), started_us, None, server.observations()));
    }
    let now_ms = epoch_ms + turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
    recorder
        .lock()
        .applied
        .push((now_ms - epoch_ms, format!("{name} started")));
    server
        .run(Clock::starting_at(now_ms), std::future::pending())
        .await
}

/// The port a replicated store's node listens on for its peers.
pub const REPLICATION_PORT: u16 = 61619;

/// Completes a replicated broker's `[store.replication]`: its name, its listener, its peers
/// (every other broker of the scenario with a replicated store, unless it names them), and
/// a seed for its election timers drawn from the run's.
fn fill_replication(r: &mut ReplicationConfig, name: &str, scenario: &Scenario, seed: u64) {
    if r.node.is_empty() {
        r.node = name.to_owned();
    }
    r.listen = format!("0.0.0.0:{REPLICATION_PORT}");
    if r.peers.is_empty() {
        r.peers = scenario
            .brokers
            .iter()
            .filter(|o| o.name != name && o.master_slave() == MasterSlave::Replicated)
            .map(|o| ReplicaPeer {
                name: o.name.clone(),
                address: format!("{}:{REPLICATION_PORT}", o.name),
            })
            .collect();
    }
    r.seed = Some(seed::derive(seed, &format!("replica/{name}")));
}

/// A replicated broker's host: a follower until its group elects it, then the master
/// until it is deposed (or its store fails); then, like a supervisor, starts it again
/// after [`SUPERVISOR_RESTART`], as a follower. A failing disk is waited out.
async fn replica_host(
    config: BrokerConfig,
    slot: DiskSlot,
    cost: Option<BrokerCost>,
    name: &str,
    recorder: &Recorder,
    epoch_ms: u64,
) -> turmoil::Result {
    loop {
        let started = async {
            let disk = slot.open()?;
            replication::Node::start(config.store.replication.clone(), Arc::new(TurmoilNet), disk)
                .await
        };
        let outcome = match started.await {
            Ok(mut node) => {
                note(recorder, format!("{name} follows"));
                let leader_disk = node.until_elected().await;
                note(recorder, format!("{name} elected leader"));
                let served = serve(
                    config.clone(),
                    Some(Box::new(leader_disk)),
                    cost.clone(),
                    name,
                    recorder,
                    epoch_ms,
                )
                .await;
                drop(node);
                served
            }
            Err(e) => Err(e),
        };
        let Err(e) = outcome else {
            return Ok(());
        };
        supervise(&slot, recorder, name, &e, true).await;
    }
}

/// A broker stopped with `e` (its store failed, or it lost its lock or its leadership):
/// records the stop, frees a shared store's lock (once the storage hears of it), and does
/// what its supervisor would. With `restart`, unless its disk is failing, it returns after
/// [`SUPERVISOR_RESTART`] for the caller to start the broker again; otherwise it never
/// returns, and the host waits for the disk's repair (the world bounces it then).
async fn supervise(slot: &DiskSlot, recorder: &Recorder, name: &str, e: &io::Error, restart: bool) {
    stopped(recorder, name, e);
    slot.process_ended(false);
    if restart && !slot.failing() {
        tokio::time::sleep(SUPERVISOR_RESTART).await;
        return;
    }
    slot.mark_stopped();
    std::future::pending::<()>().await;
}

/// Adds `what` to the run's timeline, at the current simulated time.
fn note(recorder: &Recorder, what: String) {
    let now_ms = recorder.now_us() / 1000;
    recorder.lock().applied.push((now_ms, what));
}

/// Records that broker `name` stopped because its store failed: its incarnation ends now
/// (the checker treats what it held as a crash's), and the timeline says why.
fn stopped(recorder: &Recorder, name: &str, e: &io::Error) {
    let now_us = recorder.now_us();
    let mut h = recorder.lock();
    if let Some(o) = h
        .broker_observers
        .iter_mut()
        .rev()
        .find(|o| o.0 == name && o.2.is_none())
    {
        o.2 = Some(now_us);
    }
    h.applied
        .push((now_us / 1000, format!("{name} stopped: {e}")));
}

/// Records the CPU time each broker has been charged so far (summed over its
/// incarnations, in scenario order), for the report's per-second broker CPU.
fn sample_cpu(scenario: &Scenario, recorder: &Recorder, now_ms: u64) {
    let mut h = recorder.lock();
    let busy: Vec<u64> = scenario
        .brokers
        .iter()
        .map(|b| {
            h.broker_stats
                .iter()
                .filter(|(name, _)| *name == b.name)
                .map(|(_, stats)| stats.get().cpu_busy_ns)
                .sum()
        })
        .collect();
    h.cpu_samples.push((now_ms, busy));
}

/// Turns every broker incarnation's published observations into history evidence.
fn collect_incarnations(recorder: &Recorder) {
    let mut h = recorder.lock();
    let nodes: BTreeMap<String, ClientId> = h
        .clients
        .iter()
        .enumerate()
        .filter(|(_, c)| c.role == Role::Node)
        .map(|(i, c)| (c.name.clone(), ClientId(i as u32)))
        .collect();
    let observers = std::mem::take(&mut h.broker_observers);
    for (broker, started_us, crashed_us, handle) in observers {
        let seen = handle.get().unwrap_or_default();
        let power_loss =
            crashed_us.is_some_and(|at| h.power_losses.contains(&(broker.clone(), at)));
        h.incarnations.push(Incarnation {
            broker,
            started_us,
            crashed_us,
            power_loss,
            held: seen
                .held
                .iter()
                .filter_map(|m| held_ref(m, &nodes))
                .collect(),
            dropped: seen
                .dropped
                .iter()
                .filter_map(|(m, why)| held_ref(m, &nodes).map(|r| (r, *why)))
                .collect(),
        });
    }
}

/// What a broker's message is to the checker: a queue-workload message, an MCollective
/// request (directed to a node when it names one), or nothing it counts.
pub(crate) fn held_ref(m: &Message, nodes: &BTreeMap<String, ClientId>) -> Option<HeldRef> {
    if let Some(id) = m.headers.get("x-sim-id").and_then(|v| v.parse().ok()) {
        return Some(HeldRef::Message(id));
    }
    // Replies carry `node=` and registrations `reg=`; only requests are units.
    if mcollective::field(&m.body, "node").is_some() {
        return None;
    }
    let id = mcollective::field(&m.body, "req")?.parse().ok()?;
    let node = m
        .headers
        .get("mc_identity")
        .and_then(|n| nodes.get(n))
        .copied();
    Some(HeldRef::Request { id, node })
}

/// Resolves host patterns to host names.
fn expand(patterns: &[String], scenario: &Scenario) -> Vec<String> {
    scenario
        .hosts()
        .into_iter()
        .filter(|h| patterns.iter().any(|p| glob(p, h)))
        .collect()
}

/// Applies timeline operations to the turmoil world, remembering what is broken so that
/// `heal-all` can undo everything.
struct Applier<'a> {
    scenario: &'a Scenario,
    /// The simulated stores of brokers that have one.
    disks: BTreeMap<String, DiskSlot>,
    /// The racks' clock jumps, which `clock-skew` sets.
    rack_clocks: workload::RackClocks,
    /// The nodes' cables and processes, which `isolate-nodes` cuts and `crash-nodes`
    /// kills.
    node_links: workload::NodeLinks,
    /// Per broker: whether its host's software starts as a dead process (after a
    /// `crash`) rather than the broker.
    process_dead: BTreeMap<String, Arc<AtomicBool>>,
    crashed: BTreeSet<String>,
    /// Brokers crashed by the last operation applied (`true`: by a power loss).
    just_crashed: Vec<(String, bool)>,
}

impl Applier<'_> {
    fn base_latency(&self, a: &str, b: &str) -> Duration {
        let mut ms = self.scenario.network.latency_ms;
        for l in &self.scenario.network.links {
            let ab = l.a.iter().any(|p| glob(p, a)) && l.b.iter().any(|p| glob(p, b));
            let ba = l.a.iter().any(|p| glob(p, b)) && l.b.iter().any(|p| glob(p, a));
            if ab || ba {
                ms = l.latency_ms;
            }
        }
        Duration::from_millis(ms)
    }

    /// Whether broker `h`'s host starts, at its next bounce, as a dead process.
    fn set_process_dead(&self, h: &str, dead: bool) {
        if let Some(flag) = self.process_dead.get(h) {
            flag.store(dead, Ordering::Relaxed);
        }
    }

    /// Restores the configured latency (and jitter) of the link between `a` and `b`.
    fn restore_latency(&self, sim: &turmoil::Sim<'_>, a: &str, b: &str) {
        let base = self.base_latency(a, b);
        let jitter = Duration::from_millis(self.scenario.network.jitter_ms);
        sim.set_link_latency(a, b, base);
        sim.set_link_max_message_latency(a, b, base + jitter);
    }

    fn pairs(a: &[String], b: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for x in a {
            for y in b {
                if x != y {
                    out.push((x.clone(), y.clone()));
                }
            }
        }
        out
    }

    /// Puts `fault` on broker `b`'s store disk. A repair starts the broker again if its
    /// store's failure had stopped it (and no crash fault holds it down): the operating
    /// system writes out what it had accepted, and the supervisor restarts the process.
    ///
    /// A shared store's fault is every broker's on it, and so is its repair.
    fn set_disk_fault(&mut self, sim: &mut turmoil::Sim<'_>, b: &str, fault: DiskFault) {
        let Some(disk) = self.disks.get(b) else {
            return;
        };
        disk.set_fault(fault);
        if fault != DiskFault::None {
            return;
        }
        for (name, disk) in &self.disks {
            if disk.failing() {
                continue;
            }
            if disk.take_stopped() && !self.crashed.contains(name) {
                if let Err(e) = disk.flush() {
                    tracing::error!("flushing {name}'s simulated disk failed: {e}");
                }
                sim.bounce(name.as_str());
            }
        }
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, op: &Op) -> String {
        match op {
            Op::Crash(hosts) | Op::PowerLoss(hosts) => {
                let power_loss = matches!(op, Op::PowerLoss(_));
                for h in hosts {
                    if self.crashed.insert(h.clone()) {
                        // A process crash leaves the operating system, which writes what
                        // the store wrote; a power loss leaves only what it synced.
                        if let (false, Some(disk)) = (power_loss, self.disks.get(h))
                            && let Err(e) = disk.flush()
                        {
                            tracing::error!("flushing {h}'s simulated disk failed: {e}");
                        }
                        if let Some(disk) = self.disks.get(h) {
                            disk.process_ended(power_loss);
                        }
                        sim.crash(h.as_str());
                        if !power_loss {
                            // A process died, not its machine: the host runs on with
                            // nothing bound, so connects are refused at once. After a
                            // power loss the machine is silent until it restarts.
                            self.set_process_dead(h, true);
                            sim.bounce(h.as_str());
                        }
                        self.just_crashed.push((h.clone(), power_loss));
                    }
                }
                let what = if power_loss { "power-loss" } else { "crash" };
                format!("{what} {}", hosts.join(","))
            }
            Op::Restart(hosts) => {
                for h in hosts {
                    if self.crashed.remove(h) {
                        if let Some(disk) = self.disks.get(h) {
                            disk.machine_up();
                        }
                        self.set_process_dead(h, false);
                        sim.bounce(h.as_str());
                    }
                }
                format!("restart {}", hosts.join(","))
            }
            Op::Partition(a, b) => {
                for (x, y) in Self::pairs(a, b) {
                    sim.partition(x.as_str(), y.as_str());
                }
                format!("partition {} / {}", a.join(","), b.join(","))
            }
            Op::PartitionOneway(a, b) => {
                for (x, y) in Self::pairs(a, b) {
                    sim.partition_oneway(x.as_str(), y.as_str());
                }
                format!("partition-oneway {} -> {}", a.join(","), b.join(","))
            }
            Op::Heal(a, b) => {
                for (x, y) in Self::pairs(a, b) {
                    sim.repair(x.as_str(), y.as_str());
                }
                format!("heal {} / {}", a.join(","), b.join(","))
            }
            Op::Hold(a, b) => {
                for (x, y) in Self::pairs(a, b) {
                    sim.hold(x.as_str(), y.as_str());
                }
                format!("hold {} / {}", a.join(","), b.join(","))
            }
            Op::Release(a, b) => {
                for (x, y) in Self::pairs(a, b) {
                    sim.release(x.as_str(), y.as_str());
                }
                format!("release {} / {}", a.join(","), b.join(","))
            }
            Op::Latency(a, b, ms) => {
                for (x, y) in Self::pairs(a, b) {
                    match ms {
                        Some(ms) => {
                            sim.set_link_latency(x.as_str(), y.as_str(), Duration::from_millis(*ms))
                        }
                        None => self.restore_latency(sim, &x, &y),
                    }
                }
                match ms {
                    Some(ms) => format!("latency {ms}ms {} / {}", a.join(","), b.join(",")),
                    None => format!("latency restored {} / {}", a.join(","), b.join(",")),
                }
            }
            Op::Disk(brokers, fault) => {
                for b in brokers {
                    self.set_disk_fault(sim, b, *fault);
                }
                match fault {
                    DiskFault::None => format!("disk repaired {}", brokers.join(",")),
                    DiskFault::Error => format!("disk-error {}", brokers.join(",")),
                    DiskFault::Full => format!("disk-full {}", brokers.join(",")),
                    DiskFault::SlowMs(ms) => format!("slow-disk +{ms}ms {}", brokers.join(",")),
                }
            }
            Op::StoragePartition(brokers, cut) => {
                for b in brokers {
                    if let Some(disk) = self.disks.get(b) {
                        disk.set_storage_partitioned(*cut);
                    }
                }
                let what = if *cut {
                    "storage-partition"
                } else {
                    "storage healed"
                };
                format!("{what} {}", brokers.join(","))
            }
            Op::ClockSkew(racks, ms) => {
                workload::apply_to_nodes(op, &self.rack_clocks, &self.node_links);
                match ms {
                    Some(ms) => format!("clock-skew {ms:+}ms {}", racks.join(",")),
                    None => format!("clocks set right {}", racks.join(",")),
                }
            }
            Op::IsolateNodes(nodes, from) | Op::ReconnectNodes(nodes, from) => {
                workload::apply_to_nodes(op, &self.rack_clocks, &self.node_links);
                let what = if matches!(op, Op::IsolateNodes(..)) {
                    "isolate"
                } else {
                    "reconnect"
                };
                format!("{what} {}", which_nodes(nodes, from))
            }
            Op::PacketLoss(nodes, from, loss) => {
                workload::apply_to_nodes(op, &self.rack_clocks, &self.node_links);
                format!(
                    "packet loss {} ppm on {}",
                    loss.ppm,
                    which_nodes(nodes, from)
                )
            }
            Op::CrashNodes(nodes) | Op::StartNodes(nodes) => {
                workload::apply_to_nodes(op, &self.rack_clocks, &self.node_links);
                let what = if matches!(op, Op::CrashNodes(_)) {
                    "crash"
                } else {
                    "start"
                };
                format!("{what} {}", which_nodes(nodes, &[]))
            }
            Op::HealAll => {
                workload::apply_to_nodes(op, &self.rack_clocks, &self.node_links);
                let brokers: Vec<String> = self.disks.keys().cloned().collect();
                for b in brokers {
                    self.set_disk_fault(sim, &b, DiskFault::None);
                    if let Some(disk) = self.disks.get(&b) {
                        disk.set_storage_partitioned(false);
                    }
                }
                let hosts = self.scenario.hosts();
                for (x, y) in Self::pairs(&hosts, &hosts) {
                    sim.repair(x.as_str(), y.as_str());
                    sim.release(x.as_str(), y.as_str());
                    self.restore_latency(sim, &x, &y);
                }
                for h in std::mem::take(&mut self.crashed) {
                    if let Some(disk) = self.disks.get(&h) {
                        disk.machine_up();
                    }
                    self.set_process_dead(&h, false);
                    sim.bounce(h.as_str());
                }
                "heal-all".to_owned()
            }
        }
    }
}

/// `N node(s) of RACKS[ from BROKERS]`: the nodes a node fault acts on, for the log of
/// applied actions.
fn which_nodes(nodes: &[(String, Vec<u32>)], from: &[String]) -> String {
    let count: usize = nodes.iter().map(|(_, n)| n.len()).sum();
    let racks: Vec<&str> = nodes.iter().map(|(r, _)| r.as_str()).collect();
    let from = if from.is_empty() {
        String::new()
    } else {
        format!(" from {}", from.join(","))
    };
    format!("{count} node(s) of {}{from}", racks.join(","))
}
