//! The failover client's driver over real TCP on 127.0.0.1, against in-process brokers
//! (`Server`) and raw TCP fixtures that misbehave on purpose: attempt timelines under
//! paused time, receipts (confirmed, refused, indeterminate), sends while disconnected,
//! heart-beat read timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use stampede_broker::client::{
    AckMode, Client, ClientConfig, ClientError, ClientEvent, ClientStreams, Credentials,
    DisconnectReason, Message, PolicyKind, ReconnectConfig, SendOutcome, ServerAddr, ServerList,
    Status, StopReason, SubscribeSpec,
};
use stampede_broker::clock::Clock;
use stampede_broker::config::BrokerConfig;
use stampede_broker::net::TokioNet;
use stampede_broker::proto::{
    Command, Decoder, Frame, FrameLimits, Headers, Item, Version, encode,
};
use stampede_broker::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};

/// Bound on anything that must happen (real time, or virtual time under `start_paused`).
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------- helpers

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "stampede_broker=info".into()),
        ))
        .with_test_writer()
        .try_init();
}

/// An in-process broker on `listen`, stopped by [`Running::stop`] (or when dropped with the
/// runtime).
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(listen: &str, config_toml: &str) -> Running {
        init_tracing();
        let mut config = BrokerConfig::parse(config_toml, "test.toml").expect("broker config");
        config.server.listen = vec![listen.to_owned()];
        let server = Server::bind(Arc::new(TokioNet), config)
            .await
            .expect("bind the in-process broker");
        let addr = server.local_addrs()[0];
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(Clock::starting_at(1_700_000_000_000), async {
                    let _ = rx.await;
                })
                .await
                .expect("broker run");
        });
        Running {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        timeout(WAIT, &mut self.task)
            .await
            .expect("the broker stops")
            .expect("broker task");
    }
}

/// A port on 127.0.0.1 that nothing listens on, below Linux's ephemeral range (32768+), so
/// that a connect to it can never be a TCP self-connect.
fn closed_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    for _ in 0..2_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = 20_000 + (base - 20_000 + offset) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

fn server_list(ports: &[u16]) -> ServerList {
    ServerList::new(
        ports
            .iter()
            .map(|p| ServerAddr::new("127.0.0.1", *p))
            .collect(),
    )
    .unwrap()
}

fn config(ports: &[u16], policy: PolicyKind) -> ClientConfig {
    let mut c = ClientConfig::new(server_list(ports), policy);
    c.heart_beat_ms = (0, 0);
    c.events_buffered_max = 4096;
    c.reconnect.connect_timeout = Some(Duration::from_secs(10));
    c
}

/// Every event received within `within`, until `stop` matches one (inclusive).
async fn events_until(
    streams: &mut ClientStreams,
    within: Duration,
    mut stop: impl FnMut(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, streams.events.recv()).await {
            Ok(Some(e)) => {
                let done = stop(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("event stream ended; seen {seen:?}"),
            Err(_) => panic!("timed out waiting for an event; seen {seen:?}"),
        }
    }
}

async fn next_message(streams: &mut ClientStreams) -> Message {
    timeout(WAIT, streams.messages.recv())
        .await
        .expect("a message in time")
        .expect("message stream open")
}

fn text(m: &Message) -> &str {
    m.text().unwrap_or("<binary>")
}

fn is_connected(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::Connected { .. })
}

fn is_resubscribed(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::Resubscribed { .. })
}

// --------------------------------------------------------------------- raw fixtures

/// A raw STOMP peer for fixture servers.
struct Peer {
    stream: tokio::net::TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Peer {
    fn new(stream: tokio::net::TcpStream) -> Peer {
        Peer {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(FrameLimits::default()),
        }
    }

    /// The next frame, counting heart-beat line ends into `beats`; `None` at EOF.
    async fn frame(&mut self, beats: &mut usize) -> Option<Frame> {
        loop {
            match self.decoder.decode(&mut self.buf).expect("valid STOMP") {
                Some(Item::Frame(f)) => return Some(f),
                Some(Item::HeartBeat) => *beats += 1,
                None => {
                    let n = self.stream.read_buf(&mut self.buf).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                }
            }
        }
    }

    async fn write(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        encode(&frame, Version::V1_2, &mut out);
        self.stream.write_all(&out).await.expect("fixture write");
    }

    /// Reads CONNECT and answers CONNECTED with `heart_beat`.
    async fn accept_connect(&mut self, heart_beat: &str) -> Frame {
        let mut beats = 0;
        let connect = self.frame(&mut beats).await.expect("CONNECT");
        assert_eq!(connect.command, Command::Connect);
        self.decoder.set_version(Version::V1_2);
        self.write(
            Frame::new(Command::Connected)
                .header("version", "1.2")
                .header("heart-beat", heart_beat),
        )
        .await;
        connect
    }
}

async fn fixture_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

// ------------------------------------------------------------------------- basics

const OPEN_CONFIG: &str = "";

/// alice may use `/queue/app.>` and every topic; nothing grants `/queue/forbidden.>`.
const DENY_CONFIG: &str = r#"
[[security.users]]
name = "alice"
password = "secret"
groups = ["app"]

[[security.authorization]]
queue = "app.>"
read = ["app"]
write = ["app"]
admin = ["app"]

[[security.authorization]]
topic = ">"
read = ["app"]
write = ["app"]
admin = ["app"]
"#;

#[tokio::test]
async fn connects_subscribes_sends_acks_and_disconnects() {
    let broker = Running::start("127.0.0.1:0", OPEN_CONFIG).await;
    let (client, mut streams) = Client::start(
        Arc::new(TokioNet),
        config(&[broker.addr.port()], PolicyKind::StompGem),
    );
    let q = client
        .subscribe(SubscribeSpec::new("/queue/basic").ack(AckMode::ClientIndividual))
        .await
        .unwrap();
    let t = client
        .subscribe(SubscribeSpec::new("/topic/basic").selector("kind = 'x'"))
        .await
        .unwrap();
    let events = events_until(&mut streams, WAIT, |e| {
        matches!(e, ClientEvent::Resubscribed { .. })
    })
    .await;
    assert_eq!(
        events,
        [
            ClientEvent::Attempt {
                server: 0,
                number: 1,
                delay: Duration::ZERO
            },
            ClientEvent::Connected { server: 0 },
            ClientEvent::Resubscribed { count: 2 },
        ]
    );
    assert_eq!(
        client.status(),
        Status::Connected {
            server: 0,
            version: Version::V1_2
        }
    );
    // The broker handles a connection's frames in order: this receipt means both
    // SUBSCRIBEs are in place.
    assert_eq!(
        client
            .send_with_receipt("/queue/barrier", Headers::new(), "")
            .await,
        SendOutcome::Confirmed
    );
    client
        .send("/queue/basic", Headers::new(), "to the queue")
        .await
        .unwrap();
    let h: Headers = [("kind", "x")].into_iter().collect();
    client.send("/topic/basic", h, "selected").await.unwrap();
    let h: Headers = [("kind", "y")].into_iter().collect();
    client
        .send("/topic/basic", h, "filtered out")
        .await
        .unwrap();
    let h: Headers = [("kind", "x")].into_iter().collect();
    client.send("/topic/basic", h, "selected 2").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = next_message(&mut streams).await;
        got.push((m.subscription, text(&m).to_owned()));
        if m.subscription == Some(q) {
            client.ack(&m).await.unwrap();
        } else {
            // Auto-acknowledged: the client refuses to ACK it.
            assert!(matches!(client.ack(&m).await, Err(ClientError::Session(_))));
        }
    }
    got.sort();
    let mut want = vec![
        (Some(q), "to the queue".to_owned()),
        (Some(t), "selected".to_owned()),
        (Some(t), "selected 2".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    // Transactions.
    client.begin("tx1").await.unwrap();
    let h: Headers = [("transaction", "tx1")].into_iter().collect();
    client
        .send("/queue/basic", h, "in a transaction")
        .await
        .unwrap();
    assert_eq!(client.commit("tx1").await, SendOutcome::Confirmed);
    let m = next_message(&mut streams).await;
    assert_eq!(text(&m), "in a transaction");
    client.ack(&m).await.unwrap();
    assert!(matches!(
        client.commit("tx1").await,
        SendOutcome::Failed(why) if why.contains("tx1")
    ));
    client.unsubscribe(t).await.unwrap();
    client.disconnect().await;
    assert_eq!(client.status(), Status::Stopped(StopReason::Disconnected));
    let rest = events_until(&mut streams, WAIT, |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    assert_eq!(
        rest,
        [ClientEvent::Disconnected {
            reason: DisconnectReason::Shutdown
        }]
    );
    assert_eq!(
        client.send("/queue/basic", Headers::new(), "late").await,
        Err(ClientError::Closed)
    );
    assert_eq!(client.events_dropped(), 0);
    broker.stop().await;
}

// ------------------------------------------------------- attempt timelines (paused)

/// An event as the timeline tests compare it: reasons by kind, `ConnectFailed` text dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Attempt(usize, u32, u64),
    Connected(usize),
    Resubscribed(usize),
    Failover(usize, usize),
    Refused,
    Eof,
    Other(String),
}

fn ev(e: &ClientEvent) -> Ev {
    match e {
        ClientEvent::Attempt {
            server,
            number,
            delay,
        } => Ev::Attempt(*server, *number, delay.as_millis() as u64),
        ClientEvent::Connected { server } => Ev::Connected(*server),
        ClientEvent::Resubscribed { count } => Ev::Resubscribed(*count),
        ClientEvent::Failover { from, to } => Ev::Failover(*from, *to),
        ClientEvent::Disconnected {
            reason: DisconnectReason::ConnectFailed(_),
        } => Ev::Refused,
        ClientEvent::Disconnected {
            reason: DisconnectReason::Eof,
        } => Ev::Eof,
        other => Ev::Other(format!("{other:?}")),
    }
}

/// What a timeline test does when an event arrives.
enum Act {
    Nothing,
    /// Start an in-process broker on this pool entry's port.
    StartBroker(usize),
    /// Stop the broker that is running.
    StopBroker,
    Done,
}

/// Runs a client over `ports` (nothing listening at first), subscribed to a queue and a
/// topic, and records every event with the (virtual) time it arrived, starting and stopping
/// brokers as `script` says.
async fn run_timeline(
    cfg: ClientConfig,
    ports: &[u16],
    mut script: impl FnMut(&Ev) -> Act,
) -> (Client, Vec<(Duration, ClientEvent)>) {
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    client
        .subscribe(SubscribeSpec::new("/queue/timeline"))
        .await
        .unwrap();
    client
        .subscribe(SubscribeSpec::new("/topic/timeline").id("t"))
        .await
        .unwrap();
    let start = Instant::now();
    let mut log = Vec::new();
    let mut broker: Option<Running> = None;
    loop {
        let e = timeout(Duration::from_secs(3600), streams.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within an hour (virtual); seen {log:?}"))
            .expect("event stream open");
        log.push((start.elapsed(), e.clone()));
        match script(&ev(&e)) {
            Act::Nothing => {}
            Act::StartBroker(i) => {
                assert!(broker.is_none());
                let listen = format!("127.0.0.1:{}", ports[i]);
                broker = Some(Running::start(&listen, OPEN_CONFIG).await);
            }
            Act::StopBroker => {
                // Stop it in the background: this task must keep taking events as they
                // come, so that their arrival times are exact.
                let b = broker.take().expect("a broker is running");
                tokio::spawn(b.stop());
            }
            Act::Done => break,
        }
    }
    if let Some(b) = broker {
        b.stop().await;
    }
    (client, log)
}

/// Checks the driver slept exactly each attempt's delay: attempt `k + 1` (or the
/// Connected that follows attempt `k`) arrives `delay(k)` after attempt `k` when the attempt
/// itself takes no time (a refused connect). Timer ticks are whole milliseconds, so 1 ms of
/// rounding is allowed.
fn assert_slept_the_delays(log: &[(Duration, ClientEvent)]) {
    let mut checked = 0;
    for (i, (t, e)) in log.iter().enumerate() {
        let ClientEvent::Attempt { delay, .. } = e else {
            continue;
        };
        // The attempt's outcome is the next non-Attempt event; it was refused if that is a
        // ConnectFailed, and the next Attempt then follows at once.
        let Some((t_out, out)) = log.get(i + 1) else {
            continue;
        };
        let slept = *t_out - *t;
        match out {
            ClientEvent::Disconnected {
                reason: DisconnectReason::ConnectFailed(_),
            } => {
                assert!(
                    slept >= *delay && slept <= *delay + Duration::from_millis(1),
                    "event {i}: slept {slept:?} for an attempt with delay {delay:?}\n{log:#?}"
                );
                checked += 1;
            }
            ClientEvent::Connected { .. } => {
                assert!(slept >= *delay, "event {i}: connected early\n{log:#?}");
            }
            other => panic!("event {i}: attempt followed by {other:?}\n{log:#?}"),
        }
    }
    assert!(checked >= 5, "too few refused attempts checked: {checked}");
}

/// Drives a fresh `Reconnector` through the outcomes the client saw and returns the
/// attempts it hands out, to compare with the client's.
fn policy_replay(cfg: &ClientConfig, log: &[(Duration, ClientEvent)]) -> Vec<ClientEvent> {
    let mut r = stampede_broker::client::Reconnector::new(
        cfg.policy,
        cfg.reconnect.clone(),
        cfg.servers.clone(),
        cfg.seed,
    );
    let mut out = vec![ClientEvent::from(r.first_attempt())];
    let mut connected_at = None;
    for (t, e) in log {
        match e {
            ClientEvent::Connected { .. } => {
                r.connected();
                connected_at = Some(*t);
            }
            ClientEvent::Disconnected { .. } => {
                let next = match connected_at.take() {
                    Some(at) => r.connection_lost(*t - at),
                    None => r.attempt_failed(),
                };
                out.push(ClientEvent::from(next.expect("retries forever")));
            }
            _ => {}
        }
    }
    out
}

fn attempts_of(log: &[(Duration, ClientEvent)]) -> Vec<ClientEvent> {
    log.iter()
        .filter(|(_, e)| matches!(e, ClientEvent::Attempt { .. }))
        .map(|(_, e)| e.clone())
        .collect()
}

/// The stomp gem: 0.01, 0.02, … s capped at 30 s while both brokers are down; after a
/// drop the next host at once, then 30 s again (the delay is never reset).
#[tokio::test(start_paused = true)]
async fn stomp_gem_attempt_timeline_is_the_policy_schedule() {
    let ports = [closed_port(), closed_port()];
    let mut cfg = config(&ports, PolicyKind::StompGem);
    cfg.reconnect = ReconnectConfig::stomp_gem();
    let stage = std::cell::Cell::new(0);
    let (client, log) = run_timeline(cfg.clone(), &ports, |e| {
        let s = stage.get();
        let (next, act) = match (s, e) {
            // The 15th attempt is the first to A at the 30 s cap: bring A up for it.
            (0, Ev::Attempt(0, 15, 30_000)) => (1, Act::StartBroker(0)),
            (1, Ev::Resubscribed(2)) => (2, Act::StopBroker),
            (2, Ev::Attempt(1, 3, _)) => (3, Act::StartBroker(1)),
            (3, Ev::Failover(..)) => (4, Act::Done),
            (_, Ev::Attempt(..) | Ev::Refused | Ev::Connected(_) | Ev::Resubscribed(_)) => {
                (s, Act::Nothing)
            }
            (_, Ev::Eof) if s == 2 => (s, Act::Nothing),
            _ => panic!("unexpected event {e:?} at stage {s}"),
        };
        stage.set(next);
        act
    })
    .await;
    let got: Vec<Ev> = log.iter().map(|(_, e)| ev(e)).collect();
    let mut want = Vec::new();
    let delays = [
        0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 30000, 30000,
    ];
    for (i, d) in delays.iter().enumerate() {
        want.push(Ev::Attempt(i % 2, i as u32 + 1, *d));
        want.push(if i < 14 {
            Ev::Refused
        } else {
            Ev::Connected(0)
        });
    }
    want.extend([
        Ev::Resubscribed(2),
        Ev::Eof,
        // Immediate switch to the next host after a drop…
        Ev::Attempt(1, 1, 0),
        Ev::Refused,
        // …then the 30 s reached before: never reset.
        Ev::Attempt(0, 2, 30_000),
        Ev::Refused,
        Ev::Attempt(1, 3, 30_000),
        Ev::Connected(1),
        Ev::Resubscribed(2),
        Ev::Failover(0, 1),
    ]);
    assert_eq!(got, want, "{log:#?}");
    assert_slept_the_delays(&log);
    assert_eq!(attempts_of(&log), policy_replay(&cfg, &log));
    // The outage took the schedule's time: the 15 delays add up to 100.95 s.
    let first_connect = log
        .iter()
        .find(|(_, e)| is_connected(e))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(
        first_connect >= Duration::from_millis(100_950)
            && first_connect < Duration::from_millis(101_000),
        "{first_connect:?}"
    );
    assert_eq!(
        client.status(),
        Status::Connected {
            server: 1,
            version: Version::V1_2
        }
    );
    client.disconnect().await;
}

/// ActiveMQ (randomize=false): passes over both servers back to back, one sleep per pass
/// (10, 20, 40 … ms), and the delay reset after a successful connection.
#[tokio::test(start_paused = true)]
async fn activemq_attempt_timeline_is_the_policy_schedule() {
    let ports = [closed_port(), closed_port()];
    let mut cfg = config(&ports, PolicyKind::ActiveMq);
    cfg.reconnect = ReconnectConfig {
        randomize: false,
        ..ReconnectConfig::activemq()
    };
    let stage = std::cell::Cell::new(0);
    let (client, log) = run_timeline(cfg.clone(), &ports, |e| {
        let s = stage.get();
        let (next, act) = match (s, e) {
            (0, Ev::Attempt(0, 11, 160)) => (1, Act::StartBroker(0)),
            (1, Ev::Resubscribed(2)) => (2, Act::StopBroker),
            (2, Ev::Attempt(1, 5, 40)) => (3, Act::StartBroker(1)),
            (3, Ev::Failover(..)) => (4, Act::Done),
            (_, Ev::Attempt(..) | Ev::Refused | Ev::Connected(_) | Ev::Resubscribed(_)) => {
                (s, Act::Nothing)
            }
            (_, Ev::Eof) if s == 2 => (s, Act::Nothing),
            _ => panic!("unexpected event {e:?} at stage {s}"),
        };
        stage.set(next);
        act
    })
    .await;
    let got: Vec<Ev> = log.iter().map(|(_, e)| ev(e)).collect();
    use Ev::{Attempt as A, Refused as R};
    let want = vec![
        A(0, 1, 0),
        R,
        A(1, 2, 0),
        R,
        A(0, 3, 10),
        R,
        A(1, 4, 0),
        R,
        A(0, 5, 20),
        R,
        A(1, 6, 0),
        R,
        A(0, 7, 40),
        R,
        A(1, 8, 0),
        R,
        A(0, 9, 80),
        R,
        A(1, 10, 0),
        R,
        A(0, 11, 160),
        Ev::Connected(0),
        Ev::Resubscribed(2),
        Ev::Eof,
        // The lost server goes last in the pass; the delay starts again at 10 ms.
        A(1, 1, 10),
        R,
        A(0, 2, 0),
        R,
        A(1, 3, 20),
        R,
        A(0, 4, 0),
        R,
        A(1, 5, 40),
        Ev::Connected(1),
        Ev::Resubscribed(2),
        Ev::Failover(0, 1),
    ];
    assert_eq!(got, want, "{log:#?}");
    assert_slept_the_delays(&log);
    assert_eq!(attempts_of(&log), policy_replay(&cfg, &log));
    client.disconnect().await;
}

// ------------------------------------------------------------------------- receipts

fn alice(cfg: &mut ClientConfig) {
    cfg.credentials = Some(Credentials {
        login: "alice".into(),
        passcode: "secret".into(),
    });
}

/// RECEIPT → Confirmed; an ERROR naming the receipt (authorization denied) → Failed, and
/// the connection stays usable.
#[tokio::test]
async fn receipts_confirm_and_authorization_refuses() {
    let broker = Running::start("127.0.0.1:0", DENY_CONFIG).await;
    let mut cfg = config(&[broker.addr.port()], PolicyKind::StompGem);
    alice(&mut cfg);
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    events_until(&mut streams, WAIT, is_resubscribed).await;
    assert_eq!(
        client
            .send_with_receipt("/queue/app.ok", Headers::new(), "1")
            .await,
        SendOutcome::Confirmed
    );
    let refused = client
        .send_with_receipt("/queue/forbidden.x", Headers::new(), "2")
        .await;
    match &refused {
        SendOutcome::Failed(why) => assert!(
            why.contains("not authorized") && why.contains("forbidden.x"),
            "{why}"
        ),
        other => panic!("expected Failed, got {other:?}"),
    }
    // Still connected: the broker refused one frame, not the session.
    assert_eq!(
        client
            .send_with_receipt("/queue/app.ok", Headers::new(), "3")
            .await,
        SendOutcome::Confirmed
    );
    assert!(matches!(
        client.status(),
        Status::Connected { server: 0, .. }
    ));
    assert!(
        streams.events.try_recv().is_err(),
        "no further events: the connection was never lost"
    );
    // Only the confirmed messages are on the queue.
    client
        .subscribe(SubscribeSpec::new("/queue/app.ok"))
        .await
        .unwrap();
    let bodies = [
        next_message(&mut streams).await,
        next_message(&mut streams).await,
    ];
    assert_eq!(bodies.map(|m| text(&m).to_owned()), ["1", "3"]);
    client.disconnect().await;
    broker.stop().await;
}

/// An ERROR answer to CONNECT is a failed attempt (for every policy but the stomp gem's,
/// which takes it for a connection); the policy gives up after `max_attempts`
/// re-attempts and the client stops.
#[tokio::test]
async fn a_refused_connect_is_a_failed_attempt() {
    let broker = Running::start("127.0.0.1:0", DENY_CONFIG).await;
    let mut cfg = config(&[broker.addr.port()], PolicyKind::Jittered);
    cfg.credentials = Some(Credentials {
        login: "alice".into(),
        passcode: "wrong".into(),
    });
    cfg.reconnect.max_attempts = Some(1);
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    let reason = timeout(WAIT, client.stopped()).await.expect("gives up");
    let StopReason::GaveUp(gave_up) = reason else {
        panic!("{reason:?}")
    };
    assert_eq!(gave_up.total_attempts(), 2);
    let mut events = Vec::new();
    while let Some(e) = streams.events.recv().await {
        events.push(e);
    }
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(matches!(events[0], ClientEvent::Attempt { number: 1, .. }));
    assert!(matches!(events[2], ClientEvent::Attempt { number: 2, .. }));
    for e in [&events[1], &events[3]] {
        assert!(
            matches!(e, ClientEvent::Disconnected { reason: DisconnectReason::ErrorFrame(m) } if !m.is_empty()),
            "{e:?}"
        );
    }
    assert!(streams.messages.recv().await.is_none(), "streams end");
    assert_eq!(
        client.send("/queue/app.x", Headers::new(), "").await,
        Err(ClientError::Closed)
    );
    broker.stop().await;
}

/// What the fixture broker of the indeterminate-receipt test saw.
#[derive(Debug)]
struct SeenSend {
    connection: usize,
    frame: Frame,
}

/// A broker that answers CONNECT, then on its first connection reads one receipted SEND
/// and closes without answering; on later connections it answers every receipt.
async fn receipt_dropping_fixture(listener: TcpListener, seen: mpsc::UnboundedSender<SeenSend>) {
    let mut connection = 0;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        connection += 1;
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut peer = Peer::new(stream);
            peer.accept_connect("0,0").await;
            let mut beats = 0;
            while let Some(f) = peer.frame(&mut beats).await {
                let receipt = f.headers.get("receipt").map(str::to_owned);
                let is_send = f.command == Command::Send;
                let _ = seen.send(SeenSend {
                    connection,
                    frame: f,
                });
                match (connection, is_send, receipt) {
                    // The fault: read the SEND, close without the RECEIPT.
                    (1, true, Some(_)) => return,
                    (_, _, Some(r)) => {
                        peer.write(Frame::new(Command::Receipt).header("receipt-id", r))
                            .await
                    }
                    _ => {}
                }
            }
        });
    }
}

#[tokio::test]
async fn a_receipt_lost_with_the_connection_is_indeterminate() {
    init_tracing();
    let (listener, port) = fixture_listener().await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let fixture = tokio::spawn(receipt_dropping_fixture(listener, seen_tx));
    let mut cfg = config(&[port], PolicyKind::StompGem);
    cfg.disconnect_timeout = Duration::from_secs(2);
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    events_until(&mut streams, WAIT, is_resubscribed).await;
    let outcome = client
        .send_with_receipt("/queue/lost", Headers::new(), "maybe")
        .await;
    assert_eq!(outcome, SendOutcome::Indeterminate);
    // The fault fired: the fixture read exactly that SEND, receipt requested, and the client
    // saw the connection end.
    let s = timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    assert_eq!((s.connection, s.frame.command), (1, Command::Send));
    assert_eq!(s.frame.headers.get("destination"), Some("/queue/lost"));
    assert!(s.frame.headers.get("receipt").is_some());
    assert_eq!(&s.frame.body[..], b"maybe");
    let events = events_until(&mut streams, WAIT, is_resubscribed).await;
    assert_eq!(
        events.iter().map(ev).collect::<Vec<_>>(),
        [
            Ev::Eof,
            Ev::Attempt(0, 1, 0),
            Ev::Connected(0),
            Ev::Resubscribed(0)
        ]
    );
    // The next connection answers receipts: the same client goes on.
    assert_eq!(
        client
            .send_with_receipt("/queue/lost", Headers::new(), "again")
            .await,
        SendOutcome::Confirmed
    );
    let s = timeout(WAIT, seen.recv()).await.unwrap().unwrap();
    assert_eq!(s.connection, 2);
    assert_eq!(&s.frame.body[..], b"again");
    client.disconnect().await;
    fixture.abort();
}

// ------------------------------------------------------------- sends while disconnected

/// Sends made while no broker is up wait, in order, and go out once one is.
#[tokio::test]
async fn sends_wait_for_a_connection_and_go_out_in_order() {
    init_tracing();
    let port = closed_port();
    let mut cfg = config(&[port], PolicyKind::StompGem);
    cfg.reconnect.max_delay = Duration::from_millis(100);
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    let c1 = client.clone();
    let receipted = tokio::spawn(async move {
        c1.send_with_receipt("/queue/waiting", Headers::new(), "first")
            .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c2 = client.clone();
    let plain =
        tokio::spawn(async move { c2.send("/queue/waiting", Headers::new(), "second").await });
    // Nothing can go out yet.
    events_until(&mut streams, WAIT, |e| {
        matches!(e, ClientEvent::Attempt { number: 4, .. })
    })
    .await;
    assert!(!receipted.is_finished() && !plain.is_finished());
    assert_eq!(client.status(), Status::Connecting);
    let broker = Running::start(&format!("127.0.0.1:{port}"), OPEN_CONFIG).await;
    assert_eq!(
        timeout(WAIT, receipted).await.unwrap().unwrap(),
        SendOutcome::Confirmed
    );
    assert_eq!(timeout(WAIT, plain).await.unwrap().unwrap(), Ok(()));
    client
        .subscribe(SubscribeSpec::new("/queue/waiting"))
        .await
        .unwrap();
    let m1 = next_message(&mut streams).await;
    let m2 = next_message(&mut streams).await;
    assert_eq!([text(&m1), text(&m2)], ["first", "second"]);
    client.disconnect().await;
    broker.stop().await;
}

/// With a send timeout, a send that cannot be written in time fails and is never written.
#[tokio::test]
async fn sends_that_wait_longer_than_the_send_timeout_fail_and_are_never_written() {
    init_tracing();
    let port = closed_port();
    let mut cfg = config(&[port], PolicyKind::StompGem);
    cfg.reconnect.max_delay = Duration::from_millis(100);
    cfg.send_timeout = Some(Duration::from_millis(300));
    let (client, mut streams) = Client::start(Arc::new(TokioNet), cfg);
    let started = Instant::now();
    assert_eq!(
        client
            .send("/queue/too.late", Headers::new(), "plain")
            .await,
        Err(ClientError::Timeout)
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(matches!(
        client
            .send_with_receipt("/queue/too.late", Headers::new(), "receipted")
            .await,
        SendOutcome::Failed(why) if why.contains("timeout")
    ));
    let broker = Running::start(&format!("127.0.0.1:{port}"), OPEN_CONFIG).await;
    events_until(&mut streams, WAIT, is_connected).await;
    client
        .subscribe(SubscribeSpec::new("/queue/too.late"))
        .await
        .unwrap();
    assert_eq!(
        client
            .send_with_receipt("/queue/too.late", Headers::new(), "in time")
            .await,
        SendOutcome::Confirmed
    );
    // Only the last one is on the queue.
    assert_eq!(text(&next_message(&mut streams).await), "in time");
    assert!(
        timeout(Duration::from_millis(300), streams.messages.recv())
            .await
            .is_err(),
        "the timed-out sends were never written"
    );
    client.disconnect().await;
    broker.stop().await;
}

// ----------------------------------------------------------------------- heart-beats

/// A broker that answers CONNECTED promising heart-beats every 100 ms, then never sends
/// another byte; it counts the heart-beats the client sends and reports them when the
/// client closes the connection.
async fn silent_fixture(listener: TcpListener, beats_out: mpsc::UnboundedSender<usize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let beats_out = beats_out.clone();
        tokio::spawn(async move {
            let mut peer = Peer::new(stream);
            peer.accept_connect("100,100").await;
            let mut beats = 0;
            while peer.frame(&mut beats).await.is_some() {}
            let _ = beats_out.send(beats);
        });
    }
}

fn heartbeat_config(ports: &[u16], read_timeout: bool) -> ClientConfig {
    let mut cfg = config(ports, PolicyKind::StompGem);
    cfg.heart_beat_ms = (100, 100);
    cfg.heartbeat_read_timeout = read_timeout;
    cfg.heartbeat_grace_factor = 2.0;
    cfg.disconnect_timeout = Duration::from_millis(200);
    cfg
}

#[tokio::test]
async fn a_silent_broker_is_detected_and_the_client_fails_over() {
    init_tracing();
    let (listener, silent_port) = fixture_listener().await;
    let (beats_tx, mut beats) = mpsc::unbounded_channel();
    let fixture = tokio::spawn(silent_fixture(listener, beats_tx));
    let broker = Running::start("127.0.0.1:0", OPEN_CONFIG).await;
    let (client, mut streams) = Client::start(
        Arc::new(TokioNet),
        heartbeat_config(&[silent_port, broker.addr.port()], true),
    );
    client
        .subscribe(SubscribeSpec::new("/queue/hb"))
        .await
        .unwrap();
    let first = events_until(&mut streams, WAIT, is_connected).await;
    let connected_at = Instant::now();
    assert_eq!(
        first.iter().map(ev).collect::<Vec<_>>(),
        [Ev::Attempt(0, 1, 0), Ev::Connected(0)]
    );
    let events = events_until(&mut streams, WAIT, |e| {
        matches!(e, ClientEvent::Failover { .. })
    })
    .await;
    let lost_after = connected_at.elapsed();
    assert_eq!(
        events.iter().map(ev).collect::<Vec<_>>(),
        [
            Ev::Resubscribed(1),
            Ev::Other("Disconnected { reason: HeartbeatTimeout }".into()),
            Ev::Attempt(1, 1, 0),
            Ev::Connected(1),
            Ev::Resubscribed(1),
            Ev::Failover(0, 1),
        ]
    );
    // Expected every max(sx, cy) = 100 ms, grace 2: dead after 200 ms of silence.
    assert!(lost_after >= Duration::from_millis(200), "{lost_after:?}");
    // The client closed the silent connection, after heart-beating on it.
    let sent = timeout(WAIT, beats.recv()).await.unwrap().unwrap();
    assert!(sent >= 1, "the client sent {sent} heart-beats");
    // And the subscription works on the new broker.
    assert_eq!(
        client
            .send_with_receipt("/queue/hb", Headers::new(), "after failover")
            .await,
        SendOutcome::Confirmed
    );
    assert_eq!(text(&next_message(&mut streams).await), "after failover");
    client.disconnect().await;
    broker.stop().await;
    fixture.abort();
}

/// Like mcollectived: without the read timeout a silent broker goes unnoticed, while the
/// client keeps sending its heart-beats.
#[tokio::test]
async fn without_the_read_timeout_a_silent_broker_goes_unnoticed() {
    init_tracing();
    let (listener, silent_port) = fixture_listener().await;
    let (beats_tx, mut beats) = mpsc::unbounded_channel();
    let fixture = tokio::spawn(silent_fixture(listener, beats_tx));
    let broker = Running::start("127.0.0.1:0", OPEN_CONFIG).await;
    let (client, mut streams) = Client::start(
        Arc::new(TokioNet),
        heartbeat_config(&[silent_port, broker.addr.port()], false),
    );
    events_until(&mut streams, WAIT, |e| {
        matches!(e, ClientEvent::Resubscribed { .. })
    })
    .await;
    // Ten times the window that would have ended the connection.
    let quiet = Duration::from_secs(2);
    tokio::time::sleep(quiet).await;
    assert!(
        streams.events.try_recv().is_err(),
        "no event: the client did not notice"
    );
    assert!(matches!(
        client.status(),
        Status::Connected { server: 0, .. }
    ));
    client.disconnect().await;
    // Heart-beats every 90 % of max(cx, sy) = 100 ms: about 22 in 2 s.
    let sent = timeout(WAIT, beats.recv()).await.unwrap().unwrap();
    assert!(sent >= 10, "only {sent} heart-beats in {quiet:?}");
    broker.stop().await;
    fixture.abort();
}
