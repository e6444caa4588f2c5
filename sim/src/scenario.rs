//! Scenario files: what to simulate, for how long, with which faults, and what must hold.
//!
//! A scenario is strict TOML: unknown keys are errors, and every error names the file, the
//! line and the key (through the broker's `parse_toml`). See `scenarios/*.toml` for
//! commented examples.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stampede_broker::config::{ConfigError, InvalidSetting, KeyPath, parse_toml};
use stampede_broker::connectors::{ConnectorConfig, DiscoveryConfig, Peers, validate_connectors};
use stampede_broker::core::CoreConfig;
use stampede_broker::security::SecurityConfig;
use stampede_broker::server::cost::CostProfile;
use stampede_broker::store::{MasterSlave, StoreConfig};

/// Epoch used when a scenario names none: 2026-11-17T06:36:53Z, the time of the captured
/// MCollective frames. Fixed, so that every `expires` header is reproducible.
pub const DEFAULT_EPOCH_MS: u64 = 1_795_437_413_000;

/// A whole scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports and file names.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Default seed (`--seed` overrides it).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated duration in seconds.
    pub duration_s: f64,
    /// Simulation tick in milliseconds (timers and delivery are quantized to it, and cost
    /// models round latency to it). Not below 1: tokio's timers have millisecond
    /// resolution, so under a finer turmoil tick each host's clock would run ahead of the
    /// simulation's.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Simulated wall-clock time at the start, in epoch milliseconds.
    #[serde(default = "default_epoch_ms")]
    pub epoch_ms: u64,
    /// Latency and links.
    #[serde(default)]
    pub network: NetworkSpec,
    /// The simulated disks of brokers with a store.
    #[serde(default, skip_serializing_if = "DiskSpec::is_default")]
    pub disk: DiskSpec,
    /// What the simulated fleet talks to (live runs take it from `--target` instead).
    #[serde(default, skip_serializing_if = "Middleware::is_default")]
    pub middleware: Middleware,
    /// The brokers.
    pub brokers: Vec<BrokerSpec>,
    /// Hosts of client nodes (MCollective servers), each with many nodes.
    #[serde(default)]
    pub racks: Vec<RackSpec>,
    /// The CPU the simulated clients spend (absent: none, as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<ClientsSpec>,
    /// Traffic.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// Faults at fixed times.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Faults drawn from the seed.
    #[serde(default)]
    pub nemesis: Option<NemesisSpec>,
    /// What must hold at the end; a failed expectation fails the run.
    #[serde(default)]
    pub expectations: Expectations,
}

/// The middleware of a simulated fleet: which of MCollective's connectors its clients
/// follow, and what every simulated stampede-broker serves for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Middleware {
    /// STOMP with ActiveMQ's destination names (MCollective's `activemq` connector).
    #[default]
    Activemq,
    /// STOMP with rabbitmq_stomp's conventions (MCollective's `rabbitmq` connector): a
    /// broker without `[[brokers.core.vhosts]]` gets a RabbitMQ-convention vhost `/` with
    /// the collective's `<c>_broadcast` (topic) and `<c>_directed` (direct) exchanges.
    Rabbitmq,
    /// Redis pub/sub (MCollective's `redis` connector): every broker also listens for
    /// RESP on port 6379, and clients speak it; queue workloads must use `/topic/` and
    /// `ack = "auto"`.
    Redis,
}

impl Middleware {
    fn is_default(&self) -> bool {
        *self == Middleware::Activemq
    }
}

/// The port simulated brokers accept Redis pub/sub on (`middleware = "redis"`).
pub const REDIS_PORT: u16 = 6379;

fn default_seed() -> u64 {
    1
}
fn default_tick_ms() -> u64 {
    1
}
fn default_epoch_ms() -> u64 {
    DEFAULT_EPOCH_MS
}

/// `[disk]`: how the simulated disks of brokers with a store behave.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpec {
    /// On a power loss, each write not yet synced survives as a random number of its
    /// first blocks of this size (turmoil's torn writes), so the journal's tail can be cut
    /// short, or zero-filled with later writes present. 0: unsynced writes vanish whole.
    pub torn_write_block_bytes: u64,
    /// Shared storage (`master_slave = "shared-store"`): how long the master's lock (an
    /// NFSv4 lease) outlives the last renewal its machine could send, in milliseconds: after
    /// a `storage-partition` or a power loss of the master, the slave can take the lock
    /// this long after the master lost touch. NFSv4 servers default to 90 s.
    pub lease_ms: u64,
    /// Shared storage: a broker's calls under a lock epoch that is no longer the lock's fail
    /// with EIO (an NFSv4 server refuses a lapsed lease's state). `false` models storage
    /// that does not: an old master back from a partition writes beside the new one.
    pub shared_fencing: bool,
}

impl DiskSpec {
    fn is_default(&self) -> bool {
        *self == DiskSpec::default()
    }
}

impl Default for DiskSpec {
    fn default() -> Self {
        // A disk sector: writes are atomic within one, no more.
        DiskSpec {
            torn_write_block_bytes: 512,
            lease_ms: 90_000,
            shared_fencing: true,
        }
    }
}

/// `[network]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// One-way latency between any two hosts, in milliseconds.
    pub latency_ms: u64,
    /// Extra random latency per message, up to this many milliseconds (turmoil draws it
    /// from an exponential distribution with its seeded generator).
    pub jitter_ms: u64,
    /// Per-link latencies that override `latency_ms`.
    pub links: Vec<LinkSpec>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            latency_ms: 1,
            jitter_ms: 1,
            links: Vec::new(),
        }
    }
}

/// `[[network.links]]`: latency between two groups of hosts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Host names or `*` patterns on one side.
    pub a: Vec<String>,
    /// Host names or `*` patterns on the other side.
    pub b: Vec<String>,
    /// One-way latency in milliseconds.
    pub latency_ms: u64,
}

/// `[[brokers]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSpec {
    /// Host name, also the broker name (`core.broker_name`).
    pub name: String,
    /// STOMP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Broker core settings (same keys as `[core]` in a broker configuration file).
    #[serde(default)]
    pub core: CoreConfig,
    /// Users and authorization (same keys as `[security]`).
    #[serde(default)]
    pub security: SecurityConfig,
    /// Network connectors to other brokers (same keys as `[[connectors]]`); URIs name
    /// brokers by their host name, e.g. `static:(tcp://broker-2:61613)`.
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
    /// Announcing this broker for `multicast://` connectors (same keys as `[discovery]`).
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// A message store on the broker's simulated disk (same keys as `[store]`; `dir` is a
    /// path on the simulated host, default `/var/lib/stampede/store`). Absent: no store,
    /// persistent messages live in memory only. Brokers with `master_slave =
    /// "shared-store"` and the same `dir` share one store outside their hosts (see
    /// `crate::disk::SharedStorage`): a master/slave pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreConfig>,
    /// A CPU cost profile file (`stampede calibrate` writes them), relative to the
    /// scenario file's directory, e.g. `profiles/stampede-broker.toml`. With a profile
    /// the broker's core spends simulated CPU time on its work (see
    /// `stampede_broker::server::cost`); without one (and without `cost`) it is
    /// infinitely fast, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A cost profile written inline (`[brokers.cost]`, the keys of a profile file);
    /// not together with `profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostProfile>,
    /// The cost profile in force: `cost`, or the file `profile` names, read when the
    /// scenario was parsed.
    #[serde(skip)]
    pub cost_profile: Option<CostProfile>,
}

impl BrokerSpec {
    /// How its store is shared with other brokers (`none` without a store).
    pub fn master_slave(&self) -> MasterSlave {
        self.store
            .as_ref()
            .map_or(MasterSlave::None, |s| s.master_slave)
    }
}

/// The cost profile a `profile` file (relative to `dir`) or an inline cost table
/// (`[<table>.cost]`) gives, if either; an error names the key to blame (`profile` or
/// `cost`) and what is wrong.
fn resolve_profile(
    file: Option<&String>,
    inline: Option<&CostProfile>,
    dir: &Path,
    table: &str,
) -> Result<Option<CostProfile>, (&'static str, String)> {
    match (file, inline) {
        (Some(_), Some(_)) => Err((
            "profile",
            format!("give either `profile` or `[{table}.cost]`, not both"),
        )),
        (None, inline) => Ok(inline.cloned()),
        (Some(file), None) => {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(("profile", format!("no profile file at {}", path.display())));
            }
            CostProfile::load(&path)
                .map(Some)
                .map_err(|e| ("profile", format!("bad profile: {e}")))
        }
    }
}

fn default_port() -> u16 {
    61613
}

/// `[clients]`: the machine every simulated client runs on, as a live run's clients all
/// run in one `stampede load` process (see `crate::workload::cpu`). Each connection
/// opened or closed and each chunk read or written costs the profile's nanoseconds on
/// one of `cores` shared simulated cores.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientsSpec {
    /// A cost profile file (`stampede calibrate --clients-out` writes them), relative to
    /// the scenario file's directory. Its keys count work as the broker sees it: what
    /// clients write is `frames_in`/`bytes_in`, what they read `frames_out`/`bytes_out`
    /// and `deliveries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The costs written inline (`[clients.cost]`); not together with `profile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostProfile>,
    /// Cores the clients share (a live generator's worker threads).
    #[serde(default = "default_client_cores")]
    pub cores: u32,
    /// In what order the cores serve work that waits for them: `fifo` (arrival order, the
    /// default) or `random` (a seeded random pick among the waiting work, as a live
    /// generator's work-stealing scheduler serves its ready tasks; see
    /// `crate::workload::cpu`).
    #[serde(default)]
    pub order: ServiceOrder,
    /// Whether the brokers' priced work runs on these cores too: one machine for the load
    /// generator and the broker, as a live run on one host has it (each broker's core task
    /// still does one thing at a time; it takes a core when one is free). Needs `order =
    /// "fifo"` and brokers with a cost profile to mean anything.
    #[serde(default)]
    pub share_with_brokers: bool,
    /// The profile in force, read when the scenario was parsed.
    #[serde(skip)]
    pub cost_profile: Option<CostProfile>,
}

fn default_client_cores() -> u32 {
    1
}

/// `[clients] order`: how the clients' shared cores pick the next piece of work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceOrder {
    /// First come, first served.
    #[default]
    Fifo,
    /// Work that arrives while the cores are busy takes a random place, drawn from the
    /// scenario seed, among the work still waiting.
    Random,
}

/// Reconnect policies a client can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The Ruby stomp gem as MCollective 2.12 configures it.
    StompGem,
    /// ActiveMQ's failover transport.
    Activemq,
    /// Exponential backoff with full jitter.
    Jittered,
}

/// Reconnect settings; anything left out takes the policy's default.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectSpec {
    /// First delay, in milliseconds.
    pub initial_delay_ms: Option<u64>,
    /// Largest delay, in milliseconds.
    pub max_delay_ms: Option<u64>,
    /// Backoff multiplier.
    pub multiplier: Option<f64>,
    /// Shuffle the server list.
    pub randomize: Option<bool>,
    /// Per-attempt connect timeout, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
}

impl ReconnectSpec {
    /// A multiplier of at least 1 (finite), and a largest delay no shorter than the first.
    /// `at` is the `reconnect` table's path, for the error.
    fn validate(&self, at: KeyPath) -> Result<(), InvalidSetting> {
        if let Some(m) = self.multiplier
            && stampede_broker::client::policy::BackoffMultiplier::new(m).is_none()
        {
            return bad(
                at.key("multiplier"),
                format!("must be a finite number of at least 1.0, not {m}"),
            );
        }
        if let (Some(first), Some(max)) = (self.initial_delay_ms, self.max_delay_ms)
            && max < first
        {
            return bad(
                at.key("max_delay_ms"),
                format!("must be at least initial_delay_ms ({first}), not {max}"),
            );
        }
        Ok(())
    }
}

/// `[[racks]]`: one simulated host carrying many client nodes, each with its own TCP
/// connection, server list and reconnect policy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RackSpec {
    /// Host name.
    pub name: String,
    /// Number of nodes (each one `mcollectived`).
    pub nodes: u32,
    /// Node identities are `<prefix><n>`; default `<rack name>-node-`.
    #[serde(default)]
    pub identity_prefix: Option<String>,
    /// The failover pool, by broker name, in pool order.
    pub servers: Vec<String>,
    /// Start node `i` at pool entry `i mod len` instead of the first, spreading nodes
    /// over the brokers.
    #[serde(default)]
    pub rotate_pool: bool,
    /// Reconnect policy.
    #[serde(default = "default_policy")]
    pub policy: Policy,
    /// Overrides of the policy's defaults.
    #[serde(default)]
    pub reconnect: ReconnectSpec,
    /// STOMP heart-beat interval in seconds; 0 (the MCollective default) speaks STOMP 1.0
    /// without heart-beats. MCollective forces at least 30.
    #[serde(default)]
    pub heartbeat_s: u64,
    /// Whether nodes notice a silent broker from missing heart-beats (`mcollectived`
    /// never does).
    #[serde(default)]
    pub heartbeat_read_timeout: bool,
    /// Nodes start at random times (drawn from the seed) within this many seconds.
    #[serde(default = "default_start_spread_s")]
    pub start_spread_s: f64,
    /// Per-node clock skew, drawn uniformly from this range of milliseconds.
    #[serde(default)]
    pub clock_skew_ms: Option<[i64; 2]>,
}

fn default_policy() -> Policy {
    Policy::StompGem
}
fn default_start_spread_s() -> f64 {
    5.0
}

/// `[workload]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// The MCollective fleet behaviour of every rack's nodes plus `mco` clients.
    pub mcollective: Option<McoSpec>,
    /// Producers and consumers.
    pub queues: Vec<QueueSpec>,
    /// Roboconf's Deployment Manager and agents (the racks' nodes are its agents).
    pub roboconf: Option<RoboconfSpec>,
}

/// `[workload.roboconf]`: Roboconf's Deployment Manager (DM) and agents, talking as
/// Roboconf's RabbitMQ messaging does, over RabbitMQ's STOMP conventions: the DM's topic
/// exchange `<domain>.roboconf.dm` (routing key: the application), one topic exchange per
/// application `<domain>.<app>.agents` (keys `machine.<instance path>`,
/// `those.that.export.<component>`, `those.that.import.<component>`). Every rack node is
/// an agent (one scoped instance); node `n` (counted over all racks) belongs to
/// application `app-<n mod applications>` and runs component `tier<k>`, `k` = (`n` div
/// `applications`) mod `tiers`; `tier<k>` imports what `tier<k-1>` exports.
///
/// An agent connects, subscribes, and sends a heartbeat at once and then every
/// `heartbeat_interval_s`; while it has no model its heartbeats ask for one, and the DM
/// answers with the model (`MsgCmdSetScopedInstance`). With its model an agent asks the
/// exporters it imports from for their exports (`MsgCmdRequestImport`) and announces its
/// own (`MsgCmdAddImport`), as every exporter does when asked. Import traffic grows with
/// the square of an application's size, as Roboconf's does: fleets are many small
/// applications.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoboconfSpec {
    /// Roboconf's domain, the first part of every exchange and queue name.
    pub domain: String,
    /// Host name of the DM.
    pub dm: String,
    /// Applications the agents are spread over.
    pub applications: u32,
    /// Components per application, each importing from the one before.
    pub tiers: u32,
    /// Seconds between an agent's heartbeats (Roboconf's `HEARTBEAT_PERIOD`, 60 s); the
    /// DM checks as often.
    pub heartbeat_interval_s: f64,
    /// Body bytes of a model (`MsgCmdSetScopedInstance`, a serialized instance graph).
    pub model_bytes: usize,
    /// Body bytes of a heartbeat or an import message.
    pub notification_bytes: usize,
    /// The text of `net.roboconf.messaging.rabbitmq.cfg` every client starts with: its
    /// `net.roboconf.messaging.rabbitmq.server.ip` (or `message-server-ip`) names a broker
    /// of the scenario (`http://broker-1`, `broker-1:61613`); empty or absent means
    /// localhost, which a simulation does not have.
    pub messaging: String,
    /// New texts of that file, each taken by every client at run time.
    pub reconfigure: Vec<RoboconfReconfigure>,
}

impl Default for RoboconfSpec {
    fn default() -> Self {
        RoboconfSpec {
            domain: "default".to_owned(),
            dm: "dm".to_owned(),
            applications: 1,
            tiers: 2,
            heartbeat_interval_s: 60.0,
            model_bytes: 8192,
            notification_bytes: 400,
            messaging: String::new(),
            reconfigure: Vec::new(),
        }
    }
}

/// `[[workload.roboconf.reconfigure]]`: a new messaging configuration, written to every
/// client's file at `at_s`; each client notices it at a time drawn from
/// `[at_s, at_s + spread_s]` and, if it changes its server or credentials, connects to the
/// new server, subscribes there, and only then closes its old connection.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoboconfReconfigure {
    /// When the file changes.
    pub at_s: f64,
    /// Clients notice it within this many seconds.
    #[serde(default)]
    pub spread_s: f64,
    /// The file's new text.
    pub messaging: String,
}

/// `[workload.mcollective]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct McoSpec {
    /// Collective name (destinations `/topic/<c>.<agent>.agent`, `/queue/<c>.nodes`, …).
    pub collective: String,
    /// Agents every node loads (one topic subscription each).
    pub agents: Vec<String>,
    /// `mco` clients; each runs on its own host.
    pub clients: Vec<McoClientSpec>,
    /// Seconds between discovery broadcasts (`mco ping`-style); 0 = none.
    pub discovery_interval_s: f64,
    /// How long a client collects replies to one request.
    pub discovery_timeout_s: f64,
    /// When the first request goes out.
    pub start_s: f64,
    /// Stop sending requests at this time (default: the end).
    pub stop_s: Option<f64>,
    /// Request TTL in seconds (broker expiry is TTL + 10 s, as MCollective sets it).
    pub ttl_s: u64,
    /// Seconds between directed requests (`/queue/<c>.nodes` with `mc_identity`); 0 = none.
    pub directed_interval_s: f64,
    /// Nodes addressed by one directed request.
    pub directed_targets: u32,
    /// Seconds between registration messages from every node; 0 = none.
    pub registration_interval_s: f64,
    /// Request body bytes.
    pub request_bytes: usize,
    /// Reply body bytes.
    pub reply_bytes: usize,
    /// A node takes this long (uniform range, ms) to answer.
    pub reply_delay_ms: [u64; 2],
}

impl Default for McoSpec {
    fn default() -> Self {
        McoSpec {
            collective: "mcollective".to_owned(),
            agents: vec!["discovery".to_owned(), "rpcutil".to_owned()],
            clients: Vec::new(),
            discovery_interval_s: 10.0,
            discovery_timeout_s: 2.0,
            start_s: 10.0,
            stop_s: None,
            ttl_s: 60,
            directed_interval_s: 0.0,
            directed_targets: 10,
            registration_interval_s: 0.0,
            request_bytes: 350,
            reply_bytes: 200,
            reply_delay_ms: [1, 20],
        }
    }
}

/// `[[workload.mcollective.clients]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McoClientSpec {
    /// Host name (also its MCollective identity).
    pub name: String,
    /// Its failover pool, by broker name.
    pub servers: Vec<String>,
    /// Reconnect policy.
    #[serde(default = "default_policy")]
    pub policy: Policy,
}

/// Ack modes for consumers: the broker's STOMP type, written in scenarios as on the wire
/// (`auto`, `client`, `client-individual`).
pub use stampede_broker::proto::AckMode;

/// `[[workload.queues]]`: producers and consumers in stomp-benchmark's terms.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// Host name for this workload's clients.
    pub name: String,
    /// `/queue/…` or `/topic/…`.
    pub destination: String,
    /// Producer connections.
    pub producers: u32,
    /// Consumer connections.
    pub consumers: u32,
    /// Messages per second per producer, on an open-loop schedule.
    pub rate_per_s: f64,
    /// Body bytes.
    #[serde(default = "default_message_bytes")]
    pub message_bytes: usize,
    /// Send with `persistent:true`.
    #[serde(default)]
    pub persistent: bool,
    /// Ask for a RECEIPT on every SEND (then "acknowledged" means receipted).
    #[serde(default)]
    pub receipts: bool,
    /// Consumer ack mode.
    #[serde(default = "default_ack")]
    pub ack: AckMode,
    /// Producers' failover pool.
    pub producer_servers: Vec<String>,
    /// Consumers' failover pool.
    pub consumer_servers: Vec<String>,
    /// Reconnect policy of all its clients.
    #[serde(default = "default_policy_activemq")]
    pub policy: Policy,
    /// Overrides of the policy's defaults.
    #[serde(default)]
    pub reconnect: ReconnectSpec,
    /// When producers start.
    #[serde(default = "default_queue_start_s")]
    pub start_s: f64,
    /// When consumers subscribe (default: at once). Later, messages wait in the queue
    /// meanwhile (through a broker crash, say).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consumer_start_s: f64,
    /// When producers stop (default: 10 s before the end, leaving time to drain).
    #[serde(default)]
    pub stop_s: Option<f64>,
    /// STOMP heart-beat interval in seconds (0 = none) for its clients.
    #[serde(default = "default_queue_heartbeat_s")]
    pub heartbeat_s: u64,
}

fn default_message_bytes() -> usize {
    100
}
fn default_ack() -> AckMode {
    AckMode::Auto
}
fn default_policy_activemq() -> Policy {
    Policy::Activemq
}
fn default_queue_start_s() -> f64 {
    2.0
}
fn default_queue_heartbeat_s() -> u64 {
    5
}

/// The largest clock jump a `clock-skew` fault may give, in milliseconds (one year).
pub const SKEW_MS_MAX: u64 = 365 * 24 * 3600 * 1000;

/// Kinds of faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Kill the broker process (peers see their connections close). What it wrote to its
    /// store survives, synced or not: the operating system kept it.
    Crash,
    /// Cut the broker machine's power: like `crash`, and what its store had not synced is
    /// lost too.
    PowerLoss,
    /// Start a crashed broker again.
    Restart,
    /// Cut both directions between groups `a` and `b`.
    Partition,
    /// Cut `a` → `b` only.
    PartitionOneway,
    /// Undo a partition between `a` and `b`.
    Heal,
    /// Hold messages between `a` and `b` (delivered on release).
    Hold,
    /// Deliver held messages.
    Release,
    /// Set latency between `a` and `b`.
    Latency,
    /// The broker's store disk answers every write and sync with EIO (and a restart's
    /// read of the journal too); the broker stops, as ActiveMQ's default IOException
    /// handler stops it. At the end of the window the disk is repaired and a stopped
    /// broker is started again (its supervisor).
    DiskError,
    /// The broker's store disk is full: every write fails with ENOSPC. The broker waits
    /// for space, as ActiveMQ does (its store's `disk_full = "wait"`, the default):
    /// receipts for persistent SENDs wait until the repair at the end of the window, and
    /// nothing is lost. With `disk_full = "stop"` it stops as for a `disk-error`.
    DiskFull,
    /// Every sync of the broker's store takes `latency_ms` longer, for the window.
    SlowDisk,
    /// Brokers on shared storage (`master_slave = "shared-store"`) lose their path to it
    /// for the window, the rest of the network being fine: their store calls fail with
    /// EIO (a soft NFS mount) and their lease on the store's lock is not renewed, so
    /// after `[disk] lease_ms` the slave may take the lock. A master stops at its next
    /// store call or lock check (`lock_keepalive_period_ms`); its supervisor starts it
    /// again at once, and it waits as a slave.
    StoragePartition,
    /// The clocks of racks' nodes (`target`) jump by `skew_ms` (ahead when positive)
    /// for the window, on top of their `clock_skew_ms`: an NTP failure or a VM resumed
    /// from a snapshot. A node drops a request that its own clock says is older than the
    /// request's TTL (MCollective's `Message#validate`), so a jump ahead beyond the TTL
    /// silences the rack's replies while the network is fine.
    ClockSkew,
    /// A share (`fraction`, default all) of racks' nodes (`target`), chosen from the seed,
    /// is cut off from the network for the window: their connections stall for good (as
    /// across a partition: nothing more arrives either way) and their connects fail,
    /// while the rest of the rack is unaffected. A node notices only through heart-beats
    /// and reconnects after the window. One machine's network cable, not the rack's
    /// switch. With `from` brokers, only the nodes' paths to those brokers are cut (a
    /// firewall rule, a broken route): they fail over to the other brokers of their pool.
    IsolateNodes,
    /// A share (`fraction`, default all) of racks' nodes (`target`), chosen from the seed,
    /// crash: each `mcollectived` process dies, so its connection closes at once (the
    /// broker sees it end) and whatever it had taken and not answered goes unanswered.
    /// At the end of the window (`duration_s`; without one, never) each starts again as a
    /// new process, as its supervisor would start it: it connects and subscribes afresh.
    CrashNodes,
    /// A share (`fraction`, default all) of racks' nodes (`target`), chosen from the seed,
    /// lose `loss_percent` of their TCP segments (with `from` brokers: only on their
    /// paths to those brokers) for the window, both ways. TCP recovers every lost
    /// segment, so a loss is a delay: the segment and everything behind it on its
    /// connection arrive one retransmission timeout (`latency_ms`, default 200, Linux's
    /// minimum) later, twice that more for each retransmission lost as well.
    PacketLoss,
    /// `mco` clients (`target`: their names or patterns) crash: the process dies, its
    /// connection closes at once, the requests it was waiting on get no more replies,
    /// and it makes none while down. At the end of the window (`duration_s`; without
    /// one, never) it starts again as a new process (a new pid in its reply queues'
    /// names), connects, and makes the requests that fall due from then on.
    CrashClients,
    /// Heal every partition, release every hold, restore latencies, restart every
    /// crashed broker, node and `mco` client, repair every disk, set every clock right,
    /// reconnect every isolated node and end every packet loss.
    HealAll,
}

impl FaultKind {
    /// The name used in scenario files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::PartitionOneway => "partition-oneway",
            FaultKind::Heal => "heal",
            FaultKind::Hold => "hold",
            FaultKind::Release => "release",
            FaultKind::Latency => "latency",
            FaultKind::DiskError => "disk-error",
            FaultKind::DiskFull => "disk-full",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::StoragePartition => "storage-partition",
            FaultKind::ClockSkew => "clock-skew",
            FaultKind::IsolateNodes => "isolate-nodes",
            FaultKind::CrashNodes => "crash-nodes",
            FaultKind::CrashClients => "crash-clients",
            FaultKind::PacketLoss => "packet-loss",
            FaultKind::HealAll => "heal-all",
        }
    }
}

/// `[[faults]]`: one fault at a fixed time, optionally undone after `duration_s`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When, in simulated seconds.
    pub at_s: f64,
    /// What.
    pub kind: FaultKind,
    /// Brokers to crash, cut the power of, or restart.
    #[serde(default)]
    pub target: Vec<String>,
    /// One side (host names or `*` patterns).
    #[serde(default)]
    pub a: Vec<String>,
    /// The other side.
    #[serde(default)]
    pub b: Vec<String>,
    /// For `latency`: one-way milliseconds; for `slow-disk`: added to every sync; for
    /// `packet-loss`: the retransmission timeout (default 200).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// For `clock-skew`: how far the nodes' clocks jump, in milliseconds (negative:
    /// behind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_ms: Option<i64>,
    /// For `isolate-nodes` and `crash-nodes`: the share of each target rack's nodes cut
    /// off or crashed (0 < f <= 1; default 1, the whole rack). At least one node of each
    /// rack is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// For `packet-loss`: the share of segments lost, in percent (0 < x <= 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<f64>,
    /// For `isolate-nodes` and `packet-loss`: act on the nodes' paths to these brokers
    /// only (names or `*` patterns); default: on the whole network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// Undo the fault after this many seconds (restart, heal, release, restore latency).
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Label in reports (default: derived from kind and hosts).
    #[serde(default)]
    pub label: Option<String>,
}

/// `[nemesis]`: faults drawn from the seed between `start_s` and `end_s`, then everything
/// heals and the run continues as a liveness phase.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisSpec {
    /// First fault no earlier than this.
    pub start_s: f64,
    /// Heal everything at this time.
    pub end_s: f64,
    /// Seconds between the end of one fault and the start of the next (uniform range).
    #[serde(default = "default_nemesis_gap")]
    pub gap_s: [f64; 2],
    /// How long each fault lasts (uniform range; the minimum is the fault's stability).
    #[serde(default = "default_nemesis_duration")]
    pub duration_s: [f64; 2],
    /// Relative weights of fault kinds: `crash`, `power_loss`, `partition`,
    /// `partition-oneway`, `hold`, `latency`, `disk_error`.
    pub weights: NemesisWeights,
    /// Brokers that may crash (patterns).
    #[serde(default = "default_broker_pattern")]
    pub crash_targets: Vec<String>,
    /// Hosts that may be partitioned from the brokers (patterns).
    #[serde(default = "default_all_pattern")]
    pub partition_hosts: Vec<String>,
    /// Latency range for `latency` faults, in ms.
    #[serde(default = "default_nemesis_latency")]
    pub latency_ms: [u64; 2],
}

fn default_nemesis_gap() -> [f64; 2] {
    [5.0, 20.0]
}
fn default_nemesis_duration() -> [f64; 2] {
    [5.0, 20.0]
}
fn default_broker_pattern() -> Vec<String> {
    vec!["broker-*".to_owned()]
}
fn default_all_pattern() -> Vec<String> {
    vec!["*".to_owned()]
}
fn default_nemesis_latency() -> [u64; 2] {
    [50, 500]
}

/// Relative weights of nemesis fault kinds.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NemesisWeights {
    /// Broker crash then restart.
    pub crash: f64,
    /// Two-way partition then heal.
    pub partition: f64,
    /// One-way partition then heal.
    pub partition_oneway: f64,
    /// Hold then release.
    pub hold: f64,
    /// Latency then restore.
    pub latency: f64,
    /// Broker power loss then restart (drawn like a crash, from `crash_targets`).
    #[serde(skip_serializing_if = "is_zero")]
    pub power_loss: f64,
    /// A failing store disk (EIO) then repaired, on one of `crash_targets` that has a
    /// store (none has one: nothing is drawn).
    #[serde(skip_serializing_if = "is_zero")]
    pub disk_error: f64,
    /// A `storage-partition` then healed, on one of `crash_targets` on shared storage.
    #[serde(skip_serializing_if = "is_zero")]
    pub storage_partition: f64,
    /// A partition between random halves of `crash_targets` (each side one broker or
    /// more), then healed: a replicated group's leader cut off from its followers, say.
    #[serde(skip_serializing_if = "is_zero")]
    pub broker_partition: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// `[expectations]`: every key present becomes one named check.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expectations {
    /// Most acknowledged messages that may be lost.
    pub lost_max: Option<u64>,
    /// Most duplicated deliveries.
    pub duplicated_max: Option<u64>,
    /// Most deliveries of messages never sent.
    pub unexpected_max: Option<u64>,
    /// Most per-producer reorders.
    pub reorders_max: Option<u64>,
    /// Fewest delivered messages.
    pub delivered_min: Option<u64>,
    /// Largest p99 delivery latency, in milliseconds.
    pub latency_p99_ms_max: Option<f64>,
    /// Fewest failovers (client reconnections) observed.
    pub failover_count_min: Option<u64>,
    /// Largest p99 failover time, in milliseconds.
    pub failover_p99_ms_max: Option<f64>,
    /// Smallest share of expected MCollective replies received, over all requests.
    pub mco_reply_ratio_min: Option<f64>,
    /// Smallest reply share of requests sent outside fault windows (healthy periods).
    pub mco_healthy_reply_ratio_min: Option<f64>,
    /// Smallest reply share of the last request (after healing: liveness).
    pub mco_final_reply_ratio_min: Option<f64>,
    /// Fewest losses that must be attributed to fault windows (a fault must show).
    pub fault_losses_min: Option<u64>,
    /// Most lost messages without a cause (see the checker); 0 when absent, so that an
    /// unexplained loss fails every scenario. `unattributed_lost_max` is a deprecated
    /// alias.
    #[serde(alias = "unattributed_lost_max")]
    pub unexplained_lost_max: Option<u64>,
    /// Most clients still without a connection at the end of the run after losing one;
    /// 0 when absent.
    pub failovers_unfinished_max: Option<u64>,
    /// Whether an expectation whose measure has no data (a reply ratio over no request, a
    /// percentile of no failover) passes. Off: empty is not success.
    pub allow_no_data: bool,
    /// Most deliveries of messages that visited a broker twice (crossed a network link
    /// twice), seen through their broker path.
    pub loop_messages_max: Option<u64>,
    /// Most deliveries of messages that came back to a broker they had been on.
    pub returned_messages_max: Option<u64>,
    /// Smallest reply share of requests sent well inside a fault window (from 5 s after
    /// it started, their replies due before it ends).
    pub mco_fault_reply_ratio_min: Option<f64>,
    /// Largest reply share of those requests (e.g. exactly the share a partition leaves).
    pub mco_fault_reply_ratio_max: Option<f64>,
    /// Smallest share of Roboconf agents ready by the end (model and every import).
    pub roboconf_ready_ratio_min: Option<f64>,
    /// Most agents the Roboconf DM would have marked PROBLEM (missed heartbeats).
    pub roboconf_dm_problems_max: Option<u64>,
}

impl Scenario {
    /// The simulation's tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// Reads and validates a scenario file (and the cost profiles it names).
    pub fn load(path: &Path) -> Result<Scenario, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            key: String::new(),
            message: e.to_string(),
        })?;
        Scenario::parse(&text, &file)
    }

    /// Parses and validates scenario text; `file` names it in errors, and cost profile
    /// paths are relative to its directory.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ConfigError> {
        let dir = Path::new(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut profiles = Vec::new();
        let mut clients_profile = None;
        let mut scenario: Scenario = parse_toml(text, file, |s: &Scenario| {
            s.validate()?;
            let located = |at: KeyPath| {
                move |(key, message): (&str, String)| InvalidSetting {
                    path: at.key(key),
                    message,
                }
            };
            for (i, b) in s.brokers.iter().enumerate() {
                let at = KeyPath::root().key("brokers").index(i);
                profiles.push(
                    resolve_profile(b.profile.as_ref(), b.cost.as_ref(), &dir, "brokers")
                        .map_err(located(at))?,
                );
            }
            if let Some(c) = &s.clients {
                clients_profile =
                    resolve_profile(c.profile.as_ref(), c.cost.as_ref(), &dir, "clients")
                        .map_err(located(KeyPath::root().key("clients")))?;
            }
            Ok(())
        })?;
        for (b, p) in scenario.brokers.iter_mut().zip(profiles) {
            b.cost_profile = p;
        }
        if let Some(c) = &mut scenario.clients {
            c.cost_profile = clients_profile;
        }
        Ok(scenario)
    }

    /// Whether any broker spends simulated CPU time (has a cost profile).
    pub fn has_cost_model(&self) -> bool {
        self.brokers.iter().any(|b| b.cost_profile.is_some())
    }

    /// The names of the `mco` clients of the MCollective workload, in order.
    pub fn mco_client_names(&self) -> Vec<String> {
        self.workload
            .mcollective
            .iter()
            .flat_map(|m| m.clients.iter().map(|c| c.name.clone()))
            .collect()
    }

    /// Every host name the scenario creates, in creation order.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.brokers.iter().map(|b| b.name.clone()).collect();
        hosts.extend(self.racks.iter().map(|r| r.name.clone()));
        if let Some(m) = &self.workload.mcollective {
            hosts.extend(m.clients.iter().map(|c| c.name.clone()));
        }
        hosts.extend(self.workload.queues.iter().map(|q| q.name.clone()));
        if let Some(r) = &self.workload.roboconf {
            hosts.push(r.dm.clone());
        }
        hosts
    }

    /// Total MCollective nodes.
    pub fn node_count(&self) -> u64 {
        self.racks.iter().map(|r| u64::from(r.nodes)).sum()
    }

    /// Checks what serde accepts but a simulation cannot use. Sections are checked in
    /// file order and the first error is returned.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.validate_run()?;
        let hosts = self.validate_hosts()?;
        self.validate_brokers()?;
        self.validate_clients()?;
        self.validate_racks()?;
        self.validate_mcollective()?;
        self.validate_roboconf()?;
        self.validate_queues()?;
        self.validate_faults(&hosts)?;
        self.validate_nemesis(&hosts)?;
        self.validate_links(&hosts)?;
        self.validate_expectations()
    }

    /// The top-level keys: name, duration, tick, and at least one broker.
    fn validate_run(&self) -> Result<(), InvalidSetting> {
        let root = KeyPath::root();
        if self.name.trim().is_empty() || self.name.contains(['/', ' ']) {
            return bad(
                root.key("name"),
                "must be non-empty, without spaces or '/'".into(),
            );
        }
        if !(self.duration_s > 0.0 && self.duration_s <= 86_400.0) {
            return bad(root.key("duration_s"), "must be in (0, 86400]".into());
        }
        if self.tick_ms == 0 || self.tick_ms > 100 {
            return bad(root.key("tick_ms"), "must be between 1 and 100".into());
        }
        if self.disk.lease_ms == 0 || self.disk.lease_ms > 3_600_000 {
            return bad(
                root.key("disk").key("lease_ms"),
                "must be between 1 and 3600000 (an hour)".into(),
            );
        }
        if self.brokers.is_empty() {
            return bad(
                root.key("brokers"),
                "at least one [[brokers]] is needed".into(),
            );
        }
        Ok(())
    }

    /// Every host name (brokers, racks, mco clients, queue workloads) is valid and used
    /// once. Returns them, in [`Scenario::hosts`] order.
    fn validate_hosts(&self) -> Result<Vec<String>, InvalidSetting> {
        let root = KeyPath::root();
        let mut names = BTreeSet::new();
        let hosts = self.hosts();
        let mut positions: Vec<KeyPath> = Vec::new();
        for (i, _) in self.brokers.iter().enumerate() {
            positions.push(root.key("brokers").index(i).key("name"));
        }
        for (i, _) in self.racks.iter().enumerate() {
            positions.push(root.key("racks").index(i).key("name"));
        }
        if let Some(m) = &self.workload.mcollective {
            for (i, _) in m.clients.iter().enumerate() {
                positions.push(
                    root.key("workload")
                        .key("mcollective")
                        .key("clients")
                        .index(i)
                        .key("name"),
                );
            }
        }
        for (i, _) in self.workload.queues.iter().enumerate() {
            positions.push(root.key("workload").key("queues").index(i).key("name"));
        }
        if self.workload.roboconf.is_some() {
            positions.push(root.key("workload").key("roboconf").key("dm"));
        }
        for (host, path) in hosts.iter().zip(positions) {
            if !valid_host(host) {
                return bad(
                    path,
                    format!("'{host}' is not a valid host name (letters, digits, '-', '_')"),
                );
            }
            if !names.insert(host.clone()) {
                return bad(path, format!("host name '{host}' is used twice"));
            }
        }
        Ok(hosts)
    }

    /// `[clients]`: at least one core, and a profile (a file, read when the scenario is
    /// parsed, or inline costs that are numbers of nanoseconds).
    fn validate_clients(&self) -> Result<(), InvalidSetting> {
        let Some(c) = &self.clients else {
            return Ok(());
        };
        let at = KeyPath::root().key("clients");
        if c.cores == 0 {
            return Err(InvalidSetting::new(at.key("cores"), "must be at least 1"));
        }
        if c.share_with_brokers && c.order != ServiceOrder::Fifo {
            return Err(InvalidSetting::new(
                at.key("share_with_brokers"),
                "brokers share the clients' cores only in order = \"fifo\"",
            ));
        }
        match &c.cost {
            Some(cost) => cost.validate().map_err(|e| InvalidSetting {
                path: join(&at.key("cost"), &e.path),
                message: e.message,
            }),
            None if c.profile.is_none() => Err(InvalidSetting::new(
                at.key("profile"),
                "give a `profile` file or `[clients.cost]`",
            )),
            None => Ok(()),
        }
    }

    /// `[[brokers]]`: their connectors and discovery, and static connector URIs that name
    /// another broker of this scenario.
    fn validate_brokers(&self) -> Result<(), InvalidSetting> {
        let root = KeyPath::root();
        for (i, b) in self.brokers.iter().enumerate() {
            let at = root.key("brokers").index(i);
            validate_connectors(&b.connectors).map_err(|e| InvalidSetting {
                path: join(&at, &e.path),
                message: e.message,
            })?;
            b.discovery.validate().map_err(|e| InvalidSetting {
                path: join(&at.key("discovery"), &e.path),
                message: e.message,
            })?;
            if let Some(cost) = &b.cost {
                cost.validate().map_err(|e| InvalidSetting {
                    path: join(&at.key("cost"), &e.path),
                    message: e.message,
                })?;
            }
            if let Some(store) = &b.store {
                store.validate().map_err(|e| InvalidSetting {
                    path: join(&at.key("store"), &e.path),
                    message: e.message,
                })?;
                if let Some(dir) = &store.dir
                    && !dir.starts_with('/')
                {
                    return bad(
                        at.key("store").key("dir"),
                        format!("must be an absolute path on the simulated host, not '{dir}'"),
                    );
                }
            }
            for (j, c) in b.connectors.iter().enumerate() {
                let Ok(Peers::Static { servers, .. }) = c.peers() else {
                    continue;
                };
                for s in servers {
                    let known = self
                        .brokers
                        .iter()
                        .any(|x| x.name == s.host && x.port == s.port);
                    if !known || s.host == b.name {
                        return bad(
                            at.key("connectors").index(j).key("uri"),
                            format!(
                                "`{s}` is not another broker of this scenario (use `tcp://<broker name>:<port>`)"
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// A client's server pool at `path`: not empty, and only brokers of this scenario.
    fn check_pool(&self, path: KeyPath, pool: &[String]) -> Result<(), InvalidSetting> {
        if pool.is_empty() {
            return Err(InvalidSetting::new(path, "needs at least one broker"));
        }
        for s in pool {
            if !self.brokers.iter().any(|b| b.name == *s) {
                return Err(InvalidSetting::new(
                    path,
                    format!("'{s}' is not a broker of this scenario"),
                ));
            }
        }
        Ok(())
    }

    /// `[[racks]]`: pools, node counts, heart-beats, start spread and clock skew.
    fn validate_racks(&self) -> Result<(), InvalidSetting> {
        let root = KeyPath::root();
        for (i, r) in self.racks.iter().enumerate() {
            let p = root.key("racks").index(i);
            self.check_pool(p.key("servers"), &r.servers)?;
            r.reconnect.validate(p.key("reconnect"))?;
            if r.nodes == 0 || r.nodes > 20_000 {
                return bad(p.key("nodes"), "must be between 1 and 20000".into());
            }
            if r.heartbeat_s != 0 && r.heartbeat_s < 1 {
                return bad(p.key("heartbeat_s"), "must be 0 (off) or at least 1".into());
            }
            if r.start_spread_s.is_nan() || r.start_spread_s < 0.0 {
                return bad(p.key("start_spread_s"), "must be >= 0".into());
            }
            if let Some([lo, hi]) = r.clock_skew_ms
                && lo > hi
            {
                return bad(p.key("clock_skew_ms"), "range must be [low, high]".into());
            }
        }
        Ok(())
    }

    /// `[workload.roboconf]`: RabbitMQ middleware, racks of agents and no MCollective
    /// workload on them, sizes, and messaging texts that parse and name a broker.
    fn validate_roboconf(&self) -> Result<(), InvalidSetting> {
        let root = KeyPath::root();
        let Some(r) = &self.workload.roboconf else {
            return Ok(());
        };
        let p = root.key("workload").key("roboconf");
        if self.middleware != Middleware::Rabbitmq {
            return bad(
                root.key("middleware"),
                "Roboconf talks to RabbitMQ: set middleware = \"rabbitmq\"".into(),
            );
        }
        if self.workload.mcollective.is_some() {
            return bad(
                root.key("workload").key("mcollective"),
                "the racks' nodes are Roboconf agents; a scenario runs one of the two \
                 workloads"
                    .into(),
            );
        }
        if self.racks.is_empty() {
            return bad(
                root.key("racks"),
                "the Roboconf workload needs [[racks]] of agents".into(),
            );
        }
        if r.domain.is_empty() || r.domain.contains(['/', '.']) {
            return bad(
                p.key("domain"),
                "must be non-empty, without '/' or '.'".into(),
            );
        }
        if r.applications == 0 {
            return bad(p.key("applications"), "must be at least 1".into());
        }
        if r.tiers == 0 {
            return bad(p.key("tiers"), "must be at least 1".into());
        }
        if r.heartbeat_interval_s.is_nan() || r.heartbeat_interval_s <= 0.0 {
            return bad(p.key("heartbeat_interval_s"), "must be > 0".into());
        }
        self.check_messaging(p.key("messaging"), &r.messaging)?;
        let mut last = 0.0;
        for (i, c) in r.reconfigure.iter().enumerate() {
            let at = p.key("reconfigure").index(i);
            if !(c.at_s >= last && c.at_s < self.duration_s) {
                return bad(
                    at.key("at_s"),
                    format!(
                        "must be in order and inside the run (0 to {} s)",
                        self.duration_s
                    ),
                );
            }
            if c.spread_s.is_nan() || c.spread_s < 0.0 {
                return bad(at.key("spread_s"), "must be >= 0".into());
            }
            last = c.at_s;
            self.check_messaging(at.key("messaging"), &c.messaging)?;
        }
        Ok(())
    }

    /// A Roboconf messaging text that parses and names a broker of this scenario.
    fn check_messaging(&self, at: KeyPath, text: &str) -> Result<(), InvalidSetting> {
        use stampede_broker::client::roboconf::RoboconfMessaging;
        let m = RoboconfMessaging::parse(text, "the messaging text")
            .map_err(|e| InvalidSetting::new(at.clone(), e.to_string()))?;
        if !self.brokers.iter().any(|b| b.name == m.host) {
            return bad(
                at,
                format!(
                    "server '{}' is not a broker of this scenario ({})",
                    m.host,
                    self.brokers
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        Ok(())
    }

    /// `[workload.mcollective]`: clients, agents, intervals, and racks to answer.
    fn validate_mcollective(&self) -> Result<(), InvalidSetting> {
        let root = KeyPath::root();
        let Some(m) = &self.workload.mcollective else {
            return Ok(());
        };
        let p = root.key("workload").key("mcollective");
        if m.clients.is_empty() {
            return bad(p.key("clients"), "at least one mco client is needed".into());
        }
        for (i, c) in m.clients.iter().enumerate() {
            self.check_pool(p.key("clients").index(i).key("servers"), &c.servers)?;
        }
        if m.agents.is_empty() {
            return bad(p.key("agents"), "nodes need at least one agent".into());
        }
        if !m.agents.iter().any(|a| a == "discovery") && m.discovery_interval_s > 0.0 {
            return bad(
                p.key("agents"),
                "discovery requests need the 'discovery' agent".into(),
            );
        }
        if m.discovery_interval_s < 0.0 || m.directed_interval_s < 0.0 {
            return bad(p.key("discovery_interval_s"), "must be >= 0".into());
        }
        if m.discovery_timeout_s <= 0.0 {
            return bad(p.key("discovery_timeout_s"), "must be > 0".into());
        }
        if self.racks.is_empty() {
            return bad(
                root.key("racks"),
                "the MCollective workload needs [[racks]] of nodes".into(),
            );
        }
        if m.reply_delay_ms[0] > m.reply_delay_ms[1] {
            return bad(p.key("reply_delay_ms"), "range must be [low, high]".into());
        }
        Ok(())
    }

    /// `[[workload.queues]]`: destinations, pools, rates, producers or consumers.
    fn validate_queues(&self) -> Result<(), InvalidSetting> {
        let root = KeyPath::root();
        for (i, q) in self.workload.queues.iter().enumerate() {
            let p = root.key("workload").key("queues").index(i);
            if !(q.destination.starts_with("/queue/") || q.destination.starts_with("/topic/")) {
                return bad(
                    p.key("destination"),
                    "must start with /queue/ or /topic/".into(),
                );
            }
            self.check_pool(p.key("producer_servers"), &q.producer_servers)?;
            self.check_pool(p.key("consumer_servers"), &q.consumer_servers)?;
            q.reconnect.validate(p.key("reconnect"))?;
            if !(q.rate_per_s > 0.0 && q.rate_per_s <= 100_000.0) {
                return bad(p.key("rate_per_s"), "must be in (0, 100000]".into());
            }
            if !(q.consumer_start_s >= 0.0 && q.consumer_start_s <= self.duration_s) {
                return bad(p.key("consumer_start_s"), "must be within the run".into());
            }
            if q.producers == 0 && q.consumers == 0 {
                return bad(p.key("producers"), "needs producers or consumers".into());
            }
            if self.middleware == Middleware::Redis {
                if !q.destination.starts_with("/topic/") {
                    return bad(
                        p.key("destination"),
                        "Redis pub/sub has no queues (middleware = \"redis\"): use /topic/".into(),
                    );
                }
                if q.ack != AckMode::Auto {
                    return bad(
                        p.key("ack"),
                        "Redis pub/sub has no acknowledgements (middleware = \"redis\"): \
                         use \"auto\""
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// `[[faults]]`: times within the run, and targets or groups that match `hosts`.
    fn validate_faults(&self, hosts: &[String]) -> Result<(), InvalidSetting> {
        let root = KeyPath::root();
        for (i, f) in self.faults.iter().enumerate() {
            let p = root.key("faults").index(i);
            if !(f.at_s >= 0.0 && f.at_s <= self.duration_s) {
                return bad(p.key("at_s"), "must be within the run".into());
            }
            match f.kind {
                FaultKind::Crash
                | FaultKind::PowerLoss
                | FaultKind::Restart
                | FaultKind::DiskError
                | FaultKind::DiskFull
                | FaultKind::SlowDisk
                | FaultKind::StoragePartition => {
                    if f.target.is_empty() {
                        return bad(
                            p.key("target"),
                            format!("a {} names the brokers it acts on", f.kind.as_str()),
                        );
                    }
                    // Disk faults act on a broker's store, so they need one; a storage
                    // partition, shared storage.
                    let disk = matches!(
                        f.kind,
                        FaultKind::DiskError | FaultKind::DiskFull | FaultKind::SlowDisk
                    );
                    let shared = f.kind == FaultKind::StoragePartition;
                    for t in &f.target {
                        if !self.brokers.iter().any(|b| {
                            glob(t, &b.name)
                                && (!disk || b.store.is_some())
                                && (!shared || b.master_slave() == MasterSlave::SharedStore)
                        }) {
                            let what = if shared {
                                "broker with master_slave = \"shared-store\""
                            } else if disk {
                                "broker with a [brokers.store]"
                            } else {
                                "broker"
                            };
                            return bad(p.key("target"), format!("'{t}' matches no {what}"));
                        }
                    }
                }
                FaultKind::HealAll => {}
                FaultKind::CrashClients => {
                    let clients = self.mco_client_names();
                    if f.target.is_empty() {
                        return bad(
                            p.key("target"),
                            "crash-clients needs `target`: the mco clients it crashes".into(),
                        );
                    }
                    for t in &f.target {
                        if !clients.iter().any(|c| glob(t, c)) {
                            return bad(p.key("target"), format!("'{t}' matches no mco client"));
                        }
                    }
                }
                FaultKind::IsolateNodes | FaultKind::CrashNodes | FaultKind::PacketLoss => {
                    self.check_rack_targets(&p, f)?;
                    if let Some(x) = f.fraction
                        && !(x > 0.0 && x <= 1.0)
                    {
                        return bad(p.key("fraction"), "must be > 0 and <= 1".into());
                    }
                }
                FaultKind::ClockSkew => {
                    self.check_rack_targets(&p, f)?;
                    match f.skew_ms {
                        None => {
                            return bad(
                                p.key("skew_ms"),
                                "a clock-skew fault needs skew_ms".into(),
                            );
                        }
                        Some(ms) if ms.unsigned_abs() > SKEW_MS_MAX => {
                            return bad(
                                p.key("skew_ms"),
                                format!("must be within ±{SKEW_MS_MAX} (one year)"),
                            );
                        }
                        Some(_) => {}
                    }
                }
                _ => {
                    if f.a.is_empty() || f.b.is_empty() {
                        return bad(
                            p.key("a"),
                            format!("a {} needs groups `a` and `b`", f.kind.as_str()),
                        );
                    }
                    match_any(hosts, p.key("a"), &f.a)?;
                    match_any(hosts, p.key("b"), &f.b)?;
                }
            }
            if matches!(f.kind, FaultKind::Latency | FaultKind::SlowDisk) && f.latency_ms.is_none()
            {
                return bad(
                    p.key("latency_ms"),
                    format!("a {} fault needs latency_ms", f.kind.as_str()),
                );
            }
            if f.fraction.is_some()
                && !matches!(
                    f.kind,
                    FaultKind::IsolateNodes | FaultKind::CrashNodes | FaultKind::PacketLoss
                )
            {
                return bad(
                    p.key("fraction"),
                    format!(
                        "only isolate-nodes, crash-nodes and packet-loss faults take fraction, not a {}",
                        f.kind.as_str()
                    ),
                );
            }
            match (f.kind, f.loss_percent) {
                (FaultKind::PacketLoss, None) => {
                    return bad(
                        p.key("loss_percent"),
                        "a packet-loss fault needs loss_percent".into(),
                    );
                }
                (FaultKind::PacketLoss, Some(x)) if !(x > 0.0 && x <= 100.0) => {
                    return bad(p.key("loss_percent"), "must be > 0 and <= 100".into());
                }
                (FaultKind::PacketLoss, Some(_)) | (_, None) => {}
                (k, Some(_)) => {
                    return bad(
                        p.key("loss_percent"),
                        format!(
                            "only a packet-loss fault takes loss_percent, not a {}",
                            k.as_str()
                        ),
                    );
                }
            }
            if f.kind == FaultKind::PacketLoss && f.latency_ms == Some(0) {
                return bad(
                    p.key("latency_ms"),
                    "a retransmission timeout must be > 0".into(),
                );
            }
            if !f.from.is_empty() {
                if !matches!(f.kind, FaultKind::IsolateNodes | FaultKind::PacketLoss) {
                    return bad(
                        p.key("from"),
                        format!(
                            "only isolate-nodes and packet-loss faults take from, not a {}",
                            f.kind.as_str()
                        ),
                    );
                }
                for b in &f.from {
                    if !self.brokers.iter().any(|x| glob(b, &x.name)) {
                        return bad(p.key("from"), format!("'{b}' matches no broker"));
                    }
                }
            }
            if f.skew_ms.is_some() && f.kind != FaultKind::ClockSkew {
                return bad(
                    p.key("skew_ms"),
                    format!(
                        "only a clock-skew fault takes skew_ms, not a {}",
                        f.kind.as_str()
                    ),
                );
            }
            if let Some(d) = f.duration_s
                && (d.is_nan() || d <= 0.0)
            {
                return bad(p.key("duration_s"), "must be > 0".into());
            }
        }
        Ok(())
    }

    /// A fault on nodes (`clock-skew`, `isolate-nodes`, `crash-nodes`): `target` names racks, and each
    /// pattern matches one.
    fn check_rack_targets(&self, p: &KeyPath, f: &FaultSpec) -> Result<(), InvalidSetting> {
        if f.target.is_empty() {
            return bad(
                p.key("target"),
                format!("{} needs `target`: the racks it acts on", f.kind.as_str()),
            );
        }
        for t in &f.target {
            if !self.racks.iter().any(|r| glob(t, &r.name)) {
                return bad(p.key("target"), format!("'{t}' matches no rack"));
            }
        }
        Ok(())
    }

    /// `[nemesis]`: its window within the run, ranges, weights, and host patterns.
    fn validate_nemesis(&self, hosts: &[String]) -> Result<(), InvalidSetting> {
        let Some(n) = &self.nemesis else {
            return Ok(());
        };
        let p = KeyPath::root().key("nemesis");
        if !(n.start_s >= 0.0 && n.start_s < n.end_s && n.end_s <= self.duration_s) {
            return bad(
                p.key("end_s"),
                "needs 0 <= start_s < end_s <= duration_s".into(),
            );
        }
        for (k, r) in [("gap_s", n.gap_s), ("duration_s", n.duration_s)] {
            if !(r[0] > 0.0 && r[0] <= r[1]) {
                return bad(p.key(k), "range must be [low, high] with low > 0".into());
            }
        }
        let w = &n.weights;
        let weights = [
            w.crash,
            w.power_loss,
            w.partition,
            w.partition_oneway,
            w.hold,
            w.latency,
            w.disk_error,
            w.storage_partition,
            w.broker_partition,
        ];
        if weights.iter().any(|x| *x < 0.0) || weights.iter().sum::<f64>() <= 0.0 {
            return bad(
                p.key("weights"),
                "weights must be >= 0 and not all 0".into(),
            );
        }
        match_any(hosts, p.key("crash_targets"), &n.crash_targets)?;
        match_any(hosts, p.key("partition_hosts"), &n.partition_hosts)
    }

    /// `[[network.links]]`: both groups match hosts.
    fn validate_links(&self, hosts: &[String]) -> Result<(), InvalidSetting> {
        for (i, l) in self.network.links.iter().enumerate() {
            let p = KeyPath::root().key("network").key("links").index(i);
            match_any(hosts, p.key("a"), &l.a)?;
            match_any(hosts, p.key("b"), &l.b)?;
        }
        Ok(())
    }

    /// `[expectations]` that have a range.
    fn validate_expectations(&self) -> Result<(), InvalidSetting> {
        if let Some(r) = self.expectations.mco_reply_ratio_min
            && !(0.0..=1.0).contains(&r)
        {
            return bad(
                KeyPath::root()
                    .key("expectations")
                    .key("mco_reply_ratio_min"),
                "must be between 0 and 1".into(),
            );
        }
        Ok(())
    }
}

/// The error for `path`.
fn bad<T>(path: KeyPath, message: String) -> Result<T, InvalidSetting> {
    Err(InvalidSetting::new(path, message))
}

/// Every pattern of `patterns` (at `path`) matches at least one of `hosts`.
fn match_any(hosts: &[String], path: KeyPath, patterns: &[String]) -> Result<(), InvalidSetting> {
    for pat in patterns {
        if !hosts.iter().any(|h| glob(pat, h)) {
            return Err(InvalidSetting::new(
                path,
                format!("'{pat}' matches no host of this scenario"),
            ));
        }
    }
    Ok(())
}

fn valid_host(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Matches a host name against a pattern where `*` stands for any run of characters.
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// `rest` placed under `base`.
fn join(base: &KeyPath, rest: &KeyPath) -> KeyPath {
    let mut path = base.clone();
    for s in rest.segments() {
        path = match s {
            stampede_broker::config::KeySegment::Key(k) => path.key(k),
            stampede_broker::config::KeySegment::Index(i) => path.index(*i),
        };
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
duration_s = 10
[[brokers]]
name = "broker-1"
[[racks]]
name = "rack-1"
nodes = 3
servers = ["broker-1"]
[workload.mcollective]
clients = [{ name = "mco", servers = ["broker-1"] }]
"#;

    #[test]
    fn minimal_scenario_parses_with_defaults() {
        let s = Scenario::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(s.tick_ms, 1);
        assert_eq!(s.node_count(), 3);
        assert_eq!(s.hosts(), ["broker-1", "rack-1", "mco"]);
        let m = s.workload.mcollective.unwrap();
        assert_eq!(m.agents, ["discovery", "rpcutil"]);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = MINIMAL.replace("nodes = 3", "nodes = 3\nnodez = 4");
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.file, "s.toml");
        assert_eq!(e.line, 9);
        assert!(e.key.contains("racks[0]"), "{e}");
        assert!(e.message.contains("nodez"), "{e}");
        let text = MINIMAL.replace(
            "servers = [\"broker-1\"]\n[workload",
            "servers = [\"broker-9\"]\n[workload",
        );
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.key, "racks[0].servers", "{e}");
        assert_eq!(e.line, 9);
        assert!(e.message.contains("broker-9"));
        let text = MINIMAL.replace("duration_s = 10", "duration_s = \"long\"");
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.key, "duration_s", "{e}");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn reconnect_overrides_are_checked_not_dropped() {
        let text = MINIMAL.replace(
            "servers = [\"broker-1\"]\n[workload",
            "servers = [\"broker-1\"]\nreconnect = { multiplier = 0.5 }\n[workload",
        );
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.key, "racks[0].reconnect.multiplier", "{e}");
        assert_eq!(e.line, 10, "{e}");
        let text = MINIMAL.replace(
            "servers = [\"broker-1\"]\n[workload",
            "servers = [\"broker-1\"]\nreconnect = { initial_delay_ms = 500, max_delay_ms = 100 }\n[workload",
        );
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.key, "racks[0].reconnect.max_delay_ms", "{e}");
    }

    #[test]
    fn duplicate_hosts_and_bad_faults_are_refused() {
        let text = MINIMAL.replace("name = \"rack-1\"", "name = \"broker-1\"");
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert!(e.message.contains("used twice"), "{e}");
        let text =
            format!("{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"crash\"\ntarget = [\"rack-1\"]\n");
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].target", "{e}");
        let text = format!(
            "{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"partition\"\na = [\"nope-*\"]\nb = [\"broker-1\"]\n"
        );
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].a", "{e}");
    }

    #[test]
    fn clock_skew_needs_racks_and_a_bounded_skew() {
        let fault = |target: &str, extra: &str| {
            format!(
                "{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"clock-skew\"\ntarget = [\"{target}\"]\n{extra}"
            )
        };
        let s = Scenario::parse(&fault("rack-*", "skew_ms = -90000"), "s.toml").unwrap();
        assert_eq!(s.faults[0].skew_ms, Some(-90_000));
        let e = Scenario::parse(&fault("broker-1", "skew_ms = 1"), "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].target", "{e}");
        assert!(e.message.contains("matches no rack"), "{e}");
        let e = Scenario::parse(&fault("rack-1", ""), "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].skew_ms", "{e}");
        let e = Scenario::parse(&fault("rack-1", "skew_ms = 9223372036854775807"), "s.toml")
            .unwrap_err();
        assert_eq!(e.key, "faults[0].skew_ms", "{e}");
        assert_eq!(e.line, 17, "{e}");
        let crash = format!(
            "{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"crash\"\ntarget = [\"broker-1\"]\nskew_ms = 5\n"
        );
        let e = Scenario::parse(&crash, "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].skew_ms", "{e}");
    }

    #[test]
    fn node_faults_need_racks_and_a_fraction_in_range() {
        for kind in ["isolate-nodes", "crash-nodes", "packet-loss"] {
            let fault = |target: &str, extra: &str| {
                let loss = if kind == "packet-loss" {
                    "loss_percent = 1\n"
                } else {
                    ""
                };
                format!(
                    "{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"{kind}\"\ntarget = [\"{target}\"]\n{loss}{extra}"
                )
            };
            let s = Scenario::parse(&fault("rack-1", "fraction = 0.5"), "s.toml").unwrap();
            assert_eq!(s.faults[0].fraction, Some(0.5));
            assert_eq!(s.faults[0].kind.as_str(), kind);
            Scenario::parse(&fault("rack-*", ""), "s.toml").unwrap();
            let e = Scenario::parse(&fault("mco", ""), "s.toml").unwrap_err();
            assert_eq!(e.key, "faults[0].target", "{kind}: {e}");
            let e = Scenario::parse(&fault("broker-1", ""), "s.toml").unwrap_err();
            assert_eq!(e.key, "faults[0].target", "{kind}: {e}");
            for bad in ["0", "1.5", "-0.1", "nan"] {
                let e = Scenario::parse(&fault("rack-1", &format!("fraction = {bad}")), "s.toml")
                    .unwrap_err();
                assert_eq!(e.key, "faults[0].fraction", "{kind} {bad}: {e}");
            }
        }
        let latency = format!(
            "{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"latency\"\na = [\"rack-1\"]\nb = [\"broker-1\"]\nlatency_ms = 5\nfraction = 0.5\n"
        );
        let e = Scenario::parse(&latency, "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].fraction", "{e}");
    }

    #[test]
    fn crash_clients_names_mco_clients() {
        let fault = |target: &str| {
            format!(
                "{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"crash-clients\"\ntarget = [{target}]\nduration_s = 5\n"
            )
        };
        let s = Scenario::parse(&fault("\"mco*\""), "s.toml").unwrap();
        assert_eq!(s.faults[0].kind.as_str(), "crash-clients");
        let e = Scenario::parse(&fault("\"rack-1\""), "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].target", "{e}");
        assert!(e.message.contains("matches no mco client"), "{e}");
        let e = Scenario::parse(&fault(""), "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].target", "{e}");
    }

    #[test]
    fn only_isolate_nodes_takes_from_and_it_names_brokers() {
        let fault = |kind: &str, from: &str| {
            format!(
                "{MINIMAL}\n[[faults]]\nat_s = 1\nkind = \"{kind}\"\ntarget = [\"rack-1\"]\nfrom = [\"{from}\"]\n"
            )
        };
        let s = Scenario::parse(&fault("isolate-nodes", "broker-*"), "s.toml").unwrap();
        assert_eq!(s.faults[0].from, ["broker-*"]);
        let e = Scenario::parse(&fault("isolate-nodes", "rack-1"), "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].from", "{e}");
        assert!(e.message.contains("matches no broker"), "{e}");
        let e = Scenario::parse(&fault("crash-nodes", "broker-1"), "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].from", "{e}");
        assert!(
            e.message.contains("only isolate-nodes and packet-loss"),
            "{e}"
        );
    }

    #[test]
    fn disk_faults_need_a_broker_with_a_store_and_slow_disk_a_latency() {
        let fault = |kind: &str, extra: &str| {
            format!("\n[[faults]]\nat_s = 1\nkind = \"{kind}\"\ntarget = [\"broker-1\"]\n{extra}")
        };
        let text = format!("{MINIMAL}{}", fault("disk-error", ""));
        let e = Scenario::parse(&text, "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].target", "{e}");
        assert!(e.message.contains("[brokers.store]"), "{e}");
        let stored = MINIMAL.replace(
            "name = \"broker-1\"\n",
            "name = \"broker-1\"\n[brokers.store]\nsync = \"always\"\n",
        );
        for kind in ["disk-error", "disk-full"] {
            Scenario::parse(&format!("{stored}{}", fault(kind, "")), "s.toml").unwrap();
        }
        let e =
            Scenario::parse(&format!("{stored}{}", fault("slow-disk", "")), "s.toml").unwrap_err();
        assert_eq!(e.key, "faults[0].latency_ms", "{e}");
        Scenario::parse(
            &format!("{stored}{}", fault("slow-disk", "latency_ms = 50")),
            "s.toml",
        )
        .unwrap();
        let e = Scenario::parse(
            &format!("{stored}\n[disk]\ntorn_write_block_bytes = \"big\"\n"),
            "s.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "disk.torn_write_block_bytes", "{e}");
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("broker-*", "broker-12"));
        assert!(glob("*", "anything"));
        assert!(glob("rack-*-a", "rack-1-a"));
        assert!(!glob("rack-*-a", "rack-1-b"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
    }
}
