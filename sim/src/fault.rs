//! Faults: the timeline of actions applied to the simulated world, and the labeled windows
//! that reports shade and that losses are charged to when their cause happened in them.
//!
//! Explicit `[[faults]]` and the seeded `[nemesis]` both become [`Action`]s on one sorted
//! timeline. The world applies them between simulation steps through turmoil's `Sim`.
//!
//! Semantics (turmoil's, documented because they matter for reading results):
//! - `crash` kills a broker's process and leaves its machine up: its peers' connections
//!   see EOF at once, and a connect to it is refused at once (turmoil's host runs on with
//!   nothing bound; a real operating system answers with RST). Its in-memory messages are
//!   lost; what it wrote to its store survives, synced or not (the operating system kept
//!   it).
//! - `power-loss` takes the machine down: its store also loses what it had not synced
//!   (turmoil's file-system crash), peers see their connections close (a real power loss
//!   would leave them silent until heart-beats time out), and a connect to it waits
//!   unanswered until it restarts (a real client gives up at its connect timeout).
//! - `partition` drops packets between the groups; a `connect` across it is refused at
//!   once; established connections across it stall for good (turmoil has no
//!   retransmission), so peers notice only through heart-beat timeouts.
//! - `hold` queues packets and `release` delivers them in order: nothing is lost, like TCP
//!   retransmitting after a short outage.
//! - `latency` sets the one-way latency of the links between the groups.
//! - `clock-skew` moves the clocks of racks' nodes (nothing else: brokers and `mco`
//!   clients keep theirs); a node judges a request's age by its own clock.
//! - `isolate-nodes` cuts single nodes of a rack host off, below turmoil (whose faults act
//!   on whole hosts): their connections stall for good, as across a `partition`, and
//!   their connects fail until the window ends. With `from` brokers, only their paths to
//!   those brokers are cut: they fail over to the others in their pools.
//! - `crash-nodes` kills single nodes' `mcollectived` processes: their connections close
//!   at once (the broker sees them end), requests they had taken and not answered go
//!   unanswered, and they start again, as new processes, when the window ends.
//! - `packet-loss` makes single nodes' connections (or their paths to some brokers) lose
//!   segments; TCP recovers them, so each loss delays its connection by a retransmission
//!   timeout (see `workload/link.rs`).
//! - `crash-clients` does the same to `mco` clients: replies to the requests a dead client
//!   waited on go unread, it makes no requests while down, and it starts again with a new
//!   pid in its reply queues' names.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::scenario::{FaultKind, FaultSpec, NemesisSpec, Scenario, glob};
use crate::seed;
pub use crate::workload::link::Loss;

/// The retransmission timeout of a `packet-loss` fault that names none, in milliseconds
/// (Linux's minimum RTO).
pub const DEFAULT_RTO_MS: u64 = 200;

/// One thing done to the world at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// Simulated time, ms since start.
    pub at_ms: u64,
    /// What to do.
    pub op: Op,
    /// The fault window this action opens or closes.
    pub window: Option<usize>,
}

/// An operation on the simulated world; host lists are resolved names.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Kill brokers (process death: their stores keep what they wrote).
    Crash(Vec<String>),
    /// Cut brokers' power (their stores keep only what they synced).
    PowerLoss(Vec<String>),
    /// Restart brokers.
    Restart(Vec<String>),
    /// Two-way partition.
    Partition(Vec<String>, Vec<String>),
    /// One-way partition, first group to second.
    PartitionOneway(Vec<String>, Vec<String>),
    /// Undo (both directions) partitions between the groups.
    Heal(Vec<String>, Vec<String>),
    /// Hold packets between the groups.
    Hold(Vec<String>, Vec<String>),
    /// Release held packets.
    Release(Vec<String>, Vec<String>),
    /// Set one-way latency (ms) between the groups; `None` restores the configured one.
    Latency(Vec<String>, Vec<String>, Option<u64>),
    /// A disk fault on brokers' stores; `DiskFault::None` repairs it (and starts a broker
    /// the fault stopped).
    Disk(Vec<String>, DiskFault),
    /// Cut brokers off from their shared storage (`true`), or connect them again.
    StoragePartition(Vec<String>, bool),
    /// Jump the clocks of racks' nodes by this many milliseconds (on top of their
    /// configured skew); `None` sets them right again.
    ClockSkew(Vec<String>, Option<i64>),
    /// Cut these nodes (rack, node indices in the rack) off the network, or (brokers
    /// named) only from those brokers.
    IsolateNodes(Vec<(String, Vec<u32>)>, Vec<String>),
    /// Connect them again (their stalled connections stay stalled).
    ReconnectNodes(Vec<(String, Vec<u32>)>, Vec<String>),
    /// These nodes (rack, node indices) lose segments on their cables, or (brokers named)
    /// on their paths to those brokers; a loss of 0 per million ends it.
    PacketLoss(Vec<(String, Vec<u32>)>, Vec<String>, Loss),
    /// Kill these nodes' processes (rack, node indices in the rack; an `mco` client is a
    /// rack of one under its name).
    CrashNodes(Vec<(String, Vec<u32>)>),
    /// Start them again.
    StartNodes(Vec<(String, Vec<u32>)>),
    /// Heal everything, restart every crashed broker and node, repair every disk, set
    /// every clock right.
    HealAll,
}

impl Op {
    /// Whether the operation acts on the nodes themselves (their clocks or their cables),
    /// wholly or in part: what [`crate::workload::apply_to_nodes`] applies.
    pub fn acts_on_nodes(&self) -> bool {
        matches!(
            self,
            Op::ClockSkew(..)
                | Op::IsolateNodes(..)
                | Op::ReconnectNodes(..)
                | Op::PacketLoss(..)
                | Op::CrashNodes(_)
                | Op::StartNodes(_)
                | Op::HealAll
        )
    }
}

/// What a broker's store disk does wrong (a `disk-*` fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskFault {
    /// Nothing: a repaired disk.
    #[default]
    None,
    /// Writes, syncs and reads fail with EIO.
    Error,
    /// Writes fail with ENOSPC.
    Full,
    /// Every sync takes this many milliseconds longer.
    SlowMs(u64),
}

/// A period during which a fault was in effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// `crash`, `partition`, …
    pub kind: &'static str,
    /// Human label, e.g. `crash broker-2`.
    pub label: String,
    /// Start, ms since start.
    pub start_ms: u64,
    /// End, ms since start (`None`: never undone).
    pub end_ms: Option<u64>,
}

/// The whole timeline of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Actions in time order (stable for equal times).
    pub actions: Vec<Action>,
    /// Fault windows, in opening order.
    pub windows: Vec<Window>,
}

fn resolve(patterns: &[String], hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .filter(|h| patterns.iter().any(|p| glob(p, h)))
        .cloned()
        .collect()
}

fn secs_to_ms(s: f64) -> u64 {
    (s * 1000.0).round().max(0.0) as u64
}

impl Timeline {
    /// Builds the timeline of `scenario` for `seed`.
    pub fn build(scenario: &Scenario, seed: u64) -> Timeline {
        let hosts = scenario.hosts();
        let brokers: Vec<String> = scenario.brokers.iter().map(|b| b.name.clone()).collect();
        let racks: Vec<String> = scenario.racks.iter().map(|r| r.name.clone()).collect();
        let clients = scenario.mco_client_names();
        let mut t = Timeline::default();
        for (i, f) in scenario.faults.iter().enumerate() {
            t.add_explicit(f, &hosts, &brokers, &racks, &clients);
            if matches!(
                f.kind,
                FaultKind::IsolateNodes | FaultKind::CrashNodes | FaultKind::PacketLoss
            ) {
                t.add_node_fault(f, scenario, seed, i);
            }
        }
        if let Some(n) = &scenario.nemesis {
            let with_store: Vec<String> = scenario
                .brokers
                .iter()
                .filter(|b| b.store.is_some())
                .map(|b| b.name.clone())
                .collect();
            let with_shared_store: Vec<String> = scenario
                .brokers
                .iter()
                .filter(|b| b.master_slave() == stampede_broker::store::MasterSlave::SharedStore)
                .map(|b| b.name.clone())
                .collect();
            t.add_nemesis(n, seed, &hosts, &brokers, &with_store, &with_shared_store);
        }
        // Stable sort keeps undo-then-redo order for equal times.
        t.actions.sort_by_key(|a| a.at_ms);
        t
    }

    /// An `isolate-nodes` or `crash-nodes` fault: which nodes of each target rack (a
    /// seeded sample of `fraction` of them, at least one), cut (or killed) at its start
    /// and connected (or started) at its end.
    fn add_node_fault(&mut self, f: &FaultSpec, scenario: &Scenario, seed: u64, index: usize) {
        let at = secs_to_ms(f.at_s);
        let end = f.duration_s.map(|d| at + secs_to_ms(d));
        let fraction = f.fraction.unwrap_or(1.0);
        // Isolations keep their original stream name, so existing runs draw the same nodes.
        let stream = match f.kind {
            FaultKind::CrashNodes => format!("crash-nodes/{index}"),
            FaultKind::PacketLoss => format!("packet-loss/{index}"),
            _ => format!("isolate/{index}"),
        };
        let mut rng = SmallRng::seed_from_u64(seed::derive(seed, &stream));
        let mut nodes = Vec::new();
        let mut count = 0;
        for r in scenario
            .racks
            .iter()
            .filter(|r| f.target.iter().any(|p| glob(p, &r.name)))
        {
            let n = r.nodes as usize;
            let k = ((n as f64 * fraction).round() as usize).clamp(1, n);
            let mut chosen: Vec<u32> = rand::seq::index::sample(&mut rng, n, k)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            chosen.sort_unstable();
            count += chosen.len();
            nodes.push((r.name.clone(), chosen));
        }
        let names: Vec<&str> = nodes.iter().map(|(r, _)| r.as_str()).collect();
        let kind = f.kind.as_str();
        // The brokers the nodes are cut from (none: the whole network).
        let from: Vec<String> = scenario
            .brokers
            .iter()
            .filter(|b| f.from.iter().any(|p| glob(p, &b.name)))
            .map(|b| b.name.clone())
            .collect();
        let label = f.label.clone().unwrap_or_else(|| {
            let from = if from.is_empty() {
                String::new()
            } else {
                format!(" from {}", from.join(","))
            };
            let loss = match f.loss_percent {
                Some(x) if f.kind == FaultKind::PacketLoss => format!(" {x}%"),
                _ => String::new(),
            };
            format!(
                "{kind}{loss} {count} of {} ({:.0}%){from}",
                names.join(","),
                fraction * 100.0
            )
        });
        let (start, undo) = match f.kind {
            FaultKind::CrashNodes => (Op::CrashNodes(nodes.clone()), Op::StartNodes(nodes)),
            FaultKind::PacketLoss => {
                let loss = Loss {
                    ppm: (f.loss_percent.unwrap_or(0.0) * 1e4)
                        .round()
                        .clamp(1.0, 1e6) as u32,
                    rto_ms: f.latency_ms.unwrap_or(DEFAULT_RTO_MS),
                };
                (
                    Op::PacketLoss(nodes.clone(), from.clone(), loss),
                    Op::PacketLoss(nodes, from, Loss::default()),
                )
            }
            _ => (
                Op::IsolateNodes(nodes.clone(), from.clone()),
                Op::ReconnectNodes(nodes, from),
            ),
        };
        let w = self.open(kind, label, at, end);
        self.push(at, start, Some(w));
        if let Some(e) = end {
            self.push(e, undo, Some(w));
        }
    }

    fn open(
        &mut self,
        kind: &'static str,
        label: String,
        start_ms: u64,
        end_ms: Option<u64>,
    ) -> usize {
        self.windows.push(Window {
            kind,
            label,
            start_ms,
            end_ms,
        });
        self.windows.len() - 1
    }

    fn push(&mut self, at_ms: u64, op: Op, window: Option<usize>) {
        self.actions.push(Action { at_ms, op, window });
    }

    fn add_explicit(
        &mut self,
        f: &FaultSpec,
        hosts: &[String],
        brokers: &[String],
        racks: &[String],
        clients: &[String],
    ) {
        let at = secs_to_ms(f.at_s);
        let end = f.duration_s.map(|d| at + secs_to_ms(d));
        let a = resolve(&f.a, hosts);
        let b = resolve(&f.b, hosts);
        let targets = match f.kind {
            FaultKind::ClockSkew => resolve(&f.target, racks),
            FaultKind::CrashClients => resolve(&f.target, clients),
            _ => resolve(&f.target, brokers),
        };
        let label = f.label.clone().unwrap_or_else(|| match f.kind {
            FaultKind::Crash
            | FaultKind::PowerLoss
            | FaultKind::Restart
            | FaultKind::CrashClients => {
                format!("{} {}", f.kind.as_str(), targets.join(","))
            }
            FaultKind::HealAll => "heal-all".to_owned(),
            // Labelled by `add_node_fault`, which knows the nodes.
            FaultKind::IsolateNodes | FaultKind::CrashNodes | FaultKind::PacketLoss => {
                String::new()
            }
            FaultKind::ClockSkew => format!(
                "clock-skew {:+}ms {}",
                f.skew_ms.unwrap_or(0),
                targets.join(",")
            ),
            FaultKind::DiskError | FaultKind::DiskFull => {
                format!("{} {}", f.kind.as_str(), targets.join(","))
            }
            FaultKind::SlowDisk => format!(
                "slow-disk +{}ms {}",
                f.latency_ms.unwrap_or(0),
                targets.join(",")
            ),
            FaultKind::Latency => format!(
                "latency {}ms {} / {}",
                f.latency_ms.unwrap_or(0),
                f.a.join(","),
                f.b.join(",")
            ),
            k => format!("{} {} / {}", k.as_str(), f.a.join(","), f.b.join(",")),
        });
        match f.kind {
            FaultKind::Crash | FaultKind::PowerLoss => {
                let (kind, op) = if f.kind == FaultKind::Crash {
                    ("crash", Op::Crash(targets.clone()))
                } else {
                    ("power-loss", Op::PowerLoss(targets.clone()))
                };
                let w = self.open(kind, label, at, end);
                self.push(at, op, Some(w));
                if let Some(e) = end {
                    self.push(e, Op::Restart(targets), Some(w));
                }
            }
            FaultKind::Partition | FaultKind::PartitionOneway => {
                let w = self.open(f.kind.as_str(), label, at, end);
                let op = if f.kind == FaultKind::Partition {
                    Op::Partition(a.clone(), b.clone())
                } else {
                    Op::PartitionOneway(a.clone(), b.clone())
                };
                self.push(at, op, Some(w));
                if let Some(e) = end {
                    self.push(e, Op::Heal(a, b), Some(w));
                }
            }
            FaultKind::Hold => {
                let w = self.open("hold", label, at, end);
                self.push(at, Op::Hold(a.clone(), b.clone()), Some(w));
                if let Some(e) = end {
                    self.push(e, Op::Release(a, b), Some(w));
                }
            }
            FaultKind::Latency => {
                let w = self.open("latency", label, at, end);
                self.push(at, Op::Latency(a.clone(), b.clone(), f.latency_ms), Some(w));
                if let Some(e) = end {
                    self.push(e, Op::Latency(a, b, None), Some(w));
                }
            }
            FaultKind::DiskError | FaultKind::DiskFull | FaultKind::SlowDisk => {
                let fault = match f.kind {
                    FaultKind::DiskError => DiskFault::Error,
                    FaultKind::DiskFull => DiskFault::Full,
                    _ => DiskFault::SlowMs(f.latency_ms.unwrap_or(0)),
                };
                let w = self.open(f.kind.as_str(), label, at, end);
                self.push(at, Op::Disk(targets.clone(), fault), Some(w));
                if let Some(e) = end {
                    self.push(e, Op::Disk(targets, DiskFault::None), Some(w));
                }
            }
            FaultKind::StoragePartition => {
                let w = self.open("storage-partition", label, at, end);
                self.push(at, Op::StoragePartition(targets.clone(), true), Some(w));
                if let Some(e) = end {
                    self.push(e, Op::StoragePartition(targets, false), Some(w));
                }
            }
            FaultKind::ClockSkew => {
                let w = self.open("clock-skew", label, at, end);
                self.push(at, Op::ClockSkew(targets.clone(), f.skew_ms), Some(w));
                if let Some(e) = end {
                    self.push(e, Op::ClockSkew(targets, None), Some(w));
                }
            }
            FaultKind::CrashClients => {
                // Each `mco` client is a rack of one for the nodes' machinery.
                let processes: Vec<(String, Vec<u32>)> =
                    targets.into_iter().map(|c| (c, vec![0])).collect();
                let w = self.open("crash-clients", label, at, end);
                self.push(at, Op::CrashNodes(processes.clone()), Some(w));
                if let Some(e) = end {
                    self.push(e, Op::StartNodes(processes), Some(w));
                }
            }
            // Needs the racks' sizes and the seed: `add_node_fault`.
            FaultKind::IsolateNodes | FaultKind::CrashNodes | FaultKind::PacketLoss => {}
            // Undo actions close the most recent open window of the matching kind.
            FaultKind::Restart => {
                let w = self
                    .close_matching("crash", at)
                    .or_else(|| self.close_matching("power-loss", at));
                self.push(at, Op::Restart(targets), w);
            }
            FaultKind::Heal => {
                let w = self
                    .close_matching("partition", at)
                    .or_else(|| self.close_matching("partition-oneway", at));
                self.push(at, Op::Heal(a, b), w);
            }
            FaultKind::Release => {
                let w = self.close_matching("hold", at);
                self.push(at, Op::Release(a, b), w);
            }
            FaultKind::HealAll => {
                for i in 0..self.windows.len() {
                    if self.windows[i].end_ms.is_none() && self.windows[i].start_ms <= at {
                        self.windows[i].end_ms = Some(at);
                    }
                }
                self.push(at, Op::HealAll, None);
            }
        }
    }

    fn close_matching(&mut self, kind: &str, at: u64) -> Option<usize> {
        let i = self
            .windows
            .iter()
            .rposition(|w| w.kind == kind && w.end_ms.is_none() && w.start_ms <= at)?;
        self.windows[i].end_ms = Some(at);
        Some(i)
    }

    fn add_nemesis(
        &mut self,
        n: &NemesisSpec,
        seed: u64,
        hosts: &[String],
        brokers: &[String],
        with_store: &[String],
        with_shared_store: &[String],
    ) {
        let mut rng = SmallRng::seed_from_u64(seed::derive(seed, "nemesis"));
        let crashable = resolve(&n.crash_targets, brokers);
        // The brokers a disk fault (a store) and a storage partition (a shared one) may hit.
        let among = |set: &[String]| -> Vec<String> {
            crashable
                .iter()
                .filter(|b| set.contains(b))
                .cloned()
                .collect()
        };
        let (stored, on_shared) = (among(with_store), among(with_shared_store));
        let edges: Vec<String> = resolve(&n.partition_hosts, hosts)
            .into_iter()
            .filter(|h| !brokers.contains(h))
            .collect();
        let w = &n.weights;
        let kinds = [
            ("crash", w.crash),
            ("partition", w.partition),
            ("partition-oneway", w.partition_oneway),
            ("hold", w.hold),
            ("latency", w.latency),
            // Last, so that a weight of 0 leaves every other draw as it was.
            ("power-loss", w.power_loss),
            ("disk-error", w.disk_error),
            ("storage-partition", w.storage_partition),
            ("broker-partition", w.broker_partition),
        ];
        let total: f64 = kinds.iter().map(|k| k.1).sum();
        let end_ms = secs_to_ms(n.end_s);
        let mut now = secs_to_ms(n.start_s) + secs_to_ms(rng.random_range(0.0..=n.gap_s[0]));
        while now < end_ms {
            let duration = secs_to_ms(rng.random_range(n.duration_s[0]..=n.duration_s[1]));
            let stop = (now + duration).min(end_ms);
            let mut pick = rng.random_range(0.0..total);
            let mut kind = "latency";
            for (k, weight) in kinds {
                if pick < weight {
                    kind = k;
                    break;
                }
                pick -= weight;
            }
            let broker = |rng: &mut SmallRng, from: &[String]| -> Option<String> {
                (!from.is_empty()).then(|| from[rng.random_range(0..from.len())].clone())
            };
            match kind {
                "disk-error" => {
                    if let Some(b) = broker(&mut rng, &stored) {
                        let win = self.open(kind, format!("{kind} {b}"), now, Some(stop));
                        self.push(now, Op::Disk(vec![b.clone()], DiskFault::Error), Some(win));
                        self.push(stop, Op::Disk(vec![b], DiskFault::None), Some(win));
                    }
                }
                "storage-partition" => {
                    if let Some(b) = broker(&mut rng, &on_shared) {
                        let win = self.open(kind, format!("{kind} {b}"), now, Some(stop));
                        let op = |cut| Op::StoragePartition(vec![b.clone()], cut);
                        self.push(now, op(true), Some(win));
                        self.push(stop, op(false), Some(win));
                    }
                }
                "broker-partition" => {
                    // Random halves of the brokers (each side at least one).
                    if crashable.len() >= 2 {
                        let mut order = crashable.clone();
                        for i in (1..order.len()).rev() {
                            order.swap(i, rng.random_range(0..=i));
                        }
                        let cut = rng.random_range(1..order.len());
                        let (a, b) = (order[..cut].to_vec(), order[cut..].to_vec());
                        let label = format!("partition {} / {}", a.join(","), b.join(","));
                        let win = self.open("partition", label, now, Some(stop));
                        self.push(now, Op::Partition(a.clone(), b.clone()), Some(win));
                        self.push(stop, Op::Heal(a, b), Some(win));
                    }
                }
                "crash" | "power-loss" => {
                    if let Some(b) = broker(&mut rng, &crashable) {
                        let win = self.open(kind, format!("{kind} {b}"), now, Some(stop));
                        let op = if kind == "crash" {
                            Op::Crash(vec![b.clone()])
                        } else {
                            Op::PowerLoss(vec![b.clone()])
                        };
                        self.push(now, op, Some(win));
                        self.push(stop, Op::Restart(vec![b]), Some(win));
                    }
                }
                _ => {
                    let (Some(b), false) = (broker(&mut rng, brokers), edges.is_empty()) else {
                        now = stop;
                        continue;
                    };
                    let host = edges[rng.random_range(0..edges.len())].clone();
                    let (a, bb) = (vec![host.clone()], vec![b.clone()]);
                    match kind {
                        "partition" => {
                            let win = self.open(
                                "partition",
                                format!("partition {host} / {b}"),
                                now,
                                Some(stop),
                            );
                            self.push(now, Op::Partition(a.clone(), bb.clone()), Some(win));
                            self.push(stop, Op::Heal(a, bb), Some(win));
                        }
                        "partition-oneway" => {
                            let win = self.open(
                                "partition-oneway",
                                format!("partition-oneway {b} -> {host}"),
                                now,
                                Some(stop),
                            );
                            self.push(now, Op::PartitionOneway(bb.clone(), a.clone()), Some(win));
                            self.push(stop, Op::Heal(a, bb), Some(win));
                        }
                        "hold" => {
                            let win =
                                self.open("hold", format!("hold {host} / {b}"), now, Some(stop));
                            self.push(now, Op::Hold(a.clone(), bb.clone()), Some(win));
                            self.push(stop, Op::Release(a, bb), Some(win));
                        }
                        _ => {
                            let ms = rng.random_range(n.latency_ms[0]..=n.latency_ms[1]);
                            let win = self.open(
                                "latency",
                                format!("latency {ms}ms {host} / {b}"),
                                now,
                                Some(stop),
                            );
                            self.push(now, Op::Latency(a.clone(), bb.clone(), Some(ms)), Some(win));
                            self.push(stop, Op::Latency(a, bb, None), Some(win));
                        }
                    }
                }
            }
            now = stop + secs_to_ms(rng.random_range(n.gap_s[0]..=n.gap_s[1]));
        }
        // Heal everything at the end of the nemesis phase; the rest is liveness.
        self.push(end_ms, Op::HealAll, None);
    }

    /// The earliest-opened window in effect at `at_ms`, counting `settle_ms` after its end
    /// (a connection cut by a fault may be noticed a little later). The checker charges a
    /// loss to the window in which its cause (a crash, a cut connection) happened; it
    /// never charges a loss for merely overlapping a window.
    pub fn window_at(&self, at_ms: u64, settle_ms: u64) -> Option<usize> {
        self.windows.iter().position(|w| {
            w.start_ms <= at_ms
                && w.end_ms
                    .is_none_or(|e| at_ms <= e.saturating_add(settle_ms))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            r#"
name = "t"
duration_s = 300
[[brokers]]
name = "broker-1"
[[brokers]]
name = "broker-2"
[[racks]]
name = "rack-1"
nodes = 3
servers = ["broker-1", "broker-2"]
{extra}
"#
        );
        Scenario::parse(&text, "t.toml").unwrap()
    }

    #[test]
    fn explicit_faults_make_windows_and_undo_actions() {
        let s = scenario(
            r#"
[[faults]]
at_s = 60
kind = "crash"
target = ["broker-2"]
duration_s = 30
[[faults]]
at_s = 100
kind = "partition"
a = ["rack-*"]
b = ["broker-1"]
[[faults]]
at_s = 120
kind = "heal"
a = ["rack-*"]
b = ["broker-1"]
"#,
        );
        let t = Timeline::build(&s, 1);
        assert_eq!(t.windows.len(), 2);
        assert_eq!(t.windows[0].label, "crash broker-2");
        assert_eq!(
            (t.windows[0].start_ms, t.windows[0].end_ms),
            (60_000, Some(90_000))
        );
        assert_eq!(t.windows[1].end_ms, Some(120_000));
        let ops: Vec<(u64, &Op)> = t.actions.iter().map(|a| (a.at_ms, &a.op)).collect();
        assert_eq!(ops[0], (60_000, &Op::Crash(vec!["broker-2".into()])));
        assert_eq!(ops[1], (90_000, &Op::Restart(vec!["broker-2".into()])));
        assert!(matches!(ops[2].1, Op::Partition(a, b) if a == &["rack-1"] && b == &["broker-1"]));
        assert!(matches!(ops[3].1, Op::Heal(..)));
        assert_eq!(t.window_at(55_000, 0), None);
        assert_eq!(t.window_at(60_000, 0), Some(0));
        assert_eq!(t.window_at(92_000, 0), None);
        assert_eq!(t.window_at(92_000, 5_000), Some(0));
        assert_eq!(t.window_at(110_000, 0), Some(1));
    }

    #[test]
    fn power_loss_is_a_crash_window_of_its_own_and_restart_closes_it() {
        let s = scenario(
            r#"
[[faults]]
at_s = 60
kind = "power-loss"
target = ["broker-2"]
[[faults]]
at_s = 70
kind = "restart"
target = ["broker-2"]
"#,
        );
        let t = Timeline::build(&s, 1);
        assert_eq!(t.windows.len(), 1);
        assert_eq!(t.windows[0].kind, "power-loss");
        assert_eq!(t.windows[0].label, "power-loss broker-2");
        assert_eq!(t.windows[0].end_ms, Some(70_000));
        let ops: Vec<&Op> = t.actions.iter().map(|a| &a.op).collect();
        assert_eq!(
            ops,
            [
                &Op::PowerLoss(vec!["broker-2".into()]),
                &Op::Restart(vec!["broker-2".into()])
            ]
        );
        let bad = Scenario::parse(
            "name = \"t\"\nduration_s = 10\n[[brokers]]\nname = \"b\"\n[[faults]]\nat_s = 1\nkind = \"power-loss\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("faults[0].target") && bad.contains("power-loss"),
            "{bad}"
        );
    }

    #[test]
    fn nemesis_draws_power_losses_by_weight_and_a_zero_weight_changes_nothing() {
        let only = scenario(
            r#"
[nemesis]
start_s = 30
end_s = 200
weights = { power_loss = 1 }
"#,
        );
        let t = Timeline::build(&only, 7);
        assert!(!t.windows.is_empty());
        assert!(
            t.windows.iter().all(|w| w.kind == "power-loss"),
            "{:?}",
            t.windows
        );
        assert!(t.actions.iter().any(|a| matches!(a.op, Op::PowerLoss(_))));
        let base = "weights = { crash = 1, partition = 1, hold = 1, latency = 1 }";
        let mix = |w: &str| scenario(&format!("[nemesis]\nstart_s = 30\nend_s = 200\n{w}\n"));
        assert_eq!(
            Timeline::build(&mix(base), 7),
            Timeline::build(&mix(&base.replace(" }", ", power_loss = 0 }")), 7)
        );
    }

    #[test]
    fn nemesis_is_deterministic_per_seed_and_heals_at_the_end() {
        let s = scenario(
            r#"
[nemesis]
start_s = 30
end_s = 200
weights = { crash = 1, partition = 1, hold = 1, latency = 1, partition_oneway = 1 }
"#,
        );
        let a = Timeline::build(&s, 7);
        let b = Timeline::build(&s, 7);
        let c = Timeline::build(&s, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows.len() >= 3, "{:?}", a.windows);
        assert_eq!(a.actions.last().unwrap().op, Op::HealAll);
        assert_eq!(a.actions.last().unwrap().at_ms, 200_000);
        for w in &a.windows {
            assert!(
                w.start_ms >= 30_000 && w.end_ms.unwrap() <= 200_000,
                "{w:?}"
            );
            assert!(w.end_ms.unwrap() >= w.start_ms);
        }
        // Windows never overlap: one fault at a time.
        for pair in a.windows.windows(2) {
            assert!(pair[0].end_ms.unwrap() <= pair[1].start_ms);
        }
    }
}
