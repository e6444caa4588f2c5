//! One node's network cable and process: a [`Net`] wrapper that an `isolate-nodes` fault
//! can cut and a `crash-nodes` fault can kill.
//!
//! Turmoil's faults act on whole hosts, and a rack host carries hundreds of nodes; this
//! cuts single nodes. While a node's link is cut, its connects fail at once (as across a
//! turmoil `partition`), and every connection it had when the cut came is severed for
//! good: nothing it writes leaves (the bytes vanish, as packets into a partition), and
//! nothing more is read from it (what the broker sends waits in the connection until the
//! broker gives up, as behind a silent peer). The node notices through its heart-beat
//! read timeout if it has one, like a real node whose cable was pulled; without one it
//! notices at its first read or write after the cable is back, which fails with a reset
//! (the broker closed its end meanwhile). Once the link is connected again its new
//! connections work.
//!
//! A killed node is a crashed `mcollectived`: its kernel closes its connections at once
//! (the broker sees them end), nothing more is read or written on them, and connects fail
//! until it is started again. The node's task watches [`Link::lives`] to stop and start
//! the process itself.
//!
//! An `isolate-nodes` fault with `from` brokers cuts only the node's path to those
//! brokers (a firewall rule, a broken route): connects to them fail and connections to
//! them are severed as above, while its connections to other brokers carry on. Each
//! [`Link`] has one such path per broker of the scenario, named as the node's server
//! pool names it (a host in the simulator, `host:port` live).
//!
//! A `packet-loss` fault loses a share of the segments on the node's cable (or on its
//! paths to some brokers). Turmoil's TCP has no retransmission, so a lost segment would
//! wedge the stream for good; here, as real TCP recovers it, a loss becomes a delay: the
//! segment, and everything behind it on that connection (TCP delivers in order), arrives
//! one retransmission timeout later (`rto_ms`, 200 ms by default: Linux's minimum), twice
//! that more for each retransmission lost too. Reads and writes on the node's side are
//! both delayed, so both directions of the link lose. Segments are counted per read or
//! write, at 1,460 bytes (an Ethernet MSS) each; draws come from the node's seed.
//!
//! The same wrapper runs live (over `TokioNet`), so that `isolate-nodes` is applied to the
//! generator's own nodes there too.

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use stampede_broker::net::{BoxFuture, BoxStream, Datagrams, Listener, Net, SharedNet};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::held::Held;

/// Whether a node's process runs, and how many times it has died.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Life {
    /// The process is down (crashed, not started again yet).
    pub dead: bool,
    /// How many times it has died.
    pub deaths: u64,
}

/// The bytes of one TCP segment (an Ethernet MSS): loss is drawn per segment.
const SEGMENT_BYTES: usize = 1460;

/// Retransmissions of one segment that can be lost in a row before it gets through
/// (the delay is then 63 retransmission timeouts).
const RETRANSMISSIONS_LOST_MAX: u32 = 5;

/// One path that a fault can cut or make lossy: the whole cable, or the way to one
/// broker.
#[derive(Debug, Default)]
struct Cable {
    cut: AtomicBool,
    cuts: AtomicU64,
    /// Segments lost, per million (`packet-loss`).
    loss_ppm: AtomicU32,
    /// The retransmission timeout that recovers a lost segment, in milliseconds.
    rto_ms: AtomicU64,
}

/// How lossy a connection's way is: segments lost per million, and the retransmission
/// timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// Segments lost, per million (0: none).
    pub ppm: u32,
    /// Retransmission timeout, in milliseconds.
    pub rto_ms: u64,
}

impl Cable {
    fn cut(&self) {
        if !self.cut.swap(true, Ordering::Relaxed) {
            self.cuts.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn connect(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }

    fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }

    fn set_loss(&self, loss: Loss) {
        self.rto_ms.store(loss.rto_ms, Ordering::Relaxed);
        self.loss_ppm.store(loss.ppm, Ordering::Relaxed);
    }

    fn loss(&self) -> Loss {
        Loss {
            ppm: self.loss_ppm.load(Ordering::Relaxed),
            rto_ms: self.rto_ms.load(Ordering::Relaxed),
        }
    }
}

/// Whether `addr` (what a node connects to: `host:port`) is broker `name` (a host, or
/// `host:port`).
fn is_broker(name: &str, addr: &str) -> bool {
    addr == name
        || addr
            .strip_prefix(name)
            .is_some_and(|port| port.starts_with(':'))
}

/// Whether a node's cable is pulled (and how many times it has been), or only its paths
/// to some brokers, and whether its process runs.
#[derive(Default)]
pub struct Link {
    /// The whole cable.
    cable: Cable,
    /// The paths to single brokers, by name.
    paths: Vec<(String, Cable)>,
    /// Whether the node's process is down, and how many times it has died; the node's
    /// task watches both.
    life: tokio::sync::watch::Sender<Life>,
    /// Severed connections the node has let go of (with the path each took). Closing
    /// them would tell the broker (a FIN), which no pulled cable does; they are closed
    /// when their path is back.
    severed: Mutex<Vec<(Option<usize>, BoxStream)>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("cable", &self.cable)
            .field("paths", &self.paths)
            .field("life", &self.life())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link with a path to each of `brokers` (names as the node's pool has them), all
    /// connected.
    pub fn new(brokers: &[String]) -> Link {
        Link {
            paths: brokers
                .iter()
                .map(|b| (b.clone(), Cable::default()))
                .collect(),
            ..Link::default()
        }
    }

    /// Pulls the cable (`from` empty), or only the paths to brokers `from`: connects
    /// there fail, and every open connection there is severed for good.
    pub fn cut(&self, from: &[String]) {
        if from.is_empty() {
            self.cable.cut();
        }
        for (name, path) in &self.paths {
            if from.contains(name) {
                path.cut();
            }
        }
    }

    /// Plugs the cable in again (`from` empty: the cable and every path), or only the
    /// paths to brokers `from`: new connections there work; severed ones stay severed,
    /// and those the node let go of are closed once their path is back (the broker's side
    /// learns of them as it would from the node's first packets).
    pub fn connect(&self, from: &[String]) {
        if from.is_empty() {
            self.cable.connect();
        }
        for (name, path) in &self.paths {
            if from.is_empty() || from.contains(name) {
                path.connect();
            }
        }
        let gone: Vec<_> = {
            let mut severed = self.severed.lock().unwrap_or_else(|p| p.into_inner());
            let (keep, gone) = std::mem::take(&mut *severed)
                .into_iter()
                .partition(|(path, _)| self.is_cut(*path));
            *severed = keep;
            gone
        };
        drop(gone);
    }

    /// Makes the cable (`from` empty) or the paths to brokers `from` lose segments
    /// (`loss.ppm` 0: none any more).
    pub fn set_loss(&self, from: &[String], loss: Loss) {
        if from.is_empty() {
            self.cable.set_loss(loss);
        }
        for (name, path) in &self.paths {
            if from.contains(name) {
                path.set_loss(loss);
            }
        }
    }

    /// Ends every loss, on the cable and on every path (a `heal-all`).
    pub fn clear_loss(&self) {
        self.cable.set_loss(Loss::default());
        for (_, path) in &self.paths {
            path.set_loss(Loss::default());
        }
    }

    /// How lossy the way along `path` is now: the lossier of the cable and the path.
    fn loss(&self, path: Option<usize>) -> Loss {
        let cable = self.cable.loss();
        match path.map(|i| self.paths[i].1.loss()) {
            Some(p) if p.ppm > cable.ppm => p,
            _ => cable,
        }
    }

    /// Whether the way along `path` (a broker's index in `paths`; `None`: anywhere else)
    /// is cut now: the cable, or that path.
    fn is_cut(&self, path: Option<usize>) -> bool {
        self.cable.is_cut() || path.is_some_and(|i| self.paths[i].1.is_cut())
    }

    /// How many cuts the way along `path` has had: those of the cable, and those of the
    /// path.
    fn cuts(&self, path: Option<usize>) -> (u64, u64) {
        (
            self.cable.cuts(),
            path.map_or(0, |i| self.paths[i].1.cuts()),
        )
    }

    /// Kills the node's process: its connections close at once and connects fail until
    /// [`Link::start`]. A dead process stays dead.
    pub fn kill(&self) {
        self.life.send_if_modified(|l| {
            if l.dead {
                return false;
            }
            l.dead = true;
            l.deaths += 1;
            true
        });
    }

    /// Starts the node's process again (nothing if it runs).
    pub fn start(&self) {
        self.life
            .send_if_modified(|l| std::mem::replace(&mut l.dead, false));
    }

    /// The process's state now.
    pub fn life(&self) -> Life {
        *self.life.borrow()
    }

    /// A receiver that sees every change of the process's state (the node's task waits
    /// on it).
    pub fn lives(&self) -> tokio::sync::watch::Receiver<Life> {
        self.life.subscribe()
    }

    fn deaths(&self) -> u64 {
        self.life.borrow().deaths
    }
}

/// `inner` seen through one node's [`Link`].
pub struct LinkNet {
    inner: SharedNet,
    link: Arc<Link>,
    /// Seeds the loss draws of each connection.
    seed: u64,
    /// Connections opened so far.
    opened: AtomicU64,
}

impl LinkNet {
    /// A network for one node, whose loss draws come from `seed`.
    pub fn shared(inner: SharedNet, link: Arc<Link>, seed: u64) -> SharedNet {
        Arc::new(LinkNet {
            inner,
            link,
            seed,
            opened: AtomicU64::new(0),
        })
    }
}

impl Net for LinkNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        self.inner.bind(addr)
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let path = self.link.paths.iter().position(|(b, _)| is_broker(b, addr));
            if self.link.is_cut(path) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("{addr}: this node is isolated from it"),
                ));
            }
            let life = self.link.life();
            if life.dead {
                return Err(io::Error::other(format!(
                    "{addr}: this node's process is down"
                )));
            }
            let born = self.link.cuts(path);
            let n = self.opened.fetch_add(1, Ordering::Relaxed);
            let rng = SmallRng::seed_from_u64(crate::seed::derive(self.seed, &format!("loss/{n}")));
            let stream = self.inner.connect(addr).await?;
            Ok(Box::new(LinkStream {
                inner: Some(stream),
                link: self.link.clone(),
                path,
                born,
                life: life.deaths,
                rng,
                held: None,
                write_stall: None,
                write_drawn: false,
            }) as BoxStream)
        })
    }

    fn bind_udp<'a>(
        &'a self,
        addr: &'a str,
        group: Option<Ipv4Addr>,
    ) -> BoxFuture<'a, io::Result<Box<dyn Datagrams>>> {
        self.inner.bind_udp(addr, group)
    }
}

/// What a write on a severed connection meets once the cable is back: the broker heard
/// nothing from the node for the whole cut and closed its end, and a kernel answers a
/// segment for a closed connection with RST.
fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection reset: the broker closed it while this node was cut off",
    )
}

/// A connection that a cut after its birth severs.
struct LinkStream {
    /// `None` only once dropped.
    inner: Option<BoxStream>,
    link: Arc<Link>,
    /// The broker path it took (`None`: no broker's).
    path: Option<usize>,
    /// The cut counts of its way (cable, path) when it was opened.
    born: (u64, u64),
    /// The process's death count when it was opened.
    life: u64,
    /// Loss draws.
    rng: SmallRng,
    /// Bytes read whose segment was lost, and when its retransmission arrives.
    held: Option<Held>,
    /// A write whose segment was lost waits for its retransmission.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The pending write has had its draw (it is not drawn again when retried).
    write_drawn: bool,
}

impl LinkStream {
    fn severed(&self) -> bool {
        self.link.cuts(self.path) != self.born
    }

    /// Whether its way is cut now.
    fn is_cut(&self) -> bool {
        self.link.is_cut(self.path)
    }

    /// How late `len` bytes arrive: `None` if none of their segments was lost, else one
    /// retransmission timeout, doubled for each retransmission lost as well.
    fn loss_delay(&mut self, len: usize) -> Option<Duration> {
        let loss = self.link.loss(self.path);
        if loss.ppm == 0 || len == 0 {
            return None;
        }
        let p = f64::from(loss.ppm) / 1e6;
        let segments = len.div_ceil(SEGMENT_BYTES) as i32;
        let lost = 1.0 - (1.0 - p).powi(segments);
        if !self.rng.random_bool(lost.clamp(0.0, 1.0)) {
            return None;
        }
        // Each retransmission is lost with the same odds; each timeout is twice the last.
        let mut wait = loss.rto_ms;
        let mut total = wait;
        for _ in 0..RETRANSMISSIONS_LOST_MAX {
            if !self.rng.random_bool(p) {
                break;
            }
            wait *= 2;
            total += wait;
        }
        Some(Duration::from_millis(total))
    }

    /// Whether the process that opened it has died; if so, its kernel closes it now (the
    /// broker sees the connection end) and nothing more passes.
    fn killed(&mut self) -> bool {
        if self.link.deaths() == self.life {
            return false;
        }
        self.close();
        true
    }

    /// Lets go of the connection: closes it, unless it is severed behind a pulled cable,
    /// where the broker hears of no close; then it is kept until the cable is back.
    fn close(&mut self) {
        if let Some(inner) = self.inner.take()
            && self.severed()
            && self.is_cut()
        {
            self.link
                .severed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((self.path, inner));
        }
    }

    fn inner(&mut self) -> Pin<&mut BoxStream> {
        Pin::new(
            self.inner
                .as_mut()
                .expect("a live stream has its connection"),
        )
    }
}

impl Drop for LinkStream {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed() {
            // A dead process reads nothing; only its client's shutdown ends this.
            return Poll::Pending;
        }
        if self.severed() {
            if !self.is_cut() {
                return Poll::Ready(Err(reset()));
            }
            // Nothing arrives any more, and nothing will wake this read: the node's
            // heart-beat timer, or its first write once the cable is back, is what ends
            // the connection, as on a real pulled cable.
            return Poll::Pending;
        }
        // A lost segment's bytes, and everything behind them, wait for its retransmission.
        if let Some(held) = &mut self.held {
            if ready!(held.poll_hand_over(cx, buf)) {
                self.held = None;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(self.inner().poll_read(cx, buf))?;
        let got = buf.filled().len() - before;
        if let Some(delay) = self.loss_delay(got) {
            self.held = Some(Held::take(buf, before, tokio::time::sleep(delay)));
            // Polls the timer, so that it wakes this read.
            return self.poll_read(cx, buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed() {
            // A dead process writes nothing.
            return Poll::Ready(Ok(buf.len()));
        }
        if self.severed() {
            if !self.is_cut() {
                return Poll::Ready(Err(reset()));
            }
            // Accepted by the local stack, never delivered.
            return Poll::Ready(Ok(buf.len()));
        }
        // A lost segment holds this write, and everything behind it, until its
        // retransmission gets through.
        if !self.write_drawn {
            self.write_drawn = true;
            if let Some(delay) = self.loss_delay(buf.len()) {
                self.write_stall = Some(Box::pin(tokio::time::sleep(delay)));
            }
        }
        if let Some(sleep) = &mut self.write_stall {
            ready!(sleep.as_mut().poll(cx));
            self.write_stall = None;
        }
        let written = ready!(self.inner().poll_write(cx, buf));
        self.write_drawn = false;
        Poll::Ready(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() || self.severed() {
            return Poll::Ready(Ok(()));
        }
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() || self.severed() {
            return Poll::Ready(Ok(()));
        }
        self.inner().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers() -> Vec<String> {
        vec!["broker-1".to_owned(), "broker-2".to_owned()]
    }

    #[test]
    fn a_path_is_a_broker_by_host_or_by_host_and_port() {
        assert!(is_broker("broker-1", "broker-1:61613"));
        assert!(is_broker("127.0.0.1:62613", "127.0.0.1:62613"));
        assert!(!is_broker("broker-1", "broker-10:61613"));
        assert!(!is_broker("127.0.0.1:62613", "127.0.0.1:62713"));
    }

    #[test]
    fn cuts_and_losses_on_a_path_leave_the_others_alone_and_heal_all_ends_them() {
        let link = Link::new(&brokers());
        let lossy = Loss {
            ppm: 50_000,
            rto_ms: 200,
        };
        link.cut(&["broker-1".to_owned()]);
        link.set_loss(&["broker-2".to_owned()], lossy);
        assert!(link.is_cut(Some(0)));
        assert!(!link.is_cut(Some(1)));
        assert!(!link.is_cut(None));
        assert_eq!(link.loss(Some(1)), lossy);
        assert_eq!(link.loss(Some(0)), Loss::default());
        // A loss on the whole cable counts on every path; the lossier one wins.
        let worse = Loss {
            ppm: 100_000,
            rto_ms: 300,
        };
        link.set_loss(&[], worse);
        assert_eq!(link.loss(Some(0)), worse);
        assert_eq!(link.loss(Some(1)), worse);
        // Ending the cable's loss leaves the path's.
        link.set_loss(&[], Loss::default());
        assert_eq!(link.loss(Some(1)), lossy);
        link.connect(&[]);
        link.clear_loss();
        assert!(!link.is_cut(Some(0)));
        assert_eq!(link.loss(Some(1)), Loss::default());
    }
}
