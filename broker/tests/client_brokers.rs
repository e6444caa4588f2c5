//! The failover client against real `stampede-broker` processes: a consumer subscribed to
//! a queue and a topic on broker A follows the stomp gem policy to broker B when A is
//! killed, replays both subscriptions there and keeps receiving.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Broker;
use stampede_broker::client::{
    Client, ClientConfig, ClientEvent, ClientStreams, DisconnectReason, Message, PolicyKind,
    SendOutcome, ServerAddr, ServerList, Status, SubscribeSpec, SubscriptionId,
};
use stampede_broker::net::TokioNet;
use stampede_broker::proto::Headers;
use tokio::time::timeout;

/// Bound on anything that must happen; generous for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(30);

fn addr_of(b: &Broker) -> ServerAddr {
    ServerAddr::new(b.host(), b.addr().port())
}

fn client_config(servers: Vec<ServerAddr>) -> ClientConfig {
    let mut cfg = ClientConfig::new(ServerList::new(servers).unwrap(), PolicyKind::StompGem);
    cfg.events_buffered_max = 1024;
    cfg.reconnect.connect_timeout = Some(Duration::from_secs(10));
    cfg
}

async fn next_event(streams: &mut ClientStreams) -> ClientEvent {
    timeout(WAIT, streams.events.recv())
        .await
        .expect("an event in time")
        .expect("event stream open")
}

async fn events(streams: &mut ClientStreams, n: usize) -> Vec<ClientEvent> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_event(streams).await);
    }
    out
}

async fn next_message(streams: &mut ClientStreams) -> Message {
    timeout(WAIT, streams.messages.recv())
        .await
        .expect("a message in time")
        .expect("message stream open")
}

/// A producer connected to one broker only.
async fn producer(broker: ServerAddr) -> (Client, ClientStreams) {
    let (p, mut s) = Client::start(Arc::new(TokioNet), client_config(vec![broker]));
    let first = events(&mut s, 3).await;
    assert_eq!(first[1], ClientEvent::Connected { server: 0 }, "{first:?}");
    (p, s)
}

async fn publish(p: &Client, destination: &str, body: &str) {
    assert_eq!(
        p.send_with_receipt(destination, Headers::new(), body.to_owned())
            .await,
        SendOutcome::Confirmed,
        "{destination} {body}"
    );
}

/// Receives `n` messages; returns (subscription, body) pairs sorted.
async fn receive(streams: &mut ClientStreams, n: usize) -> Vec<(SubscriptionId, String)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let m = next_message(streams).await;
        let sub = m.subscription.expect("attributed to a subscription");
        got.push((sub, m.text().unwrap_or("").to_owned()));
    }
    got.sort();
    got
}

fn refuses_connections(addr: SocketAddr) -> bool {
    matches!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_fails_over_to_the_second_broker_process_and_keeps_receiving() {
    let a = tokio::task::spawn_blocking(|| Broker::start("client-fo-a"))
        .await
        .unwrap();
    let b = tokio::task::spawn_blocking(|| Broker::start("client-fo-b"))
        .await
        .unwrap();
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let (client, mut streams) = Client::start(
        Arc::new(TokioNet),
        client_config(vec![addr_of(&a), addr_of(&b)]),
    );
    let queue = client
        .subscribe(SubscribeSpec::new("/queue/failover.q"))
        .await
        .unwrap();
    let topic = client
        .subscribe(SubscribeSpec::new("/topic/failover.t").id("topic-sub"))
        .await
        .unwrap();
    assert_eq!(
        events(&mut streams, 3).await,
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
    // The broker handles a connection's frames in order: once this is confirmed, both
    // SUBSCRIBEs are in place on A.
    publish(&client, "/queue/failover.barrier", "").await;

    let (on_a, _on_a_streams) = producer(addr_of(&a)).await;
    publish(&on_a, "/queue/failover.q", "q from A").await;
    publish(&on_a, "/topic/failover.t", "t from A").await;
    assert_eq!(
        receive(&mut streams, 2).await,
        [
            (queue, "q from A".to_owned()),
            (topic, "t from A".to_owned())
        ]
    );
    on_a.disconnect().await;

    // Kill A (SIGKILL; the guard reaps it).
    tokio::task::spawn_blocking(move || drop(a)).await.unwrap();
    assert!(refuses_connections(a_addr), "broker A is gone");

    let failover = events(&mut streams, 5).await;
    assert!(
        matches!(
            &failover[0],
            ClientEvent::Disconnected {
                reason: DisconnectReason::Eof | DisconnectReason::Io(_)
            }
        ),
        "{failover:?}"
    );
    assert_eq!(
        failover[1..],
        [
            // The stomp gem goes to the next host at once.
            ClientEvent::Attempt {
                server: 1,
                number: 1,
                delay: Duration::ZERO
            },
            ClientEvent::Connected { server: 1 },
            ClientEvent::Resubscribed { count: 2 },
            ClientEvent::Failover { from: 0, to: 1 },
        ],
        "{failover:?}"
    );
    assert!(matches!(
        client.status(),
        Status::Connected { server: 1, .. }
    ));
    publish(&client, "/queue/failover.barrier", "").await;

    let (on_b, _on_b_streams) = producer(ServerAddr::new(b.host(), b_addr.port())).await;
    for i in 0..3 {
        publish(&on_b, "/queue/failover.q", &format!("q from B {i}")).await;
        publish(&on_b, "/topic/failover.t", &format!("t from B {i}")).await;
    }
    let mut want: Vec<(SubscriptionId, String)> = (0..3)
        .flat_map(|i| {
            [
                (queue, format!("q from B {i}")),
                (topic, format!("t from B {i}")),
            ]
        })
        .collect();
    want.sort();
    assert_eq!(receive(&mut streams, 6).await, want);
    // One attempt was enough: nothing else happened.
    assert!(streams.events.try_recv().is_err());
    assert_eq!(client.events_dropped(), 0);
    on_b.disconnect().await;
    client.disconnect().await;
    drop(b);
}
