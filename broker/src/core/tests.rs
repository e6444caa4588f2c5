//! Transcript tests of the core: frames in, rendered outputs out, time under test control.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::proto::{Command, Frame};

/// Drives a [`Broker`] like a shell would, with a fake clock and connections that read
/// everything at once unless told otherwise.
struct Harness {
    broker: Broker,
    now_ms: u64,
    next_conn: u64,
    /// Connections that stopped reading: their frames are never reported flushed.
    stalled: Vec<ConnId>,
    /// Frames written to each connection and not yet taken by the test.
    inbox: BTreeMap<ConnId, Vec<Rendered>>,
    closed: Vec<ConnId>,
    /// Connections the core asked the shell to stop reading (producer flow control).
    paused: BTreeSet<ConnId>,
    /// Store records the core asked for, with their tickets.
    persisted: Vec<(u64, crate::store::Record)>,
    /// The last store ticket seen.
    last_ticket: u64,
}

/// A frame as a test sees it.
#[derive(Clone, Debug)]
struct Rendered {
    command: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Rendered {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

const T0: u64 = 1_700_000_000_000;

impl Harness {
    fn new() -> Harness {
        Harness::with(CoreConfig::default(), Security::open())
    }

    fn with(config: CoreConfig, security: Security) -> Harness {
        Harness {
            broker: Broker::new(config, security, T0),
            now_ms: T0,
            next_conn: 0,
            stalled: Vec::new(),
            inbox: BTreeMap::new(),
            closed: Vec::new(),
            paused: BTreeSet::new(),
            persisted: Vec::new(),
            last_ticket: 0,
        }
    }

    fn open(&mut self) -> ConnId {
        self.next_conn += 1;
        let c = ConnId(self.next_conn);
        self.broker.handle_open(self.now_ms, c, "test");
        self.pump();
        c
    }

    /// Opens a connection and completes CONNECT with extra headers; returns CONNECTED.
    fn connect_with(&mut self, headers: &[(&str, &str)]) -> (ConnId, Rendered) {
        let c = self.open();
        let mut f = Frame::new(Command::Connect);
        for (k, v) in headers {
            f = f.header(*k, *v);
        }
        self.frame(c, f);
        let got = self.take(c);
        assert_eq!(got.len(), 1, "{got:?}");
        (c, got[0].clone())
    }

    fn connect(&mut self) -> ConnId {
        let (c, connected) = self.connect_with(&[("accept-version", "1.2")]);
        assert_eq!(connected.command, "CONNECTED");
        c
    }

    fn connect_v10(&mut self) -> ConnId {
        let (c, connected) = self.connect_with(&[]);
        assert_eq!(connected.get("version"), Some("1.0"));
        c
    }

    fn frame(&mut self, c: ConnId, f: Frame) {
        self.broker.handle_frame(self.now_ms, c, f);
        self.pump();
    }

    fn send(&mut self, c: ConnId, dest: &str, body: &str, headers: &[(&str, &str)]) {
        let mut f = Frame::new(Command::Send).header("destination", dest);
        for (k, v) in headers {
            f = f.header(*k, *v);
        }
        self.frame(c, f.body(body.as_bytes().to_vec()));
    }

    fn subscribe(&mut self, c: ConnId, id: &str, dest: &str, headers: &[(&str, &str)]) {
        let mut f = Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", dest);
        for (k, v) in headers {
            f = f.header(*k, *v);
        }
        self.frame(c, f);
    }

    fn advance(&mut self, ms: u64) {
        let target = self.now_ms + ms;
        while let Some(t) = self.broker.poll_timeout() {
            if t > target {
                break;
            }
            self.now_ms = self.now_ms.max(t);
            self.broker.handle_timeout(self.now_ms);
            self.pump();
        }
        self.now_ms = target;
    }

    /// Drains outputs into inboxes and reports frames flushed for reading connections,
    /// until reporting produces nothing new.
    fn pump(&mut self) {
        loop {
            let mut flushed: BTreeMap<ConnId, usize> = BTreeMap::new();
            let mut closing: Vec<ConnId> = Vec::new();
            let mut any = false;
            while let Some(out) = self.broker.poll_output() {
                any = true;
                match out {
                    Output::Send { conn, frame, .. } => {
                        self.inbox.entry(conn).or_default().push(render(&frame));
                        if !self.stalled.contains(&conn) {
                            *flushed.entry(conn).or_default() += 1;
                        }
                    }
                    Output::Close { conn } => {
                        self.closed.push(conn);
                        closing.push(conn);
                    }
                    Output::PauseReading { conn } => {
                        self.paused.insert(conn);
                    }
                    Output::ResumeReading { conn } => {
                        self.paused.remove(&conn);
                    }
                    Output::Persist { ticket, record } => {
                        self.last_ticket = ticket;
                        self.persisted.push((ticket, record));
                    }
                }
            }
            if !any {
                break;
            }
            for (conn, n) in flushed {
                self.broker.handle_flushed(self.now_ms, conn, n);
            }
            // A writer told to close reports the close after its flushes; a stalled one
            // never gets that far (the test reports it).
            for conn in closing {
                if !self.stalled.contains(&conn) {
                    self.broker.handle_close(self.now_ms, conn);
                }
            }
        }
    }

    fn take(&mut self, c: ConnId) -> Vec<Rendered> {
        self.inbox.remove(&c).unwrap_or_default()
    }

    fn messages(&mut self, c: ConnId) -> Vec<Rendered> {
        let all = self.take(c);
        for f in &all {
            assert_eq!(f.command, "MESSAGE", "unexpected frame {f:?}");
        }
        all
    }

    fn bodies(&mut self, c: ConnId) -> Vec<String> {
        self.messages(c)
            .iter()
            .map(|m| m.body_str().to_owned())
            .collect()
    }

    fn is_closed(&self, c: ConnId) -> bool {
        self.closed.contains(&c)
    }
}

fn render(frame: &OutFrame) -> Rendered {
    match frame {
        OutFrame::Control(f) => Rendered {
            command: f.command.as_str(),
            headers: f
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: f.body.to_vec(),
        },
        OutFrame::Message(d) => {
            let mut headers = vec![
                ("destination".to_owned(), d.destination.to_string()),
                ("message-id".to_owned(), d.message.id.to_string()),
            ];
            if let Some(s) = &d.subscription {
                headers.push(("subscription".to_owned(), s.to_string()));
            }
            if let Some(a) = d.ack {
                headers.push(("ack".to_owned(), a.to_string()));
            }
            if d.redelivered {
                headers.push(("redelivered".to_owned(), "true".to_owned()));
            }
            if let Some(p) = &d.broker_path {
                headers.push(("stampede-broker-path".to_owned(), p.to_string()));
            }
            if let Some(o) = &d.origin_id {
                headers.push(("stampede-origin-id".to_owned(), o.to_string()));
            }
            for (k, v) in d.message.headers.iter() {
                headers.push((k.to_string(), v.to_string()));
            }
            Rendered {
                command: "MESSAGE",
                headers,
                body: d.message.body.to_vec(),
            }
        }
        OutFrame::HeartBeat => Rendered {
            command: "HEARTBEAT",
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

// ----- Sessions ---------------------------------------------------------------------------

#[test]
fn stomp_1_0_client_gets_version_1_0() {
    let mut h = Harness::new();
    let (_, connected) = h.connect_with(&[("host", "mcollective"), ("login", "u")]);
    assert_eq!(connected.command, "CONNECTED");
    assert_eq!(connected.get("version"), Some("1.0"));
    assert_eq!(connected.get("heart-beat"), Some("0,0"));
    let (_, connected) = h.connect_with(&[("accept-version", "1.0")]);
    assert_eq!(connected.get("version"), Some("1.0"));
    let (_, connected) = h.connect_with(&[("accept-version", "1.1,1.0")]);
    assert_eq!(connected.get("version"), Some("1.1"));
}

#[test]
fn unsupported_version_gets_error_and_close() {
    let mut h = Harness::new();
    let (c, error) = h.connect_with(&[("accept-version", "2.0")]);
    assert_eq!(error.command, "ERROR");
    assert!(error.get("message").unwrap().contains("1.0,1.1,1.2"));
    assert!(h.is_closed(c));
}

#[test]
fn frame_before_connect_is_an_error() {
    let mut h = Harness::new();
    let c = h.open();
    h.send(c, "/queue/a", "x", &[]);
    let got = h.take(c);
    assert_eq!(got[0].command, "ERROR");
    assert!(got[0].get("message").unwrap().contains("CONNECT"));
    assert!(h.is_closed(c));
}

#[test]
fn connect_timeout_closes_silent_sockets() {
    let mut h = Harness::new();
    let c = h.open();
    h.advance(29_999);
    assert!(!h.is_closed(c));
    h.advance(2);
    assert!(h.is_closed(c));
    assert!(h.take(c)[0].get("message").unwrap().contains("CONNECT"));
}

#[test]
fn a_send_asking_for_its_receivers_gets_their_count_in_its_receipt() {
    // What a Redis PUBLISH answers: the subscriptions the message reached at once.
    let mut h = Harness::new();
    let (a, b, p) = (h.connect(), h.connect(), h.connect());
    h.subscribe(a, "1", "/topic/news", &[]);
    h.subscribe(b, "1", "/topic/news", &[]);
    h.subscribe(b, "2", "/topic/>", &[]);
    h.take(a);
    h.take(b);
    h.send(
        p,
        "/topic/news",
        "x",
        &[("receipt", "r1"), (RECEIVERS_HEADER, "count")],
    );
    let got = h.take(p);
    assert_eq!(got[0].get("receipt-id"), Some("r1"));
    assert_eq!(got[0].get(RECEIVERS_HEADER), Some("3"));
    // The request is not passed on.
    for m in h.take(a).iter().chain(h.take(b).iter()) {
        assert_eq!(m.command, "MESSAGE");
        assert_eq!(m.get(RECEIVERS_HEADER), None, "{m:?}");
    }
    // Only the wildcard subscription matches another topic.
    h.send(
        p,
        "/topic/other",
        "x",
        &[("receipt", "r2"), (RECEIVERS_HEADER, "count")],
    );
    assert_eq!(h.take(p)[0].get(RECEIVERS_HEADER), Some("1"));
    // Nobody takes it at once (a queue without consumers keeps it): 0.
    h.send(
        p,
        "/queue/nobody",
        "x",
        &[("receipt", "r4"), (RECEIVERS_HEADER, "count")],
    );
    assert_eq!(h.take(p)[0].get(RECEIVERS_HEADER), Some("0"));
    // Without the header, a receipt as always.
    h.send(p, "/topic/news", "x", &[("receipt", "r3")]);
    assert_eq!(h.take(p)[0].get(RECEIVERS_HEADER), None);
}

#[test]
fn receipts_and_disconnect() {
    let mut h = Harness::new();
    let c = h.connect();
    h.send(c, "/queue/a", "x", &[("receipt", "r1")]);
    let got = h.take(c);
    assert_eq!(got[0].command, "RECEIPT");
    assert_eq!(got[0].get("receipt-id"), Some("r1"));
    h.frame(c, Frame::new(Command::Disconnect).header("receipt", "bye"));
    assert_eq!(h.take(c)[0].get("receipt-id"), Some("bye"));
    assert!(h.is_closed(c));
    assert_eq!(h.broker.stats().connections_current, 0);
}

// ----- Queues -----------------------------------------------------------------------------

#[test]
fn queue_buffers_until_a_consumer_arrives_and_passes_headers_through() {
    let mut h = Harness::new();
    let p = h.connect();
    h.send(
        p,
        "/queue/work",
        "job",
        &[
            ("mc_sender", "client-1"),
            ("reply-to", "/queue/r"),
            ("content-type", "text/plain"),
        ],
    );
    assert_eq!(h.broker.queue_depth("work"), Some(1));
    let c = h.connect();
    h.subscribe(c, "s1", "/queue/work", &[]);
    let m = h.messages(c);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].get("destination"), Some("/queue/work"));
    assert_eq!(m[0].get("subscription"), Some("s1"));
    assert_eq!(m[0].get("mc_sender"), Some("client-1"));
    assert_eq!(m[0].get("reply-to"), Some("/queue/r"));
    assert!(m[0].get("message-id").unwrap().starts_with("ID:stampede-"));
    assert_eq!(m[0].body_str(), "job");
    assert_eq!(h.broker.queue_depth("work"), Some(0));
}

#[test]
fn competing_consumers_share_fairly() {
    let mut h = Harness::new();
    let a = h.connect();
    let b = h.connect();
    h.subscribe(a, "s", "/queue/q", &[]);
    h.subscribe(b, "s", "/queue/q", &[]);
    let p = h.connect();
    for i in 0..10 {
        h.send(p, "/queue/q", &i.to_string(), &[]);
    }
    let ga = h.bodies(a);
    let gb = h.bodies(b);
    assert_eq!(ga.len(), 5, "{ga:?} {gb:?}");
    assert_eq!(gb.len(), 5);
    let mut all: Vec<String> = ga.into_iter().chain(gb).collect();
    all.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(all, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn priority_orders_waiting_messages() {
    let mut h = Harness::new();
    let p = h.connect();
    h.send(p, "/queue/q", "low", &[("priority", "1")]);
    h.send(p, "/queue/q", "default", &[]);
    h.send(p, "/queue/q", "high", &[("priority", "9")]);
    h.send(p, "/queue/q", "high2", &[("priority", "9")]);
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[]);
    assert_eq!(h.bodies(c), ["high", "high2", "default", "low"]);
}

#[test]
fn client_ack_redelivers_on_disconnect_marked_redelivered() {
    let mut h = Harness::new();
    let p = h.connect();
    h.send(p, "/queue/q", "m1", &[]);
    h.send(p, "/queue/q", "m2", &[]);
    let c1 = h.connect();
    h.subscribe(c1, "s", "/queue/q", &[("ack", "client-individual")]);
    let got = h.messages(c1);
    assert_eq!(got.len(), 2);
    // Ack the second only; the first must come back to the next consumer.
    h.frame(
        c1,
        Frame::new(Command::Ack).header("id", got[1].get("ack").unwrap()),
    );
    h.broker.handle_close(h.now_ms, c1);
    let c2 = h.connect();
    h.subscribe(c2, "s", "/queue/q", &[]);
    let again = h.messages(c2);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body_str(), "m1");
    assert_eq!(again[0].get("redelivered"), Some("true"));
    assert_eq!(again[0].get("message-id"), got[0].get("message-id"));
}

#[test]
fn client_mode_ack_is_cumulative_and_v1_0_acks_by_message_id() {
    let mut h = Harness::new();
    let p = h.connect();
    for i in 0..3 {
        h.send(p, "/queue/q", &format!("m{i}"), &[]);
    }
    let c = h.connect_v10();
    h.frame(
        c,
        Frame::new(Command::Subscribe)
            .header("destination", "/queue/q")
            .header("ack", "client"),
    );
    let got = h.messages(c);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].get("subscription"),
        None,
        "1.0 without id has no subscription"
    );
    h.frame(
        c,
        Frame::new(Command::Ack).header("message-id", got[1].get("message-id").unwrap()),
    );
    h.broker.handle_close(h.now_ms, c);
    let c2 = h.connect();
    h.subscribe(c2, "s", "/queue/q", &[]);
    assert_eq!(h.bodies(c2), ["m2"]);
}

#[test]
fn prefetch_limits_unacknowledged_deliveries() {
    let mut h = Harness::new();
    let p = h.connect();
    for i in 0..5 {
        h.send(p, "/queue/q", &format!("m{i}"), &[]);
    }
    let c = h.connect();
    h.subscribe(
        c,
        "s",
        "/queue/q",
        &[("ack", "client-individual"), ("activemq.prefetchSize", "2")],
    );
    let got = h.messages(c);
    assert_eq!(got.len(), 2);
    h.frame(
        c,
        Frame::new(Command::Ack).header("id", got[0].get("ack").unwrap()),
    );
    let more = h.bodies(c);
    assert_eq!(more, ["m2"]);
}

#[test]
fn nack_requeues_and_requeue_false_dead_letters() {
    let mut h = Harness::new();
    let p = h.connect();
    h.send(p, "/queue/q", "m", &[]);
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[("ack", "client-individual")]);
    let first = h.messages(c);
    h.frame(
        c,
        Frame::new(Command::Nack).header("id", first[0].get("ack").unwrap()),
    );
    let second = h.messages(c);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].get("redelivered"), Some("true"));
    h.frame(
        c,
        Frame::new(Command::Nack)
            .header("id", second[0].get("ack").unwrap())
            .header("requeue", "false"),
    );
    assert!(h.take(c).is_empty());
    assert_eq!(h.broker.queue_depth("ActiveMQ.DLQ"), Some(1));
    assert_eq!(h.broker.stats().messages_dead_lettered, 1);
}

#[test]
fn too_many_redeliveries_go_to_the_dead_letter_queue() {
    let mut config = CoreConfig::default();
    config.limits.redeliveries_max = 2;
    let mut h = Harness::with(config, Security::open());
    let p = h.connect();
    h.send(p, "/queue/q", "poison", &[]);
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[("ack", "client-individual")]);
    for round in 0..3 {
        let got = h.messages(c);
        assert_eq!(got.len(), 1, "round {round}");
        h.frame(
            c,
            Frame::new(Command::Nack).header("id", got[0].get("ack").unwrap()),
        );
    }
    assert!(h.take(c).is_empty());
    let d = h.connect();
    h.subscribe(d, "s", "/queue/ActiveMQ.DLQ", &[]);
    let dead = h.messages(d);
    assert_eq!(dead[0].get("original-destination"), Some("/queue/q"));
}

#[test]
fn auto_ack_messages_not_yet_written_are_redelivered_when_the_connection_dies() {
    let mut h = Harness::new();
    let c = h.connect();
    h.stalled.push(c);
    h.subscribe(c, "s", "/queue/q", &[]);
    let p = h.connect();
    h.send(p, "/queue/q", "m", &[]);
    assert_eq!(h.bodies(c), ["m"]);
    h.broker.handle_close(h.now_ms, c);
    let c2 = h.connect();
    h.subscribe(c2, "s", "/queue/q", &[]);
    let got = h.messages(c2);
    assert_eq!(got[0].body_str(), "m");
    assert_eq!(got[0].get("redelivered"), Some("true"));
}

#[test]
fn exclusive_consumer_gets_everything_until_it_leaves() {
    let mut h = Harness::new();
    let a = h.connect();
    let b = h.connect();
    h.subscribe(a, "s", "/queue/q", &[("activemq.exclusive", "true")]);
    h.subscribe(b, "s", "/queue/q", &[]);
    let p = h.connect();
    for i in 0..4 {
        h.send(p, "/queue/q", &i.to_string(), &[]);
    }
    assert_eq!(h.bodies(a).len(), 4);
    assert!(h.bodies(b).is_empty());
    h.broker.handle_close(h.now_ms, a);
    h.send(p, "/queue/q", "after", &[]);
    assert_eq!(h.bodies(b), ["after"]);
}

#[test]
fn message_groups_stick_to_one_consumer() {
    let mut h = Harness::new();
    let a = h.connect();
    let b = h.connect();
    h.subscribe(a, "s", "/queue/q", &[]);
    h.subscribe(b, "s", "/queue/q", &[]);
    let p = h.connect();
    for i in 0..6 {
        let g = if i % 2 == 0 { "even" } else { "odd" };
        h.send(p, "/queue/q", &format!("{g}{i}"), &[("JMSXGroupID", g)]);
    }
    let ga = h.bodies(a);
    let gb = h.bodies(b);
    assert_eq!(ga.len(), 3);
    let group_of = |v: &Vec<String>| v[0].trim_end_matches(char::is_numeric).to_owned();
    assert!(ga.iter().all(|m| m.starts_with(&group_of(&ga))));
    assert!(gb.iter().all(|m| m.starts_with(&group_of(&gb))));
    assert_ne!(group_of(&ga), group_of(&gb));
}

#[test]
fn expired_messages_are_never_delivered() {
    let mut h = Harness::new();
    let p = h.connect();
    let soon = (T0 + 1_000).to_string();
    let past = (T0 - 1).to_string();
    h.send(p, "/queue/q", "expires-soon", &[("expires", &soon)]);
    h.send(p, "/queue/q", "already-expired", &[("expires", &past)]);
    h.send(p, "/queue/q", "forever", &[("expires", "0")]);
    assert_eq!(h.broker.queue_depth("q"), Some(2));
    h.advance(1_000);
    assert_eq!(h.broker.queue_depth("q"), Some(1));
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[]);
    assert_eq!(h.bodies(c), ["forever"]);
    assert_eq!(h.broker.stats().messages_expired, 2);
}

#[test]
fn idle_empty_queues_are_collected() {
    let mut h = Harness::new();
    let c = h.connect_v10();
    for i in 0..1000 {
        let dest = format!("/queue/mcollective.reply.client_1.{i}");
        h.frame(
            c,
            Frame::new(Command::Subscribe).header("destination", dest.as_str()),
        );
        h.frame(
            c,
            Frame::new(Command::Unsubscribe).header("destination", dest.as_str()),
        );
    }
    assert_eq!(h.broker.stats().queues_current, 0);
    assert_eq!(h.broker.subscription_count(), 0);
}

#[test]
fn full_queue_holds_the_producer_then_refuses_after_the_timeout() {
    let mut config = CoreConfig::default();
    config.limits.queue_messages_max = 2;
    config.limits.send_fail_if_no_space_after_ms = 1_000;
    let mut h = Harness::with(config, Security::open());
    let p = h.connect();
    h.send(p, "/queue/q", "1", &[]);
    h.send(p, "/queue/q", "2", &[]);
    h.send(p, "/queue/q", "3", &[("receipt", "r3")]);
    // The third SEND waits: no answer yet, and the shell stops reading the producer.
    assert!(h.take(p).is_empty());
    assert!(h.paused.contains(&p));
    // Frames sent meanwhile wait behind it, in order.
    h.frame(
        p,
        Frame::new(Command::Begin)
            .header("transaction", "t")
            .header("receipt", "rb"),
    );
    assert!(h.take(p).is_empty());
    h.advance(999);
    assert!(h.take(p).is_empty(), "nothing before the timeout");
    h.advance(1);
    let got = h.take(p);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].command, "ERROR");
    assert_eq!(got[0].get("receipt-id"), Some("r3"));
    let message = got[0].get("message").unwrap();
    assert!(message.contains("queue_messages_max = 2"), "{message}");
    assert!(
        message.contains("send_fail_if_no_space_after_ms"),
        "{message}"
    );
    assert_eq!(got[1].command, "RECEIPT");
    assert_eq!(got[1].get("receipt-id"), Some("rb"));
    assert!(!h.is_closed(p));
    assert!(!h.paused.contains(&p), "reading again");
    assert_eq!(h.broker.queue_depth("q"), Some(2));
    assert_eq!(h.broker.stats().sends_blocked, 1);
}

#[test]
fn delivered_unacknowledged_messages_count_against_the_queue_limit() {
    // Found by the core fuzz target: a consumer's unacknowledged messages went back to the
    // queue when it left, and the queue held more than queue_messages_max.
    let mut config = CoreConfig::default();
    config.limits.queue_messages_max = 3;
    let mut h = Harness::with(config, Security::open());
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[("ack", "client-individual")]);
    let p = h.connect();
    for i in 1..=4 {
        h.send(
            p,
            "/queue/q",
            &i.to_string(),
            &[("receipt", &format!("r{i}"))],
        );
    }
    // Three are delivered and unacknowledged: the queue is full, the fourth SEND waits.
    assert_eq!(h.bodies(c), ["1", "2", "3"]);
    assert_eq!(h.take(p).len(), 3, "three receipts");
    assert!(h.paused.contains(&p));
    // The consumer leaves: its three messages are back, and no more than the limit.
    h.broker.handle_close(h.now_ms, c);
    h.pump();
    assert_eq!(h.broker.queue_depth("q"), Some(3));
    assert!(h.take(p).is_empty(), "the fourth still waits");
    // Another consumer acknowledges one: room for the fourth.
    let d = h.connect();
    h.subscribe(d, "t", "/queue/q", &[("ack", "client-individual")]);
    let got = h.messages(d);
    assert_eq!(got.len(), 3, "{got:?}");
    let ack = got[0].get("ack").unwrap().to_owned();
    h.frame(d, Frame::new(Command::Ack).header("id", ack.as_str()));
    let receipts = h.take(p);
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(receipts[0].get("receipt-id"), Some("r4"));
}

#[test]
fn written_but_unflushed_auto_ack_deliveries_count_against_the_queue_limit_too() {
    // Auto-ack deliveries still in the connection's outbound buffer go back to the queue
    // if it dies before writing them, so they are the queue's until written.
    let mut config = CoreConfig::default();
    config.limits.queue_messages_max = 3;
    let mut h = Harness::with(config, Security::open());
    let c = h.connect();
    h.stalled.push(c);
    h.subscribe(c, "s", "/queue/q", &[]);
    let p = h.connect();
    for i in 1..=4 {
        h.send(
            p,
            "/queue/q",
            &i.to_string(),
            &[("receipt", &format!("r{i}"))],
        );
    }
    assert_eq!(h.bodies(c), ["1", "2", "3"]);
    assert_eq!(h.take(p).len(), 3, "the fourth SEND waits");
    h.broker.handle_close(h.now_ms, c);
    h.pump();
    assert_eq!(h.broker.queue_depth("q"), Some(3));
    assert!(h.take(p).is_empty());
}

/// A stalled consumer of `/queue/q` in `auto` ack mode that has been sent `bodies` (none
/// reported written yet), from another connection.
fn auto_consumer_holding(h: &mut Harness, bodies: &[&str]) -> ConnId {
    let c = h.connect();
    h.stalled.push(c);
    h.subscribe(c, "s", "/queue/q", &[]);
    let p = h.connect();
    for body in bodies {
        h.send(p, "/queue/q", body, &[]);
    }
    assert_eq!(h.bodies(c), bodies);
    c
}

#[test]
fn auto_ack_deliveries_written_before_a_disconnect_are_consumed_even_if_reported_after_it() {
    // The client read the message and sent DISCONNECT before its writer reported the
    // write: the writer reports it (and then the close) afterwards, and the message
    // must count as consumed, not come back to the next consumer.
    let mut h = Harness::new();
    let c = auto_consumer_holding(&mut h, &["a", "b"]);
    h.frame(c, Frame::new(Command::Disconnect).header("receipt", "bye"));
    assert_eq!(h.take(c)[0].get("receipt-id"), Some("bye"));
    assert_eq!(h.closed, [c]);
    // The writer wrote both messages and the RECEIPT, then closed.
    h.broker.handle_flushed(h.now_ms, c, 3);
    h.broker.handle_close(h.now_ms, c);
    h.pump();
    assert_eq!(h.broker.queue_depth("q").unwrap_or(0), 0);
    let d = h.connect();
    h.subscribe(d, "s", "/queue/q", &[]);
    assert!(h.take(d).is_empty(), "consumed messages came back");
}

#[test]
fn auto_ack_deliveries_not_written_before_a_close_go_back_to_the_queue() {
    // The same, but the writer reports one message written: the other goes back, flagged.
    let mut h = Harness::new();
    let c = auto_consumer_holding(&mut h, &["a", "b"]);
    h.frame(c, Frame::new(Command::Disconnect));
    // "a" was written; the socket failed before "b".
    h.broker.handle_flushed(h.now_ms, c, 1);
    h.broker.handle_close(h.now_ms, c);
    h.pump();
    let d = h.connect();
    h.subscribe(d, "s", "/queue/q", &[]);
    let got = h.messages(d);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body_str(), "b");
    assert_eq!(got[0].get("redelivered"), Some("true"));
}

#[test]
fn a_connection_whose_writer_is_full_is_closed_and_what_the_writer_still_writes_is_consumed() {
    let mut h = Harness::new();
    let c = auto_consumer_holding(&mut h, &["a", "b", "c"]);
    h.broker.handle_writer_full(h.now_ms, c);
    h.pump();
    assert!(h.is_closed(c));
    assert_eq!(h.broker.stats().connections_current, 1);
    // Its frames from now on are ignored.
    h.send(c, "/queue/q", "from-closed", &[]);
    // The writer still wrote two of the three, then reported the close.
    h.broker.handle_flushed(h.now_ms, c, 2);
    h.broker.handle_close(h.now_ms, c);
    h.pump();
    let d = h.connect();
    h.subscribe(d, "s", "/queue/q", &[]);
    assert_eq!(h.bodies(d), ["c"]);
}

#[test]
fn a_waiting_send_goes_through_once_a_consumer_makes_room() {
    let mut config = CoreConfig::default();
    config.limits.queue_messages_max = 2;
    let mut h = Harness::with(config, Security::open());
    let p = h.connect();
    let other = h.connect();
    for i in 1..=3 {
        h.send(
            p,
            "/queue/q",
            &i.to_string(),
            &[("receipt", &format!("r{i}"))],
        );
    }
    let got = h.take(p);
    assert_eq!(got.len(), 2, "two receipts, the third SEND waits: {got:?}");
    assert!(h.paused.contains(&p));
    // Another producer to another destination is not held up.
    h.send(other, "/queue/elsewhere", "x", &[("receipt", "ro")]);
    assert_eq!(h.take(other)[0].command, "RECEIPT");
    // A consumer takes the waiting messages; the parked SEND is then taken and receipted.
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[]);
    let got = h.take(p);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].command, "RECEIPT");
    assert_eq!(got[0].get("receipt-id"), Some("r3"));
    assert!(!h.paused.contains(&p));
    assert_eq!(h.bodies(c), ["1", "2", "3"]);
    assert_eq!(h.broker.stats().producers_blocked_current, 0);
}

#[test]
fn the_memory_limit_in_bytes_holds_producers_until_messages_are_consumed() {
    let mut config = CoreConfig::default();
    config.limits.memory_bytes_max = 10_000;
    let mut h = Harness::with(config, Security::open());
    let p = h.connect();
    let body = "x".repeat(4_000);
    h.send(p, "/queue/a", &body, &[("receipt", "r1")]);
    h.send(p, "/queue/b", &body, &[("receipt", "r2")]);
    h.send(p, "/queue/c", &body, &[("receipt", "r3")]);
    // 12,000 bytes are held after three messages; the fourth waits, to any destination.
    assert_eq!(h.take(p).len(), 3);
    assert!(h.broker.stats().memory_used_bytes >= 12_000);
    h.send(p, "/topic/t", &body, &[("receipt", "r4")]);
    assert!(h.take(p).is_empty());
    assert!(h.paused.contains(&p));
    // Consuming one queue's message (auto ack, written) frees its bytes.
    let c = h.connect();
    h.subscribe(c, "s", "/queue/a", &[]);
    assert_eq!(h.bodies(c).len(), 1);
    let got = h.take(p);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get("receipt-id"), Some("r4"));
}

#[test]
fn a_producer_that_keeps_sending_while_held_is_closed_at_its_limit() {
    let mut config = CoreConfig::default();
    config.limits.queue_messages_max = 1;
    config.limits.blocked_frames_max = 3;
    let mut h = Harness::with(config, Security::open());
    let canary = h.connect();
    let p = h.connect();
    h.send(p, "/queue/q", "1", &[]);
    h.send(p, "/queue/q", "2", &[]);
    for i in 0..3 {
        h.send(p, "/queue/q", &format!("more {i}"), &[]);
        assert!(!h.is_closed(p));
    }
    h.send(p, "/queue/q", "one too many", &[]);
    assert!(h.is_closed(p));
    let got = h.take(p);
    assert!(
        got.last()
            .unwrap()
            .get("message")
            .unwrap()
            .contains("blocked_frames_max = 3"),
        "{got:?}"
    );
    h.send(canary, "/queue/other", "fine", &[("receipt", "rc")]);
    assert_eq!(h.take(canary)[0].command, "RECEIPT");
}

#[test]
fn a_held_producer_is_not_timed_out_for_heart_beats_it_could_not_send() {
    let mut config = CoreConfig::default();
    config.limits.queue_messages_max = 1;
    config.limits.send_fail_if_no_space_after_ms = 60_000;
    let mut h = Harness::with(config, Security::open());
    let (p, _) = h.connect_with(&[("accept-version", "1.2"), ("heart-beat", "0,1000")]);
    h.send(p, "/queue/q", "1", &[]);
    h.send(p, "/queue/q", "2", &[("receipt", "r2")]);
    assert!(h.paused.contains(&p));
    h.advance(10_000);
    assert!(
        !h.is_closed(p),
        "its heart-beats sat unread while it was held"
    );
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[]);
    assert_eq!(h.take(p).last().unwrap().get("receipt-id"), Some("r2"));
}

// ----- Selectors --------------------------------------------------------------------------

#[test]
fn eight_hundred_selector_consumers_each_get_their_own_messages() {
    let mut h = Harness::new();
    let mut nodes = Vec::new();
    for i in 0..800 {
        let c = h.connect_v10();
        let sel = format!("mc_identity = 'node-{i}'");
        h.frame(
            c,
            Frame::new(Command::Subscribe)
                .header("destination", "/queue/mcollective.nodes")
                .header("selector", sel.as_str()),
        );
        nodes.push(c);
    }
    let client = h.connect();
    for i in (0..800).step_by(7) {
        let id = format!("node-{i}");
        h.send(
            client,
            "/queue/mcollective.nodes",
            &id,
            &[("mc_identity", &id)],
        );
    }
    // A message for a node that is not there waits for it.
    h.send(
        client,
        "/queue/mcollective.nodes",
        "late",
        &[("mc_identity", "node-800")],
    );
    for (i, c) in nodes.iter().enumerate() {
        let got = h.bodies(*c);
        if i % 7 == 0 {
            assert_eq!(got, [format!("node-{i}")]);
        } else {
            assert!(got.is_empty(), "node {i} got {got:?}");
        }
    }
    assert_eq!(h.broker.queue_depth("mcollective.nodes"), Some(1));
    let late = h.connect_v10();
    h.frame(
        late,
        Frame::new(Command::Subscribe)
            .header("destination", "/queue/mcollective.nodes")
            .header("selector", "mc_identity = 'node-800'"),
    );
    assert_eq!(h.bodies(late), ["late"]);
}

// ----- Topics -----------------------------------------------------------------------------

#[test]
fn topics_fan_out_and_keep_nothing() {
    let mut h = Harness::new();
    let p = h.connect();
    h.send(p, "/topic/t", "nobody-listens", &[]);
    let a = h.connect();
    let b = h.connect();
    h.subscribe(a, "s", "/topic/t", &[]);
    h.subscribe(b, "s", "/topic/t", &[]);
    h.send(p, "/topic/t", "hello", &[]);
    assert_eq!(h.bodies(a), ["hello"]);
    assert_eq!(h.bodies(b), ["hello"]);
}

#[test]
fn wildcard_subscriptions_on_topics_and_queues() {
    let mut h = Harness::new();
    let c = h.connect();
    h.subscribe(c, "agents", "/topic/mcollective.*.agent", &[]);
    h.subscribe(c, "all", "/topic/mcollective.>", &[]);
    h.subscribe(c, "q", "/queue/jobs.>", &[]);
    let p = h.connect();
    h.send(p, "/topic/mcollective.discovery.agent", "d", &[]);
    h.send(p, "/topic/mcollective.registration", "r", &[]);
    h.send(p, "/topic/other.discovery.agent", "o", &[]);
    h.send(p, "/queue/jobs.a.b", "j", &[]);
    let got = h.messages(c);
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|m| {
            (
                m.get("subscription").unwrap().to_owned(),
                m.body_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("agents".to_owned(), "d".to_owned()),
            ("all".to_owned(), "d".to_owned()),
            ("all".to_owned(), "r".to_owned()),
            ("q".to_owned(), "j".to_owned()),
        ]
    );
    assert_eq!(got[3].get("destination"), Some("/queue/jobs.a.b"));
}

#[test]
fn topic_selectors_filter() {
    let mut h = Harness::new();
    let c = h.connect();
    h.subscribe(c, "s", "/topic/t", &[("selector", "color = 'red'")]);
    let p = h.connect();
    h.send(p, "/topic/t", "r", &[("color", "red")]);
    h.send(p, "/topic/t", "b", &[("color", "blue")]);
    assert_eq!(h.bodies(c), ["r"]);
}

// ----- Transactions -----------------------------------------------------------------------

#[test]
fn transactions_commit_and_abort() {
    let mut h = Harness::new();
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[]);
    let p = h.connect();
    h.frame(p, Frame::new(Command::Begin).header("transaction", "t1"));
    h.send(p, "/queue/q", "a", &[("transaction", "t1")]);
    h.send(p, "/queue/q", "b", &[("transaction", "t1")]);
    assert!(h.take(c).is_empty());
    h.frame(p, Frame::new(Command::Commit).header("transaction", "t1"));
    let got = h.messages(c);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].get("transaction"),
        None,
        "tx header is not passed on"
    );
    h.frame(p, Frame::new(Command::Begin).header("transaction", "t2"));
    h.send(p, "/queue/q", "c", &[("transaction", "t2")]);
    h.frame(p, Frame::new(Command::Abort).header("transaction", "t2"));
    assert!(h.take(c).is_empty());
    assert_eq!(h.broker.queue_depth("q"), Some(0));
    h.frame(p, Frame::new(Command::Commit).header("transaction", "nope"));
    assert_eq!(h.take(p)[0].command, "ERROR");
    assert!(h.is_closed(p));
}

#[test]
fn transactional_acks_apply_on_commit() {
    let mut h = Harness::new();
    let p = h.connect();
    h.send(p, "/queue/q", "m", &[]);
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[("ack", "client")]);
    let got = h.messages(c);
    h.frame(c, Frame::new(Command::Begin).header("transaction", "t"));
    h.frame(
        c,
        Frame::new(Command::Ack)
            .header("id", got[0].get("ack").unwrap())
            .header("transaction", "t"),
    );
    h.frame(c, Frame::new(Command::Abort).header("transaction", "t"));
    h.broker.handle_close(h.now_ms, c);
    // The aborted ack did not count: the message comes back.
    let c2 = h.connect();
    h.subscribe(c2, "s", "/queue/q", &[]);
    assert_eq!(h.bodies(c2), ["m"]);
}

// ----- Temporary destinations ------------------------------------------------------------

#[test]
fn temp_queue_reply_to_is_rewritten_and_reaches_its_owner() {
    let mut h = Harness::new();
    let requester = h.connect();
    h.subscribe(requester, "r", "/temp-queue/replies", &[]);
    let server = h.connect();
    h.subscribe(server, "s", "/queue/requests", &[]);
    h.send(
        requester,
        "/queue/requests",
        "ping",
        &[("reply-to", "/temp-queue/replies")],
    );
    let req = h.messages(server);
    let reply_to = req[0].get("reply-to").unwrap().to_owned();
    assert!(reply_to.starts_with("/remote-temp-queue/"), "{reply_to}");
    h.send(server, &reply_to, "pong", &[]);
    let replies = h.messages(requester);
    assert_eq!(replies[0].body_str(), "pong");
    assert_eq!(replies[0].get("destination"), Some("/temp-queue/replies"));
    // Only the owner may consume it.
    h.subscribe(server, "steal", &reply_to, &[]);
    assert_eq!(h.take(server)[0].command, "ERROR");
    // It dies with its owner.
    h.broker.handle_close(h.now_ms, requester);
    h.send(server, &reply_to, "late", &[("receipt", "x")]);
    let got = h.take(server);
    assert_eq!(got[0].command, "ERROR");
    assert_eq!(
        h.broker.stats().queues_current,
        1,
        "only /queue/requests is left"
    );
}

// ----- Heart-beats ------------------------------------------------------------------------

#[test]
fn heartbeats_are_negotiated_sent_and_enforced() {
    let mut h = Harness::new();
    let (c, connected) =
        h.connect_with(&[("accept-version", "1.1,1.0"), ("heart-beat", "30500,29500")]);
    // ActiveMQ-style answer: we send at the client's wish, expect its offer.
    assert_eq!(connected.get("heart-beat"), Some("29500,30500"));
    h.advance(29_000);
    let got = h.take(c);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].command, "HEARTBEAT");
    // The client keeps beating; the connection stays.
    for _ in 0..4 {
        h.broker.handle_heartbeat(h.now_ms, c);
        h.advance(30_000);
    }
    assert!(!h.is_closed(c));
    h.take(c);
    // It has been silent for 30 s since its last beat; the window is 1.5 x 30.5 s.
    h.advance(15_000);
    assert!(!h.is_closed(c));
    h.advance(1_000);
    assert!(h.is_closed(c));
    assert_eq!(h.broker.stats().heartbeat_timeouts, 1);
}

#[test]
fn heartbeats_are_floored_and_off_for_1_0() {
    let mut h = Harness::new();
    let (_, connected) = h.connect_with(&[("accept-version", "1.2"), ("heart-beat", "10,0")]);
    assert_eq!(connected.get("heart-beat"), Some("0,1000"));
    let (_, connected) = h.connect_with(&[("heart-beat", "10,10")]);
    assert_eq!(connected.get("heart-beat"), Some("0,0"));
}

#[test]
fn heartbeats_past_the_longest_interval_are_refused() {
    let mut h = Harness::new();
    for hb in [
        "12300000000000000000,0",
        "0,86400001",
        "18446744073709551615,1",
    ] {
        let (c, error) = h.connect_with(&[("accept-version", "1.1"), ("heart-beat", hb)]);
        assert_eq!(error.command, "ERROR", "{hb}: {error:?}");
        assert!(
            error
                .get("message")
                .unwrap()
                .starts_with("invalid heart-beat header"),
            "{error:?}"
        );
        assert!(h.is_closed(c));
    }
}

#[test]
fn the_longest_heartbeat_interval_arms_timers_that_stay_in_the_future() {
    let mut h = Harness::new();
    h.now_ms = u64::MAX - 1_000_000;
    let (c, connected) = h.connect_with(&[
        ("accept-version", "1.2"),
        ("heart-beat", "86400000,86400000"),
    ]);
    assert_eq!(connected.get("heart-beat"), Some("86400000,86400000"));
    // Deadlines saturate at the end of time instead of wrapping into the past, where they
    // would fire at once, re-arm, and fire again for good.
    assert!(h.broker.poll_timeout().is_some_and(|t| t > h.now_ms));
    h.broker.handle_timeout(h.now_ms);
    h.pump();
    assert!(!h.is_closed(c));
    assert!(h.take(c).is_empty());
}

#[test]
fn connections_waiting_for_connect_have_their_own_cap_and_leave_it_when_connected() {
    let mut config = CoreConfig::default();
    config.limits.unauthenticated_connections_max = 2;
    config.limits.connections_max = 2;
    let mut h = Harness::with(config, Security::open());
    let a = h.open();
    let b = h.open();
    assert_eq!(h.broker.stats().connections_unauthenticated, 2);
    // A third waiting connection is refused at once.
    let c = h.open();
    assert!(h.is_closed(c));
    let error = h.take(c);
    assert!(error[0].get("message").unwrap().contains("unauthenticated"));
    // Once `a` has connected and `b` has gone, two more may wait again.
    h.frame(
        a,
        Frame::new(Command::Connect).header("accept-version", "1.2"),
    );
    assert_eq!(h.take(a)[0].command, "CONNECTED");
    h.broker.handle_close(h.now_ms, b);
    h.pump();
    assert_eq!(h.broker.stats().connections_unauthenticated, 0);
    let d = h.open();
    let e = h.open();
    assert!(!h.is_closed(d) && !h.is_closed(e));
    // Sessions count apart: `d` connects (two sessions), `e` is one session too many.
    h.frame(
        d,
        Frame::new(Command::Connect).header("accept-version", "1.2"),
    );
    assert_eq!(h.take(d)[0].command, "CONNECTED");
    h.frame(
        e,
        Frame::new(Command::Connect).header("accept-version", "1.2"),
    );
    let refused = h.take(e);
    assert_eq!(refused[0].command, "ERROR");
    assert!(
        refused[0]
            .get("message")
            .unwrap()
            .contains("connections_max")
    );
    assert!(h.is_closed(e));
    assert_eq!(h.broker.stats().connections_refused, 2);
    assert_eq!(h.broker.stats().connections_unauthenticated, 0);
}

#[test]
fn peers_are_grouped_by_address_without_their_port() {
    assert_eq!(super::session::peer_address("10.1.2.3:61613"), "10.1.2.3");
    assert_eq!(super::session::peer_address("[::1]:5"), "::1");
    assert_eq!(super::session::peer_address("rack-1"), "rack-1");
    assert_eq!(super::session::peer_address("host:"), "host:");
}

// ----- Slow consumers ---------------------------------------------------------------------

#[test]
fn slow_topic_consumer_is_disconnected_at_the_burst_cap_and_others_keep_working() {
    let mut config = CoreConfig::default();
    config.limits.outbound_frames_max = 10;
    config.limits.outbound_burst_frames_max = 5;
    let mut h = Harness::with(config, Security::open());
    let slow = h.connect();
    let fast = h.connect();
    h.subscribe(slow, "s", "/topic/t", &[]);
    h.subscribe(fast, "s", "/topic/t", &[]);
    h.stalled.push(slow);
    let p = h.connect();
    for i in 0..20 {
        h.send(p, "/topic/t", &i.to_string(), &[]);
    }
    assert!(h.is_closed(slow));
    let slow_frames = h.take(slow);
    // Window 10 + burst 5 messages, then the ERROR.
    assert_eq!(slow_frames.len(), 16, "{slow_frames:?}");
    assert_eq!(slow_frames.last().unwrap().command, "ERROR");
    assert!(
        slow_frames
            .last()
            .unwrap()
            .get("message")
            .unwrap()
            .contains("slow consumer")
    );
    assert_eq!(h.bodies(fast).len(), 20);
    assert_eq!(h.broker.stats().slow_consumer_disconnects, 1);
}

#[test]
fn slow_consumer_grace_period_expires() {
    let mut config = CoreConfig::default();
    config.limits.outbound_frames_max = 10;
    let mut h = Harness::with(config, Security::open());
    let slow = h.connect();
    h.subscribe(slow, "s", "/topic/t", &[]);
    h.stalled.push(slow);
    let p = h.connect();
    for i in 0..12 {
        h.send(p, "/topic/t", &i.to_string(), &[]);
    }
    // Over the window but within the grace period: still served.
    assert!(!h.is_closed(slow));
    assert_eq!(h.bodies(slow).len(), 12);
    h.advance(4_999);
    h.send(p, "/topic/t", "still in grace", &[]);
    assert!(!h.is_closed(slow));
    h.advance(1);
    h.send(p, "/topic/t", "too late", &[]);
    assert!(h.is_closed(slow));
}

#[test]
fn a_consumer_that_catches_up_leaves_the_grace_period() {
    let mut config = CoreConfig::default();
    config.limits.outbound_frames_max = 10;
    let mut h = Harness::with(config, Security::open());
    let c = h.connect();
    h.subscribe(c, "s", "/topic/t", &[]);
    h.stalled.push(c);
    let p = h.connect();
    for i in 0..12 {
        h.send(p, "/topic/t", &i.to_string(), &[]);
    }
    h.advance(4_000);
    h.broker.handle_flushed(h.now_ms, c, 12);
    h.advance(4_000);
    for i in 0..12 {
        h.send(p, "/topic/t", &i.to_string(), &[]);
    }
    assert!(!h.is_closed(c), "its clock restarted when it caught up");
}

#[test]
fn drop_policy_keeps_the_slow_consumer_and_counts_drops() {
    let mut config = CoreConfig::default();
    config.limits.outbound_frames_max = 10;
    config.limits.outbound_burst_frames_max = 0;
    config.slow_consumer_policy = SlowConsumerPolicy::DropTopicMessages;
    let mut h = Harness::with(config, Security::open());
    let slow = h.connect();
    h.subscribe(slow, "s", "/topic/t", &[]);
    h.stalled.push(slow);
    let p = h.connect();
    for i in 0..25 {
        h.send(p, "/topic/t", &i.to_string(), &[]);
    }
    assert!(!h.is_closed(slow));
    assert_eq!(h.bodies(slow).len(), 10);
    assert_eq!(h.broker.stats().messages_dropped_slow, 15);
}

#[test]
fn queue_messages_wait_for_room_instead_of_being_dropped() {
    let mut config = CoreConfig::default();
    config.limits.outbound_frames_max = 3;
    let mut h = Harness::with(config, Security::open());
    let slow = h.connect();
    h.subscribe(slow, "s", "/queue/q", &[]);
    h.stalled.push(slow);
    let p = h.connect();
    for i in 0..10 {
        h.send(p, "/queue/q", &i.to_string(), &[]);
    }
    assert_eq!(h.bodies(slow).len(), 3);
    assert_eq!(h.broker.queue_depth("q"), Some(7));
    // A second consumer takes the rest; nothing is lost.
    let other = h.connect();
    h.subscribe(other, "s", "/queue/q", &[]);
    assert_eq!(h.bodies(other).len(), 7);
    // When the slow one reads again it gets new messages.
    h.stalled.clear();
    h.broker.handle_flushed(h.now_ms, slow, 3);
    h.pump();
    h.send(p, "/queue/q", "x", &[]);
    h.send(p, "/queue/q", "y", &[]);
    let total = h.bodies(slow).len() + h.bodies(other).len();
    assert_eq!(total, 2);
}

// ----- Protocol errors --------------------------------------------------------------------

#[test]
fn bad_frames_get_error_then_close_and_do_not_affect_others() {
    let cases: Vec<Frame> = vec![
        Frame::new(Command::Send),
        Frame::new(Command::Subscribe).header("destination", "/queue/q"),
        Frame::new(Command::Subscribe)
            .header("id", "1")
            .header("destination", "/queue/q")
            .header("ack", "sometimes"),
        Frame::new(Command::Subscribe)
            .header("id", "1")
            .header("destination", "/queue/q")
            .header("selector", "a = = 1"),
        Frame::new(Command::Send)
            .header("destination", "/queue/q")
            .header("priority", "high"),
        Frame::new(Command::Send).header("destination", "/topic/a.*"),
        Frame::new(Command::Message),
        Frame::new(Command::Connect),
        Frame::new(Command::Begin),
    ];
    let mut h = Harness::new();
    let bystander = h.connect();
    h.subscribe(bystander, "s", "/queue/ok", &[]);
    for (i, bad) in cases.into_iter().enumerate() {
        let c = h.connect();
        let what = format!("{bad:?}");
        h.frame(c, bad);
        let got = h.take(c);
        assert_eq!(got.len(), 1, "case {i}: {what} -> {got:?}");
        assert_eq!(got[0].command, "ERROR", "case {i}: {what}");
        assert!(!got[0].get("message").unwrap().is_empty());
        assert!(h.is_closed(c), "case {i}: {what}");
    }
    let p = h.connect();
    h.send(p, "/queue/ok", "still fine", &[]);
    assert_eq!(h.bodies(bystander), ["still fine"]);
}

#[test]
fn subscription_limits_and_duplicate_ids() {
    let mut config = CoreConfig::default();
    config.limits.subscriptions_per_connection_max = 2;
    let mut h = Harness::with(config, Security::open());
    let c = h.connect();
    h.subscribe(c, "a", "/queue/a", &[]);
    h.subscribe(c, "a", "/queue/b", &[]);
    assert!(
        h.take(c)[0]
            .get("message")
            .unwrap()
            .contains("already in use")
    );
    let c = h.connect();
    h.subscribe(c, "a", "/queue/a", &[]);
    h.subscribe(c, "b", "/queue/b", &[]);
    h.subscribe(c, "c", "/queue/c", &[]);
    assert!(
        h.take(c)[0]
            .get("message")
            .unwrap()
            .contains("subscriptions_per_connection_max")
    );
}

#[test]
fn receipt_on_subscribe_precedes_waiting_messages() {
    let mut h = Harness::new();
    let p = h.connect();
    h.send(p, "/queue/q", "m", &[]);
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[("receipt", "sub-1")]);
    let got = h.take(c);
    assert_eq!(got[0].command, "RECEIPT");
    assert_eq!(got[1].command, "MESSAGE");
}

#[test]
fn unsubscribe_by_destination_in_1_0_and_no_local() {
    let mut h = Harness::new();
    let c = h.connect_v10();
    h.frame(
        c,
        Frame::new(Command::Subscribe).header("destination", "/topic/t"),
    );
    h.frame(
        c,
        Frame::new(Command::Unsubscribe).header("destination", "/topic/t"),
    );
    assert_eq!(h.broker.subscription_count(), 0);
    let c = h.connect();
    h.subscribe(c, "s", "/topic/t", &[("activemq.noLocal", "true")]);
    h.send(c, "/topic/t", "own", &[]);
    assert!(h.take(c).is_empty());
}

// ----- Network of brokers: advisories, network subscriptions, audit ----------------------

const ADVISORIES: &str = "/topic/ActiveMQ.Advisory.Consumer.>";

fn broker_named(name: &str) -> Harness {
    let config = CoreConfig {
        broker_name: name.to_owned(),
        ..CoreConfig::default()
    };
    Harness::with(config, Security::open())
}

fn unsubscribe(h: &mut Harness, c: ConnId, id: &str) {
    h.frame(c, Frame::new(Command::Unsubscribe).header("id", id));
}

#[test]
fn consumer_advisories_describe_adds_and_removes() {
    let mut h = broker_named("A");
    let bridge = h.connect();
    h.subscribe(bridge, "adv", ADVISORIES, &[]);
    let c = h.connect();
    h.subscribe(
        c,
        "s",
        "/queue/mcollective.nodes",
        &[("selector", "mc_identity = 'n1'")],
    );
    h.subscribe(c, "t", "/topic/mcollective.discovery.agent", &[]);
    let got = h.messages(bridge);
    assert_eq!(got.len(), 2, "{got:?}");
    let add = &got[0];
    assert_eq!(
        add.get("destination"),
        Some("/topic/ActiveMQ.Advisory.Consumer.Queue.mcollective.nodes")
    );
    assert_eq!(add.get("advisory-action"), Some("add"));
    assert_eq!(add.get("advisory-broker"), Some("A"));
    assert_eq!(
        add.get("consumer-destination"),
        Some("/queue/mcollective.nodes")
    );
    assert_eq!(add.get("consumer-selector"), Some("mc_identity = 'n1'"));
    assert_eq!(add.get("consumer-hops"), Some("0"));
    assert_eq!(add.get("consumer-broker-path"), None);
    assert_eq!(
        got[1].get("destination"),
        Some("/topic/ActiveMQ.Advisory.Consumer.Topic.mcollective.discovery.agent")
    );
    let id = add.get("consumer-id").unwrap().to_owned();
    assert_ne!(got[1].get("consumer-id"), Some(id.as_str()));

    unsubscribe(&mut h, c, "s");
    let got = h.messages(bridge);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get("advisory-action"), Some("remove"));
    assert_eq!(got[0].get("consumer-id"), Some(id.as_str()));
    // Closing the connection removes its remaining subscription.
    h.broker.handle_close(h.now_ms, c);
    h.pump();
    let got = h.messages(bridge);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get("advisory-action"), Some("remove"));
    assert_eq!(
        got[0].get("consumer-destination"),
        Some("/topic/mcollective.discovery.agent")
    );
}

#[test]
fn advisories_skip_temporary_and_advisory_subscriptions_and_follow_the_pattern() {
    let mut h = broker_named("A");
    let queues_only = h.connect();
    h.subscribe(
        queues_only,
        "adv",
        "/topic/ActiveMQ.Advisory.Consumer.Queue.>",
        &[],
    );
    let all = h.connect();
    h.subscribe(all, "adv", ADVISORIES, &[]);
    let c = h.connect();
    h.subscribe(c, "tq", "/temp-queue/mine", &[]);
    h.subscribe(c, "adv2", ADVISORIES, &[]);
    h.subscribe(c, "t", "/topic/x", &[]);
    h.subscribe(c, "q", "/queue/x.>", &[]);
    assert!(h.messages(queues_only).len() == 1);
    let got = h.messages(all);
    let dests: Vec<_> = got
        .iter()
        .map(|m| m.get("consumer-destination").unwrap())
        .collect();
    assert_eq!(dests, ["/topic/x", "/queue/x.>"]);
    // A `/topic/>` subscriber is not an advisory subscriber.
    let wide = h.connect();
    h.subscribe(wide, "all", "/topic/>", &[]);
    h.subscribe(c, "t2", "/topic/y", &[]);
    assert!(h.take(wide).is_empty());
}

#[test]
fn advisory_replay_lists_current_consumers_then_ends() {
    let mut h = broker_named("B");
    let c = h.connect();
    h.subscribe(c, "a", "/queue/a", &[]);
    h.subscribe(c, "b", "/topic/b", &[("selector", "x = 'y'")]);
    let plain = h.connect();
    h.subscribe(plain, "adv", ADVISORIES, &[]);
    assert!(h.take(plain).is_empty(), "no replay unless asked for");
    let bridge = h.connect();
    h.subscribe(
        bridge,
        "adv",
        ADVISORIES,
        &[("stampede.advisory-replay", "true")],
    );
    let got = h.messages(bridge);
    let seen: Vec<_> = got
        .iter()
        .map(|m| {
            (
                m.get("advisory-action").unwrap(),
                m.get("consumer-destination").unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("add", "/queue/a"), ("add", "/topic/b"), ("replay-end", "")]
    );
    assert_eq!(got[2].get("advisory-broker"), Some("B"));
}

#[test]
fn advisory_backlog_follows_flow_control_and_is_bounded() {
    let mut config = CoreConfig {
        broker_name: "A".to_owned(),
        ..CoreConfig::default()
    };
    config.limits.outbound_frames_max = 3;
    config.limits.advisory_backlog_messages_max = 8;
    let mut h = Harness::with(config, Security::open());
    let bridge = h.connect();
    h.subscribe(bridge, "adv", ADVISORIES, &[]);
    h.stalled.push(bridge);
    let c = h.connect();
    for i in 0..6 {
        h.subscribe(c, &format!("s{i}"), &format!("/topic/t{i}"), &[]);
    }
    // Only a window's worth went out; nothing was dropped and the bridge is still open.
    assert_eq!(h.messages(bridge).len(), 3);
    assert!(!h.is_closed(bridge));
    h.stalled.clear();
    h.broker.handle_flushed(h.now_ms, bridge, 3);
    h.pump();
    let rest: Vec<_> = h
        .messages(bridge)
        .iter()
        .map(|m| m.get("consumer-destination").unwrap().to_owned())
        .collect();
    assert_eq!(rest, ["/topic/t3", "/topic/t4", "/topic/t5"]);
    // A bridge that never reads is closed once its backlog passes the limit.
    h.stalled.push(bridge);
    for i in 0..12 {
        h.subscribe(c, &format!("u{i}"), &format!("/topic/u{i}"), &[]);
    }
    assert!(h.is_closed(bridge));
    let error = h.take(bridge).into_iter().find(|f| f.command == "ERROR");
    assert!(
        error
            .unwrap()
            .get("message")
            .unwrap()
            .contains("advisory_backlog_messages_max")
    );
}

/// A demand subscription as a connector on this broker makes it for consumers on `to`.
fn network_sub(path: &str, ttl: &str) -> Vec<(&'static str, String)> {
    let to = path.rsplit(',').next().unwrap().to_owned();
    vec![
        ("ack", "client-individual".to_owned()),
        ("activemq.priority", "-5".to_owned()),
        ("stampede.network-broker", to),
        ("stampede.broker-path", path.to_owned()),
        ("stampede.message-ttl", ttl.to_owned()),
    ]
}

fn subscribe_owned(h: &mut Harness, c: ConnId, id: &str, dest: &str, hs: &[(&str, String)]) {
    let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.subscribe(c, id, dest, &hs);
}

#[test]
fn network_subscriptions_never_get_messages_that_passed_their_broker() {
    let mut h = broker_named("A");
    let to_b = h.connect();
    subscribe_owned(&mut h, to_b, "b", "/topic/t", &network_sub("B", "2"));
    let to_c = h.connect();
    subscribe_owned(&mut h, to_c, "c", "/topic/t", &network_sub("C", "2"));
    let local = h.connect();
    h.subscribe(local, "l", "/topic/t", &[]);
    let bridge_from_b = h.connect();

    // A message that came from B (path "B") goes to C and to the local consumer, not
    // back to B.
    h.send(
        bridge_from_b,
        "/topic/t",
        "from-b",
        &[
            ("stampede-broker-path", "B"),
            ("stampede-origin-id", "ID:B-1"),
        ],
    );
    assert!(h.take(to_b).is_empty());
    let got = h.messages(to_c);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get("stampede-broker-path"), Some("B,A"));
    assert_eq!(got[0].get("stampede-origin-id"), Some("ID:B-1"));
    let got = h.messages(local);
    assert_eq!(got[0].get("stampede-broker-path"), Some("B"));
    assert_eq!(got[0].get("stampede-origin-id"), None);

    // A local message goes everywhere; network deliveries start its path and origin id.
    let producer = h.connect();
    h.send(producer, "/topic/t", "local", &[]);
    let got = h.messages(to_b);
    assert_eq!(got[0].get("stampede-broker-path"), Some("A"));
    let message_id = got[0].get("message-id").unwrap();
    assert_eq!(got[0].get("stampede-origin-id"), Some(message_id));
    assert_eq!(h.messages(to_c).len(), 1);
    assert_eq!(h.messages(local)[0].get("stampede-broker-path"), None);

    // Message TTL: two hops made, TTL 2: local delivery only.
    h.send(
        bridge_from_b,
        "/topic/t",
        "far",
        &[
            ("stampede-broker-path", "D,B"),
            ("stampede-origin-id", "ID:D-1"),
        ],
    );
    assert!(h.take(to_c).is_empty());
    assert!(h.take(to_b).is_empty());
    assert_eq!(h.bodies(local), ["far"]);
}

#[test]
fn queue_messages_prefer_local_consumers_and_respect_paths() {
    let mut h = broker_named("A");
    let to_b = h.connect();
    subscribe_owned(&mut h, to_b, "b", "/queue/q", &network_sub("B", "1"));
    let local = h.connect();
    h.subscribe(local, "l", "/queue/q", &[]);
    let producer = h.connect();
    for i in 0..3 {
        h.send(producer, "/queue/q", &format!("m{i}"), &[]);
    }
    // Higher priority local consumer first, every time.
    assert_eq!(h.bodies(local), ["m0", "m1", "m2"]);
    assert!(h.take(to_b).is_empty());
    // Without a local consumer, the bridge gets them; but never one that came from B.
    unsubscribe(&mut h, local, "l");
    h.send(producer, "/queue/q", "m3", &[]);
    h.send(
        producer,
        "/queue/q",
        "from-b",
        &[("stampede-broker-path", "B"), ("stampede-origin-id", "x")],
    );
    assert_eq!(h.bodies(to_b), ["m3"]);
    assert_eq!(h.broker.queue_depth("q"), Some(1));
    // Selectors of non-conduit demand subscriptions still select.
    let to_c = h.connect();
    let mut hs = network_sub("C", "2");
    hs.push(("selector", "mc_identity = 'n9'".to_owned()));
    subscribe_owned(&mut h, to_c, "c", "/queue/q", &hs);
    assert!(h.take(to_c).is_empty());
    h.send(producer, "/queue/q", "for-n9", &[("mc_identity", "n9")]);
    let got = h.messages(to_c);
    assert_eq!(got[0].body_str(), "for-n9");
    assert_eq!(got[0].get("stampede-broker-path"), Some("A"));
}

#[test]
fn network_subscriptions_that_would_loop_are_refused() {
    let mut h = broker_named("A");
    let c = h.connect();
    subscribe_owned(&mut h, c, "x", "/queue/q", &network_sub("C,A,B", "3"));
    subscribe_owned(&mut h, c, "y", "/queue/q", &network_sub("A", "3"));
    let got = h.take(c);
    assert_eq!(got.len(), 2);
    for e in &got {
        assert_eq!(e.command, "ERROR");
        assert!(e.get("message").unwrap().contains("loop"), "{e:?}");
    }
    assert!(!h.is_closed(c));
    assert_eq!(h.broker.subscription_count(), 0);
}

#[test]
fn network_advisories_carry_the_demand_path() {
    let mut h = broker_named("A");
    let bridge = h.connect();
    h.subscribe(bridge, "adv", ADVISORIES, &[]);
    let demand = h.connect();
    subscribe_owned(&mut h, demand, "d", "/queue/q", &network_sub("C,B", "2"));
    let got = h.messages(bridge);
    assert_eq!(got[0].get("consumer-broker-path"), Some("C,B"));
    assert_eq!(got[0].get("consumer-hops"), Some("2"));
    assert_eq!(got[0].get("consumer-priority"), Some("-5"));
}

#[test]
fn duplicate_network_messages_are_dropped_but_replays_pass() {
    let mut h = broker_named("A");
    let local = h.connect();
    h.subscribe(local, "l", "/topic/t", &[]);
    let bridge = h.connect();
    let from = |path: &'static str| {
        vec![
            ("stampede-broker-path", path),
            ("stampede-origin-id", "ID:B-1-1"),
            ("receipt", "r"),
        ]
    };
    h.send(bridge, "/topic/t", "first", &from("B"));
    // The same message over another path (a ring): acknowledged, not delivered.
    h.send(bridge, "/topic/t", "again", &from("B,C"));
    assert_eq!(h.bodies(local), ["first"]);
    let receipts = h.take(bridge);
    assert_eq!(receipts.len(), 2);
    assert!(receipts.iter().all(|f| f.command == "RECEIPT"));
    assert_eq!(h.broker.stats().network_duplicates_dropped, 1);
    // The same origin id on another destination is another message.
    h.subscribe(local, "u", "/topic/u", &[]);
    h.send(bridge, "/topic/u", "other", &from("B"));
    assert_eq!(h.bodies(local), ["other"]);
    // A message whose path contains this broker is a replay, not a duplicate.
    h.send(bridge, "/topic/t", "replayed", &from("A,B"));
    assert_eq!(h.bodies(local), ["replayed"]);
    // Local messages are never audited.
    h.send(bridge, "/topic/t", "l1", &[]);
    h.send(bridge, "/topic/t", "l2", &[]);
    assert_eq!(h.bodies(local), ["l1", "l2"]);
}

#[test]
fn duplicate_audit_is_bounded() {
    let mut config = CoreConfig {
        broker_name: "A".to_owned(),
        ..CoreConfig::default()
    };
    config.limits.network_audit_messages_max = 2;
    let mut h = Harness::with(config, Security::open());
    let local = h.connect();
    h.subscribe(local, "l", "/topic/t", &[]);
    let bridge = h.connect();
    for id in ["1", "2", "3", "1"] {
        h.send(
            bridge,
            "/topic/t",
            id,
            &[("stampede-broker-path", "B"), ("stampede-origin-id", id)],
        );
    }
    // "1" was forgotten once "3" arrived, so its repeat is delivered.
    assert_eq!(h.bodies(local), ["1", "2", "3", "1"]);
}

#[test]
fn stranded_queue_messages_replay_only_without_local_consumers() {
    let mut h = broker_named("B");
    let bridge_from_a = h.connect();
    // A local consumer whose selector does not match holds the messages here.
    let local = h.connect();
    h.subscribe(local, "l", "/queue/q", &[("selector", "x = 'never'")]);
    h.send(
        bridge_from_a,
        "/queue/q",
        "stranded",
        &[("stampede-broker-path", "A"), ("stampede-origin-id", "o1")],
    );
    let plain = h.connect();
    subscribe_owned(&mut h, plain, "p", "/queue/q", &network_sub("A", "1"));
    let replaying = h.connect();
    let mut hs = network_sub("A", "1");
    hs.push(("stampede.replay-when-no-consumers", "true".to_owned()));
    subscribe_owned(&mut h, replaying, "r", "/queue/q", &hs);
    assert!(h.take(plain).is_empty());
    assert!(h.take(replaying).is_empty(), "a local consumer exists");
    unsubscribe(&mut h, local, "l");
    let got = h.messages(replaying);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get("stampede-broker-path"), Some("A,B"));
    assert!(h.take(plain).is_empty());
    // One hop beyond the TTL at most: a message that has made two hops stays.
    h.send(
        bridge_from_a,
        "/queue/q",
        "twice",
        &[
            ("stampede-broker-path", "C,A"),
            ("stampede-origin-id", "o2"),
        ],
    );
    assert!(h.take(replaying).is_empty());
    assert_eq!(h.broker.queue_depth("q"), Some(1));
}

// ----- Security ---------------------------------------------------------------------------

fn secured() -> Harness {
    let text = r#"
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
queue = "readonly.>"
read = ["app"]
"#;
    let config = crate::config::BrokerConfig::parse(text, "test.toml").unwrap();
    Harness::with(
        CoreConfig::default(),
        Security::from_config(&config.security),
    )
}

fn security_of(text: &str) -> Security {
    let config = crate::config::BrokerConfig::parse(text, "reload.toml").unwrap();
    Security::from_config(&config.security)
}

#[test]
fn a_security_reload_applies_from_the_next_frame_and_keeps_sessions() {
    let mut h = secured();
    let (alice, ok) = h.connect_with(&[
        ("accept-version", "1.2"),
        ("login", "alice"),
        ("passcode", "secret"),
    ]);
    assert_eq!(ok.command, "CONNECTED");
    h.send(alice, "/queue/app.a", "before", &[("receipt", "1")]);
    assert_eq!(h.take(alice)[0].command, "RECEIPT");

    // alice moves to a group that may only read.
    let now = h.now_ms;
    h.broker.handle_reload_security(
        now,
        security_of(
            "[[security.users]]\nname = \"alice\"\npassword = \"secret\"\n\
             groups = [\"readers\"]\n\
             [[security.authorization]]\nqueue = \"app.>\"\nread = [\"readers\"]\n",
        ),
    );
    h.pump();
    h.send(alice, "/queue/app.a", "after", &[("receipt", "2")]);
    let got = h.take(alice);
    assert_eq!(got[0].command, "ERROR", "{got:?}");
    assert!(got[0].get("message").unwrap().contains("not authorized"));
    assert!(!h.is_closed(alice), "a refusal keeps the session");
    h.subscribe(alice, "s", "/queue/app.a", &[("receipt", "3")]);
    let got = h.take(alice);
    assert_eq!(
        got[0].command, "RECEIPT",
        "reading is still allowed: {got:?}"
    );
    assert_eq!(got[1].command, "MESSAGE", "{got:?}");
    assert_eq!(got[1].body_str(), "before");
    assert_eq!(h.broker.stats().security_reloads, 1);

    // A session that never proved an identity gains none when its login becomes a user.
    let mut h = Harness::new();
    let (bob, _) = h.connect_with(&[("accept-version", "1.2"), ("login", "bob")]);
    let now = h.now_ms;
    h.broker.handle_reload_security(
        now,
        security_of(
            "[[security.users]]\nname = \"bob\"\npassword = \"pw\"\ngroups = [\"app\"]\n\
             [[security.authorization]]\nqueue = \">\"\nwrite = [\"app\"]\nadmin = [\"app\"]\n",
        ),
    );
    h.pump();
    h.send(bob, "/queue/x", "m", &[("receipt", "1")]);
    assert_eq!(h.take(bob)[0].command, "ERROR");
}

#[test]
fn bad_credentials_get_error_then_close() {
    let mut h = secured();
    let (c, error) = h.connect_with(&[
        ("accept-version", "1.2"),
        ("login", "alice"),
        ("passcode", "nope"),
    ]);
    assert_eq!(error.command, "ERROR");
    assert!(
        error
            .get("message")
            .unwrap()
            .contains("authentication failed")
    );
    assert!(h.is_closed(c));
    let (c, error) = h.connect_with(&[("accept-version", "1.2")]);
    assert_eq!(
        error.command, "ERROR",
        "anonymous is refused when users exist"
    );
    assert!(h.is_closed(c));
}

#[test]
fn denied_operations_name_destination_and_operation_and_keep_the_session() {
    let mut h = secured();
    let (c, ok) = h.connect_with(&[
        ("accept-version", "1.2"),
        ("login", "alice"),
        ("passcode", "secret"),
    ]);
    assert_eq!(ok.command, "CONNECTED");
    h.send(c, "/queue/other.x", "no", &[("receipt", "r1")]);
    let got = h.take(c);
    assert_eq!(got[0].command, "ERROR");
    assert_eq!(got[0].get("receipt-id"), Some("r1"));
    let msg = got[0].get("message").unwrap();
    assert!(
        msg.contains("/queue/other.x") && msg.contains("write"),
        "{msg}"
    );
    assert!(!h.is_closed(c), "a refusal does not end a healthy session");
    // Reading is allowed on readonly.>, but creating the queue needs admin.
    h.subscribe(c, "s", "/queue/readonly.feed", &[]);
    let msg = h.take(c)[0].get("message").unwrap().to_owned();
    assert!(
        msg.contains("/queue/readonly.feed") && msg.contains("create"),
        "{msg}"
    );
    // Allowed traffic still flows on the same session.
    h.subscribe(c, "s2", "/queue/app.jobs", &[]);
    h.send(c, "/queue/app.jobs", "yes", &[]);
    assert_eq!(h.bodies(c), ["yes"]);
}

#[test]
fn held_messages_and_the_record_of_drops_are_what_a_checker_needs() {
    let config = CoreConfig {
        record_drops: true,
        ..CoreConfig::default()
    };
    let mut h = Harness::with(config, Security::open());
    let p = h.connect();
    let soon = (T0 + 1_000).to_string();
    h.send(p, "/queue/q", "expires-soon", &[("expires", &soon)]);
    h.send(p, "/queue/q", "waits", &[]);
    h.send(p, "/queue/r", "taken", &[]);
    let c = h.connect();
    h.subscribe(c, "s", "/queue/r", &[("ack", "client-individual")]);
    assert_eq!(h.bodies(c), ["taken"]);
    // Waiting in a queue, or delivered and not yet acknowledged: all held.
    let mut held: Vec<String> = h
        .broker
        .held_messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    held.sort();
    assert_eq!(held, ["expires-soon", "taken", "waits"]);
    h.advance(1_000);
    let dropped: Vec<(String, DropReason)> = h
        .broker
        .take_dropped()
        .iter()
        .map(|(m, why)| (String::from_utf8_lossy(&m.body).into_owned(), *why))
        .collect();
    assert_eq!(dropped, [("expires-soon".to_owned(), DropReason::Expired)]);
    assert!(h.broker.take_dropped().is_empty());
    assert_eq!(h.broker.held_messages().len(), 2);
}

#[test]
fn the_test_hook_loses_one_send_without_a_trace() {
    let config = CoreConfig {
        record_drops: true,
        test_drop_send_number: Some(2),
        ..CoreConfig::default()
    };
    let mut h = Harness::with(config, Security::open());
    let p = h.connect();
    for body in ["1", "2", "3"] {
        h.send(p, "/queue/q", body, &[]);
    }
    let c = h.connect();
    h.subscribe(c, "s", "/queue/q", &[]);
    assert_eq!(h.bodies(c), ["1", "3"]);
    assert!(h.broker.take_dropped().is_empty());
    // Off by default.
    assert_eq!(CoreConfig::default().test_drop_send_number, None);
    assert!(!CoreConfig::default().record_drops);
}

#[test]
fn a_verified_client_certificate_logs_in_as_its_user_without_a_password() {
    let text = r#"
[[security.users]]
name = "server"
password = "secret"
groups = ["app"]
certificate_cns = ["*.nodes.example.com"]
[[security.authorization]]
queue = "app.>"
read = ["app"]
write = ["app"]
admin = ["app"]
"#;
    let config = crate::config::BrokerConfig::parse(text, "test.toml").unwrap();
    let mut h = Harness::with(
        CoreConfig::default(),
        Security::from_config(&config.security),
    );
    let connect = |h: &mut Harness, cn: Option<&str>, headers: &[(&str, &str)]| {
        let c = h.open();
        if let Some(cn) = cn {
            h.broker.handle_peer_certificate(c, cn);
        }
        let mut f = Frame::new(Command::Connect).header("accept-version", "1.2");
        for (k, v) in headers {
            f = f.header(*k, *v);
        }
        h.frame(c, f);
        (c, h.take(c).remove(0))
    };
    // A matching certificate and no login: the mapped user, with its group's rights.
    let (c, got) = connect(&mut h, Some("web1.nodes.example.com"), &[]);
    assert_eq!(got.command, "CONNECTED", "{got:?}");
    h.send(c, "/queue/app.x", "hello", &[("receipt", "r")]);
    assert_eq!(h.take(c)[0].command, "RECEIPT");
    // A certificate nobody maps, or none at all: no login, no session.
    let (_, got) = connect(&mut h, Some("web1.nodes.example.org"), &[]);
    assert_eq!(got.command, "ERROR", "{got:?}");
    let (_, got) = connect(&mut h, None, &[]);
    assert_eq!(got.command, "ERROR", "{got:?}");
    // A login is checked by its password, certificate or not.
    let (_, got) = connect(
        &mut h,
        Some("web1.nodes.example.com"),
        &[("login", "server"), ("passcode", "wrong")],
    );
    assert_eq!(got.command, "ERROR", "{got:?}");
}

#[test]
fn work_counts_what_the_core_did() {
    let mut h = Harness::new();
    let subs: Vec<ConnId> = (0..3).map(|_| h.connect()).collect();
    for (i, c) in subs.iter().enumerate() {
        let selector = if i == 0 { "x = 'a'" } else { "" };
        h.subscribe(*c, "s", "/topic/t", &[("selector", selector)]);
    }
    let q = h.connect();
    h.subscribe(q, "q", "/queue/q", &[("ack", "client-individual")]);
    let p = h.connect();
    let before = h.broker.work();
    h.send(p, "/topic/t", "hello", &[("x", "b")]);
    let w = h.broker.work().since(&before);
    assert_eq!(w.frames_in, 1);
    assert!(w.bytes_in >= 5 + "/topic/t".len() as u64, "{w:?}");
    assert_eq!(w.subscriptions_matched, 3);
    assert_eq!(w.selectors_evaluated, 1);
    assert_eq!(w.deliveries, 2, "the selector refused one");
    assert_eq!(w.frames_out, 2);
    assert!(w.bytes_out > 10, "{w:?}");
    h.send(p, "/queue/q", "one", &[]);
    let m = h.messages(q);
    let before = h.broker.work();
    h.frame(
        q,
        Frame::new(Command::Ack).header("id", m[0].get("ack").unwrap()),
    );
    let w = h.broker.work().since(&before);
    assert_eq!((w.acks, w.frames_in, w.deliveries), (1, 1, 0));
    assert!(w.events >= 1);
}

#[test]
fn io_calls_are_frames_that_wake_an_idle_writer_and_flush_reports_are_not_events() {
    let mut h = Harness::new();
    let subs: Vec<ConnId> = (0..3).map(|_| h.connect()).collect();
    for c in &subs {
        h.subscribe(*c, "s", "/topic/t", &[]);
    }
    let p = h.connect();
    // The third subscriber's writer has not reported its writes: what it is sent
    // queues behind the first frame.
    h.stalled.push(subs[2]);
    let before = h.broker.work();
    h.send(p, "/topic/t", "one", &[]);
    h.send(p, "/topic/t", "two", &[]);
    let w = h.broker.work().since(&before);
    assert_eq!(w.frames_out, 6, "{w:?}");
    // The two writers that keep up are woken for each message, the stalled one once.
    assert_eq!(w.io_calls, 2 + 2 + 1, "{w:?}");
    // The writers' four flush reports are not events: only the two SENDs are.
    assert_eq!(w.events, 2, "{w:?}");
}

// ----- Persistence and durable subscriptions -------------------------------------------

fn stored(bytes_max: u64, full_policy: crate::store::FullPolicy) -> Harness {
    let mut h = Harness::new();
    h.broker.enable_persistence(PersistSettings {
        bytes_max,
        full_policy,
    });
    h
}

fn with_store() -> Harness {
    stored(u64::MAX, crate::store::FullPolicy::Block)
}

impl Harness {
    /// The shell reports every record so far synced.
    fn sync(&mut self) {
        self.broker.handle_synced(self.now_ms, self.last_ticket);
        self.pump();
    }

    fn record_kinds(&mut self) -> Vec<&'static str> {
        use crate::store::Record;
        std::mem::take(&mut self.persisted)
            .iter()
            .map(|(_, r)| match r {
                Record::Enqueue(_) => "enqueue",
                Record::Ack { .. } => "ack",
                Record::Commit(_) => "commit",
                Record::DurableAdd(_) => "durable-add",
                Record::DurableRemove { .. } => "durable-remove",
            })
            .collect()
    }
}

const PERSISTENT: (&str, &str) = ("persistent", "true");

#[test]
fn a_persistent_send_is_receipted_only_once_synced() {
    let mut h = with_store();
    let p = h.connect();
    h.send(p, "/queue/a", "x", &[PERSISTENT, ("receipt", "r1")]);
    assert!(h.take(p).is_empty(), "no RECEIPT before the sync");
    assert_eq!(h.record_kinds(), ["enqueue"]);
    h.sync();
    let got = h.take(p);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get("receipt-id"), Some("r1"));
    // Non-persistent messages never touch the store and are receipted at once.
    h.send(p, "/queue/a", "y", &[("receipt", "r2")]);
    assert_eq!(h.take(p)[0].get("receipt-id"), Some("r2"));
    assert!(h.record_kinds().is_empty());
    // Nor do persistent ones to a temporary queue or a topic without durable subscribers.
    h.send(p, "/temp-queue/t", "z", &[PERSISTENT, ("receipt", "r3")]);
    h.send(p, "/topic/t", "z", &[PERSISTENT, ("receipt", "r4")]);
    assert_eq!(h.take(p).len(), 2);
    assert!(h.record_kinds().is_empty());
}

#[test]
fn receipts_keep_their_order_behind_a_held_one_and_disconnect_waits() {
    let mut h = with_store();
    let p = h.connect();
    h.send(p, "/queue/a", "x", &[PERSISTENT, ("receipt", "r1")]);
    h.send(p, "/queue/a", "y", &[("receipt", "r2")]);
    h.frame(p, Frame::new(Command::Disconnect).header("receipt", "bye"));
    assert!(h.take(p).is_empty());
    assert!(!h.is_closed(p));
    h.sync();
    let ids: Vec<_> = h
        .take(p)
        .iter()
        .map(|f| f.get("receipt-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["r1", "r2", "bye"]);
    assert!(h.is_closed(p));
}

#[test]
fn consumption_writes_acks_for_client_and_auto_ack() {
    let mut h = with_store();
    let p = h.connect();
    h.send(p, "/queue/a", "1", &[PERSISTENT]);
    h.send(p, "/queue/a", "2", &[PERSISTENT]);
    assert_eq!(h.record_kinds(), ["enqueue", "enqueue"]);
    let c = h.connect();
    h.subscribe(c, "s", "/queue/a", &[("ack", "client-individual")]);
    let m = h.messages(c);
    assert_eq!(m.len(), 2);
    assert!(h.record_kinds().is_empty(), "delivered is not consumed");
    h.frame(
        c,
        Frame::new(Command::Ack).header("id", m[0].get("ack").unwrap()),
    );
    assert_eq!(h.record_kinds(), ["ack"]);
    // A NACK puts it back: nothing to write.
    h.frame(
        c,
        Frame::new(Command::Nack).header("id", m[1].get("ack").unwrap()),
    );
    assert!(h.record_kinds().is_empty());
    let again = h.messages(c);
    assert_eq!(again[0].get("redelivered"), Some("true"));
    // Auto ack: consumed once written (the harness reports frames flushed at once).
    let a = h.connect();
    h.subscribe(a, "s", "/queue/b", &[]);
    h.send(p, "/queue/b", "3", &[PERSISTENT]);
    assert_eq!(h.bodies(a), ["3"]);
    assert_eq!(h.record_kinds(), ["enqueue", "ack"]);
    assert!(h.broker.store_bytes() > 0, "one message is still held");
}

#[test]
fn a_commit_is_one_record_and_its_receipt_waits() {
    let mut h = with_store();
    let p = h.connect();
    h.frame(p, Frame::new(Command::Begin).header("transaction", "t"));
    h.send(p, "/queue/a", "1", &[PERSISTENT, ("transaction", "t")]);
    h.send(p, "/queue/a", "2", &[PERSISTENT, ("transaction", "t")]);
    assert!(h.record_kinds().is_empty(), "nothing before COMMIT");
    h.frame(
        p,
        Frame::new(Command::Commit)
            .header("transaction", "t")
            .header("receipt", "c"),
    );
    let records = std::mem::take(&mut h.persisted);
    assert_eq!(records.len(), 1);
    assert!(
        matches!(&records[0].1, crate::store::Record::Commit(ops) if ops.len() == 2),
        "{records:?}"
    );
    assert!(h.take(p).is_empty());
    h.sync();
    assert_eq!(h.take(p)[0].get("receipt-id"), Some("c"));
    // An aborted transaction writes nothing.
    h.frame(p, Frame::new(Command::Begin).header("transaction", "u"));
    h.send(p, "/queue/a", "3", &[PERSISTENT, ("transaction", "u")]);
    h.frame(p, Frame::new(Command::Abort).header("transaction", "u"));
    assert!(h.record_kinds().is_empty());
}

#[test]
fn a_full_store_refuses_at_once_with_the_error_policy() {
    let mut h = stored(1, crate::store::FullPolicy::Error);
    let p = h.connect();
    h.send(p, "/queue/a", "1", &[PERSISTENT, ("receipt", "r1")]);
    h.sync();
    assert_eq!(h.take(p)[0].command, "RECEIPT");
    h.send(p, "/queue/a", "2", &[PERSISTENT, ("receipt", "r2")]);
    let got = h.take(p);
    assert_eq!(got[0].command, "ERROR");
    assert_eq!(got[0].get("receipt-id"), Some("r2"));
    assert!(got[0].get("message").unwrap().contains("store.bytes_max"));
    assert!(!h.is_closed(p));
    // Non-persistent messages still go.
    h.send(p, "/queue/a", "3", &[("receipt", "r3")]);
    assert_eq!(h.take(p)[0].command, "RECEIPT");
}

#[test]
fn a_full_store_parks_the_send_with_the_block_policy() {
    let mut h = stored(1, crate::store::FullPolicy::Block);
    let p = h.connect();
    h.send(p, "/queue/a", "1", &[PERSISTENT]);
    h.send(p, "/queue/a", "2", &[PERSISTENT, ("receipt", "r2")]);
    assert!(h.paused.contains(&p));
    assert!(h.take(p).is_empty());
    // A consumer takes the first: room again, the SEND goes through.
    let c = h.connect();
    h.subscribe(c, "s", "/queue/a", &[]);
    assert_eq!(h.bodies(c), ["1", "2"]);
    h.sync();
    assert_eq!(h.take(p)[0].get("receipt-id"), Some("r2"));
    assert!(!h.paused.contains(&p));
    // Waiting too long is an ERROR naming the store limit.
    h.send(p, "/queue/b", "3", &[PERSISTENT]);
    h.send(p, "/queue/b", "4", &[PERSISTENT, ("receipt", "r4")]);
    h.advance(30_001);
    let got = h.take(p);
    assert_eq!(got[0].command, "ERROR");
    assert!(
        got[0].get("message").unwrap().contains("store.bytes_max"),
        "{got:?}"
    );
}

fn durable_sub(h: &mut Harness, c: ConnId, name: &str, dest: &str, receipt: &str) {
    h.subscribe(
        c,
        "d",
        dest,
        &[
            ("activemq.subscriptionName", name),
            ("ack", "client-individual"),
            ("receipt", receipt),
        ],
    );
}

#[test]
fn a_durable_subscriber_gets_what_was_published_while_it_was_away() {
    let mut h = Harness::new();
    let (c, _) = h.connect_with(&[("accept-version", "1.2"), ("client-id", "node-1")]);
    durable_sub(&mut h, c, "sub", "/topic/news", "r");
    assert_eq!(h.take(c)[0].command, "RECEIPT");
    let p = h.connect();
    h.send(p, "/topic/news", "while here", &[]);
    assert_eq!(h.bodies(c), ["while here"]);
    h.frame(c, Frame::new(Command::Disconnect));
    h.send(p, "/topic/news", "while away 1", &[]);
    h.send(p, "/topic/news", "while away 2", &[]);
    h.send(p, "/topic/other", "not for it", &[]);
    let (c, _) = h.connect_with(&[("accept-version", "1.2"), ("client-id", "node-1")]);
    durable_sub(&mut h, c, "sub", "/topic/news", "r");
    let got = h.take(c);
    let bodies: Vec<_> = got.iter().map(|f| f.body_str().to_owned()).collect();
    // The unacknowledged one again, then what it missed.
    assert_eq!(
        bodies,
        ["", "while here", "while away 1", "while away 2"],
        "{got:?}"
    );
    assert_eq!(got[1].get("redelivered"), Some("true"));
    assert_eq!(got[2].get("destination"), Some("/topic/news"));
    // UNSUBSCRIBE with the name removes it and its messages.
    h.frame(
        c,
        Frame::new(Command::Unsubscribe)
            .header("id", "d")
            .header("activemq.subscriptionName", "sub")
            .header("receipt", "u"),
    );
    assert_eq!(h.take(c)[0].command, "RECEIPT");
    h.send(p, "/topic/news", "after removal", &[]);
    h.subscribe(
        c,
        "d2",
        "/topic/news",
        &[("activemq.subscriptionName", "sub")],
    );
    assert!(h.take(c).iter().all(|f| f.command != "MESSAGE"));
    // No queue subscriber ever sees a durable subscription's queue.
    let q = h.connect();
    h.subscribe(q, "all", "/queue/>", &[]);
    h.send(p, "/topic/news", "x", &[]);
    assert!(h.take(q).is_empty());
}

#[test]
fn durable_subscriptions_need_a_client_id_a_topic_and_one_consumer() {
    let mut h = Harness::new();
    let c = h.connect();
    durable_sub(&mut h, c, "sub", "/topic/a", "r");
    let got = h.take(c);
    assert_eq!(got[0].command, "ERROR");
    assert!(got[0].get("message").unwrap().contains("client-id"));
    let (d, _) = h.connect_with(&[("accept-version", "1.2"), ("client-id", "x")]);
    durable_sub(&mut h, d, "sub", "/queue/a", "r");
    assert!(h.take(d)[0].get("message").unwrap().contains("only topics"));
    let (e, err) = h.connect_with(&[("accept-version", "1.2"), ("client-id", "x")]);
    assert_eq!(err.command, "ERROR");
    assert!(err.get("message").unwrap().contains("already connected"));
    assert!(h.is_closed(e));
}

#[test]
fn stored_messages_and_durables_come_back_after_a_restart() {
    use crate::store::disk::mem::MemDisk;
    use crate::store::{Store, StoreOptions};
    let options = StoreOptions {
        segment_bytes_max: 1 << 20,
        skip_corrupt: false,
    };
    let disk = MemDisk::default();
    let (mut store, _) = Store::open(Box::new(disk.clone()), options).unwrap();
    let mut h = with_store();
    let (c, _) = h.connect_with(&[("accept-version", "1.2"), ("client-id", "node-1")]);
    durable_sub(&mut h, c, "sub", "/topic/news.*", "r");
    h.frame(c, Frame::new(Command::Disconnect));
    let p = h.connect();
    for body in ["q1", "q2", "q3"] {
        h.send(p, "/queue/work", body, &[PERSISTENT, ("priority", "6")]);
    }
    h.send(p, "/topic/news.today", "t1", &[PERSISTENT]);
    h.send(p, "/topic/news.today", "not persistent", &[]);
    let w = h.connect();
    h.subscribe(w, "s", "/queue/work", &[("ack", "client-individual")]);
    let m = h.messages(w);
    h.frame(
        w,
        Frame::new(Command::Ack).header("id", m[0].get("ack").unwrap()),
    );
    for (_, record) in std::mem::take(&mut h.persisted) {
        store.append(&record).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    // "Restart": a new core restores what the store recovered.
    let (_, recovered) = Store::open(Box::new(disk), options).unwrap();
    let mut h = with_store();
    h.broker.restore(recovered);
    assert!(h.broker.store_bytes() > 0);
    let w = h.connect();
    h.subscribe(w, "s", "/queue/work", &[]);
    let m = h.messages(w);
    let bodies: Vec<_> = m.iter().map(|f| f.body_str().to_owned()).collect();
    assert_eq!(bodies, ["q2", "q3"]);
    assert!(m.iter().all(|f| f.get("redelivered") == Some("true")));
    assert_eq!(m[0].get("priority"), Some("6"));
    let (c, _) = h.connect_with(&[("accept-version", "1.2"), ("client-id", "node-1")]);
    durable_sub(&mut h, c, "sub", "/topic/news.*", "r");
    let got = h.take(c);
    assert_eq!(
        got[0].command, "RECEIPT",
        "resuming writes nothing: {got:?}"
    );
    assert_eq!(got[1].body_str(), "t1");
    assert_eq!(got[1].get("destination"), Some("/topic/news.today"));
    assert_eq!(got.len(), 2);
}

// ----- Virtual hosts ----------------------------------------------------------------------

fn vhost(name: &str, convention: crate::vhost::Convention) -> crate::vhost::VhostConfig {
    crate::vhost::VhostConfig {
        name: name.to_owned(),
        convention,
        ..crate::vhost::VhostConfig::default()
    }
}

/// A broker with ActiveMQ-convention vhosts `a` (the default) and `b`, and MCollective's
/// RabbitMQ vhost `/mcollective` with its two exchanges, a fanout and a declared queue.
fn vhost_harness() -> Harness {
    use crate::vhost::{Convention, ExchangeConfig, ExchangeType};
    let x = |name: &str, kind| ExchangeConfig {
        name: name.to_owned(),
        kind,
    };
    let mut rabbit = vhost("/mcollective", Convention::RabbitMq);
    rabbit.exchanges = vec![
        x("mcollective_broadcast", ExchangeType::Topic),
        x("mcollective_directed", ExchangeType::Direct),
        x("everyone", ExchangeType::Fanout),
    ];
    rabbit.queues = vec!["preset".to_owned()];
    let config = CoreConfig {
        vhosts: vec![
            vhost("a", Convention::ActiveMq),
            vhost("b", Convention::ActiveMq),
            rabbit,
        ],
        default_vhost: Some("a".to_owned()),
        ..CoreConfig::default()
    };
    Harness::with(config, Security::open())
}

impl Harness {
    fn connect_host(&mut self, host: &str) -> ConnId {
        let (c, connected) = self.connect_with(&[("accept-version", "1.2"), ("host", host)]);
        assert_eq!(connected.command, "CONNECTED", "{connected:?}");
        c
    }
}

#[test]
fn vhosts_are_isolated_namespaces_chosen_by_host() {
    let mut h = vhost_harness();
    let a = h.connect_host("a");
    h.subscribe(a, "q", "/queue/q", &[]);
    h.subscribe(a, "all", "/topic/>", &[]);
    let b = h.connect_host("b");
    h.subscribe(b, "q", "/queue/q", &[]);
    // The same names in vhost b are other destinations.
    h.send(b, "/queue/q", "from-b", &[]);
    h.send(b, "/topic/t", "topic-b", &[]);
    assert!(h.take(a).is_empty(), "vhost a saw vhost b's messages");
    assert_eq!(h.bodies(b), ["from-b"]);
    // A client without host, or with a host the broker does not know, is in the default
    // vhost (ActiveMQ's convention ignores host), and names read as the client wrote them.
    let plain = h.connect();
    h.send(plain, "/queue/q", "q-a", &[]);
    let unknown = h.connect_host("broker.example.com");
    h.send(unknown, "/topic/x.y", "topic-a", &[]);
    let got = h.messages(a);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].body_str(), got[0].get("destination")),
        ("q-a", Some("/queue/q"))
    );
    assert_eq!(
        (got[1].body_str(), got[1].get("destination")),
        ("topic-a", Some("/topic/x.y"))
    );
    assert!(h.take(b).is_empty());
    // Dead letters stay in their vhost too.
    h.subscribe(b, "work", "/queue/work", &[("ack", "client-individual")]);
    h.send(b, "/queue/work", "poison", &[]);
    let m = h.messages(b);
    h.frame(
        b,
        Frame::new(Command::Nack)
            .header("id", m[0].get("ack").unwrap())
            .header("requeue", "False"),
    );
    assert_eq!(h.broker.queue_depth("b.ActiveMQ.DLQ"), Some(1));
    assert_eq!(h.broker.queue_depth("ActiveMQ.DLQ"), None);
}

#[test]
fn an_unknown_vhost_is_refused_when_the_default_follows_rabbitmq() {
    use crate::vhost::Convention;
    let config = CoreConfig {
        vhosts: vec![vhost("/", Convention::RabbitMq)],
        default_vhost: Some("/".to_owned()),
        ..CoreConfig::default()
    };
    let mut h = Harness::with(config, Security::open());
    let (c, e) = h.connect_with(&[("accept-version", "1.1"), ("host", "/nope")]);
    assert_eq!(e.command, "ERROR");
    assert!(
        e.get("message")
            .unwrap()
            .starts_with("Virtual host '/nope' access denied"),
        "{e:?}"
    );
    assert!(h.is_closed(c));
    // No host: the default.
    let ok = h.connect();
    h.send(ok, "/queue/q", "m", &[("receipt", "r")]);
    assert_eq!(h.take(ok)[0].command, "RECEIPT");
    // Without a default, a client must name its vhost.
    let config = CoreConfig {
        vhosts: vec![vhost("/", Convention::RabbitMq)],
        ..CoreConfig::default()
    };
    let mut h = Harness::with(config, Security::open());
    let (c, e) = h.connect_with(&[("accept-version", "1.1")]);
    assert_eq!(e.command, "ERROR", "{e:?}");
    assert!(h.is_closed(c));
}

#[test]
fn rabbitmq_exchanges_route_by_their_type() {
    let mut h = vhost_harness();
    let node1 = h.connect_host("/mcollective");
    let node2 = h.connect_host("/mcollective");
    let x = "/exchange/mcollective_broadcast";
    h.subscribe(node1, "rpcutil", &format!("{x}/rpcutil"), &[]);
    h.subscribe(node1, "star", &format!("{x}/a.*.c"), &[]);
    h.subscribe(node2, "hash", &format!("{x}/a.#"), &[]);
    h.subscribe(
        node1,
        "d",
        "/exchange/mcollective_directed/node1.example.com",
        &[],
    );
    h.subscribe(
        node2,
        "d",
        "/exchange/mcollective_directed/node2.example.com",
        &[],
    );
    h.subscribe(node2, "f", "/exchange/everyone/ignored", &[]);
    let client = h.connect_host("/mcollective");
    h.send(client, &format!("{x}/rpcutil"), "bcast", &[]);
    let got = h.messages(node1);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].get("destination"),
        Some("/exchange/mcollective_broadcast/rpcutil")
    );
    assert_eq!(got[0].get("subscription"), Some("rpcutil"));
    assert!(h.take(node2).is_empty());
    h.send(client, &format!("{x}/a.b.c"), "abc", &[]);
    let n1 = h.messages(node1);
    let n2 = h.messages(node2);
    assert_eq!((n1.len(), n1[0].get("subscription")), (1, Some("star")));
    // A wildcard subscription shows the key the message was published with.
    assert_eq!(
        n1[0].get("destination"),
        Some("/exchange/mcollective_broadcast/a.b.c")
    );
    assert_eq!((n2.len(), n2[0].get("subscription")), (1, Some("hash")));
    h.send(client, &format!("{x}/a.b.b.c"), "abbc", &[]);
    assert!(h.take(node1).is_empty(), "`*` is one word");
    assert_eq!(h.bodies(node2), ["abbc"]);
    // Direct: the exact key, dots and all.
    h.send(
        client,
        "/exchange/mcollective_directed/node2.example.com",
        "to-2",
        &[],
    );
    assert!(h.take(node1).is_empty());
    assert_eq!(h.bodies(node2), ["to-2"]);
    h.send(
        client,
        "/exchange/mcollective_directed/node2",
        "to-none",
        &[],
    );
    assert!(h.take(node1).is_empty() && h.take(node2).is_empty());
    // Fanout: every binding, whatever the key.
    h.send(client, "/exchange/everyone/anything.at.all", "fan", &[]);
    assert_eq!(h.bodies(node2), ["fan"]);
    // The same exchange name in another vhost is not this one.
    let other = h.connect_host("b");
    h.send(other, &format!("{x}/rpcutil"), "elsewhere", &[]);
    assert!(h.take(node1).is_empty());
    // A missing exchange is RabbitMQ's NOT_FOUND, then a close.
    h.send(client, "/exchange/missing/k", "x", &[]);
    let e = h.take(client);
    assert_eq!(e[0].command, "ERROR");
    assert_eq!(
        e[0].get("message"),
        Some("NOT_FOUND - no exchange 'missing' in vhost '/mcollective'")
    );
    assert!(h.is_closed(client));
}

#[test]
fn rabbitmq_exchange_subscriptions_consume_a_queue_of_their_own() {
    let mut h = vhost_harness();
    let x = "/exchange/mcollective_broadcast/rpcutil";
    let node = h.connect_host("/mcollective");
    h.subscribe(
        node,
        "s",
        x,
        &[("ack", "client-individual"), ("prefetch-count", "1")],
    );
    let client = h.connect_host("/mcollective");
    for body in ["m1", "m2", "m3"] {
        h.send(client, x, body, &[]);
    }
    // The queue holds what the prefetch keeps back; a topic subscription would have had
    // all three written at once.
    let first = h.messages(node);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body_str(), "m1");
    assert_eq!(first[0].get("destination"), Some(x));
    h.frame(
        node,
        Frame::new(Command::Nack).header("id", first[0].get("ack").unwrap()),
    );
    let again = h.messages(node);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body_str(), "m1");
    assert_eq!(again[0].get("redelivered"), Some("true"));
    h.frame(
        node,
        Frame::new(Command::Ack).header("id", again[0].get("ack").unwrap()),
    );
    assert_eq!(h.bodies(node), ["m2"]);
    // Exclusive and auto-delete: it goes with the subscription, messages and all.
    let depth = |h: &Harness| {
        h.broker
            .queue_depths()
            .iter()
            .filter(|d| d.destination.contains("durable,"))
            .map(|d| d.messages)
            .sum::<u64>()
    };
    assert_eq!(depth(&h), 1, "m3 waits in the subscription's queue");
    h.frame(node, Frame::new(Command::Unsubscribe).header("id", "s"));
    assert_eq!(
        h.broker
            .queue_depths()
            .iter()
            .filter(|d| d.destination.contains("durable,"))
            .count(),
        0
    );
    h.subscribe(node, "s2", x, &[]);
    h.send(client, x, "m4", &[]);
    assert_eq!(
        h.bodies(node),
        ["m4"],
        "the old queue's messages went with it"
    );
    // A connection that ends takes its subscription queues with it.
    h.subscribe(node, "s3", x, &[("ack", "client"), ("prefetch-count", "1")]);
    h.take(node);
    h.send(client, x, "m5", &[]);
    h.send(client, x, "m6", &[]);
    assert!(depth(&h) > 0);
    h.broker.handle_close(h.now_ms, node);
    h.pump();
    assert_eq!(depth(&h), 0);
}

#[test]
fn rabbitmq_durable_subscriptions_outlive_their_connection() {
    let mut h = vhost_harness();
    let t = "/topic/news.#";
    let sub = [("durable", "true"), ("auto-delete", "false")];
    let a = h.connect_host("/mcollective");
    h.subscribe(a, "d1", t, &sub);
    let p = h.connect_host("/mcollective");
    h.send(p, "/topic/news.eu", "n1", &[]);
    assert_eq!(h.bodies(a), ["n1"]);
    h.broker.handle_close(h.now_ms, a);
    h.pump();
    h.send(p, "/topic/news.eu", "n2", &[]);
    h.send(p, "/topic/news.us.ny", "n3", &[]);
    h.send(p, "/topic/sport", "not-news", &[]);
    // Back with the same id: what came while it was away.
    let b = h.connect_host("/mcollective");
    h.subscribe(b, "d1", t, &sub);
    assert_eq!(h.bodies(b), ["n2", "n3"]);
    // Only one consumer at a time.
    let c = h.connect_host("/mcollective");
    h.subscribe(c, "d1", t, &sub);
    let e = h.take(c);
    assert_eq!(e[0].command, "ERROR");
    assert!(e[0].get("message").unwrap().starts_with("RESOURCE_LOCKED"));
    // A durable subscription needs an id: STOMP 1.0 clients may leave it out.
    let old = h.connect_host("/mcollective");
    h.frame(
        old,
        Frame::new(Command::Subscribe)
            .header("destination", "/topic/x")
            .header("durable", "true")
            .header("auto-delete", "false"),
    );
    let e = h.take(old);
    assert_eq!(e[0].command, "ERROR", "{e:?}");
    // UNSUBSCRIBE with durable:true deletes it; without, it would stay.
    h.frame(
        b,
        Frame::new(Command::Unsubscribe)
            .header("id", "d1")
            .header("durable", "true"),
    );
    h.send(p, "/topic/news.eu", "n4", &[]);
    let d = h.connect_host("/mcollective");
    h.subscribe(d, "d1", t, &sub);
    assert!(h.take(d).is_empty(), "the durable queue was deleted");
}

#[test]
fn rabbitmq_durable_subscription_queues_survive_a_restart() {
    use crate::store::disk::mem::MemDisk;
    use crate::store::{Store, StoreOptions};
    let options = StoreOptions {
        segment_bytes_max: 1 << 20,
        skip_corrupt: false,
    };
    let disk = MemDisk::default();
    let (mut store, _) = Store::open(Box::new(disk.clone()), options).unwrap();
    let start = || {
        let mut h = vhost_harness();
        h.broker.enable_persistence(PersistSettings {
            bytes_max: u64::MAX,
            full_policy: crate::store::FullPolicy::Block,
        });
        h
    };
    let x = "/exchange/mcollective_broadcast";
    let durable = [("durable", "true"), ("auto-delete", "false")];
    let mut h = start();
    let a = h.connect_host("/mcollective");
    h.subscribe(a, "d1", &format!("{x}/news.#.fr"), &durable);
    h.subscribe(a, "gone", &format!("{x}/news.#.fr"), &[]);
    h.broker.handle_close(h.now_ms, a);
    h.pump();
    // A live exclusive subscription takes the message too, but never stores it.
    let e = h.connect_host("/mcollective");
    h.subscribe(e, "live", &format!("{x}/news.#.fr"), &[("ack", "client")]);
    let p = h.connect_host("/mcollective");
    h.send(p, &format!("{x}/news.eu.fr"), "n1", &[PERSISTENT]);
    h.send(p, &format!("{x}/sport"), "no", &[PERSISTENT]);
    assert_eq!(h.bodies(e), ["n1"]);
    for (_, r) in &h.persisted {
        if let crate::store::Record::Enqueue(m) = r {
            assert_eq!(m.queues.len(), 1, "only the durable queue: {:?}", m.queues);
        }
    }
    // Only the durable queue is stored; the exclusive one was never a record.
    let adds = h
        .persisted
        .iter()
        .filter(|(_, r)| matches!(r, crate::store::Record::DurableAdd(_)))
        .count();
    assert_eq!(adds, 1);
    for (_, record) in std::mem::take(&mut h.persisted) {
        store.append(&record).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let (_, recovered) = Store::open(Box::new(disk), options).unwrap();
    let mut h = start();
    h.broker.restore(recovered);
    let p = h.connect_host("/mcollective");
    // The restored binding is the AMQP pattern: `#` matches zero or more words, in the
    // middle too.
    h.send(p, &format!("{x}/news.fr"), "n2", &[]);
    h.send(p, &format!("{x}/news.eu.de"), "no", &[]);
    let b = h.connect_host("/mcollective");
    h.subscribe(b, "d1", &format!("{x}/news.#.fr"), &durable);
    let got = h.messages(b);
    let bodies: Vec<_> = got.iter().map(|f| f.body_str().to_owned()).collect();
    assert_eq!(bodies, ["n1", "n2"]);
    assert_eq!(got[0].get("redelivered"), Some("true"));
    assert_eq!(
        got[0].get("destination"),
        Some("/exchange/mcollective_broadcast/news.eu.fr")
    );
}

#[test]
fn reloaded_vhosts_keep_sessions_by_name_and_close_those_of_removed_ones() {
    use crate::vhost::{Convention, ExchangeConfig, ExchangeType};
    let mut h = vhost_harness();
    let rabbit = h.connect_host("/mcollective");
    let b = h.connect_host("b");
    let a = h.connect_host("a");
    h.subscribe(a, "q", "/queue/q", &[]);
    // /mcollective moves first, gains an exchange and keeps its declared queue; b goes; a
    // becomes a RabbitMQ vhost (its names would mean something else).
    let mut m = vhost("/mcollective", Convention::RabbitMq);
    m.exchanges = vec![
        ExchangeConfig {
            name: "mcollective_broadcast".into(),
            kind: ExchangeType::Topic,
        },
        ExchangeConfig {
            name: "added".into(),
            kind: ExchangeType::Fanout,
        },
    ];
    m.queues = vec!["preset".into()];
    let configs = vec![m, vhost("a", Convention::RabbitMq)];
    h.broker
        .handle_reload_vhosts(h.now_ms, configs, Some("a".to_owned()));
    h.pump();
    for gone in [a, b] {
        let e = h.take(gone);
        assert_eq!(e[0].command, "ERROR", "{e:?}");
        assert!(h.is_closed(gone));
    }
    assert!(!h.is_closed(rabbit));
    h.subscribe(rabbit, "f", "/exchange/added/x", &[]);
    h.subscribe(rabbit, "p", "/amq/queue/preset", &[("receipt", "r")]);
    let got = h.take(rabbit);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].command, "RECEIPT");
    let p = h.connect_host("/mcollective");
    h.send(p, "/exchange/added/anything", "fan", &[]);
    assert_eq!(h.bodies(rabbit), ["fan"]);
    assert_eq!(h.broker.stats().vhost_reloads, 1);
}

#[test]
fn rabbitmq_queues_amq_queues_and_topics() {
    let mut h = vhost_harness();
    let p = h.connect_host("/mcollective");
    // /queue/ declares a shared queue that buffers until a consumer comes.
    h.send(p, "/queue/work.items", "w1", &[]);
    let c = h.connect_host("/mcollective");
    h.subscribe(c, "w", "/amq/queue/work.items", &[]);
    let got = h.messages(c);
    assert_eq!(got[0].body_str(), "w1");
    // Shown as RabbitMQ shows a default-exchange message.
    assert_eq!(got[0].get("destination"), Some("/queue/work.items"));
    // A declared queue exists from the start.
    h.subscribe(c, "pre", "/amq/queue/preset", &[("receipt", "r")]);
    assert_eq!(h.take(c)[0].command, "RECEIPT");
    // /topic/ is amq.topic, with AMQP wildcards.
    h.subscribe(c, "t", "/topic/stock.#", &[]);
    h.send(p, "/exchange/amq.topic/stock.nyse.ibm", "tick", &[]);
    assert_eq!(h.bodies(c), ["tick"]);
    // MESSAGE frames show where a message was sent, as RabbitMQ reconstructs it.
    let (old, _) = h.connect_with(&[("host", "/mcollective")]);
    h.frame(
        old,
        Frame::new(Command::Subscribe).header("destination", "/exchange/amq.topic/news"),
    );
    h.send(p, "/topic/news", "n1", &[]);
    let got = h.messages(old);
    assert_eq!(got[0].get("destination"), Some("/topic/news"));
    // A STOMP 1.0 UNSUBSCRIBE names what the client wrote.
    h.frame(
        old,
        Frame::new(Command::Unsubscribe)
            .header("destination", "/exchange/amq.topic/news")
            .header("receipt", "u"),
    );
    assert_eq!(h.take(old)[0].command, "RECEIPT");
    h.send(p, "/topic/news", "n2", &[]);
    assert!(h.take(old).is_empty());
    // prefetch-count bounds unacknowledged deliveries.
    h.send(p, "/queue/pf", "1", &[]);
    h.send(p, "/queue/pf", "2", &[]);
    let slow = h.connect_host("/mcollective");
    h.subscribe(
        slow,
        "pf",
        "/queue/pf",
        &[("ack", "client"), ("prefetch-count", "1")],
    );
    assert_eq!(h.bodies(slow), ["1"]);
    // A queue nobody declared is NOT_FOUND.
    let d = h.connect_host("/mcollective");
    h.subscribe(d, "x", "/amq/queue/never", &[]);
    let e = h.take(d);
    assert_eq!(
        e[0].get("message"),
        Some("NOT_FOUND - no queue 'never' in vhost '/mcollective'")
    );
    assert!(h.is_closed(d));
    // A SEND to an /amq/queue/ nobody declared is taken and dropped, as RabbitMQ drops it.
    let f = h.connect_host("/mcollective");
    h.send(f, "/amq/queue/nowhere", "x", &[("receipt", "r")]);
    assert_eq!(h.take(f)[0].command, "RECEIPT");
    assert_eq!(h.broker.stats().messages_discarded, 1);
    // A name without prefix is a queue (RabbitMQ 3.10); an unknown prefix is an error.
    h.send(f, "plain.name", "p", &[]);
    h.subscribe(c, "plain", "/queue/plain.name", &[]);
    assert_eq!(h.bodies(c), ["p"]);
    h.send(f, "/unknown/x", "x", &[]);
    assert_eq!(h.take(f)[0].command, "ERROR");
}

#[test]
fn rabbitmq_temp_queue_reply_to_subscribes_the_sender_and_routes_replies() {
    let mut h = vhost_harness();
    let node = h.connect_host("/mcollective");
    h.subscribe(node, "rpc", "/exchange/mcollective_broadcast/rpcutil", &[]);
    // MCollective's client: STOMP 1.0, never subscribes to its reply queue.
    let (client, connected) = h.connect_with(&[("host", "/mcollective")]);
    assert_eq!(connected.command, "CONNECTED");
    let reply_to = "/temp-queue/mcollective_reply_rpcutil";
    for round in 0..2 {
        h.send(
            client,
            "/exchange/mcollective_broadcast/rpcutil",
            "request",
            &[("reply-to", reply_to), ("mc_sender", "admin")],
        );
        let req = h.messages(node);
        assert_eq!(req.len(), 1, "round {round}");
        let rewritten = req[0].get("reply-to").unwrap().to_owned();
        assert!(rewritten.starts_with("/reply-queue/"), "{rewritten}");
        assert_eq!(req[0].get("mc_sender"), Some("admin"));
        h.send(node, &rewritten, &format!("reply-{round}"), &[]);
        let replies = h.take(client);
        assert_eq!(replies.len(), 1, "round {round}: {replies:?}");
        assert_eq!(replies[0].command, "MESSAGE");
        assert_eq!(replies[0].body_str(), format!("reply-{round}"));
        assert_eq!(replies[0].get("subscription"), Some(reply_to));
        // As RabbitMQ shows a reply: a queue of the default exchange.
        let internal = rewritten.strip_prefix("/reply-queue/").unwrap();
        assert_eq!(
            replies[0].get("destination"),
            Some(format!("/queue/{internal}").as_str())
        );
    }
    // From another vhost, the reply queue does not exist.
    let elsewhere = h.connect_host("b");
    h.send(
        client,
        "/exchange/mcollective_broadcast/rpcutil",
        "r",
        &[("reply-to", reply_to)],
    );
    let rt = h.messages(node)[0].get("reply-to").unwrap().to_owned();
    let internal = rt.strip_prefix("/reply-queue/").unwrap();
    h.send(
        elsewhere,
        &format!("/remote-temp-queue/{internal}"),
        "x",
        &[],
    );
    let e = h.take(elsewhere);
    assert_eq!(e[0].command, "ERROR", "{e:?}");
    assert!(h.take(client).is_empty(), "a reply crossed vhosts");
    // Nobody else may consume the reply queue.
    let thief = h.connect_host("/mcollective");
    h.send(
        client,
        "/exchange/mcollective_broadcast/rpcutil",
        "r",
        &[("reply-to", reply_to)],
    );
    let rewritten = h.messages(node)[0].get("reply-to").unwrap().to_owned();
    h.subscribe(thief, "steal", &rewritten, &[]);
    assert_eq!(h.take(thief)[0].command, "ERROR");
}

#[test]
fn rabbitmq_expiration_is_relative_and_refused_messages_are_dropped() {
    let mut h = vhost_harness();
    let p = h.connect_host("/mcollective");
    h.send(p, "/queue/q", "short", &[("expiration", "1000")]);
    h.send(p, "/queue/q", "long", &[("expiration", "60000")]);
    h.advance(2_000);
    let c = h.connect_host("/mcollective");
    h.subscribe(c, "s", "/queue/q", &[("ack", "client-individual")]);
    let got = h.messages(c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body_str(), "long");
    assert_eq!(got[0].get("expiration"), Some("60000"));
    // NACK requeue:false: RabbitMQ drops it (no dead-letter exchange), counted.
    h.frame(
        c,
        Frame::new(Command::Nack)
            .header("id", got[0].get("ack").unwrap())
            .header("requeue", "false"),
    );
    assert!(h.take(c).is_empty());
    let stats = h.broker.stats();
    assert_eq!(
        (stats.messages_discarded, stats.messages_dead_lettered),
        (1, 0)
    );
    assert_eq!(h.broker.queue_depth("ActiveMQ.DLQ"), None);
}

#[test]
fn odd_rabbitmq_destinations_get_an_answer_never_a_panic() {
    let mut h = vhost_harness();
    let watcher = h.connect_host("/mcollective");
    h.subscribe(watcher, "all", "/exchange/mcollective_broadcast/#", &[]);
    let odd = [
        "/exchange/",
        "/exchange/mcollective_broadcast/",
        "/exchange/mcollective_broadcast/..",
        "/exchange/mcollective_broadcast/#.#.*.#",
        "/exchange/mcollective_broadcast/a,b.%2E.>",
        "/exchange/amq.topic",
        "/topic/",
        "/queue/",
        "/queue/%",
        "/amq/queue/",
        "/reply-queue/",
        "/reply-queue/ID:nobody:x",
        "/temp-queue/",
        "/exchange/mcollective_directed/a/b",
        "",
    ];
    for dest in odd {
        for command in [Command::Send, Command::Subscribe] {
            let c = h.connect_host("/mcollective");
            let f = Frame::new(command)
                .header("id", "s")
                .header("destination", dest)
                .header("receipt", "r");
            h.frame(c, f);
            let got = h.take(c);
            // A SUBSCRIBE may also get what an earlier SEND left in its queue.
            assert!(!got.is_empty(), "{command} {dest:?}: no answer");
            assert!(
                matches!(got[0].command, "RECEIPT" | "ERROR"),
                "{command} {dest:?}: {got:?}"
            );
            if got[0].command == "ERROR" {
                assert!(got[0].get("message").is_some(), "{got:?}");
            }
        }
    }
    // Every SEND that was taken reached the `#` binding, with the key it was sent with.
    for m in h.messages(watcher) {
        assert!(
            m.get("destination")
                .unwrap()
                .starts_with("/exchange/mcollective_broadcast"),
            "{m:?}"
        );
    }
    // The broker still works.
    let c = h.connect_host("/mcollective");
    h.send(c, "/exchange/mcollective_broadcast/ok", "ok", &[]);
    assert_eq!(h.bodies(watcher), ["ok"]);
}

/// The vhost harness's broker with users `server` and `client` and RabbitMQ-style
/// permissions for MCollective in `/mcollective` (as the example configuration's
/// commented entry): servers consume the agent exchanges and answer through the default
/// exchange, clients publish to the exchanges and read their reply queues.
fn permissions_harness(client_write: &str) -> Harness {
    let mut h = vhost_harness();
    h.broker
        .handle_reload_security(h.now_ms, permissions_security(client_write));
    h
}

fn permissions_security(client_write: &str) -> Security {
    let text = format!(
        r#"
[[users]]
name = "server"
password = "s"
[[users]]
name = "client"
password = "c"
[[permissions]]
user = "server"
vhost = "/mcollective"
configure = "^stomp-subscription-"
write = "^(stomp-subscription-.*|amq\\.default)$"
read = "^(stomp-subscription-.*|mcollective_.*)$"
[[permissions]]
user = "client"
vhost = "/mcollective"
configure = "^amq\\.gen-"
write = "{client_write}"
read = "^amq\\.gen-"
"#
    );
    let mut config: crate::security::SecurityConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config.allow_anonymous = true;
    Security::from_config(&config)
}

impl Harness {
    fn login_host(&mut self, user: &str, password: &str, host: &str) -> (ConnId, Rendered) {
        self.connect_with(&[
            ("accept-version", "1.2"),
            ("host", host),
            ("login", user),
            ("passcode", password),
        ])
    }
}

#[test]
fn permissions_govern_rabbitmq_vhosts_from_connect_to_reply() {
    let mut h = permissions_harness("^mcollective_");
    let (node, ok) = h.login_host("server", "s", "/mcollective");
    assert_eq!(ok.command, "CONNECTED", "{ok:?}");
    h.subscribe(node, "rpc", "/exchange/mcollective_broadcast/rpcutil", &[]);
    assert!(h.take(node).is_empty(), "the subscription is allowed");
    let (client, ok) = h.login_host("client", "c", "/mcollective");
    assert_eq!(ok.command, "CONNECTED", "{ok:?}");
    h.send(
        client,
        "/exchange/mcollective_broadcast/rpcutil",
        "request",
        &[("reply-to", "/temp-queue/r")],
    );
    let req = h.messages(node);
    assert_eq!(req.len(), 1);
    let reply_to = req[0].get("reply-to").unwrap().to_owned();
    h.send(node, &reply_to, "reply", &[]);
    assert_eq!(h.bodies(client), ["reply"]);

    // The client may not consume the agents' exchange: declaring its subscription queue
    // is refused first, with RabbitMQ's words, and the connection closes without a
    // receipt.
    h.subscribe(
        client,
        "spy",
        "/exchange/mcollective_broadcast/#",
        &[("receipt", "9")],
    );
    let e = h.take(client);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].command, "ERROR");
    assert_eq!(e[0].get("message"), Some("access_refused"));
    assert_eq!(
        e[0].body_str(),
        "ACCESS_REFUSED - configure access to queue 'stomp-subscription-spy' in vhost \
         '/mcollective' refused for user 'client'"
    );
    assert!(h.is_closed(client));

    // Anonymous sessions have no permissions: they cannot enter a governed vhost.
    let (anon, refused) = h.connect_with(&[("accept-version", "1.2"), ("host", "/mcollective")]);
    assert_eq!(refused.command, "ERROR");
    assert_eq!(refused.get("message"), Some("Bad CONNECT"));
    assert_eq!(
        refused.body_str(),
        "Virtual host '/mcollective' access denied"
    );
    assert!(h.is_closed(anon));
    // ActiveMQ-convention vhosts keep the (here empty, so open) authorization map.
    let (amq, ok) = h.login_host("client", "c", "a");
    assert_eq!(ok.command, "CONNECTED", "{ok:?}");
    h.subscribe(amq, "q", "/queue/jobs", &[]);
    h.send(amq, "/queue/jobs", "job", &[]);
    assert_eq!(h.bodies(amq), ["job"]);

    // A reload that takes the client's write away refuses its next request.
    h.broker
        .handle_reload_security(h.now_ms, permissions_security(""));
    let (client, ok) = h.login_host("client", "c", "/mcollective");
    assert_eq!(ok.command, "CONNECTED", "{ok:?}");
    h.send(client, "/exchange/mcollective_broadcast/rpcutil", "r", &[]);
    let e = h.take(client);
    assert_eq!(e[0].get("message"), Some("access_refused"));
    assert_eq!(
        e[0].body_str(),
        "ACCESS_REFUSED - write access to exchange 'mcollective_broadcast' in vhost \
         '/mcollective' refused for user 'client'"
    );
    assert!(h.is_closed(client));
    assert!(
        h.take(node).is_empty(),
        "the refused request was not delivered"
    );
}
