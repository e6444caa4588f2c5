//! The plain data that a run fills in: [`RunReport`] and its parts.
//!
//! Nothing here knows how a run was made. The simulator and the live load generator both
//! build a [`RunReport`] and hand it to [`crate::write_report`]; the types are plain
//! structs with public fields so that either side can fill them without a builder.

use hdrhistogram::Histogram;

/// Highest latency or send delay the standard histograms track: one hour in microseconds.
pub const LATENCY_HIGHEST_US: u64 = 3_600_000_000;

/// Highest failover time the standard failover histogram tracks: one hour in milliseconds.
pub const FAILOVER_HIGHEST_MS: u64 = 3_600_000;

/// Significant decimal digits kept by the standard histograms.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty histogram with the bounds every latency and send-delay histogram uses:
/// 1 µs to 1 h at 3 significant digits. Values above the bound are rejected by
/// `record` and clamped by `saturating_record`.
pub fn latency_histogram() -> Histogram<u64> {
    // Invariant: the bounds are constants that satisfy `new_with_bounds`
    // (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, LATENCY_HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// An empty histogram with the bounds every failover histogram uses: 1 ms to 1 h at 3
/// significant digits.
pub fn failover_histogram() -> Histogram<u64> {
    // Invariant: as in `latency_histogram`, the bounds are valid constants.
    Histogram::new_with_bounds(1, FAILOVER_HIGHEST_MS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Everything one run (or the merge of several shards of one run) measured.
///
/// All fields except `wall_seconds` must be a function of the scenario and the seed in
/// simulation: two runs of one seed write byte-identical files apart from that one field
/// in `summary.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Scenario name, as given to `stampede run`.
    pub scenario: String,
    /// The simulation seed (in live mode: the seed of the load schedule).
    pub seed: u64,
    /// Live mode: what was measured, e.g. `"activemq tcp://127.0.0.1:61613"`. `None` in
    /// simulation.
    pub target: Option<String>,
    /// Simulated (or, live, measured) duration of the run in seconds.
    pub sim_seconds: f64,
    /// Wall-clock seconds the run took; the only field allowed to differ between two runs
    /// of one seed.
    pub wall_seconds: f64,
    /// Message accounting in the vocabulary of Jepsen's `total-queue` checker.
    pub messages: MessageCounts,
    /// End-to-end latency in µs, measured from the *intended* send time so that a stalled
    /// producer cannot hide latency (coordinated omission).
    pub latency_us: Histogram<u64>,
    /// Actual send time minus intended send time, in µs: how far the load generator lagged
    /// behind its own schedule.
    pub send_delay_us: Histogram<u64>,
    /// Per client: time from losing its connection to being subscribed again, in ms.
    pub failover_ms: Histogram<u64>,
    /// MCollective request/reply accounting, when the scenario ran MCollective traffic.
    pub mcollective: Option<McoSummary>,
    /// Roboconf's DM and agents, when the run had them.
    pub roboconf: Option<RoboconfSummary>,
    /// Deliveries across network bridges, when the brokers formed a network.
    pub network: Option<NetworkSummary>,
    /// The verdicts of the scenario's expectations.
    pub expectations: Vec<ExpectationResult>,
    /// One row per second of (simulated) time, in increasing `t_s`.
    pub seconds: Vec<SecondSample>,
    /// The fault windows the scenario injected.
    pub faults: Vec<FaultWindow>,
    /// Lost messages attributed to the fault window in which their cause happened (a
    /// crash, a cut connection), and [`NO_FAULT_LABEL`] for the others.
    pub losses_by_fault: Vec<FaultLoss>,
    /// Lost messages by cause (`crash`, `expired`, `stranded-send`, …, and
    /// [`UNEXPLAINED_LABEL`]), in a fixed order.
    pub losses_by_cause: Vec<FaultLoss>,
    /// Lost messages the checker found no cause for: a broker bug until shown otherwise.
    pub unexplained_lost: u64,
    /// The first unexplained losses (at most [`UNEXPLAINED_LISTED_MAX`]), with their path.
    pub unexplained_losses: Vec<UnexplainedLoss>,
    /// Clients that lost their connection and were still without one at the end of the
    /// run.
    pub failovers_unfinished: Vec<UnfinishedFailover>,
    /// Every failover of the run, finished or not, ordered by when the connection was
    /// lost: where each client went, how many attempts it took and what the failed ones
    /// met (`failovers.csv`).
    pub failovers: Vec<Failover>,
    /// Per-producer FIFO violations: deliveries that overtook an earlier message of the
    /// same producer on the same destination.
    pub reorders: u64,
    /// Broker names; `SecondSample::connected` lists its values in this order.
    pub brokers: Vec<String>,
    /// The command that replays this run, printed when an expectation fails.
    pub replay_command: Option<String>,
    /// CPU each broker spent, when the brokers had a cost model (simulated CPU time)
    /// or, live, when the broker's CPU was read; empty otherwise. In
    /// [`RunReport::brokers`] order.
    pub broker_cpu: Vec<BrokerCpu>,
    /// CPU the simulated clients spent, when the scenario gave them a cost profile
    /// (`[clients]`): what to set beside a live run's `generator_cores`. `None` otherwise.
    pub clients_cpu: Option<ClientsCpu>,
    /// Live mode against stampede-broker with `--metrics`: the broker's own counters and
    /// gauges, read from its Prometheus endpoint before and after the run, to set beside
    /// what the clients saw. Empty otherwise.
    pub broker_counters: Vec<BrokerCounter>,
}

/// One series of the broker's Prometheus endpoint (`messages_received_total`, or
/// `queue_messages{destination="/queue/a"}`, without the `stampede_` prefix and the
/// `broker` label), read before and after a live run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BrokerCounter {
    /// The series.
    pub series: String,
    /// Its value when the run started.
    pub before: f64,
    /// Its value when the run ended.
    pub after: f64,
}

impl BrokerCounter {
    /// What a counter (`*_total`) counted during the run; a gauge's change.
    pub fn delta(&self) -> f64 {
        self.after - self.before
    }

    /// Whether the series is a counter (its delta is the run's count) rather than a
    /// gauge (its value at the end is what matters).
    pub fn is_counter(&self) -> bool {
        self.series
            .split('{')
            .next()
            .is_some_and(|n| n.ends_with("_total"))
    }
}

/// The CPU one broker spent during a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerCpu {
    /// The broker's name.
    pub broker: String,
    /// CPU time in all, in µs.
    pub busy_us: u64,
    /// CPU time per second of the run, in µs (`per_second_us[t]` covers `[t, t + 1)`).
    pub per_second_us: Vec<u64>,
}

impl BrokerCpu {
    /// Share of one core used over `seconds` (0 when `seconds` is not positive).
    pub fn utilisation(&self, seconds: f64) -> f64 {
        cores_over(self.busy_us, seconds)
    }

    /// Share of one core used in the busiest second.
    pub fn peak_second(&self) -> f64 {
        self.per_second_us.iter().copied().max().unwrap_or(0) as f64 / 1e6
    }
}

/// The CPU the simulated clients spent during a run (`[clients]` cost profile), on their
/// shared cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientsCpu {
    /// CPU time charged to the clients by the end of the run, in µs.
    pub busy_us: u64,
    /// The cores they shared (`[clients] cores`).
    pub cores: u32,
}

impl ClientsCpu {
    /// Cores used on average over `seconds` (0 when `seconds` is not positive): the
    /// simulated counterpart of a live run's `generator_cores`.
    pub fn cores_used(&self, seconds: f64) -> f64 {
        cores_over(self.busy_us, seconds)
    }
}

/// Cores kept busy on average by `busy_us` of CPU time over `seconds` (0 when `seconds`
/// is not positive).
fn cores_over(busy_us: u64, seconds: f64) -> f64 {
    if seconds > 0.0 && seconds.is_finite() {
        busy_us as f64 / (seconds * 1e6)
    } else {
        0.0
    }
}

impl RunReport {
    /// The messages lost in fault window `index` (of [`RunReport::faults`]).
    ///
    /// A single run's `losses_by_fault` has one entry per window, in order, then the
    /// no-fault entry, so two windows with one label (a broker crashed twice) each get
    /// their own count. A merged report sums by label: the total is shown at the first
    /// window with that label and `None` at the others.
    pub fn window_losses(&self, index: usize) -> Option<u64> {
        let window = self.faults.get(index)?;
        let per_window = self.losses_by_fault.len() == self.faults.len() + 1;
        if per_window && self.losses_by_fault[index].label == window.label {
            return Some(self.losses_by_fault[index].lost);
        }
        let first = self.faults.iter().position(|f| f.label == window.label);
        if first != Some(index) {
            return None;
        }
        self.losses_by_fault
            .iter()
            .find(|l| l.label == window.label)
            .map(|l| l.lost)
    }

    /// The lost messages whose cause has this label (0 when none has).
    pub fn lost_to(&self, cause: &str) -> u64 {
        self.losses_by_cause
            .iter()
            .find(|l| l.label == cause)
            .map_or(0, |l| l.lost)
    }

    /// An empty report for `scenario` and `seed`: no messages, no seconds, empty
    /// histograms with the standard bounds.
    pub fn new(scenario: impl Into<String>, seed: u64) -> Self {
        RunReport {
            scenario: scenario.into(),
            seed,
            target: None,
            sim_seconds: 0.0,
            wall_seconds: 0.0,
            messages: MessageCounts::default(),
            latency_us: latency_histogram(),
            send_delay_us: latency_histogram(),
            failover_ms: failover_histogram(),
            mcollective: None,
            roboconf: None,
            network: None,
            expectations: Vec::new(),
            seconds: Vec::new(),
            faults: Vec::new(),
            losses_by_fault: Vec::new(),
            losses_by_cause: Vec::new(),
            unexplained_lost: 0,
            unexplained_losses: Vec::new(),
            failovers_unfinished: Vec::new(),
            failovers: Vec::new(),
            reorders: 0,
            brokers: Vec::new(),
            replay_command: None,
            broker_cpu: Vec::new(),
            clients_cpu: None,
            broker_counters: Vec::new(),
        }
    }

    /// True when every expectation held (and also when there were none).
    pub fn passed(&self) -> bool {
        self.expectations.iter().all(|e| e.ok)
    }

    /// Delivered messages per second of (simulated) time; 0 when the duration is not
    /// positive.
    pub fn throughput(&self) -> f64 {
        if self.sim_seconds > 0.0 && self.sim_seconds.is_finite() {
            self.messages.delivered as f64 / self.sim_seconds
        } else {
            0.0
        }
    }

    /// MCollective replies received over replies expected, over every request; `None`
    /// without requests.
    pub fn mco_reply_ratio(&self) -> Option<f64> {
        let m = self.mcollective.as_ref()?;
        (m.replies_expected > 0).then(|| m.replies_received as f64 / m.replies_expected as f64)
    }

    /// The reply coverage of the faults: replies received over replies expected for the
    /// requests sent while a fault window was open (a window that never healed stays open
    /// to the end of the run); `None` when no request was.
    pub fn mco_reply_ratio_during_faults(&self) -> Option<f64> {
        let m = self.mcollective.as_ref()?;
        let (mut expected, mut received) = (0u64, 0u64);
        for r in &m.per_request {
            let inside = self
                .faults
                .iter()
                .any(|f| r.sent_ms >= f.start_ms && f.end_ms.is_none_or(|end| r.sent_ms < end));
            if inside {
                expected += r.expected;
                received += r.received;
            }
        }
        (expected > 0).then(|| received as f64 / expected as f64)
    }
}

impl Default for RunReport {
    fn default() -> Self {
        RunReport::new(String::new(), 0)
    }
}

/// Message accounting in Jepsen `total-queue` terms.
///
/// A run is safe when `lost == 0` and `unexpected == 0`; duplicates are allowed under
/// at-least-once delivery but counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// Sends that were started.
    pub attempted: u64,
    /// Sends the broker confirmed (a STOMP RECEIPT for the SEND).
    pub acknowledged: u64,
    /// Attempted messages that reached a consumer at least once (Jepsen's `ok`).
    pub delivered: u64,
    /// Acknowledged messages that never reached a consumer: the safety violation.
    pub lost: u64,
    /// Deliveries of messages that were never attempted.
    pub unexpected: u64,
    /// Messages delivered more than once.
    pub duplicated: u64,
    /// Messages whose send was never acknowledged (timeout, crash) but arrived anyway.
    pub recovered: u64,
}

impl MessageCounts {
    /// Field-wise sum, saturating.
    pub fn add(&mut self, other: &MessageCounts) {
        self.attempted = self.attempted.saturating_add(other.attempted);
        self.acknowledged = self.acknowledged.saturating_add(other.acknowledged);
        self.delivered = self.delivered.saturating_add(other.delivered);
        self.lost = self.lost.saturating_add(other.lost);
        self.unexpected = self.unexpected.saturating_add(other.unexpected);
        self.duplicated = self.duplicated.saturating_add(other.duplicated);
        self.recovered = self.recovered.saturating_add(other.recovered);
    }
}

/// MCollective request/reply accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McoSummary {
    /// Requests sent.
    pub requests: u64,
    /// Replies the requests should have produced (one per matching node).
    pub replies_expected: u64,
    /// Replies that arrived before the request's timeout.
    pub replies_received: u64,
    /// One row per request, for the table in `report.html` and `mcollective.csv`. May be
    /// empty or a subset of all requests.
    pub per_request: Vec<McoRequest>,
}

/// How far a Roboconf deployment got: agents that had their model and an import from every
/// agent they depend on, how long that took, and what the DM's heartbeat check saw.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoboconfSummary {
    /// Agents (scoped instances) in the run.
    pub agents: u64,
    /// Agents ready by the end: model received, and an import from every exporter of the
    /// component they import.
    pub ready: u64,
    /// Time from an agent's start to ready, ms: median, 99th percentile and largest
    /// (`None` without a ready agent).
    pub ready_p50_ms: Option<u64>,
    /// See `ready_p50_ms`.
    pub ready_p99_ms: Option<u64>,
    /// See `ready_p50_ms`.
    pub ready_max_ms: Option<u64>,
    /// Agents the DM would have marked PROBLEM: more than two of its heartbeat checks in a
    /// row without a heartbeat from them.
    pub dm_problems: u64,
    /// Heartbeats the DM received.
    pub heartbeats: u64,
    /// Models (`MsgCmdSetScopedInstance`) agents received.
    pub models: u64,
    /// Import notifications (`MsgCmdAddImport`) agents received.
    pub imports: u64,
    /// Clients that switched to a new messaging configuration at run time.
    pub reconfigured: u64,
    /// When the count of ready agents grew, for the chart: (ms since the start, agents
    /// ready then).
    pub ready_over_time: Vec<(u64, u64)>,
}

/// Deliveries that crossed network bridges (seen by clients through the broker path
/// header), and the ones that should never happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkSummary {
    /// Deliveries whose message came over at least one bridge.
    pub bridged_deliveries: u64,
    /// The most bridges one delivered message crossed.
    pub max_hops: u64,
    /// Deliveries whose message visited a broker twice (crossed a link twice).
    pub loop_messages: u64,
    /// Deliveries whose message came back to the broker it had already been on.
    pub returned_messages: u64,
}

/// One MCollective request and what came back. Times are milliseconds since the start
/// of the run, on the same clock as [`FaultWindow`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McoRequest {
    /// The request id (unique within a run; prefix it per shard when merging shards).
    pub request_id: String,
    /// When the request was sent.
    pub sent_ms: u64,
    /// Replies expected.
    pub expected: u64,
    /// Replies received.
    pub received: u64,
    /// When the first reply arrived, if any did.
    pub first_reply_ms: Option<u64>,
    /// When the last reply arrived, if any did.
    pub last_reply_ms: Option<u64>,
}

/// The verdict of one expectation of the scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectationResult {
    /// What was expected, e.g. `"no loss"`.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The measured value against the limit, e.g. `"lost = 0 (limit 0)"`.
    pub detail: String,
    /// How it was measured, so that a merge of shards can judge it again on the merged
    /// counts and histograms; `None` for verdicts that cannot be re-measured.
    pub check: Option<Check>,
}

impl ExpectationResult {
    /// The verdict of `check` on `report` (whose histograms quantile checks read).
    pub fn judge(name: impl Into<String>, check: Check, report: &RunReport) -> Self {
        let (ok, detail) = check.evaluate(report);
        ExpectationResult {
            name: name.into(),
            ok,
            detail,
            check: Some(check),
        }
    }
}

/// Which of a report's histograms a quantile check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramName {
    /// [`RunReport::latency_us`] (read in milliseconds).
    LatencyUs,
    /// [`RunReport::failover_ms`].
    FailoverMs,
}

/// What an expectation measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// A count; shards add up.
    Count(u64),
    /// A share `num / den`; shards add numerators and denominators. No data when `den`
    /// is 0.
    Ratio {
        /// Numerator (e.g. replies received).
        num: u64,
        /// Denominator (e.g. replies expected).
        den: u64,
    },
    /// A quantile (0 to 1) of one of the report's histograms, in milliseconds. No data
    /// when the histogram is empty.
    Quantile {
        /// Which histogram.
        histogram: HistogramName,
        /// Which quantile.
        quantile: f64,
    },
}

/// An expectation as data: a measure, a bound, and what to do without data.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The measured value.
    pub measure: Measure,
    /// `true`: the value must be at most `limit`; `false`: at least.
    pub at_most: bool,
    /// The limit.
    pub limit: f64,
    /// Whether a measure without data (an empty ratio or histogram) passes. Otherwise
    /// it fails: empty is not success.
    pub allow_no_data: bool,
    /// What is counted, for the detail (e.g. `"replies outside fault windows"`).
    pub what: String,
}

impl Check {
    /// The value of the measure on `report`, `None` without data.
    pub fn value(&self, report: &RunReport) -> Option<f64> {
        match &self.measure {
            Measure::Count(n) => Some(*n as f64),
            Measure::Ratio { num, den } => (*den > 0).then(|| *num as f64 / *den as f64),
            Measure::Quantile {
                histogram,
                quantile,
            } => {
                let (h, per_ms) = match histogram {
                    HistogramName::LatencyUs => (&report.latency_us, 1000.0),
                    HistogramName::FailoverMs => (&report.failover_ms, 1.0),
                };
                (!h.is_empty()).then(|| h.value_at_quantile(*quantile) as f64 / per_ms)
            }
        }
    }

    /// Whether the expectation holds on `report`, and the detail that says why.
    pub fn evaluate(&self, report: &RunReport) -> (bool, String) {
        let bound = if self.at_most { "at most" } else { "at least" };
        let l = self.limit;
        let Some(v) = self.value(report) else {
            let ok = self.allow_no_data;
            let what = if self.what.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.what)
            };
            let verdict = if ok {
                "allowed by allow_no_data"
            } else {
                "fails; set allow_no_data = true to accept"
            };
            return (ok, format!("no data{what} ({bound} {l}): {verdict}"));
        };
        let ok = if self.at_most {
            v <= l + 1e-12
        } else {
            v + 1e-12 >= l
        };
        let detail = match &self.measure {
            Measure::Count(n) => format!("{n} ({bound} {l})"),
            Measure::Ratio { num, den } => {
                format!("{v:.4} = {num}/{den} {} ({bound} {l})", self.what)
            }
            Measure::Quantile { .. } => format!("{v:.1} ms ({bound} {l} ms)"),
        };
        (ok, detail)
    }

    /// This check with the measure of `other` added (counts and ratios); `None` when the
    /// two are not the same check.
    pub fn combine(&self, other: &Check) -> Option<Check> {
        if self.at_most != other.at_most
            || self.limit != other.limit
            || self.allow_no_data != other.allow_no_data
        {
            return None;
        }
        let measure = match (&self.measure, &other.measure) {
            (Measure::Count(a), Measure::Count(b)) => Measure::Count(a.saturating_add(*b)),
            (Measure::Ratio { num: a, den: b }, Measure::Ratio { num: c, den: d }) => {
                Measure::Ratio {
                    num: a.saturating_add(*c),
                    den: b.saturating_add(*d),
                }
            }
            (a @ Measure::Quantile { .. }, b) if a == b => a.clone(),
            _ => return None,
        };
        Some(Check {
            measure,
            ..self.clone()
        })
    }
}

/// A lost message no cause explains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnexplainedLoss {
    /// The message (and target), e.g. `message 281474976710661 (work-producer-0 #5)`.
    pub id: String,
    /// When it was written, ms since the start of the run.
    pub sent_ms: u64,
    /// Its path as the history shows it: who wrote it to which broker, and where each
    /// target was connected.
    pub path: String,
}

/// Unexplained losses listed by message at most (the count is complete).
pub const UNEXPLAINED_LISTED_MAX: usize = 100;

/// The cause label of losses without a cause.
pub const UNEXPLAINED_LABEL: &str = "unexplained";

/// A client that lost its connection and had none at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnfinishedFailover {
    /// The client's name.
    pub client: String,
    /// When it lost its connection, ms since the start of the run.
    pub since_ms: u64,
}

/// One client's failover: from losing its connection to being subscribed again, or to
/// the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failover {
    /// The client's name.
    pub client: String,
    /// The broker whose connection it lost (empty when not known).
    pub from: String,
    /// The broker it connected to again (empty while unfinished).
    pub to: String,
    /// When it lost its connection, ms since the start of the run.
    pub down_ms: u64,
    /// When CONNECTED arrived, ms since the start of the run.
    pub connected_ms: Option<u64>,
    /// When its subscriptions were replayed (the failover's end).
    pub up_ms: Option<u64>,
    /// Connection attempts it made (the one that succeeded included).
    pub attempts: u32,
    /// Attempts that failed.
    pub failed: u32,
    /// Back-off waited before the attempts, in ms, by the client's policy.
    pub waited_ms: u64,
    /// Why the first failed attempt failed (empty when none failed).
    pub first_failure: String,
}

/// One second of (simulated) time: the interval `[t_s, t_s + 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondSample {
    /// Start of the second, in whole seconds since the start of the run.
    pub t_s: u64,
    /// Sends started in this second.
    pub attempted: u64,
    /// Messages delivered in this second.
    pub delivered: u64,
    /// Messages lost whose intended send time falls in this second.
    pub lost: u64,
    /// End-to-end latencies (µs, from the intended send time) of this second's deliveries.
    pub latency: Histogram<u64>,
    /// Nodes connected to each broker at the end of the second, in `RunReport::brokers`
    /// order.
    pub connected: Vec<u64>,
    /// MCollective replies received in this second.
    pub mco_replies: u64,
}

impl SecondSample {
    /// An empty second at `t_s` with `brokers` zero connection counts.
    pub fn new(t_s: u64, brokers: usize) -> Self {
        SecondSample {
            t_s,
            attempted: 0,
            delivered: 0,
            lost: 0,
            latency: latency_histogram(),
            connected: vec![0; brokers],
            mco_replies: 0,
        }
    }
}

/// A fault the scenario injected, active over `[start_ms, end_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultWindow {
    /// The kind of fault: `"crash"`, `"partition"`, `"pause"`, ….
    pub kind: String,
    /// A label for people, e.g. `"crash broker-2"`; used in charts, tables and
    /// `losses_by_fault`.
    pub label: String,
    /// When the fault started, in ms since the start of the run.
    pub start_ms: u64,
    /// When it healed; `None` when it never did before the run ended.
    pub end_ms: Option<u64>,
}

impl FaultWindow {
    /// Whether the window overlaps `[from_ms, to_ms)`. A window that heals at the very
    /// moment it starts counts as one millisecond long, so that it is not invisible.
    pub fn overlaps(&self, from_ms: u64, to_ms: u64) -> bool {
        let end = match self.end_ms {
            Some(end) => end.max(self.start_ms.saturating_add(1)),
            None => u64::MAX,
        };
        self.start_ms < to_ms && end > from_ms
    }
}

/// Lost messages attributed to one fault window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultLoss {
    /// The fault's label, or [`NO_FAULT_LABEL`] for losses outside every window.
    pub label: String,
    /// Lost messages attributed to it.
    pub lost: u64,
}

/// The `losses_by_fault` label for losses that crossed no fault window.
pub const NO_FAULT_LABEL: &str = "none";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_windows_with_one_label_keep_their_own_losses() {
        let window = |start_ms| FaultWindow {
            kind: "crash".into(),
            label: "crash broker-2".into(),
            start_ms,
            end_ms: Some(start_ms + 1_000),
        };
        let loss = |label: &str, lost| FaultLoss {
            label: label.into(),
            lost,
        };
        let mut r = RunReport::new("s", 1);
        r.faults = vec![window(1_000), window(5_000)];
        r.losses_by_fault = vec![
            loss("crash broker-2", 6),
            loss("crash broker-2", 0),
            loss(NO_FAULT_LABEL, 0),
        ];
        assert_eq!((r.window_losses(0), r.window_losses(1)), (Some(6), Some(0)));
        // A merged report sums by label: the total shows once, at the first window.
        r.losses_by_fault = vec![loss("crash broker-2", 6), loss(NO_FAULT_LABEL, 0)];
        assert_eq!((r.window_losses(0), r.window_losses(1)), (Some(6), None));
        assert_eq!(r.window_losses(2), None);
    }

    #[test]
    fn standard_histograms_cover_one_hour() {
        let mut h = latency_histogram();
        h.record(LATENCY_HIGHEST_US).unwrap();
        h.record(1).unwrap();
        assert!(h.record(LATENCY_HIGHEST_US * 4).is_err());
        let mut f = failover_histogram();
        f.record(FAILOVER_HIGHEST_MS).unwrap();
        assert_eq!(f.sigfig(), 3);
    }

    #[test]
    fn fault_overlap_is_half_open() {
        let f = FaultWindow {
            kind: "crash".into(),
            label: "crash b1".into(),
            start_ms: 1_500,
            end_ms: Some(3_000),
        };
        assert!(!f.overlaps(0, 1_000));
        assert!(f.overlaps(1_000, 2_000));
        assert!(f.overlaps(2_000, 3_000));
        assert!(!f.overlaps(3_000, 4_000));
        let open = FaultWindow {
            end_ms: None,
            ..f.clone()
        };
        assert!(open.overlaps(100_000, 101_000));
        let instant = FaultWindow {
            end_ms: Some(1_500),
            ..f
        };
        assert!(instant.overlaps(1_000, 2_000));
        assert!(!instant.overlaps(2_000, 3_000));
    }

    #[test]
    fn throughput_guards_zero_duration() {
        let mut r = RunReport::new("s", 1);
        r.messages.delivered = 100;
        assert_eq!(r.throughput(), 0.0);
        r.sim_seconds = 4.0;
        assert_eq!(r.throughput(), 25.0);
    }
}
