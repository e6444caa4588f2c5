//! The server path: the real [`Server`] (tokio TCP shell, connection tasks, codec and core)
//! in-process over loopback, so that a regression in the shell shows without a live run.
//!
//! - `queue_1x1/1000`: a producer writes 1,000 SENDs of 1 KiB to one queue in one burst;
//!   timed until the consumer (auto-ack) has decoded all 1,000 MESSAGEs.
//! - `topic_fanout/100`: one 400-byte SEND to a topic with 100 subscribers, each on its own
//!   connection; timed until every subscriber has decoded its MESSAGE.
//!
//! `cargo bench -p stampede-benches --bench server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stampede_broker::clock::Clock;
use stampede_broker::config::BrokerConfig;
use stampede_broker::net::TokioNet;
use stampede_broker::proto::{Command, Decoder, Frame, FrameLimits, Item, Version, encode};
use stampede_broker::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A STOMP 1.2 connection of the benchmark's own, decoding what it reads.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut c = Conn {
            stream,
            decoder: Decoder::new(FrameLimits::default()),
            buf: BytesMut::with_capacity(64 * 1024),
        };
        c.send(
            &Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "localhost")
                .header("heart-beat", "0,0"),
        )
        .await;
        let f = c.next().await;
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c
    }

    async fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        encode(frame, Version::V1_2, &mut out);
        self.stream.write_all(&out).await.expect("write");
    }

    /// Subscribes and waits for the receipt, so that the subscription is in place.
    async fn subscribe(&mut self, destination: &str) {
        self.send(
            &Frame::new(Command::Subscribe)
                .header("id", "0")
                .header("destination", destination)
                .header("ack", "auto")
                .header("receipt", "sub"),
        )
        .await;
        let f = self.next().await;
        assert_eq!(f.command, Command::Receipt, "{f:?}");
    }

    async fn next(&mut self) -> Frame {
        loop {
            match self.decoder.decode(&mut self.buf).expect("valid STOMP") {
                Some(Item::Frame(f)) => return f,
                Some(Item::HeartBeat) => continue,
                None => {
                    let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                    assert!(n > 0, "the broker closed the connection");
                }
            }
        }
    }
}

fn send_frame(destination: &str, body_bytes: usize) -> Frame {
    let body: Vec<u8> = (0..body_bytes).map(|i| (i % 251) as u8).collect();
    Frame::new(Command::Send)
        .header("destination", destination)
        .header("content-length", body_bytes.to_string())
        .body(Bytes::from(body))
}

/// Starts a broker on an ephemeral loopback port; returns its address.
async fn start_server() -> String {
    let mut config = BrokerConfig::default();
    config.server.listen = vec!["127.0.0.1:0".to_owned()];
    let server = Server::bind(Arc::new(TokioNet), config)
        .await
        .expect("the broker binds 127.0.0.1:0");
    let addr = server.local_addrs()[0].to_string();
    tokio::spawn(async move {
        // The benchmark's broker anchors its clock on the wall clock, as the binary does.
        #[allow(clippy::disallowed_methods)]
        let epoch_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let _ = server
            .run(Clock::starting_at(epoch_ms), std::future::pending::<()>())
            .await;
    });
    addr
}

// Criterion times on the wall clock; nothing here runs in the simulator.
#[allow(clippy::disallowed_methods)]
fn server(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let addr = rt.block_on(start_server());

    let mut group = c.benchmark_group("server");
    group.measurement_time(Duration::from_secs(5));

    const BATCH: usize = 1_000;
    let (mut producer, mut consumer) = rt.block_on(async {
        let mut consumer = Conn::open(&addr).await;
        consumer.subscribe("/queue/bench.server").await;
        (Conn::open(&addr).await, consumer)
    });
    let mut burst = BytesMut::new();
    let one = send_frame("/queue/bench.server", 1024);
    for _ in 0..BATCH {
        encode(&one, Version::V1_2, &mut burst);
    }
    let burst = burst.freeze();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("queue_1x1", BATCH), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    producer.stream.write_all(&burst).await.expect("write");
                    for _ in 0..BATCH {
                        let f = consumer.next().await;
                        debug_assert_eq!(f.command, Command::Message);
                    }
                }
                t0.elapsed()
            })
        })
    });

    const SUBSCRIBERS: usize = 100;
    let (mut publisher, mut subscribers) = rt.block_on(async {
        let mut subs = Vec::with_capacity(SUBSCRIBERS);
        for _ in 0..SUBSCRIBERS {
            let mut s = Conn::open(&addr).await;
            s.subscribe("/topic/bench.server").await;
            subs.push(s);
        }
        (Conn::open(&addr).await, subs)
    });
    let broadcast = send_frame("/topic/bench.server", 400);
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function(BenchmarkId::new("topic_fanout", SUBSCRIBERS), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    publisher.send(&broadcast).await;
                    for s in subscribers.iter_mut() {
                        let f = s.next().await;
                        debug_assert_eq!(f.command, Command::Message);
                    }
                }
                t0.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, server);
criterion_main!(benches);
