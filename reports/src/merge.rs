//! Merging the reports of shards (`--shard i/n`) into the report of the whole run.
//!
//! Counts are summed and histograms added, never percentiles averaged: the p99 of the
//! merge is the p99 of all recorded values, exactly as if one process had recorded them.

use hdrhistogram::Histogram;

use crate::model::{
    ExpectationResult, FaultLoss, FaultWindow, McoSummary, NetworkSummary, RunReport, SecondSample,
    UNEXPLAINED_LISTED_MAX,
};

/// Merges shard reports into one.
///
/// - `scenario`, `seed`, `target`: from the first report.
/// - `sim_seconds`, `wall_seconds`: the largest (shards run side by side).
/// - `messages`, `reorders`: summed.
/// - `latency_us`, `send_delay_us`, `failover_ms`: added (exact; a histogram grows its
///   range if another shard recorded larger values).
/// - `mcollective`: totals summed, per-request rows concatenated and ordered by
///   `(sent_ms, request_id)`; `None` only when no shard had MCollective traffic. Request
///   ids should be unique across shards.
/// - `expectations`: one per name in first-seen order. When every shard carries the
///   expectation's [`Check`](crate::Check) (the same bound), it is judged again on the
///   merged data: counts and ratios added, quantiles read from the merged histograms,
///   so a `*_max` limit that held in every shard fails when the total exceeds it.
///   Otherwise `ok` only if it held in every shard, and `detail` is kept when all shards
///   agree and otherwise lists each shard's, as `shard 0: …; shard 1: …`.
/// - `losses_by_cause`: summed per label, in first-seen order; `unexplained_lost`
///   summed; `unexplained_losses`, `failovers_unfinished` and `failovers` concatenated (the first
///   [`UNEXPLAINED_LISTED_MAX`] unexplained losses kept).
/// - `seconds`: rows with the same `t_s` are combined (counts summed, histograms added,
///   connections summed per broker name); the result is ordered by `t_s`.
/// - `faults`: concatenated without exact duplicates (every shard of one scenario sees
///   the same fault schedule).
/// - `losses_by_fault`: summed per label, in first-seen order.
/// - `brokers`: the union in first-seen order.
/// - `broker_cpu`: summed per broker name (per second too), in first-seen order.
/// - `clients_cpu`: CPU time and cores summed (each shard's clients had cores of their own).
/// - `broker_counters`: one broker read by every shard, so per series the earliest
///   `before` and the latest `after`, not a sum.
/// - `replay_command`: the first one present.
///
/// An empty slice gives [`RunReport::default`].
pub fn merge(reports: &[RunReport]) -> RunReport {
    let Some(first) = reports.first() else {
        return RunReport::default();
    };
    let mut out = RunReport::new(first.scenario.clone(), first.seed);
    out.target = first.target.clone();
    out.latency_us = growable(&first.latency_us);
    out.send_delay_us = growable(&first.send_delay_us);
    out.failover_ms = growable(&first.failover_ms);
    out.sim_seconds = first.sim_seconds;
    out.wall_seconds = first.wall_seconds;

    for b in reports.iter().flat_map(|r| &r.brokers) {
        if !out.brokers.contains(b) {
            out.brokers.push(b.clone());
        }
    }

    let mut expectation_details: Vec<Vec<String>> = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        // `f64::max` ignores a NaN operand, so one shard without a duration does not
        // erase the others'.
        out.sim_seconds = out.sim_seconds.max(r.sim_seconds);
        out.wall_seconds = out.wall_seconds.max(r.wall_seconds);
        out.messages.add(&r.messages);
        out.reorders = out.reorders.saturating_add(r.reorders);
        if i > 0 {
            add_into(&mut out.latency_us, &r.latency_us);
            add_into(&mut out.send_delay_us, &r.send_delay_us);
            add_into(&mut out.failover_ms, &r.failover_ms);
        }
        if let Some(m) = &r.mcollective {
            let acc = out.mcollective.get_or_insert_with(McoSummary::default);
            acc.requests = acc.requests.saturating_add(m.requests);
            acc.replies_expected = acc.replies_expected.saturating_add(m.replies_expected);
            acc.replies_received = acc.replies_received.saturating_add(m.replies_received);
            acc.per_request.extend(m.per_request.iter().cloned());
        }
        if let Some(n) = &r.network {
            let acc = out.network.get_or_insert_with(NetworkSummary::default);
            acc.bridged_deliveries = acc.bridged_deliveries.saturating_add(n.bridged_deliveries);
            acc.max_hops = acc.max_hops.max(n.max_hops);
            acc.loop_messages = acc.loop_messages.saturating_add(n.loop_messages);
            acc.returned_messages = acc.returned_messages.saturating_add(n.returned_messages);
        }
        for e in &r.expectations {
            match out.expectations.iter().position(|x| x.name == e.name) {
                Some(at) => {
                    out.expectations[at].ok &= e.ok;
                    expectation_details[at].push(format!("shard {i}: {}", e.detail));
                }
                None => {
                    out.expectations.push(ExpectationResult {
                        name: e.name.clone(),
                        ok: e.ok,
                        detail: e.detail.clone(),
                        check: None,
                    });
                    expectation_details.push(vec![format!("shard {i}: {}", e.detail)]);
                }
            }
        }
        for f in &r.faults {
            if !out.faults.contains(f) {
                out.faults.push(FaultWindow::clone(f));
            }
        }
        for l in &r.losses_by_fault {
            match out.losses_by_fault.iter_mut().find(|x| x.label == l.label) {
                Some(acc) => acc.lost = acc.lost.saturating_add(l.lost),
                None => out.losses_by_fault.push(FaultLoss::clone(l)),
            }
        }
        for l in &r.losses_by_cause {
            match out.losses_by_cause.iter_mut().find(|x| x.label == l.label) {
                Some(acc) => acc.lost = acc.lost.saturating_add(l.lost),
                None => out.losses_by_cause.push(FaultLoss::clone(l)),
            }
        }
        out.unexplained_lost = out.unexplained_lost.saturating_add(r.unexplained_lost);
        for c in &r.broker_cpu {
            match out.broker_cpu.iter_mut().find(|x| x.broker == c.broker) {
                Some(acc) => {
                    acc.busy_us = acc.busy_us.saturating_add(c.busy_us);
                    if acc.per_second_us.len() < c.per_second_us.len() {
                        acc.per_second_us.resize(c.per_second_us.len(), 0);
                    }
                    for (a, v) in acc.per_second_us.iter_mut().zip(&c.per_second_us) {
                        *a = a.saturating_add(*v);
                    }
                }
                None => out.broker_cpu.push(c.clone()),
            }
        }
        if let Some(c) = r.clients_cpu {
            let acc = out.clients_cpu.get_or_insert_default();
            acc.busy_us = acc.busy_us.saturating_add(c.busy_us);
            acc.cores = acc.cores.saturating_add(c.cores);
        }
        // Shards read the same broker: its counters over the union of their windows.
        for c in &r.broker_counters {
            match out
                .broker_counters
                .iter_mut()
                .find(|x| x.series == c.series)
            {
                Some(acc) => {
                    acc.before = acc.before.min(c.before);
                    acc.after = acc.after.max(c.after);
                }
                None => out.broker_counters.push(c.clone()),
            }
        }
        out.unexplained_losses
            .extend(r.unexplained_losses.iter().cloned());
        out.unexplained_losses.truncate(UNEXPLAINED_LISTED_MAX);
        out.failovers_unfinished
            .extend(r.failovers_unfinished.iter().cloned());
        out.failovers.extend(r.failovers.iter().cloned());
        if out.replay_command.is_none() {
            out.replay_command = r.replay_command.clone();
        }
        merge_seconds(&mut out.seconds, &out.brokers, r);
    }

    // Keep a shared detail as it is; spell out differing ones per shard.
    for (e, details) in out.expectations.iter_mut().zip(expectation_details) {
        let first_detail = e.detail.clone();
        let all_same = reports
            .iter()
            .flat_map(|r| r.expectations.iter().filter(|x| x.name == e.name))
            .all(|x| x.detail == first_detail);
        if !all_same {
            e.detail = details.join("; ");
        }
    }

    rejudge(&mut out, reports);

    if let Some(m) = &mut out.mcollective {
        m.per_request
            .sort_by(|a, b| (a.sent_ms, &a.request_id).cmp(&(b.sent_ms, &b.request_id)));
    }
    out.seconds.sort_by_key(|s| s.t_s);
    out.failovers
        .sort_by(|a, b| (a.down_ms, &a.client).cmp(&(b.down_ms, &b.client)));
    out
}

/// Judges again, on the merged report, every expectation that every shard measured with
/// the same check.
fn rejudge(out: &mut RunReport, reports: &[RunReport]) {
    for i in 0..out.expectations.len() {
        let name = out.expectations[i].name.clone();
        let mut combined: Option<crate::model::Check> = None;
        let mut complete = true;
        for r in reports {
            let check = r
                .expectations
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.check.as_ref());
            combined = match (combined, check) {
                (None, Some(c)) => Some(c.clone()),
                (Some(acc), Some(c)) => acc.combine(c),
                _ => None,
            };
            if combined.is_none() {
                complete = false;
                break;
            }
        }
        if let (true, Some(check)) = (complete, combined) {
            let judged = ExpectationResult::judge(name, check, out);
            out.expectations[i] = judged;
        }
    }
}

/// A copy of `h` that resizes itself instead of rejecting larger values on `add`.
fn growable(h: &Histogram<u64>) -> Histogram<u64> {
    let mut h = h.clone();
    h.auto(true);
    h
}

/// Adds `src` into the auto-resizing `acc`.
fn add_into(acc: &mut Histogram<u64>, src: &Histogram<u64>) {
    // Invariant: `acc` was made by `growable`, so values beyond its range make it grow
    // instead of failing; addition cannot fail otherwise.
    acc.add(src)
        .expect("adding into an auto-resizing histogram cannot fail");
}

/// Adds the rows of `r` into `acc` (keyed by `t_s`), mapping connection counts by broker
/// name onto `brokers`, the merged broker order.
fn merge_seconds(acc: &mut Vec<SecondSample>, brokers: &[String], r: &RunReport) {
    for s in &r.seconds {
        let row = match acc.iter().position(|x| x.t_s == s.t_s) {
            Some(at) => &mut acc[at],
            None => {
                let mut fresh = SecondSample::new(s.t_s, 0);
                fresh.latency = growable(&s.latency);
                fresh.latency.reset();
                acc.push(fresh);
                // Invariant: just pushed, so the vector is not empty.
                acc.last_mut().expect("row was just pushed")
            }
        };
        row.attempted = row.attempted.saturating_add(s.attempted);
        row.delivered = row.delivered.saturating_add(s.delivered);
        row.lost = row.lost.saturating_add(s.lost);
        row.mco_replies = row.mco_replies.saturating_add(s.mco_replies);
        add_into(&mut row.latency, &s.latency);
        for (name, &n) in r.brokers.iter().zip(&s.connected) {
            // Invariant: `brokers` is the union of every report's brokers.
            let at = brokers
                .iter()
                .position(|b| b == name)
                .expect("brokers holds every shard's brokers");
            if row.connected.len() <= at {
                row.connected.resize(at + 1, 0);
            }
            row.connected[at] = row.connected[at].saturating_add(n);
        }
    }
}
