//! Redis pub/sub on stampede-broker: the real `stampede-broker` binary with a `[redis]`
//! listener, reached by Debian's `redis-cli` and by the redis gem (`ruby-redis`, which
//! MCollective's Redis connector is built on) driving that connector's channel layout,
//! with STOMP clients meeting Redis clients on the same topics.

mod common;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Broker, run_bounded};
use stampede_broker::proto::{Command as Stomp, Frame};
use support::Raw;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One STOMP and one Redis listener; with `users`, a `mcollective` user that
/// `AUTH marionette` logs in as.
fn config(users: bool) -> String {
    let mut text = "[server]\nlisten = [\"127.0.0.1:0\"]\n\n\
                    [redis]\nlisten = [\"127.0.0.1:0\"]\n"
        .to_owned();
    if users {
        text.push_str(
            "default_user = \"mcollective\"\n\n\
             [[security.users]]\nname = \"mcollective\"\npassword = \"marionette\"\n\
             groups = [\"everyone\"]\n\n\
             [[security.authorization]]\ntopic = \">\"\nread = [\"everyone\"]\n\
             write = [\"everyone\"]\nadmin = [\"everyone\"]\n",
        );
    }
    text
}

/// The Redis listener's address: the ready file lists the STOMP listener, then Redis's.
fn redis_port(broker: &Broker) -> u16 {
    let text = std::fs::read_to_string(broker.dir().join("ready")).expect("ready file");
    let addrs: Vec<std::net::SocketAddr> = text.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(addrs.len(), 2, "ready file: {text:?}");
    addrs[1].port()
}

fn require_redis_cli() {
    let ok = Command::new("redis-cli").arg("--version").output();
    assert!(
        ok.is_ok_and(|o| o.status.success()),
        "redis-cli is missing: run scripts/install-test-deps (Debian's redis-tools)"
    );
}

#[test]
fn the_redis_gem_carries_mcollective_s_channel_layout() {
    let broker = Broker::start_with_config("redis-gem", &config(true));
    let port = redis_port(&broker);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/redis_gem_mcollective.rb");
    let mut cmd = Command::new("ruby");
    cmd.arg(script).arg(port.to_string()).arg("marionette");
    let run = run_bounded("the redis gem script", cmd, Duration::from_secs(60));
    common::assert_passed(&run, &broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_stomp_clients_meet_on_a_topic() {
    require_redis_cli();
    let broker = Broker::start_with_config("redis-cli", &config(false));
    let port = redis_port(&broker).to_string();
    let stomp_addr = broker.addr().to_string();

    // Redis → STOMP: a STOMP subscriber on the topic gets what redis-cli publishes.
    let mut stomp = Raw::connected(&stomp_addr).await;
    stomp
        .write_frame(
            Frame::new(Stomp::Subscribe)
                .header("id", "1")
                .header("destination", "/topic/mcollective::server::agents")
                .header("receipt", "r1"),
        )
        .await;
    assert_eq!(stomp.read_frame().await.unwrap().command, Stomp::Receipt);
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &port,
            "PUBLISH",
            "mcollective::server::agents",
            "from redis",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // As Redis answers: the number of subscribers that got it (the STOMP one).
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
    let m = stomp.read_frame().await.expect("a MESSAGE");
    assert_eq!(m.command, Stomp::Message, "{m:?}");
    assert_eq!(&m.body[..], b"from redis");

    // STOMP → Redis: redis-cli SUBSCRIBE prints what a STOMP client sends to the topic.
    let mut sub = tokio::process::Command::new("redis-cli")
        .args(["-p", &port, "SUBSCRIBE", "replies"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sub.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("redis-cli printed nothing")
            .unwrap()
            .expect("redis-cli ended")
    };
    assert_eq!(
        [next().await, next().await, next().await],
        ["subscribe", "replies", "1"]
    );
    stomp
        .write_frame(
            Frame::new(Stomp::Send)
                .header("destination", "/topic/replies")
                .body("from stomp"),
        )
        .await;
    assert_eq!(
        [next().await, next().await, next().await],
        ["message", "replies", "from stomp"]
    );
    let _ = sub.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_garbage_gets_an_error_and_a_close_and_touches_no_one_else() {
    let broker = Broker::start_with_config("redis-garbage", &config(false));
    let port = redis_port(&broker);
    let stomp_addr = broker.addr().to_string();
    let mut canary = Raw::connected(&stomp_addr).await;
    canary
        .write_frame(
            Frame::new(Stomp::Subscribe)
                .header("id", "1")
                .header("destination", "/topic/canary")
                .header("receipt", "r1"),
        )
        .await;
    assert_eq!(canary.read_frame().await.unwrap().command, Stomp::Receipt);

    for garbage in [
        &b"*2\r\n$7\r\nPUBLISH\r\n$99999999999\r\n"[..],
        b"*-5\r\n",
        b"*99999\r\n",
        b"*1\r\n:12\r\n",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(garbage).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
            .await
            .expect("the broker must close the connection")
            .unwrap();
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("-ERR Protocol error"),
            "{garbage:?} got {reply:?}"
        );
    }

    // The canary still gets what a well-behaved Redis client publishes.
    let mut ok = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    ok.write_all(b"*3\r\n$7\r\nPUBLISH\r\n$6\r\ncanary\r\n$5\r\nalive\r\n")
        .await
        .unwrap();
    let mut reply = [0u8; 4];
    ok.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b":1\r\n", "one subscriber: the canary");
    let m = canary.read_frame().await.expect("the canary's MESSAGE");
    assert_eq!(&m.body[..], b"alive");
}
