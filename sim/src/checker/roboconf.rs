//! Roboconf verdicts: which agents became ready, how long it took, and which agents the
//! DM's heartbeat check would have marked PROBLEM.

use std::collections::{BTreeMap, BTreeSet};

use stampede_reports::RoboconfSummary;

use crate::history::{ClientId, RoboconfLog};

/// Roboconf's DM marks a scoped instance PROBLEM once more than this many of its heartbeat
/// checks in a row found no heartbeat (`ManagedApplication.THRESHOLD`).
const MISSED_CHECKS_MAX: u32 = 2;

/// The summary of a Roboconf run that lasted `end_us`, with heartbeats every
/// `interval_us`.
pub(super) fn summarize(log: &RoboconfLog, interval_us: u64, end_us: u64) -> RoboconfSummary {
    let mut first_model: BTreeMap<ClientId, u64> = BTreeMap::new();
    for &(agent, at) in &log.models {
        first_model.entry(agent).or_insert(at);
    }
    let mut first_import: BTreeMap<(ClientId, ClientId), u64> = BTreeMap::new();
    for &(importer, exporter, at) in &log.imports {
        first_import.entry((importer, exporter)).or_insert(at);
    }
    // Exporters of each (application, tier).
    let mut exporters: BTreeMap<(u32, u32), Vec<ClientId>> = BTreeMap::new();
    for a in &log.agents {
        exporters.entry((a.app, a.tier)).or_default().push(a.id);
    }
    let mut ready_at: Vec<u64> = Vec::new();
    let mut ready_after_ms: Vec<u64> = Vec::new();
    for a in &log.agents {
        let Some(&model) = first_model.get(&a.id) else {
            continue;
        };
        let needed: &[ClientId] = if a.tier > 0 {
            exporters
                .get(&(a.app, a.tier - 1))
                .map(Vec::as_slice)
                .unwrap_or(&[])
        } else {
            &[]
        };
        let mut at = model;
        let mut complete = true;
        for e in needed {
            match first_import.get(&(a.id, *e)) {
                Some(&t) => at = at.max(t),
                None => complete = false,
            }
        }
        if complete {
            ready_at.push(at);
            ready_after_ms.push(at.saturating_sub(a.start_us) / 1000);
        }
    }
    ready_at.sort_unstable();
    ready_after_ms.sort_unstable();
    let quantile = |q: f64| -> Option<u64> {
        if ready_after_ms.is_empty() {
            return None;
        }
        let rank =
            ((q * ready_after_ms.len() as f64).ceil() as usize).clamp(1, ready_after_ms.len());
        Some(ready_after_ms[rank - 1])
    };
    let ready_over_time = ready_at
        .iter()
        .enumerate()
        .map(|(i, at)| (at / 1000, i as u64 + 1))
        .collect();
    RoboconfSummary {
        agents: log.agents.len() as u64,
        ready: ready_at.len() as u64,
        ready_p50_ms: quantile(0.5),
        ready_p99_ms: quantile(0.99),
        ready_max_ms: ready_after_ms.last().copied(),
        dm_problems: dm_problems(log, interval_us, end_us).len() as u64,
        heartbeats: log.heartbeats.len() as u64,
        models: log.models.len() as u64,
        imports: log.imports.len() as u64,
        reconfigured: log
            .reconfigured
            .iter()
            .map(|(c, _)| *c)
            .collect::<BTreeSet<_>>()
            .len() as u64,
        ready_over_time,
    }
}

/// The agents the DM would have marked PROBLEM: its check runs every `interval_us` from
/// its start, counts a miss for every agent it has heard from, and a heartbeat resets the
/// count; more than [`MISSED_CHECKS_MAX`] misses in a row is a PROBLEM.
pub(super) fn dm_problems(log: &RoboconfLog, interval_us: u64, end_us: u64) -> BTreeSet<ClientId> {
    let mut problems = BTreeSet::new();
    let Some(start) = log.dm_started_us else {
        return problems;
    };
    if interval_us == 0 {
        return problems;
    }
    let mut beats: BTreeMap<ClientId, Vec<u64>> = BTreeMap::new();
    for &(agent, at) in &log.heartbeats {
        beats.entry(agent).or_default().push(at);
    }
    for (agent, mut times) in beats {
        times.sort_unstable();
        let mut missed = 0u32;
        let mut next = 0usize;
        let mut check = start + interval_us;
        while check <= end_us {
            let before = next;
            while next < times.len() && times[next] <= check {
                next += 1;
            }
            if next > before {
                missed = 0;
            }
            // The DM knows an agent once its first heartbeat arrived.
            if next > 0 && next == before {
                missed += 1;
                if missed > MISSED_CHECKS_MAX {
                    problems.insert(agent);
                    break;
                }
            }
            check += interval_us;
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RoboconfAgent;

    fn agent(id: u32, app: u32, tier: u32) -> RoboconfAgent {
        RoboconfAgent {
            id: ClientId(id),
            app,
            tier,
            start_us: 0,
        }
    }

    #[test]
    fn an_agent_is_ready_with_its_model_and_every_exporter_it_needs() {
        let mut log = RoboconfLog {
            agents: vec![
                agent(0, 0, 0),
                agent(1, 0, 0),
                agent(2, 0, 1),
                agent(3, 0, 1),
            ],
            ..RoboconfLog::default()
        };
        log.models = vec![
            (ClientId(0), 1_000_000),
            (ClientId(1), 2_000_000),
            (ClientId(2), 3_000_000),
            (ClientId(3), 3_000_000),
        ];
        // Agent 2 hears from both exporters; agent 3 from only one.
        log.imports = vec![
            (ClientId(2), ClientId(0), 4_000_000),
            (ClientId(2), ClientId(1), 5_000_000),
            (ClientId(3), ClientId(0), 4_000_000),
            (ClientId(2), ClientId(1), 9_000_000),
        ];
        let s = summarize(&log, 60_000_000, 100_000_000);
        assert_eq!((s.agents, s.ready), (4, 3));
        assert_eq!(s.ready_max_ms, Some(5_000));
        assert_eq!(s.ready_over_time, [(1_000, 1), (2_000, 2), (5_000, 3)]);
    }

    #[test]
    fn three_checks_in_a_row_without_a_heartbeat_are_a_problem() {
        let s = 60_000_000;
        let mut log = RoboconfLog {
            dm_started_us: Some(0),
            ..RoboconfLog::default()
        };
        // Agent 0 beats every interval; agent 1 stops after its first two beats; agent 2
        // misses two checks, then comes back.
        for k in 0..10 {
            log.heartbeats.push((ClientId(0), k * s + 1_000));
        }
        log.heartbeats.push((ClientId(1), 1_000));
        log.heartbeats.push((ClientId(1), s + 1_000));
        for k in [0, 1, 4, 5, 6, 7, 8, 9] {
            log.heartbeats.push((ClientId(2), k * s + 1_000));
        }
        let p = dm_problems(&log, s, 10 * s);
        assert_eq!(p.into_iter().collect::<Vec<_>>(), [ClientId(1)]);
    }
}
