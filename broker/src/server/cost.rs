//! The cost model: a broker that spends (simulated) CPU on the work its core does.
//!
//! Under turmoil a broker handles any load in zero simulated time. With a [`CostProfile`]
//! (nanoseconds per operation kind, fitted by `stampede calibrate` from a live broker) the
//! core task becomes a FIFO server: each handled event's [`Work`] costs
//! `Σ count × ns`, the simulated CPU's busy time accumulates, and the outputs of that
//! event are released only when the CPU reaches them ([`CpuMeter`]). Time comes from
//! `tokio::time`, which turmoil simulates; costs far below its tick (1 ms unless the
//! scenario sets a finer one, [`CpuMeter::with_tick`]) accumulate in nanoseconds and are
//! charged across ticks (a backlog under half a tick is released at once, a longer one
//! sleeps until the tick nearest its end), so throughput is exact and latency is rounded
//! to the nearest tick.
//!
//! Without a profile the server never builds a meter and behaves exactly as before.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::core::Work;
use crate::toml_config::{ConfigError, InvalidSetting, KeyPath, load_toml, parse_toml};

/// The simulation's tick unless told otherwise ([`CpuMeter::with_tick`]).
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// Nanoseconds of CPU per operation kind (the keys are [`Work`]'s counters with `_ns`),
/// plus what calibration recorded about its fit. TOML, unknown keys refused.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostProfile {
    /// What this profile describes (broker, version, machine).
    pub description: String,
    /// Set by calibration when the fit explained less than 90% of the variance.
    pub fit_poor: bool,
    /// The fit's coefficient of determination, when calibrated.
    pub r2: Option<f64>,
    /// Per `handle_*` call (a wake-up of the core task).
    pub events_ns: f64,
    /// Per frame decoded.
    pub frames_in_ns: f64,
    /// Per byte read.
    pub bytes_in_ns: f64,
    /// Per frame encoded.
    pub frames_out_ns: f64,
    /// Per byte written.
    pub bytes_out_ns: f64,
    /// Per heart-beat received or sent.
    pub heartbeats_ns: f64,
    /// Per subscription a message was matched against.
    pub subscriptions_matched_ns: f64,
    /// Per selector evaluation.
    pub selectors_evaluated_ns: f64,
    /// Per MESSAGE delivered.
    pub deliveries_ns: f64,
    /// Per ACK or NACK.
    pub acks_ns: f64,
    /// Per message handed to a bridge.
    pub bridge_hops_ns: f64,
    /// Per connection opened or closed.
    pub connections_ns: f64,
    /// Per call moving data: for a broker, a frame for a connection with nothing else
    /// waiting to be written, which wakes its writer for a write of its own; for clients,
    /// each read or write of a chunk (frames that arrive together share one).
    pub io_calls_ns: f64,
    /// Per wake-up: work that arrives when the CPU is idle pays this once before it
    /// starts (a parked thread woken, its scheduling, the idle loop's system calls),
    /// work that arrives while it is busy does not. So a frame handled alone, at a low
    /// rate, costs more than one handled in a batch under load, as on a real broker.
    /// Calibration fits it on the broker's voluntary context switches.
    pub wakeups_ns: f64,
}

impl CostProfile {
    /// Reads and checks a profile file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<CostProfile, ConfigError> {
        load_toml(path, CostProfile::validate)
    }

    /// Parses and checks profile text (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<CostProfile, ConfigError> {
        parse_toml(text, file, CostProfile::validate)
    }

    /// Every cost must be a finite number ≥ 0.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let wakeups = ("wakeups_ns".to_owned(), self.wakeups_ns);
        for (key, ns) in self.costs().into_iter().chain(std::iter::once(wakeups)) {
            if !ns.is_finite() || ns < 0.0 {
                return Err(InvalidSetting::new(
                    KeyPath::root().key(&key),
                    "must be a number of nanoseconds >= 0",
                ));
            }
        }
        Ok(())
    }

    /// `(key, ns)` for every operation kind, in [`Work::counts`] order.
    pub fn costs(&self) -> [(String, f64); Work::KINDS] {
        let ns = self.ns_array();
        let counts = Work::default().counts();
        std::array::from_fn(|i| (format!("{}_ns", counts[i].0), ns[i]))
    }

    /// The costs as an array in [`Work::counts`] order.
    pub fn ns_array(&self) -> [f64; Work::KINDS] {
        [
            self.events_ns,
            self.frames_in_ns,
            self.bytes_in_ns,
            self.frames_out_ns,
            self.bytes_out_ns,
            self.heartbeats_ns,
            self.subscriptions_matched_ns,
            self.selectors_evaluated_ns,
            self.deliveries_ns,
            self.acks_ns,
            self.bridge_hops_ns,
            self.connections_ns,
            self.io_calls_ns,
        ]
    }

    /// A profile with these costs, in [`Work::counts`] order.
    pub fn from_ns_array(ns: [f64; Work::KINDS]) -> CostProfile {
        CostProfile {
            events_ns: ns[0],
            frames_in_ns: ns[1],
            bytes_in_ns: ns[2],
            frames_out_ns: ns[3],
            bytes_out_ns: ns[4],
            heartbeats_ns: ns[5],
            subscriptions_matched_ns: ns[6],
            selectors_evaluated_ns: ns[7],
            deliveries_ns: ns[8],
            acks_ns: ns[9],
            bridge_hops_ns: ns[10],
            connections_ns: ns[11],
            io_calls_ns: ns[12],
            ..CostProfile::default()
        }
    }

    /// What `work` costs, in nanoseconds.
    pub fn cost_ns(&self, work: &Work) -> f64 {
        let ns = self.ns_array();
        work.counts()
            .iter()
            .zip(ns)
            .map(|((_, n), c)| *n as f64 * c)
            .sum()
    }
}

/// Cores a broker's priced work may share with other programs: a test rig's one machine,
/// where the load generator's clients and the broker take turns on the same cores. The
/// simulator implements it over its clients' cores; without it the core task has a core
/// of its own.
pub trait Cores: Debug + Send + Sync {
    /// Work costing `cost` may start at `earliest`: returns when a core starts it (not
    /// before `earliest`), that core then being busy with it for `cost`. Whether it waits
    /// for the other programs' work or goes ahead of it is the implementation's model of
    /// the machine's scheduler (the simulator's clients' cores let the broker go first).
    fn reserve(&self, earliest: Instant, cost: Duration) -> Instant;
}

/// The core task's simulated CPU: a single FIFO server that prices each event's work.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    profile: CostProfile,
    /// The machine's cores, when the core task shares them with others.
    cores: Option<Arc<dyn Cores>>,
    /// The core's work counters at the last charge.
    last: Work,
    /// When the simulated CPU finishes what it was given so far.
    busy_until: Option<Instant>,
    /// Fractions of a nanosecond carried between charges.
    carry_ns: f64,
    /// CPU time charged in all.
    busy_ns: u64,
    /// The simulation's tick: gaps up to this long between the end of the CPU's work and
    /// the next event are its rounding, not idle time, and a backlog shorter than half
    /// of it is released at once (rounding to the nearest tick).
    tick: Duration,
}

impl CpuMeter {
    /// A meter pricing work with `profile`, idle.
    pub fn new(profile: CostProfile) -> CpuMeter {
        CpuMeter {
            profile,
            cores: None,
            last: Work::default(),
            busy_until: None,
            carry_ns: 0.0,
            busy_ns: 0,
            tick: DEFAULT_TICK,
        }
    }

    /// The same meter for a simulation whose clock advances by `tick`.
    #[must_use]
    pub fn with_tick(self, tick: Duration) -> CpuMeter {
        CpuMeter { tick, ..self }
    }

    /// A meter whose work runs on `cores`, shared with other programs: each event's work
    /// starts when the core task is free and `cores` gives it a core.
    pub fn on_cores(profile: CostProfile, cores: Arc<dyn Cores>) -> CpuMeter {
        CpuMeter {
            cores: Some(cores),
            ..CpuMeter::new(profile)
        }
    }

    /// Charges the work done since the last charge (`work` is the core's monotonic
    /// counters) at `now`; returns the span of simulated CPU time it occupies, which says
    /// when each of the event's outputs may be released ([`Busy::release_at`]).
    pub fn charge(&mut self, work: Work, now: Instant) -> Busy {
        let delta = work.since(&self.last);
        self.last = work;
        // Work arriving after the CPU finished finds it idle: a wake-up.
        let idle = self.busy_until.is_none_or(|b| b < now);
        let wakeup = if idle { self.profile.wakeups_ns } else { 0.0 };
        let exact = self.profile.cost_ns(&delta) + wakeup + self.carry_ns;
        let ns = exact.floor().max(0.0);
        self.carry_ns = exact - ns;
        let ns = ns as u64;
        self.busy_ns = self.busy_ns.saturating_add(ns);
        // A gap shorter than a tick since the CPU finished is the tick's rounding of the
        // core's last wait (it woke at the next tick, not when its work ended), not idle
        // time: the work starts where the last ended, so a saturated core stays busy.
        let start = match self.busy_until {
            Some(b) if b + self.tick >= now => b,
            _ => now,
        };
        // On a shared machine, a core must be free too.
        let start = match &self.cores {
            Some(cores) if ns > 0 => cores.reserve(start, Duration::from_nanos(ns)),
            _ => start,
        };
        let done = start + Duration::from_nanos(ns);
        self.busy_until = Some(done);
        Busy {
            start,
            done,
            lead: self.tick / 2,
        }
    }

    /// CPU time charged so far, in nanoseconds.
    pub fn busy_ns(&self) -> u64 {
        self.busy_ns
    }

    /// The profile in use.
    pub fn profile(&self) -> &CostProfile {
        &self.profile
    }
}

/// The simulated CPU time one event's work occupies: from `start` (when the CPU reached
/// it) to `done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    /// When the CPU started on this work.
    pub start: Instant,
    /// When it finishes.
    pub done: Instant,
    /// Half the simulation's tick: how much earlier than its end a wait may end.
    lead: Duration,
}

impl Busy {
    /// When output `i` (counting from 0) of the event's `n` may be released, or `None`
    /// when that is by `now`. The work is spread evenly over the outputs, each released
    /// once the CPU has done its share (a fan-out's 800 deliveries leave one after
    /// another, as a live broker writes them), rounded to the nearest tick: a share
    /// ending less than half a tick after `now` goes at once. The last output leaves at
    /// [`Busy::end_release`].
    pub fn release_at(&self, i: usize, n: usize, now: Instant) -> Option<Instant> {
        let span = (self.done - self.start).as_nanos();
        let share = span * (i as u128 + 1) / n.max(1) as u128;
        self.released(
            self.start + Duration::from_nanos(u64::try_from(share).unwrap_or(u64::MAX)),
            now,
        )
    }

    /// When the whole of the work is done, to the nearest tick, or `None` when that is by
    /// `now` (the core task waits for it before its next event).
    pub fn end_release(&self, now: Instant) -> Option<Instant> {
        self.released(self.done, now)
    }

    /// The tick nearest `end`, if it is after `now`.
    fn released(&self, end: Instant, now: Instant) -> Option<Instant> {
        let release = end.checked_sub(self.lead)?;
        (release > now).then_some(release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_errors_name_file_line_and_key() {
        let e = CostProfile::parse("events_ns = 10\nframes_in_ns = -3\n", "p.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:2: frames_in_ns: must be a number of nanoseconds >= 0"
        );
        let e = CostProfile::parse("events_ns = 10\nframe_ns = 3\n", "p.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "frame_ns"), "{e}");
        let e = CostProfile::parse("deliveries_ns = \"x\"\n", "p.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, "deliveries_ns"), "{e}");
    }

    #[test]
    fn cost_is_counts_times_ns() {
        let p = CostProfile::parse("deliveries_ns = 1000.0\nbytes_out_ns = 0.5\n", "p").unwrap();
        let w = Work {
            deliveries: 3,
            bytes_out: 100,
            ..Work::default()
        };
        assert_eq!(p.cost_ns(&w), 3050.0);
    }

    #[test]
    fn the_meter_is_a_fifo_server_that_rounds_to_the_nearest_tick() {
        let p = CostProfile::from_ns_array([1000.0; Work::KINDS]);
        let mut m = CpuMeter::new(p);
        let t0 = Instant::now();
        // 100 events of 1 µs each: a 100 µs backlog, released at once.
        let mut w = Work {
            events: 100,
            ..Work::default()
        };
        assert_eq!(m.charge(w, t0).end_release(t0), None);
        // 2,000 more: the backlog reaches 2.1 ms; released 0.5 ms before its end.
        w.events = 2100;
        let at = m.charge(w, t0).end_release(t0).unwrap();
        assert_eq!(at - t0, Duration::from_micros(1600));
        // Nothing new, later than the backlog's end: idle, released at once.
        let later = t0 + Duration::from_millis(5);
        assert_eq!(m.charge(w, later).end_release(later), None);
        assert_eq!(m.busy_ns(), 2_100_000);
    }

    #[test]
    fn a_finer_tick_rounds_to_its_own_nearest_tick() {
        let p = CostProfile::from_ns_array([1000.0; Work::KINDS]);
        let mut m = CpuMeter::new(p).with_tick(Duration::from_micros(100));
        let t0 = Instant::now();
        // A 100 µs backlog, released at once with a 1 ms tick, waits under a 0.1 ms
        // one: until 50 µs before its end.
        let w = Work {
            events: 100,
            ..Work::default()
        };
        let at = m.charge(w, t0).end_release(t0).unwrap();
        assert_eq!(at - t0, Duration::from_micros(50));
        // An event 0.5 ms after the work ended finds the CPU idle (with a 1 ms tick the
        // gap would be the tick's rounding and the work would start at the old end).
        let later = t0 + Duration::from_micros(600);
        let busy = m.charge(
            Work {
                events: 101,
                ..Work::default()
            },
            later,
        );
        assert_eq!(busy.start, later);
    }

    #[test]
    fn a_wakeup_is_paid_by_work_that_finds_the_cpu_idle() {
        let p = CostProfile {
            events_ns: 1_000.0,
            wakeups_ns: 50_000.0,
            ..CostProfile::default()
        };
        let mut m = CpuMeter::new(p);
        let t0 = Instant::now();
        // The first event wakes the CPU: 51 µs.
        let mut w = Work {
            events: 1,
            ..Work::default()
        };
        m.charge(w, t0);
        assert_eq!(m.busy_ns(), 51_000);
        // Ten more in the same instant find it busy: 1 µs each.
        w.events = 11;
        m.charge(w, t0);
        assert_eq!(m.busy_ns(), 61_000);
        // Later, after it went idle: a wake-up again.
        w.events = 12;
        m.charge(w, t0 + Duration::from_millis(10));
        assert_eq!(m.busy_ns(), 112_000);
    }

    #[test]
    fn a_saturated_core_woken_on_tick_boundaries_loses_no_capacity() {
        // Events of 0.3 ms always waiting; the core wakes only on whole milliseconds, as
        // under turmoil's 1 ms tick. Over a simulated second it must do a second of work.
        let p = CostProfile {
            events_ns: 300_000.0,
            ..CostProfile::default()
        };
        let mut m = CpuMeter::new(p);
        let t0 = Instant::now();
        let mut now = t0;
        let mut w = Work::default();
        while now - t0 < Duration::from_secs(1) {
            w.events += 1;
            if let Some(at) = m.charge(w, now).end_release(now) {
                let ms = (at - t0).as_nanos().div_ceil(1_000_000) as u64;
                now = t0 + Duration::from_millis(ms);
            }
        }
        let done = w.events as f64 * 0.3e-3;
        assert!(
            done >= 0.99,
            "a saturated core did {done:.3} s of work in 1 s of simulated time"
        );
    }

    #[test]
    fn outputs_leave_as_the_cpu_reaches_their_share_of_the_work() {
        // One event whose work takes 8 ms and emits 800 outputs (a fan-out).
        let p = CostProfile {
            frames_out_ns: 10_000.0,
            ..CostProfile::default()
        };
        let mut m = CpuMeter::new(p);
        let t0 = Instant::now();
        let busy = m.charge(
            Work {
                frames_out: 800,
                ..Work::default()
            },
            t0,
        );
        assert_eq!(busy.done - busy.start, Duration::from_millis(8));
        // The first 50 outputs' shares end within half a tick: at once. The 51st waits.
        assert_eq!(busy.release_at(49, 800, t0), None);
        assert!(busy.release_at(50, 800, t0).is_some());
        // The 400th share ends at 4 ms: released at 3.5 ms (the nearest tick rounds it);
        // the last with the end of the work, at 7.5 ms.
        assert_eq!(
            busy.release_at(399, 800, t0).map(|at| at - t0),
            Some(Duration::from_micros(3500))
        );
        assert_eq!(
            busy.release_at(799, 800, t0),
            busy.end_release(t0),
            "the last output leaves with the end of the work"
        );
        assert_eq!(
            busy.release_at(799, 800, t0).map(|at| at - t0),
            Some(Duration::from_micros(7500))
        );
    }

    /// One core, busy until a fixed time with other programs' work.
    #[derive(Debug)]
    struct BusyUntil(Instant);

    impl Cores for BusyUntil {
        fn reserve(&self, earliest: Instant, _cost: Duration) -> Instant {
            earliest.max(self.0)
        }
    }

    #[test]
    fn on_shared_cores_work_waits_for_a_free_core() {
        let p = CostProfile {
            events_ns: 1_000_000.0,
            ..CostProfile::default()
        };
        let t0 = Instant::now();
        let other = Arc::new(BusyUntil(t0 + Duration::from_millis(5)));
        let mut shared = CpuMeter::on_cores(p.clone(), other);
        let mut alone = CpuMeter::new(p);
        let w = Work {
            events: 1,
            ..Work::default()
        };
        // Alone, 1 ms of work done at 1 ms; sharing a core busy for 5 ms, at 6 ms.
        assert_eq!(alone.charge(w, t0).done - t0, Duration::from_millis(1));
        let busy = shared.charge(w, t0);
        assert_eq!(
            (busy.start - t0, busy.done - t0),
            (Duration::from_millis(5), Duration::from_millis(6))
        );
    }
}
