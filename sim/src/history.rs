//! The history of a run: what every simulated client attempted, observed and experienced,
//! timestamped in simulated microseconds since the start.
//!
//! Workloads append to one shared [`History`]; the checker reads it after the run. All
//! simulated hosts run on one thread, so the lock is never contended there; it exists
//! because client tasks are spawned with `tokio::spawn`, which wants `Send`, and because
//! live runs do use several threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use stampede_broker::client::ClientEvent;

/// Index of a client in [`History::clients`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

/// What a client is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An MCollective server (`mcollectived`).
    Node,
    /// An `mco` client.
    McoClient,
    /// A producer of the queue workload.
    Producer,
    /// A consumer of the queue workload.
    Consumer,
}

/// A registered client.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// Identity (node identity, host name plus index, …).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Its server list as broker names, in the order its events index them.
    pub pool: Vec<String>,
}

/// How a SEND ended, from the producer's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Not yet known (the run ended first).
    Pending,
    /// Written without asking for a receipt: the client believes it was sent.
    Written,
    /// Confirmed by a RECEIPT.
    Confirmed,
    /// Refused (ERROR) or could not be sent.
    Failed,
    /// Written, but the connection died before the RECEIPT.
    Indeterminate,
}

/// One message a producer attempted.
#[derive(Clone, Debug)]
pub struct SendRecord {
    /// Unique message id.
    pub id: u64,
    /// Producer.
    pub producer: ClientId,
    /// Per-producer sequence number (for reorder checks).
    pub seq: u64,
    /// When the open-loop schedule wanted it sent (µs).
    pub intended_us: u64,
    /// When the send call returned (µs), if it did.
    pub sent_us: Option<u64>,
    /// For a SEND with a receipt: when its outcome was known (the RECEIPT, the ERROR or
    /// the lost connection), in µs.
    pub settled_us: Option<u64>,
    /// How it ended.
    pub outcome: SendOutcome,
    /// Whether it went to a topic (then every consumer of its workload should get it).
    pub topic: bool,
    /// Index of its queue workload in the scenario.
    pub workload: u16,
}

/// One delivery observed by a consumer.
#[derive(Clone, Debug)]
pub struct DeliveryRecord {
    /// Message id.
    pub id: u64,
    /// Consumer.
    pub consumer: ClientId,
    /// When (µs).
    pub at_us: u64,
    /// Whether the broker marked it redelivered.
    pub redelivered: bool,
}

/// Kinds of MCollective requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Broadcast to an agent topic (discovery).
    Discovery,
    /// Directed to named nodes through `/queue/<collective>.nodes`.
    Directed,
}

/// One `mco` request.
#[derive(Clone, Debug)]
pub struct McoRequest {
    /// Request number (unique in the run).
    pub id: u64,
    /// The client that sent it.
    pub client: ClientId,
    /// Requests sent at the same scheduled instant by all clients share a round.
    pub round: u64,
    /// Broadcast or directed.
    pub kind: RequestKind,
    /// Scheduled send time (µs).
    pub intended_us: u64,
    /// When the SEND was written (µs), if it was (for a directed request: if any of its
    /// SENDs was).
    pub sent_us: Option<u64>,
    /// Nodes expected to answer (node client ids).
    pub expected: Vec<ClientId>,
    /// Directed requests: targets whose SEND could not be written (they do not count as
    /// acknowledged). Empty for a broadcast, whose one SEND is `sent_us`.
    pub unwritten: Vec<ClientId>,
    /// Replies are counted until this time (µs).
    pub window_end_us: u64,
}

/// A request delivered to a node, or a reply delivered to a client.
#[derive(Clone, Copy, Debug)]
pub struct McoObservation {
    /// Request number.
    pub request: u64,
    /// The node.
    pub node: ClientId,
    /// When (µs).
    pub at_us: u64,
}

/// A delivery of a message that came over network bridges (it carried a broker path).
#[derive(Clone, Debug)]
pub struct BridgedDelivery {
    /// When (µs).
    pub at_us: u64,
    /// The client it was delivered to.
    pub client: ClientId,
    /// The broker that delivered it (the client's current server), if known.
    pub broker: Option<String>,
    /// Its `stampede-broker-path` header: the brokers it passed through before.
    pub path: String,
}

/// A message a broker held or dropped, reduced to what the checker matches it by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HeldRef {
    /// A queue-workload message (its `x-sim-id`).
    Message(u64),
    /// An MCollective request (its body's `req=`), with the node it was directed to when
    /// it went to the nodes queue.
    Request {
        /// Request number.
        id: u64,
        /// The target of a directed request.
        node: Option<ClientId>,
    },
}

/// Why a broker dropped a message on purpose (the broker's own record).
pub use stampede_broker::core::DropReason;

/// One broker incarnation (a restart starts another): when it ran, and the evidence it
/// left for the checker.
#[derive(Clone, Debug)]
pub struct Incarnation {
    /// Broker name.
    pub broker: String,
    /// When it started (µs).
    pub started_us: u64,
    /// When it was crashed (µs); `None` if it ran to the end of the run.
    pub crashed_us: Option<u64>,
    /// Whether that crash was a power loss (its store lost what it had not synced).
    pub power_loss: bool,
    /// What it held when it crashed (or at the end of the run).
    pub held: Vec<HeldRef>,
    /// What it dropped on purpose, and why.
    pub dropped: Vec<(HeldRef, DropReason)>,
}

/// Everything recorded during a run.
#[derive(Debug, Default)]
pub struct History {
    /// Registered clients.
    pub clients: Vec<ClientInfo>,
    /// Client connection events.
    pub events: Vec<(u64, ClientId, ClientEvent)>,
    /// Clients whose process was killed (`crash-nodes`), with the time (µs): their
    /// connection ended then, and their client's later events were not recorded.
    pub crashes: Vec<(u64, ClientId)>,
    /// Messages attempted by queue-workload producers.
    pub sends: Vec<SendRecord>,
    /// Deliveries observed by queue-workload consumers.
    pub deliveries: Vec<DeliveryRecord>,
    /// `mco` requests.
    pub requests: Vec<McoRequest>,
    /// Requests as nodes received them.
    pub request_deliveries: Vec<McoObservation>,
    /// Replies as clients received them.
    pub replies: Vec<McoObservation>,
    /// Deliveries (requests, replies, queue messages) that crossed network bridges.
    pub bridged: Vec<BridgedDelivery>,
    /// Every broker incarnation's statistics handle (a restart adds one), by broker name.
    pub broker_stats: Vec<(String, stampede_broker::server::StatsHandle)>,
    /// With a cost model: at each whole simulated second (ms), the CPU time (ns) each
    /// broker had been charged so far, in scenario order.
    pub cpu_samples: Vec<(u64, Vec<u64>)>,
    /// With a `[clients]` cost profile: the CPU time (ns) the clients had been charged by
    /// the last whole simulated second of the scenario.
    pub clients_cpu_ns: Option<u64>,
    /// Every broker incarnation's observations handle, with its start (µs) and, once
    /// crashed, the crash time (µs); the world turns them into `incarnations` (with
    /// `power_losses`).
    pub broker_observers: Vec<(
        String,
        u64,
        Option<u64>,
        stampede_broker::server::ObservationsHandle,
    )>,
    /// Every broker incarnation with what it held and dropped (simulated runs only).
    pub incarnations: Vec<Incarnation>,
    /// Crashes that were power losses: (broker, crash time µs).
    pub power_losses: Vec<(String, u64)>,
    /// Consumers of each queue workload (by index in the scenario).
    pub consumers_by_workload: BTreeMap<u16, Vec<ClientId>>,
    /// Faults applied, with simulated time (ms) and a description, in order.
    pub applied: Vec<(u64, String)>,
    /// Live runs: messages consumed that another run had sent (see `Env::run_tag`).
    pub stale: u64,
    /// What Roboconf's DM and agents observed.
    pub roboconf: RoboconfLog,
}

/// A Roboconf agent: its client, where it sits in the deployment, when it first starts.
#[derive(Clone, Copy, Debug)]
pub struct RoboconfAgent {
    /// Its client.
    pub id: ClientId,
    /// Its application's index.
    pub app: u32,
    /// Its component's tier (it imports from the tier before).
    pub tier: u32,
    /// When its process first starts (µs).
    pub start_us: u64,
}

/// What Roboconf's clients observed, for the checker.
#[derive(Debug, Default)]
pub struct RoboconfLog {
    /// Every agent.
    pub agents: Vec<RoboconfAgent>,
    /// Models agents received: (agent, µs).
    pub models: Vec<(ClientId, u64)>,
    /// Imports agents received: (importer, exporter, µs).
    pub imports: Vec<(ClientId, ClientId, u64)>,
    /// Heartbeats the DM received: (agent, µs).
    pub heartbeats: Vec<(ClientId, u64)>,
    /// When the DM had subscribed (µs); its heartbeat checks count from then.
    pub dm_started_us: Option<u64>,
    /// Clients that switched to a new messaging configuration: (client, µs).
    pub reconfigured: Vec<(ClientId, u64)>,
}

/// Where a run's time comes from.
#[derive(Clone, Copy, Debug)]
pub enum Timebase {
    /// turmoil's simulated time since the start of the simulation.
    Simulated,
    /// Real time (through `tokio::time`) since this instant: live load runs.
    Live(tokio::time::Instant),
}

impl Timebase {
    /// Microseconds since the start of the run.
    pub fn now_us(self) -> u64 {
        match self {
            Timebase::Simulated => turmoil::sim_elapsed().map_or(0, |d| d.as_micros() as u64),
            Timebase::Live(origin) => origin.elapsed().as_micros() as u64,
        }
    }

    /// Sleeps until `at` after the start of the run.
    pub async fn sleep_until(self, at: std::time::Duration) {
        let now = std::time::Duration::from_micros(self.now_us());
        if at > now {
            tokio::time::sleep(at - now).await;
        }
    }
}

/// Shared handle on the run's history, with the run's timebase.
#[derive(Clone, Debug)]
pub struct Recorder(Arc<Mutex<History>>, Timebase);

impl Default for Recorder {
    fn default() -> Self {
        Recorder::simulated()
    }
}

impl Recorder {
    /// A recorder for a simulated run.
    pub fn simulated() -> Recorder {
        Recorder(Arc::default(), Timebase::Simulated)
    }

    /// A recorder for a live run starting now (call inside a tokio runtime).
    pub fn live() -> Recorder {
        Recorder(Arc::default(), Timebase::Live(tokio::time::Instant::now()))
    }

    /// The run's timebase.
    pub fn timebase(&self) -> Timebase {
        self.1
    }

    /// Microseconds since the start of the run.
    pub fn now_us(&self) -> u64 {
        self.1.now_us()
    }

    /// Locks the history. Poisoning (a panicked workload) still yields the data.
    pub fn lock(&self) -> MutexGuard<'_, History> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a client and returns its id.
    pub fn register(&self, name: String, role: Role, pool: Vec<String>) -> ClientId {
        let mut h = self.lock();
        h.clients.push(ClientInfo { name, role, pool });
        ClientId(h.clients.len() as u32 - 1)
    }

    /// Records a client event.
    pub fn event(&self, client: ClientId, event: ClientEvent) {
        let now = self.now_us();
        self.lock().events.push((now, client, event));
    }

    /// Records that `client`'s process was killed now (its connection ends with it).
    pub fn crashed(&self, client: ClientId) {
        let now = self.now_us();
        self.lock().crashes.push((now, client));
    }

    /// Records the broker path of a delivery to `client`, if it has one; `server` is
    /// the client's current server (an index into its pool).
    pub fn bridged(&self, client: ClientId, server: Option<usize>, path: Option<&str>) {
        let Some(path) = path else {
            return;
        };
        let at_us = self.now_us();
        let mut h = self.lock();
        let broker = server.and_then(|s| {
            h.clients
                .get(client.0 as usize)
                .and_then(|c| c.pool.get(s))
                .cloned()
        });
        h.bridged.push(BridgedDelivery {
            at_us,
            client,
            broker,
            path: path.to_owned(),
        });
    }

    /// Takes the history out (after the run).
    pub fn take(&self) -> History {
        std::mem::take(&mut *self.lock())
    }
}
