//! The one network seam: [`Net`] binds listeners, opens connections and binds UDP
//! sockets (for broker discovery).
//!
//! Production uses [`TokioNet`]; the simulator provides a turmoil implementation in the
//! `stampede-sim` crate. Nothing else in the broker touches sockets, so the same server,
//! client and connector code runs over real TCP and over simulated TCP.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
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

/// A bound UDP socket.
pub trait Datagrams: Send + Sync + 'static {
    /// Sends one datagram to `target` (a unicast, multicast or broadcast address).
    fn send_to<'a>(&'a self, buf: &'a [u8], target: SocketAddr)
    -> BoxFuture<'a, io::Result<usize>>;
    /// Waits for the next datagram; returns its length and sender.
    fn recv_from<'a>(&'a self, buf: &'a mut [u8])
    -> BoxFuture<'a, io::Result<(usize, SocketAddr)>>;
    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Binds and connects. Object-safe so that it can be shared as `Arc<dyn Net>`.
pub trait Net: Send + Sync + 'static {
    /// Binds a listener on `addr` (`host:port`).
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
    /// Binds a listener whose queue of connections not yet accepted holds up to `backlog`
    /// of them (the kernel may cap it, at `net.core.somaxconn` on Linux). A connection
    /// that arrives when the queue is full is not refused: its SYN is dropped, and the
    /// client retries after TCP's 1 s initial timeout, then 3 s, 7 s… Networks without
    /// such a queue keep this default, which ignores `backlog`.
    fn bind_with_backlog<'a>(
        &'a self,
        addr: &'a str,
        backlog: u32,
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        let _ = backlog;
        self.bind(addr)
    }
    /// Opens a connection to `addr` (`host:port`).
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>>;
    /// Binds a UDP socket on `addr` (`host:port`) that may send to broadcast addresses
    /// and, when `group` is given, receives that IPv4 multicast group. Other processes may
    /// bind the same address to receive the same group. Networks without UDP keep this
    /// default, which fails with [`io::ErrorKind::Unsupported`].
    fn bind_udp<'a>(
        &'a self,
        addr: &'a str,
        group: Option<Ipv4Addr>,
    ) -> BoxFuture<'a, io::Result<Box<dyn Datagrams>>> {
        let _ = (addr, group);
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this network has no UDP",
            ))
        })
    }
}

/// A shared network handle.
pub type SharedNet = Arc<dyn Net>;

/// Real TCP through tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl TokioNet {
    /// A listener over a socket bound already (a port reserved before the broker starts,
    /// or one handed over by a service manager). Must be called inside a tokio runtime.
    pub fn listener_from_std(l: std::net::TcpListener) -> io::Result<Box<dyn Listener>> {
        l.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(l)?;
        Ok(Box::new(TokioListener(l)))
    }
}

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

    fn bind_with_backlog<'a>(
        &'a self,
        addr: &'a str,
        backlog: u32,
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            // What `TcpListener::bind` does (the first address that binds, SO_REUSEADDR
            // as std sets it on Unix), with our backlog instead of std's 128.
            let mut last = None;
            for sa in tokio::net::lookup_host(addr).await? {
                let socket = if sa.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                #[cfg(unix)]
                socket.set_reuseaddr(true)?;
                match socket.bind(sa) {
                    Ok(()) => {
                        let l = socket.listen(backlog)?;
                        return Ok(Box::new(TokioListener(l)) as Box<dyn Listener>);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{addr} resolves to no address"),
                )
            }))
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn bind_udp<'a>(
        &'a self,
        addr: &'a str,
        group: Option<Ipv4Addr>,
    ) -> BoxFuture<'a, io::Result<Box<dyn Datagrams>>> {
        Box::pin(async move {
            let socket = TokioNet::udp_socket(addr, group)?;
            Ok(Box::new(TokioDatagrams(socket)) as Box<dyn Datagrams>)
        })
    }
}

struct TokioDatagrams(tokio::net::UdpSocket);

impl Datagrams for TokioDatagrams {
    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(self.0.send_to(buf, target))
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(self.0.recv_from(buf))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl TokioNet {
    fn udp_socket(addr: &str, group: Option<Ipv4Addr>) -> io::Result<tokio::net::UdpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let addr: SocketAddr = addr.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{addr}` is not an IP address and port"),
            )
        })?;
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
        socket.bind(&addr.into())?;
        if let Some(group) = group {
            socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
            socket.set_multicast_loop_v4(true)?;
        }
        socket.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(socket.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokio_udp_sends_and_receives_datagrams() {
        let net = TokioNet;
        let a = net.bind_udp("127.0.0.1:0", None).await.unwrap();
        let b = net.bind_udp("127.0.0.1:0", None).await.unwrap();
        let to = b.local_addr().unwrap();
        assert_eq!(a.send_to(b"hello", to).await.unwrap(), 5);
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, a.local_addr().unwrap());
        assert!(net.bind_udp("not an address", None).await.is_err());
    }

    /// The backlog is the listener's: with std's 128, the 130th connection nobody has
    /// accepted yet has its SYN dropped and waits for TCP's 1 s retransmission. A
    /// failover storm of a few hundred clients met exactly that.
    #[tokio::test]
    async fn a_listener_queues_as_many_unaccepted_connections_as_its_backlog() {
        let net = TokioNet;
        let listener = net.bind_with_backlog("127.0.0.1:0", 1024).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // The kernel caps the backlog at net.core.somaxconn (4096 by default since Linux
        // 5.4); stay under it.
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let n = 400.min(cap.saturating_sub(8));
        let mut held = Vec::new();
        for i in 0..n {
            // Far below the 1 s a dropped SYN costs, far above a loopback handshake.
            let c = tokio::time::timeout(std::time::Duration::from_millis(900), net.connect(&addr))
                .await
                .unwrap_or_else(|_| panic!("connection {i} was not queued"))
                .unwrap();
            held.push(c);
        }
        drop(listener);
    }
}
