//! Checker unit tests on hand-made histories: every count and every loss cause.

use stampede_broker::client::{ClientEvent, DisconnectReason};

use super::*;
use crate::history::{ClientInfo, Incarnation, RequestKind, Role};

/// A scenario with two brokers and one queue workload (`/queue/q` or `/topic/t`).
fn scenario(topic: bool, receipts: bool, expectations: &str) -> Scenario {
    let dest = if topic { "/topic/t" } else { "/queue/q" };
    let text = format!(
        r#"
name = "t"
duration_s = 100
[[brokers]]
name = "b1"
[[brokers]]
name = "b2"
[[workload.queues]]
name = "w"
destination = "{dest}"
producers = 1
consumers = 2
rate_per_s = 1
receipts = {receipts}
producer_servers = ["b1"]
consumer_servers = ["b1"]
[expectations]
{expectations}
"#
    );
    Scenario::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

const S: u64 = 1_000_000;

/// A history builder: clients, connections, sends and deliveries at whole seconds.
struct H(History);

impl H {
    /// Producer 0 and consumers 1 and 2, all connected to `b1` from 0 s; node 3 and 4 and
    /// an `mco` client 5 connected from 0 s too (3 and 5 on `b1`, 4 on `b2`).
    fn new() -> H {
        let mut h = History::default();
        let mut add = |name: &str, role, pool: &[&str]| {
            h.clients.push(ClientInfo {
                name: name.into(),
                role,
                pool: pool.iter().map(|s| s.to_string()).collect(),
            });
        };
        add("producer", Role::Producer, &["b1"]);
        add("consumer-a", Role::Consumer, &["b1"]);
        add("consumer-b", Role::Consumer, &["b1"]);
        add("node-1", Role::Node, &["b1", "b2"]);
        add("node-2", Role::Node, &["b2", "b1"]);
        add("mco", Role::McoClient, &["b1"]);
        h.consumers_by_workload
            .insert(0, vec![ClientId(1), ClientId(2)]);
        let mut h = H(h);
        for c in 0..6 {
            h.event(0, c, ClientEvent::Connected { server: 0 });
        }
        h
    }

    fn event(&mut self, at_s: u64, c: u32, e: ClientEvent) -> &mut H {
        self.0.events.push((at_s * S, ClientId(c), e));
        self
    }

    fn cut(&mut self, at_s: u64, c: u32) -> &mut H {
        self.event(
            at_s,
            c,
            ClientEvent::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout,
            },
        )
    }

    fn send(&mut self, id: u64, at_s: u64, outcome: SendOutcome, topic: bool) -> &mut H {
        self.0.sends.push(SendRecord {
            id,
            producer: ClientId(0),
            seq: id,
            intended_us: at_s * S,
            sent_us: Some(at_s * S),
            settled_us: None,
            outcome,
            topic,
            workload: 0,
        });
        self
    }

    fn deliver(&mut self, id: u64, consumer: u32, at_us: u64) -> &mut H {
        self.0.deliveries.push(DeliveryRecord {
            id,
            consumer: ClientId(consumer),
            at_us,
            redelivered: false,
        });
        self
    }

    fn incarnation(&mut self, crashed_s: Option<u64>, held: Vec<HeldRef>) -> &mut H {
        self.0.incarnations.push(Incarnation {
            broker: "b1".into(),
            started_us: 0,
            crashed_us: crashed_s.map(|s| s * S),
            power_loss: false,
            held,
            dropped: Vec::new(),
        });
        self
    }

    fn dropped(&mut self, m: HeldRef, why: DropReason) -> &mut H {
        self.0.incarnations.push(Incarnation {
            broker: "b1".into(),
            started_us: 0,
            crashed_us: None,
            power_loss: false,
            held: Vec::new(),
            dropped: vec![(m, why)],
        });
        self
    }

    fn request(&mut self, id: u64, kind: RequestKind, expected: &[u32], unwritten: &[u32]) {
        self.0.requests.push(McoRequest {
            id,
            client: ClientId(5),
            round: id,
            kind,
            intended_us: 10 * S,
            sent_us: Some(10 * S),
            expected: expected.iter().map(|c| ClientId(*c)).collect(),
            unwritten: unwritten.iter().map(|c| ClientId(*c)).collect(),
            window_end_us: 20 * S,
        });
    }

    fn got_request(&mut self, id: u64, node: u32, at_us: u64) {
        self.0.request_deliveries.push(McoObservation {
            request: id,
            node: ClientId(node),
            at_us,
        });
    }
}

fn check(s: &Scenario, h: &History) -> Analysis {
    analyse(s, &Timeline::default(), h)
}

fn causes(a: &Analysis) -> Vec<Option<&'static str>> {
    a.losses
        .iter()
        .map(|l| l.cause.as_ref().map(Cause::label))
        .collect()
}

fn verdict<'a>(a: &'a Analysis, name: &str) -> &'a Verdict {
    a.verdicts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no verdict {name}: {:?}", a.verdicts))
}

#[test]
fn queue_counts_attempted_acknowledged_delivered_duplicated_recovered_unexpected() {
    let s = scenario(false, true, "");
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Confirmed, false)
        .deliver(1, 1, 2 * S)
        .deliver(1, 2, 3 * S); // a duplicate at another consumer
    h.send(2, 1, SendOutcome::Indeterminate, false)
        .deliver(2, 1, 2 * S); // recovered: unconfirmed but delivered
    h.send(3, 1, SendOutcome::Failed, false); // refused: neither acknowledged nor lost
    h.send(4, 1, SendOutcome::Written, false); // receipts asked: written is not enough
    h.deliver(99, 1, 5 * S); // never sent
    let a = check(&s, &h.0);
    let c = a.counts;
    assert_eq!(c.attempted, 4);
    assert_eq!(c.acknowledged, 1);
    assert_eq!(c.delivered, 2);
    assert_eq!(c.duplicated, 1);
    assert_eq!(c.recovered, 1);
    assert_eq!(c.unexpected, 1);
    assert_eq!(c.lost, 0);
    // Latency from the intended send time: 1 s for both first deliveries.
    assert_eq!(a.latency_us.len(), 2);
    assert!((999_000..=1_001_000).contains(&a.latency_us.value_at_quantile(1.0)));
}

#[test]
fn topic_units_are_per_consumer_and_fire_and_forget_counts_as_acknowledged() {
    let s = scenario(true, false, "");
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Written, true)
        .deliver(1, 1, 2 * S);
    let a = check(&s, &h.0);
    assert_eq!(a.counts.attempted, 2);
    assert_eq!(a.counts.acknowledged, 2);
    assert_eq!(a.counts.delivered, 1);
    assert_eq!(a.counts.lost, 1);
    assert_eq!(
        a.losses[0].unit,
        Unit::Message {
            id: 1,
            consumer: Some(ClientId(2))
        }
    );
    // Nothing explains it: both connections stayed up and carried nothing later.
    assert_eq!(causes(&a), [None]);
    assert!(!verdict(&a, "unexplained_lost_max").ok);
}

#[test]
fn reorders_count_first_deliveries_below_a_sequence_already_seen() {
    let s = scenario(false, true, "reorders_max = 0");
    let mut h = H::new();
    for id in 1..=3 {
        h.send(id, id, SendOutcome::Confirmed, false);
    }
    h.deliver(2, 1, 10 * S)
        .deliver(1, 1, 11 * S) // overtaken by 2
        .deliver(3, 1, 12 * S)
        .deliver(1, 1, 13 * S); // a repeat is not a reorder
    let a = check(&s, &h.0);
    assert_eq!(a.reorders, 1);
    assert_eq!(a.counts.duplicated, 1);
    assert!(!verdict(&a, "reorders_max").ok);
}

#[test]
fn a_loss_held_by_a_crashed_broker_is_charged_to_the_crash() {
    let s = scenario(false, true, "");
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Confirmed, false);
    h.incarnation(Some(5), vec![HeldRef::Message(1)]);
    let a = check(&s, &h.0);
    assert_eq!(
        a.losses[0].cause,
        Some(Cause::Crashed {
            broker: "b1".into(),
            at_us: 5 * S
        })
    );
    assert!(verdict(&a, "unexplained_lost_max").ok);
}

#[test]
fn a_store_broker_crash_explains_no_receipted_persistent_loss_and_recovery_moves_the_evidence() {
    for (sync, power_loss, expected) in [
        (SyncPolicy::Always, false, None),
        (SyncPolicy::Always, true, None),
        (SyncPolicy::IntervalMs, false, None),
        (
            SyncPolicy::IntervalMs,
            true,
            Some(Cause::PowerLoss {
                broker: "b1".into(),
                at_us: 5 * S,
            }),
        ),
    ] {
        let mut s = scenario(false, true, "");
        s.workload.queues[0].persistent = true;
        s.brokers[0].store = Some(stampede_broker::store::StoreConfig {
            sync,
            ..Default::default()
        });
        let mut h = H::new();
        h.send(1, 1, SendOutcome::Confirmed, false);
        h.send(2, 1, SendOutcome::Confirmed, false);
        // Both held at the crash; message 2 recovered by the restart and still held at
        // the end.
        h.incarnation(Some(5), vec![HeldRef::Message(1), HeldRef::Message(2)]);
        h.0.incarnations[0].power_loss = power_loss;
        h.incarnation(None, vec![HeldRef::Message(2)]);
        let a = check(&s, &h.0);
        let what = format!("{sync:?}, power loss {power_loss}");
        assert_eq!(a.losses.len(), 2, "{what}");
        // The store promised to keep message 1: a crash does not explain its loss.
        assert_eq!(a.losses[0].cause, expected, "{what}");
        assert_eq!(
            a.losses[1].cause,
            Some(Cause::HeldAtEnd {
                broker: "b1".into()
            }),
            "{what}"
        );
        let power_row = a.losses_by_cause().iter().any(|(l, _)| *l == "power-loss");
        assert_eq!(power_row, expected.is_some(), "{what}");
    }
}

#[test]
fn broker_drops_explain_losses_by_their_reason() {
    let s = scenario(false, true, "");
    let mut h = H::new();
    let reasons = [
        DropReason::Expired,
        DropReason::SlowConsumer,
        DropReason::Refused,
        DropReason::DeadLettered,
    ];
    for (i, why) in reasons.iter().enumerate() {
        let id = i as u64 + 1;
        h.send(id, 1, SendOutcome::Confirmed, false);
        h.dropped(HeldRef::Message(id), *why);
    }
    h.send(9, 1, SendOutcome::Confirmed, false);
    h.incarnation(None, vec![HeldRef::Message(9)]);
    let a = check(&s, &h.0);
    assert_eq!(
        causes(&a),
        [
            Some("expired"),
            Some("slow-consumer"),
            Some("refused"),
            Some("dead-lettered"),
            Some("held-at-end")
        ]
    );
    let by_cause = a.losses_by_cause();
    assert!(by_cause.contains(&("expired", 1)));
    assert!(by_cause.contains(&("unexplained", 0)));
}

#[test]
fn a_send_stranded_on_a_cut_connection_is_explained_unless_a_later_one_arrived() {
    let s = scenario(false, false, "");
    // Message 1 written at 1 s on a connection cut at 5 s; nothing later arrived: stranded.
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Written, false).cut(5, 0);
    let a = check(&s, &h.0);
    assert_eq!(
        a.losses[0].cause,
        Some(Cause::StrandedSend {
            client: ClientId(0),
            cut_us: 5 * S
        })
    );
    // Message 2, written later on the same connection, arrived: TCP keeps order, so
    // message 1 reached the broker and its loss is not the connection's doing.
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Written, false)
        .send(2, 2, SendOutcome::Written, false)
        .deliver(2, 1, 3 * S)
        .cut(5, 0);
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [None]);
    // A receipt proves the broker had it: no stranding on the sender's side.
    let s = scenario(false, true, "");
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Confirmed, false).cut(5, 0);
    assert_eq!(causes(&check(&s, &h.0)), [None]);
}

#[test]
fn a_delivery_stranded_on_the_consumers_cut_connection_is_explained() {
    let s = scenario(true, false, "");
    let mut h = H::new();
    // Consumer b's connection stalls (cut at 5 s) and gets nothing written after 1 s.
    h.send(1, 1, SendOutcome::Written, true)
        .deliver(1, 1, 2 * S)
        .cut(5, 2);
    let a = check(&s, &h.0);
    assert_eq!(
        a.losses[0].cause,
        Some(Cause::StrandedDelivery {
            client: ClientId(2),
            cut_us: 5 * S
        })
    );
    // The same, but a message written later arrived on that connection: unexplained.
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Written, true)
        .send(2, 2, SendOutcome::Written, true)
        .deliver(1, 1, 2 * S)
        .deliver(2, 1, 3 * S)
        .deliver(2, 2, 3 * S)
        .cut(5, 2);
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [None]);
}

#[test]
fn a_topic_message_for_a_disconnected_consumer_is_explained() {
    let s = scenario(true, false, "");
    let mut h = H::new();
    h.cut(0, 2); // consumer b down from the start, never back
    h.send(1, 1, SendOutcome::Written, true)
        .deliver(1, 1, 2 * S);
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [Some("target-disconnected")]);
}

#[test]
fn a_topic_message_for_a_consumer_not_yet_subscribed_again_is_explained() {
    let s = scenario(true, false, "");
    // Consumer b loses its connection at 2 s, connects again at 3 s, and its replayed
    // SUBSCRIBE leaves at 5 s; the message written at 4 s found it connected, not
    // subscribed.
    let reconnect = |h: &mut H, resubscribed_s: u64| {
        h.cut(2, 2)
            .event(3, 2, ClientEvent::Connected { server: 0 })
            .event(resubscribed_s, 2, ClientEvent::Resubscribed { count: 1 });
    };
    let mut h = H::new();
    reconnect(&mut h, 5);
    h.send(1, 4, SendOutcome::Written, true)
        .deliver(1, 1, 4 * S);
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [Some("target-disconnected")]);
    // Its SUBSCRIBE had left at 3 s: the same loss has no cause.
    let mut h = H::new();
    reconnect(&mut h, 3);
    h.send(1, 4, SendOutcome::Written, true)
        .deliver(1, 1, 4 * S);
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [None]);
}

#[test]
fn a_delivery_due_at_a_crashed_target_is_blamed_on_the_crash() {
    let s = scenario(true, false, "");
    let mut h = H::new();
    // Consumer b's process is killed at 5 s and nothing written after 1 s reached it.
    h.send(1, 1, SendOutcome::Written, true)
        .deliver(1, 1, 2 * S);
    h.0.crashes.push((5 * S, ClientId(2)));
    let a = check(&s, &h.0);
    assert_eq!(
        a.losses[0].cause,
        Some(Cause::TargetCrashed {
            client: ClientId(2),
            at_us: 5 * S
        })
    );
    // A crash is not a failover, and a client dead at the end is not unfinished.
    assert!(a.failovers_unfinished.is_empty());
    assert_eq!(a.failover_ms.len(), 0);
    // Written while it was dead (before its restart at 20 s): the crash again.
    let mut h = H::new();
    h.send(1, 8, SendOutcome::Written, true)
        .deliver(1, 1, 9 * S)
        .event(20, 2, ClientEvent::Connected { server: 0 });
    h.0.crashes.push((5 * S, ClientId(2)));
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [Some("target-crashed")]);
    assert_eq!(
        a.losses_by_cause()
            .iter()
            .find(|(l, _)| *l == "target-crashed")
            .map(|(_, n)| *n),
        Some(1)
    );
    // A message written later arrived before the crash: this one was not stranded by it.
    let mut h = H::new();
    h.send(1, 1, SendOutcome::Written, true)
        .send(2, 2, SendOutcome::Written, true)
        .deliver(1, 1, 2 * S)
        .deliver(2, 1, 3 * S)
        .deliver(2, 2, 3 * S);
    h.0.crashes.push((5 * S, ClientId(2)));
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [None]);
    // Without crashes the label is not reported at all.
    let a = check(&s, &H::new().0);
    assert!(
        a.losses_by_cause()
            .iter()
            .all(|(l, _)| *l != "target-crashed")
    );
}

#[test]
fn directed_requests_count_per_target_whatever_happened_to_the_other_sends() {
    let s = scenario(false, false, "");
    let mut h = H::new();
    // Node 1's SEND was written and never arrived; node 2's could not be written.
    h.request(7, RequestKind::Directed, &[3, 4], &[4]);
    let a = check(&s, &h.0);
    assert_eq!(a.counts.attempted, 2);
    assert_eq!(a.counts.acknowledged, 1);
    assert_eq!(a.counts.lost, 1);
    assert_eq!(
        a.losses[0].unit,
        Unit::Request {
            id: 7,
            node: ClientId(3)
        }
    );
    assert_eq!(causes(&a), [None]);
    // Node 2 got it anyway (a retry): recovered, not lost.
    h.got_request(7, 4, 11 * S);
    let a = check(&s, &h.0);
    assert_eq!((a.counts.delivered, a.counts.recovered), (1, 1));
}

#[test]
fn a_broadcast_that_reached_no_node_on_another_broker_had_no_route() {
    let s = scenario(false, false, "");
    let mut h = H::new();
    h.request(8, RequestKind::Discovery, &[3, 4], &[]);
    h.got_request(8, 3, 11 * S);
    h.got_request(8, 3, 12 * S);
    let a = check(&s, &h.0);
    assert_eq!(a.counts.duplicated, 1);
    assert_eq!(
        a.losses[0].cause,
        Some(Cause::NoRoute {
            from: "b1".into(),
            to: "b2".into(),
            at_us: 10 * S
        })
    );
}

#[test]
fn unfinished_failovers_are_listed_and_fail_by_default() {
    let s = scenario(false, false, "");
    let mut h = H::new();
    h.cut(10, 1)
        .event(11, 1, ClientEvent::Connected { server: 0 })
        .event(11, 1, ClientEvent::Resubscribed { count: 1 })
        .cut(20, 2)
        // Shutting down at the end is not a failover.
        .event(
            99,
            0,
            ClientEvent::Disconnected {
                reason: DisconnectReason::Shutdown,
            },
        );
    let a = check(&s, &h.0);
    assert_eq!(a.failover_ms.len(), 1);
    assert_eq!(
        a.failovers_unfinished,
        [Unfinished {
            client: ClientId(2),
            since_us: 20 * S
        }]
    );
    assert!(!verdict(&a, "failovers_unfinished_max").ok);
    let s = scenario(false, false, "failovers_unfinished_max = 1");
    assert!(verdict(&check(&s, &h.0), "failovers_unfinished_max").ok);
}

#[test]
fn a_failover_counts_its_attempts_back_off_and_first_failure() {
    let s = scenario(false, false, "");
    let mut h = H::new();
    let attempt = |server, number, delay_ms| ClientEvent::Attempt {
        server,
        number,
        delay: std::time::Duration::from_millis(delay_ms),
    };
    let refused = || ClientEvent::Disconnected {
        reason: DisconnectReason::ConnectFailed("refused".into()),
    };
    // node-1 loses b1 at 10 s: refused by b1 and by b2, then connected to b2 at 12 s.
    h.event(
        10,
        3,
        ClientEvent::Disconnected {
            reason: DisconnectReason::Eof,
        },
    )
    .event(10, 3, attempt(0, 1, 0))
    .event(10, 3, refused())
    .event(10, 3, attempt(1, 2, 10))
    .event(
        10,
        3,
        ClientEvent::Disconnected {
            reason: DisconnectReason::ConnectTimeout,
        },
    )
    .event(11, 3, attempt(1, 3, 20))
    .event(12, 3, ClientEvent::Connected { server: 1 })
    .event(13, 3, ClientEvent::Resubscribed { count: 2 })
    // node-2 loses b2 at 20 s and is still trying at the end.
    .event(
        20,
        4,
        ClientEvent::Disconnected {
            reason: DisconnectReason::Eof,
        },
    )
    .event(20, 4, attempt(1, 1, 0))
    .event(20, 4, refused());
    let a = check(&s, &h.0);
    assert_eq!(
        a.failovers,
        [
            FailoverTrace {
                client: ClientId(3),
                from: Some("b1".into()),
                to: Some("b2".into()),
                down_us: 10 * S,
                connected_us: Some(12 * S),
                up_us: Some(13 * S),
                attempts: 3,
                failed: 2,
                waited_us: 30_000,
                first_failure: Some("connect failed: refused".into()),
            },
            FailoverTrace {
                client: ClientId(4),
                from: Some("b2".into()),
                down_us: 20 * S,
                attempts: 1,
                failed: 1,
                first_failure: Some("connect failed: refused".into()),
                ..FailoverTrace::default()
            },
        ]
    );
    assert_eq!(a.failover_ms.len(), 1);
}

#[test]
fn a_ratio_without_data_fails_unless_allowed() {
    let s = scenario(false, false, "mco_fault_reply_ratio_min = 0.5");
    let a = check(&s, &H::new().0);
    let v = verdict(&a, "mco_fault_reply_ratio_min");
    assert!(!v.ok);
    assert!(v.detail.starts_with("no data"), "{}", v.detail);
    let s = scenario(
        false,
        false,
        "mco_fault_reply_ratio_min = 0.5\nallow_no_data = true",
    );
    assert!(verdict(&check(&s, &H::new().0), "mco_fault_reply_ratio_min").ok);
}

#[test]
fn the_deprecated_unattributed_key_sets_the_unexplained_limit() {
    let s = scenario(false, false, "unattributed_lost_max = 3");
    assert_eq!(s.expectations.unexplained_lost_max, Some(3));
}

#[test]
fn a_broadcast_loss_needs_a_cause_for_every_request_that_could_have_reached_the_node() {
    let s = scenario(false, false, "");
    let mut h = H::new();
    // A second `mco` client, on b2 where node 2 is.
    h.0.clients.push(ClientInfo {
        name: "mco-2".into(),
        role: Role::McoClient,
        pool: vec!["b2".into()],
    });
    h.event(0, 6, ClientEvent::Connected { server: 0 });
    h.request(8, RequestKind::Discovery, &[3, 4], &[]);
    h.request(9, RequestKind::Discovery, &[3, 4], &[]);
    h.0.requests[1].client = ClientId(6);
    h.0.requests[1].round = 8;
    h.got_request(8, 3, 11 * S);
    // mco's request had no route to b2, but mco-2's, on b2 itself, has no excuse.
    let a = check(&s, &h.0);
    assert_eq!(a.counts.attempted, 2);
    assert_eq!(causes(&a), [None]);
    // Once node 2's connection is cut under it, both failures are explained.
    h.cut(15, 4);
    let a = check(&s, &h.0);
    assert_eq!(causes(&a), [Some("stranded-delivery")]);
}
