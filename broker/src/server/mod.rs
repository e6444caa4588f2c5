//! The tokio shell: sockets and timers around one [`Broker`], no protocol decisions.
//!
//! - One *core task* owns the [`Broker`]. It receives `Event`s from every connection
//!   through one bounded inbox, calls the matching `handle_*`, and routes the outputs to
//!   per-connection writer channels. It sleeps until the core's next timer.
//! - Each connection has a *reader task* (bytes → frames with the codec, forwarded to the
//!   inbox; waits when the inbox is full, which pushes back on fast producers) and a
//!   *writer task* (frames → bytes in batches, reporting each batch flushed so the core
//!   can account for room).
//!
//! The core never waits for a connection: it hands frames over with `try_send`, and its
//! own flow control keeps each writer channel within `limits.outbound_frames_max` (plus a
//! few control frames). A writer that is full anyway, or that cannot write for
//! `server.write_timeout_ms`, is closed.

mod connection;
pub mod cost;
mod journal;
mod metrics;
pub mod redis;
pub mod replication;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::BrokerConfig;
use crate::connectors::{ConnectorConfig, DiscoveryConfig, Network, NetworkChanges};
use crate::core::{Broker, ConnId, DropReason, Message, Output, Stats};
use crate::net::{Listener, SharedNet};
use crate::proto::{DecodeError, Frame};
use crate::security::Security;
use crate::store::{Disk, MasterSlave, Recovered, StdDisk, Store, StoreConfig, StoreError};
use crate::tls::{TlsAcceptor, Transport, parse_listen};
use connection::WriterMsg;
use cost::{Cores, CostProfile, CpuMeter};

/// Extra room in a writer channel beyond `outbound_frames_max`, for control frames
/// (receipts, errors) that the core emits regardless of flow control.
const WRITER_SLACK_FRAMES: usize = 64;

/// How often the published statistics snapshot is refreshed while the broker is busy.
const STATS_PERIOD: Duration = Duration::from_millis(100);

/// How long shutdown waits for connections to flush before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A writer's report that it wrote `frames` frames. These travel on their own channel,
/// which the core drains before taking new input, so that a consumer that keeps up never
/// looks slow just because its reports queued behind a producer's frames.
#[derive(Debug)]
struct Flushed {
    conn: ConnId,
    frames: usize,
}

/// What connections tell the core task.
#[derive(Debug)]
enum Event {
    Open {
        conn: ConnId,
        peer: SocketAddr,
        writer: mpsc::Sender<WriterMsg>,
        /// Set to pause the connection's reader (producer flow control).
        pause: tokio::sync::watch::Sender<bool>,
        /// The common name of the client certificate a TLS listener verified.
        certificate_cn: Option<String>,
    },
    Frame {
        conn: ConnId,
        frame: Frame,
    },
    HeartBeat {
        conn: ConnId,
    },
    DecodeError {
        conn: ConnId,
        error: DecodeError,
    },
    Closed {
        conn: ConnId,
    },
    /// The operator reloaded users, groups and authorization ([`Reloader`]).
    ReloadSecurity {
        security: Security,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// The operator reloaded the virtual hosts, their exchanges and queues.
    ReloadVhosts {
        vhosts: Vec<crate::vhost::VhostConfig>,
        default_vhost: Option<String>,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// The metrics endpoint asks for every queue's depth.
    QueueDepths {
        reply: tokio::sync::oneshot::Sender<Vec<crate::core::QueueDepth>>,
    },
}

/// Statistics the core task publishes for observers (tests, the simulator, logs).
#[derive(Clone, Debug, Default)]
pub struct StatsHandle(Arc<Mutex<Stats>>);

impl StatsHandle {
    /// The latest published counters (at most 100 ms old).
    pub fn get(&self) -> Stats {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set(&self, stats: Stats) {
        if let Ok(mut s) = self.0.lock() {
            *s = stats;
        }
    }
}

/// A bound STOMP listener, with TLS when its entry asked for it.
struct Bound {
    listener: Box<dyn Listener>,
    tls: Option<TlsAcceptor>,
    /// Set for a Redis pub/sub listener (`[redis] listen`).
    redis: Option<redis::Settings>,
}

/// A connection the accept loop hands over.
struct Accepted {
    conn: ConnId,
    peer: SocketAddr,
    stream: crate::net::BoxStream,
    /// The common name of the client certificate a TLS listener verified.
    certificate_cn: Option<String>,
    /// Set when it speaks Redis.
    redis: Option<redis::Settings>,
}

/// What the core held when its task ended, and what it dropped on purpose: evidence for
/// a checker that explains lost messages (see `CoreConfig::record_drops`).
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Messages the core held when its task ended or was dropped (a simulated crash
    /// drops it): see [`Broker::held_messages`].
    pub held: Vec<Arc<Message>>,
    /// Messages dropped on purpose over the core's life, in order.
    pub dropped: Vec<(Arc<Message>, DropReason)>,
}

/// Where a server publishes its [`Observations`] when its core task ends; empty unless
/// `core.record_drops` is set.
#[derive(Clone, Debug, Default)]
pub struct ObservationsHandle(Arc<Mutex<Option<Observations>>>);

impl ObservationsHandle {
    /// The observations, once the core task has ended (`None` while it runs).
    pub fn get(&self) -> Option<Observations> {
        self.0.lock().ok().and_then(|o| o.clone())
    }

    fn set(&self, observations: Observations) {
        if let Ok(mut o) = self.0.lock() {
            *o = Some(observations);
        }
    }
}

/// Opens and locks the store directory `dir`; as a shared-store slave, waits until the
/// master's lock is released.
async fn lock_store(dir: &str, store: &StoreConfig) -> io::Result<StdDisk> {
    let mut waited = false;
    loop {
        match StdDisk::open(std::path::Path::new(dir)) {
            Ok(disk) => {
                if waited {
                    tracing::info!(dir, "took the store's lock: this broker is now the master");
                }
                return Ok(disk);
            }
            Err(StoreError::Locked { .. }) if store.master_slave == MasterSlave::SharedStore => {
                if !waited {
                    tracing::info!(
                        dir,
                        retry_ms = store.lock_acquire_interval_ms,
                        "another broker (the master) holds the store: waiting as its slave, \
                         with no listener open"
                    );
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(store.lock_acquire_interval_ms)).await;
            }
            Err(e @ StoreError::Locked { .. }) => {
                return Err(io::Error::other(format!(
                    "{e}, or set store.master_slave = \"shared-store\" to run this broker as \
                     its slave"
                )));
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// A bound, not yet running broker server.
pub struct Server {
    net: SharedNet,
    config: BrokerConfig,
    listeners: Vec<Bound>,
    metrics: Option<Box<dyn Listener>>,
    stats: StatsHandle,
    observations: ObservationsHandle,
    reloader: Reloader,
    reloads: mpsc::Receiver<Reload>,
    /// The cost model's profile and the simulation's tick; `None` (the default) charges
    /// no CPU time.
    cost: Option<(CostProfile, Duration)>,
    /// Cores the cost model's work shares with other programs, if any.
    cores: Option<Arc<dyn Cores>>,
    /// The message store, opened, with what it recovered.
    storage: Option<(Store, Recovered)>,
    /// A replicated store's node (its listener for peers), kept running while this
    /// broker serves as the group's leader.
    replica: Option<replication::Node>,
}

/// A request to change the running broker.
enum Reload {
    /// Replace its users, groups and authorization.
    Security {
        security: Security,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Replace its virtual hosts (with their exchanges and queues).
    Vhosts {
        vhosts: Vec<crate::vhost::VhostConfig>,
        default_vhost: Option<String>,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Replace its connectors and discovery settings.
    Network {
        connectors: Vec<ConnectorConfig>,
        discovery: DiscoveryConfig,
        done: tokio::sync::oneshot::Sender<NetworkChanges>,
    },
}

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new `[security]` section is not valid; the old rules stay in force.
    #[error("{0}")]
    Invalid(String),
    /// The server is not running (or has stopped).
    #[error("the broker is not running")]
    NotRunning,
}

/// Replaces a running server's users, groups and authorization without a restart
/// (the broker binary calls it on SIGHUP). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reloader(mpsc::Sender<Reload>);

impl Reloader {
    /// Validates `config` and, if it is valid, makes it the rules of every session from
    /// its next frame on; returns once the core applied it. An invalid configuration
    /// changes nothing.
    pub async fn reload_security(
        &self,
        config: &crate::security::SecurityConfig,
    ) -> Result<(), ReloadError> {
        config
            .validate()
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let (done, applied) = tokio::sync::oneshot::channel();
        let security = Security::from_config(config);
        self.0
            .send(Reload::Security { security, done })
            .await
            .map_err(|_| ReloadError::NotRunning)?;
        applied.await.map_err(|_| ReloadError::NotRunning)
    }

    /// Validates `vhosts` and `default_vhost` (`[[core.vhosts]]`, `core.default_vhost`)
    /// and, if they are valid, makes them the broker's virtual hosts (see
    /// [`crate::core::Broker::handle_reload_vhosts`]: sessions of a removed vhost are
    /// closed, the others stay); returns once the core applied them. Invalid ones change
    /// nothing.
    pub async fn reload_vhosts(
        &self,
        vhosts: &[crate::vhost::VhostConfig],
        default_vhost: Option<&str>,
    ) -> Result<(), ReloadError> {
        crate::vhost::validate(vhosts, default_vhost)
            .map_err(|e| ReloadError::Invalid(e.within("core").to_string()))?;
        let (done, applied) = tokio::sync::oneshot::channel();
        self.0
            .send(Reload::Vhosts {
                vhosts: vhosts.to_vec(),
                default_vhost: default_vhost.map(str::to_owned),
                done,
            })
            .await
            .map_err(|_| ReloadError::NotRunning)?;
        applied.await.map_err(|_| ReloadError::NotRunning)
    }

    /// Validates `connectors` and, if they are valid, makes them (with `discovery`) the
    /// running network: connectors that are gone or changed stop (their bridges
    /// disconnect), new and changed ones start, unchanged ones keep their connections.
    /// Returns what changed once it is done; invalid connectors change nothing.
    pub async fn reload_network(
        &self,
        connectors: &[ConnectorConfig],
        discovery: &DiscoveryConfig,
    ) -> Result<NetworkChanges, ReloadError> {
        crate::connectors::validate_connectors(connectors)
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let (done, applied) = tokio::sync::oneshot::channel();
        self.0
            .send(Reload::Network {
                connectors: connectors.to_vec(),
                discovery: discovery.clone(),
                done,
            })
            .await
            .map_err(|_| ReloadError::NotRunning)?;
        applied.await.map_err(|_| ReloadError::NotRunning)
    }
}

impl Server {
    /// Opens the message store when `store.dir` is set (locking the directory and
    /// recovering what it holds), then binds every `server.listen` address. A store
    /// another broker holds, or one that cannot be read, is an error naming it.
    ///
    /// With `store.master_slave = "shared-store"`, a store another broker holds is not an
    /// error: this broker waits as that master's slave, with nothing bound, until it takes
    /// the lock (so this future may take as long as the master lives).
    pub async fn bind(net: SharedNet, config: BrokerConfig) -> io::Result<Server> {
        if config.store.master_slave == MasterSlave::Replicated
            && let Some(dir) = &config.store.dir
        {
            // Its own directory, locked against a second process; then a follower until
            // the group elects it.
            let disk = StdDisk::open(std::path::Path::new(dir)).map_err(io::Error::other)?;
            let cfg = config.store.replication.clone();
            let mut node = replication::Node::start(cfg, net.clone(), Box::new(disk)).await?;
            let leader_disk = node.until_elected().await;
            tracing::info!(
                dir,
                "elected by the replication group: this broker is now the master"
            );
            let server =
                Server::bind_with_storage(net, config, Some(Box::new(leader_disk))).await?;
            return Ok(server.with_replica(node));
        }
        let disk: Option<Box<dyn Disk>> = match &config.store.dir {
            Some(dir) => Some(Box::new(lock_store(dir, &config.store).await?)),
            None => None,
        };
        Server::bind_with_storage(net, config, disk).await
    }

    /// [`Server::bind`] with the store on `disk` (any [`Disk`]: a simulated one, say)
    /// instead of `store.dir`; `None` keeps nothing on disk.
    pub async fn bind_with_storage(
        net: SharedNet,
        config: BrokerConfig,
        disk: Option<Box<dyn Disk>>,
    ) -> io::Result<Server> {
        let storage = match disk {
            Some(disk) => {
                let (store, recovered) =
                    Store::open(disk, (&config.store).into()).map_err(io::Error::other)?;
                tracing::info!(
                    messages = recovered.messages.len(),
                    durable_subscriptions = recovered.durables.len(),
                    torn_tail = ?recovered.torn_tail,
                    skipped_corrupt = recovered.skipped.len(),
                    "message store opened"
                );
                Some((store, recovered))
            }
            None => None,
        };
        let mut listeners = Vec::new();
        let mut acceptor = None;
        for entry in &config.server.listen {
            let (transport, addr) =
                parse_listen(entry).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = match transport {
                Transport::Tcp => None,
                Transport::Tls => {
                    if acceptor.is_none() {
                        let built = TlsAcceptor::from_config(&config.server.tls)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                        acceptor = Some(built);
                    }
                    acceptor.clone()
                }
            };
            let l = net
                .bind_with_backlog(addr, config.server.listen_backlog_connections)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            let secure = if tls.is_some() { " over TLS" } else { "" };
            tracing::info!(addr = %l.local_addr()?, "listening for STOMP{secure}");
            listeners.push(Bound {
                listener: l,
                tls,
                redis: None,
            });
        }
        for addr in &config.redis.listen {
            let backlog = config.server.listen_backlog_connections;
            let l = net.bind_with_backlog(addr, backlog).await.map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen for Redis on {addr}: {e}"))
            })?;
            tracing::info!(addr = %l.local_addr()?, "listening for Redis pub/sub");
            listeners.push(Bound {
                listener: l,
                tls: None,
                redis: Some(redis::Settings {
                    default_user: config.redis.default_user.clone(),
                    users_exist: !config.security.users.is_empty(),
                }),
            });
        }
        let metrics = match &config.metrics.listen {
            Some(addr) => {
                let l = net.bind(addr).await.map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot listen for metrics on {addr}: {e}"),
                    )
                })?;
                tracing::info!(addr = %l.local_addr()?, "serving Prometheus metrics at /metrics");
                Some(l)
            }
            None => None,
        };
        // Reloads are rare; a few may wait while the core applies one.
        let (reload_tx, reloads) = mpsc::channel(4);
        Ok(Server {
            net,
            config,
            listeners,
            metrics,
            stats: StatsHandle::default(),
            observations: ObservationsHandle::default(),
            reloader: Reloader(reload_tx),
            reloads,
            cost: None,
            cores: None,
            storage,
            replica: None,
        })
    }

    /// Keeps a replicated store's `node` running as long as the server runs.
    pub fn with_replica(mut self, node: replication::Node) -> Server {
        self.replica = Some(node);
        self
    }

    /// Models the core task's CPU with `profile` (see [`cost`]): each event's work costs
    /// simulated time and its outputs wait for it. Meant for the simulator; without it the
    /// server charges nothing.
    /// `tick` is the simulation's: costs are released to the nearest tick.
    pub fn with_cost_profile(mut self, profile: CostProfile, tick: Duration) -> Server {
        self.cost = Some((profile, tick));
        self
    }

    /// Runs the cost model's work on `cores` shared with other programs (the simulator's
    /// test rig: the load generator's clients on the same machine), not on a core of the
    /// core task's own. Only with [`Server::with_cost_profile`].
    pub fn on_shared_cores(mut self, cores: Arc<dyn Cores>) -> Server {
        self.cores = Some(cores);
        self
    }

    /// A handle that reloads users, groups and authorization while the server runs.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The address of the metrics endpoint, if `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|b| b.listener.local_addr().ok())
            .collect()
    }

    /// A handle on the broker's counters.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// A handle on what the core held and dropped, published when it stops (only with
    /// `core.record_drops`).
    pub fn observations(&self) -> ObservationsHandle {
        self.observations.clone()
    }

    /// The network this server was bound with.
    pub fn net(&self) -> SharedNet {
        self.net.clone()
    }

    /// Serves until `shutdown` completes, then closes every connection.
    pub async fn run(self, clock: Clock, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            net,
            config,
            listeners,
            metrics,
            stats,
            observations,
            reloader,
            mut reloads,
            cost,
            cores,
            storage,
            replica,
        } = self;
        // The replica's tasks run until this function returns.
        let _replica = replica;
        // Handles given out stay usable while the server runs; this one is not needed.
        drop(reloader);
        let security = Security::from_config(&config.security);
        let mut broker = Broker::new(config.core.clone(), security, clock.now_ms());
        // The store writer runs beside the core task; the core hands it records and
        // hears back which are synced.
        let mut store_writer = None;
        let mut journal = None;
        if let Some((store, recovered)) = storage {
            broker.enable_persistence(crate::core::PersistSettings {
                bytes_max: config.store.bytes_max,
                full_policy: config.store.full_policy,
            });
            broker.restore(recovered);
            let (batches_tx, batches_rx) = mpsc::channel(journal::STORE_BATCHES_MAX);
            let (progress_tx, progress_rx) =
                tokio::sync::watch::channel(journal::Progress::default());
            store_writer = Some(crate::task::spawn(journal::run(
                store,
                config.store.clone(),
                batches_rx,
                progress_tx,
            )));
            journal = Some(Journal {
                batches: batches_tx,
                progress: progress_rx,
                pending: Vec::new(),
            });
        }
        let (inbox_tx, inbox_rx) = mpsc::channel(config.server.inbox_events_max.max(1));
        // Writers hold at most one unreported batch each, so this channel is bounded by
        // the number of connections; its capacity only sets when a writer waits.
        let (flush_tx, flush_rx) = mpsc::channel(config.server.inbox_events_max.max(1));
        let conn_ids = Arc::new(AtomicU64::new(0));
        // Sockets: every session plus every connection still waiting for CONNECT. The core
        // enforces each of the two limits; this only bounds file descriptors.
        let limits = &config.core.limits;
        let permits = Arc::new(Semaphore::new(
            limits
                .connections_max
                .saturating_add(limits.unauthenticated_connections_max)
                .min(Semaphore::MAX_PERMITS),
        ));
        let mut tasks = JoinSet::new();
        // Network connectors run beside the broker, in their own task (which applies
        // reloads to them), and stop before it.
        let network = listeners
            .iter()
            .find(|b| b.tls.is_none())
            .or(listeners.first())
            .and_then(|b| b.listener.local_addr().ok())
            .map(|bound| {
                let connectors = crate::connectors::StartConfig {
                    broker_name: &config.core.broker_name,
                    connectors: &config.connectors,
                    discovery: &config.discovery,
                };
                Network::start(&net, connectors, bound)
            });
        let (network_tx, network_rx) = mpsc::channel(4);
        let network_task = crate::task::spawn(run_network(network, network_rx));
        let traffic = Arc::new(metrics::Traffic::default());
        let links = connection::Links {
            inbox: inbox_tx.clone(),
            flushes: flush_tx.clone(),
            traffic: traffic.clone(),
            limits: config.core.limits.frame(),
            write_timeout: Duration::from_millis(config.server.write_timeout_ms),
            memory: broker.memory_gauge(),
        };
        for bound in listeners {
            crate::task::spawn_into(
                &mut tasks,
                accept_loop(
                    bound,
                    links.clone(),
                    conn_ids.clone(),
                    permits.clone(),
                    config.clone(),
                ),
            );
        }
        // Only the accept loops hold the inbox through `links` from here on.
        drop(links);
        if let Some(listener) = metrics {
            let sources = metrics::Sources {
                stats: stats.clone(),
                traffic,
                inbox: inbox_tx.clone(),
                broker_name: config.core.broker_name.clone(),
            };
            crate::task::spawn_into(&mut tasks, metrics::serve(listener, Arc::new(sources)));
        }
        {
            let inbox = inbox_tx.clone();
            let network = network_tx.clone();
            crate::task::spawn_into(&mut tasks, async move {
                while let Some(reload) = reloads.recv().await {
                    let sent = match reload {
                        Reload::Security { security, done } => {
                            let event = Event::ReloadSecurity { security, done };
                            inbox.send(event).await.is_ok()
                        }
                        Reload::Vhosts {
                            vhosts,
                            default_vhost,
                            done,
                        } => {
                            let event = Event::ReloadVhosts {
                                vhosts,
                                default_vhost,
                                done,
                            };
                            inbox.send(event).await.is_ok()
                        }
                        Reload::Network {
                            connectors,
                            discovery,
                            done,
                        } => {
                            let apply = NetworkCommand::Apply {
                                connectors,
                                discovery,
                                done,
                            };
                            network.send(apply).await.is_ok()
                        }
                    };
                    if !sent {
                        break;
                    }
                }
            });
        }
        drop(inbox_tx);
        drop(flush_tx);
        let core = CoreTask {
            broker,
            clock,
            writers: BTreeMap::new(),
            pauses: BTreeMap::new(),
            stats,
            writer_capacity: writer_capacity(&config),
            observations,
            meter: cost.map(|(p, tick)| {
                match cores {
                    Some(cores) => CpuMeter::on_cores(p, cores),
                    None => CpuMeter::new(p),
                }
                .with_tick(tick)
            }),
            journal,
            store_failed: None,
        };
        // On shutdown, network bridges disconnect first (bounded), while the core still
        // answers their DISCONNECT.
        let shutdown = async move {
            shutdown.await;
            let _ = network_tx.send(NetworkCommand::Stop).await;
            let _ = network_task.await;
        };
        let (mut inbox_rx, store_failed) = core.run(inbox_rx, flush_rx, shutdown).await;
        // The core task dropped its sender: the writer syncs what it has and ends.
        if let Some(w) = store_writer {
            let _ = w.await;
        }
        // Stop accepting, then wait (bounded) until every connection task has finished
        // flushing and dropped its handle on the inbox.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while inbox_rx.recv().await.is_some() {}
        })
        .await;
        match store_failed {
            Some(e) => Err(io::Error::other(format!(
                "the message store failed, so the broker stopped: {e}"
            ))),
            None => Ok(()),
        }
    }
}

/// What the network task is asked to do.
enum NetworkCommand {
    /// Make these the running connectors and discovery settings.
    Apply {
        connectors: Vec<ConnectorConfig>,
        discovery: DiscoveryConfig,
        done: tokio::sync::oneshot::Sender<NetworkChanges>,
    },
    /// Stop every connector (bounded by [`SHUTDOWN_GRACE`]) and end.
    Stop,
}

/// Owns the broker's [`Network`] (`None` when it has no listener to bridge to) and applies
/// reloads to it until told to stop; then stops it.
async fn run_network(mut network: Option<Network>, mut commands: mpsc::Receiver<NetworkCommand>) {
    while let Some(command) = commands.recv().await {
        match command {
            NetworkCommand::Apply {
                connectors,
                discovery,
                done,
            } => {
                let changes = match &mut network {
                    Some(n) => n.apply(&connectors, &discovery, SHUTDOWN_GRACE).await,
                    None => NetworkChanges::default(),
                };
                if !changes.is_empty() {
                    tracing::info!(
                        started = ?changes.started,
                        stopped = ?changes.stopped,
                        restarted = ?changes.restarted,
                        "network connectors reloaded"
                    );
                }
                let _ = done.send(changes);
            }
            NetworkCommand::Stop => break,
        }
    }
    if let Some(n) = network {
        n.stop(SHUTDOWN_GRACE).await;
    }
}

/// The core task's side of the store writer.
struct Journal {
    batches: mpsc::Sender<journal::Batch>,
    /// Cloned once by [`CoreTask::run`], which waits on it.
    progress: tokio::sync::watch::Receiver<journal::Progress>,
    /// Records routed but not yet handed over.
    pending: journal::Batch,
}

/// Frames a writer channel must hold: the window, the topic burst allowance, and slack
/// for control frames.
fn writer_capacity(config: &BrokerConfig) -> usize {
    let l = &config.core.limits;
    l.outbound_frames_max + l.outbound_burst_frames_max + WRITER_SLACK_FRAMES
}

async fn accept_loop(
    bound: Bound,
    links: connection::Links,
    conn_ids: Arc<AtomicU64>,
    permits: Arc<Semaphore>,
    config: BrokerConfig,
) {
    let Bound {
        mut listener,
        tls,
        redis,
    } = bound;
    let writer_capacity = writer_capacity(&config);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let conn = ConnId(conn_ids.fetch_add(1, Ordering::Relaxed) + 1);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let l = &config.core.limits;
            tracing::warn!(
                %peer,
                "refusing connection: limits.connections_max + unauthenticated_connections_max reached"
            );
            // A TLS or Redis client could not read a plain ERROR frame: it is just closed.
            if tls.is_none() && redis.is_none() {
                crate::task::spawn(connection::refuse(
                    stream,
                    format!(
                        "too many connections (limits.connections_max = {} sessions plus \
                         limits.unauthenticated_connections_max = {} waiting for CONNECT)",
                        l.connections_max, l.unauthenticated_connections_max
                    ),
                ));
            }
            continue;
        };
        let Some(acceptor) = tls.clone() else {
            let accepted = Accepted {
                conn,
                peer,
                stream,
                certificate_cn: None,
                redis: redis.clone(),
            };
            if !open(accepted, &links, writer_capacity, permit).await {
                return;
            }
            continue;
        };
        // The handshake runs in its own task (bounded by handshake_timeout_ms) so that a
        // slow or silent TLS client never holds up the accept loop.
        let links = links.clone();
        crate::task::spawn(async move {
            match acceptor.accept(stream).await {
                Ok((stream, certificate_cn)) => {
                    let accepted = Accepted {
                        conn,
                        peer,
                        stream,
                        certificate_cn,
                        redis: None,
                    };
                    open(accepted, &links, writer_capacity, permit).await;
                }
                Err(e) => tracing::info!(%peer, "TLS handshake failed: {e}"),
            }
        });
    }
}

/// Announces a new connection to the core and starts its tasks; false once the core is
/// gone.
async fn open(
    accepted: Accepted,
    links: &connection::Links,
    writer_capacity: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> bool {
    let Accepted {
        conn,
        peer,
        stream,
        certificate_cn,
        redis,
    } = accepted;
    let (writer_tx, writer_rx) = mpsc::channel(writer_capacity);
    let redis_writer = redis.as_ref().map(|_| writer_tx.clone());
    let (pause_tx, pause_rx) = tokio::sync::watch::channel(false);
    let event = Event::Open {
        conn,
        peer,
        writer: writer_tx,
        pause: pause_tx,
        certificate_cn,
    };
    if links.inbox.send(event).await.is_err() {
        return false;
    }
    tracing::debug!(%conn, %peer, "connection accepted");
    match (redis, redis_writer) {
        (Some(settings), Some(writer_tx)) => {
            let pipes = redis::Pipes {
                writer_tx,
                writer_rx,
                paused: pause_rx,
            };
            redis::spawn(conn, stream, links.clone(), pipes, settings, permit);
        }
        _ => connection::spawn(conn, stream, links.clone(), writer_rx, pause_rx, permit),
    }
    true
}

struct CoreTask {
    broker: Broker,
    clock: Clock,
    writers: BTreeMap<ConnId, mpsc::Sender<WriterMsg>>,
    /// Each connection's reader pause switch (producer flow control).
    pauses: BTreeMap<ConnId, tokio::sync::watch::Sender<bool>>,
    stats: StatsHandle,
    writer_capacity: usize,
    observations: ObservationsHandle,
    /// The simulated CPU, when a cost profile is set.
    meter: Option<CpuMeter>,
    /// The store writer, when the broker has a store.
    journal: Option<Journal>,
    /// Why the store failed, if it did (the broker stops).
    store_failed: Option<String>,
}

impl Drop for CoreTask {
    /// Publishes what the core holds at the moment the task goes away, whether it ended
    /// or was dropped mid-flight (a simulated crash), when `core.record_drops` asks for it.
    fn drop(&mut self) {
        if self.broker.config().record_drops {
            self.observations.set(Observations {
                held: self.broker.held_messages(),
                dropped: self.broker.take_dropped(),
            });
        }
    }
}

impl CoreTask {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Event>,
        mut flushes: mpsc::Receiver<Flushed>,
        shutdown: impl Future<Output = ()>,
    ) -> (mpsc::Receiver<Event>, Option<String>) {
        tokio::pin!(shutdown);
        // The store writer's reports (one receiver for the whole run, so that each report
        // is seen once).
        let mut progress = self.journal.as_ref().map(|j| j.progress.clone());
        let mut stats_at = tokio::time::Instant::now();
        // Whether something happened since the published snapshot.
        let mut stats_stale = false;
        loop {
            let deadline = self.broker.poll_timeout().map(|t| self.clock.instant_at(t));
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let stats_due = async {
                if stats_stale {
                    tokio::time::sleep_until(stats_at + STATS_PERIOD).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let synced = async {
                match progress.as_mut() {
                    Some(p) => match p.changed().await {
                        Ok(()) => p.borrow_and_update().clone(),
                        Err(_) => journal::Progress {
                            synced: 0,
                            failed: Some("the store writer ended".to_owned()),
                        },
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                p = synced => {
                    if let Some(e) = p.failed {
                        tracing::error!("stopping: the message store failed: {e}");
                        self.store_failed = Some(e);
                        break;
                    }
                    self.broker.handle_synced(self.clock.now_ms(), p.synced);
                    self.settle().await;
                }
                Some(f) = flushes.recv() => {
                    self.flushed(f);
                    self.settle().await;
                }
                ev = inbox.recv() => match ev {
                    Some(ev) => {
                        self.handle_after_flushes(ev, &mut flushes).await;
                        // Take what else is already waiting, routing after every event and
                        // taking writers' reports first, so that bursts are handled in one
                        // pass without starving the accounting of consumers that keep up.
                        for _ in 0..256 {
                            self.take_flushes(&mut flushes).await;
                            match inbox.try_recv() {
                                Ok(ev) => self.handle_after_flushes(ev, &mut flushes).await,
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                () = sleep => {
                    self.broker.handle_timeout(self.clock.now_ms());
                    self.settle().await;
                }
                () = stats_due => {}
            }
            // Hand this pass's records to the store writer (waiting while it is
            // behind: the disk sets the pace).
            if let Some(j) = self.journal.as_mut()
                && !j.pending.is_empty()
            {
                let batch = std::mem::take(&mut j.pending);
                if j.batches.send(batch).await.is_err() {
                    let e = "the store writer ended".to_owned();
                    tracing::error!("stopping: {e}");
                    self.store_failed = Some(e);
                    break;
                }
            }
            stats_stale = true;
            if stats_at.elapsed() >= STATS_PERIOD {
                self.stats.set(self.current_stats());
                stats_at = tokio::time::Instant::now();
                stats_stale = false;
            }
        }
        self.stats.set(self.current_stats());
        // Close every connection; writers flush what they hold, then end.
        for (_, w) in std::mem::take(&mut self.writers) {
            let _ = w.try_send(WriterMsg::Close);
        }
        drop(flushes);
        // Records of the last pass still go to the store; then the writer may end.
        if let Some(mut j) = self.journal.take() {
            let batch = std::mem::take(&mut j.pending);
            if !batch.is_empty() {
                let _ = j.batches.send(batch).await;
            }
        }
        (inbox, self.store_failed.take())
    }

    /// Handles the writers' flush reports already waiting.
    async fn take_flushes(&mut self, flushes: &mut mpsc::Receiver<Flushed>) {
        while let Ok(f) = flushes.try_recv() {
            self.flushed(f);
            self.settle().await;
        }
    }

    /// Handles an event and routes its outputs; a close only after the flush reports
    /// already waiting, since a writer reports a close after its flushes (the frames it
    /// wrote count as written: an `ack:auto` message is consumed).
    async fn handle_after_flushes(&mut self, ev: Event, flushes: &mut mpsc::Receiver<Flushed>) {
        if matches!(ev, Event::Closed { .. }) {
            self.take_flushes(flushes).await;
        }
        self.handle(ev);
        self.settle().await;
    }

    fn flushed(&mut self, f: Flushed) {
        self.broker
            .handle_flushed(self.clock.now_ms(), f.conn, f.frames);
    }

    /// Routes the outputs of the event just handled. With a cost model, first charges its
    /// work, then releases each output as the simulated CPU reaches it (the work spread
    /// evenly over the outputs) and waits until the CPU has done all of it.
    async fn settle(&mut self) {
        let Some(meter) = &mut self.meter else {
            self.route_outputs();
            return;
        };
        let busy = meter.charge(self.broker.work(), tokio::time::Instant::now());
        let n = self.broker.outputs_pending();
        for i in 0..n {
            if let Some(at) = busy.release_at(i, n, tokio::time::Instant::now()) {
                tokio::time::sleep_until(at).await;
            }
            if let Some(out) = self.broker.poll_output() {
                self.route(out);
            }
        }
        if let Some(at) = busy.end_release(tokio::time::Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
        // What routing itself produced (a writer found full is closed).
        self.route_outputs();
    }

    /// The core's counters with the simulated CPU time charged so far.
    fn current_stats(&self) -> Stats {
        let mut s = self.broker.stats();
        s.cpu_busy_ns = self.meter.as_ref().map_or(0, CpuMeter::busy_ns);
        s
    }

    fn handle(&mut self, ev: Event) {
        let now = self.clock.now_ms();
        match ev {
            Event::Open {
                conn,
                peer,
                writer,
                pause,
                certificate_cn,
            } => {
                self.writers.insert(conn, writer);
                self.pauses.insert(conn, pause);
                self.broker.handle_open(now, conn, &peer.to_string());
                if let Some(cn) = certificate_cn {
                    self.broker.handle_peer_certificate(conn, &cn);
                }
            }
            Event::Frame { conn, frame } => self.broker.handle_frame(now, conn, frame),
            Event::HeartBeat { conn } => self.broker.handle_heartbeat(now, conn),
            Event::DecodeError { conn, error } => {
                self.broker.handle_decode_error(now, conn, &error)
            }
            Event::Closed { conn } => {
                self.writers.remove(&conn);
                self.pauses.remove(&conn);
                self.broker.handle_close(now, conn);
            }
            Event::ReloadSecurity { security, done } => {
                self.broker.handle_reload_security(now, security);
                let _ = done.send(());
            }
            Event::ReloadVhosts {
                vhosts,
                default_vhost,
                done,
            } => {
                self.broker.handle_reload_vhosts(now, vhosts, default_vhost);
                let _ = done.send(());
            }
            Event::QueueDepths { reply } => {
                let _ = reply.send(self.broker.queue_depths());
            }
        }
    }

    fn route_outputs(&mut self) {
        while let Some(out) = self.broker.poll_output() {
            self.route(out);
        }
    }

    fn route(&mut self, out: Output) {
        match out {
            Output::Send {
                conn,
                version,
                frame,
            } => {
                let Some(w) = self.writers.get(&conn) else {
                    return;
                };
                if w.try_send(WriterMsg::Frame(version, frame)).is_err() {
                    // The writer is hopelessly behind: give up on it. It still writes
                    // what it holds and then reports the close.
                    tracing::info!(%conn, capacity = self.writer_capacity, "closing connection whose writer is full");
                    self.writers.remove(&conn);
                    self.pauses.remove(&conn);
                    self.broker.handle_writer_full(self.clock.now_ms(), conn);
                }
            }
            Output::Close { conn } => {
                self.pauses.remove(&conn);
                // The writer reports the close after what it still writes (if it is
                // too full to take this message, once it has written what it holds).
                if let Some(w) = self.writers.remove(&conn) {
                    let _ = w.try_send(WriterMsg::Close);
                }
            }
            Output::PauseReading { conn } => {
                if let Some(p) = self.pauses.get(&conn) {
                    let _ = p.send(true);
                }
            }
            Output::ResumeReading { conn } => {
                if let Some(p) = self.pauses.get(&conn) {
                    let _ = p.send(false);
                }
            }
            Output::Persist { ticket, record } => {
                if let Some(j) = self.journal.as_mut() {
                    j.pending.push((ticket, record));
                }
            }
        }
    }
}
