//! The one network seam: [`Net`] binds listeners and opens connections.
//!
//! Production uses [`TokioNet`]; the simulator provides a turmoil implementation in the
//! `stampede-sim` crate. Nothing else in the broker touches sockets, so the same server,
//! client and connector code runs over real TCP and over simulated TCP.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream in either direction.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed connection.
pub type BoxStream = Box<dyn Stream>;

/// A boxed future, as returned by the object-safe traits here.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An accepting socket.
pub trait Listener: Send + 'static {
    /// Waits for the next connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    /// The bound address (useful after binding port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Binds and connects. Object-safe so that it can be shared as `Arc<dyn Net>`.
pub trait Net: Send + Sync + 'static {
    /// Binds a listener on `addr` (`host:port`).
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
    /// Opens a connection to `addr` (`host:port`).
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>>;
}

/// A shared network handle.
pub type SharedNet = Arc<dyn Net>;

/// Real TCP through tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for TokioNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TokioListener(l)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
