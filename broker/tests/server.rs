//! The server shell over real TCP on 127.0.0.1: frames, bad input, slow consumers,
//! limits and shutdown.

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

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    addr: String,
    stats: StatsHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("server did not stop")
            .unwrap();
    }
}

async fn start(mut config: BrokerConfig) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("stampede_broker=debug"))
        .with_test_writer()
        .try_init();
    config.server.listen = vec!["127.0.0.1:0".to_owned()];
    let server = Server::bind(Arc::new(TokioNet), config).await.unwrap();
    let addr = server.local_addrs()[0].to_string();
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
        stats,
        stop: Some(tx),
        task,
    }
}

/// A raw STOMP connection that writes exactly what it is told.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    version: Version,
}

impl Raw {
    async fn open(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(FrameLimits::default()),
            version: Version::V1_2,
        }
    }

    /// A connection whose kernel receive buffer is tiny, so that when it stops reading
    /// the broker notices after a few frames rather than after megabytes.
    async fn open_small_buffer(addr: &str) -> Raw {
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

    async fn handshake(mut self) -> Raw {
        self.write_frame(Frame::new(Command::Connect).header("accept-version", "1.2"))
            .await;
        let f = self.read_frame().await.expect("CONNECTED");
        assert_eq!(f.command, Command::Connected, "{f:?}");
        self.decoder.set_version(Version::V1_2);
        self
    }

    async fn connected(addr: &str) -> Raw {
        let mut c = Raw::open(addr).await;
        c.write_frame(Frame::new(Command::Connect).header("accept-version", "1.2"))
            .await;
        let f = c.read_frame().await.expect("CONNECTED");
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c.decoder.set_version(Version::V1_2);
        c
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn write_frame(&mut self, frame: Frame) {
        let mut buf = BytesMut::new();
        encode(&frame, self.version, &mut buf);
        self.write_raw(&buf).await;
    }

    /// The next frame, skipping heart-beats; `None` at EOF.
    async fn read_frame(&mut self) -> Option<Frame> {
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

    async fn expect_error_then_eof(&mut self) -> Frame {
        let f = self.read_frame().await.expect("an ERROR frame");
        assert_eq!(f.command, Command::Error, "{f:?}");
        assert!(!f.headers.get("message").unwrap_or("").is_empty());
        assert!(self.read_frame().await.is_none(), "connection must close");
        f
    }
}

#[tokio::test]
async fn send_and_receive_over_tcp_with_binary_body() {
    let s = start(BrokerConfig::default()).await;
    let mut sub = Raw::connected(&s.addr).await;
    sub.write_frame(
        Frame::new(Command::Subscribe)
            .header("id", "0")
            .header("destination", "/queue/bin")
            .header("receipt", "r"),
    )
    .await;
    assert_eq!(sub.read_frame().await.unwrap().command, Command::Receipt);
    let body: Vec<u8> = (0..=255u8).chain([0, 0, 10, 0]).collect();
    let mut p = Raw::connected(&s.addr).await;
    p.write_frame(
        Frame::new(Command::Send)
            .header("destination", "/queue/bin")
            .header("mc_sender", "x:y\\z")
            .body(body.clone()),
    )
    .await;
    let m = sub.read_frame().await.unwrap();
    assert_eq!(m.command, Command::Message);
    assert_eq!(&m.body[..], &body[..]);
    assert_eq!(m.headers.get("mc_sender"), Some("x:y\\z"));
    assert_eq!(m.headers.get("content-length"), Some("260"));
    assert_eq!(
        m.headers
            .iter()
            .filter(|(k, _)| *k == "content-length")
            .count(),
        1
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_error_then_close_and_others_keep_working() {
    let mut config = BrokerConfig::default();
    config.core.limits.frame_bytes_max = 4096;
    config.core.limits.body_bytes_max = 2048;
    config.core.limits.header_line_bytes_max = 256;
    let s = start(config).await;
    let mut bystander = Raw::connected(&s.addr).await;
    bystander
        .write_frame(
            Frame::new(Command::Subscribe)
                .header("id", "0")
                .header("destination", "/topic/ok"),
        )
        .await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x16\x03\x01 hello\n\n\0".to_vec()),
        ("unknown command", b"CONNECT\n\n\0FLY\n\n\0".to_vec()),
        ("frame before CONNECT", b"SEND\ndestination:/queue/a\n\nx\0".to_vec()),
        (
            "wrong content-length",
            b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/queue/a\ncontent-length:2\n\nabc\0".to_vec(),
        ),
        ("oversize header", {
            let mut v = b"CONNECT\naccept-version:1.2\n\n\0SEND\nx:".to_vec();
            v.extend(std::iter::repeat_n(b'a', 1000));
            v
        }),
        ("oversize frame", {
            let mut v = b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/queue/a\n\n".to_vec();
            v.extend(std::iter::repeat_n(b'a', 10_000));
            v
        }),
        (
            "oversize body by content-length",
            b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/queue/a\ncontent-length:999999\n\n".to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let mut c = Raw::open(&s.addr).await;
        c.write_raw(&bytes).await;
        let mut frames = Vec::new();
        while let Some(f) = c.read_frame().await {
            frames.push(f);
        }
        let last = frames
            .last()
            .unwrap_or_else(|| panic!("{name}: no frame before close"));
        assert_eq!(last.command, Command::Error, "{name}: {frames:?}");
        assert!(
            !last.headers.get("message").unwrap_or("").is_empty(),
            "{name}: ERROR needs a message"
        );
    }
    let mut p = Raw::connected(&s.addr).await;
    p.write_frame(
        Frame::new(Command::Send)
            .header("destination", "/topic/ok")
            .body("alive"),
    )
    .await;
    let m = bystander.read_frame().await.unwrap();
    assert_eq!(&m.body[..], b"alive");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_others_get_everything() {
    let mut config = BrokerConfig::default();
    // The stalled client is cut off at the burst cap (1,100 frames) however busy the
    // machine is; a reading client would have to fall 1,100 frames behind, or stay more
    // than 100 behind for 5 s, to be mistaken for it.
    config.core.limits.outbound_frames_max = 100;
    config.core.limits.outbound_burst_frames_max = 1_000;
    config.core.slow_consumer_grace_ms = 5_000;
    let s = start(config).await;
    // The slow client subscribes and never reads again.
    let mut slow = Raw::open_small_buffer(&s.addr).await.handshake().await;
    slow.write_frame(
        Frame::new(Command::Subscribe)
            .header("id", "0")
            .header("destination", "/topic/flood"),
    )
    .await;
    let mut fast = Raw::connected(&s.addr).await;
    fast.write_frame(
        Frame::new(Command::Subscribe)
            .header("id", "0")
            .header("destination", "/topic/flood")
            .header("receipt", "ok"),
    )
    .await;
    assert_eq!(fast.read_frame().await.unwrap().command, Command::Receipt);
    let mut p = Raw::connected(&s.addr).await;
    let body = vec![b'x'; 16 * 1024];
    let total = 2_000;
    let stats = s.stats.clone();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            let Some(f) = fast.read_frame().await else {
                panic!(
                    "fast consumer lost its connection after {got}: {:?}",
                    stats.get()
                );
            };
            if f.command == Command::Message {
                got += 1;
            }
        }
        got
    });
    for _ in 0..total {
        p.write_frame(
            Frame::new(Command::Send)
                .header("destination", "/topic/flood")
                .body(body.clone()),
        )
        .await;
    }
    assert_eq!(reader.await.unwrap(), total);
    // The slow one was cut off by the slow-consumer policy.
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.stats.get().slow_consumer_disconnects == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow consumer never cut off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn connection_limit_refuses_with_an_error() {
    let mut config = BrokerConfig::default();
    config.core.limits.connections_max = 2;
    let s = start(config).await;
    let _a = Raw::connected(&s.addr).await;
    let _b = Raw::connected(&s.addr).await;
    let mut c = Raw::open(&s.addr).await;
    let f = c.expect_error_then_eof().await;
    assert!(
        f.headers
            .get("message")
            .unwrap()
            .contains("connections_max")
    );
    s.stop().await;
}

#[tokio::test]
async fn heartbeat_timeout_closes_a_silent_client() {
    let mut config = BrokerConfig::default();
    config.core.heartbeat.interval_ms_min = 100;
    let s = start(config).await;
    let mut c = Raw::open(&s.addr).await;
    c.write_frame(
        Frame::new(Command::Connect)
            .header("accept-version", "1.1")
            .header("heart-beat", "200,0"),
    )
    .await;
    let connected = c.read_frame().await.unwrap();
    assert_eq!(connected.headers.get("heart-beat"), Some("0,200"));
    // Say nothing: the broker gives up after 1.5 x 200 ms.
    let f = c.expect_error_then_eof().await;
    assert!(f.headers.get("message").unwrap().contains("heart-beat"));
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let s = start(BrokerConfig::default()).await;
    let mut c = Raw::connected(&s.addr).await;
    s.stop().await;
    assert!(c.read_frame().await.is_none());
}
