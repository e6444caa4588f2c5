//! The broker core driven by arbitrary frame sequences from up to eight connections with a
//! fake clock: it never panics or loops (libFuzzer's timeout catches a hang), never writes
//! to a connection after closing it, its connection gauge matches what the driver opened,
//! and queued messages stay within `queue_messages_max` per queue. Half the inputs run with
//! virtual hosts (an ActiveMQ default and a RabbitMQ-convention vhost), whose names the
//! destinations and `host` headers below reach.
#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use stampede_broker::core::{Broker, ConnId, CoreConfig, Output};
use stampede_broker::proto::{Command, Frame};
use stampede_broker::security::Security;
use stampede_broker::vhost::{Convention, ExchangeConfig, ExchangeType, VhostConfig};

const DESTINATIONS: [&str; 16] = [
    "/queue/a",
    "/queue/b",
    "/topic/t",
    "/topic/t.>",
    "/queue/a.*",
    "/temp-queue/r",
    "/queue/ActiveMQ.DLQ",
    "/topic/ActiveMQ.Advisory.Consumer.Queue.a",
    "/exchange/bcast/a.b",
    "/exchange/bcast/a.#",
    "/exchange/bcast/*.b",
    "/exchange/direct/n1",
    "/exchange/fan",
    "/amq/queue/a",
    "/topic/#",
    "/reply-queue/ID:stampede-1700000000000-1:r",
];
const HOSTS: [&str; 4] = ["a", "/r", "nowhere", ""];
const HEADERS: [&str; 19] = [
    "id",
    "ack",
    "receipt",
    "transaction",
    "selector",
    "expires",
    "priority",
    "persistent",
    "reply-to",
    "message-id",
    "subscription",
    "requeue",
    "activemq.prefetchSize",
    "activemq.exclusive",
    "JMSXGroupID",
    "heart-beat",
    "host",
    "expiration",
    "prefetch-count",
];
const COMMANDS: [Command; 12] = [
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Ack,
    Command::Nack,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Disconnect,
    Command::Send,
];

#[derive(Arbitrary, Debug)]
enum Op {
    Open(u8),
    Close(u8),
    HeartBeat(u8),
    Flushed(u8, u8),
    Advance(u16),
    Frame {
        conn: u8,
        command: u8,
        destination: u8,
        headers: Vec<(u8, String)>,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    vhosts: bool,
    ops: Vec<Op>,
}

/// An ActiveMQ-convention default vhost `a` and a RabbitMQ one `/r` with one exchange of
/// each type.
fn vhosts() -> Vec<VhostConfig> {
    let x = |name: &str, kind| ExchangeConfig {
        name: name.to_owned(),
        kind,
    };
    vec![
        VhostConfig {
            name: "a".to_owned(),
            ..VhostConfig::default()
        },
        VhostConfig {
            name: "/r".to_owned(),
            convention: Convention::RabbitMq,
            exchanges: vec![
                x("bcast", ExchangeType::Topic),
                x("direct", ExchangeType::Direct),
                x("fan", ExchangeType::Fanout),
            ],
            queues: vec!["a".to_owned()],
        },
    ]
}

fuzz_target!(|input: Input| {
    let Input {
        vhosts: with_vhosts,
        ops,
    } = input;
    let mut config = CoreConfig::default();
    if with_vhosts {
        config.vhosts = vhosts();
        config.default_vhost = Some("a".to_owned());
    }
    config.limits.queue_messages_max = 50;
    config.limits.outbound_frames_max = 20;
    config.limits.outbound_burst_frames_max = 10;
    let queue_max = config.limits.queue_messages_max as u64;
    let mut broker = Broker::new(config, Security::open(), 1_700_000_000_000);
    let mut now = 1_700_000_000_000u64;
    let mut open = BTreeSet::new();
    let mut closed = BTreeSet::new();
    let mut next_id = 0u64;
    let mut slots = [None::<ConnId>; 8];
    for op in ops.into_iter().take(400) {
        match op {
            Op::Open(slot) => {
                next_id += 1;
                let conn = ConnId(next_id);
                slots[slot as usize % 8] = Some(conn);
                open.insert(conn);
                broker.handle_open(now, conn, "127.0.0.1:1");
            }
            Op::Close(slot) => {
                if let Some(conn) = slots[slot as usize % 8].take() {
                    if open.remove(&conn) {
                        closed.insert(conn);
                    }
                    broker.handle_close(now, conn);
                }
            }
            Op::HeartBeat(slot) => {
                if let Some(conn) = slots[slot as usize % 8] {
                    broker.handle_heartbeat(now, conn);
                }
            }
            Op::Flushed(slot, n) => {
                if let Some(conn) = slots[slot as usize % 8] {
                    broker.handle_flushed(now, conn, n as usize);
                }
            }
            Op::Advance(ms) => {
                now += ms as u64 * 10;
                broker.handle_timeout(now);
            }
            Op::Frame {
                conn,
                command,
                destination,
                headers,
                body,
            } => {
                let Some(conn) = slots[conn as usize % 8] else {
                    continue;
                };
                let mut frame = Frame::new(COMMANDS[command as usize % COMMANDS.len()])
                    .header(
                        "destination",
                        DESTINATIONS[destination as usize % DESTINATIONS.len()],
                    )
                    .header("accept-version", "1.0,1.1,1.2");
                for (k, v) in headers.into_iter().take(8) {
                    let name = HEADERS[k as usize % HEADERS.len()];
                    // A host from the list, mostly: arbitrary ones all mean "unknown".
                    let v = match (name, v.as_bytes().first()) {
                        ("host", Some(b)) => HOSTS[*b as usize % HOSTS.len()].to_owned(),
                        _ => v,
                    };
                    frame = frame.header(name, v);
                }
                broker.handle_frame(now, conn, frame.body(body));
            }
        }
        while let Some(out) = broker.poll_output() {
            match out {
                Output::Send { conn, .. } => {
                    assert!(
                        !closed.contains(&conn),
                        "a frame for {conn:?} after its close"
                    );
                }
                Output::PauseReading { conn } | Output::ResumeReading { conn } => {
                    assert!(
                        !closed.contains(&conn),
                        "flow control for {conn:?} after its close"
                    );
                }
                // The fuzzed broker has no store, so it never asks for a record.
                Output::Persist { .. } => unreachable!("a record without a store"),
                Output::Close { conn } => {
                    open.remove(&conn);
                    closed.insert(conn);
                    for s in slots.iter_mut() {
                        if *s == Some(conn) {
                            *s = None;
                        }
                    }
                }
            }
        }
        let stats = broker.stats();
        assert_eq!(stats.connections_current, open.len() as u64, "{stats:?}");
        assert!(
            stats.queued_current <= queue_max * stats.queues_current.max(1),
            "{stats:?}"
        );
    }
});
