//! The checker: turns a run's [`History`] into counts in Jepsen's total-queue vocabulary,
//! the cause of every lost message, latency and failover histograms, MCollective reply
//! coverage, a per-second series, and the verdict of the scenario's expectations.
//!
//! Units of accounting:
//! - queue destinations: one unit per message (it must reach one consumer);
//! - topic destinations: one unit per (message, consumer);
//! - MCollective: one unit per (request, target node): every node a request was meant
//!   for should receive it through at least one broker. A directed request is one SEND
//!   per target; the targets whose SEND was written count as acknowledged, whatever
//!   happened to the others.
//!
//! "Acknowledged" means confirmed by a RECEIPT when the workload asks for receipts, and
//! written by the client otherwise (fire-and-forget: the sender believes it was sent, as
//! MCollective does). "Lost" is acknowledged but never delivered. A message never written
//! is not acknowledged, so it is never lost.
//!
//! Every lost unit gets a cause from evidence in the run, never from time overlap (see
//! [`Cause`]); a loss without one is *unexplained*, and the `unexplained_lost_max`
//! expectation (0 unless the scenario says otherwise) fails the run.

use std::collections::{BTreeMap, BTreeSet};

use stampede_broker::client::{ClientEvent, DisconnectReason};
use stampede_reports::hdrhistogram::Histogram;
use stampede_reports::{
    Check, HistogramName, Measure, MessageCounts, NetworkSummary, RunReport, SecondSample,
    failover_histogram, latency_histogram,
};

use crate::fault::Timeline;
use crate::history::{
    ClientId, DeliveryRecord, DropReason, HeldRef, History, McoObservation, McoRequest,
    RequestKind, SendOutcome, SendRecord,
};
use crate::scenario::Scenario;
use stampede_broker::store::SyncPolicy;

/// One MCollective round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// Round number.
    pub round: u64,
    /// Scheduled time (ms).
    pub sent_ms: u64,
    /// Nodes expected.
    pub expected: u64,
    /// Distinct nodes that replied in time.
    pub received: u64,
    /// First and last reply (ms after the scheduled time).
    pub first_reply_ms: Option<u64>,
    /// Last reply (ms after the scheduled time).
    pub last_reply_ms: Option<u64>,
    /// Whether the round overlapped a fault window (or its settling time).
    pub in_fault: bool,
    /// Whether the round was sent at least the settling time after a fault window began
    /// and its replies were due before the window ended.
    pub inside_fault: bool,
}

/// The verdict of one expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The expectation's key, e.g. `lost_max`.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Observed value and limit.
    pub detail: String,
    /// How it was measured (so that merged shards can be judged again).
    pub check: Option<Check>,
}

/// Why a unit was lost, as the run's evidence shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A broker held it (queued, unacknowledged or unflushed) when it was crashed. For a
    /// broker with a store, not a receipted persistent message: the store must keep those.
    Crashed {
        /// The broker.
        broker: String,
        /// When it was crashed (µs).
        at_us: u64,
    },
    /// A broker with `sync = "interval_ms"` held it, receipted and persistent but not yet
    /// synced, when its power was cut: the risk that sync policy takes.
    PowerLoss {
        /// The broker.
        broker: String,
        /// When its power was cut (µs).
        at_us: u64,
    },
    /// A broker expired it (its TTL passed).
    Expired {
        /// The broker.
        broker: String,
    },
    /// A broker dropped it for a slow consumer.
    SlowConsumer {
        /// The broker.
        broker: String,
    },
    /// A broker refused it with an ERROR.
    Refused {
        /// The broker.
        broker: String,
    },
    /// A broker moved it to the dead-letter queue.
    DeadLettered {
        /// The broker.
        broker: String,
    },
    /// A broker still held it when the run ended (nobody took it in time).
    HeldAtEnd {
        /// The broker.
        broker: String,
    },
    /// The sender wrote it on a connection that was then cut or stalled, with no
    /// receipt, and nothing it wrote later on that connection arrived anywhere.
    StrandedSend {
        /// The sender.
        client: ClientId,
        /// When the sender saw the connection end (µs).
        cut_us: u64,
    },
    /// The target's connection, open when the message was written, was then cut or
    /// stalled, and nothing written after this message arrived on it.
    StrandedDelivery {
        /// The target.
        client: ClientId,
        /// When the target saw the connection end (µs).
        cut_us: u64,
    },
    /// The target's process was killed (`crash-nodes`): its connection, open when the
    /// message was written, ended with it and nothing written later arrived on it; or, for
    /// a topic unit, it was down from such a crash when the message was written.
    TargetCrashed {
        /// The target.
        client: ClientId,
        /// When it was killed (µs).
        at_us: u64,
    },
    /// A topic unit whose target had no connection when the message was written, or had
    /// connected again after losing one and its replayed SUBSCRIBEs had not left yet.
    TargetDisconnected {
        /// The target.
        client: ClientId,
        /// When the message was written (µs).
        at_us: u64,
    },
    /// The sender and the target were on different brokers and the message reached no
    /// target on the target's broker: the route between the two brokers (a network
    /// bridge) was down, not this one delivery.
    NoRoute {
        /// The sender's broker.
        from: String,
        /// The target's broker.
        to: String,
        /// When the message was written (µs).
        at_us: u64,
    },
}

impl Cause {
    /// The label used in reports.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Crashed { .. } => "crash",
            Cause::PowerLoss { .. } => "power-loss",
            Cause::Expired { .. } => "expired",
            Cause::SlowConsumer { .. } => "slow-consumer",
            Cause::Refused { .. } => "refused",
            Cause::DeadLettered { .. } => "dead-lettered",
            Cause::HeldAtEnd { .. } => "held-at-end",
            Cause::StrandedSend { .. } => "stranded-send",
            Cause::StrandedDelivery { .. } => "stranded-delivery",
            Cause::TargetCrashed { .. } => "target-crashed",
            Cause::TargetDisconnected { .. } => "target-disconnected",
            Cause::NoRoute { .. } => "no-route",
        }
    }

    /// Every label, in report order (`power-loss` and `target-crashed` are reported only
    /// when some loss has them, so that reports of runs without them keep their shape).
    pub const LABELS: [&'static str; 12] = [
        "crash",
        "power-loss",
        "expired",
        "slow-consumer",
        "refused",
        "dead-lettered",
        "held-at-end",
        "stranded-send",
        "stranded-delivery",
        "target-crashed",
        "target-disconnected",
        "no-route",
    ];

    /// When the cause took effect (µs), if the evidence dates it.
    fn at_us(&self) -> Option<u64> {
        match self {
            Cause::Crashed { at_us, .. }
            | Cause::PowerLoss { at_us, .. }
            | Cause::TargetCrashed { at_us, .. }
            | Cause::TargetDisconnected { at_us, .. }
            | Cause::NoRoute { at_us, .. } => Some(*at_us),
            Cause::StrandedSend { cut_us, .. } | Cause::StrandedDelivery { cut_us, .. } => {
                Some(*cut_us)
            }
            _ => None,
        }
    }
}

/// What was lost: a queue-workload message (for one consumer, on a topic) or an
/// MCollective request for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A queue-workload message; `consumer` is set for a topic unit.
    Message {
        /// Message id.
        id: u64,
        /// The consumer a topic message was due at.
        consumer: Option<ClientId>,
    },
    /// An MCollective request for one node.
    Request {
        /// Request number.
        id: u64,
        /// The node.
        node: ClientId,
    },
}

/// One lost unit and its cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// What was lost.
    pub unit: Unit,
    /// When it was written (µs).
    pub sent_us: u64,
    /// Why, or `None`: unexplained.
    pub cause: Option<Cause>,
}

/// A client that lost its connection and had none at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfinished {
    /// The client.
    pub client: ClientId,
    /// When it lost its connection (µs).
    pub since_us: u64,
}

/// One client's failover, as its events tell it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverTrace {
    /// The client.
    pub client: ClientId,
    /// The broker whose connection it lost, when known.
    pub from: Option<String>,
    /// The broker it connected to again.
    pub to: Option<String>,
    /// When it lost its connection (µs).
    pub down_us: u64,
    /// When CONNECTED arrived (µs).
    pub connected_us: Option<u64>,
    /// When its subscriptions were replayed (µs): the failover's end.
    pub up_us: Option<u64>,
    /// Connection attempts, the successful one included.
    pub attempts: u32,
    /// Attempts that failed.
    pub failed: u32,
    /// Back-off the policy waited before the attempts (µs).
    pub waited_us: u64,
    /// Why the first failed attempt failed.
    pub first_failure: Option<String>,
}

/// Everything the checker concludes.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Total-queue counts.
    pub counts: MessageCounts,
    /// Delivery latency from the intended send time (µs).
    pub latency_us: Histogram<u64>,
    /// Actual minus intended send time (µs).
    pub send_delay_us: Histogram<u64>,
    /// Disconnect to re-subscribed, per client (ms).
    pub failover_ms: Histogram<u64>,
    /// Clients still without a connection at the end after losing one.
    pub failovers_unfinished: Vec<Unfinished>,
    /// Every failover, finished or not, in the order the connections were lost.
    pub failovers: Vec<FailoverTrace>,
    /// Per-producer reorders seen by consumers.
    pub reorders: u64,
    /// Every lost unit, with its cause.
    pub losses: Vec<Loss>,
    /// Lost units whose cause took effect in each fault window (index into the
    /// timeline's windows, with its settling time).
    pub losses_by_window: Vec<u64>,
    /// Lost units whose cause is outside every fault window, undated or unexplained.
    pub losses_outside: u64,
    /// MCollective: requests sent (all clients).
    pub mco_requests: u64,
    /// MCollective rounds.
    pub rounds: Vec<Round>,
    /// Deliveries across network bridges.
    pub network: NetworkSummary,
    /// Per-second series.
    pub seconds: Vec<SecondSample>,
    /// Roboconf's outcome, with its workload.
    pub roboconf: Option<stampede_reports::RoboconfSummary>,
    /// Expectations.
    pub verdicts: Vec<Verdict>,
}

impl Analysis {
    /// Lost units without a cause.
    pub fn unexplained(&self) -> impl Iterator<Item = &Loss> {
        self.losses.iter().filter(|l| l.cause.is_none())
    }

    /// Lost units per cause label, in [`Cause::LABELS`] order, then `unexplained`.
    pub fn losses_by_cause(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Cause::LABELS.iter().map(|l| (*l, 0)).collect();
        let mut unexplained = 0;
        for l in &self.losses {
            match &l.cause {
                Some(c) => {
                    if let Some(e) = out.iter_mut().find(|e| e.0 == c.label()) {
                        e.1 += 1;
                    }
                }
                None => unexplained += 1,
            }
        }
        out.retain(|(label, n)| !OPTIONAL_LABELS.contains(label) || *n > 0);
        out.push((stampede_reports::UNEXPLAINED_LABEL, unexplained));
        out
    }
}

/// Cause labels reported only when some loss has them.
const OPTIONAL_LABELS: [&str; 2] = ["power-loss", "target-crashed"];

/// Time after a fault window during which MCollective rounds do not count as healthy.
const SETTLE_MS: u64 = 5_000;

fn record(h: &mut Histogram<u64>, v: u64) {
    h.saturating_record(v.max(1));
}

/// One connection of one client, as its events show it.
#[derive(Clone, Debug)]
struct Span {
    /// CONNECTED received (µs).
    up_us: u64,
    /// The connection ended (µs); `None`: open at the end.
    down_us: Option<u64>,
    /// The broker it was to.
    broker: Option<String>,
    /// Whether the client ended it itself.
    shutdown: bool,
    /// Whether the client's process died with it (`crash-nodes`).
    crashed: bool,
    /// For a connection made again after one was lost: when the replayed SUBSCRIBEs had
    /// left the client (`None`: not yet, or never). A first connection subscribes as the
    /// client starts and has no such moment.
    resubscribed_us: Option<Option<u64>>,
}

impl Span {
    fn contains(&self, t: u64) -> bool {
        self.up_us <= t && self.down_us.is_none_or(|d| t <= d)
    }

    /// Whether the client's subscriptions were in place on it at `t`: on a connection made
    /// again after a failover, only once its replayed SUBSCRIBEs had left.
    fn subscribed_at(&self, t: u64) -> bool {
        match self.resubscribed_us {
            None => true,
            Some(at) => at.is_some_and(|at| at <= t),
        }
    }

    /// Whether it was cut or stalled (not closed by its own client, not open at the end).
    fn cut(&self) -> Option<u64> {
        if self.shutdown { None } else { self.down_us }
    }
}

/// The history, indexed for the checker.
struct Ctx<'a> {
    scenario: &'a Scenario,
    timeline: &'a Timeline,
    history: &'a History,
    duration_s: u64,
    brokers: Vec<&'a str>,
    sends: BTreeMap<u64, &'a SendRecord>,
    deliveries_by_id: BTreeMap<u64, Vec<&'a DeliveryRecord>>,
    requests: BTreeMap<u64, &'a McoRequest>,
    request_deliveries: BTreeMap<u64, Vec<&'a McoObservation>>,
    spans: BTreeMap<ClientId, Vec<Span>>,
    /// Per sender: (written µs, whether it arrived anywhere), in time order.
    written_by: BTreeMap<ClientId, Vec<(u64, bool)>>,
    /// Per target: (delivered µs, when the delivered message was written µs).
    received_by: BTreeMap<ClientId, Vec<(u64, u64)>>,
    /// Per request: the brokers of the nodes it reached.
    reached: BTreeMap<u64, BTreeSet<String>>,
    /// Sync policy of every broker with a store.
    stores: BTreeMap<&'a str, SyncPolicy>,
    /// Broker evidence per held message: crashes (broker, µs), drops, held at the end.
    crashed_with: BTreeMap<HeldRef, (String, u64)>,
    /// Receipted persistent messages a power loss took from an `interval_ms` store.
    power_lost: BTreeMap<HeldRef, (String, u64)>,
    dropped: BTreeMap<HeldRef, (String, DropReason)>,
    held_at_end: BTreeMap<HeldRef, String>,
}

impl<'a> Ctx<'a> {
    fn new(scenario: &'a Scenario, timeline: &'a Timeline, history: &'a History) -> Ctx<'a> {
        let mut deliveries_by_id: BTreeMap<u64, Vec<&DeliveryRecord>> = BTreeMap::new();
        for d in &history.deliveries {
            deliveries_by_id.entry(d.id).or_default().push(d);
        }
        let mut request_deliveries: BTreeMap<u64, Vec<&McoObservation>> = BTreeMap::new();
        for o in &history.request_deliveries {
            request_deliveries.entry(o.request).or_default().push(o);
        }
        let mut ctx = Ctx {
            scenario,
            timeline,
            history,
            duration_s: scenario.duration_s.ceil() as u64,
            brokers: scenario.brokers.iter().map(|b| b.name.as_str()).collect(),
            sends: history.sends.iter().map(|s| (s.id, s)).collect(),
            deliveries_by_id,
            requests: history.requests.iter().map(|r| (r.id, r)).collect(),
            request_deliveries,
            spans: spans(history),
            written_by: BTreeMap::new(),
            received_by: BTreeMap::new(),
            reached: BTreeMap::new(),
            stores: scenario
                .brokers
                .iter()
                .filter_map(|b| Some((b.name.as_str(), b.store.as_ref()?.sync)))
                .collect(),
            crashed_with: BTreeMap::new(),
            power_lost: BTreeMap::new(),
            dropped: BTreeMap::new(),
            held_at_end: BTreeMap::new(),
        };
        ctx.index_traffic();
        ctx.index_brokers();
        ctx
    }

    fn index_traffic(&mut self) {
        let h = self.history;
        for s in &h.sends {
            if let Some(t) = s.sent_us {
                let arrived = self.deliveries_by_id.contains_key(&s.id);
                self.written_by
                    .entry(s.producer)
                    .or_default()
                    .push((t, arrived));
            }
        }
        for r in &h.requests {
            if let Some(t) = r.sent_us {
                let arrived = self.request_deliveries.contains_key(&r.id);
                self.written_by
                    .entry(r.client)
                    .or_default()
                    .push((t, arrived));
            }
        }
        for d in &h.deliveries {
            if let Some(w) = self.sends.get(&d.id).and_then(|s| s.sent_us) {
                self.received_by
                    .entry(d.consumer)
                    .or_default()
                    .push((d.at_us, w));
            }
        }
        for o in &h.request_deliveries {
            if let Some(w) = self.requests.get(&o.request).and_then(|r| r.sent_us) {
                self.received_by
                    .entry(o.node)
                    .or_default()
                    .push((o.at_us, w));
            }
            if let Some(b) = self.span_at(o.node, o.at_us).and_then(|s| s.broker.clone()) {
                self.reached.entry(o.request).or_default().insert(b);
            }
        }
        for v in self.written_by.values_mut() {
            v.sort_unstable();
        }
        for v in self.received_by.values_mut() {
            v.sort_unstable();
        }
    }

    fn index_brokers(&mut self) {
        let incarnations = &self.history.incarnations;
        for (i, inc) in incarnations.iter().enumerate() {
            for (m, why) in &inc.dropped {
                self.dropped
                    .entry(m.clone())
                    .or_insert_with(|| (inc.broker.clone(), *why));
            }
            match inc.crashed_us {
                Some(at) => {
                    let store = self.stores.get(inc.broker.as_str()).copied();
                    for m in &inc.held {
                        if let Some(sync) = store {
                            // Recovered by the store: what the next incarnations did
                            // with it is the evidence, not this crash.
                            let later = incarnations[i + 1..]
                                .iter()
                                .filter(|l| l.broker == inc.broker);
                            if later
                                .clone()
                                .any(|l| l.held.contains(m) || l.dropped.iter().any(|d| &d.0 == m))
                            {
                                continue;
                            }
                            // The store promised to keep a receipted persistent message
                            // through a crash, and through a power loss unless it syncs
                            // only every `interval_ms`.
                            if self.promised(m) {
                                if inc.power_loss && sync == SyncPolicy::IntervalMs {
                                    self.power_lost
                                        .entry(m.clone())
                                        .or_insert_with(|| (inc.broker.clone(), at));
                                }
                                continue;
                            }
                        }
                        self.crashed_with
                            .entry(m.clone())
                            .or_insert_with(|| (inc.broker.clone(), at));
                    }
                }
                None => {
                    for m in &inc.held {
                        self.held_at_end
                            .entry(m.clone())
                            .or_insert_with(|| inc.broker.clone());
                    }
                }
            }
        }
    }

    fn second_of(&self, us: u64) -> usize {
        ((us / 1_000_000) as usize).min(self.duration_s.saturating_sub(1) as usize)
    }

    fn name(&self, c: ClientId) -> &str {
        self.history
            .clients
            .get(c.0 as usize)
            .map_or("?", |i| i.name.as_str())
    }

    fn span_at(&self, c: ClientId, t: u64) -> Option<&Span> {
        self.spans.get(&c)?.iter().find(|s| s.contains(t))
    }

    /// The request written at `t` by `sender` reached no node on `target`'s broker, which
    /// is not the sender's.
    fn no_route(&self, request: u64, sender: ClientId, t: u64, target: ClientId) -> Option<Cause> {
        let from = self.span_at(sender, t)?.broker.clone()?;
        let to = self.span_at(target, t)?.broker.clone()?;
        let reached = self.reached.get(&request).is_some_and(|b| b.contains(&to));
        (from != to && !reached).then_some(Cause::NoRoute { from, to, at_us: t })
    }

    /// A queue-workload message sent `persistent:true` and confirmed by a RECEIPT.
    fn promised(&self, m: &HeldRef) -> bool {
        let HeldRef::Message(id) = m else {
            return false;
        };
        self.sends.get(id).is_some_and(|s| {
            s.outcome == SendOutcome::Confirmed
                && self
                    .scenario
                    .workload
                    .queues
                    .get(usize::from(s.workload))
                    .is_some_and(|q| q.persistent)
        })
    }

    /// What the brokers say about a held message: how they lost it, if they did.
    fn broker_evidence(&self, keys: &[HeldRef]) -> Option<Cause> {
        for k in keys {
            if let Some((broker, why)) = self.dropped.get(k) {
                let broker = broker.clone();
                return Some(match why {
                    DropReason::Expired => Cause::Expired { broker },
                    DropReason::SlowConsumer => Cause::SlowConsumer { broker },
                    DropReason::Refused => Cause::Refused { broker },
                    DropReason::DeadLettered => Cause::DeadLettered { broker },
                });
            }
        }
        for k in keys {
            if let Some((broker, at_us)) = self.crashed_with.get(k) {
                return Some(Cause::Crashed {
                    broker: broker.clone(),
                    at_us: *at_us,
                });
            }
        }
        for k in keys {
            if let Some((broker, at_us)) = self.power_lost.get(k) {
                return Some(Cause::PowerLoss {
                    broker: broker.clone(),
                    at_us: *at_us,
                });
            }
        }
        for k in keys {
            if let Some(broker) = self.held_at_end.get(k) {
                return Some(Cause::HeldAtEnd {
                    broker: broker.clone(),
                });
            }
        }
        None
    }

    /// The sender's connection carrying a SEND written at `t` was cut, and nothing the
    /// sender wrote after it on that connection arrived (TCP keeps order, so a later
    /// message that arrived proves this one reached the broker).
    fn stranded_send(&self, sender: ClientId, t: u64) -> Option<Cause> {
        let span = self.span_at(sender, t)?;
        let cut = span.cut()?;
        let later_arrived = self.written_by.get(&sender).is_some_and(|w| {
            w.iter()
                .any(|(at, arrived)| *at > t && *at <= cut && *arrived)
        });
        (!later_arrived).then_some(Cause::StrandedSend {
            client: sender,
            cut_us: cut,
        })
    }

    /// The target's connection open at `t` was cut, and nothing written after `t`
    /// arrived on it.
    fn stranded_delivery(&self, target: ClientId, t: u64) -> Option<Cause> {
        let span = self.span_at(target, t)?;
        let cut = span.cut()?;
        (!self.later_arrived(target, span, cut, t)).then_some(Cause::StrandedDelivery {
            client: target,
            cut_us: cut,
        })
    }

    /// Whether something written after `t` arrived at `target` on `span` before `until`
    /// (TCP keeps order, so it proves that what was written at `t` was not stranded).
    fn later_arrived(&self, target: ClientId, span: &Span, until: u64, t: u64) -> bool {
        self.received_by.get(&target).is_some_and(|r| {
            r.iter()
                .any(|(at, written)| *at >= span.up_us && *at <= until && *written > t)
        })
    }

    /// The cause of a lost unit written by `sender` at `t` for `targets` (several for a
    /// queue message: any consumer could have taken it). `confirmed`: a receipt proves the
    /// broker had it. `topic`: the message was only for targets connected at the time.
    fn explain(
        &self,
        keys: &[HeldRef],
        sender: ClientId,
        t: u64,
        targets: &[ClientId],
        confirmed: bool,
        topic: bool,
    ) -> Option<Cause> {
        if let Some(c) = self.broker_evidence(keys) {
            return Some(c);
        }
        if !confirmed && let Some(c) = self.stranded_send(sender, t) {
            return Some(c);
        }
        for target in targets {
            if let Some(c) = self.target_crashed(*target, t, topic) {
                return Some(c);
            }
            if topic
                && self
                    .span_at(*target, t)
                    .is_none_or(|span| !span.subscribed_at(t))
            {
                return Some(Cause::TargetDisconnected {
                    client: *target,
                    at_us: t,
                });
            }
            if let Some(c) = self.stranded_delivery(*target, t) {
                return Some(c);
            }
        }
        None
    }

    /// The target's process was killed while its connection open at `t` carried the
    /// unit (nothing written after `t` arrived before the crash), or, for a `topic` unit,
    /// it was down at `t` because its last connection had ended in a crash.
    fn target_crashed(&self, target: ClientId, t: u64, topic: bool) -> Option<Cause> {
        let spans = self.spans.get(&target)?;
        let span = match spans.iter().find(|s| s.contains(t)) {
            Some(s) => s,
            None if topic => spans.iter().rev().find(|s| s.up_us <= t)?,
            None => return None,
        };
        if !span.crashed {
            return None;
        }
        let at = span.down_us?;
        (!self.later_arrived(target, span, at, t)).then_some(Cause::TargetCrashed {
            client: target,
            at_us: at,
        })
    }

    /// The path of a lost unit as the history shows it, for the report.
    fn path(&self, sender: ClientId, t: u64, targets: &[ClientId]) -> String {
        let conn = |c: ClientId| match self.span_at(c, t) {
            Some(s) => format!(
                "{} on {} (connected {:.3} s – {})",
                self.name(c),
                s.broker.as_deref().unwrap_or("?"),
                s.up_us as f64 / 1e6,
                s.down_us
                    .map_or("end".to_owned(), |d| format!("{:.3} s", d as f64 / 1e6)),
            ),
            None => format!("{} (not connected)", self.name(c)),
        };
        let mut out = format!("written at {:.3} s by {}", t as f64 / 1e6, conn(sender));
        const SHOWN: usize = 3;
        out.push_str("; due at ");
        let shown: Vec<String> = targets.iter().take(SHOWN).map(|c| conn(*c)).collect();
        out.push_str(&shown.join(", "));
        if targets.len() > SHOWN {
            out.push_str(&format!(" and {} more", targets.len() - SHOWN));
        }
        out
    }

    fn window_of(&self, cause: &Option<Cause>) -> Option<usize> {
        let at_ms = cause.as_ref()?.at_us()? / 1000;
        self.timeline.window_at(at_ms, SETTLE_MS)
    }
}

/// Every client's events and process crashes (`None`), in time order; at the same time
/// an event comes before a crash (a dead process records no events).
fn client_timeline(history: &History) -> Vec<(u64, ClientId, Option<&ClientEvent>)> {
    let mut out: Vec<(u64, ClientId, Option<&ClientEvent>)> = history
        .events
        .iter()
        .map(|(at, c, ev)| (*at, *c, Some(ev)))
        .chain(history.crashes.iter().map(|(at, c)| (*at, *c, None)))
        .collect();
    out.sort_by_key(|e| e.0);
    out
}

/// Every client's connections, from its events and crashes.
fn spans(history: &History) -> BTreeMap<ClientId, Vec<Span>> {
    let mut out: BTreeMap<ClientId, Vec<Span>> = BTreeMap::new();
    for (at, client, ev) in client_timeline(history) {
        match ev {
            Some(ClientEvent::Connected { server }) => {
                let broker = history
                    .clients
                    .get(client.0 as usize)
                    .and_then(|c| c.pool.get(*server))
                    .cloned();
                let spans = out.entry(client).or_default();
                // A process that was killed starts afresh and subscribes as it starts; a
                // client that lost its connection replays its subscriptions on the new one.
                let again = spans.last().is_some_and(|s| !s.crashed);
                spans.push(Span {
                    up_us: at,
                    down_us: None,
                    broker,
                    shutdown: false,
                    crashed: false,
                    resubscribed_us: again.then_some(None),
                });
            }
            Some(ClientEvent::Resubscribed { .. }) => {
                if let Some(s) = out.get_mut(&client).and_then(|v| v.last_mut())
                    && s.down_us.is_none()
                    && s.resubscribed_us == Some(None)
                {
                    s.resubscribed_us = Some(Some(at));
                }
            }
            Some(ClientEvent::Disconnected { reason }) => {
                if let Some(s) = out.get_mut(&client).and_then(|v| v.last_mut())
                    && s.down_us.is_none()
                {
                    s.down_us = Some(at);
                    s.shutdown = *reason == DisconnectReason::Shutdown;
                }
            }
            None => {
                if let Some(s) = out.get_mut(&client).and_then(|v| v.last_mut())
                    && s.down_us.is_none()
                {
                    s.down_us = Some(at);
                    s.crashed = true;
                }
            }
            _ => {}
        }
    }
    out
}

/// Analyses a finished run.
pub fn analyse(scenario: &Scenario, timeline: &Timeline, history: &History) -> Analysis {
    let ctx = Ctx::new(scenario, timeline, history);
    let mut a = Analysis {
        counts: MessageCounts::default(),
        latency_us: latency_histogram(),
        send_delay_us: latency_histogram(),
        failover_ms: failover_histogram(),
        failovers_unfinished: Vec::new(),
        failovers: Vec::new(),
        reorders: 0,
        losses: Vec::new(),
        losses_by_window: vec![0; timeline.windows.len()],
        losses_outside: 0,
        mco_requests: history.requests.len() as u64,
        rounds: Vec::new(),
        network: network_summary(history),
        seconds: (0..ctx.duration_s)
            .map(|t_s| SecondSample::new(t_s, ctx.brokers.len()))
            .collect(),
        roboconf: scenario.workload.roboconf.as_ref().map(|r| {
            roboconf::summarize(
                &history.roboconf,
                (r.heartbeat_interval_s * 1e6) as u64,
                ctx.duration_s * 1_000_000,
            )
        }),
        verdicts: Vec::new(),
    };
    count_queue_messages(&ctx, &mut a);
    count_reorders(&ctx, &mut a);
    count_mcollective_requests(&ctx, &mut a);
    reply_coverage(&ctx, &mut a);
    connections(&ctx, &mut a);
    attribute_losses(&ctx, &mut a);
    a.verdicts = expectations(scenario, &a);
    a
}

/// Records a lost unit and counts it in its second.
fn lose(ctx: &Ctx<'_>, a: &mut Analysis, unit: Unit, sent_us: u64, cause: Option<Cause>) {
    a.counts.lost += 1;
    if let Some(s) = a.seconds.get_mut(ctx.second_of(sent_us)) {
        s.lost += 1;
    }
    a.losses.push(Loss {
        unit,
        sent_us,
        cause,
    });
}

/// Counts a delivered unit: latency from `intended`, and its second.
fn deliver(ctx: &Ctx<'_>, a: &mut Analysis, intended: u64, first_at: u64) {
    a.counts.delivered += 1;
    let lat = first_at.saturating_sub(intended);
    record(&mut a.latency_us, lat);
    if let Some(sec) = a.seconds.get_mut(ctx.second_of(first_at)) {
        sec.delivered += 1;
        record(&mut sec.latency, lat);
    }
}

// ----- Queue workload ---------------------------------------------------------------------

fn count_queue_messages(ctx: &Ctx<'_>, a: &mut Analysis) {
    let no_consumers: Vec<ClientId> = Vec::new();
    for s in &ctx.history.sends {
        // A topic message is due at every consumer of its own workload.
        let consumers = ctx
            .history
            .consumers_by_workload
            .get(&s.workload)
            .unwrap_or(&no_consumers);
        let receipts = ctx
            .scenario
            .workload
            .queues
            .get(usize::from(s.workload))
            .is_some_and(|q| q.receipts);
        let units = if s.topic { consumers.len() as u64 } else { 1 };
        a.counts.attempted += units;
        if let Some(sec) = a.seconds.get_mut(ctx.second_of(s.intended_us)) {
            sec.attempted += units;
        }
        if let Some(sent) = s.sent_us {
            record(&mut a.send_delay_us, sent.saturating_sub(s.intended_us));
        }
        let acked = match s.outcome {
            SendOutcome::Confirmed => true,
            SendOutcome::Written => !receipts,
            _ => false,
        };
        if acked {
            a.counts.acknowledged += units;
        }
        let deliveries = ctx
            .deliveries_by_id
            .get(&s.id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let targets: Vec<Option<ClientId>> = if s.topic {
            consumers.iter().map(|c| Some(*c)).collect()
        } else {
            vec![None]
        };
        for target in targets {
            let first = deliveries
                .iter()
                .filter(|d| target.is_none_or(|c| d.consumer == c))
                .map(|d| d.at_us)
                .min();
            let count = deliveries
                .iter()
                .filter(|d| target.is_none_or(|c| d.consumer == c))
                .count() as u64;
            match first {
                Some(at) => {
                    deliver(ctx, a, s.intended_us, at);
                    a.counts.duplicated += count - 1;
                    if !acked {
                        a.counts.recovered += 1;
                    }
                }
                None if acked => {
                    let written = s.sent_us.unwrap_or(s.intended_us);
                    let due: Vec<ClientId> = match target {
                        Some(c) => vec![c],
                        None => consumers.clone(),
                    };
                    let cause = ctx.explain(
                        &[HeldRef::Message(s.id)],
                        s.producer,
                        written,
                        &due,
                        s.outcome == SendOutcome::Confirmed,
                        s.topic,
                    );
                    let unit = Unit::Message {
                        id: s.id,
                        consumer: target,
                    };
                    lose(ctx, a, unit, written, cause);
                }
                None => {}
            }
        }
    }
    for (id, ds) in &ctx.deliveries_by_id {
        if !ctx.sends.contains_key(id) {
            a.counts.unexpected += ds.len() as u64;
        }
    }
}

/// Reorders: per consumer and producer, first deliveries whose sequence number is below
/// one already seen.
fn count_reorders(ctx: &Ctx<'_>, a: &mut Analysis) {
    let mut first_seen: BTreeSet<(ClientId, u64)> = BTreeSet::new();
    let mut highest: BTreeMap<(ClientId, ClientId), u64> = BTreeMap::new();
    let mut ordered: Vec<&DeliveryRecord> = ctx.history.deliveries.iter().collect();
    ordered.sort_by_key(|d| (d.at_us, d.consumer, d.id));
    for d in ordered {
        let Some(s) = ctx.sends.get(&d.id) else {
            continue;
        };
        if !first_seen.insert((d.consumer, d.id)) {
            continue;
        }
        let h = highest.entry((d.consumer, s.producer)).or_insert(0);
        if s.seq < *h {
            a.reorders += 1;
        } else {
            *h = s.seq;
        }
    }
}

// ----- MCollective ----------------------------------------------------------------------

/// Units of MCollective requests. A broadcast is due once per round at every node
/// (through any client's request of that round); a directed request once at each of
/// its targets. A unit is acknowledged when a SEND meant for that node was written,
/// whatever happened to the SENDs for other nodes.
fn count_mcollective_requests(ctx: &Ctx<'_>, a: &mut Analysis) {
    let mut rounds: BTreeMap<u64, Vec<&McoRequest>> = BTreeMap::new();
    for r in &ctx.history.requests {
        if let Some(sent) = r.sent_us {
            record(&mut a.send_delay_us, sent.saturating_sub(r.intended_us));
        }
        match r.kind {
            RequestKind::Discovery => rounds.entry(r.round).or_default().push(r),
            RequestKind::Directed => count_request_units(ctx, a, &[r]),
        }
    }
    for reqs in rounds.values() {
        count_request_units(ctx, a, reqs);
    }
}

/// Counts the units of requests due at the same nodes: each expected node once.
fn count_request_units(ctx: &Ctx<'_>, a: &mut Analysis, reqs: &[&McoRequest]) {
    let expected: BTreeSet<ClientId> = reqs
        .iter()
        .flat_map(|r| r.expected.iter().copied())
        .collect();
    let intended = reqs.iter().map(|r| r.intended_us).min().unwrap_or(0);
    let written_for = |r: &McoRequest, node: &ClientId| {
        r.sent_us.is_some() && r.expected.contains(node) && !r.unwritten.contains(node)
    };
    let written = |node: &ClientId| reqs.iter().any(|r| written_for(r, node));
    a.counts.attempted += expected.len() as u64;
    if let Some(sec) = a.seconds.get_mut(ctx.second_of(intended)) {
        sec.attempted += expected.len() as u64;
    }
    a.counts.acknowledged += expected.iter().filter(|n| written(n)).count() as u64;
    // First delivery per node, and repeats.
    let mut first: BTreeMap<ClientId, u64> = BTreeMap::new();
    for r in reqs {
        for o in ctx
            .request_deliveries
            .get(&r.id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            match first.get_mut(&o.node) {
                Some(t) => {
                    a.counts.duplicated += 1;
                    *t = (*t).min(o.at_us);
                }
                None => {
                    first.insert(o.node, o.at_us);
                }
            }
        }
    }
    for (node, at) in &first {
        if !expected.contains(node) {
            a.counts.unexpected += 1;
            continue;
        }
        deliver(ctx, a, intended, *at);
        if !written(node) {
            a.counts.recovered += 1;
        }
    }
    for node in expected.iter().filter(|n| written(n)) {
        if first.contains_key(node) {
            continue;
        }
        // Every written request failed to reach the node, so each failure needs a cause
        // (a request from a client on another broker may simply have had no route); the
        // loss is explained only when all have one, by the first that is not "no route".
        let mut causes: Vec<Option<Cause>> = Vec::new();
        let mut sent = None;
        for r in reqs.iter().filter(|r| written_for(r, node)) {
            let t = r.sent_us.unwrap_or(r.intended_us);
            sent.get_or_insert(t);
            let keys = [
                HeldRef::Request {
                    id: r.id,
                    node: Some(*node),
                },
                HeldRef::Request {
                    id: r.id,
                    node: None,
                },
            ];
            let broadcast = r.kind == RequestKind::Discovery;
            causes.push(
                ctx.explain(&keys, r.client, t, &[*node], false, broadcast)
                    .or_else(|| ctx.no_route(r.id, r.client, t, *node)),
            );
        }
        let cause = if causes.iter().all(Option::is_some) {
            let all: Vec<Cause> = causes.into_iter().flatten().collect();
            all.iter()
                .find(|c| !matches!(c, Cause::NoRoute { .. }))
                .or(all.first())
                .cloned()
        } else {
            None
        };
        let Some(r) = reqs.iter().find(|r| written_for(r, node)) else {
            continue;
        };
        let unit = Unit::Request {
            id: r.id,
            node: *node,
        };
        lose(ctx, a, unit, sent.unwrap_or(intended), cause);
    }
}

/// Reply coverage per round (requests sent at the same scheduled instant by all clients).
fn reply_coverage(ctx: &Ctx<'_>, a: &mut Analysis) {
    let mut rounds: BTreeMap<u64, Vec<&McoRequest>> = BTreeMap::new();
    for r in &ctx.history.requests {
        rounds.entry(r.round).or_default().push(r);
    }
    let mut replies: BTreeMap<u64, Vec<&McoObservation>> = BTreeMap::new();
    for o in &ctx.history.replies {
        replies.entry(o.request).or_default().push(o);
        if let Some(sec) = a.seconds.get_mut(ctx.second_of(o.at_us)) {
            sec.mco_replies += 1;
        }
    }
    for (round, reqs) in &rounds {
        let intended = reqs.iter().map(|r| r.intended_us).min().unwrap_or(0);
        let expected: BTreeSet<ClientId> = reqs
            .iter()
            .flat_map(|r| r.expected.iter().copied())
            .collect();
        let mut replied: BTreeMap<ClientId, u64> = BTreeMap::new();
        for r in reqs {
            for o in replies.get(&r.id).map(Vec::as_slice).unwrap_or(&[]) {
                if o.at_us <= r.window_end_us && expected.contains(&o.node) {
                    let e = replied.entry(o.node).or_insert(o.at_us);
                    *e = (*e).min(o.at_us);
                }
            }
        }
        let window_end = reqs
            .iter()
            .map(|r| r.window_end_us)
            .max()
            .unwrap_or(intended);
        let windows = &ctx.timeline.windows;
        let in_fault = windows.iter().any(|w| {
            let (ws, we) = (
                w.start_ms * 1000,
                w.end_ms.map_or(u64::MAX, |e| (e + SETTLE_MS) * 1000),
            );
            ws <= window_end && we >= intended
        });
        let inside_fault = windows.iter().any(|w| {
            let ends = w.end_ms.map_or(u64::MAX, |e| e * 1000);
            (w.start_ms + SETTLE_MS) * 1000 <= intended && window_end <= ends
        });
        a.rounds.push(Round {
            round: *round,
            sent_ms: intended / 1000,
            expected: expected.len() as u64,
            received: replied.len() as u64,
            first_reply_ms: replied
                .values()
                .min()
                .map(|t| t.saturating_sub(intended) / 1000),
            last_reply_ms: replied
                .values()
                .max()
                .map(|t| t.saturating_sub(intended) / 1000),
            in_fault,
            inside_fault,
        });
    }
}

// ----- Connections: failover times and connected nodes per broker -----------------------

fn connections(ctx: &Ctx<'_>, a: &mut Analysis) {
    let history = ctx.history;
    let brokers = &ctx.brokers;
    let mut broker_of: BTreeMap<ClientId, usize> = BTreeMap::new();
    let events = client_timeline(history);
    let mut next_second = 0usize;
    let snapshot =
        |a: &mut Analysis, upto: usize, next: &mut usize, broker_of: &BTreeMap<ClientId, usize>| {
            while *next < upto.min(a.seconds.len()) {
                let mut counts = vec![0u64; brokers.len()];
                for b in broker_of.values() {
                    counts[*b] += 1;
                }
                a.seconds[*next].connected = counts;
                *next += 1;
            }
        };
    let end_us = (ctx.scenario.duration_s * 1e6) as u64;
    // The failover each client is in, by client (since when: `down_us`).
    let mut open: BTreeMap<ClientId, FailoverTrace> = BTreeMap::new();
    for (at, client, ev) in events {
        snapshot(a, (at / 1_000_000) as usize, &mut next_second, &broker_of);
        let Some(info) = history.clients.get(client.0 as usize) else {
            continue;
        };
        match ev {
            Some(ClientEvent::Attempt { delay, .. }) => {
                if let Some(f) = open.get_mut(&client) {
                    f.attempts += 1;
                    f.waited_us += delay.as_micros() as u64;
                }
            }
            Some(ClientEvent::Connected { server }) => {
                let name = info.pool.get(*server);
                if let Some(name) = name
                    && let Some(b) = brokers.iter().position(|x| x == name)
                {
                    broker_of.insert(client, b);
                }
                if let Some(f) = open.get_mut(&client) {
                    f.connected_us = Some(at);
                    f.to = name.cloned();
                }
            }
            Some(ClientEvent::Resubscribed { .. }) => {
                if let Some(mut f) = open.remove(&client) {
                    record(&mut a.failover_ms, (at - f.down_us) / 1000);
                    f.up_us = Some(at);
                    a.failovers.push(f);
                }
            }
            Some(ClientEvent::Disconnected { reason }) => {
                let lost = broker_of.remove(&client);
                if let Some(f) = open.get_mut(&client) {
                    // An attempt of a failover in progress failed (or its new connection
                    // broke before it was subscribed again).
                    f.failed += 1;
                    f.connected_us = None;
                    f.to = None;
                    if f.first_failure.is_none() {
                        f.first_failure = Some(reason.to_string());
                    }
                }
                // A client that shuts itself down at the end is not failing over.
                if *reason != DisconnectReason::Shutdown && at <= end_us {
                    open.entry(client).or_insert_with(|| FailoverTrace {
                        client,
                        from: lost.map(|b| brokers[b].to_string()),
                        down_us: at,
                        ..FailoverTrace::default()
                    });
                }
            }
            // A dead process is not failing over either: it connects afresh when it is
            // started again.
            None => {
                broker_of.remove(&client);
                open.remove(&client);
            }
            _ => {}
        }
    }
    snapshot(a, usize::MAX, &mut next_second, &broker_of);
    // A client that went down in the last settling time of the run had no fair chance.
    let settled = end_us.saturating_sub(SETTLE_MS * 1000);
    a.failovers_unfinished = open
        .values()
        .filter(|f| f.down_us < settled)
        .map(|f| Unfinished {
            client: f.client,
            since_us: f.down_us,
        })
        .collect();
    a.failovers.extend(open.into_values());
    a.failovers.sort_by_key(|f| (f.down_us, f.client));
}

/// Charges each loss whose cause is dated to the fault window it happened in.
fn attribute_losses(ctx: &Ctx<'_>, a: &mut Analysis) {
    for l in &a.losses {
        match ctx.window_of(&l.cause) {
            Some(w) => a.losses_by_window[w] += 1,
            None => a.losses_outside += 1,
        }
    }
}

/// Counts deliveries that came over bridges, and those whose broker path shows a loop: a
/// broker twice in the path (the message crossed a link twice), or the delivering broker
/// in it (the message came back).
fn network_summary(history: &History) -> NetworkSummary {
    let mut n = NetworkSummary::default();
    for d in &history.bridged {
        let path: Vec<&str> = d
            .path
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if path.is_empty() {
            continue;
        }
        n.bridged_deliveries += 1;
        n.max_hops = n.max_hops.max(path.len() as u64);
        let distinct: BTreeSet<&str> = path.iter().copied().collect();
        if distinct.len() < path.len() {
            n.loop_messages += 1;
        }
        if d.broker.as_deref().is_some_and(|b| distinct.contains(b)) {
            n.returned_messages += 1;
        }
    }
    n
}

/// The report's name of one lost unit.
pub fn describe(history: &History, loss: &Loss) -> String {
    let name = |c: ClientId| {
        history
            .clients
            .get(c.0 as usize)
            .map_or("?".to_owned(), |i| i.name.clone())
    };
    match loss.unit {
        Unit::Message { id, consumer } => {
            let send = history.sends.iter().find(|s| s.id == id);
            let what = match send {
                Some(s) => format!("message {id} ({} #{})", name(s.producer), s.seq),
                None => format!("message {id}"),
            };
            match consumer {
                Some(c) => format!("{what} for {}", name(c)),
                None => what,
            }
        }
        Unit::Request { id, node } => format!("request {id} for {}", name(node)),
    }
}

fn path_of(ctx: &Ctx<'_>, l: &Loss) -> String {
    match l.unit {
        Unit::Message { id, consumer } => {
            let Some(s) = ctx.sends.get(&id) else {
                return String::new();
            };
            let targets: Vec<ClientId> = match consumer {
                Some(c) => vec![c],
                None => ctx
                    .history
                    .consumers_by_workload
                    .get(&s.workload)
                    .cloned()
                    .unwrap_or_default(),
            };
            ctx.path(s.producer, l.sent_us, &targets)
        }
        Unit::Request { id, node } => match ctx.requests.get(&id) {
            Some(r) => ctx.path(r.client, l.sent_us, &[node]),
            None => String::new(),
        },
    }
}

/// The unexplained losses with their paths (at most `max`), for the report.
pub fn unexplained_paths(
    scenario: &Scenario,
    timeline: &Timeline,
    history: &History,
    a: &Analysis,
    max: usize,
) -> Vec<(String, u64, String)> {
    let ctx = Ctx::new(scenario, timeline, history);
    a.unexplained()
        .take(max)
        .map(|l| (describe(history, l), l.sent_us / 1000, path_of(&ctx, l)))
        .collect()
}

// ----- Expectations ---------------------------------------------------------------------

fn expectations(s: &Scenario, a: &Analysis) -> Vec<Verdict> {
    let e = &s.expectations;
    // The histograms quantile checks read; the rest of the report is not needed.
    let mut view = RunReport::new(String::new(), 0);
    view.latency_us = a.latency_us.clone();
    view.failover_ms = a.failover_ms.clone();
    let mut v = Vec::new();
    let mut judge =
        |name: &str, limit: Option<f64>, at_most: bool, measure: Measure, what: &str| {
            let Some(limit) = limit else { return };
            let check = Check {
                measure,
                at_most,
                limit,
                allow_no_data: e.allow_no_data,
                what: what.to_owned(),
            };
            let r = stampede_reports::ExpectationResult::judge(name, check, &view);
            v.push(Verdict {
                name: r.name,
                ok: r.ok,
                detail: r.detail,
                check: r.check,
            });
        };
    let count = |n: u64| Measure::Count(n);
    let f = |l: Option<u64>| l.map(|l| l as f64);
    let unexplained = a.unexplained().count() as u64;
    judge("lost_max", f(e.lost_max), true, count(a.counts.lost), "");
    // Every scenario fails on an unexplained loss and on a client that never came back,
    // unless it says otherwise.
    judge(
        "unexplained_lost_max",
        Some(e.unexplained_lost_max.unwrap_or(0) as f64),
        true,
        count(unexplained),
        "",
    );
    judge(
        "failovers_unfinished_max",
        Some(e.failovers_unfinished_max.unwrap_or(0) as f64),
        true,
        count(a.failovers_unfinished.len() as u64),
        "",
    );
    judge(
        "duplicated_max",
        f(e.duplicated_max),
        true,
        count(a.counts.duplicated),
        "",
    );
    judge(
        "unexpected_max",
        f(e.unexpected_max),
        true,
        count(a.counts.unexpected),
        "",
    );
    judge(
        "reorders_max",
        f(e.reorders_max),
        true,
        count(a.reorders),
        "",
    );
    judge(
        "loop_messages_max",
        f(e.loop_messages_max),
        true,
        count(a.network.loop_messages),
        "",
    );
    judge(
        "returned_messages_max",
        f(e.returned_messages_max),
        true,
        count(a.network.returned_messages),
        "",
    );
    judge(
        "delivered_min",
        f(e.delivered_min),
        false,
        count(a.counts.delivered),
        "",
    );
    judge(
        "failover_count_min",
        f(e.failover_count_min),
        false,
        count(a.failover_ms.len()),
        "",
    );
    let fault_losses: u64 = a.losses_by_window.iter().sum();
    judge(
        "fault_losses_min",
        f(e.fault_losses_min),
        false,
        count(fault_losses),
        "",
    );
    let quantile = |histogram| Measure::Quantile {
        histogram,
        quantile: 0.99,
    };
    judge(
        "latency_p99_ms_max",
        e.latency_p99_ms_max,
        true,
        quantile(HistogramName::LatencyUs),
        "delivery latency",
    );
    judge(
        "failover_p99_ms_max",
        e.failover_p99_ms_max,
        true,
        quantile(HistogramName::FailoverMs),
        "failovers",
    );
    let ratio = |keep: &dyn Fn(&Round) -> bool| {
        let (den, num) = a
            .rounds
            .iter()
            .filter(|r| keep(r))
            .fold((0, 0), |(e, r), x| (e + x.expected, r + x.received));
        Measure::Ratio { num, den }
    };
    judge(
        "mco_reply_ratio_min",
        e.mco_reply_ratio_min,
        false,
        ratio(&|_| true),
        "replies",
    );
    judge(
        "mco_healthy_reply_ratio_min",
        e.mco_healthy_reply_ratio_min,
        false,
        ratio(&|r| !r.in_fault),
        "replies outside fault windows",
    );
    judge(
        "mco_fault_reply_ratio_min",
        e.mco_fault_reply_ratio_min,
        false,
        ratio(&|r| r.inside_fault),
        "replies well inside fault windows",
    );
    let last = a.rounds.last().map(|r| r.round);
    judge(
        "mco_final_reply_ratio_min",
        e.mco_final_reply_ratio_min,
        false,
        ratio(&|r| Some(r.round) == last),
        "replies to the last request",
    );
    let rc = a.roboconf.as_ref();
    judge(
        "roboconf_ready_ratio_min",
        e.roboconf_ready_ratio_min,
        false,
        Measure::Ratio {
            num: rc.map_or(0, |r| r.ready),
            den: rc.map_or(0, |r| r.agents),
        },
        "Roboconf agents ready",
    );
    judge(
        "roboconf_dm_problems_max",
        f(e.roboconf_dm_problems_max),
        true,
        count(rc.map_or(0, |r| r.dm_problems)),
        "",
    );
    judge(
        "mco_fault_reply_ratio_max",
        e.mco_fault_reply_ratio_max,
        true,
        ratio(&|r| r.inside_fault),
        "replies well inside fault windows",
    );
    v
}

mod roboconf;

#[cfg(test)]
mod tests;
