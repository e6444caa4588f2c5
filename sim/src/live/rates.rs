//! Live knees: `stampede load --rates …` steps the offered rate against a real broker
//! until an objective breaks, and reports the largest rate that met it.
//!
//! Each rate is one ordinary live run (its own report directory, `rate-<R>/`), judged
//! by the sweep's objective language over the same metrics (`latency_p99_ms`,
//! `loss_ratio`, `throughput_msg_s`, …). Rates run in increasing order; the sweep stops
//! at the first rate that fails, then bisects between the last rate that held and the
//! first that failed (`--bisect N` steps). The generator's own CPU is recorded at every
//! rate, so a knee set by the generator rather than the broker shows.

use std::fmt::Write as _;

use crate::sweep::metrics::Metrics;
use crate::sweep::objective::Expr;

/// One measured rate.
#[derive(Clone, Debug)]
pub struct RatePoint {
    /// Offered rate (messages per second per producer, or discovery requests per second
    /// per `mco` client: what `--rate` sets).
    pub rate: f64,
    /// The run's metrics.
    pub metrics: Metrics,
    /// Whether the objective held (unknown counts as not).
    pub ok: bool,
    /// Cores the generator used over the measured window.
    pub generator_cores: f64,
    /// Cores the whole machine used over the measured window.
    pub machine_cores: f64,
    /// CPUs of the machine.
    pub cpus: usize,
}

/// The objective of a live knee when none is given: nothing lost, p99 under a second,
/// and, where `mco` clients wait for replies, 99% of the replies inside their windows (a
/// request whose replies all miss its window has not been served).
pub fn default_objective(scenario: &crate::scenario::Scenario) -> String {
    let mut o = "loss_ratio <= 0.001 and latency_p99_ms < 1000".to_owned();
    if !scenario.mco_client_names().is_empty() {
        o.push_str(" and mco_reply_ratio >= 0.99");
    }
    o
}

/// Parses `--rates`: a comma-separated list of positive numbers, or `A..B:STEP`,
/// or `A..B*F` (geometric, each rate F times the last), in any combination.
pub fn parse_rates(s: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| -> Result<f64, String> {
            let v: f64 = t
                .trim()
                .replace('_', "")
                .parse()
                .map_err(|_| format!("`{t}` is not a number"))?;
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(format!("`{t}`: a rate must be a positive number"))
            }
        };
        match part.split_once("..") {
            None => out.push(num(part)?),
            Some((a, rest)) => {
                let a = num(a)?;
                let (b, step, geometric) = if let Some((b, f)) = rest.split_once('*') {
                    (num(b)?, num(f)?, true)
                } else if let Some((b, st)) = rest.split_once(':') {
                    (num(b)?, num(st)?, false)
                } else {
                    return Err(format!(
                        "`{part}`: give a step (A..B:STEP) or a factor (A..B*F)"
                    ));
                };
                if b < a {
                    return Err(format!("`{part}`: the range is empty (end below start)"));
                }
                if geometric && step <= 1.0 {
                    return Err(format!("`{part}`: the factor must be above 1"));
                }
                let mut v = a;
                let mut n = 0;
                while v <= b * (1.0 + 1e-9) {
                    out.push(v);
                    n += 1;
                    if n > 1000 {
                        return Err(format!("`{part}`: more than 1000 rates"));
                    }
                    v = if geometric {
                        v * step
                    } else {
                        a + step * n as f64
                    };
                }
            }
        }
    }
    if out.is_empty() {
        return Err("no rate given".into());
    }
    out.sort_by(f64::total_cmp);
    out.dedup();
    Ok(out)
}

/// The rates still to try after `done`: the next grid rate until one fails, then up to
/// `bisect` midpoints between the last rate that held and the first that failed.
pub fn next_rate(grid: &[f64], done: &[RatePoint], bisect: u32) -> Option<f64> {
    let first_fail = done
        .iter()
        .filter(|p| !p.ok)
        .map(|p| p.rate)
        .min_by(f64::total_cmp);
    let Some(fail) = first_fail else {
        return grid
            .iter()
            .copied()
            .find(|r| !done.iter().any(|p| p.rate == *r));
    };
    let pass = done
        .iter()
        .filter(|p| p.ok && p.rate < fail)
        .map(|p| p.rate)
        .max_by(f64::total_cmp)?;
    let grid_runs = done.iter().filter(|p| grid.contains(&p.rate)).count();
    let bisected = done.len() - grid_runs;
    if bisected as u32 >= bisect {
        return None;
    }
    let mid = ((pass + fail) / 2.0).round();
    (mid > pass && mid < fail).then_some(mid)
}

/// The knee: the largest rate that met the objective below every rate that failed.
pub fn knee(done: &[RatePoint]) -> Option<f64> {
    let first_fail = done
        .iter()
        .filter(|p| !p.ok)
        .map(|p| p.rate)
        .min_by(f64::total_cmp)
        .unwrap_or(f64::INFINITY);
    done.iter()
        .filter(|p| p.ok && p.rate < first_fail)
        .map(|p| p.rate)
        .max_by(f64::total_cmp)
}

/// `knee.csv`: one row per rate, in rate order.
pub fn knee_csv(done: &[RatePoint]) -> String {
    let mut rows: Vec<&RatePoint> = done.iter().collect();
    rows.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let mut out = String::from(
        "rate,ok,throughput_msg_s,latency_p50_ms,latency_p99_ms,loss_ratio,mco_p99_ms,mco_reply_ratio,generator_cores,machine_cores\n",
    );
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for p in rows {
        let m = &p.metrics;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.2},{:.2}",
            p.rate,
            p.ok,
            cell(m.get("throughput_msg_s")),
            cell(m.get("latency_p50_ms")),
            cell(m.get("latency_p99_ms")),
            cell(m.get("loss_ratio")),
            cell(m.get("mco_p99_ms")),
            cell(m.get("mco_reply_ratio")),
            p.generator_cores,
            p.machine_cores,
        );
    }
    out
}

/// `knee.txt`: the table for people, the knee, and whether the generator may have set
/// it (it used nearly all of its share of the machine at the first failing rate).
pub fn knee_text(target: &str, objective: &Expr, done: &[RatePoint]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "live knee against {target}");
    let _ = writeln!(out, "objective: {objective}");
    let _ = writeln!(
        out,
        "{:>10}  {:>4}  {:>12}  {:>10}  {:>10}  {:>9}  {:>10}",
        "rate", "ok", "delivered/s", "p50 ms", "p99 ms", "loss", "generator"
    );
    let mut rows: Vec<&RatePoint> = done.iter().collect();
    rows.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    for p in &rows {
        let m = &p.metrics;
        let _ = writeln!(
            out,
            "{:>10}  {:>4}  {:>12}  {:>10}  {:>10}  {:>9}  {:>7.2} cores",
            p.rate,
            if p.ok { "yes" } else { "no" },
            f(m.get("throughput_msg_s"), 1),
            f(m.get("latency_p50_ms"), 1),
            f(m.get("latency_p99_ms"), 1),
            f(m.get("loss_ratio"), 4),
            p.generator_cores,
        );
    }
    match knee(done) {
        Some(k) => {
            let _ = writeln!(out, "knee: {k} (the largest rate meeting the objective)");
        }
        None => {
            let _ = writeln!(out, "knee: none (the objective failed at the lowest rate)");
        }
    }
    if !done.iter().any(|p| !p.ok) {
        let _ = writeln!(
            out,
            "the objective held at every rate tried: the knee is above the highest rate"
        );
    }
    if let Some(fail) = rows.iter().find(|p| !p.ok)
        && fail.machine_cores >= 0.9 * fail.cpus as f64
    {
        let _ = writeln!(
            out,
            "warning: at rate {} the machine was saturated ({:.2} of {} cores busy, the generator {:.2}): \
             the knee may be the machine's or the generator's, not the broker's",
            fail.rate, fail.machine_cores, fail.cpus, fail.generator_cores
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_objective_wants_replies_where_mco_clients_wait_for_them() {
        let load = |text: &str| {
            crate::scenario::Scenario::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
        };
        let rr = load(include_str!("../../../scenarios/bench-request-reply.toml"));
        let o = default_objective(&rr);
        assert!(o.ends_with("and mco_reply_ratio >= 0.99"), "{o}");
        // A run whose requests arrived in time but whose replies all missed the window
        // fails it.
        let e: Expr = o.parse().unwrap();
        let metrics = |reply_ratio: f64| {
            use crate::sweep::metrics::{METRICS, Metrics};
            let mut m = Metrics::none();
            for (name, v) in [
                ("loss_ratio", 0.0),
                ("latency_p99_ms", 497.0),
                ("mco_reply_ratio", reply_ratio),
            ] {
                let i = METRICS.iter().position(|d| d.name == name).unwrap();
                m.0[i] = Some(v);
            }
            m
        };
        assert!(!e.holds(&metrics(0.0)));
        assert!(e.holds(&metrics(1.0)));
        let queue = load(include_str!("../../../scenarios/bench-queue-10x10-1k.toml"));
        assert_eq!(
            default_objective(&queue),
            "loss_ratio <= 0.001 and latency_p99_ms < 1000"
        );
    }

    fn point(rate: f64, ok: bool) -> RatePoint {
        RatePoint {
            rate,
            metrics: Metrics::none(),
            ok,
            generator_cores: 0.5,
            machine_cores: 1.0,
            cpus: 2,
        }
    }

    #[test]
    fn rates_parse_as_lists_steps_and_factors() {
        assert_eq!(parse_rates("100,50, 200").unwrap(), [50.0, 100.0, 200.0]);
        assert_eq!(
            parse_rates("100..400:100").unwrap(),
            [100.0, 200.0, 300.0, 400.0]
        );
        assert_eq!(
            parse_rates("1000..8000*2").unwrap(),
            [1000.0, 2000.0, 4000.0, 8000.0]
        );
        assert!(parse_rates("").unwrap_err().contains("no rate"));
        assert!(parse_rates("0").unwrap_err().contains("positive"));
        assert!(parse_rates("5..1:1").unwrap_err().contains("empty"));
        assert!(parse_rates("1..5*1").unwrap_err().contains("factor"));
        assert!(parse_rates("1..5").unwrap_err().contains("step"));
        assert!(parse_rates("x").unwrap_err().contains("not a number"));
    }

    #[test]
    fn the_sweep_climbs_until_a_failure_then_bisects() {
        let grid = [100.0, 200.0, 400.0, 800.0];
        let mut done = vec![point(100.0, true)];
        assert_eq!(next_rate(&grid, &done, 2), Some(200.0));
        done.push(point(200.0, true));
        done.push(point(400.0, false));
        // The grid stops at the first failure; bisection between 200 and 400.
        assert_eq!(next_rate(&grid, &done, 2), Some(300.0));
        done.push(point(300.0, true));
        assert_eq!(next_rate(&grid, &done, 2), Some(350.0));
        done.push(point(350.0, false));
        assert_eq!(
            next_rate(&grid, &done, 2),
            None,
            "two bisection steps taken"
        );
        assert_eq!(knee(&done), Some(300.0));
        assert_eq!(next_rate(&grid, &done[..3], 0), None);
    }

    #[test]
    fn the_knee_is_below_every_failure_and_none_when_the_first_rate_fails() {
        // A lucky pass above a failure does not raise the knee.
        let done = [point(100.0, true), point(200.0, false), point(300.0, true)];
        assert_eq!(knee(&done), Some(100.0));
        assert_eq!(knee(&[point(100.0, false)]), None);
        let text = knee_text(
            "t",
            &"latency_p99_ms < 1".parse().unwrap(),
            &[point(1.0, true)],
        );
        assert!(text.contains("held at every rate"), "{text}");
    }
}
