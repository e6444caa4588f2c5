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
//! for the earliest free of the shared cores ([`ClientCpu`], first come first served).
//! Bytes read are handed to the client when the CPU has got through them; bytes written
//! leave when it has produced them. Costs far below turmoil's 1 ms tick accumulate in
//! nanoseconds; a wait shorter than half a tick is not taken, a longer one ends at the
//! tick nearest its end, as in the broker's cost model (`stampede_broker::server::cost`).
//!
//! The model is of a test rig (all clients on one machine, as a live run has them), not of
//! a fleet, whose nodes each have a CPU of their own. Without `[clients]` nothing changes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use stampede_broker::core::Work;
use stampede_broker::net::{BoxFuture, BoxStream, Listener, Net, SharedNet};
use stampede_broker::server::cost::CostProfile;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::held::Held;
use crate::calibrate::{FrameScanner, Scanned};

/// A wait shorter than this is not taken; a longer one ends this much before its end
/// (half of turmoil's 1 ms tick: the nearest tick).
const RELEASE_LEAD: Duration = Duration::from_micros(500);

/// The clients' shared cores: when each is next free, in simulated time since the start
/// of the simulation.
#[derive(Debug)]
pub struct ClientCpu {
    profile: CostProfile,
    free_at: Mutex<Vec<Duration>>,
    /// Busy time charged so far (for the report).
    busy: Mutex<Duration>,
}

impl ClientCpu {
    /// `cores` cores (at least one) that price work by `profile`.
    pub fn new(profile: CostProfile, cores: u32) -> Arc<ClientCpu> {
        Arc::new(ClientCpu {
            profile,
            free_at: Mutex::new(vec![Duration::ZERO; cores.max(1) as usize]),
            busy: Mutex::new(Duration::ZERO),
        })
    }

    /// What `work` costs by the profile.
    pub fn cost(&self, work: &Work) -> Duration {
        Duration::from_nanos(self.profile.cost_ns(work).round() as u64)
    }

    /// Queues `cost` of work arriving at `now` on the earliest free core; returns when it
    /// is done.
    pub fn charge_at(&self, now: Duration, cost: Duration) -> Duration {
        if cost.is_zero() {
            return now;
        }
        let mut free = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let core = (0..free.len()).min_by_key(|i| free[*i]).unwrap_or(0);
        // A core that had finished is woken (see `CostProfile::wakeups_ns`).
        let cost = if free[core] < now {
            cost + Duration::from_nanos(self.profile.wakeups_ns.round() as u64)
        } else {
            cost
        };
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) += cost;
        let done = free[core].max(now) + cost;
        free[core] = done;
        done
    }

    /// The CPU time charged so far.
    pub fn busy(&self) -> Duration {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges `work` now; returns the wait before its result may be used, if it is worth
    /// taking (see [`RELEASE_LEAD`]).
    fn charge(&self, work: &Work) -> Option<Duration> {
        let now = now();
        let done = self.charge_at(now, self.cost(work));
        let wait = done.saturating_sub(now);
        (wait > RELEASE_LEAD).then(|| wait - RELEASE_LEAD)
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
            let opened = Work {
                connections: 1,
                ..Work::default()
            };
            if let Some(wait) = self.cpu.charge(&opened) {
                tokio::time::sleep(wait).await;
            }
            let inner = self.inner.connect(addr).await?;
            Ok(Box::new(CpuStream {
                inner,
                cpu: self.cpu.clone(),
                read: FrameScanner::default(),
                written: FrameScanner::default(),
                held: None,
                write_stall: None,
                prepaid: 0,
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
    /// A write waiting for the CPU to have produced its bytes.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Leading bytes of the next write already charged (a write that went out in part).
    prepaid: usize,
}

impl Drop for CpuStream {
    fn drop(&mut self) {
        // Closing costs as opening does (the broker's `connections` counts both); nobody
        // waits for it.
        let closed = Work {
            connections: 1,
            ..Work::default()
        };
        self.cpu.charge(&closed);
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
            if ready!(held.poll_hand_over(cx, buf)) {
                this.held = None;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let scanned = this.read.scan(&buf.filled()[before..]);
        if let Some(wait) = this.cpu.charge(&work_of(scanned, false)) {
            this.held = Some(Held::take(buf, before, wait));
            // Polls the timer, so that it wakes this read.
            return Pin::new(this).poll_read(cx, buf);
        }
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
            if let Some(wait) = this.cpu.charge(&work_of(scanned, true)) {
                this.write_stall = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
        if let Some(sleep) = &mut this.write_stall {
            ready!(sleep.as_mut().poll(cx));
            this.write_stall = None;
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
    }
}
