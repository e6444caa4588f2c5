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
//! The same wrapper runs live (over `TokioNet`), so that `isolate-nodes` is applied to the
//! generator's own nodes there too.

use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use stampede_broker::net::{BoxFuture, BoxStream, Datagrams, Listener, Net, SharedNet};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether a node's process runs, and how many times it has died.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Life {
    /// The process is down (crashed, not started again yet).
    pub dead: bool,
    /// How many times it has died.
    pub deaths: u64,
}

/// Whether a node's cable is pulled (and how many times it has been), and whether its
/// process runs.
#[derive(Default)]
pub struct Link {
    cut: AtomicBool,
    cuts: AtomicU64,
    /// Whether the node's process is down, and how many times it has died; the node's
    /// task watches both.
    life: tokio::sync::watch::Sender<Life>,
    /// Severed connections the node has let go of. Closing them would tell the broker
    /// (a FIN), which no pulled cable does; they are closed when the cable is back.
    severed: Mutex<Vec<BoxStream>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("cut", &self.is_cut())
            .field("cuts", &self.cuts())
            .field("life", &self.life())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Pulls the cable: connects fail, and every open connection is severed for good.
    pub fn cut(&self) {
        if !self.cut.swap(true, Ordering::Relaxed) {
            self.cuts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Plugs it in again: new connections work; severed ones stay severed, and those the
    /// node let go of are closed now (the broker's side learns of them as it would from
    /// the node's first packets).
    pub fn connect(&self) {
        self.cut.store(false, Ordering::Relaxed);
        let gone = std::mem::take(&mut *self.severed.lock().unwrap_or_else(|p| p.into_inner()));
        drop(gone);
    }

    /// Whether it is pulled now.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }

    fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
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
}

impl LinkNet {
    /// A network for one node.
    pub fn shared(inner: SharedNet, link: Arc<Link>) -> SharedNet {
        Arc::new(LinkNet { inner, link })
    }
}

impl Net for LinkNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        self.inner.bind(addr)
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            if self.link.is_cut() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("{addr}: this node is isolated from the network"),
                ));
            }
            let life = self.link.life();
            if life.dead {
                return Err(io::Error::other(format!(
                    "{addr}: this node's process is down"
                )));
            }
            let born = self.link.cuts();
            let stream = self.inner.connect(addr).await?;
            Ok(Box::new(LinkStream {
                inner: Some(stream),
                link: self.link.clone(),
                born,
                life: life.deaths,
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
    /// The link's cut count when it was opened.
    born: u64,
    /// The process's death count when it was opened.
    life: u64,
}

impl LinkStream {
    fn severed(&self) -> bool {
        self.link.cuts() != self.born
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
            && self.link.is_cut()
        {
            self.link
                .severed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(inner);
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
            if !self.link.is_cut() {
                return Poll::Ready(Err(reset()));
            }
            // Nothing arrives any more, and nothing will wake this read: the node's
            // heart-beat timer, or its first write once the cable is back, is what ends
            // the connection, as on a real pulled cable.
            return Poll::Pending;
        }
        self.inner().poll_read(cx, buf)
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
            if !self.link.is_cut() {
                return Poll::Ready(Err(reset()));
            }
            // Accepted by the local stack, never delivered.
            return Poll::Ready(Ok(buf.len()));
        }
        self.inner().poll_write(cx, buf)
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
