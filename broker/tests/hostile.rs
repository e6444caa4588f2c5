//! Hostile clients over real TCP, each beside a well-behaved canary: a consumer on
//! `/queue/canary` fed every 20 ms. Whatever one client sends, it gets an ERROR (or its
//! answer) and the canary keeps every message, with a p99 latency under 50 ms.

// The canary measures real latency over real TCP, so it reads the wall clock; nothing here
// runs in the simulator.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use stampede_broker::config::BrokerConfig;
use stampede_broker::proto::{Command, Frame};
use support::{Raw, start};
use tokio::sync::oneshot;

/// How often the canary's producer sends.
const CANARY_PERIOD: Duration = Duration::from_millis(20);
/// The latency the canary must keep at its 99th percentile: 50 ms in an optimized build
/// (the figure the hardening issue asks for; `cargo test --release --test hostile`), ten
/// times that in a debug build on a loaded 2-core machine. Every hostile case here cost
/// the canary seconds or everything before it was fixed.
const CANARY_P99_MAX: Duration = if cfg!(debug_assertions) {
    Duration::from_millis(500)
} else {
    Duration::from_millis(50)
};

/// What the canary saw while it ran.
struct CanaryReport {
    sent: usize,
    latencies: Vec<Duration>,
}

impl CanaryReport {
    fn p99(&self) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        if l.is_empty() {
            return Duration::MAX;
        }
        l[((l.len() * 99).div_ceil(100)).saturating_sub(1)]
    }

    /// Every message arrived and the p99 stayed under [`CANARY_P99_MAX`].
    fn assert_unaffected(&self, case: &str) {
        assert!(self.sent >= 10, "{case}: the canary ran too briefly");
        assert_eq!(
            self.latencies.len(),
            self.sent,
            "{case}: the canary lost messages"
        );
        let p99 = self.p99();
        assert!(
            p99 < CANARY_P99_MAX,
            "{case}: canary p99 {p99:?} over {CANARY_P99_MAX:?}"
        );
        eprintln!(
            "{case}: canary {} messages, p99 {:.1} ms",
            self.sent,
            p99.as_secs_f64() * 1e3
        );
    }
}

/// A running canary; [`Canary::finish`] stops its producer, waits for the last messages
/// and reports.
struct Canary {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<CanaryReport>,
}

impl Canary {
    async fn start(addr: &str) -> Canary {
        let mut consumer = Raw::connected(addr).await;
        consumer
            .write_frame(
                Frame::new(Command::Subscribe)
                    .header("id", "canary")
                    .header("destination", "/queue/canary")
                    .header("receipt", "subscribed"),
            )
            .await;
        let r = consumer.read_frame().await.expect("RECEIPT");
        assert_eq!(r.command, Command::Receipt, "{r:?}");
        let mut producer = Raw::connected(addr).await;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut sent = 0usize;
            let mut latencies = Vec::new();
            let mut tick = tokio::time::interval(CANARY_PERIOD);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        let at = t0.elapsed().as_micros().to_string();
                        producer
                            .write_frame(
                                Frame::new(Command::Send)
                                    .header("destination", "/queue/canary")
                                    .header("sent-us", at)
                                    .body("tweet"),
                            )
                            .await;
                        sent += 1;
                        let m = consumer.read_frame().await.expect("canary MESSAGE");
                        assert_eq!(m.command, Command::Message, "{m:?}");
                        let at: u128 = m.headers.get("sent-us").unwrap().parse().unwrap();
                        let sent_at = Duration::from_micros(at as u64);
                        latencies.push(t0.elapsed().saturating_sub(sent_at));
                    }
                }
            }
            CanaryReport { sent, latencies }
        });
        Canary { stop, task }
    }

    async fn finish(self) -> CanaryReport {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the canary is stuck: the broker stopped serving it")
            .expect("the canary failed")
    }
}

/// Lets the canary run for a while so that its latency reflects the hostile client.
async fn let_canary_run() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// A CONNECT (or STOMP) whose heart-beat, times the grace factor and added to now, would
/// pass 2^64 ms once looped the core forever. Now it is refused, in every version and
/// with either command, and a heart-beat at the largest accepted interval keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heart_beat_past_the_end_of_time_gets_an_error_and_stops_nobody() {
    let s = start(BrokerConfig::default()).await;
    let canary = Canary::start(&s.addr).await;
    for (command, version, hb) in [
        (Command::Connect, "1.2", "12300000000000000000,0"),
        (Command::Connect, "1.1", "0,12300000000000000000"),
        (
            Command::Stomp,
            "1.2",
            "18446744073709551615,18446744073709551615",
        ),
        (Command::Connect, "1.2", "86400001,0"),
    ] {
        let mut hostile = Raw::open(&s.addr).await;
        hostile
            .write_frame(
                Frame::new(command)
                    .header("accept-version", version)
                    .header("heart-beat", hb),
            )
            .await;
        let e = hostile.expect_error_then_eof().await;
        assert!(
            e.headers
                .get("message")
                .unwrap()
                .contains("invalid heart-beat header"),
            "{e:?}"
        );
    }
    // The longest interval accepted, both ways: connected, and the broker keeps going.
    let mut slow = Raw::open(&s.addr).await;
    slow.write_frame(
        Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("heart-beat", "86400000,86400000"),
    )
    .await;
    let connected = slow.read_frame().await.expect("CONNECTED");
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    assert_eq!(
        connected.headers.get("heart-beat"),
        Some("86400000,86400000")
    );
    let_canary_run().await;
    // New clients are still served.
    let _late = Raw::connected(&s.addr).await;
    canary
        .finish()
        .await
        .assert_unaffected("heart-beat overflow");
    s.stop().await;
}

/// Ten subscriptions whose LIKE selectors are slow to decide by backtracking, and messages
/// with a 10,000-character property: once 0.9 s of stall for every client per message.
/// Now `%`-separated pieces are found in linear time, and pieces with `_` stop at a step
/// budget (the selector is UNKNOWN: the message is not selected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn like_selectors_that_backtrack_stall_nobody() {
    let s = start(BrokerConfig::default()).await;
    let canary = Canary::start(&s.addr).await;
    let mut hostile = Raw::connected(&s.addr).await;
    let patterns = [
        format!("%{}b", "a".repeat(4000)),
        format!("%{}b%", "a_".repeat(2000)),
    ];
    for i in 0..10 {
        hostile
            .write_frame(
                Frame::new(Command::Subscribe)
                    .header("id", i.to_string())
                    .header("destination", "/topic/like")
                    .header("selector", format!("h LIKE '{}'", patterns[i % 2])),
            )
            .await;
    }
    hostile
        .write_frame(
            Frame::new(Command::Subscribe)
                .header("id", "last")
                .header("destination", "/queue/ready")
                .header("receipt", "subscribed"),
        )
        .await;
    let r = hostile.read_frame().await.expect("RECEIPT");
    assert_eq!(r.command, Command::Receipt, "{r:?}");
    let mut producer = Raw::connected(&s.addr).await;
    for _ in 0..5 {
        producer
            .write_frame(
                Frame::new(Command::Send)
                    .header("destination", "/topic/like")
                    .header("h", "a".repeat(10_000))
                    .body("x"),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A message that matches the first pattern still arrives (five subscriptions).
    producer
        .write_frame(
            Frame::new(Command::Send)
                .header("destination", "/topic/like")
                .header("h", format!("{}b", "a".repeat(10_000)))
                .body("match"),
        )
        .await;
    for _ in 0..5 {
        let m = hostile.read_frame().await.expect("MESSAGE");
        assert_eq!(m.command, Command::Message, "{m:?}");
        assert_eq!(&m.body[..], b"match");
    }
    let_canary_run().await;
    canary.finish().await.assert_unaffected("LIKE selectors");
    s.stop().await;
}

/// Opens a TCP connection to `addr` from the loopback address `from` (127.0.0.0/8).
async fn open_from(from: &str, addr: &str) -> Raw {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    Raw::from_stream(stream)
}

/// Sockets that never send CONNECT once held `connections_max` slots for 30 s each, so a
/// few thousand of them locked every new client out. Now they have their own cap, and one
/// address only part of it; sessions are counted apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_address_lock_nobody_out() {
    let mut config = BrokerConfig::default();
    config.core.limits.connections_max = 10;
    config.core.limits.unauthenticated_connections_max = 30;
    config
        .core
        .limits
        .unauthenticated_connections_per_address_max = 20;
    let s = start(config).await;
    let canary = Canary::start(&s.addr).await;
    // Twenty idle sockets from 127.0.0.2 fill that address's share...
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(open_from("127.0.0.2", &s.addr).await);
    }
    // ...so its next one is refused with an ERROR at once,
    let mut refused = open_from("127.0.0.2", &s.addr).await;
    let e = refused.expect_error_then_eof().await;
    assert!(
        e.headers
            .get("message")
            .unwrap()
            .contains("unauthenticated_connections_per_address_max"),
        "{e:?}"
    );
    // while another address still connects (sessions are counted apart: see server.rs).
    let _a = Raw::connected(&s.addr).await;
    let _b = Raw::connected(&s.addr).await;
    // Ten more idle sockets from a third address fill the broker-wide cap.
    for _ in 0..10 {
        idle.push(open_from("127.0.0.3", &s.addr).await);
    }
    let mut over = open_from("127.0.0.4", &s.addr).await;
    let e = over.expect_error_then_eof().await;
    assert!(
        e.headers
            .get("message")
            .unwrap()
            .contains("limits.unauthenticated_connections_max"),
        "{e:?}"
    );
    let_canary_run().await;
    canary.finish().await.assert_unaffected("idle sockets");
    // The published statistics lag the core by up to a refresh period.
    let mut stats = s.stats.get();
    for _ in 0..50 {
        if stats.connections_refused == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = s.stats.get();
    }
    assert_eq!(stats.connections_refused, 2, "{stats:?}");
    assert_eq!(stats.connections_unauthenticated, 30, "{stats:?}");
    s.stop().await;
}

/// A producer flooding a queue nobody reads once filled memory without bound, then got
/// an ERROR per SEND. Now the queue's byte limit holds it (the broker stops reading it, as
/// ActiveMQ's producer flow control does): its SENDs wait, nothing is refused or lost,
/// memory stays under the limits, other clients are unaffected, and once a consumer
/// drains the queue every SEND is taken and receipted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_producer_is_held_by_flow_control_and_loses_nothing() {
    const SENDS: usize = 24;
    const BODY_BYTES: usize = 512 * 1024;
    let mut config = BrokerConfig::default();
    config.core.limits.queue_bytes_max = 4 * 1024 * 1024;
    config.core.limits.memory_bytes_max = 32 * 1024 * 1024;
    let s = start(config).await;
    let canary = Canary::start(&s.addr).await;
    let mut flooder = Raw::connected(&s.addr).await;
    let flood = tokio::spawn(async move {
        let body = vec![b'f'; BODY_BYTES];
        for i in 0..SENDS {
            flooder
                .write_frame(
                    Frame::new(Command::Send)
                        .header("destination", "/queue/flood")
                        .header("receipt", format!("r{i}"))
                        .body(body.clone()),
                )
                .await;
        }
        let mut receipts = Vec::new();
        while receipts.len() < SENDS {
            let f = flooder.read_frame().await.expect("a RECEIPT");
            assert_eq!(f.command, Command::Receipt, "{f:?}");
            receipts.push(f.headers.get("receipt-id").unwrap().to_owned());
        }
        receipts
    });
    let_canary_run().await;
    // The flooder is held: some SEND waits, and the queue holds about its byte limit.
    let mut stats = s.stats.get();
    for _ in 0..100 {
        if stats.sends_blocked >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = s.stats.get();
    }
    assert!(stats.sends_blocked >= 1, "{stats:?}");
    assert!(stats.queued_current < SENDS as u64, "{stats:?}");
    assert!(
        stats.memory_used_bytes < 12 * 1024 * 1024,
        "held {} bytes",
        stats.memory_used_bytes
    );
    assert_eq!(stats.sends_refused, 0, "{stats:?}");
    assert!(!flood.is_finished(), "the flooder should still be held");
    // A consumer drains the queue: every SEND is then taken, receipted and delivered.
    let mut consumer = Raw::connected(&s.addr).await;
    consumer
        .write_frame(
            Frame::new(Command::Subscribe)
                .header("id", "drain")
                .header("destination", "/queue/flood"),
        )
        .await;
    for _ in 0..SENDS {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.read_frame())
            .await
            .expect("a flood message in time")
            .expect("a MESSAGE");
        assert_eq!(m.command, Command::Message, "{m:?}");
        assert_eq!(m.body.len(), BODY_BYTES);
    }
    let receipts = tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .expect("every receipt in time")
        .expect("the flooder failed");
    let expected: Vec<String> = (0..SENDS).map(|i| format!("r{i}")).collect();
    assert_eq!(receipts, expected);
    canary.finish().await.assert_unaffected("flooding producer");
    s.stop().await;
}

/// A 16 MiB message (ActiveMQ and RabbitMQ take it with their defaults) was refused by
/// the default limits. Now it is delivered whole, and a body over the default limit
/// (128 MiB, declared by `content-length`) is refused with an ERROR before it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixteen_mib_message_passes_with_the_default_limits() {
    let s = start(BrokerConfig::default()).await;
    let mut consumer = Raw::connected(&s.addr).await;
    consumer
        .write_frame(
            Frame::new(Command::Subscribe)
                .header("id", "big")
                .header("destination", "/queue/big")
                .header("receipt", "sub"),
        )
        .await;
    assert_eq!(
        consumer.read_frame().await.unwrap().command,
        Command::Receipt
    );
    let mut producer = Raw::connected(&s.addr).await;
    let body = vec![b'b'; 16 * 1024 * 1024];
    producer
        .write_frame(
            Frame::new(Command::Send)
                .header("destination", "/queue/big")
                .header("receipt", "big")
                .body(body.clone()),
        )
        .await;
    let r = producer.read_frame().await.unwrap();
    assert_eq!(r.command, Command::Receipt, "{r:?}");
    let m = consumer.read_frame().await.unwrap();
    assert_eq!(m.command, Command::Message);
    assert_eq!(m.body.len(), body.len());
    let over = 128 * 1024 * 1024 + 1;
    producer
        .write_raw(format!("SEND\ndestination:/queue/big\ncontent-length:{over}\n\n").as_bytes())
        .await;
    let e = producer.expect_error_then_eof().await;
    assert!(e.headers.get("message").is_some(), "{e:?}");
    s.stop().await;
}
