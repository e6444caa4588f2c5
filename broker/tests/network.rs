//! Network connectors between in-process brokers over real TCP on 127.0.0.1: demand
//! forwarding of queues and topics, selectors across a bridge, duplex, store and forward
//! across a broker restart, rings without loops, authentication and authorization of
//! bridges, and discovery-free configuration errors.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stampede_broker::client::{
    AckMode, Client, ClientConfig, ClientStreams, Credentials, Message, PolicyKind, SendOutcome,
    ServerAddr, ServerList, SubscribeSpec,
};
use stampede_broker::clock::Clock;
use stampede_broker::config::BrokerConfig;
use stampede_broker::connectors::{ConnectorConfig, DiscoveryConfig, NetworkChanges};
use stampede_broker::core::Stats;
use stampede_broker::net::{BoxFuture, BoxStream, Listener, Net, TokioNet};
use stampede_broker::proto::Headers;
use stampede_broker::server::{ReloadError, Reloader, Server, StatsHandle};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};

/// Bound on anything that must happen; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(20);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(600);

struct Running {
    port: u16,
    stats: StatsHandle,
    reloader: Reloader,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn addr(&self) -> ServerAddr {
        ServerAddr::new("127.0.0.1", self.port)
    }

    fn stats(&self) -> Stats {
        self.stats.get()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        timeout(WAIT, &mut self.task)
            .await
            .expect("broker did not stop")
            .unwrap();
    }
}

fn tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("stampede_broker=info"))
        .with_test_writer()
        .try_init();
}

/// Ports [`free_port`] handed out, each held by its listener until a broker binds it, so
/// that no other socket (another test's, or a connection's ephemeral port) takes it in
/// between.
static RESERVED: Mutex<BTreeMap<u16, std::net::TcpListener>> = Mutex::new(BTreeMap::new());

/// A free port on 127.0.0.1 (so that a broker can be configured before its peer runs),
/// kept for the broker that binds it through [`ReservedNet`].
async fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    RESERVED.lock().unwrap().insert(port, l);
    port
}

/// Real TCP whose listeners on a reserved port take the reservation's socket.
struct ReservedNet;

impl ReservedNet {
    fn reserved(addr: &str) -> Option<Box<dyn Listener>> {
        let port: u16 = addr.rsplit_once(':')?.1.parse().ok()?;
        let l = RESERVED.lock().unwrap().remove(&port)?;
        TokioNet::listener_from_std(l).ok()
    }
}

impl Net for ReservedNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        match Self::reserved(addr) {
            Some(l) => Box::pin(async move { Ok(l) }),
            None => TokioNet.bind(addr),
        }
    }

    fn bind_with_backlog<'a>(
        &'a self,
        addr: &'a str,
        backlog: u32,
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        match Self::reserved(addr) {
            Some(l) => Box::pin(async move { Ok(l) }),
            None => TokioNet.bind_with_backlog(addr, backlog),
        }
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        TokioNet.connect(addr)
    }
}

fn config(name: &str, port: u16) -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.server.listen = vec![format!("127.0.0.1:{port}")];
    c.core.broker_name = name.to_owned();
    c
}

/// A connector to `ports`, reconnecting fast.
fn connector(name: &str, ports: &[u16]) -> ConnectorConfig {
    let list: Vec<String> = ports
        .iter()
        .map(|p| format!("tcp://127.0.0.1:{p}"))
        .collect();
    ConnectorConfig {
        name: name.to_owned(),
        uri: format!(
            "static:({})?initialReconnectDelay=100&maxReconnectDelay=500",
            list.join(",")
        ),
        heartbeat_ms: 1_000,
        ..ConnectorConfig::default()
    }
}

async fn start(config: BrokerConfig) -> Running {
    tracing();
    config.validate().unwrap();
    let port = config.server.listen[0]
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let server = Server::bind(Arc::new(ReservedNet), config).await.unwrap();
    let stats = server.stats();
    let reloader = server.reloader();
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
        port,
        stats,
        reloader,
        stop: Some(tx),
        task,
    }
}

async fn client_with(
    broker: ServerAddr,
    credentials: Option<(&str, &str)>,
) -> (Client, ClientStreams) {
    let mut c = ClientConfig::new(ServerList::single(broker), PolicyKind::ActiveMq);
    c.reconnect.initial_delay = Duration::from_millis(50);
    c.reconnect.max_delay = Duration::from_millis(200);
    c.credentials = credentials.map(|(l, p)| Credentials {
        login: l.to_owned(),
        passcode: p.to_owned(),
    });
    Client::start(Arc::new(TokioNet), c)
}

async fn client(broker: ServerAddr) -> (Client, ClientStreams) {
    client_with(broker, None).await
}

/// Waits until `check` holds for the broker's stats.
async fn until(what: &str, broker: &Running, check: impl Fn(&Stats) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = broker.stats();
        if check(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

async fn next(streams: &mut ClientStreams) -> Message {
    timeout(WAIT, streams.messages.recv())
        .await
        .expect("a message in time")
        .expect("stream open")
}

async fn nothing(streams: &mut ClientStreams) {
    if let Ok(Some(m)) = timeout(QUIET, streams.messages.recv()).await {
        panic!("unexpected message {:?} on {}", m.text(), m.destination);
    }
}

async fn send(c: &Client, dest: &str, body: &str, headers: &[(&str, &str)]) {
    let h: Headers = headers.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        c.send_with_receipt(dest, h, body.to_owned()).await,
        SendOutcome::Confirmed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_topic_messages_follow_remote_demand() {
    let b = start(config("B", free_port().await)).await;
    let mut a_config = config("A", free_port().await);
    a_config.connectors.push(connector("to-b", &[b.port]));
    let a = start(a_config).await;

    let (consumer, mut on_b) = client(b.addr()).await;
    consumer
        .subscribe(SubscribeSpec::new("/queue/work"))
        .await
        .unwrap();
    consumer
        .subscribe(SubscribeSpec::new("/topic/news"))
        .await
        .unwrap();
    // Demand reaches A: one demand subscription per destination (conduit).
    until("demand on A", &a, |s| s.network_subscriptions_current == 2).await;

    let (producer, _p) = client(a.addr()).await;
    send(&producer, "/queue/work", "job-1", &[("x", "1")]).await;
    send(&producer, "/topic/news", "headline", &[]).await;
    let mut got = [next(&mut on_b).await, next(&mut on_b).await];
    got.sort_by(|x, y| x.destination.cmp(&y.destination));
    assert_eq!(got[0].destination, "/queue/work");
    assert_eq!(got[0].text(), Some("job-1"));
    assert_eq!(got[0].header("x"), Some("1"), "headers pass the bridge");
    assert_eq!(got[0].header("stampede-broker-path"), Some("A"));
    assert_eq!(got[1].destination, "/topic/news");
    assert_eq!(got[1].text(), Some("headline"));
    // Store and forward: A acknowledged nothing it had not confirmed; nothing is left.
    until("A's queue drained", &a, |s| s.queued_current == 0).await;
    // Not duplex: nothing flows from B to A.
    let (a_consumer, mut on_a) = client(a.addr()).await;
    a_consumer
        .subscribe(SubscribeSpec::new("/topic/back"))
        .await
        .unwrap();
    send(&consumer, "/topic/back", "no", &[]).await;
    nothing(&mut on_a).await;
    // Demand goes away with the consumer.
    consumer.disconnect().await;
    until("demand gone", &a, |s| s.network_subscriptions_current == 0).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_conduit_queue_demand_keeps_selectors_and_duplex_carries_both_ways() {
    let b = start(config("B", free_port().await)).await;
    let mut a_config = config("A", free_port().await);
    let mut c = connector("queues", &[b.port]);
    c.conduit_subscriptions = false;
    c.duplex = true;
    a_config.connectors.push(c);
    let a = start(a_config).await;

    // Two MCollective-style nodes on B with identity selectors.
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let (n, s) = client(b.addr()).await;
        n.subscribe(
            SubscribeSpec::new("/queue/mcollective.nodes")
                .selector(format!("mc_identity = '{id}'")),
        )
        .await
        .unwrap();
        nodes.push((n, s));
    }
    until("per-consumer demand on A", &a, |s| {
        s.network_subscriptions_current == 2
    })
    .await;
    let (producer, _p) = client(a.addr()).await;
    for (id, body) in [("n2", "for-n2"), ("n1", "for-n1"), ("n2", "again-n2")] {
        send(
            &producer,
            "/queue/mcollective.nodes",
            body,
            &[("mc_identity", id)],
        )
        .await;
    }
    assert_eq!(next(&mut nodes[0].1).await.text(), Some("for-n1"));
    assert_eq!(next(&mut nodes[1].1).await.text(), Some("for-n2"));
    assert_eq!(next(&mut nodes[1].1).await.text(), Some("again-n2"));
    nothing(&mut nodes[0].1).await;
    // A message for no node anywhere stays on A.
    send(
        &producer,
        "/queue/mcollective.nodes",
        "nobody",
        &[("mc_identity", "n9")],
    )
    .await;
    until("unmatched message waits on A", &a, |s| {
        s.queued_current == 1
    })
    .await;

    // Duplex: a reply queue consumer on A gets replies sent on B, over the same bridge.
    let (client_a, mut replies) = client(a.addr()).await;
    client_a
        .subscribe(SubscribeSpec::new("/queue/mcollective.reply.x"))
        .await
        .unwrap();
    until("mirrored demand on B", &b, |s| {
        s.network_subscriptions_current == 1
    })
    .await;
    send(&nodes[0].0, "/queue/mcollective.reply.x", "pong", &[]).await;
    let reply = next(&mut replies).await;
    assert_eq!(reply.text(), Some("pong"));
    assert_eq!(reply.header("stampede-broker-path"), Some("B"));
    // The mirrored consumer is not mirrored back: A has only the node demand.
    sleep(QUIET).await;
    assert_eq!(a.stats().network_subscriptions_current, 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_wait_while_the_remote_broker_is_down() {
    let b_port = free_port().await;
    let b = start(config("B", b_port)).await;
    let mut a_config = config("A", free_port().await);
    a_config.connectors.push(connector("to-b", &[b_port]));
    let a = start(a_config).await;
    let (consumer, mut on_b) = client(b.addr()).await;
    consumer
        .subscribe(SubscribeSpec::new("/queue/work").ack(AckMode::ClientIndividual))
        .await
        .unwrap();
    until("demand on A", &a, |s| s.network_subscriptions_current == 1).await;

    b.stop().await;
    until("demand gone with B", &a, |s| {
        s.network_subscriptions_current == 0
    })
    .await;
    let (producer, _p) = client(a.addr()).await;
    for i in 0..5 {
        send(&producer, "/queue/work", &format!("m{i}"), &[]).await;
    }
    until("messages kept on A", &a, |s| s.queued_current == 5).await;

    // B comes back on the same port; the consumer and the bridge reconnect.
    let b = start(config("B", b_port)).await;
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let m = next(&mut on_b).await;
        consumer.ack(&m).await.unwrap();
        bodies.push(m.text().unwrap().to_owned());
    }
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    until("A's queue empty", &a, |s| s.queued_current == 0).await;
    nothing(&mut on_b).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_delivers_topic_messages_once_and_never_loops() {
    // A → B → C → A, each a one-way connector, TTL 3 (so demand and messages could go
    // all the way around the ring without the broker path).
    let ports = [free_port().await, free_port().await, free_port().await];
    let names = ["A", "B", "C"];
    let mut brokers = Vec::new();
    for i in 0..3 {
        let mut c = config(names[i], ports[i]);
        let mut k = connector("ring", &[ports[(i + 1) % 3]]);
        k.network_ttl = Some(3);
        c.connectors.push(k);
        brokers.push(start(c).await);
    }
    let mut consumers = Vec::new();
    for b in &brokers {
        let (c, s) = client(b.addr()).await;
        c.subscribe(SubscribeSpec::new("/topic/ring"))
            .await
            .unwrap();
        consumers.push((c, s));
    }
    // Each broker's connector watches its successor: one conduit subscription each,
    // standing for the successor's consumer and the one two hops away.
    for b in &brokers {
        until("ring demand", b, |s| s.network_subscriptions_current >= 1).await;
    }
    let (producer, _p) = client(brokers[0].addr()).await;
    for i in 0..10 {
        send(&producer, "/topic/ring", &format!("r{i}"), &[]).await;
    }
    for (i, (_, s)) in consumers.iter_mut().enumerate() {
        for j in 0..10 {
            let m = next(s).await;
            assert_eq!(m.text(), Some(format!("r{j}").as_str()), "broker {i}");
            let path = m.header("stampede-broker-path").unwrap_or("");
            assert!(!path.split(',').any(|b| b == names[i]), "returned: {path}");
        }
        nothing(s).await;
    }
    // Forwarding stopped: counters stay put.
    let before: Vec<u64> = brokers
        .iter()
        .map(|b| b.stats().messages_forwarded)
        .collect();
    sleep(QUIET).await;
    let after: Vec<u64> = brokers
        .iter()
        .map(|b| b.stats().messages_forwarded)
        .collect();
    assert_eq!(before, after);
    assert!(after.iter().sum::<u64>() >= 20, "{after:?}");
    for b in brokers {
        b.stop().await;
    }
}

const SECURED: &str = r#"
[security]
[[security.users]]
name = "bridge"
password = "pw"
groups = ["bridges"]

[[security.users]]
name = "app"
password = "app"
groups = ["apps"]

[[security.authorization]]
queue = "open.>"
read = ["bridges", "apps"]
write = ["bridges", "apps"]
admin = ["bridges", "apps"]

[[security.authorization]]
queue = "closed.>"
read = ["bridges", "apps"]
write = ["apps"]
admin = ["bridges", "apps"]
"#;

fn secured(name: &str, port: u16) -> BrokerConfig {
    let mut c = BrokerConfig::parse(SECURED, "test.toml").unwrap();
    c.server.listen = vec![format!("127.0.0.1:{port}")];
    c.core.broker_name = name.to_owned();
    c.core.limits.redeliveries_max = 2;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_log_in_and_the_remote_authorization_applies() {
    let b = start(secured("B", free_port().await)).await;
    let mut a_config = secured("A", free_port().await);
    let mut good = connector("good", &[b.port]);
    good.login = Some("bridge".into());
    good.passcode = Some("pw".into());
    a_config.connectors.push(good);
    let a = start(a_config).await;

    let (consumer, mut on_b) = client_with(b.addr(), Some(("app", "app"))).await;
    consumer
        .subscribe(SubscribeSpec::new("/queue/open.q"))
        .await
        .unwrap();
    consumer
        .subscribe(SubscribeSpec::new("/queue/closed.q"))
        .await
        .unwrap();
    until("demand on A", &a, |s| s.network_subscriptions_current == 2).await;
    let (producer, _p) = client_with(a.addr(), Some(("app", "app"))).await;
    send(&producer, "/queue/open.q", "allowed", &[]).await;
    assert_eq!(next(&mut on_b).await.text(), Some("allowed"));
    // The bridge user may not write closed.> on B: the forward is refused, NACKed, and
    // after the redeliveries the message is dead-lettered on A.
    send(&producer, "/queue/closed.q", "refused", &[]).await;
    until("refused forward dead-lettered", &a, |s| {
        s.messages_dead_lettered == 1
    })
    .await;
    nothing(&mut on_b).await;
    assert!(b.stats().sends_refused >= 1);
    a.stop().await;

    // Wrong credentials: the bridge never gets in, so no demand ever appears on C.
    let mut c_config = secured("C", free_port().await);
    let mut bad = connector("bad", &[b.port]);
    bad.login = Some("bridge".into());
    bad.passcode = Some("wrong".into());
    c_config.connectors.push(bad);
    let c = start(c_config).await;
    sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.stats().network_subscriptions_current, 0);
    assert_eq!(b.stats().network_subscriptions_current, 0);
    assert!(b.stats().errors_sent >= 1, "B refused the bridge's CONNECT");
    c.stop().await;
    b.stop().await;
}

#[test]
fn connector_configuration_errors_name_file_line_and_key() {
    let err = |text: &str| {
        BrokerConfig::parse(text, "broker.toml")
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("[[connectors]]\nname = 'a'\nuri = 'tcp://b:61613'\n"),
        "broker.toml:3: connectors[0].uri: `tcp://b:61613`: expected \
         `static:(tcp://host:port,…)` or `multicast://group`"
    );
    assert_eq!(
        err(
            "[[connectors]]\nname = 'a'\nuri = 'static:(tcp://b:1)'\n\n[[connectors]]\nname = 'a'\nuri = 'static:(tcp://c:1)'\n"
        ),
        "broker.toml:6: connectors[1].name: connector name `a` is used twice"
    );
    assert_eq!(
        err("[[connectors]]\nname = 'a'\nuri = 'static:(tcp://b:1)'\nnetwork_ttl = 0\n"),
        "broker.toml:4: connectors[0].network_ttl: must be at least 1 (one hop: the neighbouring broker)"
    );
    assert_eq!(
        err(
            "[[connectors]]\nname = 'a'\nuri = 'static:(tcp://b:1)'\nexcluded_destinations = ['/queue/>', 'x']\n"
        ),
        "broker.toml:4: connectors[0].excluded_destinations[1]: `x` must start with \
         `/queue/` or `/topic/` (e.g. `/queue/>` for all queues)"
    );
    assert_eq!(
        err("[[connectors]]\nname = 'a'\nuri = 'static:(tcp://b:1)'\nconduit = false\n"),
        "broker.toml:4: connectors[0].conduit: unknown field `conduit`, expected one of `name`, `uri`, `login`, `passcode`, `local_login`, `local_passcode`, `duplex`, `network_ttl`, `message_ttl`, `consumer_ttl`, `conduit_subscriptions`, `decrease_network_consumer_priority`, `dynamic_only`, `excluded_destinations`, `dynamically_included_destinations`, `replay_when_no_consumers`, `prefetch`, `heartbeat_ms`"
    );
    assert_eq!(
        err("[[connectors]]\nuri = 'static:(tcp://b:1)'\n"),
        "broker.toml:1: connectors[0].name: every connector needs a name"
    );
    assert_eq!(
        err("[discovery]\ngroup = 'g'\naddress = '10.0.0.1:6155'\n"),
        "broker.toml:3: discovery.address: `10.0.0.1:6155` is not a multicast address (224.0.0.0/4) or 255.255.255.255"
    );
}

/// Connectors added, changed and removed while the broker runs (what SIGHUP does): an
/// added one starts bridging, an unchanged one keeps its connection through a reload, a
/// changed one reconnects, a removed one stops carrying messages; invalid connectors are
/// refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_are_added_changed_and_removed_at_run_time() {
    let b = start(config("B", free_port().await)).await;
    let c = start(config("C", free_port().await)).await;
    let a = start(config("A", free_port().await)).await;
    let changes = |started: &[&str], stopped: &[&str], restarted: &[&str]| NetworkChanges {
        started: started.iter().map(|s| s.to_string()).collect(),
        stopped: stopped.iter().map(|s| s.to_string()).collect(),
        restarted: restarted.iter().map(|s| s.to_string()).collect(),
    };
    let none = DiscoveryConfig::default();

    let (on_b_client, mut on_b) = client(b.addr()).await;
    on_b_client
        .subscribe(SubscribeSpec::new("/topic/news"))
        .await
        .unwrap();
    let (on_c_client, mut on_c) = client(c.addr()).await;
    on_c_client
        .subscribe(SubscribeSpec::new("/topic/news"))
        .await
        .unwrap();
    let (producer, _p) = client(a.addr()).await;
    send(&producer, "/topic/news", "before", &[]).await;
    nothing(&mut on_b).await;

    // Added: A starts bridging to B.
    let to_b = connector("to-b", &[b.port]);
    let got = a
        .reloader
        .reload_network(std::slice::from_ref(&to_b), &none)
        .await;
    assert_eq!(got.unwrap(), changes(&["to-b"], &[], &[]));
    until("demand from B", &a, |s| {
        s.network_subscriptions_current == 1
    })
    .await;
    send(&producer, "/topic/news", "one", &[]).await;
    assert_eq!(next(&mut on_b).await.text(), Some("one"));
    nothing(&mut on_c).await;

    // Another added; the unchanged one keeps its connection to B.
    let b_opened = b.stats().connections_opened;
    let to_c = connector("to-c", &[c.port]);
    let both = [to_b.clone(), to_c.clone()];
    let got = a.reloader.reload_network(&both, &none).await;
    assert_eq!(got.unwrap(), changes(&["to-c"], &[], &[]));
    until("demand from C", &a, |s| {
        s.network_subscriptions_current == 2
    })
    .await;
    send(&producer, "/topic/news", "two", &[]).await;
    assert_eq!(next(&mut on_b).await.text(), Some("two"));
    assert_eq!(next(&mut on_c).await.text(), Some("two"));
    assert_eq!(b.stats().connections_opened, b_opened, "to-b reconnected");

    // Changed: it reconnects with its new settings and carries messages again.
    let mut to_b_slower = to_b.clone();
    to_b_slower.heartbeat_ms = 2_000;
    let got = a
        .reloader
        .reload_network(&[to_b_slower.clone(), to_c.clone()], &none)
        .await;
    assert_eq!(got.unwrap(), changes(&[], &[], &["to-b"]));
    until("to-b back", &b, |s| s.connections_opened > b_opened).await;
    until("demand from both", &a, |s| {
        s.network_subscriptions_current == 2
    })
    .await;
    send(&producer, "/topic/news", "three", &[]).await;
    assert_eq!(next(&mut on_b).await.text(), Some("three"));
    assert_eq!(next(&mut on_c).await.text(), Some("three"));

    // Invalid (a name used twice): refused, nothing changes.
    let twice = [to_c.clone(), to_c.clone()];
    match a.reloader.reload_network(&twice, &none).await {
        Err(ReloadError::Invalid(e)) => assert!(e.contains("used twice"), "{e}"),
        other => panic!("{other:?}"),
    }
    send(&producer, "/topic/news", "four", &[]).await;
    assert_eq!(next(&mut on_b).await.text(), Some("four"));
    assert_eq!(next(&mut on_c).await.text(), Some("four"));

    // Removed: nothing crosses any more, and the demand is gone.
    let got = a.reloader.reload_network(&[], &none).await;
    assert_eq!(got.unwrap(), changes(&[], &["to-b", "to-c"], &[]));
    until("no demand", &a, |s| s.network_subscriptions_current == 0).await;
    send(&producer, "/topic/news", "after", &[]).await;
    nothing(&mut on_b).await;
    nothing(&mut on_c).await;
    a.stop().await;
    b.stop().await;
    c.stop().await;
}
