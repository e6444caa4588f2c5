//! `stampede calibrate`: fits a broker's [`CostProfile`] (nanoseconds of CPU per operation
//! kind) from live runs against it.
//!
//! Calibration drives a fixed set of short live workloads ([`workloads`]: MCollective
//! fan-out 1 → 800 at five rates (1 to 60 broadcasts/s), queue 1 → 1 with 20 B and 1 KiB bodies, queue
//! 10 → 10, directed request/reply at three rates, light and heavy, idle connections
//! with and without 1 s heart-beats), each through the live load mode's machinery ([`crate::live::run_on`]).
//! Around each run it reads
//!
//! - the broker's **CPU time**: `utime + stime` of `/proc/PID/stat` ([`CpuSource::Pid`];
//!   the pid given, or the process listening on the target's port found through
//!   `/proc/net/tcp{,6}` and `/proc/*/fd`), or the seconds a user command prints
//!   ([`CpuSource::Command`], for brokers on other machines);
//! - the **work** the run caused ([`Work`]): from the broker's own `stampede_work_*_total`
//!   counters on its Prometheus endpoint when the target is stampede-broker and `--metrics`
//!   answers ([`WorkSource::Metrics`]), otherwise counted on the client side
//!   ([`WorkSource::Client`]): every byte the workloads' connections carry passes through
//!   [`CountingNet`], which splits the streams into STOMP frames and counts frames and
//!   frame bytes each way (`frames_in`/`bytes_in` are what clients wrote, `frames_out`/
//!   `bytes_out` what they read), MESSAGE frames read (`deliveries`), ACK/NACK frames
//!   written (`acks`), heart-beat EOLs both ways, and connections opened and closed. The
//!   client side cannot see `events`, `subscriptions_matched` or `selectors_evaluated`.
//!
//! Both are read over the whole run (setup, load and drain) plus a short settle, and the
//! broker's idle CPU rate (measured for [`BASELINE_S`] before the workloads, after a
//! discarded warm-up run) times the run's wall time is subtracted, so a JVM's background
//! threads are not charged to the operations. The costs are then fitted by non-negative
//! least squares ([`nnls`]) over a reduced basis ([`broker_groups`]: the counters these workloads
//! can tell apart; every other cost is 0), and the fit's residuals and R² are printed. An
//! R² below [`R2_POOR`] sets `fit_poor = true` with a warning; the profile is written
//! either way, with a header comment giving the command that made it.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use stampede_broker::client::Credentials;
use stampede_broker::core::Work;
use stampede_broker::net::{BoxFuture, BoxStream, Listener, Net, TokioNet};
use stampede_broker::server::cost::CostProfile;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::live::shard::Shard;
use crate::live::target::{TargetKind, TargetUri};
use crate::live::{self, LiveOptions};
use crate::scenario::{FaultKind, FaultSpec, Scenario};

/// An R² below this marks the fit poor (`fit_poor = true`).
pub const R2_POOR: f64 = 0.9;

/// Seconds of idle CPU measured before the workloads (the broker's background rate), by
/// default.
pub const BASELINE_S: f64 = 3.0;

/// After a run, the broker is watched over samples this long until it is idle again
/// (at least one: it handles the closing connections meanwhile).
const SETTLE_SAMPLE: Duration = Duration::from_millis(500);

/// A broker is idle again when it uses at most this many cores over its idle rate.
const SETTLE_CORES: f64 = 0.05;

/// And the wait for that ends after this long, with a note.
const SETTLE_MAX: Duration = Duration::from_secs(60);

/// Waits until the broker uses no more CPU than `idle_cores` (plus [`SETTLE_CORES`]) over
/// a [`SETTLE_SAMPLE`], or [`SETTLE_MAX`]: a run past a broker's knee leaves work behind
/// (SENDs still in its sockets, deliveries in its queues), which it goes on doing after
/// the generator has gone. Read at once, that work would be missing from this run's CPU
/// and counted in the next one's. Returns how long it waited, and whether the broker was
/// idle by then.
fn settle(cpu: &CpuSource, idle_cores: f64) -> anyhow::Result<(Duration, bool)> {
    let start = wall_now();
    let mut a = cpu.read_s()?;
    loop {
        let t = wall_now();
        std::thread::sleep(SETTLE_SAMPLE);
        let b = cpu.read_s()?;
        let rate = (b - a) / t.elapsed().as_secs_f64();
        if rate <= idle_cores + SETTLE_CORES {
            return Ok((start.elapsed(), true));
        }
        if start.elapsed() >= SETTLE_MAX {
            return Ok((start.elapsed(), false));
        }
        a = b;
    }
}

/// `USER_HZ`: clock ticks per second of `/proc` CPU times (100 on every Linux ABI this
/// runs on).
const USER_HZ: f64 = 100.0;

/// The operation kinds fitted, as groups of indices into [`Work::counts`] (one cost per
/// group, see [`fit_tied`]): frames either way (`frames_in` + `frames_out`: in these
/// workloads the broker writes about as many frames as it reads, replies for requests,
/// MESSAGEs for SENDs, so a fit over each alone put the whole cost on one, and a
/// simulated fan-out's 800 deliveries cost nothing), bytes in, bytes out, heart-beats
/// and connections. `events`, `subscriptions_matched` and `selectors_evaluated` move
/// with frames in these workloads (the client side cannot see them at all), `acks` and
/// `bridge_hops` do not occur. With the broker's own counters (`metrics`), `events`
/// (calls into the core) has a cost of its own, so that a message handled alone, at a
/// low rate, and one handled in a batch can differ, and so do `io_calls` (frames that wake
/// an idle writer: a fan-out's 800 deliveries are 800 writes, a busy queue's frames share
/// them), which the simulator counts as the live broker does, where its wake-ups depend
/// on the simulated clock's ticks.
pub fn broker_groups(metrics: bool) -> Vec<Vec<usize>> {
    let mut g = vec![vec![1, 3], vec![2], vec![4], vec![5], vec![11]];
    if metrics {
        g.insert(0, vec![0]);
        g.push(vec![12]);
    }
    g
}

/// The kinds of a fit over each alone (the tests' synthetic profiles).
#[cfg(test)]
pub const BASIS: [usize; 6] = [1, 2, 4, 5, 8, 11];

// ------------------------------------------------------------------------------- CPU

/// Where the broker's CPU time comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuSource {
    /// `utime + stime` of `/proc/PID/stat`.
    Pid(u32),
    /// A shell command (`sh -c`) that prints the broker's CPU seconds so far.
    Command(String),
}

impl CpuSource {
    /// The broker's CPU seconds so far.
    pub fn read_s(&self) -> anyhow::Result<f64> {
        match self {
            CpuSource::Pid(pid) => proc_cpu_seconds(*pid),
            CpuSource::Command(cmd) => command_cpu_seconds(cmd),
        }
    }

    /// The broker's wake-ups so far (its threads' voluntary context switches), when its
    /// process is known.
    pub fn wakeups(&self) -> Option<u64> {
        match self {
            CpuSource::Pid(pid) => proc_wakeups(*pid).ok(),
            CpuSource::Command(_) => None,
        }
    }

    /// Whether the broker's wake-ups are counted (its process is on this machine).
    pub fn counts_wakeups(&self) -> bool {
        matches!(self, CpuSource::Pid(_))
    }

    /// For people: `pid 123` or `--cpu-command '…'`.
    pub fn describe(&self) -> String {
        match self {
            CpuSource::Pid(pid) => format!("/proc/{pid}/stat"),
            CpuSource::Command(cmd) => format!("--cpu-command {}", crate::explore::shell_word(cmd)),
        }
    }
}

/// `(utime, stime)` in clock ticks from the text of a `/proc/PID/stat` file (fields 14
/// and 15; the command name in field 2 is in parentheses and may hold spaces or `)`).
pub fn parse_proc_stat(text: &str) -> Result<(u64, u64), String> {
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| "no ')' after the command name".to_owned())?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, index 0 here; utime (14) is 11.
    let tick = |i: usize, name: &str| -> Result<u64, String> {
        let v = fields
            .get(i)
            .ok_or_else(|| format!("too few fields: no {name}"))?;
        v.parse()
            .map_err(|_| format!("{name} is '{v}', not a number of clock ticks"))
    };
    Ok((tick(11, "utime")?, tick(12, "stime")?))
}

/// The voluntary context switches of process `pid`'s live threads so far
/// (`/proc/PID/task/*/status`): how often they parked, waiting for work.
pub fn proc_wakeups(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = entry?.path().join("status");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += parse_voluntary_switches(&text).unwrap_or(0);
    }
    Ok(total)
}

/// `voluntary_ctxt_switches` from the text of a `/proc/…/status` file.
pub fn parse_voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU seconds (user + system) process `pid` used so far.
pub fn proc_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read the CPU time of pid {pid} ({path}); is the broker running, and is --pid its process id?")
    })?;
    let (u, s) = parse_proc_stat(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    Ok((u + s) as f64 / USER_HZ)
}

/// Runs `cmd` with `sh -c` and reads the CPU seconds it prints (the last word of its
/// output).
pub fn command_cpu_seconds(cmd: &str) -> anyhow::Result<f64> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .with_context(|| format!("cannot run --cpu-command {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "--cpu-command {cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    parse_cpu_seconds(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "--cpu-command {cmd:?} printed {:?}, not CPU seconds (a number >= 0)",
            text.trim()
        )
    })
}

/// The number of seconds in a command's output: its last word, a finite number ≥ 0.
pub fn parse_cpu_seconds(text: &str) -> Option<f64> {
    let v: f64 = text.split_whitespace().last()?.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// Socket inodes listening on `port` in the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn listening_inodes(proc_net_tcp: &str, port: u16) -> Vec<u64> {
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let local = f.get(1)?;
            let (_, p) = local.rsplit_once(':')?;
            let p = u16::from_str_radix(p, 16).ok()?;
            // State 0A is LISTEN.
            (p == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// The pid of the process listening on TCP `port` of this machine.
pub fn pid_listening_on(port: u16) -> anyhow::Result<u32> {
    let mut inodes = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    anyhow::ensure!(
        !inodes.is_empty(),
        "no process listens on TCP port {port} of this machine (per /proc/net/tcp); give --pid PID, or --cpu-command CMD for a remote broker"
    );
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let procs = std::fs::read_dir("/proc").context("cannot list /proc")?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| link.as_os_str() == w.as_str())
            {
                return Ok(pid);
            }
        }
    }
    anyhow::bail!(
        "a socket listens on port {port}, but no process whose file descriptors this user can read holds it; give --pid PID (or run as the broker's user)"
    )
}

// ------------------------------------------------------------------------- counting net

/// A [`Net`] over real TCP that counts what the workloads' connections carry, as the
/// broker would count it ([`Work`], from the broker's side: what clients write is `_in`).
#[derive(Clone, Debug, Default)]
pub struct CountingNet {
    counts: Arc<Mutex<Work>>,
}

impl CountingNet {
    /// A net with zero counts.
    pub fn new() -> CountingNet {
        CountingNet::default()
    }

    /// What was counted so far.
    pub fn counts(&self) -> Work {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Net for CountingNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        TokioNet.bind(addr)
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let inner = TokioNet.connect(addr).await?;
            self.counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .connections += 1;
            Ok(Box::new(CountingStream {
                inner,
                counts: self.counts.clone(),
                read: FrameScanner::default(),
                written: FrameScanner::default(),
            }) as BoxStream)
        })
    }
}

/// Where a [`FrameScanner`] is in a STOMP byte stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ScanState {
    /// Between frames: an EOL here is a heart-beat.
    #[default]
    Idle,
    /// Just after a frame's NUL: one EOL here ends the frame (ActiveMQ writes `\0\n`).
    AfterNul,
    /// In the command line of a frame.
    Command,
    /// In a header line.
    Headers,
    /// In a body of `content-length` bytes (this many left).
    Counted(u64),
    /// In a body without `content-length`, or after a counted one: up to the NUL.
    Body,
}

/// The longest header line a [`FrameScanner`] keeps to look for `content-length`.
const HEADER_KEPT_BYTES_MAX: usize = 64;

/// Splits one direction of a STOMP stream into frames and heart-beats, honouring
/// `content-length` (bodies may hold NUL bytes).
#[derive(Clone, Debug, Default)]
pub struct FrameScanner {
    state: ScanState,
    frame_bytes: u64,
    command: Vec<u8>,
    line: Vec<u8>,
    content_length: Option<u64>,
}

/// What a [`FrameScanner`] saw in some bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Whole frames.
    pub frames: u64,
    /// Their bytes, from the command to the NUL.
    pub bytes: u64,
    /// Heart-beat EOLs.
    pub heartbeats: u64,
    /// MESSAGE frames.
    pub messages: u64,
    /// ACK and NACK frames.
    pub acks: u64,
}

impl FrameScanner {
    /// Scans the next bytes of the stream.
    pub fn scan(&mut self, bytes: &[u8]) -> Scanned {
        let mut out = Scanned::default();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                ScanState::Idle | ScanState::AfterNul => {
                    if b == b'\n' {
                        if self.state == ScanState::Idle {
                            out.heartbeats += 1;
                        }
                        self.state = ScanState::Idle;
                    } else if b != b'\r' && b != 0 {
                        self.state = ScanState::Command;
                        self.command.clear();
                        self.command.push(b);
                        self.content_length = None;
                        self.frame_bytes = 1;
                    }
                    i += 1;
                }
                ScanState::Command => {
                    self.frame_bytes += 1;
                    if b == b'\n' {
                        self.state = ScanState::Headers;
                        self.line.clear();
                    } else if b == 0 {
                        self.end_frame(&mut out);
                    } else if b != b'\r' && self.command.len() < 16 {
                        self.command.push(b);
                    }
                    i += 1;
                }
                ScanState::Headers => {
                    self.frame_bytes += 1;
                    if b == b'\n' {
                        if self.line.is_empty() || self.line == b"\r" {
                            self.state = match self.content_length {
                                Some(n) => ScanState::Counted(n),
                                None => ScanState::Body,
                            };
                        } else if self.content_length.is_none() {
                            self.content_length = parse_content_length(&self.line);
                        }
                        self.line.clear();
                    } else if b == 0 {
                        self.end_frame(&mut out);
                    } else if self.line.len() < HEADER_KEPT_BYTES_MAX {
                        self.line.push(b);
                    }
                    i += 1;
                }
                ScanState::Counted(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    self.frame_bytes += take;
                    i += take as usize;
                    self.state = if take == left {
                        ScanState::Body
                    } else {
                        ScanState::Counted(left - take)
                    };
                }
                ScanState::Body => {
                    let rest = &bytes[i..];
                    match rest.iter().position(|c| *c == 0) {
                        Some(n) => {
                            self.frame_bytes += n as u64 + 1;
                            self.end_frame(&mut out);
                            i += n + 1;
                        }
                        None => {
                            self.frame_bytes += rest.len() as u64;
                            i = bytes.len();
                        }
                    }
                }
            }
        }
        out
    }

    fn end_frame(&mut self, out: &mut Scanned) {
        out.frames += 1;
        out.bytes += self.frame_bytes;
        match self.command.as_slice() {
            b"MESSAGE" => out.messages += 1,
            b"ACK" | b"NACK" => out.acks += 1,
            _ => {}
        }
        self.frame_bytes = 0;
        self.state = ScanState::AfterNul;
    }
}

/// The value of a `content-length:N` header line (the first one counts, as STOMP says).
fn parse_content_length(line: &[u8]) -> Option<u64> {
    let v = line.strip_prefix(b"content-length:")?;
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A connection whose bytes are scanned into the shared counts.
struct CountingStream {
    inner: BoxStream,
    counts: Arc<Mutex<Work>>,
    read: FrameScanner,
    written: FrameScanner,
}

impl CountingStream {
    fn add(&self, s: Scanned, written: bool) {
        if s == Scanned::default() {
            return;
        }
        let mut w = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        w.io_calls += 1;
        w.heartbeats += s.heartbeats;
        if written {
            w.frames_in += s.frames;
            w.bytes_in += s.bytes;
            w.acks += s.acks;
        } else {
            w.frames_out += s.frames;
            w.bytes_out += s.bytes;
            w.deliveries += s.messages;
        }
    }
}

impl Drop for CountingStream {
    fn drop(&mut self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connections += 1;
    }
}

impl AsyncRead for CountingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let s = this.read.scan(&buf.filled()[before..]);
            this.add(s, false);
        }
        r
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            let s = this.written.scan(&buf[..n]);
            this.add(s, true);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ------------------------------------------------------------------------------ metrics

/// The `stampede_work_<kind>_total` counters in a Prometheus text exposition (summed
/// over brokers); `None` when there are none.
pub fn parse_metrics(text: &str) -> Option<Work> {
    let mut values = [0u64; Work::KINDS];
    let names: Vec<&str> = Work::default().counts().iter().map(|(n, _)| *n).collect();
    let mut found = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("stampede_work_") else {
            continue;
        };
        let Some((name, tail)) = rest.split_once("_total") else {
            continue;
        };
        let Some(i) = names.iter().position(|n| *n == name) else {
            continue;
        };
        let Some(v) = tail
            .split_whitespace()
            .last()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        values[i] += v as u64;
        found = true;
    }
    found.then(|| work_from_array(values))
}

/// A [`Work`] from counts in [`Work::counts`] order.
pub fn work_from_array(v: [u64; Work::KINDS]) -> Work {
    Work {
        events: v[0],
        frames_in: v[1],
        bytes_in: v[2],
        frames_out: v[3],
        bytes_out: v[4],
        heartbeats: v[5],
        subscriptions_matched: v[6],
        selectors_evaluated: v[7],
        deliveries: v[8],
        acks: v[9],
        bridge_hops: v[10],
        connections: v[11],
        io_calls: v[12],
    }
}

/// `GET /metrics` from `addr` (`host:port`) and its work counters (blocking).
pub fn fetch_metrics(addr: &str) -> anyhow::Result<Work> {
    let text = crate::live::scrape::get(addr)?;
    parse_metrics(&text)
        .ok_or_else(|| anyhow::anyhow!("{addr}/metrics has no stampede_work_*_total counters"))
}

// ---------------------------------------------------------------------------- workloads

/// One calibration workload: a bench scenario with its rates and sizes set.
#[derive(Clone, Debug)]
pub struct Workload {
    /// A short name (`fanout-800@2/s`).
    pub name: String,
    /// The scenario run live.
    pub scenario: Scenario,
    /// Whether it is fitted (the warm-up run is not).
    pub fitted: bool,
}

const FANOUT: &str = include_str!("../../scenarios/bench-fanout-800.toml");
const QUEUE_1X1_20B: &str = include_str!("../../scenarios/bench-queue-1x1-20b.toml");
const QUEUE_1X1_1K: &str = include_str!("../../scenarios/bench-queue-1x1-1k.toml");
const QUEUE_10X10_1K: &str = include_str!("../../scenarios/bench-queue-10x10-1k.toml");
const REQUEST_REPLY: &str = include_str!("../../scenarios/bench-request-reply.toml");
const CONNECTIONS: &str = include_str!("../../scenarios/bench-connections-2000.toml");

/// Node start-up spread of the calibration runs (seconds): short, the setup is measured
/// like the rest.
const START_SPREAD_S: f64 = 2.0;

/// The calibration workloads, each measured for `duration_s` seconds of load; `scale`
/// (0 < scale ≤ 1) multiplies every rate and node count, for a quick run (tests).
pub fn workloads(duration_s: f64, scale: f64) -> anyhow::Result<Vec<Workload>> {
    anyhow::ensure!(
        duration_s > 0.0 && duration_s.is_finite(),
        "--duration must be > 0"
    );
    anyhow::ensure!(scale > 0.0 && scale <= 1.0, "the scale must be in (0, 1]");
    let load = |text: &str, file: &str| -> anyhow::Result<Scenario> {
        let mut s = Scenario::parse(text, file).map_err(|e| anyhow::anyhow!("{e}"))?;
        s.duration_s = duration_s;
        for r in &mut s.racks {
            r.start_spread_s = r.start_spread_s.min(START_SPREAD_S);
            r.nodes = ((f64::from(r.nodes) * scale).round() as u32).max(1);
        }
        Ok(s)
    };
    let mut out = Vec::new();
    let mut queue = |text: &str, file: &str, name: &str, rate: f64, fitted: bool| {
        let mut s = load(text, file)?;
        for q in &mut s.workload.queues {
            q.rate_per_s = rate * scale;
        }
        out.push(Workload {
            name: format!("{name}@{}/s", rate * scale),
            scenario: s,
            fitted,
        });
        anyhow::Ok(())
    };
    queue(
        QUEUE_1X1_1K,
        "bench-queue-1x1-1k.toml",
        "warm-up queue-1x1-1k",
        2000.0,
        false,
    )?;
    queue(
        QUEUE_1X1_20B,
        "bench-queue-1x1-20b.toml",
        "queue-1x1-20b",
        1000.0,
        true,
    )?;
    queue(
        QUEUE_1X1_20B,
        "bench-queue-1x1-20b.toml",
        "queue-1x1-20b",
        5000.0,
        true,
    )?;
    queue(
        QUEUE_1X1_1K,
        "bench-queue-1x1-1k.toml",
        "queue-1x1-1k",
        3000.0,
        true,
    )?;
    // 10 producers at 300/s each: 3,000 msg/s over 20 connections.
    queue(
        QUEUE_10X10_1K,
        "bench-queue-10x10-1k.toml",
        "queue-10x10-1k",
        300.0,
        true,
    )?;
    // Heavy loads (a third to a half of stampede-broker's knees on a 2-core machine):
    // a busy broker reads and writes many frames per wake-up, so a frame costs less than
    // at the light loads above, and a profile meant to find knees must be anchored there.
    queue(
        QUEUE_1X1_1K,
        "bench-queue-1x1-1k.toml",
        "queue-1x1-1k",
        30000.0,
        true,
    )?;
    queue(
        QUEUE_10X10_1K,
        "bench-queue-10x10-1k.toml",
        "queue-10x10-1k",
        3000.0,
        true,
    )?;
    // And near the knees, where the machine is nearly saturated: a busy process's
    // threads seldom sleep, so its wake-ups (a column of the fit) fall while its I/O
    // calls do not, and only runs like these tell the two costs apart.
    queue(
        QUEUE_10X10_1K,
        "bench-queue-10x10-1k.toml",
        "queue-10x10-1k",
        10000.0,
        true,
    )?;
    for per_s in [1.0, 4.0, 20.0, 40.0, 60.0] {
        let mut s = load(FANOUT, "bench-fanout-800.toml")?;
        if let Some(m) = &mut s.workload.mcollective {
            m.discovery_interval_s = 1.0 / (per_s * scale);
        }
        out.push(Workload {
            name: format!("fanout-800@{}/s", per_s * scale),
            scenario: s,
            fitted: true,
        });
    }
    for per_s in [100.0, 400.0, 6000.0] {
        let mut s = load(REQUEST_REPLY, "bench-request-reply.toml")?;
        if let Some(m) = &mut s.workload.mcollective {
            // Each request goes to `directed_targets` nodes: per_s requests in all.
            m.directed_interval_s = m.directed_targets as f64 / (per_s * scale);
        }
        out.push(Workload {
            name: format!("request-reply@{}/s", per_s * scale),
            scenario: s,
            fitted: true,
        });
    }
    for (nodes, hb) in [(600u32, 1u64), (1200, 0)] {
        let mut s = load(CONNECTIONS, "bench-connections-2000.toml")?;
        for r in &mut s.racks {
            r.nodes = ((f64::from(nodes) * scale).round() as u32).max(1);
            r.heartbeat_s = hb;
            r.heartbeat_read_timeout = hb > 0;
        }
        if let Some(m) = &mut s.workload.mcollective {
            m.discovery_timeout_s = 1.0;
        }
        s.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push(Workload {
            name: if hb > 0 {
                format!("idle-{}-hb{hb}s", s.node_count())
            } else {
                format!("idle-{}-no-hb", s.node_count())
            },
            scenario: s,
            fitted: true,
        });
    }
    // Connection churn: half of 600 idle nodes killed and started again every second,
    // so that connections are opened and closed under way and not only at the start
    // (the failover scenarios' reconnection storms are priced by this cost, which the
    // other workloads barely move).
    let mut s = load(CONNECTIONS, "bench-connections-2000.toml")?;
    for r in &mut s.racks {
        r.nodes = ((600.0 * scale).round() as u32).max(2);
        r.heartbeat_s = 0;
        r.heartbeat_read_timeout = false;
    }
    if let Some(m) = &mut s.workload.mcollective {
        m.discovery_timeout_s = 1.0;
    }
    let racks: Vec<String> = s.racks.iter().map(|r| r.name.clone()).collect();
    let mut at_s = START_SPREAD_S + 1.0;
    while at_s + CHURN_DOWN_S < duration_s {
        s.faults.push(FaultSpec {
            at_s,
            kind: FaultKind::CrashNodes,
            target: racks.clone(),
            a: Vec::new(),
            b: Vec::new(),
            latency_ms: None,
            skew_ms: None,
            fraction: Some(0.5),
            loss_percent: None,
            from: Vec::new(),
            duration_s: Some(CHURN_DOWN_S),
            label: None,
        });
        at_s += 2.0 * CHURN_DOWN_S;
    }
    s.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    out.push(Workload {
        name: format!("churn-{}", s.node_count()),
        scenario: s,
        fitted: true,
    });
    Ok(out)
}

/// Leaves out the workloads whose name starts with one of `skip` (a broker far slower
/// than the loads some workloads offer: an overloaded JVM stays busy through the next
/// runs). A prefix that names no workload is an error, as is leaving nothing to fit.
pub fn skip_workloads(workloads: &mut Vec<Workload>, skip: &[String]) -> anyhow::Result<()> {
    for prefix in skip {
        anyhow::ensure!(
            workloads
                .iter()
                .any(|w| w.name.starts_with(prefix.as_str())),
            "--skip {prefix}: no calibration workload's name starts with it (they are: {})",
            workloads
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    workloads.retain(|w| !skip.iter().any(|p| w.name.starts_with(p.as_str())));
    anyhow::ensure!(
        workloads.iter().any(|w| w.fitted),
        "--skip leaves no workload to fit"
    );
    Ok(())
}

/// How long the churn workload's nodes stay down each time (they are up as long).
const CHURN_DOWN_S: f64 = 0.5;

// --------------------------------------------------------------------------------- fit

/// Non-negative least squares (Lawson and Hanson's active-set method): the `x ≥ 0`
/// minimising `|A x − b|`, for `a` given as rows. Columns are scaled to unit norm inside,
/// so costs of very different sizes (per byte, per connection) fit together.
pub fn nnls(a: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let m = a.len();
    let n = a.first().map_or(0, Vec::len);
    if n == 0 {
        return Vec::new();
    }
    let norms: Vec<f64> = (0..n)
        .map(|j| (0..m).map(|i| a[i][j] * a[i][j]).sum::<f64>().sqrt())
        .collect();
    let scaled: Vec<Vec<f64>> = a
        .iter()
        .map(|row| {
            row.iter()
                .zip(&norms)
                .map(|(v, n)| if *n > 0.0 { v / n } else { 0.0 })
                .collect()
        })
        .collect();
    let b_norm = b.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
    let tol = 1e-10 * (m.max(n) as f64);
    let mut x = vec![0.0; n];
    let mut passive = vec![false; n];
    let gradient = |x: &[f64]| -> Vec<f64> {
        let r: Vec<f64> = (0..m)
            .map(|i| b[i] / b_norm - (0..n).map(|j| scaled[i][j] * x[j]).sum::<f64>())
            .collect();
        (0..n)
            .map(|j| (0..m).map(|i| scaled[i][j] * r[i]).sum())
            .collect()
    };
    for _ in 0..(3 * n + 10) {
        let w = gradient(&x);
        let next = (0..n)
            .filter(|j| !passive[*j] && norms[*j] > 0.0 && w[*j] > tol)
            .max_by(|p, q| w[*p].total_cmp(&w[*q]));
        let Some(j) = next else { break };
        passive[j] = true;
        for _ in 0..(3 * n + 10) {
            let s = least_squares_on(&scaled, b, b_norm, &passive);
            if (0..n).all(|k| !passive[k] || s[k] > tol) {
                x = s;
                break;
            }
            // Step towards s until the first passive variable reaches 0.
            let alpha = (0..n)
                .filter(|k| passive[*k] && s[*k] <= tol)
                .map(|k| x[k] / (x[k] - s[k]))
                .filter(|v| v.is_finite())
                .fold(1.0f64, f64::min)
                .max(0.0);
            for k in 0..n {
                x[k] += alpha * (s[k] - x[k]);
                if passive[k] && x[k] <= tol {
                    passive[k] = false;
                    x[k] = 0.0;
                }
            }
        }
    }
    x.iter()
        .zip(&norms)
        .map(|(v, n)| if *n > 0.0 { v / n * b_norm } else { 0.0 })
        .collect()
}

/// Unconstrained least squares on the passive columns (the others 0), by the normal
/// equations with partial pivoting; a column that is a combination of others gets 0.
fn least_squares_on(a: &[Vec<f64>], b: &[f64], b_norm: f64, passive: &[bool]) -> Vec<f64> {
    let cols: Vec<usize> = (0..passive.len()).filter(|j| passive[*j]).collect();
    let k = cols.len();
    let mut g = vec![vec![0.0; k + 1]; k];
    for (p, &cp) in cols.iter().enumerate() {
        for (q, &cq) in cols.iter().enumerate() {
            g[p][q] = a.iter().map(|row| row[cp] * row[cq]).sum();
        }
        g[p][k] = a.iter().zip(b).map(|(row, v)| row[cp] * v / b_norm).sum();
    }
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|p, q| g[*p][col].abs().total_cmp(&g[*q][col].abs()))
            .unwrap_or(col);
        g.swap(col, pivot);
        if g[col][col].abs() < 1e-12 {
            continue;
        }
        let pivot_row = g[col].clone();
        for (row, r) in g.iter_mut().enumerate() {
            if row != col {
                let f = r[col] / pivot_row[col];
                for (v, p) in r.iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut x = vec![0.0; passive.len()];
    for (p, &cp) in cols.iter().enumerate() {
        x[cp] = if g[p][p].abs() < 1e-12 {
            0.0
        } else {
            g[p][k] / g[p][p]
        };
    }
    x
}

/// One workload's measurements.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The workload's name.
    pub name: String,
    /// Broker CPU seconds over the run, less the idle rate times its wall time.
    pub cpu_s: f64,
    /// The work the run caused (what the fit uses).
    pub work: Work,
    /// The work counted on the client side (the same as `work` without metrics).
    pub client: Work,
    /// Wall seconds between the two readings.
    pub wall_s: f64,
    /// Broker CPU seconds before subtracting the idle rate.
    pub raw_cpu_s: f64,
    /// The generator's own CPU seconds over the run (this process: the clients' work).
    pub generator_cpu_s: f64,
    /// The broker's wake-ups over the run: voluntary context switches of its threads,
    /// less the idle rate times the wall time (0 when its CPU comes from a command).
    pub wakeups: u64,
    /// The generator's own wake-ups over the run (its worker threads' voluntary context
    /// switches).
    pub generator_wakeups: u64,
}

/// A fitted profile and how well it fits.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// Nanoseconds per operation kind, in [`Work::counts`] order (0 outside the basis).
    pub ns: [f64; Work::KINDS],
    /// Nanoseconds per wake-up (0 when wake-ups were not counted).
    pub wakeups_ns: f64,
    /// The coefficient of determination over the samples.
    pub r2: f64,
    /// `(workload, measured CPU s, fitted CPU s)` per sample.
    pub rows: Vec<(String, f64, f64)>,
}

impl Fit {
    /// Whether R² is below [`R2_POOR`].
    pub fn poor(&self) -> bool {
        self.r2.is_nan() || self.r2 < R2_POOR
    }

    /// The residual table, for people.
    pub fn table(&self) -> String {
        let mut t = format!(
            "{:<28} {:>12} {:>12} {:>12} {:>8}\n",
            "workload", "measured ms", "fitted ms", "residual ms", "resid %"
        );
        for (name, y, f) in &self.rows {
            let pct = if *y != 0.0 { (y - f) / y * 100.0 } else { 0.0 };
            let _ = writeln!(
                t,
                "{name:<28} {:>12.1} {:>12.1} {:>12.1} {:>7.1}%",
                y * 1e3,
                f * 1e3,
                (y - f) * 1e3,
                pct
            );
        }
        t
    }
}

/// Fits the costs of the `basis` kinds to `samples` by [`nnls`].
pub fn fit(samples: &[Sample], basis: &[usize]) -> Fit {
    let groups: Vec<Vec<usize>> = basis.iter().map(|j| vec![*j]).collect();
    fit_tied(samples, &groups, false)
}

/// Fits one cost per group of kinds to `samples` by [`nnls`]: a group's column is the sum
/// of its kinds' counts, and each kind of the group gets the group's cost. Kinds that move
/// together in every workload (a client reads about as many frames as it writes) cannot
/// be told apart, and a fit over each alone puts the whole cost on one of them. With
/// `wakeups`, each sample's [`Sample::wakeups`] is one more column (its cost
/// [`Fit::wakeups_ns`]).
pub fn fit_tied(samples: &[Sample], groups: &[Vec<usize>], wakeups: bool) -> Fit {
    fit_weighted(samples, groups, wakeups, Weighting::Absolute)
}

/// How the fit weighs the workloads' errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Weighting {
    /// Least squares over CPU time: the busiest workloads decide (what a profile meant to
    /// find knees wants).
    #[default]
    Absolute,
    /// Least squares over each workload's relative error: every workload weighs the same,
    /// so light ones (connections opened and closed, idle fleets) are priced by their own
    /// runs (what a profile meant to replay reconnection storms wants).
    Relative,
}

/// [`fit_tied`] with a choice of [`Weighting`]; R² and the residuals are over the CPU
/// times as measured either way.
pub fn fit_weighted(
    samples: &[Sample],
    groups: &[Vec<usize>],
    wakeups: bool,
    weighting: Weighting,
) -> Fit {
    let rows: Vec<Vec<f64>> = samples
        .iter()
        .map(|s| {
            let c = s.work.counts();
            let mut row: Vec<f64> = groups
                .iter()
                .map(|g| g.iter().map(|j| c[*j].1 as f64).sum())
                .collect();
            if wakeups {
                row.push(s.wakeups as f64);
            }
            row
        })
        .collect();
    let y: Vec<f64> = samples.iter().map(|s| s.cpu_s * 1e9).collect();
    let x = match weighting {
        Weighting::Absolute => nnls(&rows, &y),
        Weighting::Relative => {
            // A workload that measured no CPU cannot be weighed by it: it keeps the
            // weight of the smallest that did (or 1 when none did).
            let floor = y
                .iter()
                .copied()
                .filter(|v| *v > 0.0)
                .fold(f64::INFINITY, f64::min);
            let floor = if floor.is_finite() { floor } else { 1.0 };
            let w: Vec<f64> = y.iter().map(|v| 1.0 / v.max(floor)).collect();
            let scaled: Vec<Vec<f64>> = rows
                .iter()
                .zip(&w)
                .map(|(r, w)| r.iter().map(|a| a * w).collect())
                .collect();
            let yw: Vec<f64> = y.iter().zip(&w).map(|(v, w)| v * w).collect();
            nnls(&scaled, &yw)
        }
    };
    let mut ns = [0.0; Work::KINDS];
    for (g, v) in groups.iter().zip(&x) {
        for j in g {
            ns[*j] = *v;
        }
    }
    let wakeups_ns = if wakeups {
        x.last().copied().unwrap_or(0.0)
    } else {
        0.0
    };
    let fitted: Vec<f64> = rows
        .iter()
        .map(|r| r.iter().zip(&x).map(|(a, b)| a * b).sum())
        .collect();
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = y.iter().zip(&fitted).map(|(a, f)| (a - f).powi(2)).sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    Fit {
        ns,
        wakeups_ns,
        r2,
        rows: samples
            .iter()
            .zip(&fitted)
            .map(|(s, f)| (s.name.clone(), s.cpu_s, f / 1e9))
            .collect(),
    }
}

/// The profile file: a header comment (`header` lines, each prefixed `# `), then the
/// profile's keys. The text is checked with [`CostProfile::parse`].
pub fn profile_text(fit: &Fit, description: &str, header: &[String]) -> anyhow::Result<String> {
    let mut t = String::new();
    for line in header {
        for l in line.lines() {
            let _ = writeln!(t, "{}", format!("# {l}").trim_end());
        }
    }
    let _ = writeln!(t, "description = {}", toml_string(description));
    let _ = writeln!(t, "fit_poor = {}", fit.poor());
    if fit.r2.is_finite() {
        let _ = writeln!(t, "r2 = {:.4}", fit.r2);
    }
    let names = Work::default().counts();
    for (i, (name, _)) in names.iter().enumerate() {
        let _ = writeln!(t, "{name}_ns = {:.3}", fit.ns[i]);
    }
    let _ = writeln!(t, "wakeups_ns = {:.3}", fit.wakeups_ns);
    CostProfile::parse(&t, "the calibrated profile")
        .map_err(|e| anyhow::anyhow!("the fitted profile does not parse back: {e}"))?;
    Ok(t)
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------- the run

/// Where the work counts came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkSource {
    /// The broker's `stampede_work_*_total` counters at this `host:port`.
    Metrics(String),
    /// Counted on the client side ([`CountingNet`]).
    Client,
}

/// What `stampede calibrate` was asked to do.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// The broker.
    pub target: TargetUri,
    /// Its kind (`None`: from CONNECTED's `server` header).
    pub kind: Option<TargetKind>,
    /// Where its CPU time comes from.
    pub cpu: CpuSource,
    /// Its metrics endpoint (`host:port`), for stampede-broker.
    pub metrics: Option<String>,
    /// Seconds of load per workload.
    pub duration_s: f64,
    /// Scale of rates and node counts (1 for a real calibration).
    pub scale: f64,
    /// Login and passcode.
    pub credentials: Option<Credentials>,
    /// Worker threads of the generator.
    pub threads: usize,
    /// Seconds of idle CPU measured after the warm-up ([`BASELINE_S`]).
    pub baseline_s: f64,
    /// Run only the first this many [`workloads`] (the warm-up included), for quick
    /// checks; `None`: all.
    pub workloads_max: Option<usize>,
    /// Workloads left out: those whose name starts with any of these (`fanout-800@60`).
    pub skip: Vec<String>,
    /// How the fit weighs the workloads (the broker's and the clients' fits alike).
    pub weighting: Weighting,
}

/// The result of a calibration.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// The fit.
    pub fit: Fit,
    /// The measurements (fitted workloads only).
    pub samples: Vec<Sample>,
    /// The target's kind.
    pub kind: TargetKind,
    /// Its CONNECTED `server` header, if it sent one.
    pub server: Option<String>,
    /// Where the counts came from.
    pub work_source: WorkSource,
    /// The broker's idle CPU rate (cores).
    pub idle_cores: f64,
    /// The clients' profile: the generator's own CPU fitted on the client-side counts
    /// (as the broker would count them: what clients write is `*_in`), for a scenario's
    /// `[clients]` (see `crate::workload::cpu`).
    pub clients_fit: Fit,
}

/// Runs the calibration workloads against the target and fits the profile. Each
/// workload runs on a tokio runtime of its own, shut down after it, so that nothing a
/// workload started outlives it. `say` gets one line per step.
pub fn calibrate(
    opts: &CalibrateOptions,
    say: &(dyn Fn(String) + Send + Sync),
) -> anyhow::Result<Calibration> {
    anyhow::ensure!(
        !opts.target.redis && opts.kind != Some(TargetKind::Redis),
        "calibration drives STOMP workloads: Redis targets are not supported (--target-kind stampede|activemq|rabbitmq)"
    );
    anyhow::ensure!(
        !opts.target.servers.is_empty(),
        "the target names no server"
    );
    // Fail before any load when the CPU cannot be read.
    opts.cpu.read_s()?;
    let mut workloads = workloads(opts.duration_s, opts.scale)?;
    skip_workloads(&mut workloads, &opts.skip)?;
    if let Some(n) = opts.workloads_max {
        workloads.truncate(n);
    }
    let live_opts = LiveOptions {
        target: opts.target.clone(),
        kind: opts.kind,
        duration_s: Some(opts.duration_s),
        warmup_s: 0.0,
        drain_s: 0.5,
        rate: None,
        shard: Shard::default(),
        seed: None,
        credentials: opts.credentials.clone(),
        threads: opts.threads,
        // The work counters are read here, around each workload.
        metrics: None,
        faults_via: None,
    };
    let mut work_source = WorkSource::Client;
    if let Some(addr) = &opts.metrics {
        match fetch_metrics(addr) {
            Ok(_) => work_source = WorkSource::Metrics(addr.clone()),
            Err(e) => say(format!(
                "note: {e:#}; counting the work on the client side instead"
            )),
        }
    }
    let read_metrics = || match &work_source {
        WorkSource::Metrics(addr) => fetch_metrics(addr).map(Some),
        WorkSource::Client => Ok(None),
    };
    let mut samples = Vec::new();
    let mut idle_cores = 0.0;
    let mut idle_wakeups_per_s = 0.0;
    let mut kind = opts.kind;
    let mut server = None;
    for (n, w) in workloads.iter().enumerate() {
        if n == 1 {
            // After the warm-up: the broker's idle rate.
            let a = opts.cpu.read_s()?;
            let wa = opts.cpu.wakeups();
            let t = wall_now();
            std::thread::sleep(Duration::from_secs_f64(opts.baseline_s.max(0.1)));
            let b = opts.cpu.read_s()?;
            let wb = opts.cpu.wakeups();
            idle_cores = ((b - a) / t.elapsed().as_secs_f64()).max(0.0);
            if let (Some(wa), Some(wb)) = (wa, wb) {
                idle_wakeups_per_s = wb.saturating_sub(wa) as f64 / t.elapsed().as_secs_f64();
            }
            say(format!(
                "idle: the broker used {idle_cores:.3} core(s) with no load"
            ));
        }
        let mut run_opts = live_opts.clone();
        run_opts.kind = kind;
        let net = CountingNet::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let cpu0 = opts.cpu.read_s()?;
        let wakeups0 = opts.cpu.wakeups();
        let own0 = own_cpu_s()?;
        let own_wakeups0 = proc_wakeups(std::process::id()).unwrap_or(0);
        let metrics0 = read_metrics()?;
        let t = wall_now();
        let outcome = runtime
            .block_on(live::run_on(
                &w.scenario,
                &run_opts,
                Arc::new(net.clone()),
                &|_| {},
            ))
            .with_context(|| format!("workload {}", w.name));
        // The generator's wake-ups before its runtime's threads end (their counts go
        // with them).
        let own_wakeups1 = proc_wakeups(std::process::id()).unwrap_or(0);
        // Whatever the workload left running (connections, timers) stops here.
        runtime.shutdown_timeout(Duration::from_secs(2));
        let outcome = outcome?;
        match settle(&opts.cpu, idle_cores)? {
            (waited, true) if waited > SETTLE_SAMPLE * 2 => say(format!(
                "{:<26} the broker went on working for {:.1} s after the run; its CPU and work include that",
                "",
                waited.as_secs_f64()
            )),
            (_, true) => {}
            (waited, false) => say(format!(
                "{:<26} note: the broker was still busy {:.0} s after the run; the next run may count some of this one's work",
                "",
                waited.as_secs_f64()
            )),
        }
        let cpu1 = opts.cpu.read_s()?;
        let wakeups1 = opts.cpu.wakeups();
        let own1 = own_cpu_s()?;
        let metrics1 = read_metrics()?;
        let wall_s = t.elapsed().as_secs_f64();
        kind = Some(outcome.kind);
        if server.is_none() {
            server = outcome
                .report
                .target
                .as_deref()
                .and_then(|t| t.rsplit_once(" ("))
                .map(|(_, s)| s.trim_end_matches(')').to_owned());
        }
        let client = net.counts();
        let work = match (metrics0, metrics1) {
            (Some(a), Some(b)) => b.since(&a),
            _ => client,
        };
        let raw = (cpu1 - cpu0).max(0.0);
        let sample = Sample {
            name: w.name.clone(),
            cpu_s: (raw - idle_cores * wall_s).max(0.0),
            work,
            client,
            wall_s,
            raw_cpu_s: raw,
            generator_cpu_s: (own1 - own0).max(0.0),
            wakeups: match (wakeups0, wakeups1) {
                (Some(a), Some(b)) => {
                    (b.saturating_sub(a) as f64 - idle_wakeups_per_s * wall_s).max(0.0) as u64
                }
                _ => 0,
            },
            generator_wakeups: own_wakeups1.saturating_sub(own_wakeups0),
        };
        say(format!(
            "{:<26} {:>5.1} s wall, broker CPU {:>6.3} s ({:.2} cores, {} wake-ups), generator {:.3} s ({} wake-ups, {} I/O calls); {}frames in {} out {}, deliveries {}, heart-beats {}, connections {}{}",
            w.name,
            wall_s,
            raw,
            raw / wall_s.max(1e-9),
            sample.wakeups,
            sample.generator_cpu_s,
            sample.generator_wakeups,
            client.io_calls,
            if work.events > 0 {
                format!("events {}, ", work.events)
            } else {
                String::new()
            },
            work.frames_in,
            work.frames_out,
            work.deliveries,
            work.heartbeats,
            work.connections,
            if w.fitted { "" } else { " (not fitted)" }
        ));
        if work != client {
            say(format!(
                "{:<26} client side counted frames in {} out {}, deliveries {}, heart-beats {}, connections {}",
                "",
                client.frames_in,
                client.frames_out,
                client.deliveries,
                client.heartbeats,
                client.connections
            ));
        }
        if w.fitted {
            samples.push(sample);
        }
    }
    let groups = broker_groups(matches!(work_source, WorkSource::Metrics(_)));
    let fit = fit_weighted(&samples, &groups, opts.cpu.counts_wakeups(), opts.weighting);
    let clients_fit = clients_fit(&samples, opts.weighting);
    Ok(Calibration {
        fit,
        samples,
        kind: kind.unwrap_or(TargetKind::Stampede),
        server,
        work_source,
        idle_cores,
        clients_fit,
    })
}

/// The clients' costs: the generator's own CPU of each sample fitted on what its
/// connections carried (the client-side counts): one cost per frame and one per byte,
/// read or written ([`clients_groups`]), heart-beats, connections and I/O calls.
pub fn clients_fit(samples: &[Sample], weighting: Weighting) -> Fit {
    let own: Vec<Sample> = samples
        .iter()
        .map(|s| Sample {
            cpu_s: s.generator_cpu_s,
            work: s.client,
            wakeups: s.generator_wakeups,
            ..s.clone()
        })
        .collect();
    fit_weighted(&own, &clients_groups(), true, weighting)
}

/// The clients' fit's groups of [`Work::counts`] indices: frames either way (in every
/// workload a client reads about as many frames as it writes: a node answers each
/// request, a consumer reads what a producer wrote, so the two cannot be told apart and
/// cost the same), bytes either way, heart-beats, connections, and I/O calls (each read
/// or write of a chunk: under load one read takes many frames, so a frame costs less).
pub fn clients_groups() -> Vec<Vec<usize>> {
    vec![vec![1, 3], vec![2, 4], vec![5], vec![11], vec![12]]
}

/// This process's CPU seconds so far (the generator's, in a calibration).
fn own_cpu_s() -> anyhow::Result<f64> {
    proc_cpu_seconds(std::process::id())
}

/// A wall clock for the idle rate and the runs' wall time (live mode only).
#[allow(clippy::disallowed_methods)]
fn wall_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Writes `text` to `out`, creating its directory.
pub fn write_profile(out: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, work: Work, truth: &[f64; Work::KINDS]) -> Sample {
        let p = CostProfile::from_ns_array(*truth);
        Sample {
            name: name.into(),
            cpu_s: p.cost_ns(&work) / 1e9,
            work,
            client: work,
            wall_s: 1.0,
            raw_cpu_s: 0.0,
            generator_cpu_s: p.cost_ns(&work) / 1e9,
            wakeups: 0,
            generator_wakeups: 0,
        }
    }

    fn synthetic(truth: &[f64; Work::KINDS]) -> Vec<Sample> {
        // Ten workloads with independent mixes of the basis counters.
        (0..10u64)
            .map(|i| {
                let w = Work {
                    frames_in: 1_000 + 700 * i + (i * i * 130) % 900,
                    bytes_in: 20_000 * (1 + (i * 7) % 5) + 1_000 * i,
                    bytes_out: 400_000 * (1 + (i * 3) % 7),
                    heartbeats: 5_000 * ((i * 5) % 4),
                    deliveries: 2_000 + 900 * ((i * 11) % 6) + 50 * i,
                    connections: 100 * (1 + (i * 13) % 9),
                    frames_out: 10,
                    ..Work::default()
                };
                sample(&format!("w{i}"), w, truth)
            })
            .collect()
    }

    #[test]
    fn nnls_recovers_known_costs() {
        let mut truth = [0.0; Work::KINDS];
        truth[1] = 4_000.0; // frames_in
        truth[2] = 1.5; // bytes_in
        truth[4] = 0.8; // bytes_out
        truth[5] = 300.0; // heartbeats
        truth[8] = 2_500.0; // deliveries
        truth[11] = 60_000.0; // connections
        let f = fit(&synthetic(&truth), &BASIS);
        for j in BASIS {
            let rel = (f.ns[j] - truth[j]).abs() / truth[j];
            assert!(rel < 1e-6, "kind {j}: fitted {} vs {}", f.ns[j], truth[j]);
        }
        assert!(f.r2 > 0.999_999, "{}", f.r2);
        assert!(!f.poor());
        // Outside the basis: zero.
        assert_eq!(f.ns[3], 0.0);
    }

    #[test]
    fn a_relative_fit_prices_light_workloads_by_their_own_runs() {
        // Two heavy queue runs differ by a second of CPU the model cannot explain (their
        // events are the same; one has 2,000 connections): an absolute fit pins that
        // second on connections, which the two light runs (churn, idle: 4 us per event,
        // 30 us per connection) contradict by a factor of five.
        let run = |name: &str, events: u64, connections: u64, cpu_s: f64| Sample {
            cpu_s,
            ..sample(
                name,
                Work {
                    events,
                    connections,
                    ..Work::default()
                },
                &[0.0; Work::KINDS],
            )
        };
        let samples = vec![
            run("fan-out", 1_000_000, 2_000, 5.0),
            run("queue", 1_000_000, 10, 4.0),
            run("churn", 10_000, 2_000, 0.1),
            run("idle", 5_000, 1_000, 0.05),
        ];
        let groups = [vec![0], vec![11]];
        let absolute = fit_weighted(&samples, &groups, false, Weighting::Absolute);
        let relative = fit_weighted(&samples, &groups, false, Weighting::Relative);
        assert!(absolute.ns[11] > 100_000.0, "{:?}", absolute.ns);
        assert!(
            (relative.ns[11] - 30_000.0).abs() < 3_000.0,
            "{:?}",
            relative.ns
        );
        // The residuals are reported on the CPU times as measured.
        assert_eq!(relative.rows[0].1, 5.0);
        let churn_error = |f: &Fit| (f.rows[2].2 - 0.1).abs() / 0.1;
        assert!(churn_error(&relative) < 0.1 && churn_error(&absolute) > 1.0);
    }

    #[test]
    fn tied_kinds_share_one_cost_where_each_alone_would_take_all() {
        // Every workload writes as many frames as it reads (a node answers each request):
        // the two columns are the same, so a fit over each alone cannot split the cost.
        let samples: Vec<Sample> = (1..=6u64)
            .map(|i| {
                let work = Work {
                    frames_in: 1_000 * i,
                    frames_out: 1_000 * i,
                    connections: 10 * (7 - i),
                    ..Work::default()
                };
                let mut truth = [0.0; Work::KINDS];
                truth[1] = 3_000.0;
                truth[3] = 3_000.0;
                truth[11] = 50_000.0;
                sample(&format!("w{i}"), work, &truth)
            })
            .collect();
        let alone = fit(&samples, &[1, 3, 11]);
        assert!(
            alone.ns[1] == 0.0 || alone.ns[3] == 0.0,
            "one of two identical columns takes it all: {:?}",
            alone.ns
        );
        let tied = fit_tied(&samples, &[vec![1, 3], vec![11]], false);
        assert!((tied.ns[1] - 3_000.0).abs() < 1e-6, "{:?}", tied.ns);
        assert_eq!(tied.ns[1], tied.ns[3]);
        assert!((tied.ns[11] - 50_000.0).abs() < 1e-3, "{:?}", tied.ns);
        assert!(tied.r2 > 0.999_999);
    }

    #[test]
    fn wakeups_are_fitted_beside_the_work() {
        // The same frames cost more CPU in the runs that woke the broker more often.
        let samples: Vec<Sample> = (1..=6u64)
            .map(|i| {
                let work = Work {
                    frames_in: 1_000 * i,
                    frames_out: 1_000 * i,
                    ..Work::default()
                };
                let wakeups = 3_000 * (i % 3 + 1);
                let mut s = sample(&format!("w{i}"), work, &[0.0; Work::KINDS]);
                s.cpu_s = (2_000 * i * 1_000 + 20_000 * wakeups) as f64 / 1e9;
                s.wakeups = wakeups;
                s
            })
            .collect();
        let f = fit_tied(&samples, &[vec![1, 3]], true);
        assert!((f.ns[1] - 1_000.0).abs() < 1e-3, "{f:?}");
        assert!((f.wakeups_ns - 20_000.0).abs() < 1e-3, "{f:?}");
        let text = profile_text(&f, "t", &[]).unwrap();
        let p = CostProfile::parse(&text, "t.toml").unwrap();
        assert!((p.wakeups_ns - 20_000.0).abs() < 1e-2, "{text}");
    }

    #[test]
    fn voluntary_switches_are_read_from_a_status_file() {
        let status = "Name:\tstampede-broker\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n";
        assert_eq!(parse_voluntary_switches(status), Some(1234));
        assert_eq!(parse_voluntary_switches("Name:\tx\n"), None);
        // Our own threads have some.
        assert!(proc_wakeups(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn nnls_never_goes_negative() {
        // y = 2·x0 exactly, x1 correlated but would take a negative coefficient in
        // plain least squares.
        let a = vec![
            vec![1.0, 1.0],
            vec![2.0, 1.0],
            vec![3.0, 3.5],
            vec![4.0, 3.0],
        ];
        let b = vec![2.0, 4.5, 5.0, 8.0];
        let x = nnls(&a, &b);
        assert!(x.iter().all(|v| *v >= 0.0), "{x:?}");
        assert_eq!(x[1], 0.0, "{x:?}");
        // Plain least squares gives x1 = -0.825; with x1 = 0 the best x0 is Σab/Σa² = 58/30.
        assert!((x[0] - 58.0 / 30.0).abs() < 1e-9, "{x:?}");
    }

    #[test]
    fn a_poor_fit_is_flagged_and_still_written() {
        let mut truth = [0.0; Work::KINDS];
        truth[1] = 4_000.0;
        let mut s = synthetic(&truth);
        // CPU unrelated to the counts: alternate high and low.
        for (i, x) in s.iter_mut().enumerate() {
            x.cpu_s = if i % 2 == 0 { 5.0 } else { 0.1 };
        }
        let f = fit(&s, &BASIS);
        assert!(f.r2 < R2_POOR, "{}", f.r2);
        assert!(f.poor());
        let text = profile_text(&f, "poor", &["made by a test".into()]).unwrap();
        assert!(text.starts_with("# made by a test\n"), "{text}");
        let p = CostProfile::parse(&text, "p").unwrap();
        assert!(p.fit_poor);
        assert_eq!(p.r2.map(|r| r < R2_POOR), Some(true));
    }

    #[test]
    fn the_profile_text_parses_back_with_the_fitted_costs() {
        let mut truth = [0.0; Work::KINDS];
        truth[8] = 1234.5;
        truth[2] = 0.25;
        let f = fit(&synthetic(&truth), &BASIS);
        let text = profile_text(&f, "a \"quoted\" broker", &["cmd".into()]).unwrap();
        let p = CostProfile::parse(&text, "p").unwrap();
        assert_eq!(p.description, "a \"quoted\" broker");
        assert!((p.deliveries_ns - 1234.5).abs() < 1e-3, "{text}");
        assert!((p.bytes_in_ns - 0.25).abs() < 1e-3, "{text}");
        assert!(!p.fit_poor);
    }

    #[test]
    fn proc_stat_parses_utime_and_stime() {
        // A command name with spaces and a parenthesis, as /proc allows.
        let line = "4242 (java (x) y) S 1 4242 4242 0 -1 4194560 123 0 0 0 \
                    1500 250 0 0 20 0 40 0 1000 0 0";
        assert_eq!(parse_proc_stat(line), Ok((1500, 250)));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_proc_stat(&own).is_ok());
        assert!(
            parse_proc_stat("12 (x) S 1 2")
                .unwrap_err()
                .contains("utime")
        );
        assert!(parse_proc_stat("garbage").is_err());
        let e = parse_proc_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 3").unwrap_err();
        assert!(e.contains("utime is 'abc'"), "{e}");
    }

    #[test]
    fn an_unreadable_pid_is_a_clear_error() {
        // Above the largest pid Linux hands out (2^22).
        let e = proc_cpu_seconds(4_194_999).unwrap_err().to_string();
        assert!(e.contains("pid 4194999") && e.contains("--pid"), "{e}");
        let e = CpuSource::Command("echo not-a-number".into())
            .read_s()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not CPU seconds"), "{e}");
        let e = CpuSource::Command("exit 3".into())
            .read_s()
            .unwrap_err()
            .to_string();
        assert!(e.contains("failed"), "{e}");
        assert_eq!(
            CpuSource::Command("echo cpu 12.5".into()).read_s().unwrap(),
            12.5
        );
        assert_eq!(parse_cpu_seconds("-1"), None);
    }

    #[test]
    fn an_unknown_target_kind_is_refused() {
        let e = "kafka".parse::<TargetKind>().unwrap_err();
        assert!(e.contains("unknown target kind 'kafka'"), "{e}");
    }

    #[test]
    fn redis_targets_are_refused_before_any_load() {
        let opts = CalibrateOptions {
            target: TargetUri::parse("redis://127.0.0.1:1").unwrap(),
            kind: None,
            cpu: CpuSource::Pid(std::process::id()),
            metrics: None,
            duration_s: 1.0,
            scale: 1.0,
            credentials: None,
            threads: 1,
            baseline_s: BASELINE_S,
            workloads_max: None,
            skip: Vec::new(),
            weighting: Weighting::Absolute,
        };
        let e = calibrate(&opts, &|_| {}).unwrap_err().to_string();
        assert!(e.contains("Redis targets are not supported"), "{e}");
    }

    #[test]
    fn listening_sockets_are_found_by_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:F3D5 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 98765 1 0 100 0 0 10 0\n\
   1: 0100007F:F3D5 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 11111 1 0 20 4 30 10 -1\n\
   2: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 22222 1 0 100 0 0 10 0\n";
        // 0xF3D5 = 62421; the established connection on that port is not a listener.
        assert_eq!(listening_inodes(text, 62421), [98765]);
        assert_eq!(listening_inodes(text, 22), [22222]);
        assert!(listening_inodes(text, 80).is_empty());
    }

    #[test]
    fn our_own_listener_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port).unwrap(), std::process::id());
        drop(l);
        // Once closed the port is free, and a test running beside this one may take it at
        // once: only "not found" or "held by someone we cannot see" are certain.
        if let Err(e) = pid_listening_on(port) {
            let e = e.to_string();
            assert!(
                e.contains("no process listens") || e.contains("give --pid"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_scanner_splits_frames_heartbeats_and_commands() {
        let mut s = FrameScanner::default();
        // ActiveMQ's trailing EOL after NUL is not a heart-beat; the lone EOLs are.
        let stream = b"CONNECTED\nversion:1.1\n\n\0\n\nMESSAGE\ndestination:/q/a\n\nhello\0\n\r\nACK\nid:1\n\n\0";
        let mut total = Scanned::default();
        // Split anywhere: the counts do not change.
        for chunk in stream.chunks(3) {
            let x = s.scan(chunk);
            total.frames += x.frames;
            total.bytes += x.bytes;
            total.heartbeats += x.heartbeats;
            total.messages += x.messages;
            total.acks += x.acks;
        }
        assert_eq!(total.frames, 3);
        assert_eq!(total.heartbeats, 2);
        assert_eq!(total.messages, 1);
        assert_eq!(total.acks, 1);
        let sizes = "CONNECTED\nversion:1.1\n\n\0".len()
            + "MESSAGE\ndestination:/q/a\n\nhello\0".len()
            + "ACK\nid:1\n\n\0".len();
        assert_eq!(total.bytes, sizes as u64);
    }

    #[test]
    fn the_scanner_honours_content_length() {
        let mut s = FrameScanner::default();
        let mut stream = b"MESSAGE\ndestination:/t/x\ncontent-length:5\n\n".to_vec();
        stream.extend_from_slice(b"a\0b\0c\0");
        stream.extend_from_slice(b"\nSEND\ncontent-length:0\n\n\0");
        let mut frames = 0;
        let mut messages = 0;
        for chunk in stream.chunks(2) {
            let x = s.scan(chunk);
            frames += x.frames;
            messages += x.messages;
        }
        assert_eq!((frames, messages), (2, 1));
    }

    #[test]
    fn metrics_text_gives_the_work_counters() {
        let text = "# HELP stampede_work_events_total Core work\n\
            # TYPE stampede_work_events_total counter\n\
            stampede_work_events_total{broker=\"b\"} 17\n\
            stampede_work_deliveries_total{broker=\"b\"} 5\n\
            stampede_work_deliveries_total{broker=\"c\"} 2\n\
            stampede_connections 3\n";
        let w = parse_metrics(text).unwrap();
        assert_eq!((w.events, w.deliveries, w.frames_in), (17, 7, 0));
        assert_eq!(parse_metrics("stampede_connections 3\n"), None);
    }

    #[test]
    fn the_workloads_are_valid_scenarios() {
        let w = workloads(4.0, 1.0).unwrap();
        assert_eq!(w.len(), 19);
        // The churn workload kills half its nodes and starts them again, inside the run.
        let churn = w.last().unwrap();
        assert!(churn.name.starts_with("churn-"), "{}", churn.name);
        assert_eq!(churn.scenario.faults.len(), 1);
        assert_eq!(churn.scenario.faults[0].kind, FaultKind::CrashNodes);
        let w = workloads(8.0, 1.0).unwrap();
        assert_eq!(w.last().unwrap().scenario.faults.len(), 5);
        assert_eq!(w.iter().filter(|w| !w.fitted).count(), 1);
        for x in &w {
            x.scenario.validate().unwrap();
        }
        let mut some = workloads(4.0, 1.0).unwrap();
        skip_workloads(&mut some, &["fanout-800@40".into(), "fanout-800@60".into()]).unwrap();
        assert_eq!(some.len(), 17);
        assert!(!some.iter().any(|w| w.name.starts_with("fanout-800@40")));
        let e = skip_workloads(&mut some, &["fanout-900".into()]).unwrap_err();
        assert!(e.to_string().contains("--skip fanout-900"), "{e}");
        let e = skip_workloads(&mut some, &[String::new()]).unwrap_err();
        assert!(e.to_string().contains("no workload to fit"), "{e}");
        assert!(workloads(0.0, 1.0).is_err());
        assert!(workloads(1.0, 0.0).is_err());
    }
}
