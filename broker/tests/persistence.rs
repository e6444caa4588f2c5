//! The message store from outside: the real `stampede-broker` binary, a store directory,
//! persistent receipted messages, `kill -9` mid-stream, a restart on the same directory,
//! and every receipted message delivered. Also durable subscriptions across a restart, a
//! torn journal tail, a corrupt record in the middle, a second broker on the same
//! directory, and a shared-store master/slave pair whose master is killed (with a raw
//! client, and with the ruby stomp gem failing over through its pool).

// Real processes in real time: deadlines on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use stampede_broker::proto::{Command, Frame};
use support::Raw;
use tokio::io::AsyncWriteExt;

/// How long a broker may take to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `stampede-broker` process on a store directory; SIGKILLed when dropped.
struct Broker {
    child: Child,
    addr: String,
    log: PathBuf,
    ready: PathBuf,
}

/// The configuration of a broker on store `dir` with `extra` lines under `[store]`.
fn config(dir: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[store]\ndir = \"{}\"\n{extra}\n",
        dir.join("store").display()
    )
}

/// Starts the broker; `Err` with its log when it exits before becoming ready.
fn try_start(dir: &Path, name: &str, config_text: &str) -> Result<Broker, String> {
    let mut broker = spawn(dir, name, config_text);
    broker.wait_ready(READY_TIMEOUT)?;
    Ok(broker)
}

/// Starts the broker and returns at once (it writes `<name>.ready` once listening).
fn spawn(dir: &Path, name: &str, config_text: &str) -> Broker {
    let ready = dir.join(format!("{name}.ready"));
    let log = dir.join(format!("{name}.log"));
    let cfg = dir.join(format!("{name}.toml"));
    let _ = fs::remove_file(&ready);
    fs::write(&cfg, config_text).unwrap();
    let out = fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Process::new(env!("CARGO_BIN_EXE_stampede-broker"))
        .arg("--config")
        .arg(&cfg)
        .arg("--ready-file")
        .arg(&ready)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    Broker {
        child,
        addr: String::new(),
        log,
        ready,
    }
}

fn start(dir: &Path, name: &str, config_text: &str) -> Broker {
    try_start(dir, name, config_text).unwrap_or_else(|e| panic!("broker {name}: {e}"))
}

impl Broker {
    /// Waits up to `timeout` for the ready file and takes the address from it; `Err` with
    /// the log when the broker exits first or the time runs out.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited with {status}:\n{}", self.log_text()));
            }
            if let Ok(text) = fs::read_to_string(&self.ready)
                && let Some(line) = text.lines().next()
            {
                self.addr = line.trim().to_owned();
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready:\n{}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(addr: &str, headers: &[(&str, &str)]) -> Raw {
    let mut c = Raw::open(addr).await;
    let mut f = Frame::new(Command::Connect).header("accept-version", "1.2");
    for (k, v) in headers {
        f = f.header(*k, *v);
    }
    c.write_frame(f).await;
    let got = c.read_frame().await.expect("CONNECTED");
    assert_eq!(got.command, Command::Connected, "{got:?}");
    c.decoder.set_version(stampede_broker::proto::Version::V1_2);
    c
}

fn persistent_send(dest: &str, seq: u64) -> Frame {
    Frame::new(Command::Send)
        .header("destination", dest)
        .header("persistent", "true")
        .header("receipt", format!("r{seq}"))
        .body(format!("{seq}").into_bytes())
}

/// Pipelines `total` persistent receipted SENDs and SIGKILLs the broker once `kill_after`
/// receipts came back (with the rest still in flight). Returns the receipted sequence
/// numbers.
async fn send_and_kill(broker: Broker, dest: &str, total: u64, kill_after: usize) -> BTreeSet<u64> {
    let mut producer = connect(&broker.addr, &[]).await;
    let mut bytes = bytes::BytesMut::new();
    for seq in 0..total {
        stampede_broker::proto::encode(
            &persistent_send(dest, seq),
            stampede_broker::proto::Version::V1_2,
            &mut bytes,
        );
    }
    // The writer runs on: the broker reads as fast as it takes messages.
    let (mut read_half, mut write_half) = producer.stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write_half.write_all(&bytes).await;
        write_half
    });
    let mut receipted = BTreeSet::new();
    let mut buf = std::mem::take(&mut producer.buf);
    let mut decoder = producer.decoder;
    use tokio::io::AsyncReadExt;
    while receipted.len() < kill_after {
        match decoder.decode(&mut buf).unwrap() {
            Some(stampede_broker::proto::Item::Frame(f)) => {
                assert_eq!(f.command, Command::Receipt, "{f:?}");
                let id = f.headers.get("receipt-id").unwrap();
                receipted.insert(id[1..].parse::<u64>().unwrap());
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        let n = tokio::time::timeout(support::WAIT, read_half.read_buf(&mut buf))
            .await
            .expect("receipts keep coming")
            .unwrap();
        assert!(n > 0, "the broker closed the producer");
    }
    // Receipts already in the socket count too: the broker sent them before the crash.
    broker.kill_9();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(stampede_broker::proto::Item::Frame(f))) if f.command == Command::Receipt => {
                let id = f.headers.get("receipt-id").unwrap();
                receipted.insert(id[1..].parse::<u64>().unwrap());
                continue;
            }
            Ok(Some(_)) => continue,
            _ => {}
        }
        match tokio::time::timeout(Duration::from_secs(2), read_half.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    writer.abort();
    receipted
}

/// Consumes `dest` until it stays quiet for a second; the bodies and whether every
/// delivery was marked redelivered.
async fn drain(addr: &str, dest: &str, headers: &[(&str, &str)]) -> (Vec<u64>, usize) {
    let mut c = connect(addr, headers).await;
    let mut sub = Frame::new(Command::Subscribe)
        .header("id", "s")
        .header("destination", dest);
    for (k, v) in headers {
        if k.starts_with("activemq.") {
            sub = sub.header(*k, *v);
        }
    }
    c.write_frame(sub).await;
    let mut got = Vec::new();
    let mut redelivered = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(1), c.read_frame()).await;
        let Ok(Some(f)) = next else {
            break;
        };
        assert_eq!(f.command, Command::Message, "{f:?}");
        if f.headers.get("redelivered") == Some("true") {
            redelivered += 1;
        }
        got.push(std::str::from_utf8(&f.body).unwrap().parse().unwrap());
    }
    (got, redelivered)
}

/// Every receipted sequence number is among those `got` from `broker` (whose log is shown
/// if not).
fn assert_all_delivered(receipted: &BTreeSet<u64>, got: &[u64], broker: &Broker) {
    let delivered: BTreeSet<u64> = got.iter().copied().collect();
    let lost: Vec<u64> = receipted.difference(&delivered).copied().collect();
    assert!(
        lost.is_empty(),
        "{} receipted messages lost (of {}), first {:?}; the serving broker's log:\n{}",
        lost.len(),
        receipted.len(),
        &lost[..lost.len().min(10)],
        broker.log_text()
    );
}

async fn kill_9_mid_stream(sync: &str) {
    let dir = TempDir::new(&format!("persist-{sync}"));
    let text = config(dir.path(), &format!("sync = \"{sync}\""));
    let broker = start(dir.path(), "first", &text);
    let receipted = send_and_kill(broker, "/queue/p", 20_000, 500).await;
    assert!(receipted.len() >= 500);
    let broker = start(dir.path(), "second", &text);
    let (got, redelivered) = drain(&broker.addr, "/queue/p", &[]).await;
    assert_all_delivered(&receipted, &got, &broker);
    assert_eq!(
        redelivered,
        got.len(),
        "recovered messages are marked redelivered"
    );
    // In order: a queue keeps arrival order across the restart.
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    eprintln!(
        "sync={sync}: {} receipted before kill -9, {} delivered after restart",
        receipted.len(),
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_receipted_message_with_sync_always() {
    kill_9_mid_stream("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_receipted_message_with_group_commit() {
    kill_9_mid_stream("group").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscriber_gets_its_messages_after_a_restart() {
    let dir = TempDir::new("persist-durable");
    let text = config(dir.path(), "");
    let broker = start(dir.path(), "first", &text);
    let durable = [
        ("client-id", "node-7"),
        ("activemq.subscriptionName", "news-feed"),
    ];
    let mut c = connect(&broker.addr, &durable[..1]).await;
    c.write_frame(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/topic/news")
            .header("activemq.subscriptionName", "news-feed")
            .header("receipt", "sub"),
    )
    .await;
    assert_eq!(c.read_frame().await.unwrap().command, Command::Receipt);
    c.write_frame(Frame::new(Command::Disconnect).header("receipt", "bye"))
        .await;
    assert_eq!(c.read_frame().await.unwrap().command, Command::Receipt);
    let mut p = connect(&broker.addr, &[]).await;
    for seq in 0..5 {
        p.write_frame(persistent_send("/topic/news", seq)).await;
        assert_eq!(p.read_frame().await.unwrap().command, Command::Receipt);
    }
    broker.kill_9();
    let broker = start(dir.path(), "second", &text);
    let (got, redelivered) = drain(&broker.addr, "/topic/news", &durable).await;
    assert_eq!(got, [0, 1, 2, 3, 4], "log:\n{}", broker.log_text());
    assert_eq!(redelivered, 5);
}

/// Sends `n` persistent receipted messages to `/queue/p`, then SIGKILLs the broker.
async fn three_then_kill(dir: &Path, text: &str, n: u64) {
    let broker = start(dir, "first", text);
    let mut p = connect(&broker.addr, &[]).await;
    for seq in 0..n {
        p.write_frame(persistent_send("/queue/p", seq)).await;
        assert_eq!(p.read_frame().await.unwrap().command, Command::Receipt);
    }
    broker.kill_9();
}

fn journal_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal-")
        })
        .collect();
    files.sort();
    // The newest is the empty one the broker opened last; the records are before it.
    files
        .into_iter()
        .rev()
        .find(|p| fs::metadata(p).unwrap().len() > 12)
        .expect("a journal file with records")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_discarded_on_restart() {
    let dir = TempDir::new("persist-torn");
    let text = config(dir.path(), "");
    three_then_kill(dir.path(), &text, 3).await;
    // A crash in the middle of the next write: a record header promising 100 bytes,
    // followed by 10.
    // The first broker wrote into the newest file: the crash hit it mid-write.
    let last = journal_file(dir.path());
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[0xab; 14]);
    fs::write(&last, bytes).unwrap();
    let broker = start(dir.path(), "second", &text);
    let (got, _) = drain(&broker.addr, "/queue/p", &[]).await;
    assert_eq!(got, [0, 1, 2]);
    assert!(broker.log_text().contains("torn"), "{}", broker.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_in_the_middle_stops_the_start_naming_file_and_offset() {
    let dir = TempDir::new("persist-corrupt");
    let text = config(dir.path(), "");
    three_then_kill(dir.path(), &text, 3).await;
    let file = journal_file(dir.path());
    let mut bytes = fs::read(&file).unwrap();
    // The first record starts after the 12-byte header; damage its body.
    bytes[12 + 40] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let error = match try_start(dir.path(), "second", &text) {
        Ok(b) => panic!("the broker started on a corrupt journal:\n{}", b.log_text()),
        Err(e) => e,
    };
    assert!(
        error.contains(&file.display().to_string())
            && error.contains("byte offset 12")
            && error.contains("store.skip_corrupt"),
        "{error}"
    );
    // With skip_corrupt the damaged message is skipped, the others delivered.
    let skipping = config(dir.path(), "skip_corrupt = true");
    let broker = start(dir.path(), "third", &skipping);
    let (got, _) = drain(&broker.addr, "/queue/p", &[]).await;
    assert_eq!(got, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_store_refuses_to_start() {
    let dir = TempDir::new("persist-lock");
    let text = config(dir.path(), "");
    let first = start(dir.path(), "first", &text);
    let error = match try_start(dir.path(), "second", &text) {
        Ok(b) => panic!("two brokers on one store:\n{}", b.log_text()),
        Err(e) => e,
    };
    assert!(error.contains("in use by another broker"), "{error}");
    // The first one still works.
    let mut p = connect(&first.addr, &[]).await;
    p.write_frame(persistent_send("/queue/p", 1)).await;
    assert_eq!(p.read_frame().await.unwrap().command, Command::Receipt);
}

/// A loopback port that was free a moment ago: a slave is told its port before it binds,
/// so that clients can name it in their failover lists.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A shared-store master (started, serving on an ephemeral port) and its slave (spawned on
/// the store in `dir`, told to listen on the returned port once it is master).
fn shared_store_pair(dir: &Path) -> (Broker, Broker, u16) {
    let shared = "master_slave = \"shared-store\"\nlock_acquire_interval_ms = 100";
    let master = start(dir, "master", &config(dir, shared));
    let port = free_port();
    let slave_text = config(dir, shared).replace(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"127.0.0.1:{port}\"]"),
    );
    (master, spawn(dir, "slave", &slave_text), port)
}

/// Shared-store master/slave: a second broker on the same store directory waits as a
/// slave with its port closed; when the master is SIGKILLed mid-stream it takes the lock,
/// opens its port and delivers every message the master receipted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_store_slave_takes_over_a_killed_master_with_every_receipted_message() {
    let dir = TempDir::new("persist-master-slave");
    let (master, mut slave, port) = shared_store_pair(dir.path());
    // The slave says it waits, and stays closed while it does.
    let deadline = Instant::now() + READY_TIMEOUT;
    while !slave.log_text().contains("waiting as its slave") {
        assert!(
            slave.child.try_wait().unwrap().is_none(),
            "the slave exited:\n{}",
            slave.log_text()
        );
        assert!(Instant::now() < deadline, "{}", slave.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!slave.ready.exists(), "the slave serves beside the master");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the slave's port is open while the master lives"
    );
    let receipted = send_and_kill(master, "/queue/p", 20_000, 500).await;
    let killed = Instant::now();
    slave
        .wait_ready(Duration::from_secs(10))
        .expect("the slave takes over");
    let takeover = killed.elapsed();
    assert_eq!(slave.addr, format!("127.0.0.1:{port}"));
    assert!(
        slave.log_text().contains("now the master"),
        "{}",
        slave.log_text()
    );
    let (got, _) = drain(&slave.addr, "/queue/p", &[]).await;
    assert_all_delivered(&receipted, &got, &slave);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    eprintln!(
        "master/slave: {} receipted before kill -9, {} delivered by the slave, which served \
         {} ms after the kill",
        receipted.len(),
        got.len(),
        takeover.as_millis()
    );
}

/// The same pair with a real client: the ruby stomp gem (as MCollective configures it,
/// failover pool naming both brokers) sends persistent receipted messages; the master is
/// SIGKILLed mid-stream; the gem reconnects to the slave once it serves and finishes. Every
/// message the gem saw receipted, by either broker, is delivered by the slave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stomp_gem_fails_over_from_a_killed_master_to_its_slave() {
    use std::io::{BufRead, BufReader};

    let dir = TempDir::new("persist-gem-master-slave");
    let (master, mut slave, port) = shared_store_pair(dir.path());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/stomp_gem_master_slave.rb"
    );
    let mut gem = Process::new("/usr/bin/ruby")
        .arg(script)
        .args(["--hosts", &format!("{},127.0.0.1:{port}", master.addr)])
        .args(["--dest", "/queue/gem", "--count", "400", "--timeout", "90"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/ruby {script}: {e}"));
    let lines = BufReader::new(gem.stdout.take().expect("piped stdout")).lines();
    let mut master = Some(master);
    let mut receipted = BTreeSet::new();
    let mut by_slave = 0;
    let mut retries = 0;
    let mut done = false;
    for line in lines {
        let line = line.unwrap();
        if line.contains("\"done\":true") {
            done = true;
            break;
        }
        if line.contains("\"retry\"") {
            retries += 1;
            continue;
        }
        let seq: u64 = line
            .split("\"receipted\":")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output from the gem: {line}"));
        receipted.insert(seq);
        if line.contains(&format!("\"port\":{port}")) {
            by_slave += 1;
        }
        if seq == 100
            && let Some(m) = master.take()
        {
            m.kill_9();
        }
    }
    let status = gem.wait().unwrap();
    assert!(
        done && status.success(),
        "the gem did not finish ({status}); slave log:\n{}",
        slave.log_text()
    );
    slave
        .wait_ready(Duration::from_secs(10))
        .expect("the slave serves");
    assert_eq!(receipted.len(), 400);
    assert!(by_slave >= 299, "{by_slave} receipted by the slave");
    // (The gem may need no retry at all: a SEND written to the dead connection makes the
    // reliable gem reconnect and write it again itself.)
    let (got, _) = drain(&slave.addr, "/queue/gem", &[]).await;
    let delivered: BTreeSet<u64> = got.iter().copied().collect();
    let lost: Vec<u64> = receipted.difference(&delivered).copied().collect();
    assert!(lost.is_empty(), "receipted and lost: {lost:?}");
    eprintln!(
        "stomp gem: 400 receipted ({by_slave} by the slave) after {retries} retries, {} delivered",
        got.len()
    );
}

/// The master checks its lock every `lock_keepalive_period_ms` (ActiveMQ's
/// `lockKeepAlivePeriod`): when the lock file it holds is removed (a cleanup job, an
/// operator), the slave can lock a new one and become master, so the old master must stop
/// rather than serve beside it. It exits with an error naming the lost lock, and the slave
/// serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_lock_file_is_removed_stops_and_the_slave_serves() {
    let dir = TempDir::new("persist-lock-lost");
    let shared = "master_slave = \"shared-store\"\nlock_acquire_interval_ms = 100\n\
                  lock_keepalive_period_ms = 100";
    let mut master = start(dir.path(), "master", &config(dir.path(), shared));
    let mut slave = spawn(dir.path(), "slave", &config(dir.path(), shared));
    let deadline = Instant::now() + READY_TIMEOUT;
    while !slave.log_text().contains("waiting as its slave") {
        assert!(Instant::now() < deadline, "{}", slave.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    fs::remove_file(dir.path().join("store").join("lock")).unwrap();
    let removed = Instant::now();
    let status = loop {
        if let Some(status) = master.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            removed.elapsed() < Duration::from_secs(10),
            "the master still runs without its lock:\n{}",
            master.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped = removed.elapsed();
    assert!(!status.success(), "{status}");
    assert!(
        master
            .log_text()
            .contains("lost the store directory's lock"),
        "{}",
        master.log_text()
    );
    slave
        .wait_ready(Duration::from_secs(10))
        .expect("the slave takes over");
    eprintln!(
        "the master stopped {} ms after its lock file was removed",
        stopped.as_millis()
    );
}

/// Three brokers in a replication group, each with its own store directory under `dir`,
/// spawned at once; whichever the group elects writes its ready file.
fn replicated_group(dir: &Path, sync: &str) -> Vec<Broker> {
    let stomp: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peer: Vec<u16> = (0..3).map(|_| free_port()).collect();
    (0..3)
        .map(|i| {
            let mut text = format!(
                "[server]\nlisten = [\"127.0.0.1:{}\"]\n[store]\ndir = \"{}\"\nsync = \"{sync}\"\n\
                 master_slave = \"replicated\"\n[store.replication]\nnode = \"n{i}\"\n\
                 listen = \"127.0.0.1:{}\"\nheartbeat_interval_ms = 50\nelection_timeout_ms = 300\n",
                stomp[i],
                dir.join(format!("store-{i}")).display(),
                peer[i]
            );
            for j in (0..3).filter(|j| *j != i) {
                text.push_str(&format!(
                    "[[store.replication.peers]]\nname = \"n{j}\"\naddress = \"127.0.0.1:{}\"\n",
                    peer[j]
                ));
            }
            spawn(dir, &format!("n{i}"), &text)
        })
        .collect()
}

/// Waits until one of `group` (other than `except`) serves; its index.
fn wait_leader(group: &mut [Broker], except: Option<usize>) -> usize {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for (i, b) in group.iter_mut().enumerate() {
            if Some(i) != except && b.ready.exists() && b.wait_ready(Duration::from_secs(1)).is_ok()
            {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader elected:\n{}",
            group
                .iter()
                .map(Broker::log_text)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replicated stores with real processes: three `stampede-broker`s elect a leader, which
/// alone serves; it is SIGKILLed mid-stream of persistent receipted SENDs; the other two
/// elect a new leader from their own copies of the journal, which delivers every message
/// the old one receipted.
async fn replicated_kill_9(sync: &str) {
    let dir = TempDir::new(&format!("persist-replicated-{sync}"));
    let mut group = replicated_group(dir.path(), sync);
    let first = wait_leader(&mut group, None);
    std::thread::sleep(Duration::from_millis(200));
    let others: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    for i in &others {
        assert!(!group[*i].ready.exists(), "two brokers serve at once");
    }
    // Move the leader out of the group to kill it.
    let leader = std::mem::replace(&mut group[first], spawn_placeholder(dir.path()));
    let receipted = send_and_kill(leader, "/queue/r", 20_000, 500).await;
    let killed = Instant::now();
    let second = wait_leader(&mut group, Some(first));
    let takeover = killed.elapsed();
    let (got, _) = drain(&group[second].addr, "/queue/r", &[]).await;
    assert_all_delivered(&receipted, &got, &group[second]);
    eprintln!(
        "replicated ({sync}): {} receipted before kill -9, {} delivered by the new leader, which \
         served {} ms after the kill",
        receipted.len(),
        got.len(),
        takeover.as_millis()
    );
}

/// A process that has already exited, standing in for a broker moved out of a group.
fn spawn_placeholder(dir: &Path) -> Broker {
    let log = dir.join("placeholder.log");
    fs::write(&log, "").unwrap();
    let child = Process::new("true").spawn().unwrap();
    Broker {
        child,
        addr: String::new(),
        log,
        ready: dir.join("placeholder.ready"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_group_loses_no_receipted_message_when_its_leader_is_killed() {
    replicated_kill_9("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_group_with_group_commit_loses_no_receipted_message() {
    replicated_kill_9("group").await;
}
