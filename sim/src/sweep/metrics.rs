//! What a sweep measures at each point: numbers read from the run's report.
//!
//! Every metric comes from the report a `stampede run` wrote (`summary.json`,
//! `histograms.json`, `mcollective.csv`, read back with [`stampede_reports::read_report`]);
//! a metric without data (a ratio over nothing, a percentile of nothing) is `None`.

use stampede_reports::RunReport;

/// One metric: its name in objectives and `sweep.csv`, what it is, and which way is
/// better (for the worst value over seeds).
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// The name.
    pub name: &'static str,
    /// What it measures.
    pub doc: &'static str,
    /// Whether larger values are better (ratios); otherwise smaller are.
    pub higher_is_better: bool,
}

const fn m(name: &'static str, doc: &'static str, higher_is_better: bool) -> MetricDef {
    MetricDef {
        name,
        doc,
        higher_is_better,
    }
}

/// Every metric, in `sweep.csv`'s column order.
pub const METRICS: &[MetricDef] = &[
    m(
        "mco_p99_ms",
        "p99 over discovery rounds of the time from the request's scheduled send to its last reply inside the discovery window (ms)",
        false,
    ),
    m("mco_p50_ms", "the same, median (ms)", false),
    m("mco_max_ms", "the same, largest (ms)", false),
    m(
        "mco_reply_ratio",
        "MCollective replies received in time / replies expected (discovery and directed)",
        true,
    ),
    m(
        "mco_complete_ratio",
        "share of MCollective requests (rounds) that got every expected reply in time",
        true,
    ),
    m("mco_requests", "MCollective requests sent", true),
    m(
        "latency_p50_ms",
        "median delivery latency from the intended send time (ms)",
        false,
    ),
    m("latency_p99_ms", "p99 delivery latency (ms)", false),
    m("latency_max_ms", "largest delivery latency (ms)", false),
    m("attempted", "messages (units) attempted", true),
    m("delivered", "messages (units) delivered", true),
    m("lost", "messages lost", false),
    m("loss_ratio", "lost / attempted", false),
    m("unexplained_lost", "lost messages without a cause", false),
    m("duplicated", "messages delivered more than once", false),
    m("throughput_msg_s", "delivered per simulated second", true),
    m("failover_p99_ms", "p99 failover time (ms)", false),
    m(
        "expectations_failed",
        "the scenario's expectations that failed",
        false,
    ),
    m(
        "broker_cpu",
        "busiest broker's CPU utilisation over the run (0-1); needs brokers with a cost profile",
        false,
    ),
    m(
        "clients_cpu",
        "cores the simulated clients used on average over the run (a live run's generator_cores); needs a [clients] cost profile",
        false,
    ),
];

/// The definition of metric `name`.
pub fn def(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|d| d.name == name)
}

/// The metric names, comma-separated (for errors and help).
pub fn names() -> String {
    METRICS
        .iter()
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A run's metric values, in [`METRICS`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics(pub Vec<Option<f64>>);

impl Metrics {
    /// The value of `name` (`None`: no data, or no such metric).
    pub fn get(&self, name: &str) -> Option<f64> {
        let i = METRICS.iter().position(|d| d.name == name)?;
        self.0.get(i).copied().flatten()
    }

    /// No value at all (a run that did not finish).
    pub fn none() -> Metrics {
        Metrics(vec![None; METRICS.len()])
    }

    /// The worst value of each metric over several runs (seeds); `None` if any run has
    /// none.
    pub fn worst(runs: &[&Metrics]) -> Metrics {
        Metrics(
            METRICS
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let mut acc: Option<f64> = None;
                    for r in runs {
                        let v = r.0.get(i).copied().flatten()?;
                        acc = Some(match acc {
                            None => v,
                            Some(a) if d.higher_is_better => a.min(v),
                            Some(a) => a.max(v),
                        });
                    }
                    acc
                })
                .collect(),
        )
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// The busiest broker's share of one core over the run (its simulated CPU, from the
/// brokers' cost profiles); `None` when the brokers had no cost model.
pub fn broker_cpu(report: &RunReport) -> Option<f64> {
    report
        .broker_cpu
        .iter()
        .map(|c| c.utilisation(report.sim_seconds))
        .reduce(f64::max)
}

/// The metrics of one finished run.
pub fn of(report: &RunReport) -> Metrics {
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64, per_ms: f64| {
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / per_ms)
    };
    let mco = report.mcollective.as_ref();
    let mut discovery: Vec<f64> = mco
        .map(|m| {
            m.per_request
                .iter()
                .filter(|r| r.request_id.starts_with("discovery-"))
                .filter_map(|r| r.last_reply_ms.map(|v| v as f64))
                .collect()
        })
        .unwrap_or_default();
    discovery.sort_by(f64::total_cmp);
    let c = &report.messages;
    let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
    let value = |name: &str| -> Option<f64> {
        match name {
            "mco_p99_ms" => quantile(&discovery, 0.99),
            "mco_p50_ms" => quantile(&discovery, 0.5),
            "mco_max_ms" => discovery.last().copied(),
            "mco_reply_ratio" => mco.and_then(|m| ratio(m.replies_received, m.replies_expected)),
            "mco_complete_ratio" => mco.and_then(|m| {
                let n = m.per_request.len() as u64;
                let done = m
                    .per_request
                    .iter()
                    .filter(|r| r.received >= r.expected)
                    .count() as u64;
                ratio(done, n)
            }),
            "mco_requests" => mco.map(|m| m.requests as f64),
            "latency_p50_ms" => ms(&report.latency_us, 0.5, 1000.0),
            "latency_p99_ms" => ms(&report.latency_us, 0.99, 1000.0),
            "latency_max_ms" => ms(&report.latency_us, 1.0, 1000.0),
            "attempted" => Some(c.attempted as f64),
            "delivered" => Some(c.delivered as f64),
            "lost" => Some(c.lost as f64),
            "loss_ratio" => ratio(c.lost, c.attempted),
            "unexplained_lost" => Some(report.unexplained_lost as f64),
            "duplicated" => Some(c.duplicated as f64),
            "throughput_msg_s" => (report.sim_seconds > 0.0).then(|| report.throughput()),
            "failover_p99_ms" => ms(&report.failover_ms, 0.99, 1.0),
            "expectations_failed" => {
                Some(report.expectations.iter().filter(|e| !e.ok).count() as f64)
            }
            "broker_cpu" => broker_cpu(report),
            "clients_cpu" => report.clients_cpu.map(|c| c.cores_used(report.sim_seconds)),
            _ => None,
        }
    };
    Metrics(METRICS.iter().map(|d| value(d.name)).collect())
}
