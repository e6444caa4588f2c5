//! Configuration reload without a restart: the real `stampede-broker` binary is sent
//! SIGHUP after its configuration file changed. Tightened permissions refuse the next
//! SEND while the session stays up; a file that does not load leaves the old rules in
//! force, with an error naming the file and line.

mod common;
mod support;

use std::fs;

use common::Broker;
use stampede_broker::proto::{Command as Stomp, Frame};
use support::Raw;

const BEFORE: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[security.users]]
name = "alice"
password = "secret"
groups = ["app"]

[[security.authorization]]
queue = "app.>"
read = ["app"]
write = ["app"]
admin = ["app"]
"#;

/// alice may still read `app.>`, but no longer write to it.
const TIGHTENED: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[security.users]]
name = "alice"
password = "secret"
groups = ["app"]

[[security.authorization]]
queue = "app.>"
read = ["app"]
admin = ["app"]
"#;

const BROKEN: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[security.users]]
name = "alice"
password = 5
"#;

async fn login(addr: &str) -> Raw {
    let mut c = Raw::open(addr).await;
    c.write_frame(
        Frame::new(Stomp::Connect)
            .header("accept-version", "1.2")
            .header("login", "alice")
            .header("passcode", "secret"),
    )
    .await;
    let f = c.read_frame().await.expect("CONNECTED");
    assert_eq!(f.command, Stomp::Connected, "{f:?}");
    c
}

async fn send(c: &mut Raw, receipt: &str) -> Frame {
    c.write_frame(
        Frame::new(Stomp::Send)
            .header("destination", "/queue/app.orders")
            .header("receipt", receipt)
            .body("order"),
    )
    .await;
    c.read_frame().await.expect("a RECEIPT or an ERROR")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_tightens_permissions_for_live_sessions_and_a_broken_file_changes_nothing() {
    let broker = Broker::start_with_config("reload", BEFORE);
    let addr = broker.addr().to_string();
    let config = broker.dir().join("broker.toml");
    let mut alice = login(&addr).await;
    assert_eq!(send(&mut alice, "1").await.command, Stomp::Receipt);

    fs::write(&config, TIGHTENED).unwrap();
    broker.hangup();
    broker.wait_for_log("reloaded users, groups and authorization", 1);
    let refused = send(&mut alice, "2").await;
    assert_eq!(refused.command, Stomp::Error, "{refused:?}");
    assert!(
        refused
            .headers
            .get("message")
            .unwrap_or("")
            .contains("not authorized"),
        "{refused:?}"
    );
    // The session stays up and may still read what it could read before.
    alice
        .write_frame(
            Frame::new(Stomp::Subscribe)
                .header("id", "s")
                .header("destination", "/queue/app.orders")
                .header("receipt", "3"),
        )
        .await;
    let mut got = vec![alice.read_frame().await.unwrap().command];
    got.push(alice.read_frame().await.unwrap().command);
    got.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(got, [Stomp::Message, Stomp::Receipt]);

    fs::write(&config, BROKEN).unwrap();
    broker.hangup();
    broker.wait_for_log("configuration reload refused", 1);
    let log = broker.log_tail(50);
    assert!(
        log.contains("broker.toml:7: security.users[0].password"),
        "the error names file, line and key:\n{log}"
    );
    // The tightened rules are still in force, for old and new sessions alike.
    assert_eq!(send(&mut alice, "4").await.command, Stomp::Error);
    let mut again = login(&addr).await;
    assert_eq!(send(&mut again, "5").await.command, Stomp::Error);
}

/// SIGHUP applies added and removed connectors without the restart warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_starts_and_stops_network_connectors() {
    let broker = Broker::start_with_config("reload-network", BEFORE);
    let config = broker.dir().join("broker.toml");
    // A connector to a port nobody listens on: its bridge keeps retrying, which is enough
    // to see it started and stopped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let with = format!(
        "{BEFORE}\n[[connectors]]\nname = \"to-nowhere\"\nuri = \"static:(tcp://127.0.0.1:{port})\"\n"
    );
    fs::write(&config, &with).unwrap();
    broker.hangup();
    broker.wait_for_log("reloaded network connectors", 1);
    let log = plain(&broker.log_tail(50));
    assert!(log.contains("started=[\"to-nowhere\"]"), "{log}");
    fs::write(&config, BEFORE).unwrap();
    broker.hangup();
    broker.wait_for_log("reloaded network connectors", 2);
    let log = plain(&broker.log_tail(50));
    assert!(log.contains("stopped=[\"to-nowhere\"]"), "{log}");
    assert!(!log.contains("restart the broker"), "{log}");
}

/// `text` without its terminal colour sequences (ESC `[` … `m`).
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const VHOSTS_BEFORE: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[core.vhosts]]
name = "/app"
convention = "rabbitmq"

[[core.vhosts.exchanges]]
name = "orders"
type = "topic"

[[core.vhosts]]
name = "/old"
convention = "rabbitmq"
"#;

/// `/app` gains exchange `invoices`; `/old` is gone.
const VHOSTS_AFTER: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[core.vhosts]]
name = "/app"
convention = "rabbitmq"

[[core.vhosts.exchanges]]
name = "orders"
type = "topic"

[[core.vhosts.exchanges]]
name = "invoices"
type = "direct"
"#;

const VHOSTS_BROKEN: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[core.vhosts]]
name = "/app"
convention = "rabbitmq"

[[core.vhosts.exchanges]]
name = "orders"
type = "headers"
"#;

async fn enter(addr: &str, vhost: &str) -> (Raw, Frame) {
    let mut c = Raw::open(addr).await;
    c.write_frame(
        Frame::new(Stomp::Connect)
            .header("accept-version", "1.2")
            .header("host", vhost),
    )
    .await;
    let f = c.read_frame().await.expect("CONNECTED or ERROR");
    (c, f)
}

async fn publish(c: &mut Raw, dest: &str, receipt: &str) -> Frame {
    c.write_frame(
        Frame::new(Stomp::Send)
            .header("destination", dest)
            .header("receipt", receipt)
            .body("x"),
    )
    .await;
    c.read_frame().await.expect("a RECEIPT or an ERROR")
}

/// SIGHUP applies added exchanges from the next frame and closes the sessions of a removed
/// vhost; other sessions and their subscriptions stay; a broken file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_vhosts_and_exchanges() {
    let broker = Broker::start_with_config("reload-vhosts", VHOSTS_BEFORE);
    let addr = broker.addr().to_string();
    let config = broker.dir().join("broker.toml");
    let (mut app, f) = enter(&addr, "/app").await;
    assert_eq!(f.command, Stomp::Connected, "{f:?}");
    app.write_frame(
        Frame::new(Stomp::Subscribe)
            .header("id", "s")
            .header("destination", "/exchange/orders/#")
            .header("receipt", "sub"),
    )
    .await;
    assert_eq!(app.read_frame().await.unwrap().command, Stomp::Receipt);
    let (mut probe, _) = enter(&addr, "/app").await;
    let missing = publish(&mut probe, "/exchange/invoices/k", "p").await;
    assert_eq!(missing.command, Stomp::Error, "{missing:?}");
    let (mut old, f) = enter(&addr, "/old").await;
    assert_eq!(f.command, Stomp::Connected, "{f:?}");

    fs::write(&config, VHOSTS_AFTER).unwrap();
    broker.hangup();
    broker.wait_for_log("reloaded virtual hosts", 1);
    let closed = old
        .read_frame()
        .await
        .expect("an ERROR for the removed vhost");
    assert_eq!(closed.command, Stomp::Error, "{closed:?}");
    assert!(
        closed
            .headers
            .get("message")
            .unwrap_or("")
            .contains("vhost '/old' was deleted"),
        "{closed:?}"
    );
    assert!(old.read_frame().await.is_none(), "closed after the ERROR");
    // The session in /app stayed, with its subscription, and sees the new exchange.
    let (mut producer, _) = enter(&addr, "/app").await;
    assert_eq!(
        publish(&mut producer, "/exchange/invoices/k", "1")
            .await
            .command,
        Stomp::Receipt
    );
    assert_eq!(
        publish(&mut producer, "/exchange/orders/new", "2")
            .await
            .command,
        Stomp::Receipt
    );
    let m = app.read_frame().await.expect("a MESSAGE");
    assert_eq!(m.command, Stomp::Message, "{m:?}");
    assert_eq!(m.headers.get("destination"), Some("/exchange/orders/new"));
    let (_, refused) = enter(&addr, "/old").await;
    assert_eq!(refused.command, Stomp::Error, "{refused:?}");

    fs::write(&config, VHOSTS_BROKEN).unwrap();
    broker.hangup();
    broker.wait_for_log("configuration reload refused", 1);
    let log = plain(&broker.log_tail(50));
    assert!(
        log.contains("broker.toml:11: core.vhosts[0].exchanges[0].type"),
        "the error names file, line and key:\n{log}"
    );
    assert_eq!(
        publish(&mut producer, "/exchange/invoices/k", "3")
            .await
            .command,
        Stomp::Receipt,
        "the reloaded vhosts stay in force"
    );
}
