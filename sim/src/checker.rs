//! The checker: turns a run's [`History`] into counts in Jepsen's total-queue vocabulary,
//! latency and failover histograms, MCollective reply coverage, a per-second series, and
//! the verdict of the scenario's expectations.
//!
//! Units of accounting:
//! - queue destinations: one unit per message (it must reach one consumer);
//! - topic destinations: one unit per (message, consumer);
//! - MCollective: one unit per (request round, node): every node should receive each
//!   round's request through at least one broker, and answer it.
//!
//! "Acknowledged" means confirmed by a RECEIPT when the workload asks for receipts, and
//! written by the client otherwise (fire-and-forget: the sender believes it was sent, as
//! MCollective does). "Lost" is acknowledged but never delivered.

use std::collections::{BTreeMap, BTreeSet};

use stampede_broker::client::ClientEvent;
use stampede_reports::hdrhistogram::Histogram;
use stampede_reports::{
    MessageCounts, NetworkSummary, SecondSample, failover_histogram, latency_histogram,
};

use crate::fault::Timeline;
use crate::history::{ClientId, History, SendOutcome};
use crate::scenario::Scenario;

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
    /// Clients that were still disconnected at the end after losing a connection.
    pub failovers_unfinished: u64,
    /// Per-producer reorders seen by consumers.
    pub reorders: u64,
    /// Lost units per fault window (index into the timeline's windows), and outside any.
    pub losses_by_window: Vec<u64>,
    /// Lost units outside every fault window.
    pub losses_outside: u64,
    /// MCollective: requests sent (all clients).
    pub mco_requests: u64,
    /// MCollective rounds.
    pub rounds: Vec<Round>,
    /// Deliveries across network bridges.
    pub network: NetworkSummary,
    /// Per-second series.
    pub seconds: Vec<SecondSample>,
    /// Expectations.
    pub verdicts: Vec<Verdict>,
}

/// Time after a fault window during which MCollective rounds do not count as healthy.
const SETTLE_MS: u64 = 5_000;

fn record(h: &mut Histogram<u64>, v: u64) {
    h.saturating_record(v.max(1));
}

/// Analyses a finished run.
pub fn analyse(scenario: &Scenario, timeline: &Timeline, history: &History) -> Analysis {
    let duration_s = scenario.duration_s.ceil() as u64;
    let brokers: Vec<&str> = scenario.brokers.iter().map(|b| b.name.as_str()).collect();
    let mut a = Analysis {
        counts: MessageCounts::default(),
        latency_us: latency_histogram(),
        send_delay_us: latency_histogram(),
        failover_ms: failover_histogram(),
        failovers_unfinished: 0,
        reorders: 0,
        losses_by_window: vec![0; timeline.windows.len()],
        losses_outside: 0,
        mco_requests: history.requests.len() as u64,
        rounds: Vec::new(),
        network: network_summary(history),
        seconds: (0..duration_s)
            .map(|t_s| SecondSample::new(t_s, brokers.len()))
            .collect(),
        verdicts: Vec::new(),
    };
    let second_of =
        |us: u64| ((us / 1_000_000) as usize).min(duration_s.saturating_sub(1) as usize);
    let lose = |a: &mut Analysis, sent_us: u64| {
        let sent_ms = sent_us / 1000;
        let lifetime = (scenario.duration_s * 1000.0) as u64;
        match timeline.attribute(sent_ms, lifetime) {
            Some(w) => a.losses_by_window[w] += 1,
            None => a.losses_outside += 1,
        }
        if let Some(s) = a.seconds.get_mut(second_of(sent_us)) {
            s.lost += 1;
        }
    };

    // ----- Queue workload ---------------------------------------------------------------
    let no_consumers: Vec<ClientId> = Vec::new();
    let mut by_id: BTreeMap<u64, Vec<&crate::history::DeliveryRecord>> = BTreeMap::new();
    for d in &history.deliveries {
        by_id.entry(d.id).or_default().push(d);
    }
    let sends: BTreeMap<u64, &crate::history::SendRecord> =
        history.sends.iter().map(|s| (s.id, s)).collect();
    for s in &history.sends {
        // A topic message is due at every consumer of its own workload.
        let consumers = history
            .consumers_by_workload
            .get(&s.workload)
            .unwrap_or(&no_consumers);
        let receipts = scenario
            .workload
            .queues
            .get(usize::from(s.workload))
            .is_some_and(|q| q.receipts);
        let units = if s.topic { consumers.len() as u64 } else { 1 };
        a.counts.attempted += units;
        if let Some(sec) = a.seconds.get_mut(second_of(s.intended_us)) {
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
        let deliveries = by_id.get(&s.id).map(Vec::as_slice).unwrap_or(&[]);
        let targets: Vec<Option<ClientId>> = if s.topic {
            consumers.iter().map(|c| Some(*c)).collect()
        } else {
            vec![None]
        };
        for target in targets {
            let mut mine: Vec<&&crate::history::DeliveryRecord> = deliveries
                .iter()
                .filter(|d| target.is_none_or(|c| d.consumer == c))
                .collect();
            mine.sort_by_key(|d| d.at_us);
            match mine.first() {
                Some(first) => {
                    a.counts.delivered += 1;
                    a.counts.duplicated += mine.len() as u64 - 1;
                    if !acked {
                        a.counts.recovered += 1;
                    }
                    let lat = first.at_us.saturating_sub(s.intended_us);
                    record(&mut a.latency_us, lat);
                    if let Some(sec) = a.seconds.get_mut(second_of(first.at_us)) {
                        sec.delivered += 1;
                        record(&mut sec.latency, lat);
                    }
                }
                None if acked => {
                    a.counts.lost += 1;
                    lose(&mut a, s.intended_us);
                }
                None => {}
            }
        }
    }
    for (id, ds) in &by_id {
        if !sends.contains_key(id) {
            a.counts.unexpected += ds.len() as u64;
        }
    }
    // Reorders: per consumer and producer, first deliveries whose sequence number is below
    // one already seen.
    let mut first_seen: BTreeSet<(ClientId, u64)> = BTreeSet::new();
    let mut highest: BTreeMap<(ClientId, ClientId), u64> = BTreeMap::new();
    let mut ordered: Vec<&crate::history::DeliveryRecord> = history.deliveries.iter().collect();
    ordered.sort_by_key(|d| (d.at_us, d.consumer, d.id));
    for d in ordered {
        let Some(s) = sends.get(&d.id) else { continue };
        if !first_seen.insert((d.consumer, d.id)) {
            continue;
        }
        let key = (d.consumer, s.producer);
        let h = highest.entry(key).or_insert(0);
        if s.seq < *h {
            a.reorders += 1;
        } else {
            *h = s.seq;
        }
    }

    // ----- MCollective -------------------------------------------------------------------
    let mut rounds: BTreeMap<u64, Vec<&crate::history::McoRequest>> = BTreeMap::new();
    for r in &history.requests {
        rounds.entry(r.round).or_default().push(r);
    }
    let mut got: BTreeMap<u64, Vec<&crate::history::McoObservation>> = BTreeMap::new();
    for o in &history.request_deliveries {
        got.entry(o.request).or_default().push(o);
    }
    let mut replies: BTreeMap<u64, Vec<&crate::history::McoObservation>> = BTreeMap::new();
    for o in &history.replies {
        replies.entry(o.request).or_default().push(o);
        if let Some(sec) = a.seconds.get_mut(second_of(o.at_us)) {
            sec.mco_replies += 1;
        }
    }
    for (round, reqs) in &rounds {
        let intended = reqs.iter().map(|r| r.intended_us).min().unwrap_or(0);
        let expected: BTreeSet<ClientId> = reqs
            .iter()
            .flat_map(|r| r.expected.iter().copied())
            .collect();
        let written = reqs.iter().any(|r| r.sent_us.is_some());
        let units = expected.len() as u64;
        a.counts.attempted += units;
        if written {
            a.counts.acknowledged += units;
        }
        if let Some(sec) = a.seconds.get_mut(second_of(intended)) {
            sec.attempted += units;
        }
        for r in reqs {
            if let Some(sent) = r.sent_us {
                record(&mut a.send_delay_us, sent.saturating_sub(r.intended_us));
            }
        }
        // Deliveries of this round's requests to nodes.
        let mut first: BTreeMap<ClientId, u64> = BTreeMap::new();
        let mut extra = 0u64;
        for r in reqs {
            for o in got.get(&r.id).map(Vec::as_slice).unwrap_or(&[]) {
                match first.get_mut(&o.node) {
                    Some(t) => {
                        extra += 1;
                        *t = (*t).min(o.at_us);
                    }
                    None => {
                        first.insert(o.node, o.at_us);
                    }
                }
            }
        }
        a.counts.duplicated += extra;
        for (node, at) in &first {
            if !expected.contains(node) {
                a.counts.unexpected += 1;
                continue;
            }
            a.counts.delivered += 1;
            if !written {
                a.counts.recovered += 1;
            }
            let lat = at.saturating_sub(intended);
            record(&mut a.latency_us, lat);
            if let Some(sec) = a.seconds.get_mut(second_of(*at)) {
                sec.delivered += 1;
                record(&mut sec.latency, lat);
            }
        }
        if written {
            for node in &expected {
                if !first.contains_key(node) {
                    a.counts.lost += 1;
                    lose(&mut a, intended);
                }
            }
        }
        // Replies within the collection window.
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
        let in_fault = timeline.windows.iter().any(|w| {
            let (ws, we) = (
                w.start_ms * 1000,
                w.end_ms.map_or(u64::MAX, |e| (e + SETTLE_MS) * 1000),
            );
            ws <= window_end && we >= intended
        });
        let inside_fault = timeline.windows.iter().any(|w| {
            let ends = w.end_ms.map_or(u64::MAX, |e| e * 1000);
            (w.start_ms + SETTLE_MS) * 1000 <= intended && window_end <= ends
        });
        a.rounds.push(Round {
            round: *round,
            sent_ms: intended / 1000,
            expected: units,
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

    // ----- Connections: failover times and connected nodes per broker -------------------
    let mut down_since: BTreeMap<ClientId, u64> = BTreeMap::new();
    let mut broker_of: BTreeMap<ClientId, usize> = BTreeMap::new();
    let mut events: Vec<&(u64, ClientId, ClientEvent)> = history.events.iter().collect();
    events.sort_by_key(|e| e.0);
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
    for (at, client, ev) in events {
        snapshot(
            &mut a,
            (*at / 1_000_000) as usize,
            &mut next_second,
            &broker_of,
        );
        let info = &history.clients[client.0 as usize];
        match ev {
            ClientEvent::Connected { server } => {
                if let Some(name) = info.pool.get(*server)
                    && let Some(b) = brokers.iter().position(|x| x == name)
                {
                    broker_of.insert(*client, b);
                }
            }
            ClientEvent::Resubscribed { .. } => {
                if let Some(t0) = down_since.remove(client) {
                    record(&mut a.failover_ms, (at - t0) / 1000);
                }
            }
            ClientEvent::Disconnected { .. } => {
                broker_of.remove(client);
                down_since.entry(*client).or_insert(*at);
            }
            _ => {}
        }
    }
    snapshot(&mut a, usize::MAX, &mut next_second, &broker_of);
    a.failovers_unfinished = down_since.len() as u64;

    a.verdicts = expectations(scenario, &a);
    a
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

fn ratio(received: u64, expected: u64) -> f64 {
    if expected == 0 {
        1.0
    } else {
        received as f64 / expected as f64
    }
}

fn percentile_ms(h: &Histogram<u64>, q: f64, unit_per_ms: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / unit_per_ms
    }
}

fn expectations(s: &Scenario, a: &Analysis) -> Vec<Verdict> {
    let e = &s.expectations;
    let mut v = Vec::new();
    let mut max = |name: &str, limit: Option<u64>, got: u64| {
        if let Some(l) = limit {
            v.push(Verdict {
                name: name.to_owned(),
                ok: got <= l,
                detail: format!("{got} (at most {l})"),
            });
        }
    };
    max("lost_max", e.lost_max, a.counts.lost);
    max("duplicated_max", e.duplicated_max, a.counts.duplicated);
    max("unexpected_max", e.unexpected_max, a.counts.unexpected);
    max("reorders_max", e.reorders_max, a.reorders);
    max(
        "unattributed_lost_max",
        e.unattributed_lost_max,
        a.losses_outside,
    );
    max(
        "loop_messages_max",
        e.loop_messages_max,
        a.network.loop_messages,
    );
    max(
        "returned_messages_max",
        e.returned_messages_max,
        a.network.returned_messages,
    );
    let mut min = |name: &str, limit: Option<u64>, got: u64| {
        if let Some(l) = limit {
            v.push(Verdict {
                name: name.to_owned(),
                ok: got >= l,
                detail: format!("{got} (at least {l})"),
            });
        }
    };
    min("delivered_min", e.delivered_min, a.counts.delivered);
    min(
        "failover_count_min",
        e.failover_count_min,
        a.failover_ms.len(),
    );
    let fault_losses: u64 = a.losses_by_window.iter().sum();
    min("fault_losses_min", e.fault_losses_min, fault_losses);
    let mut fmax = |name: &str, limit: Option<f64>, got: f64, unit: &str| {
        if let Some(l) = limit {
            v.push(Verdict {
                name: name.to_owned(),
                ok: got <= l,
                detail: format!("{got:.1} {unit} (at most {l} {unit})"),
            });
        }
    };
    fmax(
        "latency_p99_ms_max",
        e.latency_p99_ms_max,
        percentile_ms(&a.latency_us, 0.99, 1000.0),
        "ms",
    );
    fmax(
        "failover_p99_ms_max",
        e.failover_p99_ms_max,
        percentile_ms(&a.failover_ms, 0.99, 1.0),
        "ms",
    );
    let mut fmin = |name: &str, limit: Option<f64>, got: f64, what: String| {
        if let Some(l) = limit {
            v.push(Verdict {
                name: name.to_owned(),
                ok: got + 1e-12 >= l,
                detail: format!("{got:.4} {what} (at least {l})"),
            });
        }
    };
    let (exp, rec) = a
        .rounds
        .iter()
        .fold((0, 0), |(e, r), x| (e + x.expected, r + x.received));
    fmin(
        "mco_reply_ratio_min",
        e.mco_reply_ratio_min,
        ratio(rec, exp),
        format!("= {rec}/{exp} replies"),
    );
    let (exp, rec) = a
        .rounds
        .iter()
        .filter(|r| !r.in_fault)
        .fold((0, 0), |(e, r), x| (e + x.expected, r + x.received));
    fmin(
        "mco_healthy_reply_ratio_min",
        e.mco_healthy_reply_ratio_min,
        ratio(rec, exp),
        format!("= {rec}/{exp} replies outside fault windows"),
    );
    let (exp, rec) = a
        .rounds
        .iter()
        .filter(|r| r.inside_fault)
        .fold((0, 0), |(e, r), x| (e + x.expected, r + x.received));
    let inside = format!("= {rec}/{exp} replies well inside fault windows");
    fmin(
        "mco_fault_reply_ratio_min",
        e.mco_fault_reply_ratio_min,
        ratio(rec, exp),
        inside.clone(),
    );
    let fault_max = e.mco_fault_reply_ratio_max.map(|l| {
        let got = ratio(rec, exp);
        Verdict {
            name: "mco_fault_reply_ratio_max".to_owned(),
            ok: exp > 0 && got <= l + 1e-12,
            detail: format!("{got:.4} {inside} (at most {l})"),
        }
    });
    let last = a.rounds.last();
    fmin(
        "mco_final_reply_ratio_min",
        e.mco_final_reply_ratio_min,
        last.map_or(0.0, |r| ratio(r.received, r.expected)),
        format!(
            "= {}/{} replies to the last request",
            last.map_or(0, |r| r.received),
            last.map_or(0, |r| r.expected)
        ),
    );
    v.extend(fault_max);
    v
}
