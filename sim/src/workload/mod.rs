//! Workloads: the simulated clients that generate traffic and record what they observe.
//!
//! - [`mcollective`]: racks of `mcollectived` nodes and `mco` clients;
//! - [`queue`]: producers and consumers in stomp-benchmark's terms;
//! - [`roboconf`]: Roboconf's Deployment Manager and agents (the racks' nodes).
//!
//! Every simulated client is the project's real failover client (`stampede_broker::client`)
//! over [`crate::net::TurmoilNet`], with its own TCP connection, server list and reconnect
//! policy. Its connection events go to the history as they happen. Live runs
//! (`stampede load`, [`crate::live`]) run the same code over real TCP; the [`Dialect`] in the
//! [`Env`] holds what differs between target brokers.

pub mod cpu;
mod held;
pub mod link;
pub mod mcollective;
pub mod queue;
pub mod roboconf;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use stampede_broker::client::{
    BackoffMultiplier, ClientConfig, Credentials, PolicyKind, ReconnectConfig, ServerAddr,
    ServerList,
};

use stampede_broker::core::interbroker::headers::BROKER_PATH_HEADER;
use stampede_broker::net::SharedNet;

use crate::dialect::{Conn, Dialect, Inbound, Inbox};
use crate::fault::Op;
use crate::history::{ClientId, Recorder};
use crate::net::TurmoilNet;
use crate::scenario::{Middleware, Policy, REDIS_PORT, ReconnectSpec, Scenario};
use link::{Link, Loss};

/// Where the workloads run: the network their clients use and where each broker is.
#[derive(Clone)]
pub struct Env {
    /// The network (`TurmoilNet` in the simulator, `TokioNet` in live runs).
    pub net: SharedNet,
    /// Broker name → (host, port) to connect to.
    pub brokers: BTreeMap<String, (String, u16)>,
    /// Live runs: the scenario's broker names, as texts inside the scenario still name
    /// them (Roboconf's messaging files), → the target server's name in `brokers`.
    pub broker_aliases: BTreeMap<String, String>,
    /// How clients talk to the brokers (destination conventions, wire protocol).
    pub dialect: Dialect,
    /// Live runs: a tag put on every queue-workload message (`x-sim-run`); consumers
    /// ignore messages with another tag (left in a durable queue by an earlier run) and
    /// count them in [`crate::history::History::stale`]. `None` in the simulator.
    pub run_tag: Option<String>,
    /// Login and passcode for every client that has none of its own (live runs).
    pub credentials: Option<Credentials>,
    /// Heart-beat read grace (× the negotiated interval) instead of MCollective's 1.5.
    /// Live runs use more: ActiveMQ writes its heart-beats up to two intervals apart.
    pub heartbeat_grace_factor: Option<f64>,
    /// How far each rack's node clocks have jumped (`clock-skew` faults).
    pub rack_clocks: RackClocks,
    /// Every node's network cable and process (`isolate-nodes` and `crash-nodes`
    /// faults).
    pub node_links: NodeLinks,
}

/// Applies the part of `op` that acts on the nodes themselves: a `clock-skew` moves their
/// clocks, an `isolate-nodes` cuts or connects their cables, a `crash-nodes` kills or
/// starts their processes, a `heal-all` sets every clock right, connects every cable and
/// starts every process. Anything else is left to whoever drives the brokers
/// and the network. The simulator's step loop and a live run both call it.
pub fn apply_to_nodes(op: &Op, clocks: &RackClocks, links: &NodeLinks) {
    match op {
        Op::ClockSkew(racks, ms) => {
            for r in racks {
                clocks.set(r, ms.unwrap_or(0));
            }
        }
        Op::IsolateNodes(nodes, from) => links.set(nodes, from, true),
        Op::ReconnectNodes(nodes, from) => links.set(nodes, from, false),
        Op::PacketLoss(nodes, from, loss) => links.set_loss(nodes, from, *loss),
        Op::CrashNodes(nodes) => links.set_dead(nodes, true),
        Op::StartNodes(nodes) => links.set_dead(nodes, false),
        Op::HealAll => {
            clocks.reset_all();
            links.connect_all();
        }
        _ => {}
    }
}

/// Per rack, one [`Link`] per node, in node order: `isolate-nodes` faults cut and connect
/// them, and each node's client connects through its own.
#[derive(Clone, Debug, Default)]
pub struct NodeLinks(Arc<BTreeMap<String, Vec<Arc<Link>>>>);

impl NodeLinks {
    /// A link for every node of `scenario`'s racks, and for each `mco` client (as a rack
    /// of one, under its name), all connected.
    pub fn for_racks(scenario: &Scenario) -> NodeLinks {
        let brokers: Vec<String> = scenario.brokers.iter().map(|b| b.name.clone()).collect();
        let racks = scenario.racks.iter().map(|r| (r.name.clone(), r.nodes));
        let clients = scenario.mco_client_names().into_iter().map(|c| (c, 1));
        NodeLinks(Arc::new(
            racks
                .chain(clients)
                .map(|(name, nodes)| {
                    let links = (0..nodes).map(|_| Arc::new(Link::new(&brokers))).collect();
                    (name, links)
                })
                .collect(),
        ))
    }

    /// Cuts (`cut`) or connects the links of these nodes (rack, indices): their cables,
    /// or (`from` not empty) only their paths to those brokers.
    pub fn set(&self, nodes: &[(String, Vec<u32>)], from: &[String], cut: bool) {
        self.each(nodes, |l| if cut { l.cut(from) } else { l.connect(from) });
    }

    /// Makes these nodes' cables (or, `from` not empty, their paths to those brokers)
    /// lose segments, or (`loss.ppm` 0) stop losing them.
    pub fn set_loss(&self, nodes: &[(String, Vec<u32>)], from: &[String], loss: Loss) {
        self.each(nodes, |l| l.set_loss(from, loss));
    }

    /// Kills (`dead`) or starts the processes of these nodes (rack, indices).
    pub fn set_dead(&self, nodes: &[(String, Vec<u32>)], dead: bool) {
        self.each(nodes, |l| if dead { l.kill() } else { l.start() });
    }

    fn each(&self, nodes: &[(String, Vec<u32>)], f: impl Fn(&Link)) {
        for (rack, indices) in nodes {
            let Some(links) = self.0.get(rack) else {
                continue;
            };
            for i in indices {
                if let Some(l) = links.get(*i as usize) {
                    f(l);
                }
            }
        }
    }

    /// Connects every link and starts every dead process.
    pub fn connect_all(&self) {
        for l in self.0.values().flatten() {
            l.connect(&[]);
            l.clear_loss();
            l.start();
        }
    }

    /// Node `index` of rack `rack`'s link (a fresh one if the scenario has no such node).
    fn link(&self, rack: &str, index: usize) -> Arc<Link> {
        self.0
            .get(rack)
            .and_then(|l| l.get(index))
            .cloned()
            .unwrap_or_default()
    }
}

/// Per rack, how far its nodes' clocks have jumped from their configured skew, in
/// milliseconds: the world's `clock-skew` faults set it between steps, and the nodes
/// read it when they judge a request's age.
#[derive(Clone, Debug, Default)]
pub struct RackClocks(Arc<BTreeMap<String, Arc<AtomicI64>>>);

impl RackClocks {
    /// Every rack of `scenario`, with its clocks right.
    pub fn for_racks(scenario: &Scenario) -> RackClocks {
        RackClocks(Arc::new(
            scenario
                .racks
                .iter()
                .map(|r| (r.name.clone(), Arc::new(AtomicI64::new(0))))
                .collect(),
        ))
    }

    /// Moves rack `rack`'s clocks `ms` from their configured skew (0: set right).
    pub fn set(&self, rack: &str, ms: i64) {
        if let Some(c) = self.0.get(rack) {
            c.store(ms, Ordering::Relaxed);
        }
    }

    /// Sets every rack's clocks right.
    pub fn reset_all(&self) {
        for c in self.0.values() {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Rack `rack`'s jump, for its nodes to read.
    fn cell(&self, rack: &str) -> Arc<AtomicI64> {
        self.0.get(rack).cloned().unwrap_or_default()
    }
}

impl Env {
    /// The simulated world: brokers are turmoil hosts named after themselves.
    /// The scenario's `middleware` chooses the dialect (and, for Redis, the brokers'
    /// Redis port); `cpu` is the clients' cores ([`cpu::ClientCpu::for_scenario`]).
    pub fn simulated(scenario: &Scenario, cpu: Option<Arc<cpu::ClientCpu>>) -> Env {
        let dialect = match scenario.middleware {
            Middleware::Activemq => Dialect::ActiveMq,
            Middleware::Rabbitmq => Dialect::RabbitMq,
            Middleware::Redis => Dialect::Redis,
        };
        let port = |b: &crate::scenario::BrokerSpec| match scenario.middleware {
            Middleware::Redis => REDIS_PORT,
            Middleware::Activemq | Middleware::Rabbitmq => b.port,
        };
        let net: SharedNet = Arc::new(TurmoilNet);
        // Every client's connection spends the clients' CPU, if the scenario gives one.
        let net = match cpu {
            Some(cpu) => cpu::CpuNet::shared(net, cpu),
            None => net,
        };
        Env {
            net,
            brokers: scenario
                .brokers
                .iter()
                .map(|b| (b.name.clone(), (b.name.clone(), port(b))))
                .collect(),
            broker_aliases: BTreeMap::new(),
            dialect,
            run_tag: None,
            credentials: None,
            heartbeat_grace_factor: None,
            rack_clocks: RackClocks::for_racks(scenario),
            node_links: NodeLinks::for_racks(scenario),
        }
    }

    /// The name in [`Env::brokers`] of the broker a text of the scenario calls `name`,
    /// and whether it was renamed (a live target's server).
    pub fn broker_named<'a>(&'a self, name: &'a str) -> (&'a str, bool) {
        match self.broker_aliases.get(name) {
            Some(n) => (n.as_str(), true),
            None => (name, false),
        }
    }
}

/// One workload host: a name (a turmoil host in the simulator) and what it runs. The
/// future ends when the scenario's duration has passed.
pub struct Host {
    /// Host name.
    pub name: String,
    /// What runs on it.
    pub run: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Host {
    fn new(name: impl Into<String>, run: impl Future<Output = ()> + Send + 'static) -> Host {
        Host {
            name: name.into(),
            run: Box::pin(run),
        }
    }
}

/// Builds every workload host of `scenario`.
pub fn build_all(
    scenario: &Scenario,
    seed: u64,
    recorder: &Recorder,
    duration: Duration,
    env: &Env,
) -> anyhow::Result<Vec<Host>> {
    let mut hosts = Vec::new();
    match (&scenario.workload.mcollective, &scenario.workload.roboconf) {
        (_, Some(r)) => roboconf::build(scenario, r, seed, recorder, duration, env, &mut hosts)?,
        (Some(m), None) => {
            mcollective::build(scenario, m, seed, recorder, duration, env, &mut hosts)?
        }
        // Racks without a workload still connect their nodes.
        (None, None) => mcollective::build(
            scenario,
            &Default::default(),
            seed,
            recorder,
            duration,
            env,
            &mut hosts,
        )?,
    }
    for (index, q) in scenario.workload.queues.iter().enumerate() {
        let workload =
            u16::try_from(index).map_err(|_| anyhow::anyhow!("too many queue workloads"))?;
        queue::build(workload, q, seed, recorder, duration, env, &mut hosts)?;
    }
    Ok(hosts)
}

/// A server list in pool order.
fn server_list(env: &Env, pool: &[String]) -> anyhow::Result<ServerList> {
    let servers = pool
        .iter()
        .map(|b| {
            let (host, port) = env
                .brokers
                .get(b)
                .ok_or_else(|| anyhow::anyhow!("no address for broker '{b}'"))?;
            Ok(ServerAddr::new(host.clone(), *port))
        })
        .collect::<anyhow::Result<Vec<ServerAddr>>>()?;
    ServerList::new(servers).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The reconnect settings of `policy` with the scenario's overrides.
fn reconnect(policy: Policy, spec: &ReconnectSpec) -> (PolicyKind, ReconnectConfig) {
    let kind = match policy {
        Policy::StompGem => PolicyKind::StompGem,
        Policy::Activemq => PolicyKind::ActiveMq,
        Policy::Jittered => PolicyKind::Jittered,
    };
    let mut c = ReconnectConfig::defaults_for(kind);
    if let Some(ms) = spec.initial_delay_ms {
        c.initial_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = spec.max_delay_ms {
        c.max_delay = Duration::from_millis(ms);
    }
    if let Some(m) = spec.multiplier.and_then(BackoffMultiplier::new) {
        c.multiplier = m;
    }
    if let Some(r) = spec.randomize {
        c.randomize = r;
    }
    if let Some(ms) = spec.connect_timeout_ms {
        c.connect_timeout = Some(Duration::from_millis(ms));
    }
    (kind, c)
}

/// What one simulated client's [`ClientConfig`] is made from, besides the [`Env`].
struct ClientSpec<'a> {
    /// The brokers it may connect to, by scenario name, in order.
    pool: &'a [String],
    /// Its reconnect policy.
    policy: Policy,
    /// The scenario's overrides of that policy's settings.
    reconnect: &'a ReconnectSpec,
    /// MCollective's heart-beat interval in seconds; 0: STOMP 1.0 without heart-beats.
    heartbeat_s: u64,
    /// With heart-beats: whether a connection silent past the grace is dropped.
    heartbeat_read_timeout: bool,
    /// The seed of its reconnect jitter.
    seed: u64,
}

/// A client configuration for one simulated client.
fn client_config(env: &Env, spec: ClientSpec<'_>) -> anyhow::Result<ClientConfig> {
    let ClientSpec {
        pool,
        policy,
        reconnect: reconnect_spec,
        heartbeat_s,
        heartbeat_read_timeout,
        seed,
    } = spec;
    let (kind, reconnect) = reconnect(policy, reconnect_spec);
    let mut config = ClientConfig::new(server_list(env, pool)?, kind);
    config.reconnect = reconnect;
    config.seed = seed;
    config.host = Some(env.dialect.vhost().to_owned());
    if heartbeat_s > 0 {
        // MCollective's heart-beat header, STOMP 1.1.
        config.heart_beat_ms = stampede_broker::client::mcollective::heart_beat_header(
            Duration::from_secs(heartbeat_s),
        );
        config.accept_version = Some("1.1,1.0".to_owned());
        config.heartbeat_read_timeout = heartbeat_read_timeout;
        config.heartbeat_grace_factor = env.heartbeat_grace_factor.unwrap_or(1.5);
    } else {
        // MCollective's default: STOMP 1.0 (`accept-version:1.0`), no heart-beats.
        config.heart_beat_ms = (0, 0);
        config.accept_version = Some("1.0".to_owned());
        config.heartbeat_read_timeout = false;
    }
    // Small buffers: thousands of these run in one simulation.
    config.messages_buffered_max = 16;
    config.events_buffered_max = 64;
    config.commands_queued_max = 16;
    config.pending_sends_max = 64;
    config.credentials = env.credentials.clone();
    Ok(config)
}

/// Records the broker path of `message`, delivered to `client` (recorded as `id`), if it
/// crossed network bridges.
fn record_path(recorder: &Recorder, id: ClientId, client: &Conn, message: &Inbound) {
    recorder.bridged(
        id,
        client.connected_server(),
        message.header(BROKER_PATH_HEADER),
    );
}

/// Starts a client through the dialect and forwards its connection events to the history.
fn start_client(
    dialect: Dialect,
    net: &SharedNet,
    config: ClientConfig,
    recorder: &Recorder,
    id: ClientId,
) -> (Conn, Inbox) {
    dialect.start(net, config, recorder, id)
}
