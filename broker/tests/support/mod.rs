//! A stampede-broker `Server` in-process on 127.0.0.1:0 and a raw STOMP connection that
//! writes exactly what it is told, for the real-TCP tests (`server.rs`, `hostile.rs`).

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use stampede_broker::clock::Clock;
use stampede_broker::config::BrokerConfig;
use stampede_broker::net::TokioNet;
use stampede_broker::proto::{Command, Decoder, Frame, FrameLimits, Item, Version, encode};
use stampede_broker::server::{Server, StatsHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Running {
    pub(crate) addr: String,
    /// The metrics endpoint's address, when the config asked for one.
    pub(crate) metrics: Option<String>,
    pub(crate) stats: StatsHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("server did not stop")
            .unwrap();
    }
}

pub(crate) async fn start(config: BrokerConfig) -> Running {
    start_on(Arc::new(TokioNet), config).await
}

/// [`start`] over the network `net` (a wrapper of `TokioNet`, for tests that need to
/// see or slow what the broker does on its sockets).
#[allow(dead_code)]
pub(crate) async fn start_on(
    net: stampede_broker::net::SharedNet,
    mut config: BrokerConfig,
) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("stampede_broker=debug"))
        .with_test_writer()
        .try_init();
    config.server.listen = vec!["127.0.0.1:0".to_owned()];
    let server = Server::bind(net, config).await.unwrap();
    let addr = server.local_addrs()[0].to_string();
    let metrics = server.metrics_addr().map(|a| a.to_string());
    let stats = server.stats();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(Clock::starting_at(1_700_000_000_000), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        metrics,
        stats,
        stop: Some(tx),
        task,
    }
}

/// A raw STOMP connection that writes exactly what it is told.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    pub(crate) decoder: Decoder,
    pub(crate) version: Version,
}

impl Raw {
    pub(crate) async fn open(addr: &str) -> Raw {
        Raw::from_stream(TcpStream::connect(addr).await.unwrap())
    }

    /// A raw connection over an already connected stream.
    pub(crate) fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(FrameLimits::default()),
            version: Version::V1_2,
        }
    }

    /// A connection whose kernel receive buffer is tiny, so that when it stops reading
    /// the broker notices after a few frames rather than after megabytes.
    pub(crate) async fn open_small_buffer(addr: &str) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(FrameLimits::default()),
            version: Version::V1_2,
        }
    }

    pub(crate) async fn handshake(mut self) -> Raw {
        self.write_frame(Frame::new(Command::Connect).header("accept-version", "1.2"))
            .await;
        let f = self.read_frame().await.expect("CONNECTED");
        assert_eq!(f.command, Command::Connected, "{f:?}");
        self.decoder.set_version(Version::V1_2);
        self
    }

    pub(crate) async fn connected(addr: &str) -> Raw {
        let mut c = Raw::open(addr).await;
        c.write_frame(Frame::new(Command::Connect).header("accept-version", "1.2"))
            .await;
        let f = c.read_frame().await.expect("CONNECTED");
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c.decoder.set_version(Version::V1_2);
        c
    }

    pub(crate) async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub(crate) async fn write_frame(&mut self, frame: Frame) {
        let mut buf = BytesMut::new();
        encode(&frame, self.version, &mut buf);
        self.write_raw(&buf).await;
    }

    /// The next frame, skipping heart-beats; `None` at EOF.
    pub(crate) async fn read_frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self
                    .decoder
                    .decode(&mut self.buf)
                    .expect("server sent bad STOMP")
                {
                    Some(Item::Frame(f)) => return Some(f),
                    Some(Item::HeartBeat) => continue,
                    None => {}
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("timed out waiting for a frame")
    }

    pub(crate) async fn expect_error_then_eof(&mut self) -> Frame {
        let f = self.read_frame().await.expect("an ERROR frame");
        assert_eq!(f.command, Command::Error, "{f:?}");
        assert!(!f.headers.get("message").unwrap_or("").is_empty());
        assert!(self.read_frame().await.is_none(), "connection must close");
        f
    }
}
