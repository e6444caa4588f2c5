//! A synthetic but plausible run, generated message by message, so that tests can build
//! the whole report and the reports of shards from the same events.
//!
//! 300 nodes on 3 brokers each send a message every 1.5 s for 120 s. `broker-2` crashes
//! from 30 s to 45 s (its nodes fail over, a few in-flight messages are lost), a
//! partition between `broker-1` and `broker-3` from 70 s to 80 s delays and loses some
//! messages, and `broker-3` is paused at 105 s and never resumes. An MCollective request
//! goes to every node every 5 s.

#![allow(dead_code)]

use stampede_reports::{
    ExpectationResult, Failover, FaultLoss, FaultWindow, McoRequest, McoSummary, NO_FAULT_LABEL,
    NetworkSummary, RunReport, SecondSample, failover_histogram, latency_histogram,
};

pub(crate) const NODES: u64 = 300;
pub(crate) const BROKERS: [&str; 3] = ["broker-1", "broker-2", "broker-3"];
const SEND_EVERY_MS: u64 = 1_500;
const RUN_MS: u64 = 120_000;
const CRASH: (u64, u64) = (30_000, 45_000);
const PARTITION: (u64, u64) = (70_000, 80_000);
const PAUSE_AT: u64 = 105_000;

/// A deterministic hash: the same inputs give the same "random" number.
fn mix(a: u64, b: u64) -> u64 {
    let mut x = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .wrapping_add(0x1656_67B1_9E37_79F9);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x
}

/// Where a node is connected over time: (from_ms, broker index or None while failing
/// over).
fn connection_plan(node: u64) -> Vec<(u64, Option<usize>)> {
    let home = (node % 3) as usize;
    let mut plan = vec![(0, Some(home))];
    let mut current = home;
    if home == 1 {
        // broker-2 crashes: reconnect to broker-1 or broker-3 after 0.5–6.5 s.
        let back = CRASH.0 + 500 + mix(node, 1) % 6_000;
        current = if (node / 3) % 2 == 0 { 0 } else { 2 };
        plan.push((CRASH.0, None));
        plan.push((back, Some(current)));
    }
    if current == 2 {
        // broker-3 pauses: heartbeats time out after 3–10 s, then broker-1.
        let back = PAUSE_AT + 3_000 + mix(node, 2) % 7_000;
        plan.push((PAUSE_AT, None));
        plan.push((back, Some(0)));
    }
    plan
}

fn connected_at(plan: &[(u64, Option<usize>)], t_ms: u64) -> Option<usize> {
    plan.iter()
        .rev()
        .find(|(from, _)| *from <= t_ms)
        .and_then(|(_, b)| *b)
}

/// When a node disconnected at `t_ms` gets its connection back.
fn reconnect_after(plan: &[(u64, Option<usize>)], t_ms: u64) -> u64 {
    plan.iter()
        .find(|(from, b)| *from > t_ms && b.is_some())
        .map(|(from, _)| *from)
        .unwrap_or(t_ms)
}

pub(crate) fn faults() -> Vec<FaultWindow> {
    vec![
        FaultWindow {
            kind: "crash".into(),
            label: "crash broker-2".into(),
            start_ms: CRASH.0,
            end_ms: Some(CRASH.1),
        },
        FaultWindow {
            kind: "partition".into(),
            label: "partition broker-1 | broker-3".into(),
            start_ms: PARTITION.0,
            end_ms: Some(PARTITION.1),
        },
        FaultWindow {
            kind: "pause".into(),
            label: "pause broker-3".into(),
            start_ms: PAUSE_AT,
            end_ms: None,
        },
    ]
}

/// The report of the nodes and requests that `in_shard` selects (by node for messages,
/// connections and failovers, by request number for MCollective).
pub(crate) fn build(in_shard: &dyn Fn(u64) -> bool, with_expectations: bool) -> RunReport {
    let mut r = RunReport::new("mco-failover", 42);
    r.brokers = BROKERS.iter().map(|b| b.to_string()).collect();
    r.faults = faults();
    r.wall_seconds = 2.5;
    r.replay_command = Some("stampede run scenarios/mco-failover.toml --seed 42".into());

    let mut seconds: Vec<SecondSample> = Vec::new();
    let second = |seconds: &mut Vec<SecondSample>, t_ms: u64| -> usize {
        let t_s = t_ms / 1000;
        while seconds.len() as u64 <= t_s {
            let n = seconds.len() as u64;
            seconds.push(SecondSample::new(n, BROKERS.len()));
        }
        t_s as usize
    };
    let mut lost_by_label: Vec<(String, u64)> = r
        .faults
        .iter()
        .map(|f| (f.label.clone(), 0))
        .chain(std::iter::once((NO_FAULT_LABEL.to_string(), 0)))
        .collect();

    for node in (0..NODES).filter(|n| in_shard(*n)) {
        let plan = connection_plan(node);
        // Failovers: each disconnection until the next connection.
        for w in plan.windows(2) {
            if w[1].1.is_none() {
                continue;
            }
            if w[0].1.is_none() {
                r.failover_ms.record(w[1].0 - w[0].0).unwrap();
            }
        }
        let mut last_delivery = 0u64;
        let mut k = 0;
        loop {
            let intended = (node * 37) % SEND_EVERY_MS + k * SEND_EVERY_MS;
            if intended >= RUN_MS {
                break;
            }
            k += 1;
            let rnd = mix(node, k);
            let sent = match connected_at(&plan, intended) {
                Some(_) => intended,
                None => reconnect_after(&plan, intended),
            };
            let send_delay_us = (sent - intended) * 1000 + rnd % 40;
            let mut latency_us = send_delay_us + 300 + rnd % 700;
            if rnd % 100 == 0 {
                latency_us += 5_000 + rnd % 20_000;
            }
            let mut lost = false;
            // In flight on broker-2 when it crashed: acknowledged, never forwarded.
            if node % 3 == 1 && intended < CRASH.0 && intended + 150 >= CRASH.0 {
                lost = true;
            }
            // Stuck between the partitioned brokers.
            if intended >= PARTITION.0 && intended < PARTITION.1 && node % 3 != 1 {
                if rnd % 10 < 3 {
                    latency_us += 200_000 + rnd % 1_800_000;
                }
                if rnd % 150 == 7 {
                    lost = true;
                }
            }
            r.messages.attempted += 1;
            let i = second(&mut seconds, intended);
            seconds[i].attempted += 1;
            r.send_delay_us.record(send_delay_us).unwrap();
            if lost {
                r.messages.acknowledged += 1;
                r.messages.lost += 1;
                seconds[i].lost += 1;
                let label = r
                    .faults
                    .iter()
                    .find(|f| f.overlaps(intended, intended + 151))
                    .map(|f| f.label.clone())
                    .unwrap_or_else(|| NO_FAULT_LABEL.to_string());
                if let Some(e) = lost_by_label.iter_mut().find(|(l, _)| *l == label) {
                    e.1 += 1;
                }
                continue;
            }
            // Sent just before the crash without a receipt: arrived anyway.
            if node % 3 == 1 && intended + 150 < CRASH.0 && intended + 400 >= CRASH.0 {
                r.messages.recovered += 1;
                r.messages.duplicated += u64::from(rnd % 2 == 0);
            } else {
                r.messages.acknowledged += 1;
            }
            r.messages.delivered += 1;
            r.latency_us.record(latency_us).unwrap();
            let delivered_at = intended + latency_us / 1000;
            if delivered_at < last_delivery {
                r.reorders += 1;
            }
            last_delivery = last_delivery.max(delivered_at);
            let j = second(&mut seconds, delivered_at);
            seconds[j].delivered += 1;
            seconds[j].latency.record(latency_us).unwrap();
        }
    }

    let mut mco = McoSummary::default();
    for q in 0..RUN_MS / 5_000 {
        if !in_shard(q) {
            continue;
        }
        let sent = 2_500 + q * 5_000;
        let mut row = McoRequest {
            request_id: format!("req-{q:04}"),
            sent_ms: sent,
            expected: NODES,
            received: 0,
            first_reply_ms: None,
            last_reply_ms: None,
        };
        for node in 0..NODES {
            let plan = connection_plan(node);
            let at = sent + 20 + mix(node, 1_000 + q) % 400;
            if connected_at(&plan, sent).is_none() || connected_at(&plan, at).is_none() {
                continue;
            }
            row.received += 1;
            row.first_reply_ms = Some(row.first_reply_ms.map_or(at, |f| f.min(at)));
            row.last_reply_ms = Some(row.last_reply_ms.map_or(at, |l| l.max(at)));
            let j = second(&mut seconds, at);
            seconds[j].mco_replies += 1;
        }
        mco.requests += 1;
        mco.replies_expected += row.expected;
        mco.replies_received += row.received;
        mco.per_request.push(row);
    }
    let (mco_expected, mco_received) = (mco.replies_expected, mco.replies_received);
    r.mcollective = Some(mco);
    // Deliveries over network bridges: counts add up over shards, hops take the maximum.
    let mut network = NetworkSummary::default();
    for node in (0..NODES).filter(|n| in_shard(*n)) {
        network.bridged_deliveries += 2;
        network.max_hops = network.max_hops.max(node % 3 + 1);
        network.loop_messages += u64::from(node % 7 == 0);
        network.returned_messages += u64::from(node % 11 == 0);
    }
    r.network = Some(network);

    // One failover row per lost connection of the connection plan.
    for node in (0..NODES).filter(|n| in_shard(*n)) {
        let plan = connection_plan(node);
        for pair in plan.windows(2) {
            let [(up_at, Some(from)), (down_at, None)] = pair else {
                continue;
            };
            debug_assert!(up_at <= down_at);
            let back = plan.iter().find(|(t, b)| t > down_at && b.is_some());
            let attempts = 1 + (mix(node, 3) % 4) as u32;
            r.failovers.push(Failover {
                client: format!("node-{node}"),
                from: BROKERS[*from].to_string(),
                to: back
                    .and_then(|(_, b)| *b)
                    .map_or(String::new(), |b| BROKERS[b].to_string()),
                down_ms: *down_at,
                connected_ms: back.map(|(t, _)| t - 2),
                up_ms: back.map(|(t, _)| *t),
                attempts,
                failed: attempts - 1,
                waited_ms: 10 * u64::from(attempts - 1),
                first_failure: if attempts > 1 {
                    "connect failed: refused".into()
                } else {
                    String::new()
                },
            });
        }
    }
    r.failovers
        .sort_by(|a, b| (a.down_ms, &a.client).cmp(&(b.down_ms, &b.client)));

    // Every shard spans the same time, whatever it happened to record.
    let _ = second(&mut seconds, RUN_MS + 2_999);
    // Connections at the end of every second.
    for node in (0..NODES).filter(|n| in_shard(*n)) {
        let plan = connection_plan(node);
        for s in seconds.iter_mut() {
            if let Some(b) = connected_at(&plan, s.t_s * 1000 + 999) {
                s.connected[b] += 1;
            }
        }
    }
    r.sim_seconds = seconds.len() as f64;
    r.seconds = seconds;
    r.losses_by_fault = lost_by_label
        .into_iter()
        .map(|(label, lost)| FaultLoss { label, lost })
        .collect();
    if with_expectations {
        r.expectations = vec![
            ExpectationResult {
                name: "no acknowledged message lost".into(),
                ok: r.messages.lost == 0,
                detail: format!("lost = {} (limit 0)", r.messages.lost),
                check: None,
            },
            ExpectationResult {
                name: "failover p99 under 15 s".into(),
                ok: r.failover_ms.value_at_quantile(0.99) < 15_000,
                detail: format!("p99 = {} ms", r.failover_ms.value_at_quantile(0.99)),
                check: None,
            },
            ExpectationResult {
                name: "MCollective replies ≥ 95 %".into(),
                ok: mco_received * 100 >= mco_expected * 95,
                detail: format!(
                    "{:.1} % of expected replies",
                    100.0 * mco_received as f64 / mco_expected.max(1) as f64
                ),
                check: None,
            },
        ];
    }
    r
}

/// The whole run with its expectations.
pub(crate) fn whole() -> RunReport {
    build(&|_| true, true)
}

/// A report with nothing in it but a name.
pub(crate) fn empty() -> RunReport {
    let mut r = RunReport::new("empty", 0);
    r.failover_ms = failover_histogram();
    r.latency_us = latency_histogram();
    r
}
