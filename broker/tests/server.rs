//! The server shell over real TCP on 127.0.0.1: frames, bad input, slow consumers,
//! limits and shutdown.

mod support;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use stampede_broker::config::BrokerConfig;
use stampede_broker::net::{BoxFuture, BoxStream, Listener, Net, TokioNet};
use stampede_broker::proto::{Command, Frame};
use support::{Raw, WAIT, start};

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
    // The publisher waits for the fast consumer after every batch, so that however
    // starved the machine leaves the reader, it is never more than a batch behind: only
    // the stalled client can reach the limits.
    const BATCH: usize = 50;
    let received = Arc::new(AtomicUsize::new(0));
    let stats = s.stats.clone();
    let counter = received.clone();
    let mut reader = tokio::spawn(async move {
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
                counter.store(got, Ordering::Release);
            }
        }
        got
    });
    for sent in 1..=total {
        p.write_frame(
            Frame::new(Command::Send)
                .header("destination", "/topic/flood")
                .body(body.clone()),
        )
        .await;
        if sent % BATCH == 0 {
            let deadline = tokio::time::Instant::now() + WAIT;
            while received.load(Ordering::Acquire) < sent {
                if reader.is_finished() {
                    // It panicked: show why.
                    (&mut reader).await.unwrap();
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the fast consumer stopped at {} of {sent}",
                    received.load(Ordering::Acquire)
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
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
    // A third may connect its socket; its CONNECT is refused.
    let mut c = Raw::open(&s.addr).await;
    c.write_frame(Frame::new(Command::Connect).header("accept-version", "1.2"))
        .await;
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

/// `GET /metrics` answers in Prometheus' text format with the broker's counters and every
/// queue's depth; other paths and methods get their HTTP errors.
#[tokio::test]
async fn metrics_endpoint_serves_counters_and_queue_depths() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn get(addr: &str, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(WAIT, s.read_to_string(&mut out))
            .await
            .expect("metrics answer")
            .unwrap();
        out
    }
    let mut config = BrokerConfig::default();
    config.core.broker_name = "metered".to_owned();
    config.metrics.listen = Some("127.0.0.1:0".to_owned());
    let s = start(config).await;
    let metrics = s.metrics.clone().expect("a metrics address");
    let mut p = Raw::connected(&s.addr).await;
    for _ in 0..3 {
        p.write_frame(
            Frame::new(Command::Send)
                .header("destination", "/queue/depth")
                .body("x"),
        )
        .await;
    }
    p.write_frame(Frame::new(Command::Disconnect).header("receipt", "bye"))
        .await;
    assert_eq!(p.read_frame().await.unwrap().command, Command::Receipt);
    // Counters are published by the core task every 100 ms.
    let mut text = String::new();
    for _ in 0..50 {
        text = get(&metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        if text.contains("stampede_messages_received_total{broker=\"metered\"} 3\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(
        text.contains("stampede_messages_received_total{broker=\"metered\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "stampede_queue_messages{broker=\"metered\",destination=\"/queue/depth\"} 3\n"
        ),
        "{text}"
    );
    assert!(text.contains("stampede_bytes_received_total{broker=\"metered\"} "));
    let missing = get(&metrics, "GET /nothing HTTP/1.1\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = get(&metrics, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    s.stop().await;
}

/// The broker's sockets, with every write that carries a MESSAGE held up after it is made
/// (its completion waits 300 ms): the peer has the bytes while the broker's writer has
/// not yet reported them written, as a busy machine can leave it.
struct SlowWriteNet;

/// Writes [`SlowWrite`] has held up.
static SLOW_WRITES: AtomicUsize = AtomicUsize::new(0);

struct SlowWriteListener(Box<dyn Listener>);

struct SlowWrite {
    inner: BoxStream,
    /// A write already made whose completion is held back until the timer fires.
    held: Option<(usize, Pin<Box<tokio::time::Sleep>>)>,
}

impl Net for SlowWriteNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = TokioNet.bind(addr).await?;
            Ok(Box::new(SlowWriteListener(l)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        TokioNet.connect(addr)
    }
}

impl Listener for SlowWriteListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, std::net::SocketAddr)>> {
        Box::pin(async move {
            let (s, peer) = self.0.accept().await?;
            let s = SlowWrite {
                inner: s,
                held: None,
            };
            Ok((Box::new(s) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

impl tokio::io::AsyncRead for SlowWrite {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SlowWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some((n, timer)) = self.held.as_mut() {
            let n = *n;
            return match timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.held = None;
                    Poll::Ready(Ok(n))
                }
                Poll::Pending => Poll::Pending,
            };
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
            && buf.starts_with(b"MESSAGE")
        {
            SLOW_WRITES.fetch_add(1, Ordering::Relaxed);
            let mut timer = Box::pin(tokio::time::sleep(Duration::from_millis(300)));
            let _ = timer.as_mut().poll(cx);
            self.held = Some((n, timer));
            return Poll::Pending;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An `ack:auto` queue message is consumed once written: a client that has it and drops
/// the connection at once never sees it again, even when the broker notices the end of
/// the connection before its writer has reported the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_acked_messages_are_not_redelivered_after_an_abrupt_disconnect() {
    let s = support::start_on(Arc::new(SlowWriteNet), BrokerConfig::default()).await;
    let q = "/queue/abrupt";
    let mut producer = Raw::connected(&s.addr).await;
    let mut first = Raw::connected(&s.addr).await;
    first
        .write_frame(
            Frame::new(Command::Subscribe)
                .header("id", "0")
                .header("destination", q)
                .header("receipt", "s"),
        )
        .await;
    assert_eq!(first.read_frame().await.unwrap().command, Command::Receipt);
    producer
        .write_frame(
            Frame::new(Command::Send)
                .header("destination", q)
                .body("m0"),
        )
        .await;
    let m = first.read_frame().await.unwrap();
    assert_eq!(&m.body[..], b"m0");
    // Gone while the broker's writer still sleeps after writing m0.
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = Raw::connected(&s.addr).await;
    second
        .write_frame(
            Frame::new(Command::Subscribe)
                .header("id", "0")
                .header("destination", q),
        )
        .await;
    producer
        .write_frame(
            Frame::new(Command::Send)
                .header("destination", q)
                .body("marker"),
        )
        .await;
    let m = second.read_frame().await.unwrap();
    assert!(
        SLOW_WRITES.load(Ordering::Relaxed) > 0,
        "no write was held up"
    );
    assert_eq!(
        String::from_utf8_lossy(&m.body),
        "marker",
        "an auto-acked message came back: {m:?}"
    );
    s.stop().await;
}
