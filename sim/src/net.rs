//! [`TurmoilNet`]: the broker's [`Net`] over turmoil's simulated TCP and UDP. This is the
//! only place the simulator touches `turmoil::net`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use stampede_broker::net::{BoxFuture, BoxStream, Datagrams, Listener, Net};

/// Simulated TCP. Every call must happen inside a turmoil host.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilNet;

struct TurmoilListener(turmoil::net::TcpListener);

impl Listener for TurmoilListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for TurmoilNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = turmoil::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TurmoilListener(l)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn bind_udp<'a>(
        &'a self,
        addr: &'a str,
        group: Option<Ipv4Addr>,
    ) -> BoxFuture<'a, io::Result<Box<dyn Datagrams>>> {
        Box::pin(async move {
            let socket = turmoil::net::UdpSocket::bind(addr).await?;
            socket.set_broadcast(true)?;
            if let Some(group) = group {
                socket.join_multicast_v4(group, Ipv4Addr::UNSPECIFIED)?;
            }
            Ok(Box::new(TurmoilDatagrams(socket)) as Box<dyn Datagrams>)
        })
    }
}

/// Simulated UDP (turmoil delivers multicast to the hosts that joined the group).
struct TurmoilDatagrams(turmoil::net::UdpSocket);

impl Datagrams for TurmoilDatagrams {
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
