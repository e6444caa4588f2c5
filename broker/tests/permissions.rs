//! Per-vhost permissions in RabbitMQ's configure/write/read model, through the real
//! `stampede-broker` binary: a user without an entry for a vhost cannot CONNECT to it; a
//! SEND or SUBSCRIBE the patterns refuse gets RabbitMQ's `access_refused` ERROR, no
//! RECEIPT, and the connection closes; allowed users exchange messages; a SIGHUP that
//! tightens the rules refuses new connections, and a broken file keeps the old rules.

mod common;
mod support;

use std::fs;

use common::Broker;
use stampede_broker::proto::{Command as Stomp, Frame};
use support::Raw;

/// The part of the configuration that stays the same: vhosts and users.
const BASE: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[core]
default_vhost = "/"

[[core.vhosts]]
name = "/"
convention = "rabbitmq"

[[core.vhosts.exchanges]]
name = "app"
type = "topic"

[[core.vhosts]]
name = "/other"
convention = "rabbitmq"

[[security.users]]
name = "alice"
password = "secret"

[[security.users]]
name = "bob"
password = "secret"

[[security.users]]
name = "carol"
password = "secret"
"#;

/// alice may do everything in `/`; bob may consume from `app` through his own
/// subscription queues but not publish to it; carol may publish to `app` only. Nobody
/// has an entry for `/other`.
const BEFORE: &str = r#"
[[security.permissions]]
user = "alice"
vhost = "/"
configure = ".*"
write = ".*"
read = ".*"

[[security.permissions]]
user = "bob"
vhost = "/"
configure = "^stomp-subscription-"
write = "^stomp-subscription-"
read = "^(app|stomp-subscription-.*)$"

[[security.permissions]]
user = "carol"
vhost = "/"
configure = "^stomp-subscription-"
write = "^(app|stomp-subscription-.*)$"
read = ""
"#;

/// alice loses her entry; carol may no longer publish to `app`.
const TIGHTENED: &str = r#"
[[security.permissions]]
user = "bob"
vhost = "/"
configure = "^stomp-subscription-"
write = "^stomp-subscription-"
read = "^(app|stomp-subscription-.*)$"

[[security.permissions]]
user = "carol"
vhost = "/"
configure = "^stomp-subscription-"
write = "^stomp-subscription-"
read = ""
"#;

/// Would give carol everything back, but one pattern is not a regular expression.
const BROKEN: &str = r#"
[[security.permissions]]
user = "carol"
vhost = "/"
configure = ".*"
write = "^(app"
read = ".*"
"#;

fn config(permissions: &str) -> String {
    format!("{BASE}{permissions}")
}

/// Sends CONNECT for `user` to `vhost` and returns the connection and the answer.
async fn connect(addr: &str, user: &str, vhost: &str) -> (Raw, Frame) {
    let mut c = Raw::open(addr).await;
    c.write_frame(
        Frame::new(Stomp::Connect)
            .header("accept-version", "1.2")
            .header("host", vhost)
            .header("login", user)
            .header("passcode", "secret"),
    )
    .await;
    let f = c.read_frame().await.expect("an answer to CONNECT");
    (c, f)
}

async fn login(addr: &str, user: &str) -> Raw {
    let (c, f) = connect(addr, user, "/").await;
    assert_eq!(f.command, Stomp::Connected, "{user}: {f:?}");
    c
}

fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

/// Asserts that `user`'s CONNECT to `vhost` is refused as RabbitMQ refuses it.
async fn assert_connect_refused(addr: &str, user: &str, vhost: &str) {
    let (mut c, f) = connect(addr, user, vhost).await;
    assert_eq!(f.command, Stomp::Error, "{user} into {vhost}: {f:?}");
    assert_eq!(f.headers.get("message"), Some("Bad CONNECT"), "{f:?}");
    assert_eq!(body(&f), format!("Virtual host '{vhost}' access denied"));
    assert!(c.read_frame().await.is_none(), "the connection must close");
}

/// Sends `frame` (which asks for a receipt) and asserts that the answer is an
/// `access_refused` ERROR with `expected` as its body, no RECEIPT, and a close.
async fn assert_refused(c: &mut Raw, frame: Frame, expected: &str) {
    c.write_frame(frame).await;
    let f = c.read_frame().await.expect("an ERROR");
    assert_eq!(f.command, Stomp::Error, "{f:?}");
    assert_eq!(f.headers.get("message"), Some("access_refused"), "{f:?}");
    assert_eq!(body(&f), expected);
    assert!(c.read_frame().await.is_none(), "no RECEIPT, and a close");
}

fn send(destination: &str, receipt: &str) -> Frame {
    Frame::new(Stomp::Send)
        .header("destination", destination)
        .header("receipt", receipt)
        .body(format!("to {destination}"))
}

fn subscribe(id: &str, destination: &str, receipt: &str) -> Frame {
    Frame::new(Stomp::Subscribe)
        .header("id", id)
        .header("destination", destination)
        .header("receipt", receipt)
}

async fn expect_receipt(c: &mut Raw, id: &str) {
    let f = c.read_frame().await.expect("a RECEIPT");
    assert_eq!(f.command, Stomp::Receipt, "{f:?}");
    assert_eq!(f.headers.get("receipt-id"), Some(id));
}

/// bob subscribes to `app`, carol publishes to it: both allowed, and the message arrives.
async fn bob_hears_carol(addr: &str, key: &str) {
    let mut bob = login(addr, "bob").await;
    bob.write_frame(subscribe("s", "/exchange/app/orders.#", "b1"))
        .await;
    expect_receipt(&mut bob, "b1").await;
    let mut carol = login(addr, "carol").await;
    carol
        .write_frame(send(&format!("/exchange/app/orders.{key}"), "c1"))
        .await;
    expect_receipt(&mut carol, "c1").await;
    let m = bob.read_frame().await.expect("a MESSAGE");
    assert_eq!(m.command, Stomp::Message, "{m:?}");
    assert_eq!(body(&m), format!("to /exchange/app/orders.{key}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_refuse_connects_and_frames_and_follow_reloads() {
    let broker = Broker::start_with_config("permissions", &config(BEFORE));
    let addr = broker.addr().to_string();
    let path = broker.dir().join("broker.toml");

    // No entry for `/other`: not even alice may enter it.
    assert_connect_refused(&addr, "alice", "/other").await;

    // bob may not publish to `app` (his write pattern names only his queues).
    let mut bob = login(&addr, "bob").await;
    assert_refused(
        &mut bob,
        send("/exchange/app/orders.1", "r1"),
        "ACCESS_REFUSED - write access to exchange 'app' in vhost '/' refused for user 'bob'",
    )
    .await;
    // A `/queue/` SEND declares the queue: configure comes first.
    let mut bob = login(&addr, "bob").await;
    assert_refused(
        &mut bob,
        send("/queue/jobs", "r2"),
        "ACCESS_REFUSED - configure access to queue 'jobs' in vhost '/' refused for user 'bob'",
    )
    .await;

    // carol may not read from `app`: her subscription queue is allowed, the binding's
    // read on the exchange is not.
    let mut carol = login(&addr, "carol").await;
    assert_refused(
        &mut carol,
        subscribe("s", "/exchange/app/#", "r3"),
        "ACCESS_REFUSED - read access to exchange 'app' in vhost '/' refused for user 'carol'",
    )
    .await;
    let mut carol = login(&addr, "carol").await;
    assert_refused(
        &mut carol,
        subscribe("s", "/amq/queue/jobs", "r4"),
        "ACCESS_REFUSED - read access to queue 'jobs' in vhost '/' refused for user 'carol'",
    )
    .await;

    // What the rules allow works end to end: an exchange, and alice's own queue.
    bob_hears_carol(&addr, "1").await;
    let mut alice = login(&addr, "alice").await;
    alice.write_frame(send("/queue/jobs", "a1")).await;
    expect_receipt(&mut alice, "a1").await;
    alice.write_frame(subscribe("q", "/queue/jobs", "a2")).await;
    let mut got = [
        alice.read_frame().await.expect("a frame"),
        alice.read_frame().await.expect("a frame"),
    ];
    got.sort_by_key(|f| format!("{:?}", f.command));
    assert_eq!(got[0].command, Stomp::Message, "{got:?}");
    assert_eq!(body(&got[0]), "to /queue/jobs");
    assert_eq!(got[1].command, Stomp::Receipt, "{got:?}");

    // Tightened: alice has no entry any more, carol may not publish to `app`.
    fs::write(&path, config(TIGHTENED)).unwrap();
    broker.hangup();
    broker.wait_for_log("reloaded users, groups and authorization", 1);
    assert_connect_refused(&addr, "alice", "/").await;
    let mut carol = login(&addr, "carol").await;
    assert_refused(
        &mut carol,
        send("/exchange/app/orders.2", "r5"),
        "ACCESS_REFUSED - write access to exchange 'app' in vhost '/' refused for user 'carol'",
    )
    .await;

    // A file that does not load changes nothing, and the log names file, line and key.
    fs::write(&path, config(BROKEN)).unwrap();
    broker.hangup();
    broker.wait_for_log("configuration reload refused", 1);
    let log = broker.log_tail(50);
    let line = config(BROKEN)
        .lines()
        .position(|l| l.starts_with("write = \"^(app"))
        .unwrap()
        + 1;
    assert!(
        log.contains(&format!(
            "broker.toml:{line}: security.permissions[0].write"
        )),
        "the error names file, line and key:\n{log}"
    );
    assert_connect_refused(&addr, "alice", "/").await;
    let mut carol = login(&addr, "carol").await;
    assert_refused(
        &mut carol,
        send("/exchange/app/orders.3", "r6"),
        "ACCESS_REFUSED - write access to exchange 'app' in vhost '/' refused for user 'carol'",
    )
    .await;
    // bob's rules did not change: he still subscribes.
    let mut bob = login(&addr, "bob").await;
    bob.write_frame(subscribe("s", "/exchange/app/#", "b2"))
        .await;
    expect_receipt(&mut bob, "b2").await;
}
