//! The compact terminal summary printed at the end of a run.

use std::fmt::Write as _;

use crate::model::RunReport;
use crate::stats::{HistogramStats, fmt_at_ms, fmt_ms, fmt_seconds, fmt_us};

/// A few lines for the terminal: what ran, the message counts, latency, send delay and
/// failover percentiles, MCollective replies, faults, and every expectation with ✓ or ✗.
/// The replay command follows when an expectation failed.
///
/// Unlike the files, this text shows `wall_seconds`.
pub fn summary_text(report: &RunReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the `fmt::Result`s below are ignored.
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    let _ = write!(
        out,
        "{verdict}  {}  seed {}  {} {}, {} wall",
        report.scenario,
        report.seed,
        fmt_seconds(report.sim_seconds),
        if report.target.is_some() {
            "measured"
        } else {
            "simulated"
        },
        fmt_seconds(report.wall_seconds),
    );
    if let Some(t) = &report.target {
        let _ = write!(out, "  target {t}");
    }
    out.push('\n');

    let m = &report.messages;
    let _ = writeln!(
        out,
        "  messages   attempted {}  acknowledged {}  delivered {}  lost {}  unexpected {}  duplicated {}  recovered {}  reorders {}",
        m.attempted,
        m.acknowledged,
        m.delivered,
        m.lost,
        m.unexpected,
        m.duplicated,
        m.recovered,
        report.reorders,
    );
    let _ = writeln!(
        out,
        "  throughput {:.1} msg/s delivered",
        report.throughput()
    );
    for c in &report.broker_cpu {
        let _ = writeln!(
            out,
            "  cpu        {}  {:.1}% of a core over the run, {:.1}% in the busiest second",
            c.broker,
            c.utilisation(report.sim_seconds) * 100.0,
            c.peak_second() * 100.0,
        );
    }
    if let Some(c) = report.clients_cpu {
        let _ = writeln!(
            out,
            "  cpu        clients  {:.2} of {} cores over the run",
            c.cores_used(report.sim_seconds),
            c.cores,
        );
    }
    if !report.broker_counters.is_empty() {
        let get = |series: &str, counter: bool| {
            report
                .broker_counters
                .iter()
                .find(|c| c.series == series)
                .map(|c| if counter { c.delta() } else { c.after })
        };
        let mut parts = Vec::new();
        for (series, what, clients) in beside(report) {
            if let Some(v) = get(series, true) {
                parts.push(format!("{} {v} ({what} {clients})", short(series)));
            }
        }
        for series in [
            "messages_expired_total",
            "messages_redelivered_total",
            "messages_dead_lettered_total",
            "sends_blocked_total",
        ] {
            if let Some(v) = get(series, true) {
                parts.push(format!("{} {v}", short(series)));
            }
        }
        for series in ["connections", "memory_used_bytes"] {
            if let Some(v) = get(series, false) {
                parts.push(format!("{series} at the end {v}"));
            }
        }
        let _ = writeln!(out, "  broker     {}", parts.join("  "));
    }
    let line = |name: &str, s: HistogramStats, f: fn(u64) -> String| {
        if s.count == 0 {
            format!("  {name:<10} none recorded\n")
        } else {
            format!(
                "  {name:<10} n={}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
                s.count,
                f(s.p50),
                f(s.p90),
                f(s.p99),
                f(s.p999),
                f(s.max)
            )
        }
    };
    out.push_str(&line(
        "latency",
        HistogramStats::of(&report.latency_us),
        fmt_us,
    ));
    out.push_str(&line(
        "send delay",
        HistogramStats::of(&report.send_delay_us),
        fmt_us,
    ));
    out.push_str(&line(
        "failover",
        HistogramStats::of(&report.failover_ms),
        fmt_ms,
    ));
    if let Some(mco) = &report.mcollective {
        let pct = if mco.replies_expected > 0 {
            format!(
                " ({:.2}%)",
                100.0 * mco.replies_received as f64 / mco.replies_expected as f64
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  mcollective {} requests, {}/{} replies{pct}",
            mco.requests, mco.replies_received, mco.replies_expected
        );
    }
    if let Some(rc) = &report.roboconf {
        let ms =
            |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{:.1} s", v as f64 / 1000.0));
        let _ = writeln!(
            out,
            "  roboconf   {}/{} agents ready (p50 {}, p99 {}, max {}), {} DM problems, {} heartbeats, {} models, {} imports, {} clients reconfigured",
            rc.ready,
            rc.agents,
            ms(rc.ready_p50_ms),
            ms(rc.ready_p99_ms),
            ms(rc.ready_max_ms),
            rc.dm_problems,
            rc.heartbeats,
            rc.models,
            rc.imports,
            rc.reconfigured
        );
    }
    if let Some(n) = &report.network {
        let _ = writeln!(
            out,
            "  network    {} deliveries over bridges (up to {} hops), {} looped, {} returned",
            n.bridged_deliveries, n.max_hops, n.loop_messages, n.returned_messages
        );
    }
    for (i, f) in report.faults.iter().enumerate() {
        let end = f.end_ms.map_or("never healed".to_string(), fmt_at_ms);
        let lost = report
            .window_losses(i)
            .map(|n| format!(", {n} lost"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  fault      {} [{} – {}]{lost}",
            f.label,
            fmt_at_ms(f.start_ms),
            end
        );
    }
    let causes: Vec<String> = report
        .losses_by_cause
        .iter()
        .filter(|l| l.lost > 0)
        .map(|l| format!("{} {}", l.lost, l.label))
        .collect();
    if !causes.is_empty() {
        let _ = writeln!(out, "  losses     {}", causes.join(", "));
    }
    for u in &report.unexplained_losses {
        let _ = writeln!(
            out,
            "  unexplained loss: {} (sent at {}): {}",
            u.id,
            fmt_at_ms(u.sent_ms),
            u.path
        );
    }
    if report.unexplained_lost > report.unexplained_losses.len() as u64 {
        let _ = writeln!(
            out,
            "  … and {} more unexplained losses",
            report.unexplained_lost - report.unexplained_losses.len() as u64
        );
    }
    for f in &report.failovers_unfinished {
        let _ = writeln!(
            out,
            "  failover unfinished: {} without a connection since {}",
            f.client,
            fmt_at_ms(f.since_ms)
        );
    }
    for e in &report.expectations {
        let mark = if e.ok { '✓' } else { '✗' };
        let _ = writeln!(out, "  {mark} {}: {}", e.name, e.detail);
    }
    if !report.passed()
        && let Some(cmd) = &report.replay_command
    {
        let _ = writeln!(out, "  replay: {cmd}");
    }
    out
}

/// The broker's counters that have a client-side counterpart: (series, what the clients
/// counted, their count).
pub(crate) fn beside(report: &RunReport) -> Vec<(&'static str, &'static str, u64)> {
    let m = &report.messages;
    [
        ("messages_received_total", "clients attempted", m.attempted),
        ("messages_delivered_total", "clients received", m.delivered),
    ]
    .into_iter()
    .filter(|(series, _, _)| report.broker_counters.iter().any(|c| c.series == *series))
    .collect()
}

/// A counter's name without `messages_` and `_total`, for the summary line.
fn short(series: &str) -> &str {
    let s = series.strip_suffix("_total").unwrap_or(series);
    s.strip_prefix("messages_").unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExpectationResult, FaultWindow};

    #[test]
    fn the_brokers_own_counters_stand_beside_the_clients() {
        let mut r = RunReport::new("live", 1);
        r.messages.attempted = 100;
        r.messages.delivered = 98;
        assert!(!summary_text(&r).contains("broker "));
        let c = |series: &str, before: f64, after: f64| crate::model::BrokerCounter {
            series: series.into(),
            before,
            after,
        };
        r.broker_counters = vec![
            c("messages_received_total", 10.0, 115.0),
            c("messages_delivered_total", 10.0, 110.0),
            c("messages_expired_total", 0.0, 2.0),
            c("connections", 1.0, 4.0),
        ];
        let text = summary_text(&r);
        assert!(
            text.contains("  broker     received 105 (clients attempted 100)  delivered 100 (clients received 98)  expired 2  connections at the end 4"),
            "{text}"
        );
    }

    #[test]
    fn marks_expectations_and_prints_replay_on_failure() {
        let mut r = RunReport::new("mco-failover", 7);
        r.sim_seconds = 60.0;
        r.messages.attempted = 10;
        r.messages.delivered = 9;
        r.messages.lost = 1;
        r.latency_us.record(1_500).unwrap();
        r.faults.push(FaultWindow {
            kind: "crash".into(),
            label: "crash broker-2".into(),
            start_ms: 10_000,
            end_ms: None,
        });
        r.expectations = vec![
            ExpectationResult {
                name: "no loss".into(),
                ok: false,
                detail: "lost = 1 (limit 0)".into(),
                check: None,
            },
            ExpectationResult {
                name: "delivery".into(),
                ok: true,
                detail: "delivered = 9".into(),
                check: None,
            },
        ];
        r.replay_command = Some("stampede run mco-failover --seed 7".into());
        let t = summary_text(&r);
        assert!(t.starts_with("FAIL  mco-failover  seed 7"), "{t}");
        assert!(t.contains("✗ no loss: lost = 1 (limit 0)"), "{t}");
        assert!(t.contains("✓ delivery: delivered = 9"), "{t}");
        assert!(
            t.contains("replay: stampede run mco-failover --seed 7"),
            "{t}"
        );
        assert!(
            t.contains("crash broker-2 [10.000 s – never healed]"),
            "{t}"
        );
        assert!(t.contains("p50 1.50 ms"), "{t}");
        assert!(t.contains("failover   none recorded"), "{t}");

        r.expectations[0].ok = true;
        let t = summary_text(&r);
        assert!(t.starts_with("PASS"), "{t}");
        assert!(!t.contains("replay:"), "{t}");
    }
}
