//! The real ruby stomp gem 1.4.10 (Debian `ruby-stomp`, configured as MCollective 2.12
//! configures it) and Stampede's `StompGem` policy, taken through the same two outages of
//! real `stampede-broker` processes, must try the same hosts with the same delays.
//!
//! Outage 1: the gem and our client are connected to A; B then A are killed; B comes back
//! on its port about 4.3 s later. Outage 2: B is killed again; A comes back about 3 s
//! later. With `max_reconnect_delay = 2.0` the schedule after the first drop is: B at once,
//! then A, B, … after 0.01, 0.02, … 1.28, 2.0, 2.0 s; after the second drop A at once, then
//! 2.0 s (the delay is never reset). The restarts fall about 2 s from any attempt, so real
//! time jitter cannot change the number of attempts.
//!
//! Three timelines are compared attempt by attempt: the gem's (its `:logger` callbacks,
//! monotonic timestamps), a `Reconnector` fed the gem's outcomes (hosts exactly; the gem's
//! measured waits no shorter than the policy's delays and at most 30 ms + 10 % longer), and
//! our async client's (same hosts and outcomes, the same delays, wall-clock sleeps that are
//! plausible on a loaded machine; its exact sleeping is tested under paused time in
//! `client_driver.rs`).
//!
//! Needs `/usr/bin/ruby` with `ruby-stomp` (`scripts/install-test-deps`); fails otherwise.

// These tests drive real broker processes and the real ruby gem in real time; the gem's
// and the client's event streams are read on helper threads.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Broker;
use stampede_broker::client::{
    Client, ClientConfig, ClientEvent, ConnreadTimeout, DisconnectReason, PolicyKind,
    ReconnectConfig, Reconnector, ServerAddr, ServerList,
};
use stampede_broker::net::TokioNet;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/stomp_gem_timeline.rb"
);
/// Bound on anything that must happen.
const WAIT: Duration = Duration::from_secs(60);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// From the first kill to B's restart, and from the second kill to A's restart.
const OUTAGE_1: Duration = Duration::from_millis(4_300);
const OUTAGE_2: Duration = Duration::from_millis(3_000);

// ------------------------------------------------------------------ a little JSON

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing text at {}", p.i));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(key),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn num(&self, key: &str) -> Option<f64> {
        match self.get(key) {
            Some(Json::Num(n)) => Some(*n),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at {}", b as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value()?;
                    m.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(format!("bad object at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return Err(format!("bad array at {}", self.i)),
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad number at {start}"))
            }
            None => Err("unexpected end".into()),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i).ok_or("unterminated string")?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("bad escape")?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.s[self.i..self.i + 4])
                                .map_err(|e| e.to_string())?;
                            self.i += 4;
                            let c = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            let c = char::from_u32(c).unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

#[test]
fn json_reader_reads_what_the_script_writes() {
    let v = Json::parse(
        r#"{"event":"connecting","host":"127.0.0.1","port":26001,"t":0.5e-3,"ok":true,
            "info":"a \"q\"\n\u00e9","entries":[{"x":null},[]]}"#,
    )
    .unwrap();
    assert_eq!(v.str("event"), Some("connecting"));
    assert_eq!(v.num("port"), Some(26001.0));
    assert_eq!(v.num("t"), Some(0.0005));
    assert_eq!(v.str("info"), Some("a \"q\"\né"));
    assert!(matches!(v.get("entries"), Some(Json::Arr(a)) if a.len() == 2));
    assert!(Json::parse("{\"a\":1} x").is_err());
}

// ------------------------------------------------------------------ the gem process

/// The ruby script, killed on drop; its stdout lines arrive on `lines` as they are written.
struct Gem {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Gem {
    /// Runs the script until the gem has connected `reconnections` times after its first
    /// connection.
    fn start(ports: [u16; 2], reconnections: u32) -> Gem {
        Self::start_with(ports, reconnections, &["--connect-timeout", "5"])
    }

    /// [`start`](Self::start) with other timeout options.
    fn start_with(ports: [u16; 2], reconnections: u32, timeouts: &[&str]) -> Gem {
        let hosts = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
        let mut child = Command::new("/usr/bin/ruby")
            .arg(SCRIPT)
            .args(["--hosts", &hosts])
            .args(["--reconnections", &reconnections.to_string()])
            .args(["--initial-delay", "0.01"])
            .args(["--max-delay", &MAX_DELAY.as_secs_f64().to_string()])
            .args(timeouts)
            .args(["--timeout", "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run /usr/bin/ruby {SCRIPT}: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            if let Ok(mut s) = sink.lock() {
                *s = text;
            }
        });
        Gem {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for the first output line (after those already seen) that `pred` accepts.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("{}", self.failure(&format!("output ended before {what}"))),
                Err(_) => panic!("{}", self.failure(&format!("timed out waiting for {what}"))),
            };
            self.seen.push(line.clone());
            let v = Json::parse(&line)
                .unwrap_or_else(|e| panic!("{}", self.failure(&format!("bad JSON ({e}): {line}"))));
            if pred(&v) {
                return v;
            }
        }
    }

    /// The next output line within `within`, if any.
    async fn next_within(&mut self, within: Duration) -> Option<Json> {
        let line = timeout(within, self.lines.recv()).await.ok().flatten()?;
        self.seen.push(line.clone());
        Some(Json::parse(&line).unwrap_or_else(|e| panic!("bad JSON ({e}): {line}")))
    }

    fn failure(&mut self, why: &str) -> String {
        let status = self.child.try_wait().ok().flatten();
        std::thread::sleep(Duration::from_millis(200));
        format!(
            "stomp gem script: {why} (exit status {status:?})\n--- stdout so far ---\n{}\n--- stderr ---\n{}",
            self.seen.join("\n"),
            self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
        )
    }
}

impl Drop for Gem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ brokers and ports

/// A port below Linux's ephemeral range (so a connect to it while it is closed can never be
/// a TCP self-connect) that is free now.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 600) as u16 * 20 + 7_919;
    (0..12_000u16)
        .map(|_| 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 20000..32000")
}

async fn start_broker(label: &'static str, port: u16) -> Broker {
    let config = format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\n");
    let b = tokio::task::spawn_blocking(move || Broker::start_with_config(label, &config))
        .await
        .unwrap();
    assert_eq!(b.addr().port(), port);
    b
}

async fn kill(b: Broker) {
    let addr = b.addr();
    tokio::task::spawn_blocking(move || drop(b)).await.unwrap();
    assert!(
        matches!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        ),
        "the broker on {addr} is gone"
    );
}

// ------------------------------------------------------------------ timelines

/// One connection attempt as the comparison sees it.
#[derive(Debug, Clone)]
struct Try {
    server: usize,
    /// The wait before it: for the gem, measured (from the previous failure or the drop);
    /// for our client, the policy's delay from its `Attempt` event.
    delay: f64,
    /// For our client: measured time from its `Attempt` event to the outcome.
    slept: Option<f64>,
    connected: bool,
}

/// The gem's attempts from its logger entries.
fn gem_tries(entries: &[Json], ports: [u16; 2]) -> Vec<Try> {
    let mut tries: Vec<Try> = Vec::new();
    let mut mark: Option<f64> = None;
    for e in entries {
        let t = e.num("t").expect("t");
        match e.str("event").expect("event") {
            "connecting" => {
                let port = e.num("port").expect("port") as u16;
                let server = ports
                    .iter()
                    .position(|p| *p == port)
                    .unwrap_or_else(|| panic!("unknown port {port}"));
                tries.push(Try {
                    server,
                    delay: mark.map_or(0.0, |m| t - m),
                    slept: None,
                    connected: false,
                });
            }
            "connected" => {
                tries.last_mut().expect("an attempt").connected = true;
                mark = None;
            }
            "connectfail" | "miscerr" => mark = Some(t),
            other => panic!("unexpected gem event {other}"),
        }
    }
    tries
}

/// Our client's attempts from its timestamped events.
fn client_tries(events: &[(Instant, ClientEvent)]) -> Vec<Try> {
    let mut tries: Vec<Try> = Vec::new();
    let mut started: Option<Instant> = None;
    for (t, e) in events {
        match e {
            ClientEvent::Attempt { server, delay, .. } => {
                tries.push(Try {
                    server: *server,
                    delay: delay.as_secs_f64(),
                    slept: None,
                    connected: false,
                });
                started = Some(*t);
            }
            ClientEvent::Connected { .. } | ClientEvent::Disconnected { .. } => {
                if let (Some(s), Some(last)) = (started.take(), tries.last_mut()) {
                    last.slept = Some((*t - s).as_secs_f64());
                    last.connected = matches!(e, ClientEvent::Connected { .. });
                }
            }
            _ => {}
        }
    }
    tries
}

/// A measured wait against the policy's: a sleep never ends early (1 ms for timer and clock
/// granularity), and may end up to 30 ms + 10 % late on a busy machine.
fn close_enough(measured: f64, expected: f64) -> bool {
    measured >= expected - 0.001 && measured <= expected + 0.030 + 0.10 * expected
}

/// Our client's wall-clock sleep, observed through its event channel by another task: the
/// paused-time tests in `client_driver.rs` check its sleeps exactly, so here it only has to
/// be plausible on a loaded 2-core machine.
fn plausible_sleep(measured: f64, expected: f64) -> bool {
    measured >= expected - 0.001 && measured <= expected + 0.250 + 0.10 * expected
}

fn policy_config() -> ReconnectConfig {
    ReconnectConfig {
        initial_delay: Duration::from_millis(10),
        max_delay: MAX_DELAY,
        exponential: true,
        max_attempts: None,
        randomize: false,
        connect_timeout: Some(Duration::from_secs(5)),
        ..ReconnectConfig::stomp_gem()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stomp_gem_and_our_policy_reconnect_alike_through_two_outages() {
    common::require_ruby_stomp();
    let ports = [free_port(), free_port()];
    assert_ne!(ports[0], ports[1]);
    let a = start_broker("gem-tl-a", ports[0]).await;
    let b = start_broker("gem-tl-b", ports[1]).await;

    let mut gem = Gem::start(ports, 2);
    gem.wait_for("the first connection", |v| v.str("event") == Some("ready"))
        .await;

    // Our client, configured the same, recording its events with arrival times.
    let servers = ServerList::new(
        ports
            .iter()
            .map(|p| ServerAddr::new("127.0.0.1", *p))
            .collect(),
    )
    .unwrap();
    let mut cfg = ClientConfig::new(servers.clone(), PolicyKind::StompGem);
    cfg.reconnect = policy_config();
    cfg.accept_version = None;
    cfg.heart_beat_ms = (0, 0);
    cfg.events_buffered_max = 1024;
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = streams.events.recv().await {
            let _ = ev_tx.send((Instant::now(), e));
        }
    });
    let mut ours: Vec<(Instant, ClientEvent)> = Vec::new();
    let mut wait_ours = async |ours: &mut Vec<(Instant, ClientEvent)>, want: ClientEvent| {
        loop {
            let got = timeout(WAIT, ev_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("our client: no {want:?}; seen {ours:?}"))
                .expect("events");
            let done = got.1 == want;
            ours.push(got);
            if done {
                return;
            }
        }
    };
    wait_ours(&mut ours, ClientEvent::Connected { server: 0 }).await;

    // Outage 1: both down (B first, so that nobody fails over to it), B back later.
    kill(b).await;
    let down = Instant::now();
    kill(a).await;
    sleep_until(down + OUTAGE_1).await;
    let b = start_broker("gem-tl-b2", ports[1]).await;
    gem.wait_for("the reconnection to B", |v| {
        v.str("event") == Some("connected") && v.num("port") == Some(f64::from(ports[1]))
    })
    .await;
    wait_ours(&mut ours, ClientEvent::Failover { from: 0, to: 1 }).await;

    // Outage 2: B down with A still down; A back later.
    let down = Instant::now();
    kill(b).await;
    sleep_until(down + OUTAGE_2).await;
    let a = start_broker("gem-tl-a2", ports[0]).await;
    let timeline = gem
        .wait_for("the timeline", |v| v.str("event") == Some("timeline"))
        .await;
    wait_ours(&mut ours, ClientEvent::Failover { from: 1, to: 0 }).await;
    client.disconnect().await;
    drop(a);

    let Some(Json::Arr(entries)) = timeline.get("entries") else {
        panic!("no entries in {timeline:?}")
    };
    let gem = gem_tries(entries, ports);
    let client = client_tries(&ours);

    // The policy, fed the gem's outcomes.
    let mut r = Reconnector::new(PolicyKind::StompGem, policy_config(), servers, 0);
    let mut policy = vec![r.first_attempt()];
    for t in &gem[..gem.len() - 1] {
        policy.push(if t.connected {
            r.connected();
            r.connection_lost(Duration::from_secs(1)).unwrap()
        } else {
            r.attempt_failed().unwrap()
        });
    }

    let mut table = String::from(
        "  #  gem host  gem delay   policy host  policy delay   client host  client slept\n",
    );
    for (i, g) in gem.iter().enumerate() {
        let p = policy[i];
        let c = client.get(i);
        table.push_str(&format!(
            "{:>3}  {:>8}  {:>8.4} s   {:>11}  {:>9.3} s    {:>11}  {:>9}{}\n",
            i + 1,
            ["A", "B"][g.server],
            g.delay,
            ["A", "B"][p.server],
            p.delay.as_secs_f64(),
            c.map_or("-".into(), |c| ["A", "B"][c.server].to_owned()),
            c.and_then(|c| c.slept)
                .map_or("-".into(), |s| format!("{s:.4} s")),
            if g.connected { "  connected" } else { "" },
        ));
    }
    eprintln!("stomp gem vs StompGem policy vs our client:\n{table}");

    // 1 + (B, A, B, … 11 attempts) + (A, B, A: 3 attempts); the gem defines the truth.
    assert!(gem.len() >= 10, "too few gem attempts:\n{table}");
    assert_eq!(
        gem.iter().filter(|t| t.connected).count(),
        3,
        "the gem connected three times:\n{table}"
    );
    for (i, (g, p)) in gem.iter().zip(&policy).enumerate() {
        assert_eq!(
            g.server,
            p.server,
            "attempt {}: host differs\n{table}",
            i + 1
        );
        assert!(
            close_enough(g.delay, p.delay.as_secs_f64()),
            "attempt {}: the gem waited {:.4} s, the policy says {:?}\n{table}",
            i + 1,
            g.delay,
            p.delay
        );
    }
    // Our client went through the same outages the same way.
    assert_eq!(
        client
            .iter()
            .map(|c| (c.server, c.connected))
            .collect::<Vec<_>>(),
        gem.iter()
            .map(|g| (g.server, g.connected))
            .collect::<Vec<_>>(),
        "our client's attempts differ from the gem's\n{table}"
    );
    for (i, c) in client.iter().enumerate() {
        let slept = c.slept.expect("every attempt has an outcome");
        assert!(
            plausible_sleep(slept, c.delay) && close_enough(gem[i].delay, c.delay),
            "attempt {}: our client's delay {:.4} s, slept {slept:.4} s, gem {:.4} s\n{table}",
            i + 1,
            c.delay,
            gem[i].delay
        );
    }
    // The drops were seen as such.
    let drops: Vec<&DisconnectReason> = ours
        .iter()
        .filter_map(|(_, e)| match e {
            ClientEvent::Disconnected { reason } => Some(reason),
            _ => None,
        })
        .filter(|r| !matches!(r, DisconnectReason::ConnectFailed(_)))
        .collect();
    assert_eq!(drops.len(), 2, "{drops:?}");
    assert!(
        drops
            .iter()
            .all(|r| matches!(r, DisconnectReason::Eof | DisconnectReason::Io(_))),
        "{drops:?}"
    );
}

/// An ERROR answer to CONNECT is a connection to the gem: `Connection#connect` does not
/// raise on ERROR, so `socket()` logs `on_connected` and resets `@connection_attempts`;
/// the broker then closes, `receive` sees EOF and the gem takes the *drop* path: the next
/// host at once, no sleep. Its backoff grows only on TCP-level failures, so with every
/// broker refusing the credentials it would reconnect in a tight loop (MCollective's
/// runner adds its own backoff, protocols notes §3.6). Our `StompGem` policy does the same
/// (`Reconnector::attempt_refused`): same hosts, same delays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stomp_gem_and_our_policy_take_an_error_answer_to_connect_for_a_connection() {
    common::require_ruby_stomp();
    // A rejects the gem's empty login with ERROR; nothing listens on B.
    let a =
        tokio::task::spawn_blocking(|| Broker::start_with_config("gem-err-a", common::AUTH_CONFIG))
            .await
            .unwrap();
    let ports = [a.addr().port(), free_port()];
    let mut gem = Gem::start(ports, 2);
    let timeline = gem
        .wait_for("the timeline", |v| v.str("event") == Some("timeline"))
        .await;
    let Some(Json::Arr(entries)) = timeline.get("entries") else {
        panic!("no entries in {timeline:?}")
    };
    // The first seven entries; the gem goes on reconnecting while the script prints.
    let kinds: Vec<(String, usize)> = entries
        .iter()
        .take(7)
        .map(|e| {
            let port = e.num("port").unwrap_or(0.0) as u16;
            let server = ports.iter().position(|p| *p == port).unwrap_or(9);
            (e.str("event").unwrap_or("?").to_owned(), server)
        })
        .collect();
    let k = |e: &str, s: usize| (e.to_owned(), s);
    assert_eq!(
        kinds,
        [
            k("connecting", 0),
            k("connected", 0), // the ERROR answer, logged as a connection
            k("miscerr", 0),   // EOF: the broker closed after its ERROR
            k("connecting", 1),
            k("connectfail", 1),
            k("connecting", 0),
            k("connected", 0),
        ],
        "{entries:?}"
    );
    let gem_tries: Vec<Try> = gem_tries(entries, ports).into_iter().take(5).collect();
    assert_eq!(gem_tries.len(), 5, "{entries:?}");
    drop(gem);

    // Our client on the same pair.
    let servers = ServerList::new(
        ports
            .iter()
            .map(|p| ServerAddr::new("127.0.0.1", *p))
            .collect(),
    )
    .unwrap();
    let mut cfg = ClientConfig::new(servers, PolicyKind::StompGem);
    cfg.reconnect = policy_config();
    cfg.accept_version = None;
    cfg.heart_beat_ms = (0, 0);
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.push(
            timeout(WAIT, streams.events.recv())
                .await
                .expect("an event")
                .expect("events"),
        );
    }
    client.disconnect().await;
    for i in [1, 5] {
        assert!(
            matches!(
                &seen[i],
                ClientEvent::Disconnected {
                    reason: DisconnectReason::ErrorFrame(_)
                }
            ),
            "{seen:?}"
        );
    }
    let ours: Vec<(usize, Duration)> = seen
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Attempt { server, delay, .. } => Some((*server, *delay)),
            _ => None,
        })
        .collect();
    // A; B at once after the ERROR; A 10 ms after B's refusal; again B at once, A 20 ms.
    let ms = Duration::from_millis;
    assert_eq!(
        ours,
        [(0, ms(0)), (1, ms(0)), (0, ms(10)), (1, ms(0)), (0, ms(20))],
        "{seen:?}"
    );
    for (gem, (server, delay)) in gem_tries.iter().zip(&ours) {
        assert_eq!(gem.server, *server, "{gem_tries:?} vs {ours:?}");
        assert!(
            close_enough(gem.delay, delay.as_secs_f64()),
            "{gem_tries:?} vs {ours:?}"
        );
    }
    drop(a);
}

/// A "broker" that accepts TCP connections and never answers: it keeps every socket open
/// and reads nothing. Runs until the test process ends.
fn silent_listener() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
    });
    port
}

/// Our `StompGem` client's first `n` events on `ports` with the gem's settings and `cfg`
/// changes, or fewer if nothing more happens within `quiet`.
async fn our_events(
    ports: [u16; 2],
    change: impl FnOnce(&mut ReconnectConfig),
    n: usize,
    quiet: Duration,
) -> Vec<ClientEvent> {
    let servers = ServerList::new(
        ports
            .iter()
            .map(|p| ServerAddr::new("127.0.0.1", *p))
            .collect(),
    )
    .unwrap();
    let mut cfg = ClientConfig::new(servers, PolicyKind::StompGem);
    cfg.reconnect = policy_config();
    change(&mut cfg.reconnect);
    cfg.accept_version = None;
    cfg.heart_beat_ms = (0, 0);
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    let mut seen = Vec::new();
    while seen.len() < n {
        match timeout(quiet, streams.events.recv()).await {
            Ok(Some(e)) => seen.push(e),
            _ => break,
        }
    }
    drop(client);
    seen
}

/// A broker that accepts TCP and never answers CONNECT. The gem's `connect_timeout` bounds
/// only the TCP open and MCollective sets no `connread_timeout`, so the gem waits on it for
/// ever (past a 1 s `connect_timeout`); our policy's default does the same. With
/// `connread_timeout = 1` the gem gives up reading after 1 s and, changing host twice
/// (`_reconn_prep`, then `socket()`), tries the same host again after 0.01, 0.02 s …;
/// our client with `ConnreadTimeout::Separate(1 s)` tries the same hosts after the same
/// delays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stomp_gem_and_our_policy_wait_on_a_broker_that_never_answers_connect() {
    common::require_ruby_stomp();
    let ports = [silent_listener(), free_port()];
    let quiet = Duration::from_secs(3);

    // MCollective's settings: one attempt on A, then nothing, for the gem and for us.
    let mut gem = Gem::start_with(ports, 1, &["--connect-timeout", "1"]);
    let first = gem
        .wait_for("the first attempt", |v| {
            v.str("event") == Some("connecting")
        })
        .await;
    assert_eq!(first.num("port"), Some(f64::from(ports[0])));
    let next = gem.next_within(quiet).await;
    assert_eq!(next, None, "the gem moved on: {:?}", gem.seen);
    drop(gem);
    let ours = our_events(
        ports,
        |r| r.connect_timeout = Some(Duration::from_secs(1)),
        4,
        quiet,
    )
    .await;
    assert_eq!(
        ours,
        [ClientEvent::Attempt {
            server: 0,
            number: 1,
            delay: Duration::ZERO
        }],
        "our client moved on"
    );

    // With `connread_timeout = 1`.
    let mut gem = Gem::start_with(
        ports,
        1,
        &["--connect-timeout", "1", "--connread-timeout", "1"],
    );
    let mut entries = Vec::new();
    while entries
        .iter()
        .filter(|e: &&Json| e.str("event") == Some("connecting"))
        .count()
        < 4
    {
        entries.push(
            gem.wait_for("an attempt or a failure", |v| {
                matches!(v.str("event"), Some("connecting" | "connectfail"))
            })
            .await,
        );
    }
    drop(gem);
    let gem_tries = gem_tries(&entries, ports);
    let ours = our_events(
        ports,
        |r| {
            r.connect_timeout = Some(Duration::from_secs(1));
            r.connread_timeout = ConnreadTimeout::Separate(Some(Duration::from_secs(1)));
        },
        8,
        quiet,
    )
    .await;
    let ours: Vec<(usize, Duration)> = ours
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Attempt { server, delay, .. } => Some((*server, *delay)),
            ClientEvent::Disconnected { reason } => {
                assert_eq!(reason, &DisconnectReason::ConnectTimeout);
                None
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let ms = Duration::from_millis;
    assert_eq!(ours, [(0, ms(0)), (0, ms(10)), (0, ms(20)), (0, ms(40))]);
    assert_eq!(gem_tries.len(), 4, "{entries:?}");
    for (gem, (server, delay)) in gem_tries.iter().zip(&ours) {
        assert_eq!(gem.server, *server, "{gem_tries:?} vs {ours:?}");
        assert!(
            close_enough(gem.delay, delay.as_secs_f64()),
            "{gem_tries:?} vs {ours:?}"
        );
    }
}
