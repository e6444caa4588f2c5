//! One run of one scenario: build the fault timeline, run the world, check the history,
//! and turn the result into a report.

use std::time::Instant;

use stampede_reports::{
    BrokerCpu, ClientsCpu, ExpectationResult, Failover, FaultLoss, FaultWindow, McoRequest,
    McoSummary, NO_FAULT_LABEL, RunReport, UNEXPLAINED_LISTED_MAX, UnexplainedLoss,
    UnfinishedFailover,
};

use crate::checker::{self, Analysis};
use crate::fault::Timeline;
use crate::history::{History, Recorder};
use crate::scenario::Scenario;
use crate::world::{self, Progress};

/// The result of a run.
pub struct Outcome {
    /// The report (what `stampede run` writes).
    pub report: RunReport,
    /// The checker's analysis.
    pub analysis: Analysis,
    /// The raw history.
    pub history: History,
    /// The fault timeline that was applied.
    pub timeline: Timeline,
}

impl Outcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.report.expectations.iter().all(|e| e.ok)
    }
}

/// Runs `scenario` with `seed`. `replay` is the command that reproduces the run (shown in
/// the report when an expectation fails). The only real clock read is the wall time of the
/// whole run, reported as `wall_seconds`.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    replay: &str,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Outcome> {
    let timeline = Timeline::build(scenario, seed);
    let recorder = Recorder::default();
    // The wall time of the whole run, reported as `wall_seconds` (outside the simulation:
    // it never feeds back into simulated behaviour and determinism tests ignore it).
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    world::run(scenario, seed, &timeline, &recorder, progress)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let history = recorder.take();
    let analysis = checker::analyse(scenario, &timeline, &history);
    let names: Vec<String> = history.clients.iter().map(|c| c.name.clone()).collect();
    let mut report = to_report(
        scenario,
        seed,
        &timeline,
        &analysis,
        &names,
        wall_seconds,
        replay,
    );
    add_loss_paths(&mut report, scenario, &timeline, &history, &analysis);
    report.broker_cpu = broker_cpu(scenario, &history);
    report.clients_cpu = clients_cpu(scenario, &history);
    Ok(Outcome {
        report,
        analysis,
        history,
        timeline,
    })
}

/// Each broker's simulated CPU per second of the scenario, from the world's samples of
/// the CPU time charged so far (taken at every whole simulated second); empty without
/// a cost model.
fn broker_cpu(scenario: &Scenario, history: &History) -> Vec<BrokerCpu> {
    if !scenario.has_cost_model() {
        return Vec::new();
    }
    let end_ms = (scenario.duration_s * 1000.0).round() as u64;
    let samples: Vec<&Vec<u64>> = history
        .cpu_samples
        .iter()
        .filter(|(at_ms, _)| *at_ms <= end_ms)
        .map(|(_, busy)| busy)
        .collect();
    scenario
        .brokers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let at = |k: usize| samples.get(k).and_then(|s| s.get(i)).copied().unwrap_or(0);
            let charged: Vec<u64> = (1..samples.len())
                .map(|k| at(k).saturating_sub(at(k - 1)) / 1000)
                .collect();
            let per_second_us = spread_over_seconds(&charged);
            BrokerCpu {
                broker: b.name.clone(),
                busy_us: per_second_us.iter().sum(),
                per_second_us,
            }
        })
        .collect()
}

/// The clients' simulated CPU by the end of the scenario; `None` without a `[clients]`
/// cost profile.
fn clients_cpu(scenario: &Scenario, history: &History) -> Option<ClientsCpu> {
    Some(ClientsCpu {
        busy_us: history.clients_cpu_ns? / 1000,
        cores: scenario.clients.as_ref()?.cores,
    })
}

/// One simulated CPU does at most a second of work per second. The samples read the
/// broker's published counters, which may be up to 100 ms old, so a saturated second can
/// show a little more than it held and the next a little less: the excess is carried into
/// the following seconds (the total stays what was charged; what is left at the end
/// stays in the last second).
fn spread_over_seconds(charged_us: &[u64]) -> Vec<u64> {
    const SECOND_US: u64 = 1_000_000;
    let mut carry = 0u64;
    let mut out: Vec<u64> = charged_us
        .iter()
        .map(|&c| {
            let due = c + carry;
            let done = due.min(SECOND_US);
            carry = due - done;
            done
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last += carry;
    }
    out
}

/// Lists the unexplained losses of a run by message, with their path.
pub(crate) fn add_loss_paths(
    report: &mut RunReport,
    scenario: &Scenario,
    timeline: &Timeline,
    history: &History,
    a: &Analysis,
) {
    report.unexplained_losses =
        checker::unexplained_paths(scenario, timeline, history, a, UNEXPLAINED_LISTED_MAX)
            .into_iter()
            .map(|(id, sent_ms, path)| UnexplainedLoss { id, sent_ms, path })
            .collect();
}

fn history_name(names: &[String], c: crate::history::ClientId) -> String {
    names
        .get(c.0 as usize)
        .cloned()
        .unwrap_or_else(|| format!("client {}", c.0))
}

/// Turns a checked run into its report (also used by live runs); `names` are the
/// history's client names, by client id.
pub(crate) fn to_report(
    scenario: &Scenario,
    seed: u64,
    timeline: &Timeline,
    a: &Analysis,
    names: &[String],
    wall_seconds: f64,
    replay: &str,
) -> RunReport {
    let expectations: Vec<ExpectationResult> = a
        .verdicts
        .iter()
        .map(|v| ExpectationResult {
            name: v.name.clone(),
            ok: v.ok,
            detail: v.detail.clone(),
            check: v.check.clone(),
        })
        .collect();
    let failed = expectations.iter().any(|e| !e.ok);
    let mut losses_by_fault: Vec<FaultLoss> = timeline
        .windows
        .iter()
        .zip(&a.losses_by_window)
        .map(|(w, lost)| FaultLoss {
            label: w.label.clone(),
            lost: *lost,
        })
        .collect();
    losses_by_fault.push(FaultLoss {
        label: NO_FAULT_LABEL.to_owned(),
        lost: a.losses_outside,
    });
    let mcollective = scenario.workload.mcollective.as_ref().map(|_| McoSummary {
        requests: a.mco_requests,
        replies_expected: a.rounds.iter().map(|r| r.expected).sum(),
        replies_received: a.rounds.iter().map(|r| r.received).sum(),
        per_request: a
            .rounds
            .iter()
            .map(|r| McoRequest {
                request_id: if r.round >> 40 == 1 {
                    format!("directed-{}", r.round & 0xFF_FFFF_FFFF)
                } else {
                    format!("discovery-{}", r.round)
                },
                sent_ms: r.sent_ms,
                expected: r.expected,
                received: r.received,
                first_reply_ms: r.first_reply_ms,
                last_reply_ms: r.last_reply_ms,
            })
            .collect(),
    });
    let losses_by_cause: Vec<FaultLoss> = a
        .losses_by_cause()
        .into_iter()
        .map(|(label, lost)| FaultLoss {
            label: label.to_owned(),
            lost,
        })
        .collect();
    RunReport {
        losses_by_cause,
        unexplained_lost: a.unexplained().count() as u64,
        unexplained_losses: Vec::new(),
        failovers_unfinished: a
            .failovers_unfinished
            .iter()
            .map(|u| UnfinishedFailover {
                client: history_name(names, u.client),
                since_ms: u.since_us / 1000,
            })
            .collect(),
        failovers: a
            .failovers
            .iter()
            .map(|f| Failover {
                client: history_name(names, f.client),
                from: f.from.clone().unwrap_or_default(),
                to: f.to.clone().unwrap_or_default(),
                down_ms: f.down_us / 1000,
                connected_ms: f.connected_us.map(|t| t / 1000),
                up_ms: f.up_us.map(|t| t / 1000),
                attempts: f.attempts,
                failed: f.failed,
                waited_ms: f.waited_us / 1000,
                first_failure: f.first_failure.clone().unwrap_or_default(),
            })
            .collect(),
        scenario: scenario.name.clone(),
        seed,
        target: None,
        sim_seconds: scenario.duration_s,
        wall_seconds,
        messages: a.counts,
        latency_us: a.latency_us.clone(),
        send_delay_us: a.send_delay_us.clone(),
        failover_ms: a.failover_ms.clone(),
        mcollective,
        roboconf: a.roboconf.clone(),
        network: scenario
            .brokers
            .iter()
            .any(|b| !b.connectors.is_empty())
            .then_some(a.network),
        expectations,
        seconds: a.seconds.clone(),
        faults: timeline
            .windows
            .iter()
            .map(|w| FaultWindow {
                kind: w.kind.to_owned(),
                label: w.label.clone(),
                start_ms: w.start_ms,
                end_ms: w.end_ms,
            })
            .collect(),
        losses_by_fault,
        reorders: a.reorders,
        brokers: scenario.brokers.iter().map(|b| b.name.clone()).collect(),
        replay_command: failed.then(|| replay.to_owned()),
        broker_cpu: Vec::new(),
        clients_cpu: None,
        broker_counters: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::spread_over_seconds;

    #[test]
    fn a_second_never_shows_more_cpu_than_it_has_and_nothing_is_lost() {
        // A sample taken late makes one second read 1.08 s and the next 0.92 s.
        let got = spread_over_seconds(&[400_000, 1_080_000, 920_000, 1_050_000, 100_000]);
        assert_eq!(got, [400_000, 1_000_000, 1_000_000, 1_000_000, 150_000]);
        assert_eq!(got.iter().sum::<u64>(), 3_550_000);
        // What is still due at the end stays in the last second.
        assert_eq!(spread_over_seconds(&[1_200_000]), [1_200_000]);
        assert!(spread_over_seconds(&[]).is_empty());
    }
}
