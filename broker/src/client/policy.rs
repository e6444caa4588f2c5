//! Reconnect policies: pure state machines that decide which server to try next and how
//! long to wait before trying it.
//!
//! A [`Reconnector`] never sleeps, never reads a clock and never touches a socket. The
//! driver asks it for an [`Attempt`] (a server index and a delay), sleeps for the delay
//! with `tokio::time`, tries the server, and reports the outcome back:
//!
//! ```text
//!   first_attempt() ──► Attempt ──► try it ──┬─ ok ────► connected()
//!                          ▲                 └─ fails ─► attempt_failed() ─► Ok(Attempt) / Err(GaveUp)
//!                          │
//!   connected ... connection drops ─► connection_lost(up_for) ─► Ok(Attempt) / Err(GaveUp)
//!   CONNECT answered with ERROR ─► attempt_refused() ─► Ok(Attempt) / Err(GaveUp)
//! ```
//!
//! Three policies exist, selected by [`PolicyKind`]:
//!
//! * [`PolicyKind::StompGem`] reproduces the ruby stomp gem 1.4.10 as MCollective 2.12
//!   configures it (what every real `mcollectived` does).
//! * [`PolicyKind::ActiveMq`] reproduces ActiveMQ 5.18's `FailoverTransport`.
//! * [`PolicyKind::ActiveMqNetwork`] reproduces the back-off of ActiveMQ 5.18's network
//!   connectors to `static:` brokers (`SimpleDiscoveryAgent`); the bridges use it.
//! * [`PolicyKind::Jittered`] is Stampede's own policy: capped exponential backoff with
//!   "full jitter", meant to spread reconnect storms (see its documentation).
//!
//! All randomness (host shuffling, jitter) comes from a [`SmallRng`] seeded by the caller,
//! so a given seed always produces the same sequence of attempts within one build.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::servers::{ServerAddr, ServerList};

/// ActiveMQ's `DEFAULT_INITIAL_RECONNECT_DELAY` (10 ms). `FailoverTransport` starts its
/// current delay at this value and compares against it in `resetReconnectDelay`.
const ACTIVEMQ_DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(10);

/// The largest backoff exponent the jittered policy tracks. Past this the window is far
/// beyond any sane `max_delay`, so counting further would only risk overflow.
const MAX_JITTER_EXPONENT: u32 = 64;

/// How much the reconnect delay grows after each failure (when exponential backoff is on).
///
/// Always finite and at least 1.0, so delays never shrink.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct BackoffMultiplier(f64);

impl BackoffMultiplier {
    /// The default multiplier of every policy: the delay doubles.
    pub const TWO: Self = Self(2.0);

    /// Returns `None` unless `value` is finite and at least 1.0.
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && value >= 1.0).then_some(Self(value))
    }

    /// The multiplier as a float.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for BackoffMultiplier {
    fn default() -> Self {
        Self::TWO
    }
}

impl fmt::Display for BackoffMultiplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which reconnect algorithm a [`Reconnector`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// The ruby stomp gem 1.4.10 (`lib/connection/utils.rb#socket`, `#change_host`) with
    /// the settings MCollective 2.12 passes to it.
    ///
    /// * The pool is a rotating list: every host change takes the head and moves it to the
    ///   tail (after shuffling the whole list when `randomize` is set, so with `randomize`
    ///   the "next" host may well be the one that just failed).
    /// * The first connection tries the head of the list: pool entry 1 unless `randomize`.
    /// * After a failed attempt the gem sleeps the current delay, then changes host, then
    ///   grows the delay: `delay = min(delay × multiplier, max_delay)` when exponential.
    ///   With the defaults the sleeps are 0.01, 0.02, 0.04, … 10.24, 20.48, 30, 30, … s.
    /// * A successful connection resets the attempt counter but **not** the delay: a
    ///   client whose backoff once reached 30 s waits 30 s between failed attempts for
    ///   the rest of its life.
    /// * When an established connection drops, the first reconnect goes to the next host
    ///   at once (zero delay). There is no preference for returning to the first host.
    /// * `max_attempts`: `None` retries forever; `Some(n)` gives up when an attempt fails
    ///   after `n` consecutive failed *re*-attempts, i.e. after `n + 1` failed attempts in
    ///   a row. `startup_max_attempts` and `stable_after` are ignored (and warned about
    ///   once when set).
    /// * An ERROR answer to CONNECT is a connection to the gem: `Connection#socket`
    ///   returns once `connect` has read *a* frame, resetting `@connection_attempts`, and
    ///   the broker then closing the socket is a lost connection (`_reconn_prep`): the next
    ///   host at once, no sleep, the delay neither grown nor reset
    ///   ([`Reconnector::attempt_refused`]). A broker that refuses every login is therefore
    ///   hammered in a tight loop, and `max_attempts` never gives up on it.
    /// * `connect_timeout` bounds only the TCP open; reading CONNECTED is bounded by
    ///   `connread_timeout` (none by default; see [`ConnreadTimeout`]).
    StompGem,
    /// ActiveMQ 5.18 `FailoverTransport` (Java/OpenWire clients, `failover:(…)` URIs).
    ///
    /// * Attempts are made in passes: each pass tries every distinct server back to back
    ///   with no delay in between, in a freshly shuffled order when `randomize` (the
    ///   default), and with the server whose connection was last lost moved to the end.
    /// * After a failed pass the transport sleeps once, then grows the delay by the
    ///   multiplier (in whole milliseconds, truncating, as Java's `long *= double` does)
    ///   up to `max_delay`. The very first pass at start-up has no delay.
    /// * A successful connection resets the delay to `initial_delay`.
    /// * After losing an established connection the transport first sleeps
    ///   `initial_delay` (and grows the delay), then starts a pass: with the defaults the
    ///   waits before each pass are 10, 20, 40, … ms, and 30 s per pass at the cap.
    ///   Checked against the 5.18 source: `doReconnect` calls `doDelay` before a pass
    ///   only while `connectFailures == 0` (no pass has failed since the last success),
    ///   and `doDelay` after every failed pass. The schedule 10, 30, 60, 120 ms (a sleep
    ///   before *every* pass plus the growing one after it, 60 s per pass at the cap) is
    ///   that of ActiveMQ 5.13 and older; AMQ-5819 (5.14) removed the extra sleep.
    /// * Never connected, the first pass starts at once and the waits before the next
    ///   passes are 10, 20, 40, … ms: the same growth, one pass earlier.
    /// * `max_attempts` counts failed passes: `None` (ActiveMQ's -1) retries forever,
    ///   `Some(n)` gives up after `max(n, 1)` failed passes. `Some(0)` also means "do not
    ///   reconnect at all after losing an established connection".
    ///   `startup_max_attempts`, when set, replaces `max_attempts` until the first
    ///   successful connection. `stable_after` is ignored.
    /// * Quirk reproduced on purpose: at the start of every pass, ActiveMQ resets the
    ///   current delay to `initial_delay` if it happens to equal exactly 10 ms. With an
    ///   initial delay of 5 ms and a multiplier of 2 the delay therefore never grows
    ///   beyond 5 ms.
    ActiveMq,
    /// ActiveMQ 5.18's network connector back-off for a `static:` broker
    /// (`SimpleDiscoveryAgent#serviceFailed` and `#doReconnectDelay`): what a bridge does.
    ///
    /// * The first attempt is immediate; there are no passes (one bridge per broker).
    /// * A failure that comes less than `stable_after` (ActiveMQ's `minConnectTime`,
    ///   5 s) after the attempt started is a connection failure: the failure count grows
    ///   and the delay is `initial_delay` the first time, then multiplied (capped at
    ///   `max_delay`) each time: 1, 2, 4 … 30 s with the defaults. A connection that had
    ///   lasted at least `stable_after` resets both, and the bridge sleeps `initial_delay`.
    ///   A successful connection by itself resets nothing, so a bridge whose peer accepts
    ///   and then drops it within 5 s keeps backing off.
    /// * Limits: the policy has no clock, so every failed *attempt* counts as quick (a
    ///   connect that times out after more than 5 s resets the delay in ActiveMQ but
    ///   not here), and a lost connection's `up_for` is measured from CONNECTED rather
    ///   than from the start of the attempt.
    /// * `max_attempts`: `None` or `Some(0)` (ActiveMQ's default 0) retries forever;
    ///   `Some(n)` gives up at the `n`-th consecutive connection failure. With several
    ///   servers (not what a `static:` bridge has) they are tried in pool order.
    ///   `startup_max_attempts` and `randomize` are ignored.
    ActiveMqNetwork,
    /// Stampede's own policy: capped exponential backoff with "full jitter".
    ///
    /// # Why
    ///
    /// When a broker dies, every client connected to it notices within the same
    /// millisecond. With the stomp gem's schedule (first reconnect immediately, then
    /// 0.01 s × 2ⁿ) and MCollective's default `randomize = false`, all of them pick the
    /// same next pool host and send their CONNECT, and then their SUBSCRIBEs, in
    /// lockstep: 800 daemons produce 800 CONNECTs plus thousands of SUBSCRIBEs within a
    /// few milliseconds on one broker (a thundering herd). Those that time out retry in
    /// lockstep again, because their delays are identical too.
    ///
    /// # What
    ///
    /// Every attempt, including the first reconnect after a drop and the first attempt at
    /// start-up, waits a delay drawn uniformly from `[0, window]`, where
    /// `window = min(max_delay, initial_delay × multiplierᵏ)` and `k` is the number of
    /// failures so far. With the defaults (1 s initial window) 800 clients spread their
    /// first reconnects evenly over a second, about 8 per 10 ms, and later retries
    /// spread over ever wider windows up to 30 s. Servers are tried in rounds: each
    /// round visits every server once, in a new random order when `randomize` (the
    /// default), with the server that just failed last, so the clients of a dead broker
    /// also spread over the surviving brokers instead of all landing on the next one.
    ///
    /// "Full jitter" (rather than "decorrelated jitter", whose upper bound depends on the
    /// previous random draw) keeps the window a simple function of `k`, so the bounds are
    /// easy to reason about and a recovering broker is still probed at least once per
    /// `max_delay` by every client. Its expected delay is half the plain exponential
    /// schedule, so a lone client does not pay for the spreading.
    ///
    /// The backoff exponent `k` is reset when a connection that had stayed up for at
    /// least `stable_after` drops; a connection that drops sooner counts as one more
    /// failure, so a broker that accepts connections and then crashes is not hammered.
    /// `max_attempts`/`startup_max_attempts` count failed re-attempts like the stomp gem
    /// (`Some(n)` gives up after `n + 1` failed attempts in a row).
    Jittered,
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::StompGem => "stomp-gem",
            PolicyKind::ActiveMq => "activemq",
            PolicyKind::ActiveMqNetwork => "activemq-network",
            PolicyKind::Jittered => "jittered",
        })
    }
}

/// Reconnect settings shared by all policies. Each policy documents how it reads them;
/// the defaults differ per policy, see [`ReconnectConfig::defaults_for`].
///
/// | Field | `StompGem` (MCollective 2.12) | `ActiveMq` (5.18) | `Jittered` |
/// |---|---|---|---|
/// | `initial_delay` | 10 ms | 10 ms | 1 s (first jitter window) |
/// | `max_delay` | 30 s | 30 s | 30 s |
/// | `exponential` | true | true | true |
/// | `multiplier` | 2 | 2 | 2 |
/// | `max_attempts` | `None` (forever) | `None` (forever) | `None` (forever) |
/// | `startup_max_attempts` | ignored | `None` (= `max_attempts`) | `None` (= `max_attempts`) |
/// | `randomize` | false | true | true |
/// | `connect_timeout` | 30 s, TCP only (gem alone: none) | 30 s (`tcp://` `connectionTimeout`) | 30 s |
/// | `connread_timeout` | none (separate) | within `connect_timeout` | within `connect_timeout` |
/// | `stable_after` | ignored | ignored | 30 s |
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectConfig {
    /// The first delay of the backoff schedule.
    pub initial_delay: Duration,
    /// The cap of the backoff schedule.
    pub max_delay: Duration,
    /// Whether the delay grows by `multiplier` after each failure.
    pub exponential: bool,
    /// The growth factor of the delay.
    pub multiplier: BackoffMultiplier,
    /// How many failures to tolerate before giving up (`None`: retry forever). The exact
    /// counting differs per policy; see [`PolicyKind`].
    pub max_attempts: Option<u32>,
    /// A limit that replaces `max_attempts` until the first successful connection
    /// (`None`: use `max_attempts`). Ignored by [`PolicyKind::StompGem`].
    pub startup_max_attempts: Option<u32>,
    /// Whether to shuffle the server order.
    pub randomize: bool,
    /// How long one TCP connect may take (`None`: no limit); unless `connread_timeout`
    /// says otherwise it also bounds the CONNECT/CONNECTED exchange that follows. The
    /// policies do not use it; the driver enforces it.
    pub connect_timeout: Option<Duration>,
    /// What bounds reading the answer (CONNECTED or ERROR) to CONNECT once TCP is open.
    /// The policies do not use it; the driver enforces it.
    pub connread_timeout: ConnreadTimeout,
    /// How long a connection must stay up before [`PolicyKind::Jittered`] forgets the
    /// previous failures. Ignored by the other policies.
    pub stable_after: Duration,
}

impl ReconnectConfig {
    /// The settings MCollective 2.12 passes to the stomp gem when none are configured.
    pub fn stomp_gem() -> Self {
        Self {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(30),
            exponential: true,
            multiplier: BackoffMultiplier::TWO,
            max_attempts: None,
            startup_max_attempts: None,
            randomize: false,
            connect_timeout: Some(Duration::from_secs(30)),
            connread_timeout: ConnreadTimeout::Separate(None),
            stable_after: Duration::from_secs(30),
        }
    }

    /// ActiveMQ 5.18 `FailoverTransport` defaults.
    pub fn activemq() -> Self {
        Self {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(30),
            exponential: true,
            multiplier: BackoffMultiplier::TWO,
            max_attempts: None,
            startup_max_attempts: None,
            randomize: true,
            connect_timeout: Some(Duration::from_secs(30)),
            connread_timeout: ConnreadTimeout::WithinConnectTimeout,
            stable_after: Duration::from_secs(30),
        }
    }

    /// ActiveMQ 5.18's network connector defaults (its discovery agents'
    /// `initialReconnectDelay`, `maxReconnectDelay`, `useExponentialBackOff` and
    /// `backOffMultiplier`): what a bridge to a `static:` or discovered broker starts from.
    /// Retries forever and keeps the configured order; `stable_after` is the agent's
    /// `minConnectTime` (5 s).
    pub fn activemq_network() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            exponential: true,
            multiplier: BackoffMultiplier::TWO,
            max_attempts: None,
            startup_max_attempts: None,
            randomize: false,
            connect_timeout: Some(Duration::from_secs(30)),
            connread_timeout: ConnreadTimeout::WithinConnectTimeout,
            stable_after: Duration::from_secs(5),
        }
    }

    /// Stampede's jittered policy defaults.
    pub fn jittered() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            exponential: true,
            multiplier: BackoffMultiplier::TWO,
            max_attempts: None,
            startup_max_attempts: None,
            randomize: true,
            connect_timeout: Some(Duration::from_secs(30)),
            connread_timeout: ConnreadTimeout::WithinConnectTimeout,
            stable_after: Duration::from_secs(30),
        }
    }

    /// The defaults of `kind`.
    pub fn defaults_for(kind: PolicyKind) -> Self {
        match kind {
            PolicyKind::StompGem => Self::stomp_gem(),
            PolicyKind::ActiveMq => Self::activemq(),
            PolicyKind::ActiveMqNetwork => Self::activemq_network(),
            PolicyKind::Jittered => Self::jittered(),
        }
    }
}

/// What bounds the wait for CONNECTED (or ERROR) after the TCP connection is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnreadTimeout {
    /// `connect_timeout` covers the TCP connect and the CONNECT/CONNECTED exchange
    /// together (one deadline per attempt): what ActiveMQ clients and the jittered policy
    /// do.
    WithinConnectTimeout,
    /// A separate limit that starts when TCP is open (`None`: wait forever). The stomp
    /// gem's `connread_timeout` (`connection/netio.rb#_receive` with `connread`): its
    /// default 0 means no limit, and MCollective 2.12 does not set it, so an mcollectived
    /// whose broker accepts TCP and never answers CONNECT waits for ever, while its
    /// `connect_timeout` bounds only the TCP open (`open_tcp_socket`).
    Separate(Option<Duration>),
}

/// One connection attempt the driver should make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Index of the server to try in the [`ServerList`].
    pub server: usize,
    /// How long to wait before trying it.
    pub delay: Duration,
    /// 1-based count of attempts since start-up or the last successful connection.
    pub number: u32,
}

/// How often one server was tried before the policy gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriedServer {
    /// Index in the [`ServerList`].
    pub index: usize,
    /// The server's address.
    pub addr: ServerAddr,
    /// Failed attempts against it since start-up or the last successful connection.
    pub attempts: u32,
}

/// The policy ran out of attempts. Lists every server with the number of failed attempts
/// made against it (in pool order, servers never tried omitted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct GaveUp {
    /// What was tried, in pool order.
    pub tried: Vec<TriedServer>,
}

impl GaveUp {
    /// The total number of failed attempts.
    pub fn total_attempts(&self) -> u32 {
        self.tried.iter().map(|t| t.attempts).sum()
    }
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tried.is_empty() {
            return f.write_str(
                "gave up without trying: reconnecting after a lost connection is disabled \
                 (max reconnect attempts 0)",
            );
        }
        write!(
            f,
            "gave up after {} failed attempts (",
            self.total_attempts()
        )?;
        for (i, t) in self.tried.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} ×{}", t.addr, t.attempts)?;
        }
        f.write_str(")")
    }
}

/// Where the reconnector is in its life cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Created; `first_attempt` not called yet.
    Fresh,
    /// An attempt has been handed out and its outcome not reported yet.
    Connecting,
    /// The last attempt succeeded.
    Connected,
    /// The policy gave up; the value is repeated on further calls.
    GaveUp(GaveUp),
}

/// The stomp gem's state (`Stomp::Connection` instance variables).
#[derive(Debug, Clone)]
struct GemState {
    /// `@parameters[:hosts]`: the rotating host list (server indices).
    hosts: Vec<usize>,
    /// `@reconnect_delay`.
    delay: Duration,
    /// `@connection_attempts`.
    attempts: u32,
}

/// ActiveMQ `FailoverTransport`'s state.
#[derive(Debug, Clone)]
struct AmqState {
    /// `firstConnection`: no connection has succeeded yet.
    first_connection: bool,
    /// `connectFailures`: failed passes since the last success.
    connect_failures: u32,
    /// `reconnectDelay`.
    delay: Duration,
    /// `failedConnectTransportURI`: the server whose connection was last lost.
    failed: Option<usize>,
    /// The current pass (`connectList`) and the position in it.
    pass: Vec<usize>,
    pos: usize,
}

/// `SimpleDiscoveryAgent`'s per-service state (`SimpleDiscoveryEvent`).
#[derive(Debug, Clone)]
struct NetState {
    /// `connectFailures`.
    connect_failures: u32,
    /// `reconnectDelay`; `None` for ActiveMQ's initial -1.
    delay: Option<Duration>,
}

/// The jittered policy's state.
#[derive(Debug, Clone)]
struct JitterState {
    /// No connection has succeeded yet.
    first_connection: bool,
    /// Consecutive failed attempts since start-up or the last success.
    failures: u32,
    /// The backoff exponent `k`.
    exponent: u32,
    /// The current round and the position in it.
    round: Vec<usize>,
    pos: usize,
}

#[derive(Debug, Clone)]
enum State {
    Gem(GemState),
    Amq(AmqState),
    Net(NetState),
    Jitter(JitterState),
}

/// A reconnect policy as a deterministic state machine. See the module documentation
/// for the protocol between it and the driver.
#[derive(Debug, Clone)]
pub struct Reconnector {
    kind: PolicyKind,
    config: ReconnectConfig,
    servers: ServerList,
    rng: SmallRng,
    phase: Phase,
    state: State,
    /// The server of the last attempt handed out.
    current: usize,
    /// The number of the last attempt handed out.
    number: u32,
    /// Failed attempts per server since start-up or the last success.
    failed: Vec<u32>,
}

impl Reconnector {
    /// A reconnector for `servers` running policy `kind` with `config`; all randomness is
    /// drawn from a [`SmallRng`] seeded with `seed`.
    pub fn new(kind: PolicyKind, config: ReconnectConfig, servers: ServerList, seed: u64) -> Self {
        warn_ignored_settings(kind, &config);
        let n = servers.len();
        let state = Self::fresh_state(kind, &config, n);
        Self {
            kind,
            config,
            servers,
            rng: SmallRng::seed_from_u64(seed),
            phase: Phase::Fresh,
            state,
            current: 0,
            number: 0,
            failed: vec![0; n],
        }
    }

    fn fresh_state(kind: PolicyKind, config: &ReconnectConfig, n: usize) -> State {
        match kind {
            PolicyKind::StompGem => State::Gem(GemState {
                hosts: (0..n).collect(),
                delay: config.initial_delay,
                attempts: 0,
            }),
            PolicyKind::ActiveMq => State::Amq(AmqState {
                first_connection: true,
                connect_failures: 0,
                delay: ACTIVEMQ_DEFAULT_INITIAL_DELAY,
                failed: None,
                pass: Vec::new(),
                pos: 0,
            }),
            PolicyKind::ActiveMqNetwork => State::Net(NetState {
                connect_failures: 0,
                delay: None,
            }),
            PolicyKind::Jittered => State::Jitter(JitterState {
                first_connection: true,
                failures: 0,
                exponent: 0,
                round: Vec::new(),
                pos: 0,
            }),
        }
    }

    /// The policy this reconnector runs.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The settings it runs with.
    pub fn config(&self) -> &ReconnectConfig {
        &self.config
    }

    /// The servers it chooses from.
    pub fn servers(&self) -> &ServerList {
        &self.servers
    }

    /// The server of the last attempt handed out (the connected server once
    /// [`connected`](Self::connected) was called).
    pub fn current_server(&self) -> usize {
        self.current
    }

    /// Whether the last attempt was reported as successful and no loss reported since.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// The first attempt of a newly started client. Calling it again restarts the policy
    /// from scratch, as a new client process would (the random generator is not reset).
    pub fn first_attempt(&mut self) -> Attempt {
        self.state = Self::fresh_state(self.kind, &self.config, self.servers.len());
        self.reset_counters();
        let n = self.servers.len();
        let cfg = &self.config;
        let rng = &mut self.rng;
        let (server, delay) = match &mut self.state {
            State::Gem(s) => (
                gem_change_host(&mut s.hosts, cfg.randomize, rng),
                Duration::ZERO,
            ),
            State::Amq(s) => amq_start_pass(s, cfg, &self.servers, rng, Duration::ZERO),
            State::Net(_) => (0, Duration::ZERO),
            State::Jitter(s) => {
                s.round = jitter_round(n, None, cfg.randomize, rng);
                s.pos = 0;
                let delay = jitter_delay(cfg, 0, rng);
                (s.round.first().copied().unwrap_or(0), delay)
            }
        };
        self.hand_out(server, delay)
    }

    /// Reports that the last attempt failed; returns the next attempt or gives up.
    ///
    /// Called while connected it is treated as [`connection_lost`](Self::connection_lost)
    /// with a zero uptime; called before [`first_attempt`](Self::first_attempt) it returns
    /// the first attempt; after giving up it repeats the same [`GaveUp`].
    pub fn attempt_failed(&mut self) -> Result<Attempt, GaveUp> {
        match &self.phase {
            Phase::Fresh => return Ok(self.first_attempt()),
            Phase::Connected => return self.connection_lost(Duration::ZERO),
            Phase::GaveUp(g) => return Err(g.clone()),
            Phase::Connecting => {}
        }
        if let Some(slot) = self.failed.get_mut(self.current) {
            *slot = slot.saturating_add(1);
        }
        let n = self.servers.len();
        let cfg = &self.config;
        let rng = &mut self.rng;
        let next = match &mut self.state {
            State::Gem(s) => {
                // `socket()`: give up before sleeping once the limit is reached.
                if cfg.max_attempts.is_some_and(|max| s.attempts >= max) {
                    None
                } else {
                    let sleep = s.delay;
                    s.attempts = s.attempts.saturating_add(1);
                    let server = gem_change_host(&mut s.hosts, cfg.randomize, rng);
                    s.delay = gem_increase_delay(s.delay, cfg);
                    Some((server, sleep))
                }
            }
            State::Amq(s) => {
                s.pos += 1;
                if let Some(&server) = s.pass.get(s.pos) {
                    // The rest of a pass runs back to back.
                    Some((server, Duration::ZERO))
                } else {
                    let limit = amq_attempt_limit(s, cfg);
                    s.connect_failures = s.connect_failures.saturating_add(1);
                    if limit.is_some_and(|l| s.connect_failures >= l) {
                        None
                    } else {
                        let slept = amq_do_delay(s, cfg);
                        Some(amq_start_pass(s, cfg, &self.servers, rng, slept))
                    }
                }
            }
            State::Net(s) => {
                net_failure(s, cfg).map(|delay| ((self.current + 1) % n.max(1), delay))
            }
            State::Jitter(s) => {
                let limit = if s.first_connection {
                    cfg.startup_max_attempts.or(cfg.max_attempts)
                } else {
                    cfg.max_attempts
                };
                if limit.is_some_and(|l| s.failures >= l) {
                    None
                } else {
                    s.failures = s.failures.saturating_add(1);
                    s.exponent = (s.exponent + 1).min(MAX_JITTER_EXPONENT);
                    s.pos += 1;
                    if s.pos >= s.round.len() {
                        s.round = jitter_round(n, Some(self.current), cfg.randomize, rng);
                        s.pos = 0;
                    }
                    let server = s.round.get(s.pos).copied().unwrap_or(0);
                    Some((server, jitter_delay(cfg, s.exponent, rng)))
                }
            }
        };
        match next {
            Some((server, delay)) => Ok(self.hand_out(server, delay)),
            None => Err(self.give_up()),
        }
    }

    /// Reports that the broker answered the last attempt's CONNECT with ERROR.
    ///
    /// The stomp gem takes any answer as a connection (see [`PolicyKind::StompGem`]), so
    /// for it this is [`connected`](Self::connected) followed by an immediate
    /// [`connection_lost`](Self::connection_lost): the next host at once. ActiveMQ's
    /// failover transport and the jittered policy count it as a failed attempt, like
    /// [`attempt_failed`](Self::attempt_failed).
    pub fn attempt_refused(&mut self) -> Result<Attempt, GaveUp> {
        if self.kind == PolicyKind::StompGem && self.phase == Phase::Connecting {
            self.connected();
            self.connection_lost(Duration::ZERO)
        } else {
            self.attempt_failed()
        }
    }

    /// Reports that the last attempt opened TCP but no answer to CONNECT arrived within
    /// the separate `connread_timeout` (see [`ConnreadTimeout::Separate`]).
    ///
    /// The stomp gem changes host twice for it: `connection/netio.rb#_receive` calls
    /// `_reconn_prep` (which changes host) before re-raising `ConnectReadTimeout`, and
    /// `Connection#socket` then sleeps, changes host again and grows the delay as for any
    /// failed attempt. With two hosts it therefore retries the same host. The other
    /// policies count it as a failed attempt, like [`attempt_failed`](Self::attempt_failed).
    pub fn connect_read_timed_out(&mut self) -> Result<Attempt, GaveUp> {
        if self.phase == Phase::Connecting {
            let randomize = self.config.randomize;
            if let State::Gem(s) = &mut self.state {
                gem_change_host(&mut s.hosts, randomize, &mut self.rng);
            }
        }
        self.attempt_failed()
    }

    /// Reports that the last attempt succeeded (CONNECTED received). Returns the index
    /// of the connected server.
    pub fn connected(&mut self) -> usize {
        let cfg = &self.config;
        match &mut self.state {
            // The gem resets `@connection_attempts` only; `@reconnect_delay` keeps its value.
            State::Gem(s) => s.attempts = 0,
            State::Amq(s) => {
                s.delay = cfg.initial_delay;
                s.connect_failures = 0;
                s.first_connection = false;
            }
            // `SimpleDiscoveryAgent` resets nothing on a connection, only on a failure
            // that comes at least `minConnectTime` after the attempt started.
            State::Net(_) => {}
            State::Jitter(s) => {
                s.failures = 0;
                s.first_connection = false;
            }
        }
        self.reset_counters();
        self.phase = Phase::Connected;
        self.current
    }

    /// Reports that the established connection was lost after being up for `up_for`
    /// (only [`PolicyKind::Jittered`] looks at it). Returns the first reconnect attempt,
    /// or gives up when the policy does not reconnect at all.
    ///
    /// Called while not connected it is treated as [`attempt_failed`](Self::attempt_failed).
    pub fn connection_lost(&mut self, up_for: Duration) -> Result<Attempt, GaveUp> {
        if self.phase != Phase::Connected {
            return self.attempt_failed();
        }
        self.reset_counters();
        let n = self.servers.len();
        let lost = self.current;
        let cfg = &self.config;
        let rng = &mut self.rng;
        let next = match &mut self.state {
            // `_reconn_prep` changes host, then `socket()` connects without sleeping.
            State::Gem(s) => Some((
                gem_change_host(&mut s.hosts, cfg.randomize, rng),
                Duration::ZERO,
            )),
            State::Amq(s) => {
                // `handleTransportFailure`: no reconnect at all when the limit is 0.
                if amq_attempt_limit(s, cfg) == Some(0) {
                    None
                } else {
                    s.failed = Some(lost);
                    Some(amq_start_pass(s, cfg, &self.servers, rng, Duration::ZERO))
                }
            }
            State::Net(s) => {
                if up_for < cfg.stable_after {
                    net_failure(s, cfg).map(|delay| (lost, delay))
                } else {
                    s.connect_failures = 0;
                    s.delay = Some(cfg.initial_delay);
                    Some((lost, cfg.initial_delay))
                }
            }
            State::Jitter(s) => {
                s.exponent = if up_for >= cfg.stable_after {
                    0
                } else {
                    (s.exponent + 1).min(MAX_JITTER_EXPONENT)
                };
                s.round = jitter_round(n, Some(lost), cfg.randomize, rng);
                s.pos = 0;
                let server = s.round.first().copied().unwrap_or(0);
                Some((server, jitter_delay(cfg, s.exponent, rng)))
            }
        };
        match next {
            Some((server, delay)) => Ok(self.hand_out(server, delay)),
            None => Err(self.give_up()),
        }
    }

    fn reset_counters(&mut self) {
        self.number = 0;
        self.failed.iter_mut().for_each(|c| *c = 0);
    }

    fn hand_out(&mut self, server: usize, delay: Duration) -> Attempt {
        self.current = server;
        self.number = self.number.saturating_add(1);
        self.phase = Phase::Connecting;
        Attempt {
            server,
            delay,
            number: self.number,
        }
    }

    fn give_up(&mut self) -> GaveUp {
        let tried = self
            .servers
            .iter()
            .zip(&self.failed)
            .enumerate()
            .filter(|(_, (_, attempts))| **attempts > 0)
            .map(|(index, (addr, attempts))| TriedServer {
                index,
                addr: addr.clone(),
                attempts: *attempts,
            })
            .collect();
        let gave_up = GaveUp { tried };
        self.phase = Phase::GaveUp(gave_up.clone());
        gave_up
    }
}

/// One flag per setting a policy accepts but does not model, so that its warning
/// appears once per process (thousands of simulated clients share one config).
static IGNORED_WARNED: [AtomicBool; 3] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];

/// Warns once per process for each setting `kind` ignores that is set to something other
/// than its default.
fn warn_ignored_settings(kind: PolicyKind, cfg: &ReconnectConfig) {
    let defaults = ReconnectConfig::defaults_for(kind);
    let stable_after_set = cfg.stable_after != defaults.stable_after;
    let checks: [(bool, &str); 3] = [
        (
            kind == PolicyKind::StompGem && cfg.startup_max_attempts.is_some(),
            "stomp-gem policy: startup_max_attempts is not a stomp gem setting; ignored",
        ),
        (
            kind == PolicyKind::StompGem && stable_after_set,
            "stomp-gem policy: stable_after is not a stomp gem setting; ignored",
        ),
        (
            kind == PolicyKind::ActiveMq && stable_after_set,
            "activemq policy: stable_after is not a FailoverTransport setting; ignored",
        ),
    ];
    for ((set, message), flag) in checks.iter().zip(&IGNORED_WARNED) {
        if *set && !flag.swap(true, Ordering::Relaxed) {
            tracing::warn!("{message}");
        }
    }
}

/// Multiplies `d` by `m`, saturating. Integral multipliers are applied exactly in
/// nanoseconds so that 0.01 s × 2¹¹ is exactly 20.48 s.
fn scale(d: Duration, m: BackoffMultiplier) -> Duration {
    let m = m.get();
    let nanos = d.as_nanos();
    let scaled = if m.fract() == 0.0 && m <= f64::from(u32::MAX) {
        // The cast is exact: `m` is integral and within `u32`.
        nanos.saturating_mul(m as u128)
    } else {
        // Float-to-int casts saturate; the product is non-negative.
        (nanos as f64 * m).round() as u128
    };
    duration_from_nanos(scaled)
}

fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below 10⁹ and fits in `u32`.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// `Connection#change_host`: shuffle if randomizing, then rotate the head to the tail and
/// return it.
fn gem_change_host(hosts: &mut [usize], randomize: bool, rng: &mut SmallRng) -> usize {
    if randomize {
        hosts.shuffle(rng);
    }
    hosts.rotate_left(1);
    hosts.last().copied().unwrap_or(0)
}

/// `Connection#increase_reconnect_delay`: multiply when exponential, then cap.
fn gem_increase_delay(delay: Duration, cfg: &ReconnectConfig) -> Duration {
    let grown = if cfg.exponential {
        scale(delay, cfg.multiplier)
    } else {
        delay
    };
    grown.min(cfg.max_delay)
}

/// `calculateReconnectAttemptLimit`: the startup limit applies until the first success.
fn amq_attempt_limit(s: &AmqState, cfg: &ReconnectConfig) -> Option<u32> {
    if s.first_connection && cfg.startup_max_attempts.is_some() {
        cfg.startup_max_attempts
    } else {
        cfg.max_attempts
    }
}

/// `doDelay`: returns the delay to sleep, then grows it (whole milliseconds, truncated).
fn amq_do_delay(s: &mut AmqState, cfg: &ReconnectConfig) -> Duration {
    let slept = s.delay;
    if cfg.exponential {
        let ms = u64::try_from(s.delay.as_millis()).unwrap_or(u64::MAX);
        // Java's `long *= double` truncates; float-to-int casts saturate.
        let grown = Duration::from_millis((ms as f64 * cfg.multiplier.get()) as u64);
        s.delay = grown.min(cfg.max_delay);
    }
    slept
}

/// The start of `doReconnect`: `resetReconnectDelay`, build the pass, and honour the
/// initial delay on the first attempt after losing a working connection. `carried` is the
/// delay slept at the end of the previous `doReconnect`. Returns the first server of the
/// pass and the total delay before it.
fn amq_start_pass(
    s: &mut AmqState,
    cfg: &ReconnectConfig,
    servers: &ServerList,
    rng: &mut SmallRng,
    carried: Duration,
) -> (usize, Duration) {
    if !cfg.exponential || s.delay == ACTIVEMQ_DEFAULT_INITIAL_DELAY {
        s.delay = cfg.initial_delay;
    }
    s.pass = amq_connect_list(servers, s.failed, cfg.randomize, rng);
    s.pos = 0;
    let mut delay = carried;
    if !s.first_connection && s.connect_failures == 0 && !cfg.initial_delay.is_zero() {
        delay = delay.saturating_add(amq_do_delay(s, cfg));
    }
    (s.pass.first().copied().unwrap_or(0), delay)
}

/// `SimpleDiscoveryAgent#serviceFailed` for a quick failure: count it, give up at
/// `maxReconnectAttempts` (when above 0), else the next delay (`None`: give up).
fn net_failure(s: &mut NetState, cfg: &ReconnectConfig) -> Option<Duration> {
    s.connect_failures = s.connect_failures.saturating_add(1);
    if cfg
        .max_attempts
        .is_some_and(|max| max > 0 && s.connect_failures >= max)
    {
        return None;
    }
    let delay = match s.delay {
        Some(d) if cfg.exponential => scale(d, cfg.multiplier).min(cfg.max_delay),
        _ => cfg.initial_delay,
    };
    s.delay = Some(delay);
    Some(delay)
}

/// `getConnectList`: distinct servers, shuffled when randomizing, with the server whose
/// connection was last lost moved to the end.
fn amq_connect_list(
    servers: &ServerList,
    failed: Option<usize>,
    randomize: bool,
    rng: &mut SmallRng,
) -> Vec<usize> {
    let all = servers.as_slice();
    let mut list: Vec<usize> = (0..all.len())
        .filter(|&i| !all[..i].contains(&all[i]))
        .collect();
    let removed = failed.and_then(|f| {
        let pos = list.iter().position(|&i| all[i] == all[f])?;
        Some(list.remove(pos))
    });
    if randomize {
        list.shuffle(rng);
    }
    list.extend(removed);
    list
}

/// A jittered round: every server once, the server that just failed (if any) last.
/// Without `randomize` the round is the pool order starting after the failed server.
fn jitter_round(
    n: usize,
    failed: Option<usize>,
    randomize: bool,
    rng: &mut SmallRng,
) -> Vec<usize> {
    let mut round: Vec<usize> = (0..n).collect();
    match failed.filter(|&f| f < n) {
        Some(f) => {
            round.rotate_left(f + 1);
            if randomize {
                // The failed server is now last; shuffle only the others.
                let others = n - 1;
                round[..others].shuffle(rng);
            }
        }
        None => {
            if randomize {
                round.shuffle(rng);
            }
        }
    }
    round
}

/// The jitter window for backoff exponent `k`: `min(max_delay, initial × multiplierᵏ)`
/// (just `initial`, capped, when exponential backoff is off).
fn jitter_window(cfg: &ReconnectConfig, k: u32) -> Duration {
    let mut window = cfg.initial_delay.min(cfg.max_delay);
    if cfg.exponential {
        for _ in 0..k {
            if window >= cfg.max_delay {
                break;
            }
            window = scale(window, cfg.multiplier).min(cfg.max_delay);
        }
    }
    window
}

/// A delay drawn uniformly from `[0, jitter_window(k)]` with nanosecond resolution.
fn jitter_delay(cfg: &ReconnectConfig, k: u32, rng: &mut SmallRng) -> Duration {
    let window = u64::try_from(jitter_window(cfg, k).as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=window))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> ServerList {
        let list = (0..n)
            .map(|i| ServerAddr::new(format!("b{i}"), 61613))
            .collect();
        ServerList::new(list).expect("non-empty")
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn secs(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    /// Fails the first attempt and `n - 1` more, returning all `n` attempts.
    fn fail_all(r: &mut Reconnector, first: Attempt, n: usize) -> Vec<Attempt> {
        let mut out = vec![first];
        while out.len() < n {
            out.push(r.attempt_failed().expect("retries forever"));
        }
        out
    }

    fn gem(n: usize) -> Reconnector {
        Reconnector::new(
            PolicyKind::StompGem,
            ReconnectConfig::stomp_gem(),
            servers(n),
            1,
        )
    }

    fn amq(n: usize, cfg: ReconnectConfig) -> Reconnector {
        Reconnector::new(PolicyKind::ActiveMq, cfg, servers(n), 1)
    }

    fn amq_ordered() -> ReconnectConfig {
        ReconnectConfig {
            randomize: false,
            ..ReconnectConfig::activemq()
        }
    }

    #[test]
    fn stomp_gem_all_down_for_15_attempts_matches_observed_schedule() {
        let mut r = gem(2);
        let first = r.first_attempt();
        let attempts = fail_all(&mut r, first, 15);
        let delays: Vec<Duration> = attempts.iter().map(|a| a.delay).collect();
        // protocols.md §3.2: 0.01, 0.02, … 20.48, 30, 30 after an immediate first try.
        let expected: Vec<Duration> = [
            0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 30000, 30000,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(delays, expected);
        let hosts: Vec<usize> = attempts.iter().map(|a| a.server).collect();
        assert_eq!(hosts, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
        let numbers: Vec<u32> = attempts.iter().map(|a| a.number).collect();
        assert_eq!(numbers, (1..=15).collect::<Vec<_>>());
        // The cap is reached after ≈ 41 s of sleeping (12 growing sleeps), as observed.
        let total: Duration = attempts[..13].iter().map(|a| a.delay).sum();
        assert_eq!(total, ms(40950));
        // Attempts 0–13 (the first 14) span ≈ 71 s, as observed.
        let total: Duration = attempts[..14].iter().map(|a| a.delay).sum();
        assert_eq!(total, ms(70950));
    }

    #[test]
    fn stomp_gem_drop_switches_to_next_host_immediately() {
        let mut r = gem(3);
        assert_eq!(r.first_attempt().server, 0);
        assert_eq!(r.connected(), 0);
        let a = r.connection_lost(secs(3600)).unwrap();
        assert_eq!(
            a,
            Attempt {
                server: 1,
                delay: Duration::ZERO,
                number: 1
            }
        );
        // It stays on host 1 and never goes back to host 0 by itself.
        r.connected();
        let b = r.connection_lost(secs(1)).unwrap();
        assert_eq!((b.server, b.delay), (2, Duration::ZERO));
        r.connected();
        let c = r.connection_lost(secs(1)).unwrap();
        assert_eq!((c.server, c.delay), (0, Duration::ZERO));
    }

    #[test]
    fn stomp_gem_keeps_30s_delay_after_reconnecting() {
        let mut r = gem(2);
        let first = r.first_attempt();
        let attempts = fail_all(&mut r, first, 15);
        assert_eq!(attempts[14].delay, secs(30));
        r.connected();
        let lost = r.connection_lost(secs(600)).unwrap();
        assert_eq!(lost.delay, Duration::ZERO);
        assert_eq!(lost.number, 1);
        // The delay is never reset: the next failure already waits 30 s.
        let next = r.attempt_failed().unwrap();
        assert_eq!(next.delay, secs(30));
        assert_eq!(next.number, 2);
    }

    #[test]
    fn stomp_gem_two_hosts_at_cap_probe_each_host_every_60s() {
        let mut r = gem(2);
        let first = r.first_attempt();
        let attempts = fail_all(&mut r, first, 30);
        let mut t = Duration::ZERO;
        let mut host0_times = Vec::new();
        for a in &attempts {
            t += a.delay;
            if a.server == 0 {
                host0_times.push(t);
            }
        }
        let gaps: Vec<Duration> = host0_times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 5);
        assert!(
            gaps[gaps.len() - 5..].iter().all(|&g| g == secs(60)),
            "{gaps:?}"
        );
    }

    #[test]
    fn stomp_gem_max_attempts_gives_up_with_what_was_tried() {
        let cfg = ReconnectConfig {
            max_attempts: Some(4),
            ..ReconnectConfig::stomp_gem()
        };
        let mut r = Reconnector::new(PolicyKind::StompGem, cfg, servers(2), 1);
        let _ = r.first_attempt();
        for _ in 0..4 {
            r.attempt_failed().unwrap();
        }
        let gave_up = r.attempt_failed().unwrap_err();
        // `n` re-attempts after the first one: 5 failures, alternating hosts.
        assert_eq!(gave_up.total_attempts(), 5);
        assert_eq!(
            gave_up
                .tried
                .iter()
                .map(|t| (t.index, t.attempts))
                .collect::<Vec<_>>(),
            [(0, 3), (1, 2)]
        );
        assert_eq!(gave_up.tried[0].addr.host, "b0");
        assert_eq!(
            gave_up.to_string(),
            "gave up after 5 failed attempts (b0:61613 ×3, b1:61613 ×2)"
        );
        // Giving up is sticky.
        assert_eq!(r.attempt_failed().unwrap_err(), gave_up);
    }

    #[test]
    fn stomp_gem_attempt_counter_resets_on_success() {
        let cfg = ReconnectConfig {
            max_attempts: Some(2),
            ..ReconnectConfig::stomp_gem()
        };
        let mut r = Reconnector::new(PolicyKind::StompGem, cfg, servers(2), 1);
        let _ = r.first_attempt();
        r.attempt_failed().unwrap();
        r.attempt_failed().unwrap();
        r.connected();
        let _ = r.connection_lost(secs(1)).unwrap();
        r.attempt_failed().unwrap();
        r.attempt_failed().unwrap();
        assert!(r.attempt_failed().is_err());
    }

    #[test]
    fn stomp_gem_without_exponential_still_caps() {
        let cfg = ReconnectConfig {
            exponential: false,
            initial_delay: secs(40),
            ..ReconnectConfig::stomp_gem()
        };
        let mut r = Reconnector::new(PolicyKind::StompGem, cfg, servers(1), 1);
        let first = r.first_attempt();
        let d: Vec<Duration> = fail_all(&mut r, first, 4).iter().map(|a| a.delay).collect();
        // `increase_reconnect_delay` caps even when not multiplying.
        assert_eq!(d, [Duration::ZERO, secs(40), secs(30), secs(30)]);
    }

    #[test]
    fn stomp_gem_randomize_is_reproducible_and_seed_dependent() {
        let run = |seed: u64| {
            let cfg = ReconnectConfig {
                randomize: true,
                ..ReconnectConfig::stomp_gem()
            };
            let mut r = Reconnector::new(PolicyKind::StompGem, cfg, servers(5), seed);
            let first = r.first_attempt();
            fail_all(&mut r, first, 20)
                .iter()
                .map(|a| a.server)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let distinct: std::collections::BTreeSet<Vec<usize>> = (0..8).map(run).collect();
        assert!(
            distinct.len() > 1,
            "different seeds should give different orders"
        );
        // Without randomize the order is the pool order whatever the seed.
        let mut r = Reconnector::new(
            PolicyKind::StompGem,
            ReconnectConfig::stomp_gem(),
            servers(5),
            99,
        );
        let first = r.first_attempt();
        let hosts: Vec<usize> = fail_all(&mut r, first, 6)
            .iter()
            .map(|a| a.server)
            .collect();
        assert_eq!(hosts, [0, 1, 2, 3, 4, 0]);
    }

    #[test]
    fn activemq_passes_try_every_server_back_to_back() {
        let mut r = amq(3, amq_ordered());
        let first = r.first_attempt();
        let attempts = fail_all(&mut r, first, 12);
        let seq: Vec<(usize, Duration)> = attempts.iter().map(|a| (a.server, a.delay)).collect();
        assert_eq!(
            seq,
            [
                (0, ms(0)),
                (1, ms(0)),
                (2, ms(0)),
                (0, ms(10)),
                (1, ms(0)),
                (2, ms(0)),
                (0, ms(20)),
                (1, ms(0)),
                (2, ms(0)),
                (0, ms(40)),
                (1, ms(0)),
                (2, ms(0)),
            ]
        );
    }

    #[test]
    fn activemq_all_down_reaches_cap_and_stays() {
        let mut r = amq(1, amq_ordered());
        let first = r.first_attempt();
        let d: Vec<Duration> = fail_all(&mut r, first, 16)
            .iter()
            .map(|a| a.delay)
            .collect();
        let expected: Vec<Duration> = [
            0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 30000, 30000, 30000,
        ]
        .into_iter()
        .map(ms)
        .collect();
        assert_eq!(d, expected);
    }

    #[test]
    fn activemq_resets_delay_after_reconnecting_and_waits_initial_delay_first() {
        let mut r = amq(2, amq_ordered());
        let first = r.first_attempt();
        // 19 failed passes and the first attempt of the 20th, which succeeds.
        let attempts = fail_all(&mut r, first, 39);
        assert_eq!(attempts[38].delay, secs(30));
        let connected_to = r.connected();
        assert_eq!(connected_to, 0);
        // After a drop: initialReconnectDelay, then the pass with the lost server last.
        let lost = r.connection_lost(secs(600)).unwrap();
        assert_eq!((lost.server, lost.delay, lost.number), (1, ms(10), 1));
        let second = r.attempt_failed().unwrap();
        assert_eq!((second.server, second.delay), (0, ms(0)));
        let third = r.attempt_failed().unwrap();
        assert_eq!((third.server, third.delay), (1, ms(20)));
        r.attempt_failed().unwrap();
        let fifth = r.attempt_failed().unwrap();
        assert_eq!((fifth.server, fifth.delay), (1, ms(40)));
    }

    /// The waits before each pass (the delay handed out with its first attempt).
    fn pass_waits(r: &mut Reconnector, first: Attempt, servers: usize, passes: usize) -> Vec<u64> {
        fail_all(r, first, servers * passes)
            .chunks(servers)
            .map(|pass| {
                assert!(pass[1..].iter().all(|a| a.delay.is_zero()), "{pass:?}");
                u64::try_from(pass[0].delay.as_millis()).unwrap()
            })
            .collect()
    }

    #[test]
    fn activemq_schedule_never_connected_vs_after_losing_an_established_connection() {
        // ActiveMQ 5.18 `doReconnect`/`doDelay` with the defaults (10 ms ×2, 30 s cap).
        let cap = |v: Vec<u64>| v.into_iter().map(|w| w.min(30_000)).collect::<Vec<_>>();
        // Never connected: the first pass at once, then `doDelay` after each failed pass.
        let mut r = amq(2, amq_ordered());
        let first = r.first_attempt();
        let waits = pass_waits(&mut r, first, 2, 16);
        let mut expected = vec![0];
        expected.extend(cap((0..15).map(|k| 10u64 << k).collect()));
        assert_eq!(waits, expected);

        // After losing an established connection: `doDelay` once before the first pass
        // (`connectFailures == 0`), then only after each failed pass; never both.
        let mut r = amq(2, amq_ordered());
        let _ = r.first_attempt();
        r.connected();
        let first = r.connection_lost(secs(600)).unwrap();
        let waits = pass_waits(&mut r, first, 2, 16);
        assert_eq!(waits, cap((0..16).map(|k| 10u64 << k).collect()));
        assert_eq!(&waits[..4], [10, 20, 40, 80]);
        // At the cap each pass starts 30 s after the previous one failed (not 60 s as in
        // ActiveMQ 5.13 and older, which slept before every pass as well).
        assert_eq!(waits[15], 30_000);

        // A second loss after reconnecting starts over at `initialReconnectDelay`.
        r.connected();
        let again = r.connection_lost(secs(1)).unwrap();
        assert_eq!(again.delay, ms(10));
    }

    fn bridge() -> Reconnector {
        Reconnector::new(
            PolicyKind::ActiveMqNetwork,
            ReconnectConfig::activemq_network(),
            servers(1),
            1,
        )
    }

    #[test]
    fn bridge_schedule_never_connected_vs_after_losing_an_established_connection() {
        // `SimpleDiscoveryAgent#serviceFailed`: 1 s ×2 up to 30 s between quick failures.
        let mut r = bridge();
        let first = r.first_attempt();
        assert_eq!(
            pass_waits(&mut r, first, 1, 8),
            [0, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        // A connection that lasted `minConnectTime` (5 s) resets: 1 s, then 2, 4 … s.
        r.connected();
        let first = r.connection_lost(secs(60)).unwrap();
        assert_eq!(
            pass_waits(&mut r, first, 1, 7),
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
    }

    #[test]
    fn bridge_keeps_backing_off_when_its_peer_drops_it_within_5s() {
        let mut r = bridge();
        let _ = r.first_attempt();
        let mut waits = Vec::new();
        for _ in 0..7 {
            r.connected();
            waits.push(r.connection_lost(secs(4)).unwrap().delay.as_millis());
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        // The failover transport, by contrast, resets on every connection.
        let mut amq = Reconnector::new(
            PolicyKind::ActiveMq,
            ReconnectConfig::activemq_network(),
            servers(1),
            1,
        );
        let _ = amq.first_attempt();
        for _ in 0..3 {
            amq.connected();
            assert_eq!(amq.connection_lost(secs(4)).unwrap().delay, secs(1));
        }
    }

    #[test]
    fn bridge_max_attempts_counts_consecutive_failures_and_zero_is_forever() {
        let with = |max| {
            let cfg = ReconnectConfig {
                max_attempts: max,
                ..ReconnectConfig::activemq_network()
            };
            let mut r = Reconnector::new(PolicyKind::ActiveMqNetwork, cfg, servers(1), 1);
            let _ = r.first_attempt();
            (1..=50).find(|_| r.attempt_failed().is_err())
        };
        assert_eq!(with(Some(3)), Some(3));
        assert_eq!(with(Some(0)), None);
        assert_eq!(with(None), None);
    }

    #[test]
    fn stomp_gem_error_answer_is_a_connection_then_the_next_host_at_once() {
        let cfg = ReconnectConfig {
            max_attempts: Some(1),
            ..ReconnectConfig::stomp_gem()
        };
        let mut r = Reconnector::new(PolicyKind::StompGem, cfg, servers(3), 1);
        let first = r.first_attempt();
        let _ = fail_all(&mut r, first, 2);
        // Attempt 2 (host 1) gets ERROR: host 2 at once, attempt count reset.
        let next = r.attempt_refused().unwrap();
        assert_eq!(
            (next.server, next.delay, next.number),
            (2, Duration::ZERO, 1)
        );
        // The delay was neither reset nor grown by the ERROR: the next failure sleeps
        // 20 ms (10 ms was slept after attempt 1).
        let after = r.attempt_failed().unwrap();
        assert_eq!((after.server, after.delay), (0, ms(20)));
        // An ERROR loop never gives up, whatever `max_attempts`.
        for _ in 0..20 {
            assert_eq!(r.attempt_refused().unwrap().delay, Duration::ZERO);
        }
    }

    #[test]
    fn stomp_gem_connread_timeout_changes_host_twice() {
        // Two hosts: the gem retries the host whose CONNECTED never came.
        let mut r = gem(2);
        let first = r.first_attempt();
        assert_eq!(first.server, 0);
        let next = r.connect_read_timed_out().unwrap();
        assert_eq!((next.server, next.delay), (0, ms(10)));
        // Three hosts: it skips one.
        let mut r = gem(3);
        let _ = r.first_attempt();
        let next = r.connect_read_timed_out().unwrap();
        assert_eq!((next.server, next.delay), (2, ms(10)));
        // Other policies: a failed attempt.
        let mut a = amq(2, amq_ordered());
        let mut b = amq(2, amq_ordered());
        let _ = a.first_attempt();
        let _ = b.first_attempt();
        assert_eq!(a.connect_read_timed_out(), b.attempt_failed());
    }

    #[test]
    fn activemq_and_jittered_count_an_error_answer_as_a_failed_attempt() {
        let mut a = amq(2, amq_ordered());
        let mut b = amq(2, amq_ordered());
        let _ = a.first_attempt();
        let _ = b.first_attempt();
        for _ in 0..5 {
            assert_eq!(a.attempt_refused(), b.attempt_failed());
        }
        let mut a = jittered(2, 9);
        let mut b = jittered(2, 9);
        let _ = a.first_attempt();
        let _ = b.first_attempt();
        for _ in 0..5 {
            assert_eq!(a.attempt_refused(), b.attempt_failed());
        }
    }

    #[test]
    fn connread_timeout_defaults_per_policy() {
        assert_eq!(
            ReconnectConfig::stomp_gem().connread_timeout,
            ConnreadTimeout::Separate(None)
        );
        for kind in [PolicyKind::ActiveMq, PolicyKind::Jittered] {
            assert_eq!(
                ReconnectConfig::defaults_for(kind).connread_timeout,
                ConnreadTimeout::WithinConnectTimeout
            );
        }
    }

    #[test]
    fn activemq_max_attempts_counts_passes() {
        for (max, passes) in [(0, 1), (1, 1), (2, 2), (3, 3)] {
            let cfg = ReconnectConfig {
                max_attempts: Some(max),
                ..amq_ordered()
            };
            let mut r = amq(2, cfg);
            let _ = r.first_attempt();
            let mut attempts = 1;
            let gave_up = loop {
                match r.attempt_failed() {
                    Ok(_) => attempts += 1,
                    Err(g) => break g,
                }
            };
            assert_eq!(attempts, 2 * passes, "maxReconnectAttempts={max}");
            assert_eq!(gave_up.total_attempts(), 2 * passes);
            let tried: Vec<(usize, u32)> = gave_up
                .tried
                .iter()
                .map(|t| (t.index, t.attempts))
                .collect();
            assert_eq!(tried, [(0, passes), (1, passes)]);
        }
    }

    #[test]
    fn activemq_zero_attempts_means_no_reconnect_after_loss() {
        let cfg = ReconnectConfig {
            max_attempts: Some(0),
            ..amq_ordered()
        };
        let mut r = amq(2, cfg);
        let _ = r.first_attempt();
        r.connected();
        let gave_up = r.connection_lost(secs(5)).unwrap_err();
        assert!(gave_up.tried.is_empty());
        assert!(gave_up.to_string().contains("without trying"), "{gave_up}");
    }

    #[test]
    fn activemq_startup_limit_applies_only_before_first_success() {
        let cfg = ReconnectConfig {
            max_attempts: None,
            startup_max_attempts: Some(2),
            ..amq_ordered()
        };
        let mut r = amq(1, cfg.clone());
        let _ = r.first_attempt();
        r.attempt_failed().unwrap();
        assert!(r.attempt_failed().is_err());

        let mut r = amq(1, cfg);
        let _ = r.first_attempt();
        r.connected();
        let _ = r.connection_lost(secs(1)).unwrap();
        for _ in 0..50 {
            r.attempt_failed()
                .expect("max_attempts None is forever once connected");
        }
    }

    #[test]
    fn activemq_reset_quirk_pins_delay_at_initial_when_it_reaches_10ms() {
        let cfg = ReconnectConfig {
            initial_delay: ms(5),
            ..amq_ordered()
        };
        let mut r = amq(1, cfg);
        let first = r.first_attempt();
        let d: Vec<Duration> = fail_all(&mut r, first, 6).iter().map(|a| a.delay).collect();
        assert_eq!(d, [ms(0), ms(5), ms(5), ms(5), ms(5), ms(5)]);
    }

    #[test]
    fn activemq_fractional_multiplier_truncates_to_millis() {
        let cfg = ReconnectConfig {
            initial_delay: ms(15),
            multiplier: BackoffMultiplier::new(1.5).unwrap(),
            ..amq_ordered()
        };
        let mut r = amq(1, cfg);
        let first = r.first_attempt();
        let d: Vec<Duration> = fail_all(&mut r, first, 5).iter().map(|a| a.delay).collect();
        // 15, 22 (22.5 truncated), 33, 49 (49.5 truncated).
        assert_eq!(d, [ms(0), ms(15), ms(22), ms(33), ms(49)]);
    }

    #[test]
    fn activemq_skips_duplicate_servers() {
        let list = ServerList::new(vec![
            ServerAddr::new("a", 1),
            ServerAddr::new("a", 1),
            ServerAddr::new("b", 1),
        ])
        .unwrap();
        let mut r = Reconnector::new(PolicyKind::ActiveMq, amq_ordered(), list, 1);
        let first = r.first_attempt();
        let hosts: Vec<usize> = fail_all(&mut r, first, 4)
            .iter()
            .map(|a| a.server)
            .collect();
        assert_eq!(hosts, [0, 2, 0, 2]);
    }

    #[test]
    fn activemq_randomize_shuffles_each_pass_reproducibly() {
        let run = |seed: u64| {
            let mut r = Reconnector::new(
                PolicyKind::ActiveMq,
                ReconnectConfig::activemq(),
                servers(4),
                seed,
            );
            let first = r.first_attempt();
            fail_all(&mut r, first, 16)
                .iter()
                .map(|a| a.server)
                .collect::<Vec<_>>()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        // Every pass is a permutation of all servers.
        for pass in a.chunks(4) {
            let mut p = pass.to_vec();
            p.sort_unstable();
            assert_eq!(p, [0, 1, 2, 3]);
        }
        let distinct: std::collections::BTreeSet<Vec<usize>> = (0..8).map(run).collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn activemq_puts_lost_server_last_even_when_randomizing() {
        for seed in 0..20 {
            let mut r = Reconnector::new(
                PolicyKind::ActiveMq,
                ReconnectConfig::activemq(),
                servers(3),
                seed,
            );
            let _ = r.first_attempt();
            let lost = r.connected();
            let first = r.connection_lost(secs(1)).unwrap();
            let pass = fail_all(&mut r, first, 3);
            assert_eq!(pass[2].server, lost, "seed {seed}");
        }
    }

    fn jittered(n: usize, seed: u64) -> Reconnector {
        Reconnector::new(
            PolicyKind::Jittered,
            ReconnectConfig::jittered(),
            servers(n),
            seed,
        )
    }

    #[test]
    fn jittered_delays_stay_within_windows() {
        for seed in 0..50 {
            let mut r = jittered(3, seed);
            let first = r.first_attempt();
            assert!(first.delay <= secs(1));
            let attempts = fail_all(&mut r, first, 12);
            for (k, a) in attempts.iter().enumerate() {
                let window = secs(1u64 << k.min(5)).min(secs(30));
                assert!(
                    a.delay <= window,
                    "seed {seed} attempt {k}: {:?} > {window:?}",
                    a.delay
                );
            }
            // Rounds visit every server and never repeat one back to back.
            for w in attempts.windows(2) {
                assert_ne!(w[0].server, w[1].server, "seed {seed}");
            }
        }
    }

    #[test]
    fn jittered_delays_are_not_all_tiny() {
        // With full jitter the mean delay is half the window; catch a broken draw.
        let mut total = Duration::ZERO;
        for seed in 0..200 {
            let mut r = jittered(2, seed);
            let first = r.first_attempt();
            let a = fail_all(&mut r, first, 8);
            total += a[7].delay;
        }
        let mean = total / 200;
        assert!(mean > secs(10) && mean < secs(20), "mean {mean:?}");
    }

    #[test]
    fn jittered_resets_after_stable_connection_only() {
        let mut r = jittered(2, 5);
        let first = r.first_attempt();
        let _ = fail_all(&mut r, first, 10);
        r.connected();
        // Up long enough: back to the 1 s window.
        for _ in 0..20 {
            let a = r.connection_lost(secs(31)).unwrap();
            assert!(a.delay <= secs(1));
            r.connected();
        }
        // Flapping: each short-lived connection widens the window.
        let mut widest = Duration::ZERO;
        for _ in 0..20 {
            let a = r.connection_lost(secs(1)).unwrap();
            widest = widest.max(a.delay);
            r.connected();
        }
        assert!(
            widest > secs(2),
            "flapping should back off, widest {widest:?}"
        );
    }

    #[test]
    fn jittered_is_deterministic_per_seed() {
        let run = |seed: u64| {
            let mut r = jittered(4, seed);
            let first = r.first_attempt();
            fail_all(&mut r, first, 10)
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    fn jittered_gives_up_like_the_gem() {
        let cfg = ReconnectConfig {
            max_attempts: Some(3),
            ..ReconnectConfig::jittered()
        };
        let mut r = Reconnector::new(PolicyKind::Jittered, cfg, servers(2), 1);
        let _ = r.first_attempt();
        for _ in 0..3 {
            r.attempt_failed().unwrap();
        }
        let g = r.attempt_failed().unwrap_err();
        assert_eq!(g.total_attempts(), 4);
    }

    #[test]
    fn jittered_without_randomize_goes_round_robin_from_the_failed_host() {
        let cfg = ReconnectConfig {
            randomize: false,
            ..ReconnectConfig::jittered()
        };
        let mut r = Reconnector::new(PolicyKind::Jittered, cfg, servers(3), 1);
        let first = r.first_attempt();
        let hosts: Vec<usize> = fail_all(&mut r, first, 7)
            .iter()
            .map(|a| a.server)
            .collect();
        assert_eq!(hosts, [0, 1, 2, 0, 1, 2, 0]);
        r.connected();
        assert_eq!(r.connection_lost(secs(60)).unwrap().server, 1);
    }

    #[test]
    fn jittered_spreads_800_clients_over_time_and_hosts() {
        let n_clients = 800;
        let mut buckets = std::collections::BTreeMap::<u128, usize>::new();
        let mut per_host = [0usize; 3];
        for seed in 0..n_clients {
            let mut r = jittered(3, seed);
            let _ = r.first_attempt();
            // Every client ends up on broker 0, which then dies.
            r.current = 0;
            r.connected();
            let a = r.connection_lost(secs(3600)).unwrap();
            *buckets.entry(a.delay.as_millis() / 10).or_default() += 1;
            per_host[a.server] += 1;
        }
        let fullest = buckets.values().copied().max().unwrap_or(0);
        // Uniform over 1 s is 8 per 10 ms bucket; allow random clumping up to 4 %.
        assert!(
            fullest <= n_clients as usize / 25,
            "fullest 10 ms bucket holds {fullest}"
        );
        assert!(buckets.len() >= 90, "only {} buckets used", buckets.len());
        assert_eq!(per_host[0], 0, "nobody reconnects to the dead broker first");
        assert!(per_host[1] > 300 && per_host[2] > 300, "{per_host:?}");
    }

    #[test]
    fn stomp_gem_herds_800_clients_onto_one_host_at_once() {
        // The contrast the jittered policy exists for.
        let mut buckets = std::collections::BTreeSet::new();
        let mut hosts = std::collections::BTreeSet::new();
        for seed in 0..800 {
            let mut r = Reconnector::new(
                PolicyKind::StompGem,
                ReconnectConfig::stomp_gem(),
                servers(3),
                seed,
            );
            let _ = r.first_attempt();
            r.connected();
            let a = r.connection_lost(secs(3600)).unwrap();
            buckets.insert(a.delay.as_millis() / 10);
            hosts.insert(a.server);
        }
        assert_eq!(buckets.len(), 1);
        assert_eq!(hosts.len(), 1);
    }

    #[test]
    fn misuse_is_total() {
        let mut r = gem(2);
        // Before first_attempt, a failure report starts the client.
        let a = r.attempt_failed().unwrap();
        assert_eq!((a.server, a.number), (0, 1));
        r.connected();
        // A failure report while connected counts as a loss.
        let b = r.attempt_failed().unwrap();
        assert_eq!((b.server, b.delay), (1, Duration::ZERO));
        // A loss report while connecting counts as a failed attempt.
        let c = r.connection_lost(secs(1)).unwrap();
        assert_eq!((c.server, c.number), (0, 2));
        assert!(!r.is_connected());
        r.connected();
        assert!(r.is_connected());
        assert_eq!(r.current_server(), 0);
    }

    #[test]
    fn first_attempt_restarts_from_scratch() {
        let mut r = gem(2);
        let first = r.first_attempt();
        let _ = fail_all(&mut r, first, 15);
        let again = r.first_attempt();
        assert_eq!((again.server, again.number), (0, 1));
        assert_eq!(r.attempt_failed().unwrap().delay, ms(10));
    }

    #[test]
    fn multiplier_validation_and_scaling() {
        assert!(BackoffMultiplier::new(0.5).is_none());
        assert!(BackoffMultiplier::new(f64::NAN).is_none());
        assert!(BackoffMultiplier::new(f64::INFINITY).is_none());
        assert_eq!(
            BackoffMultiplier::new(1.0).map(BackoffMultiplier::get),
            Some(1.0)
        );
        assert_eq!(scale(ms(10), BackoffMultiplier::TWO), ms(20));
        assert_eq!(scale(Duration::MAX, BackoffMultiplier::TWO), Duration::MAX);
        let m = BackoffMultiplier::new(1e300).unwrap();
        assert_eq!(scale(secs(1), m), Duration::MAX);
        assert_eq!(scale(ms(10), BackoffMultiplier::new(1.5).unwrap()), ms(15));
    }

    #[test]
    fn defaults_per_policy() {
        assert!(!ReconnectConfig::defaults_for(PolicyKind::StompGem).randomize);
        assert!(ReconnectConfig::defaults_for(PolicyKind::ActiveMq).randomize);
        assert_eq!(
            ReconnectConfig::defaults_for(PolicyKind::Jittered).initial_delay,
            secs(1)
        );
        assert_eq!(ReconnectConfig::stomp_gem().initial_delay, ms(10));
        assert_eq!(ReconnectConfig::stomp_gem().max_delay, secs(30));
    }
}
