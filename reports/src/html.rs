//! `report.html` and `compare.html`: self-contained pages (inline CSS, inline SVG, no
//! script, nothing fetched) that are the same bytes for the same input.
//!
//! Every chart sits in a `<figure class="chart" data-chart="NAME">` holding exactly one
//! `<svg>`, so tests (and people with browser tools) can find them.

use std::fmt::Write as _;

use crate::charts::{
    self, Axis, BLUE_C, Band, Chart, Dots, GREEN_C, Line, ORANGE_C, PALETTE, PURPLE_C, RED_C, SKY_C,
};
use crate::csv::seconds_in_order;
use crate::markup::escape;
use crate::model::{FaultWindow, NO_FAULT_LABEL, RunReport, UNEXPLAINED_LABEL};
use crate::stats::{HistogramStats, fmt_at_ms, fmt_ms, fmt_seconds, fmt_us};

/// The style sheet shared by both pages.
const CSS: &str = r#"
:root { --pass: #0a7d4f; --fail: #c0392b; --muted: #5f6368; --line: #d9dce0; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0 auto; padding: 24px; max-width: 1080px; color: #1f2328; line-height: 1.45; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 34px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
         font-size: 15px; vertical-align: middle; margin-left: 10px; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
header { border-left: 6px solid var(--pass); padding: 6px 16px; background: #f6f8fa; }
header.fail { border-left-color: var(--fail); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
table { border-collapse: collapse; margin: 6px 0; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.expl { color: var(--muted); }
tr.bad td { background: #fdecea; }
.ok { color: var(--pass); font-weight: 600; } .notok { color: var(--fail); font-weight: 600; }
.ratio { color: var(--muted); font-size: 12px; }
pre { background: #f6f8fa; padding: 8px 12px; overflow-x: auto; border: 1px solid var(--line); }
figure.chart { margin: 14px 0 22px; }
figure.chart svg { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.bar { display: inline-block; height: 10px; background: #d55e00; vertical-align: middle; }
.note { color: var(--muted); font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"#;

/// Opens a page with `title`.
pub(crate) fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(title)
    );
}

/// Wraps a chart in its figure.
pub(crate) fn figure(out: &mut String, name: &str, chart: &Chart, caption: &str) {
    let _ = write!(
        out,
        "<figure class=\"chart\" data-chart=\"{name}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
        charts::render(chart),
        escape(caption)
    );
}

/// The right end of the time axis: the run's duration, its last second or its last
/// fault event, whichever is latest; at least one second.
fn time_extent(reports: &[&RunReport]) -> f64 {
    let mut end: f64 = 1.0;
    for r in reports {
        if r.sim_seconds.is_finite() {
            end = end.max(r.sim_seconds);
        }
        if let Some(last) = r.seconds.iter().map(|s| s.t_s).max() {
            end = end.max(last as f64 + 1.0);
        }
        for f in &r.faults {
            end = end.max(f.end_ms.unwrap_or(f.start_ms) as f64 / 1000.0);
        }
    }
    end.ceil()
}

/// A fault window as a chart band.
fn band(f: &FaultWindow) -> Band {
    Band {
        start_s: f.start_ms as f64 / 1000.0,
        end_s: f.end_ms.map(|e| e as f64 / 1000.0),
        label: f.label.clone(),
    }
}

/// Fault windows as chart bands.
fn bands(faults: &[FaultWindow]) -> Vec<Band> {
    faults.iter().map(band).collect()
}

fn time_axis(end: f64) -> Axis {
    Axis::linear_exact(end, charts::fmt_axis_s)
}

/// A µs axis on a log scale spanning the given values.
fn latency_axis(values: impl Iterator<Item = u64>) -> Axis {
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == 0 {
        return Axis::log(1.0, 1_000.0, charts::fmt_axis_us);
    }
    Axis::log(lo.max(1) as f64, hi as f64, charts::fmt_axis_us)
}

/// Chart 1: latency p50, p99 and max per second.
fn latency_chart(r: &RunReport, end: f64) -> Chart {
    let rows = seconds_in_order(r);
    let stats: Vec<(f64, Option<HistogramStats>)> = rows
        .iter()
        .map(|s| {
            let st = (!s.latency.is_empty()).then(|| HistogramStats::of(&s.latency));
            (s.t_s as f64 + 0.5, st)
        })
        .collect();
    let y = latency_axis(
        stats
            .iter()
            .filter_map(|(_, s)| *s)
            .flat_map(|s| [s.p50, s.max]),
    );
    let line = |name: &str, color, width, pick: fn(&HistogramStats) -> u64| {
        let mut l = Line::new(name, color);
        l.width = width;
        l.points = stats
            .iter()
            .map(|(x, s)| (*x, s.as_ref().map(|s| pick(s) as f64)))
            .collect();
        l
    };
    let empty = stats.iter().all(|(_, s)| s.is_none());
    Chart {
        title: "End-to-end latency per second (from the intended send time)".into(),
        x_desc: "time (s)".into(),
        y_desc: "latency (log scale)".into(),
        x: time_axis(end),
        y,
        y2: None,
        bands: bands(&r.faults),
        lines: vec![
            line("p50", BLUE_C, 2, |s| s.p50),
            line("p99", ORANGE_C, 2, |s| s.p99),
            line("max", PURPLE_C, 1, |s| s.max),
        ],
        dots: vec![],
        empty_note: empty.then(|| "no deliveries".to_string()),
    }
}

/// Chart 2: attempted, delivered and lost messages per second.
fn throughput_chart(r: &RunReport, end: f64) -> Chart {
    let rows = seconds_in_order(r);
    let max = rows
        .iter()
        .map(|s| s.attempted.max(s.delivered))
        .max()
        .unwrap_or(0);
    let max_lost = rows.iter().map(|s| s.lost).max().unwrap_or(0);
    let series = |name: &str, color, pick: fn(&crate::model::SecondSample) -> u64| {
        let mut l = Line::new(name, color);
        l.points = rows
            .iter()
            .map(|s| (s.t_s as f64 + 0.5, Some(pick(s) as f64)))
            .collect();
        l
    };
    let mut attempted = series("attempted", SKY_C, |s| s.attempted);
    attempted.dashed = true;
    let delivered = series("delivered", BLUE_C, |s| s.delivered);
    let mut lost = series("lost (right axis)", RED_C, |s| s.lost);
    lost.secondary = true;
    Chart {
        title: "Messages per second".into(),
        x_desc: "time (s)".into(),
        y_desc: "messages / s".into(),
        x: time_axis(end),
        y: Axis::linear(max as f64, charts::fmt_axis_count),
        y2: Some((
            Axis::linear(max_lost.max(1) as f64, charts::fmt_axis_count),
            "lost / s".into(),
        )),
        bands: bands(&r.faults),
        lines: vec![attempted, delivered, lost],
        dots: vec![],
        empty_note: rows.is_empty().then(|| "no per-second samples".to_string()),
    }
}

/// Chart 3: connected nodes per broker at the end of each second.
fn connected_chart(r: &RunReport, end: f64) -> Chart {
    let rows = seconds_in_order(r);
    let max = rows
        .iter()
        .flat_map(|s| s.connected.iter().copied())
        .max()
        .unwrap_or(0);
    let lines = r
        .brokers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut l = run_line(b.as_str(), i);
            l.points = rows
                .iter()
                .map(|s| (s.t_s as f64 + 1.0, s.connected.get(i).map(|&n| n as f64)))
                .collect();
            l
        })
        .collect();
    let empty = r.brokers.is_empty() || rows.is_empty();
    Chart {
        title: "Connected nodes per broker".into(),
        x_desc: "time (s)".into(),
        y_desc: "connected nodes".into(),
        x: time_axis(end),
        y: Axis::linear(max as f64, charts::fmt_axis_count),
        y2: None,
        bands: bands(&r.faults),
        lines,
        dots: vec![],
        empty_note: empty.then(|| "no connection samples".to_string()),
    }
}

/// Roboconf: agents ready over time, as a step line.
fn roboconf_chart(r: &RunReport, rc: &crate::model::RoboconfSummary, end: f64) -> Chart {
    let mut l = run_line("agents ready", 0);
    let mut last = 0.0;
    l.points.push((0.0, Some(0.0)));
    for &(ms, n) in &rc.ready_over_time {
        let t = ms as f64 / 1000.0;
        l.points.push((t, Some(last)));
        l.points.push((t, Some(n as f64)));
        last = n as f64;
    }
    l.points.push((end, Some(last)));
    Chart {
        title: "Roboconf agents ready".into(),
        x_desc: "time (s)".into(),
        y_desc: "agents ready".into(),
        x: time_axis(end),
        y: Axis::linear(rc.agents as f64, charts::fmt_axis_count),
        y2: None,
        bands: bands(&r.faults),
        lines: vec![l],
        dots: vec![],
        empty_note: (rc.agents == 0).then(|| "no agents".to_string()),
    }
}

/// Roboconf totals and the ready chart.
fn roboconf_section(out: &mut String, r: &RunReport, end: f64) {
    let Some(rc) = &r.roboconf else { return };
    out.push_str("<h2 id=\"roboconf\">Roboconf</h2>\n");
    let ms = |v: Option<u64>| v.map_or("–".to_owned(), |v| format!("{:.1} s", v as f64 / 1000.0));
    let _ = writeln!(
        out,
        "<p>{} of {} agents ready (model received, and an import from every agent they \
         depend on): p50 {}, p99 {}, max {} after their start. The DM received {} \
         heartbeats and would have marked {} agents PROBLEM (more than two heartbeat checks \
         in a row without one). Agents received {} models and {} import notifications; {} \
         clients switched to a new messaging configuration at run time.</p>",
        rc.ready,
        rc.agents,
        ms(rc.ready_p50_ms),
        ms(rc.ready_p99_ms),
        ms(rc.ready_max_ms),
        rc.heartbeats,
        rc.dm_problems,
        rc.models,
        rc.imports,
        rc.reconfigured
    );
    figure(
        out,
        "roboconf-ready",
        &roboconf_chart(r, rc, end),
        "Agents ready (their model and every import they need received), over the run.",
    );
}

/// Chart 4 (with a cost model): each broker's CPU use per second, as % of one core.
fn cpu_chart(r: &RunReport, end: f64) -> Chart {
    let lines = r
        .broker_cpu
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut l = run_line(c.broker.as_str(), i);
            l.points = c
                .per_second_us
                .iter()
                .enumerate()
                .map(|(t, &us)| (t as f64 + 1.0, Some(us as f64 / 10_000.0)))
                .collect();
            l
        })
        .collect();
    let max = r
        .broker_cpu
        .iter()
        .map(|c| c.peak_second() * 100.0)
        .fold(100.0, f64::max);
    Chart {
        title: "Broker CPU".into(),
        x_desc: "time (s)".into(),
        y_desc: "% of one core".into(),
        x: time_axis(end),
        y: Axis::linear(max, charts::fmt_axis_count),
        y2: None,
        bands: bands(&r.faults),
        lines,
        dots: vec![],
        empty_note: r
            .broker_cpu
            .iter()
            .all(|c| c.per_second_us.is_empty())
            .then(|| "no CPU samples".to_string()),
    }
}

/// A percentile-distribution chart of µs (or ms) histograms.
fn distribution_chart(
    title: &str,
    y_desc: &str,
    series: &[(String, charts::RGBColor, &hdrhistogram::Histogram<u64>)],
    ms: bool,
) -> Chart {
    let count = series.iter().map(|(_, _, h)| h.len()).max().unwrap_or(0);
    let x = Axis::percentile(charts::percentile_decades(count));
    let values = series
        .iter()
        .filter(|(_, _, h)| !h.is_empty())
        .flat_map(|(_, _, h)| [h.min(), h.max()]);
    let mut y = latency_axis(values);
    if ms {
        y = y.with_fmt(charts::fmt_axis_ms);
    }
    let lines = series
        .iter()
        .map(|(name, color, h)| {
            let mut l = Line::new(name.as_str(), *color);
            l.points = charts::percentile_points(h, &x);
            l
        })
        .collect();
    Chart {
        title: title.into(),
        x_desc: "percentile".into(),
        y_desc: y_desc.into(),
        x,
        y,
        y2: None,
        bands: vec![],
        lines,
        dots: vec![],
        empty_note: (count == 0).then(|| "nothing recorded".to_string()),
    }
}

/// Most requests drawn as dots; beyond this every k-th is drawn.
const MAX_DOTS: usize = 5_000;

/// MCollective: time from each request to its last reply, by send time.
fn mco_requests_chart(r: &RunReport, end: f64) -> (Chart, usize) {
    let rows = r
        .mcollective
        .as_ref()
        .map(|m| m.per_request.as_slice())
        .unwrap_or(&[]);
    let every = rows.len().div_ceil(MAX_DOTS).max(1);
    let shown = rows.iter().step_by(every);
    let (mut complete, mut partial, mut none) = (Vec::new(), Vec::new(), Vec::new());
    let mut max = 0u64;
    for q in shown {
        let x = q.sent_ms as f64 / 1000.0;
        match q.last_reply_ms {
            Some(last) => {
                let took = last.saturating_sub(q.sent_ms);
                max = max.max(took);
                if q.received >= q.expected {
                    complete.push((x, took as f64));
                } else {
                    partial.push((x, took as f64));
                }
            }
            None => none.push((x, 0.0)),
        }
    }
    let chart = Chart {
        title: "MCollective: time to the last reply, per request".into(),
        x_desc: "request sent at (s)".into(),
        y_desc: "time to last reply".into(),
        x: time_axis(end),
        y: Axis::linear(max as f64, charts::fmt_axis_ms),
        y2: None,
        bands: bands(&r.faults),
        lines: vec![],
        dots: vec![
            Dots {
                name: "all replies".into(),
                color: GREEN_C,
                cross: false,
                points: complete,
            },
            Dots {
                name: "some replies missing".into(),
                color: ORANGE_C,
                cross: false,
                points: partial,
            },
            Dots {
                name: "no reply".into(),
                color: RED_C,
                cross: true,
                points: none,
            },
        ],
        empty_note: rows.is_empty().then(|| "no per-request rows".to_string()),
    };
    (chart, every)
}

/// Counts with their Jepsen `total-queue` meaning: (name, explanation).
const COUNT_ROWS: [(&str, &str); 7] = [
    ("attempted", "sends started (Jepsen: enqueues invoked)"),
    ("acknowledged", "sends the broker confirmed with a RECEIPT"),
    (
        "delivered",
        "attempted messages a consumer received at least once (Jepsen: ok)",
    ),
    (
        "lost",
        "acknowledged but never delivered: the safety violation",
    ),
    (
        "unexpected",
        "delivered but never attempted: phantom messages",
    ),
    (
        "duplicated",
        "delivered more than once (allowed at-least-once, but counted)",
    ),
    (
        "recovered",
        "send outcome unknown (timeout, crash), yet the message arrived",
    ),
];

fn count_values(r: &RunReport) -> [u64; 7] {
    let m = &r.messages;
    [
        m.attempted,
        m.acknowledged,
        m.delivered,
        m.lost,
        m.unexpected,
        m.duplicated,
        m.recovered,
    ]
}

/// `report.html` for one run.
pub(crate) fn report_page(r: &RunReport) -> String {
    let mut out = String::new();
    let passed = r.passed();
    page_start(
        &mut out,
        &format!("Stampede: {} (seed {})", r.scenario, r.seed),
    );

    // Header: what ran and the verdict.
    let (cls, badge) = if passed {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    let _ = write!(
        out,
        "<header class=\"{cls}\">\n<h1>{}<span class=\"badge {cls}\">{badge}</span></h1>\n<dl class=\"facts\">\n",
        escape(&r.scenario)
    );
    let fact = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
    };
    fact(&mut out, "seed", &r.seed.to_string());
    fact(
        &mut out,
        if r.target.is_some() {
            "measured"
        } else {
            "simulated"
        },
        &fmt_seconds(r.sim_seconds),
    );
    fact(
        &mut out,
        "target",
        r.target.as_deref().unwrap_or("simulation"),
    );
    if !r.brokers.is_empty() {
        fact(&mut out, "brokers", &r.brokers.join(", "));
    }
    fact(
        &mut out,
        "throughput",
        &format!("{:.1} msg/s delivered", r.throughput()),
    );
    out.push_str("</dl>\n</header>\n");

    // Expectations.
    out.push_str("<h2 id=\"expectations\">Expectations</h2>\n");
    if r.expectations.is_empty() {
        out.push_str("<p class=\"note\">The scenario set no expectations.</p>\n");
    } else {
        out.push_str("<table>\n<tr><th></th><th>expectation</th><th>detail</th></tr>\n");
        for e in &r.expectations {
            let (cls, mark, row) = if e.ok {
                ("ok", "✓", "")
            } else {
                ("notok", "✗", " class=\"bad\"")
            };
            let _ = writeln!(
                out,
                "<tr{row}><td class=\"{cls}\">{mark}</td><td>{}</td><td>{}</td></tr>",
                escape(&e.name),
                escape(&e.detail)
            );
        }
        out.push_str("</table>\n");
    }
    if let Some(cmd) = &r.replay_command {
        let lead = if passed {
            "Replay this run with:"
        } else {
            "An expectation failed. Replay this run with:"
        };
        let _ = writeln!(
            out,
            "<p>{lead}</p>\n<pre><code>{}</code></pre>",
            escape(cmd)
        );
    }

    // Counts.
    out.push_str("<h2 id=\"messages\">Messages</h2>\n<table>\n<tr><th>count</th><th class=\"num\">value</th><th>meaning</th></tr>\n");
    for ((name, expl), v) in COUNT_ROWS.iter().zip(count_values(r)) {
        let bad = (*name == "lost" || *name == "unexpected") && v > 0;
        let _ = writeln!(
            out,
            "<tr{}><td>{name}</td><td class=\"num\">{v}</td><td class=\"expl\">{}</td></tr>",
            if bad { " class=\"bad\"" } else { "" },
            escape(expl)
        );
    }
    let _ = writeln!(
        out,
        "<tr{}><td>reorders</td><td class=\"num\">{}</td><td class=\"expl\">deliveries that overtook an earlier message of the same producer</td></tr>\n</table>",
        if r.reorders > 0 { " class=\"bad\"" } else { "" },
        r.reorders
    );
    let valid = r.messages.lost == 0 && r.messages.unexpected == 0;
    let _ = writeln!(
        out,
        "<p>Jepsen <code>total-queue</code> verdict: {}</p>",
        if valid {
            "<span class=\"ok\">valid</span> (nothing lost, nothing unexpected)"
        } else {
            "<span class=\"notok\">invalid</span> (messages lost or unexpected)"
        }
    );

    // Percentiles.
    out.push_str("<h2 id=\"latency\">Latency</h2>\n");
    percentile_table(&mut out, &[("", r)]);
    out.push_str(
        "<p class=\"note\">Latency is measured from the time each message was <em>meant</em> to be sent, \
         so a stalled sender cannot hide delays (coordinated omission); send delay is how far sends lagged \
         behind that schedule. Failover is per client, from losing its connection to being subscribed again.</p>\n",
    );

    // Charts.
    let end = time_extent(&[r]);
    out.push_str("<h2 id=\"charts\">Over time</h2>\n");
    figure(
        &mut out,
        "latency",
        &latency_chart(r, end),
        "Latency of each second's deliveries: median, 99th percentile and maximum. Grey bands are fault windows.",
    );
    figure(
        &mut out,
        "throughput",
        &throughput_chart(r, end),
        "Sends started, messages delivered and messages lost (by intended send time) in each second.",
    );
    figure(
        &mut out,
        "connected",
        &connected_chart(r, end),
        "Nodes connected to each broker at the end of each second.",
    );
    if !r.broker_cpu.is_empty() {
        figure(
            &mut out,
            "cpu",
            &cpu_chart(r, end),
            "Simulated CPU each broker's core spent per second (its cost profile priced the work it did), \
             as % of one core. At 100% the core is saturated: work queues and latency grows.",
        );
    }
    out.push_str("<h2 id=\"distribution\">Percentile distribution</h2>\n");
    figure(
        &mut out,
        "distribution",
        &distribution_chart(
            "Latency percentile distribution",
            "latency (log scale)",
            &[
                ("latency".to_string(), BLUE_C, &r.latency_us),
                ("send delay".to_string(), PURPLE_C, &r.send_delay_us),
            ],
            false,
        ),
        "HdrHistogram-style: value at each percentile over the whole run; the right edge is the maximum. \
         The same data is in latency_us.hgrm and send_delay_us.hgrm.",
    );
    if !r.failover_ms.is_empty() {
        figure(
            &mut out,
            "failover",
            &distribution_chart(
                "Failover time percentile distribution",
                "disconnect → re-subscribed",
                &[("failover".to_string(), RED_C, &r.failover_ms)],
                true,
            ),
            "Per client, from losing its connection to being subscribed again (failover_ms.hgrm).",
        );
    }

    faults_section(&mut out, r);
    broker_counters_section(&mut out, r);
    mcollective_section(&mut out, r, end);
    roboconf_section(&mut out, r, end);

    out.push_str(
        "<footer>Files beside this page: summary.json, timeseries.csv, histograms.json, \
         latency_us.hgrm, send_delay_us.hgrm, failover_ms.hgrm",
    );
    if r.mcollective.is_some() {
        out.push_str(", mcollective.csv");
    }
    out.push_str(".</footer>\n</body>\n</html>\n");
    out
}

/// The percentile table: for each measure one row per report, with ratios against the
/// first report when there are several.
fn percentile_table(out: &mut String, reports: &[(&str, &RunReport)]) {
    let multi = reports.len() > 1;
    out.push_str("<table>\n<tr><th>measure</th>");
    if multi {
        out.push_str("<th>run</th>");
    }
    out.push_str(
        "<th class=\"num\">count</th><th class=\"num\">p50</th><th class=\"num\">p90</th>\
         <th class=\"num\">p99</th><th class=\"num\">p99.9</th><th class=\"num\">max</th></tr>\n",
    );
    type Measure = (
        &'static str,
        fn(&RunReport) -> HistogramStats,
        fn(u64) -> String,
    );
    let measures: [Measure; 3] = [
        ("latency", |r| HistogramStats::of(&r.latency_us), fmt_us),
        (
            "send delay",
            |r| HistogramStats::of(&r.send_delay_us),
            fmt_us,
        ),
        ("failover", |r| HistogramStats::of(&r.failover_ms), fmt_ms),
    ];
    for (name, stats, f) in measures {
        let base = reports.first().map(|(_, r)| stats(r)).unwrap_or_default();
        for (ri, (label, r)) in reports.iter().enumerate() {
            let s = stats(r);
            let _ = write!(out, "<tr><td>{name}</td>");
            if multi {
                let _ = write!(out, "<td>{}</td>", escape(label));
            }
            let cells = [
                (s.count, base.count),
                (s.p50, base.p50),
                (s.p90, base.p90),
                (s.p99, base.p99),
                (s.p999, base.p999),
                (s.max, base.max),
            ];
            for (ci, (v, bv)) in cells.iter().enumerate() {
                let text = if ci == 0 {
                    v.to_string()
                } else if s.count == 0 {
                    "–".to_string()
                } else {
                    f(*v)
                };
                let ratio = if ri > 0 && s.count > 0 {
                    ratio_span(*v as f64, *bv as f64)
                } else {
                    String::new()
                };
                let _ = write!(out, "<td class=\"num\">{}{ratio}</td>", escape(&text));
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</table>\n");
}

/// ` <span class="ratio">×1.23</span>` against `base`, or nothing when `base` is 0.
fn ratio_span(v: f64, base: f64) -> String {
    if base > 0.0 && v.is_finite() {
        format!(" <span class=\"ratio\">×{:.2}</span>", v / base)
    } else {
        String::new()
    }
}

/// Fault windows and the losses attributed to them.
/// The broker's own counters beside the clients' (live mode, stampede-broker, `--metrics`).
fn broker_counters_section(out: &mut String, r: &RunReport) {
    if r.broker_counters.is_empty() {
        return;
    }
    out.push_str("<h2 id=\"broker-counters\">The broker's own counters</h2>\n");
    let mut pairs = String::new();
    for (series, what, clients) in crate::text::beside(r) {
        let _ = writeln!(
            pairs,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(series),
            series_value(r, series),
            escape(what),
            clients
        );
    }
    if !pairs.is_empty() {
        out.push_str(
            "<table>\n<tr><th>broker</th><th class=\"num\">during the run</th><th>clients</th>\
             <th class=\"num\">count</th></tr>\n",
        );
        out.push_str(&pairs);
        out.push_str("</table>\n");
    }
    out.push_str(
        "<p class=\"note\">Read from the broker's Prometheus endpoint before and after the run \
         (setup, warm-up, measured window and drain), so the broker's counts cover more than the \
         clients' measured window. Every series:</p>\n<table>\n<tr><th>series</th>\
         <th class=\"num\">before</th><th class=\"num\">after</th><th class=\"num\">change</th></tr>\n",
    );
    for c in &r.broker_counters {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&c.series),
            c.before,
            c.after,
            c.delta()
        );
    }
    out.push_str("</table>\n");
}

/// A series' count during the run (a counter) or its value at the end (a gauge).
fn series_value(r: &RunReport, series: &str) -> String {
    r.broker_counters
        .iter()
        .find(|c| c.series == series)
        .map_or("–".to_owned(), |c| {
            if c.is_counter() {
                c.delta().to_string()
            } else {
                c.after.to_string()
            }
        })
}

fn faults_section(out: &mut String, r: &RunReport) {
    out.push_str("<h2 id=\"faults\">Faults and losses</h2>\n");
    if r.faults.is_empty() {
        out.push_str("<p class=\"note\">No faults were injected.</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>fault</th><th>kind</th><th class=\"num\">start</th><th class=\"num\">end</th>\
             <th class=\"num\">duration</th><th class=\"num\">lost</th></tr>\n",
        );
        for (i, f) in r.faults.iter().enumerate() {
            let lost = r.window_losses(i);
            let (end, dur) = match f.end_ms {
                Some(e) => (fmt_at_ms(e), fmt_ms(e.saturating_sub(f.start_ms))),
                None => ("never healed".to_string(), "–".to_string()),
            };
            let _ = writeln!(
                out,
                "<tr{}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                if lost.unwrap_or(0) > 0 {
                    " class=\"bad\""
                } else {
                    ""
                },
                escape(&f.label),
                escape(&f.kind),
                fmt_at_ms(f.start_ms),
                escape(&end),
                escape(&dur),
                lost.map_or("–".to_string(), |l| l.to_string()),
            );
        }
        out.push_str("</table>\n");
    }
    if !r.losses_by_fault.is_empty() {
        let total: u64 = r.losses_by_fault.iter().map(|l| l.lost).sum();
        out.push_str(
            "<h3>Lost messages by fault window</h3>\n<table>\n<tr><th>window</th><th class=\"num\">lost</th><th>share</th></tr>\n",
        );
        for l in &r.losses_by_fault {
            let share = if total > 0 {
                l.lost as f64 / total as f64
            } else {
                0.0
            };
            let name = if l.label == NO_FAULT_LABEL {
                "outside every fault window".to_string()
            } else {
                l.label.clone()
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span> {:.1}%</td></tr>",
                escape(&name),
                l.lost,
                share * 200.0,
                share * 100.0
            );
        }
        out.push_str("</table>\n");
    }
    causes_section(out, r);
}

/// Lost messages by cause, the unexplained ones by message with their path, and the
/// clients whose failover never finished.
fn causes_section(out: &mut String, r: &RunReport) {
    if r.losses_by_cause.iter().any(|l| l.lost > 0) {
        out.push_str(
            "<h3>Lost messages by cause</h3>\n<table>\n<tr><th>cause</th><th class=\"num\">lost</th></tr>\n",
        );
        for l in r.losses_by_cause.iter().filter(|l| l.lost > 0) {
            let _ = writeln!(
                out,
                "<tr{}><td>{}</td><td class=\"num\">{}</td></tr>",
                if l.label == UNEXPLAINED_LABEL {
                    " class=\"bad\""
                } else {
                    ""
                },
                escape(&l.label),
                l.lost
            );
        }
        out.push_str("</table>\n");
    }
    if r.unexplained_lost > 0 {
        let _ = writeln!(
            out,
            "<h3 id=\"unexplained\">Unexplained losses ({})</h3>\n<p class=\"note\">Lost \
             messages for which the run shows no cause: no broker held them when it crashed, \
             expired or dropped them, and no connection they travelled on was cut. A broker \
             bug until shown otherwise.</p>\n<table>\n<tr><th>message</th><th class=\"num\">sent</th><th>path</th></tr>",
            r.unexplained_lost
        );
        for u in &r.unexplained_losses {
            let _ = writeln!(
                out,
                "<tr class=\"bad\"><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&u.id),
                fmt_at_ms(u.sent_ms),
                escape(&u.path)
            );
        }
        out.push_str("</table>\n");
    }
    if !r.failovers_unfinished.is_empty() {
        let _ = writeln!(
            out,
            "<h3>Failovers that never finished ({})</h3>\n<table>\n<tr><th>client</th><th class=\"num\">without a connection since</th></tr>",
            r.failovers_unfinished.len()
        );
        for f in &r.failovers_unfinished {
            let _ = writeln!(
                out,
                "<tr class=\"bad\"><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(&f.client),
                fmt_at_ms(f.since_ms)
            );
        }
        out.push_str("</table>\n");
    }
}

/// Rows of the per-request table shown in the page; the rest are in the CSV.
const MAX_TABLE_ROWS: usize = 200;

/// Deliveries across network bridges.
fn network_section(out: &mut String, r: &RunReport) {
    let Some(n) = &r.network else { return };
    out.push_str("<h2 id=\"network\">Network of brokers</h2>\n");
    let _ = writeln!(
        out,
        "<p>{} deliveries came over bridges, crossing up to {} of them; \
         <span{}>{} visited a broker twice</span> and <span{}>{} came back to a broker \
         they had left</span>.</p>",
        n.bridged_deliveries,
        n.max_hops,
        if n.loop_messages > 0 {
            " class=\"bad\""
        } else {
            ""
        },
        n.loop_messages,
        if n.returned_messages > 0 {
            " class=\"bad\""
        } else {
            ""
        },
        n.returned_messages,
    );
}

/// MCollective totals, charts and per-request table.
fn mcollective_section(out: &mut String, r: &RunReport, end: f64) {
    network_section(out, r);
    let Some(m) = &r.mcollective else { return };
    out.push_str("<h2 id=\"mcollective\">MCollective</h2>\n");
    let pct = if m.replies_expected > 0 {
        format!(
            " ({:.2}%)",
            100.0 * m.replies_received as f64 / m.replies_expected as f64
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<p>{} requests; {} of {} expected replies received{pct}; {} missing.</p>",
        m.requests,
        m.replies_received,
        m.replies_expected,
        m.replies_expected.saturating_sub(m.replies_received)
    );
    let (chart, every) = mco_requests_chart(r, end);
    let caption = if every > 1 {
        format!(
            "Each dot is a request (every {every}th shown); height is the time from sending it to its last reply."
        )
    } else {
        "Each dot is a request; height is the time from sending it to its last reply.".to_string()
    };
    figure(out, "mco-requests", &chart, &caption);
    if m.per_request.is_empty() {
        return;
    }
    out.push_str(
        "<table>\n<tr><th>request</th><th class=\"num\">sent</th><th class=\"num\">replies</th>\
         <th class=\"num\">expected</th><th class=\"num\">first reply after</th><th class=\"num\">last reply after</th></tr>\n",
    );
    for q in m.per_request.iter().take(MAX_TABLE_ROWS) {
        let after =
            |t: Option<u64>| t.map_or("–".to_string(), |t| fmt_ms(t.saturating_sub(q.sent_ms)));
        let _ = writeln!(
            out,
            "<tr{}><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            if q.received < q.expected {
                " class=\"bad\""
            } else {
                ""
            },
            escape(&q.request_id),
            fmt_at_ms(q.sent_ms),
            q.received,
            q.expected,
            after(q.first_reply_ms),
            after(q.last_reply_ms),
        );
    }
    out.push_str("</table>\n");
    if m.per_request.len() > MAX_TABLE_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"note\">First {MAX_TABLE_ROWS} of {} requests; all are in mcollective.csv.</p>",
            m.per_request.len()
        );
    }
}

/// `compare.html` for several labelled runs; ratios are against the first.
pub(crate) fn compare_page(runs: &[(String, RunReport)]) -> String {
    let mut out = String::new();
    compare_header(&mut out, runs);
    compare_runs_table(&mut out, runs);
    compare_messages_table(&mut out, runs);
    compare_failover_table(&mut out, runs);

    out.push_str("<h2 id=\"latency\">Latency</h2>\n");
    let refs: Vec<(&str, &RunReport)> = runs.iter().map(|(l, r)| (l.as_str(), r)).collect();
    percentile_table(&mut out, &refs);
    out.push_str("<p class=\"note\">Ratios (×) are against the first run.</p>\n");

    // Charts: one series per run.
    let reports: Vec<&RunReport> = runs.iter().map(|(_, r)| r).collect();
    let end = time_extent(&reports);
    let fault_bands = compare_bands(runs);
    out.push_str("<h2 id=\"charts\">Over time</h2>\n");
    figure(
        &mut out,
        "latency",
        &compare_p99_chart(runs, end, fault_bands.clone()),
        "One line per run. Grey bands are fault windows.",
    );
    figure(
        &mut out,
        "throughput",
        &compare_delivered_chart(runs, end, fault_bands.clone()),
        "One line per run.",
    );
    figure(
        &mut out,
        "connected",
        &compare_connected_chart(runs, end, fault_bands),
        "Sum over brokers of the nodes connected at the end of each second; one line per run.",
    );

    compare_distributions(&mut out, runs);
    out.push_str("<footer>Rows of compare.csv hold the same numbers.</footer>\n</body>\n</html>\n");
    out
}

/// The page's head and the verdict over all runs.
fn compare_header(out: &mut String, runs: &[(String, RunReport)]) {
    let labels: Vec<&str> = runs.iter().map(|(l, _)| l.as_str()).collect();
    page_start(
        out,
        &format!("Stampede comparison: {}", labels.join(" vs ")),
    );
    let all_passed = runs.iter().all(|(_, r)| r.passed());
    let (cls, badge) = if all_passed {
        ("pass", "ALL PASS")
    } else {
        ("fail", "FAILURES")
    };
    let _ = writeln!(
        out,
        "<header class=\"{cls}\">\n<h1>Comparison of {} runs<span class=\"badge {cls}\">{badge}</span></h1>\n</header>",
        runs.len()
    );
}

/// "Runs": scenario, seed, target, duration and expectations of each run.
fn compare_runs_table(out: &mut String, runs: &[(String, RunReport)]) {
    out.push_str(
        "<h2 id=\"runs\">Runs</h2>\n<table>\n<tr><th>run</th><th>scenario</th><th class=\"num\">seed</th><th>target</th>\
         <th class=\"num\">duration</th><th>expectations</th></tr>\n",
    );
    for (label, r) in runs {
        let failed: Vec<&str> = r
            .expectations
            .iter()
            .filter(|e| !e.ok)
            .map(|e| e.name.as_str())
            .collect();
        let verdict = if failed.is_empty() {
            format!(
                "<span class=\"ok\">✓ {} of {}</span>",
                r.expectations.len(),
                r.expectations.len()
            )
        } else {
            format!(
                "<span class=\"notok\">✗ {}</span>",
                escape(&failed.join(", "))
            )
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{verdict}</td></tr>",
            escape(label),
            escape(&r.scenario),
            r.seed,
            escape(r.target.as_deref().unwrap_or("simulation")),
            fmt_seconds(r.sim_seconds),
        );
    }
    out.push_str("</table>\n");
}

/// "Messages": the counts, reorders and throughput side by side, with ratios against the
/// first run.
fn compare_messages_table(out: &mut String, runs: &[(String, RunReport)]) {
    out.push_str("<h2 id=\"messages\">Messages</h2>\n<table>\n<tr><th>count</th>");
    for (l, _) in runs {
        let _ = write!(out, "<th class=\"num\">{}</th>", escape(l));
    }
    out.push_str("<th>meaning</th></tr>\n");
    let values: Vec<[u64; 7]> = runs.iter().map(|(_, r)| count_values(r)).collect();
    for (i, (name, expl)) in COUNT_ROWS.iter().enumerate() {
        let _ = write!(out, "<tr><td>{name}</td>");
        for (ri, v) in values.iter().enumerate() {
            let ratio = if ri > 0 {
                ratio_span(v[i] as f64, values[0][i] as f64)
            } else {
                String::new()
            };
            let _ = write!(out, "<td class=\"num\">{}{ratio}</td>", v[i]);
        }
        let _ = writeln!(out, "<td class=\"expl\">{}</td></tr>", escape(expl));
    }
    let _ = write!(out, "<tr><td>reorders</td>");
    for (ri, (_, r)) in runs.iter().enumerate() {
        let ratio = match runs.first() {
            Some((_, first)) if ri > 0 => ratio_span(r.reorders as f64, first.reorders as f64),
            _ => String::new(),
        };
        let _ = write!(out, "<td class=\"num\">{}{ratio}</td>", r.reorders);
    }
    out.push_str(
        "<td class=\"expl\">per-producer FIFO violations</td></tr>\n<tr><td>throughput</td>",
    );
    let base_tp = runs.first().map(|(_, r)| r.throughput()).unwrap_or(0.0);
    for (ri, (_, r)) in runs.iter().enumerate() {
        let ratio = if ri > 0 {
            ratio_span(r.throughput(), base_tp)
        } else {
            String::new()
        };
        let _ = write!(out, "<td class=\"num\">{:.1}{ratio}</td>", r.throughput());
    }
    out.push_str("<td class=\"expl\">delivered per second</td></tr>\n</table>\n");
}

/// "Failover": how many clients failed over and how long it took, and the MCollective
/// reply coverage overall and while faults were open, side by side with ratios against
/// the first run. Left out when no run had a failover or a request.
fn compare_failover_table(out: &mut String, runs: &[(String, RunReport)]) {
    let any = runs
        .iter()
        .any(|(_, r)| !r.failover_ms.is_empty() || r.mco_reply_ratio().is_some());
    if !any {
        return;
    }
    out.push_str("<h2 id=\"failover\">Failover</h2>\n<table>\n<tr><th>measure</th>");
    for (l, _) in runs {
        let _ = write!(out, "<th class=\"num\">{}</th>", escape(l));
    }
    out.push_str("<th>meaning</th></tr>\n");
    type Measure = fn(&RunReport) -> Option<f64>;
    let rows: [(&str, &str, Measure, bool); 6] = [
        (
            "failovers",
            "clients that lost a connection and got one again",
            |r| Some(r.failover_ms.len() as f64),
            false,
        ),
        (
            "failover p50 (ms)",
            "from losing the connection to being subscribed again",
            |r| (!r.failover_ms.is_empty()).then(|| r.failover_ms.value_at_quantile(0.5) as f64),
            false,
        ),
        (
            "failover p99 (ms)",
            "",
            |r| (!r.failover_ms.is_empty()).then(|| r.failover_ms.value_at_quantile(0.99) as f64),
            false,
        ),
        (
            "failover max (ms)",
            "",
            |r| (!r.failover_ms.is_empty()).then(|| r.failover_ms.max() as f64),
            false,
        ),
        (
            "MCollective replies",
            "received over expected, every request",
            |r| r.mco_reply_ratio(),
            true,
        ),
        (
            "… during faults",
            "requests sent while a fault window was open",
            |r| r.mco_reply_ratio_during_faults(),
            true,
        ),
    ];
    for (name, meaning, measure, ratio_row) in rows {
        let _ = write!(out, "<tr><td>{}</td>", escape(name));
        let base = runs.first().and_then(|(_, r)| measure(r));
        for (ri, (_, r)) in runs.iter().enumerate() {
            let cell = match measure(r) {
                None => "no data".to_owned(),
                Some(v) => {
                    let text = if ratio_row {
                        format!("{:.2}%", v * 100.0)
                    } else {
                        format!("{v:.0}")
                    };
                    let ratio = match base {
                        Some(b) if ri > 0 => ratio_span(v, b),
                        _ => String::new(),
                    };
                    format!("{text}{ratio}")
                }
            };
            let _ = write!(out, "<td class=\"num\">{cell}</td>");
        }
        let _ = writeln!(out, "<td class=\"expl\">{}</td></tr>", escape(meaning));
    }
    out.push_str("</table>\n");
}

/// p99 latency per second, one line per run.
fn compare_p99_chart(runs: &[(String, RunReport)], end: f64, bands: Vec<Band>) -> Chart {
    let mut p99_max = Vec::new();
    let p99_lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(i, (label, r))| {
            let mut l = run_line(format!("{label} p99"), i);
            l.points = seconds_in_order(r)
                .iter()
                .map(|s| {
                    let v = (!s.latency.is_empty()).then(|| s.latency.value_at_quantile(0.99));
                    if let Some(v) = v {
                        p99_max.push(v);
                    }
                    (s.t_s as f64 + 0.5, v.map(|v| v as f64))
                })
                .collect();
            l
        })
        .collect();
    Chart {
        title: "p99 latency per second (from the intended send time)".into(),
        x_desc: "time (s)".into(),
        y_desc: "p99 latency (log scale)".into(),
        x: time_axis(end),
        y: latency_axis(p99_max.iter().copied()),
        y2: None,
        bands,
        empty_note: p99_max.is_empty().then(|| "no deliveries".to_string()),
        lines: p99_lines,
        dots: vec![],
    }
}

/// Messages delivered per second, one line per run.
fn compare_delivered_chart(runs: &[(String, RunReport)], end: f64, bands: Vec<Band>) -> Chart {
    let mut max_delivered = 0;
    let delivered_lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(i, (label, r))| {
            let mut l = run_line(label.as_str(), i);
            l.points = seconds_in_order(r)
                .iter()
                .map(|s| {
                    max_delivered = max_delivered.max(s.delivered);
                    (s.t_s as f64 + 0.5, Some(s.delivered as f64))
                })
                .collect();
            l
        })
        .collect();
    Chart {
        title: "Messages delivered per second".into(),
        x_desc: "time (s)".into(),
        y_desc: "delivered / s".into(),
        x: time_axis(end),
        y: Axis::linear(max_delivered as f64, charts::fmt_axis_count),
        y2: None,
        bands,
        empty_note: runs
            .iter()
            .all(|(_, r)| r.seconds.is_empty())
            .then(|| "no per-second samples".to_string()),
        lines: delivered_lines,
        dots: vec![],
    }
}

/// Connected nodes summed over brokers at the end of each second, one line per run.
fn compare_connected_chart(runs: &[(String, RunReport)], end: f64, bands: Vec<Band>) -> Chart {
    let mut max_connected = 0;
    let connected_lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(i, (label, r))| {
            let mut l = run_line(label.as_str(), i);
            l.points = seconds_in_order(r)
                .iter()
                .map(|s| {
                    let total: u64 = s.connected.iter().sum();
                    max_connected = max_connected.max(total);
                    (s.t_s as f64 + 1.0, Some(total as f64))
                })
                .collect();
            l
        })
        .collect();
    Chart {
        title: "Connected nodes, all brokers".into(),
        x_desc: "time (s)".into(),
        y_desc: "connected nodes".into(),
        x: time_axis(end),
        y: Axis::linear(max_connected as f64, charts::fmt_axis_count),
        y2: None,
        bands,
        empty_note: runs
            .iter()
            .all(|(_, r)| r.seconds.is_empty())
            .then(|| "no connection samples".to_string()),
        lines: connected_lines,
        dots: vec![],
    }
}

/// "Percentile distribution": latency over each whole run, and failover times when any
/// run had failovers.
fn compare_distributions(out: &mut String, runs: &[(String, RunReport)]) {
    let color = |i: usize| PALETTE[i % PALETTE.len()];
    out.push_str("<h2 id=\"distribution\">Percentile distribution</h2>\n");
    let lat: Vec<(String, charts::RGBColor, &hdrhistogram::Histogram<u64>)> = runs
        .iter()
        .enumerate()
        .map(|(i, (l, r))| (l.clone(), color(i), &r.latency_us))
        .collect();
    figure(
        out,
        "distribution",
        &distribution_chart(
            "Latency percentile distribution",
            "latency (log scale)",
            &lat,
            false,
        ),
        "One line per run, over each whole run.",
    );
    if runs.iter().any(|(_, r)| !r.failover_ms.is_empty()) {
        let fo: Vec<(String, charts::RGBColor, &hdrhistogram::Histogram<u64>)> = runs
            .iter()
            .enumerate()
            .map(|(i, (l, r))| (l.clone(), color(i), &r.failover_ms))
            .collect();
        figure(
            out,
            "failover",
            &distribution_chart(
                "Failover time percentile distribution",
                "disconnect → re-subscribed",
                &fo,
                true,
            ),
            "One line per run.",
        );
    }
}

/// The line of the `i`th run (or broker): its palette colour, dashed once the palette
/// has been used up.
fn run_line(name: impl Into<String>, i: usize) -> Line {
    let mut l = Line::new(name, PALETTE[i % PALETTE.len()]);
    l.dashed = (i / PALETTE.len()) % 2 == 1;
    l
}

/// The fault windows of all runs, without repeats; a window that not every run had is
/// labelled with the runs that had it.
fn compare_bands(runs: &[(String, RunReport)]) -> Vec<Band> {
    let mut out: Vec<(FaultWindow, Vec<&str>)> = Vec::new();
    for (label, r) in runs {
        for f in &r.faults {
            let key = |x: &FaultWindow| (x.label.clone(), x.start_ms, x.end_ms);
            match out.iter_mut().find(|(g, _)| key(g) == key(f)) {
                Some((_, who)) => who.push(label),
                None => out.push((f.clone(), vec![label])),
            }
        }
    }
    out.into_iter()
        .map(|(f, who)| {
            let mut b = band(&f);
            if who.len() < runs.len() {
                b.label = format!("{} [{}]", b.label, who.join(", "));
            }
            b
        })
        .collect()
}
