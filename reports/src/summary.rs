//! `summary.json`: the run in one small, diffable JSON document.
//!
//! Pretty-printed, fields always in this order, no maps with data-dependent keys:
//!
//! ```json
//! {
//!   "schema": "stampede-report/1",
//!   "scenario": "mco-failover",
//!   "seed": 42,
//!   "target": null,                      // live mode: what was measured
//!   "passed": true,                      // every expectation held (true when there are none)
//!   "sim_seconds": 120.0,
//!   "brokers": ["broker-1", "broker-2"],
//!   "messages": { "attempted": 0, "acknowledged": 0, "delivered": 0, "lost": 0,
//!                 "unexpected": 0, "duplicated": 0, "recovered": 0 },
//!   "reorders": 0,
//!   "throughput_msg_s": 0.0,             // delivered / sim_seconds, 3 decimals
//!   "latency_us":    { "count", "min", "mean", "p50", "p90", "p99", "p999", "p9999", "max" },
//!   "send_delay_us": { same fields },
//!   "failover_ms":   { same fields },
//!   "mcollective": null | { "requests", "replies_expected", "replies_received",
//!                           "replies_missing", "requests_complete" },
//!   "network": null | { "bridged_deliveries", "max_hops", "loop_messages",
//!                       "returned_messages" },
//!   "expectations": [ { "name", "ok", "detail",
//!                       "check": null | { "measure", "count" | "num", "den" | "histogram",
//!                                         "quantile", "at_most", "limit", "allow_no_data",
//!                                         "what" } } ],
//!   "faults": [ { "kind", "label", "start_ms", "end_ms" } ],   // end_ms null: never healed
//!   "losses_by_fault": [ { "label", "lost" } ],
//!   "losses_by_cause": [ { "label", "lost" } ],               // label "unexplained": no cause
//!   "unexplained_lost": 0,
//!   "unexplained_losses": [ { "id", "sent_ms", "path" } ],     // the first 100
//!   "failovers_unfinished": [ { "client", "since_ms" } ],
//!   "replay_command": null | "stampede run …",
//!   "broker_counters": [ { "series", "before", "after" } ],  // live, stampede-broker
//!                                        // with --metrics: its /metrics around the run
//!   "broker_cpu": [ { "broker", "busy_us", "utilisation", "peak_second" } ],  // cost model
//!                                        // only; per second in broker_cpu.csv
//!   "clients_cpu": { "busy_us", "cores", "cores_used" },  // [clients] cost profile only
//!   "wall_seconds": 3.2                  // the only nondeterministic field, always last
//! }
//! ```
//!
//! `mcollective` is `null` when the run had no MCollective traffic, so that "no
//! MCollective" and "MCollective with zero replies" stay distinct. Histogram statistics
//! are all 0 for an empty histogram. `mean` and `throughput_msg_s` are rounded to 3
//! decimals; every float is printed as the shortest text that reads back to the same
//! value, so equal input prints equal bytes. A non-finite `sim_seconds` or
//! `wall_seconds` is written as `null` (JSON has no NaN) and read back as NaN.

use serde::{Deserialize, Serialize};

use crate::model::{
    BrokerCpu, Check, ClientsCpu, ExpectationResult, FaultLoss, FaultWindow, HistogramName,
    McoSummary, Measure, MessageCounts, NetworkSummary, RunReport, UnexplainedLoss,
    UnfinishedFailover,
};
use crate::stats::{HistogramStats, round3};

/// The value of the `schema` field.
pub const SCHEMA: &str = "stampede-report/1";

/// The shape of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// [`RunReport::scenario`].
    pub scenario: String,
    /// [`RunReport::seed`].
    pub seed: u64,
    /// [`RunReport::target`].
    pub target: Option<String>,
    /// [`RunReport::passed`].
    pub passed: bool,
    /// [`RunReport::sim_seconds`].
    #[serde(with = "finite_or_null")]
    pub sim_seconds: f64,
    /// [`RunReport::brokers`].
    pub brokers: Vec<String>,
    /// [`RunReport::messages`].
    pub messages: MessagesJson,
    /// [`RunReport::reorders`].
    pub reorders: u64,
    /// [`RunReport::throughput`], rounded to 3 decimals.
    pub throughput_msg_s: f64,
    /// Statistics of [`RunReport::latency_us`].
    pub latency_us: StatsJson,
    /// Statistics of [`RunReport::send_delay_us`].
    pub send_delay_us: StatsJson,
    /// Statistics of [`RunReport::failover_ms`].
    pub failover_ms: StatsJson,
    /// MCollective totals; `null` when the run had none.
    pub mcollective: Option<McoJson>,
    /// Roboconf totals; absent when the run had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roboconf: Option<crate::model::RoboconfSummary>,
    /// Network totals; `null` when the brokers formed no network.
    #[serde(default)]
    pub network: Option<NetworkJson>,
    /// [`RunReport::expectations`].
    pub expectations: Vec<ExpectationJson>,
    /// [`RunReport::faults`].
    pub faults: Vec<FaultJson>,
    /// [`RunReport::losses_by_fault`].
    pub losses_by_fault: Vec<FaultLossJson>,
    /// [`RunReport::losses_by_cause`].
    #[serde(default)]
    pub losses_by_cause: Vec<FaultLossJson>,
    /// [`RunReport::unexplained_lost`].
    #[serde(default)]
    pub unexplained_lost: u64,
    /// [`RunReport::unexplained_losses`].
    #[serde(default)]
    pub unexplained_losses: Vec<UnexplainedJson>,
    /// [`RunReport::failovers_unfinished`].
    #[serde(default)]
    pub failovers_unfinished: Vec<UnfinishedJson>,
    /// [`RunReport::replay_command`].
    pub replay_command: Option<String>,
    /// [`RunReport::broker_cpu`] without the per-second values (`broker_cpu.csv`).
    #[serde(default)]
    pub broker_cpu: Vec<BrokerCpuJson>,
    /// [`RunReport::clients_cpu`] (simulated clients with a cost profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients_cpu: Option<ClientsCpuJson>,
    /// [`RunReport::broker_counters`] (live mode against stampede-broker with
    /// `--metrics`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_counters: Vec<crate::model::BrokerCounter>,
    /// [`RunReport::wall_seconds`]; last so that a diff of two runs ends with it.
    #[serde(with = "finite_or_null")]
    pub wall_seconds: f64,
}

/// One entry of `broker_cpu` in `summary.json`: CPU time in all, the share of one core
/// over the run and in the busiest second (3 decimals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerCpuJson {
    /// The broker's name.
    pub broker: String,
    /// CPU time in all, in µs.
    pub busy_us: u64,
    /// Share of one core over the run.
    pub utilisation: f64,
    /// Share of one core in the busiest second.
    pub peak_second: f64,
}

/// `clients_cpu` in `summary.json`: the simulated clients' CPU time in all, their cores,
/// and the cores they used on average over the run (3 decimals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientsCpuJson {
    /// CPU time in all, in µs.
    pub busy_us: u64,
    /// The cores they shared.
    pub cores: u32,
    /// Cores used on average over the run.
    pub cores_used: f64,
}

/// `messages` in `summary.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MessagesJson {
    pub attempted: u64,
    pub acknowledged: u64,
    pub delivered: u64,
    pub lost: u64,
    pub unexpected: u64,
    pub duplicated: u64,
    pub recovered: u64,
}

/// Histogram statistics in `summary.json`; see [`HistogramStats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct StatsJson {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

/// `mcollective` in `summary.json`. `replies_missing` is expected minus received (0 if
/// more came than expected); `requests_complete` counts per-request rows that got every
/// expected reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct McoJson {
    pub requests: u64,
    pub replies_expected: u64,
    pub replies_received: u64,
    pub replies_missing: u64,
    pub requests_complete: u64,
}

/// `network` in `summary.json`; see [`NetworkSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NetworkJson {
    pub bridged_deliveries: u64,
    pub max_hops: u64,
    pub loop_messages: u64,
    pub returned_messages: u64,
}

/// One entry of `expectations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ExpectationJson {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(default)]
    pub check: Option<CheckJson>,
}

/// How an expectation was measured ([`Check`]), so that `stampede merge` can judge it
/// again on merged shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CheckJson {
    /// `count`, `ratio` or `quantile`.
    pub measure: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub den: Option<u64>,
    /// `latency_us` or `failover_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    pub at_most: bool,
    pub limit: f64,
    pub allow_no_data: bool,
    pub what: String,
}

impl CheckJson {
    fn of(c: &Check) -> CheckJson {
        let mut j = CheckJson {
            measure: String::new(),
            count: None,
            num: None,
            den: None,
            histogram: None,
            quantile: None,
            at_most: c.at_most,
            limit: c.limit,
            allow_no_data: c.allow_no_data,
            what: c.what.clone(),
        };
        match &c.measure {
            Measure::Count(n) => {
                j.measure = "count".into();
                j.count = Some(*n);
            }
            Measure::Ratio { num, den } => {
                j.measure = "ratio".into();
                j.num = Some(*num);
                j.den = Some(*den);
            }
            Measure::Quantile {
                histogram,
                quantile,
            } => {
                j.measure = "quantile".into();
                j.histogram = Some(
                    match histogram {
                        HistogramName::LatencyUs => "latency_us",
                        HistogramName::FailoverMs => "failover_ms",
                    }
                    .into(),
                );
                j.quantile = Some(*quantile);
            }
        }
        j
    }

    /// The check, or `None` when the JSON names an unknown measure.
    fn to_check(&self) -> Option<Check> {
        let measure = match self.measure.as_str() {
            "count" => Measure::Count(self.count?),
            "ratio" => Measure::Ratio {
                num: self.num?,
                den: self.den?,
            },
            "quantile" => Measure::Quantile {
                histogram: match self.histogram.as_deref()? {
                    "latency_us" => HistogramName::LatencyUs,
                    "failover_ms" => HistogramName::FailoverMs,
                    _ => return None,
                },
                quantile: self.quantile?,
            },
            _ => return None,
        };
        Some(Check {
            measure,
            at_most: self.at_most,
            limit: self.limit,
            allow_no_data: self.allow_no_data,
            what: self.what.clone(),
        })
    }
}

/// One entry of `unexplained_losses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct UnexplainedJson {
    pub id: String,
    pub sent_ms: u64,
    pub path: String,
}

/// One entry of `failovers_unfinished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct UnfinishedJson {
    pub client: String,
    pub since_ms: u64,
}

/// One entry of `faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct FaultJson {
    pub kind: String,
    pub label: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
}

/// One entry of `losses_by_fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct FaultLossJson {
    pub label: String,
    pub lost: u64,
}

impl From<HistogramStats> for StatsJson {
    fn from(s: HistogramStats) -> Self {
        StatsJson {
            count: s.count,
            min: s.min,
            mean: s.mean,
            p50: s.p50,
            p90: s.p90,
            p99: s.p99,
            p999: s.p999,
            p9999: s.p9999,
            max: s.max,
        }
    }
}

impl Summary {
    /// The summary of `report`.
    pub fn of(report: &RunReport) -> Self {
        let m = &report.messages;
        Summary {
            schema: SCHEMA.to_string(),
            scenario: report.scenario.clone(),
            seed: report.seed,
            target: report.target.clone(),
            passed: report.passed(),
            sim_seconds: report.sim_seconds,
            brokers: report.brokers.clone(),
            messages: MessagesJson {
                attempted: m.attempted,
                acknowledged: m.acknowledged,
                delivered: m.delivered,
                lost: m.lost,
                unexpected: m.unexpected,
                duplicated: m.duplicated,
                recovered: m.recovered,
            },
            reorders: report.reorders,
            throughput_msg_s: round3(report.throughput()),
            latency_us: HistogramStats::of(&report.latency_us).into(),
            send_delay_us: HistogramStats::of(&report.send_delay_us).into(),
            failover_ms: HistogramStats::of(&report.failover_ms).into(),
            mcollective: report.mcollective.as_ref().map(mco_json),
            roboconf: report.roboconf.clone(),
            network: report.network.map(|n| NetworkJson {
                bridged_deliveries: n.bridged_deliveries,
                max_hops: n.max_hops,
                loop_messages: n.loop_messages,
                returned_messages: n.returned_messages,
            }),
            expectations: report
                .expectations
                .iter()
                .map(|e| ExpectationJson {
                    name: e.name.clone(),
                    ok: e.ok,
                    detail: e.detail.clone(),
                    check: e.check.as_ref().map(CheckJson::of),
                })
                .collect(),
            faults: report
                .faults
                .iter()
                .map(|f| FaultJson {
                    kind: f.kind.clone(),
                    label: f.label.clone(),
                    start_ms: f.start_ms,
                    end_ms: f.end_ms,
                })
                .collect(),
            losses_by_fault: report
                .losses_by_fault
                .iter()
                .map(|l| FaultLossJson {
                    label: l.label.clone(),
                    lost: l.lost,
                })
                .collect(),
            losses_by_cause: report
                .losses_by_cause
                .iter()
                .map(|l| FaultLossJson {
                    label: l.label.clone(),
                    lost: l.lost,
                })
                .collect(),
            unexplained_lost: report.unexplained_lost,
            unexplained_losses: report
                .unexplained_losses
                .iter()
                .map(|u| UnexplainedJson {
                    id: u.id.clone(),
                    sent_ms: u.sent_ms,
                    path: u.path.clone(),
                })
                .collect(),
            failovers_unfinished: report
                .failovers_unfinished
                .iter()
                .map(|u| UnfinishedJson {
                    client: u.client.clone(),
                    since_ms: u.since_ms,
                })
                .collect(),
            replay_command: report.replay_command.clone(),
            broker_cpu: report
                .broker_cpu
                .iter()
                .map(|c| BrokerCpuJson {
                    broker: c.broker.clone(),
                    busy_us: c.busy_us,
                    utilisation: round3(c.utilisation(report.sim_seconds)),
                    peak_second: round3(c.peak_second()),
                })
                .collect(),
            clients_cpu: report.clients_cpu.map(|c| ClientsCpuJson {
                busy_us: c.busy_us,
                cores: c.cores,
                cores_used: round3(c.cores_used(report.sim_seconds)),
            }),
            broker_counters: report.broker_counters.clone(),
            wall_seconds: report.wall_seconds,
        }
    }

    /// The report fields that `summary.json` holds in full: everything but the
    /// histograms, the per-second rows and the per-request MCollective rows, which come
    /// from `histograms.json`, `timeseries.csv` and `mcollective.csv`.
    pub(crate) fn to_report_skeleton(&self) -> RunReport {
        let m = &self.messages;
        let mut r = RunReport::new(self.scenario.clone(), self.seed);
        r.target = self.target.clone();
        r.sim_seconds = self.sim_seconds;
        r.wall_seconds = self.wall_seconds;
        r.messages = MessageCounts {
            attempted: m.attempted,
            acknowledged: m.acknowledged,
            delivered: m.delivered,
            lost: m.lost,
            unexpected: m.unexpected,
            duplicated: m.duplicated,
            recovered: m.recovered,
        };
        r.mcollective = self.mcollective.map(|c| McoSummary {
            requests: c.requests,
            replies_expected: c.replies_expected,
            replies_received: c.replies_received,
            per_request: Vec::new(),
        });
        r.roboconf = self.roboconf.clone();
        r.network = self.network.map(|n| NetworkSummary {
            bridged_deliveries: n.bridged_deliveries,
            max_hops: n.max_hops,
            loop_messages: n.loop_messages,
            returned_messages: n.returned_messages,
        });
        r.expectations = self
            .expectations
            .iter()
            .map(|e| ExpectationResult {
                name: e.name.clone(),
                ok: e.ok,
                detail: e.detail.clone(),
                check: e.check.as_ref().and_then(CheckJson::to_check),
            })
            .collect();
        r.faults = self
            .faults
            .iter()
            .map(|f| FaultWindow {
                kind: f.kind.clone(),
                label: f.label.clone(),
                start_ms: f.start_ms,
                end_ms: f.end_ms,
            })
            .collect();
        r.losses_by_fault = self
            .losses_by_fault
            .iter()
            .map(|l| FaultLoss {
                label: l.label.clone(),
                lost: l.lost,
            })
            .collect();
        r.losses_by_cause = self
            .losses_by_cause
            .iter()
            .map(|l| FaultLoss {
                label: l.label.clone(),
                lost: l.lost,
            })
            .collect();
        r.unexplained_lost = self.unexplained_lost;
        r.unexplained_losses = self
            .unexplained_losses
            .iter()
            .map(|u| UnexplainedLoss {
                id: u.id.clone(),
                sent_ms: u.sent_ms,
                path: u.path.clone(),
            })
            .collect();
        r.failovers_unfinished = self
            .failovers_unfinished
            .iter()
            .map(|u| UnfinishedFailover {
                client: u.client.clone(),
                since_ms: u.since_ms,
            })
            .collect();
        r.reorders = self.reorders;
        r.brokers = self.brokers.clone();
        r.replay_command = self.replay_command.clone();
        r.broker_cpu = self
            .broker_cpu
            .iter()
            .map(|c| BrokerCpu {
                broker: c.broker.clone(),
                busy_us: c.busy_us,
                per_second_us: Vec::new(),
            })
            .collect();
        r.clients_cpu = self.clients_cpu.as_ref().map(|c| ClientsCpu {
            busy_us: c.busy_us,
            cores: c.cores,
        });
        r.broker_counters = self.broker_counters.clone();
        r
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        // Invariant: every field is a string, number, bool, null or a list/struct of those,
        // which serde_json always serializes.
        let mut s = serde_json::to_string_pretty(self).expect("summary serializes");
        s.push('\n');
        s
    }
}

/// The MCollective totals of `summary.json`.
fn mco_json(c: &McoSummary) -> McoJson {
    McoJson {
        requests: c.requests,
        replies_expected: c.replies_expected,
        replies_received: c.replies_received,
        replies_missing: c.replies_expected.saturating_sub(c.replies_received),
        requests_complete: c
            .per_request
            .iter()
            .filter(|r| r.received >= r.expected)
            .count() as u64,
    }
}

/// Writes a non-finite f64 as `null` and reads `null` back as NaN.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}
