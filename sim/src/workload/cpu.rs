//! The clients' CPU: simulated clients that spend time on what they read and write.
//!
//! Under turmoil a client handles any traffic in zero simulated time. A live run's
//! clients do not: the `stampede load` generator is one process whose worker threads
//! decode every MESSAGE its nodes receive, encode every reply and open every connection,
//! on the same machine as the broker. Eight hundred nodes that receive one broadcast are
//! served one after another, so the last one records its delivery milliseconds after the
//! first, and eight hundred nodes that fail over at once queue for the same cores.
//!
//! With `[clients]` in a scenario (a cost profile, as `stampede calibrate --clients-out`
//! fits it from the generator's own CPU, and a number of cores), every simulated client's
//! connection goes through a [`CpuNet`]: each connection opened or closed, and each
//! chunk read or written, is priced by the profile ([`Work`] counted by the calibration's
//! [`FrameScanner`], so a profile and the simulator count the same things), and waits
//! for the shared cores ([`ClientCpu`]). Bytes read are handed to the client when the CPU
//! has got through them; bytes written leave when it has produced them; a connection the
//! peer closed or reset is known to its client only when the CPU has handled the close, so
//! that 800 connections cut by one crash are noticed one after another. Costs far below
//! turmoil's tick (the scenario's `tick_ms`) accumulate in nanoseconds; a
//! wait shorter than half a tick is not taken, a longer one ends at the tick nearest its
//! end, as in the broker's cost model (`stampede_broker::server::cost`).
//!
//! Two service orders exist (`[clients] order`). `fifo`, the default, serves work first
//! come first served on the earliest free core. `random` gives work that arrives while
//! the cores are busy a random place (seeded) among the work still waiting, as one server
//! as fast as all the cores: a live generator's tokio workers do not serve their ready
//! tasks in the order the work arrived (each worker's local queue, the shared injection
//! queue, the I/O driver polled every so many tasks, work stealing), so in a failover
//! storm some clients reconnect at once and others wait for most of the storm. First come
//! first served instead finishes every client's first step before any client's second,
//! and all 800 reconnect at nearly the same late time (measured beside live in
//! `reports/comparisons/2026-12-07-failover-order/`). A job's end may then move later
//! when work is placed before it; its waiter follows it ([`Wait`]). A write within a
//! tick of a read handed over on the same stream takes the next place ([`Turn::Next`]):
//! live, the task that read CONNECTED writes its SUBSCRIBEs in the same poll.
//!
//! The model is of a test rig (all clients on one machine, as a live run has them), not of
//! a fleet, whose nodes each have a CPU of their own. Without `[clients]` nothing changes.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stampede_broker::core::Work;
use stampede_broker::net::{BoxFuture, BoxStream, Listener, Net, SharedNet};
use stampede_broker::server::cost::{Cores, CostProfile, DEFAULT_TICK};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::held::Held;
use crate::calibrate::{FrameScanner, Scanned};
use crate::scenario::ServiceOrder;

/// The clients' shared cores, in simulated time since the start of the simulation.
#[derive(Debug)]
pub struct ClientCpu {
    profile: CostProfile,
    cores: u32,
    queue: Mutex<Queue>,
    /// What was charged so far: the busy time (for the report) and the work counted (for
    /// the log).
    tally: Mutex<Tally>,
    /// The simulation's tick. A wait shorter than half of it is not taken, and a longer
    /// one ends half of it before its end (the nearest tick); a write within a tick of
    /// the client getting what it waited for on the same stream is the same task going
    /// on.
    tick: Duration,
}

/// How the cores serve what waits for them ([`ServiceOrder`]).
#[derive(Debug)]
enum Queue {
    /// When each core is next free; work goes to the earliest free.
    Fifo(Vec<Duration>),
    /// One server as fast as all the cores, with a random place for each new job among
    /// those not yet started.
    Random(Lottery),
}

/// The random-order queue: the job being served ends at `started_until`; `waiting` are
/// served after it in their order, each starting when the one before it ends.
#[derive(Debug)]
struct Lottery {
    rng: SmallRng,
    started_until: Duration,
    waiting: VecDeque<(Duration, Arc<Job>)>,
}

/// Where new work goes in the random-order queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    /// A random place among the waiting work.
    Any,
    /// Next: the task that is running goes on with it (a live task writes what it has
    /// just read an answer to in the same poll, without waiting for its turn again).
    Next,
}

/// A piece of charged work: when it will be done. First come first served fixes that
/// when it is charged; in random order work that arrives later may take a place before
/// it, so that time only moves later.
#[derive(Debug)]
struct Job {
    done_ns: AtomicU64,
}

impl Job {
    fn at(done: Duration) -> Arc<Job> {
        let job = Arc::new(Job {
            done_ns: AtomicU64::new(0),
        });
        job.set_done(done);
        job
    }

    fn done(&self) -> Duration {
        Duration::from_nanos(self.done_ns.load(Ordering::Relaxed))
    }

    fn set_done(&self, at: Duration) {
        self.done_ns.store(
            u64::try_from(at.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl Lottery {
    /// Queues `cost` (already divided among the cores) arriving at `now`, `wakeup` more if
    /// it finds the cores idle.
    fn add(&mut self, now: Duration, cost: Duration, wakeup: Duration, turn: Turn) -> Arc<Job> {
        // Jobs whose turn has come are being served, or are done: their times are fixed.
        while self.started_until <= now {
            let Some((_, job)) = self.waiting.pop_front() else {
                break;
            };
            self.started_until = job.done();
        }
        if self.waiting.is_empty() && self.started_until <= now {
            // Idle: served at once, after the wake-up.
            self.started_until = now + wakeup + cost;
            return Job::at(self.started_until);
        }
        let job = Job::at(Duration::ZERO);
        let place = match turn {
            Turn::Next => 0,
            Turn::Any => self.rng.random_range(0..=self.waiting.len()),
        };
        self.waiting.insert(place, (cost, job.clone()));
        let mut t = match place {
            0 => self.started_until,
            _ => self.waiting[place - 1].1.done(),
        };
        for (cost, later) in self.waiting.iter().skip(place) {
            t += *cost;
            later.set_done(t);
        }
        job
    }
}

impl ClientCpu {
    /// `cores` cores (at least one) that price work by `profile`, served first come first
    /// served.
    pub fn new(profile: CostProfile, cores: u32) -> Arc<ClientCpu> {
        Self::with_order(profile, cores, ServiceOrder::Fifo, 0, DEFAULT_TICK)
    }

    /// `cores` cores that price work by `profile` and serve it in `order` (a random order
    /// draws from `seed`), in a simulation whose clock advances by `tick`.
    pub fn with_order(
        profile: CostProfile,
        cores: u32,
        order: ServiceOrder,
        seed: u64,
        tick: Duration,
    ) -> Arc<ClientCpu> {
        let cores = cores.max(1);
        let queue = match order {
            ServiceOrder::Fifo => Queue::Fifo(vec![Duration::ZERO; cores as usize]),
            ServiceOrder::Random => Queue::Random(Lottery {
                rng: SmallRng::seed_from_u64(seed),
                started_until: Duration::ZERO,
                waiting: VecDeque::new(),
            }),
        };
        Arc::new(ClientCpu {
            profile,
            cores,
            queue: Mutex::new(queue),
            tally: Mutex::new(Tally::default()),
            tick,
        })
    }

    /// The clients' cores a scenario's `[clients]` describes, if it has a profile.
    pub fn for_scenario(scenario: &crate::scenario::Scenario) -> Option<Arc<ClientCpu>> {
        let c = scenario.clients.as_ref()?;
        let profile = c.cost_profile.clone()?;
        let seed = crate::seed::derive(scenario.seed, "clients/cpu");
        Some(ClientCpu::with_order(
            profile,
            c.cores,
            c.order,
            seed,
            scenario.tick(),
        ))
    }

    /// What `work` costs by the profile.
    pub fn cost(&self, work: &Work) -> Duration {
        Duration::from_nanos(self.profile.cost_ns(work).round() as u64)
    }

    fn wakeup(&self) -> Duration {
        Duration::from_nanos(self.profile.wakeups_ns.round() as u64)
    }

    /// Queues `cost` of work arriving at `now`; returns when it is done (as things stand:
    /// in random order, work queued later may still move it).
    pub fn charge_at(&self, now: Duration, cost: Duration) -> Duration {
        if cost.is_zero() {
            return now;
        }
        self.enqueue(now, cost, Turn::Any, &mut Task::default())
            .done()
    }

    /// Queues `cost` arriving at `now` in the cores' order (`turn` in random order only).
    /// First come first served, it starts no earlier than `task` (see [`Task`]).
    fn enqueue(&self, now: Duration, cost: Duration, turn: Turn, task: &mut Task) -> Arc<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *queue {
            Queue::Fifo(free) => {
                let done = self.add_fifo(free, now.max(task.free), cost);
                task.free = done;
                Job::at(done)
            }
            Queue::Random(lottery) => self.add_random(lottery, now, cost, turn),
        }
    }

    /// First come first served: on the core free soonest, or, of those already free by
    /// `now`, the one that became free last (work that must wait for its task leaves the
    /// cores free earlier to others).
    fn add_fifo(&self, free: &mut [Duration], now: Duration, cost: Duration) -> Duration {
        let core = (0..free.len())
            .filter(|c| free[*c] <= now)
            .max_by_key(|c| free[*c])
            .unwrap_or_else(|| earliest_free(free));
        // A core that had finished is woken (see `CostProfile::wakeups_ns`).
        let woken = free[core] < now;
        let cost = if woken { cost + self.wakeup() } else { cost };
        {
            let mut t = self.lock_tally();
            t.busy += cost;
            t.wakeups += u64::from(woken);
        }
        let done = free[core].max(now) + cost;
        free[core] = done;
        done
    }

    fn add_random(
        &self,
        lottery: &mut Lottery,
        now: Duration,
        cost: Duration,
        turn: Turn,
    ) -> Arc<Job> {
        self.lock_tally().busy += cost;
        lottery.add(now, cost / self.cores, self.wakeup() / self.cores, turn)
    }

    /// Charges `work` that goes on from work just done (the same task, still running):
    /// it starts now, ahead of what waits for the cores, as the broker's work does on
    /// shared cores (the work waiting is pushed back by as much). Returns the wait before
    /// its result may be used, if there is one worth taking.
    fn charge_continuing(&self, work: &Work, task: &mut Task) -> Option<Wait> {
        self.count(work);
        let cost = self.cost(work);
        if cost.is_zero() {
            return None;
        }
        let now = now();
        let job = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *queue {
                Queue::Fifo(free) => {
                    go_first(free, now, cost);
                    self.lock_tally().busy += cost;
                    task.free = task.free.max(now + cost);
                    Job::at(now + cost)
                }
                Queue::Random(lottery) => self.add_random(lottery, now, cost, Turn::Next),
            }
        };
        Wait::worth_taking(job, now, self.tick / 2)
    }

    /// What was charged so far.
    pub fn tally(&self) -> Tally {
        *self.lock_tally()
    }

    fn lock_tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, work: &Work) {
        let mut t = self.lock_tally();
        t.io_calls += work.io_calls;
        t.frames_read += work.frames_out;
        t.frames_written += work.frames_in;
    }

    /// The CPU time charged so far.
    pub fn busy(&self) -> Duration {
        self.lock_tally().busy
    }

    /// Charges `work` of `task` now, in `turn` (random order only); returns the wait
    /// before its result may be used, if there is one worth taking (see
    /// [`ClientCpu::tick`]).
    fn charge(&self, work: &Work, turn: Turn, task: &mut Task) -> Option<Wait> {
        self.count(work);
        let now = now();
        let cost = self.cost(work);
        if cost.is_zero() {
            return None;
        }
        Wait::worth_taking(self.enqueue(now, cost, turn, task), now, self.tick / 2)
    }
}

/// What the clients' CPU was charged: the busy time, and the work counted: I/O calls
/// (chunks read or written), frames read and written, and wake-ups of an idle core (first
/// come first served only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub busy: Duration,
    pub io_calls: u64,
    pub frames_read: u64,
    pub frames_written: u64,
    pub wakeups: u64,
}

/// The one task a connection's work runs on. A live client's connection is served by one
/// task (its driver: reading, decoding, encoding and writing in turn), which runs on one
/// core at a time, so however many cores are free, a connection's work is done one piece
/// after another: a request/reply client's one connection, writing 24,000 requests and
/// reading 24,000 replies a second, is limited by one core, not by the machine. First
/// come first served only (in random order, work is one server as fast as all the cores).
#[derive(Clone, Copy, Debug, Default)]
struct Task {
    /// When its last piece of work is done.
    free: Duration,
}

/// A broker on the clients' machine (`[clients] share_with_brokers`). Its core task's work
/// goes first: it starts when the task is ready for it, and the clients' work that the
/// earliest free core would have done next waits for it. A live scheduler runs a woken
/// thread that has had less than its share of the CPU (the broker's, serving one event at
/// a time) ahead of threads that have had more (the generator's, busy with a backlog);
/// first come first served instead held each broker event behind every client job
/// already queued, so that a broker with a thousand small events to do waited out the
/// clients' whole backlog a thousand times. Work the clients had been promised keeps its
/// time; the machine's capacity is the same either way.
impl Cores for ClientCpu {
    fn reserve(&self, earliest: tokio::time::Instant, cost: Duration) -> tokio::time::Instant {
        // The broker's clock and the simulation's: the same instant, two origins.
        let at = tokio::time::Instant::now();
        let start = (now() + earliest.saturating_duration_since(at))
            .saturating_sub(at.saturating_duration_since(earliest));
        self.take_first(start, cost);
        earliest
    }
}

impl ClientCpu {
    /// Takes `cost` of the earliest free core from `start` (simulated time), ahead of the
    /// clients' work still to come there (see the [`Cores`] implementation).
    fn take_first(&self, start: Duration, cost: Duration) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Queue::Fifo(free) = &mut *queue {
            go_first(free, start, cost);
        }
        // (The scenario refuses `share_with_brokers` with a random order.)
    }
}

/// The core that is free first.
fn earliest_free(free: &[Duration]) -> usize {
    (0..free.len()).min_by_key(|i| free[*i]).unwrap_or(0)
}

/// Takes `cost` of the earliest free core from `start`, ahead of the work still to come
/// there (which is pushed back by as much).
fn go_first(free: &mut [Duration], start: Duration, cost: Duration) {
    let core = earliest_free(free);
    free[core] = free[core].max(start) + cost;
}

/// Waits until a [`Job`] is done (to the nearest tick), following it when work placed
/// before it moves its end (random order).
struct Wait {
    job: Arc<Job>,
    /// Made at the first poll (inside the runtime).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The end the sleep is set for.
    armed_for: Option<Duration>,
    /// Half a tick: the wait ends this much before the job does (the nearest tick).
    lead: Duration,
}

impl Wait {
    /// A wait for `job`, charged at `now`, if it is worth taking: if it ends more than
    /// `lead` (half a tick) after `now`.
    fn worth_taking(job: Arc<Job>, now: Duration, lead: Duration) -> Option<Wait> {
        (job.done().saturating_sub(now) > lead).then(|| Wait {
            job,
            sleep: None,
            armed_for: None,
            lead,
        })
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let w = self.get_mut();
        loop {
            let target = w.job.done().saturating_sub(w.lead);
            let now = now();
            if now >= target {
                return Poll::Ready(());
            }
            let deadline = tokio::time::Instant::now() + (target - now);
            let sleep = w
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if w.armed_for != Some(target) {
                sleep.as_mut().reset(deadline);
                w.armed_for = Some(target);
            }
            ready!(sleep.as_mut().poll(cx));
            if w.armed_for == Some(w.job.done().saturating_sub(w.lead)) {
                // Fired for the end that still holds: done to the nearest tick.
                return Poll::Ready(());
            }
        }
    }
}

/// Reads what `inner` holds now, without waiting: the segments that arrived since its
/// last read (an end or an error is left for the next read, which finds it again).
fn gather(inner: &mut BoxStream, cx: &mut Context<'_>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut rb = ReadBuf::new(&mut chunk);
        match Pin::new(&mut *inner).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => got.extend_from_slice(rb.filled()),
            _ => return got,
        }
    }
}

/// Simulated time since the start of the simulation.
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// What a chunk of one direction of a client's stream costs, as the broker would count it:
/// what clients write is the broker's `*_in`, what they read its `*_out`.
fn work_of(s: Scanned, written: bool) -> Work {
    let mut w = Work {
        heartbeats: s.heartbeats,
        io_calls: 1,
        ..Work::default()
    };
    if written {
        w.frames_in = s.frames;
        w.bytes_in = s.bytes;
        w.acks = s.acks;
    } else {
        w.frames_out = s.frames;
        w.bytes_out = s.bytes;
        w.deliveries = s.messages;
    }
    w
}

/// `inner` with every connection's work charged to a [`ClientCpu`].
pub struct CpuNet {
    inner: SharedNet,
    cpu: Arc<ClientCpu>,
}

impl CpuNet {
    /// Clients of `inner` that spend `cpu`'s time.
    pub fn shared(inner: SharedNet, cpu: Arc<ClientCpu>) -> SharedNet {
        Arc::new(CpuNet { inner, cpu })
    }
}

impl Net for CpuNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        self.inner.bind(addr)
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let mut task = Task::default();
            if let Some(wait) = self.cpu.charge(&one_connection(), Turn::Any, &mut task) {
                wait.await;
            }
            let inner = self.inner.connect(addr).await?;
            Ok(Box::new(CpuStream {
                inner,
                cpu: self.cpu.clone(),
                read: FrameScanner::default(),
                written: FrameScanner::default(),
                held: None,
                topped_up: false,
                write_stall: None,
                prepaid: 0,
                ending: None,
                close_charged: false,
                resumed_at: None,
                task,
            }) as BoxStream)
        })
    }

    fn bind_udp<'a>(
        &'a self,
        addr: &'a str,
        group: Option<std::net::Ipv4Addr>,
    ) -> BoxFuture<'a, io::Result<Box<dyn stampede_broker::net::Datagrams>>> {
        self.inner.bind_udp(addr, group)
    }
}

/// A client's connection whose reads and writes wait for the clients' CPU.
struct CpuStream {
    inner: BoxStream,
    cpu: Arc<ClientCpu>,
    read: FrameScanner,
    written: FrameScanner,
    /// Bytes read that the CPU has not got through yet, and when it will have.
    held: Option<Held>,
    /// Whether the held bytes have been joined by what arrived while they waited.
    topped_up: bool,
    /// A write waiting for the CPU to have produced its bytes.
    write_stall: Option<Wait>,
    /// Leading bytes of the next write already charged (a write that went out in part).
    prepaid: usize,
    /// The end of the stream (end of file, or the error) the CPU has not got through yet:
    /// a live client learns that its broker has gone only when a worker thread has
    /// handled the socket's close, so 800 connections cut at once are noticed one after
    /// another, not all at the same instant.
    ending: Option<(Wait, Option<io::Error>)>,
    /// Whether the close has been charged (at the end of the stream, or when dropped).
    close_charged: bool,
    /// When the client last got what it waited for on this stream (a read handed over, a
    /// write let through): a write soon after continues that work.
    resumed_at: Option<Duration>,
    /// The connection's task, whose work is done in turn.
    task: Task,
}

/// What opening or closing one connection costs (the broker's `connections` counts both).
fn one_connection() -> Work {
    Work {
        connections: 1,
        ..Work::default()
    }
}

impl Drop for CpuStream {
    fn drop(&mut self) {
        // Closing costs as opening does; nobody waits for a close the client chose.
        if !self.close_charged {
            let cpu = &self.cpu;
            cpu.charge_at(now(), cpu.cost(&one_connection()));
        }
    }
}

impl AsyncRead for CpuStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(held) = &mut this.held {
            ready!(held.poll_due(cx));
            if !this.topped_up {
                // The CPU has got to this read: as a live read issued now would, it takes
                // what arrived while the read waited for the CPU too, in the same I/O
                // call (only those bytes' frames are charged, at once, ahead of the
                // queue: the same task goes on decoding). Under load, a node whose
                // segments queue behind a busy CPU reads several at a time.
                this.topped_up = true;
                let more = gather(&mut this.inner, cx);
                if !more.is_empty() {
                    let mut work = work_of(this.read.scan(&more), false);
                    work.io_calls = 0;
                    let wait = this.cpu.charge_continuing(&work, &mut this.task);
                    let waits = wait.is_some();
                    held.top_up(&more, wait);
                    if waits {
                        // Polls the new timer, so that it wakes this read.
                        return Pin::new(this).poll_read(cx, buf);
                    }
                }
            }
            if held.hand_over(buf) {
                this.held = None;
            }
            this.resumed_at = Some(now());
            return Poll::Ready(Ok(()));
        }
        if let Some((until, _)) = &mut this.ending {
            ready!(Pin::new(until).poll(cx));
            let error = this.ending.take().and_then(|(_, e)| e);
            return Poll::Ready(error.map_or(Ok(()), Err));
        }
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        let at_end = match &result {
            Err(_) => true,
            Ok(()) => buf.filled().len() == before && buf.remaining() > 0,
        };
        if !at_end {
            // One read takes all that has arrived, as a live read takes what the socket
            // holds: the simulated network hands over one segment per read, so what
            // queued while the CPU was busy is gathered into this chunk (an end or an
            // error is left for the next read, which finds it again).
            while buf.remaining() > 0 {
                let had = buf.filled().len();
                match Pin::new(&mut this.inner).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) if buf.filled().len() > had => {}
                    _ => break,
                }
            }
        }
        if at_end && !this.close_charged {
            // The peer closed or reset the connection: the client knows once the CPU has
            // handled the close.
            this.close_charged = true;
            if let Some(wait) = this
                .cpu
                .charge(&one_connection(), Turn::Any, &mut this.task)
            {
                this.ending = Some((wait, result.err()));
                return Pin::new(this).poll_read(cx, buf);
            }
        }
        result?;
        let scanned = this.read.scan(&buf.filled()[before..]);
        if let Some(wait) = this
            .cpu
            .charge(&work_of(scanned, false), Turn::Any, &mut this.task)
        {
            this.held = Some(Held::take(buf, before, wait));
            this.topped_up = false;
            // Polls the timer, so that it wakes this read.
            return Pin::new(this).poll_read(cx, buf);
        }
        this.resumed_at = Some(now());
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CpuStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_stall.is_none() && this.prepaid < buf.len() {
            // Not charged yet: what this write adds past the part already paid for.
            let fresh = &buf[this.prepaid..];
            let scanned = this.written.scan(fresh);
            this.prepaid = buf.len();
            // Written right after a read was handed over: the same task's poll goes on.
            let turn = match this.resumed_at {
                Some(at) if now().saturating_sub(at) < this.cpu.tick => Turn::Next,
                _ => Turn::Any,
            };
            if let Some(wait) = this
                .cpu
                .charge(&work_of(scanned, true), turn, &mut this.task)
            {
                this.write_stall = Some(wait);
            }
        }
        if let Some(stall) = &mut this.write_stall {
            ready!(Pin::new(stall).poll(cx));
            this.write_stall = None;
            this.resumed_at = Some(now());
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        // What did not go out is paid for: the caller writes it again next.
        this.prepaid = buf.len().saturating_sub(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A turmoil run: host "server" writes `chunks` on the first connection, each after
    /// its delay; the client reads once through a [`CpuNet`] on `cpu`. Returns the bytes
    /// that one read took.
    fn first_read(cpu: Arc<ClientCpu>, chunks: &'static [(u64, &'static [u8])]) -> usize {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sim = turmoil::Builder::new()
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(1))
            .build();
        sim.host("server", move || async move {
            let l = turmoil::net::TcpListener::bind("0.0.0.0:61613").await?;
            let (mut s, _) = l.accept().await?;
            for (delay_ms, bytes) in chunks {
                tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
                s.write_all(bytes).await?;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        });
        let got = Arc::new(AtomicU64::new(0));
        let out = got.clone();
        sim.client("client", async move {
            let net = CpuNet::shared(Arc::new(crate::net::TurmoilNet), cpu);
            let mut s = net.connect("server:61613").await?;
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await?;
            out.store(n as u64, Ordering::Relaxed);
            Ok(())
        });
        sim.run().unwrap();
        got.load(Ordering::Relaxed) as usize
    }

    #[test]
    fn a_connections_work_is_done_one_piece_after_another_however_many_cores_are_free() {
        let ms = Duration::from_millis;
        let cpu = ClientCpu::new(CostProfile::default(), 2);
        let mut one = Task::default();
        let mut other = Task::default();
        // Two cores: two connections' work runs side by side…
        assert_eq!(cpu.enqueue(ms(0), ms(3), Turn::Any, &mut one).done(), ms(3));
        assert_eq!(
            cpu.enqueue(ms(0), ms(3), Turn::Any, &mut other).done(),
            ms(3)
        );
        // …but one connection's next piece waits for its last, with a core free at 3 ms.
        assert_eq!(cpu.enqueue(ms(1), ms(2), Turn::Any, &mut one).done(), ms(5));
        assert_eq!(cpu.enqueue(ms(1), ms(2), Turn::Any, &mut one).done(), ms(7));
        // The other core was free from 3 ms: the other connection's work starts then.
        assert_eq!(
            cpu.enqueue(ms(1), ms(1), Turn::Any, &mut other).done(),
            ms(4)
        );
    }

    #[test]
    fn a_read_that_waited_for_the_cpu_takes_what_arrived_meanwhile() {
        // Each I/O call costs 5 ms: the first byte's read waits for the CPU until about
        // 5 ms after it arrived, and the second, written 2 ms after the first, arrives
        // meanwhile. A live read issued then takes both, in one call.
        let p = CostProfile {
            io_calls_ns: 5_000_000.0,
            ..CostProfile::default()
        };
        let cpu = ClientCpu::new(p.clone(), 1);
        assert_eq!(first_read(cpu.clone(), &[(0, b"\n"), (2, b"\n")]), 2);
        assert_eq!(cpu.busy(), Duration::from_millis(5), "one I/O call");
        // With a free CPU the first read is over before the second byte comes.
        let free = ClientCpu::new(CostProfile::default(), 1);
        assert_eq!(first_read(free, &[(0, b"\n"), (2, b"\n")]), 1);
        // What comes after the CPU got to the read is the next read's.
        let cpu = ClientCpu::new(p, 1);
        assert_eq!(first_read(cpu, &[(0, b"\n"), (20, b"\n")]), 1);
    }

    fn profile(frames_out_ns: f64, connections_ns: f64) -> CostProfile {
        CostProfile {
            frames_out_ns,
            connections_ns,
            ..CostProfile::default()
        }
    }

    #[test]
    fn work_waits_for_the_earliest_free_core() {
        let cpu = ClientCpu::new(profile(0.0, 0.0), 2);
        let ms = Duration::from_millis;
        // Two cores: the first two jobs start at once, the third waits for the first.
        assert_eq!(cpu.charge_at(ms(0), ms(3)), ms(3));
        assert_eq!(cpu.charge_at(ms(0), ms(5)), ms(5));
        assert_eq!(cpu.charge_at(ms(1), ms(2)), ms(5));
        // An idle core starts work when it arrives, not when the core went idle.
        assert_eq!(cpu.charge_at(ms(10), ms(1)), ms(11));
        assert_eq!(cpu.busy(), ms(11));
    }

    #[test]
    fn work_that_finds_a_core_idle_pays_a_wakeup() {
        let p = CostProfile {
            wakeups_ns: 2_000_000.0,
            ..CostProfile::default()
        };
        let cpu = ClientCpu::new(p, 1);
        let ms = Duration::from_millis;
        // Idle at 1 ms (the core was free since 0): 2 ms wake-up, then 1 ms of work.
        assert_eq!(cpu.charge_at(ms(1), ms(1)), ms(4));
        // Busy: queued behind, no wake-up.
        assert_eq!(cpu.charge_at(ms(2), ms(1)), ms(5));
        // Idle again later.
        assert_eq!(cpu.charge_at(ms(10), ms(1)), ms(13));
    }

    #[test]
    fn random_order_serves_the_same_work_in_a_seeded_order() {
        let ms = Duration::from_millis;
        let run = |seed: u64| {
            let mut lottery = Lottery {
                rng: SmallRng::seed_from_u64(seed),
                started_until: Duration::ZERO,
                waiting: VecDeque::new(),
            };
            // Ten 1 ms jobs at once.
            let jobs: Vec<_> = (0..10)
                .map(|_| lottery.add(ms(0), ms(1), Duration::ZERO, Turn::Any))
                .collect();
            jobs.iter().map(|j| j.done()).collect::<Vec<_>>()
        };
        let a = run(7);
        // The first finds the server idle and is served at once; the others take every
        // slot once, so the last ends when all the work is done.
        assert_eq!(a[0], ms(1));
        let mut ends = a.clone();
        ends.sort();
        assert_eq!(ends, (1..=10).map(ms).collect::<Vec<_>>());
        // Not first come first served (for this seed), and the same order for the same seed.
        assert_ne!(a, ends, "seed 7 drew arrival order");
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
    }

    #[test]
    fn random_order_moves_waiting_work_later_and_never_started_work() {
        let ms = Duration::from_millis;
        let mut lottery = Lottery {
            rng: SmallRng::seed_from_u64(1),
            started_until: Duration::ZERO,
            waiting: VecDeque::new(),
        };
        let running = lottery.add(ms(0), ms(5), Duration::ZERO, Turn::Any);
        let waiting = lottery.add(ms(1), ms(5), Duration::ZERO, Turn::Any);
        assert_eq!((running.done(), waiting.done()), (ms(5), ms(10)));
        // Many later arrivals: the running job keeps its end; the waiting one can only
        // move later, by whole jobs placed before it.
        for _ in 0..20 {
            lottery.add(ms(2), ms(1), Duration::ZERO, Turn::Any);
        }
        assert_eq!(running.done(), ms(5));
        assert!(waiting.done() >= ms(10) && waiting.done() <= ms(30));
        // Once the queue has drained, new work finds the server idle and pays a wake-up.
        let late = lottery.add(ms(100), ms(1), ms(2), Turn::Any);
        assert_eq!(late.done(), ms(103));
    }

    #[test]
    fn a_chunk_costs_its_frames_by_the_profile() {
        let cpu = ClientCpu::new(profile(2_000.0, 50_000.0), 1);
        let mut scanner = FrameScanner::default();
        let s = scanner.scan(b"MESSAGE\ndestination:/q\n\nab\0\nMESSAGE\n\ncd\0");
        assert_eq!(s.frames, 2);
        // Reads are the broker's frames out: 2 x 2 us.
        assert_eq!(cpu.cost(&work_of(s, false)), Duration::from_micros(4));
        // Writing the same frames is the broker's frames in: free by this profile.
        assert_eq!(cpu.cost(&work_of(s, true)), Duration::ZERO);
        let opened = Work {
            connections: 1,
            ..Work::default()
        };
        assert_eq!(cpu.cost(&opened), Duration::from_micros(50));
        // Each chunk is one I/O call, however many frames it holds.
        let calls = ClientCpu::new(
            CostProfile {
                io_calls_ns: 7_000.0,
                ..CostProfile::default()
            },
            1,
        );
        assert_eq!(calls.cost(&work_of(s, false)), Duration::from_micros(7));
    }

    #[test]
    fn a_broker_on_the_clients_cores_goes_first_and_the_clients_wait() {
        let cpu = ClientCpu::new(profile(0.0, 0.0), 2);
        let ms = Duration::from_millis;
        // The clients keep both cores busy, to 3 and 5 ms.
        cpu.charge_at(ms(0), ms(3));
        cpu.charge_at(ms(0), ms(5));
        // The broker's 2 ms of work, ready now, starts now (its meter is not held up: the
        // trait's `reserve` gives back the instant it was ready) ...
        let t = tokio::time::Instant::now();
        assert_eq!(cpu.reserve(t, ms(2)), t);
        // ... and the clients' next job, which would have had the first core at 3 ms,
        // has it at 5 ms: it ends at 6 ms.
        assert_eq!(cpu.charge_at(ms(0), ms(1)), ms(6));
        // Broker work ready later, on a core idle by then, takes it from then.
        cpu.take_first(ms(20), ms(1));
        assert_eq!(
            cpu.charge_at(ms(20), ms(2)),
            ms(22),
            "the other core is free"
        );
        assert_eq!(
            cpu.charge_at(ms(20), ms(2)),
            ms(23),
            "behind the broker's 1 ms"
        );
    }
}
