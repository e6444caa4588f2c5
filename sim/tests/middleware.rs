//! `middleware = "rabbitmq"` and `"redis"`: the same 800-node fleet with MCollective's
//! `rabbitmq` connector (STOMP through exchanges and temp queues) and with its Redis
//! connector (RESP pub/sub, two connections per node), against the simulated
//! stampede-broker, each getting every reply.

use std::path::PathBuf;

use stampede_broker::vhost::{Convention, ExchangeConfig, ExchangeType, VhostConfig};
use stampede_sim::run::{Outcome, run};
use stampede_sim::scenario::Scenario;

fn load(file: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    let mut s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    s.duration_s = 60.0;
    s
}

fn go(s: &Scenario) -> Outcome {
    run(s, s.seed, "test", &mut |_| {}).expect("the simulation ran")
}

fn connections_opened(o: &Outcome) -> u64 {
    o.history
        .broker_stats
        .iter()
        .map(|(_, h)| h.get().connections_opened)
        .sum()
}

fn replies(o: &Outcome) -> (u64, u64) {
    let m = o
        .report
        .mcollective
        .as_ref()
        .expect("an MCollective report");
    (m.replies_received, m.replies_expected)
}

#[test]
fn a_rabbitmq_fleet_gets_every_reply_through_the_declared_exchanges() {
    let s = load("mcollective-1x800-rabbitmq.toml");
    let o = go(&s);
    assert!(o.passed(), "{}", stampede_reports::summary_text(&o.report));
    let (got, expected) = replies(&o);
    assert!(expected >= 4 * 800 && got == expected, "{got}/{expected}");

    // The clients really route through MCollective's exchanges: on a broker whose vhost
    // declares others, nothing reaches the nodes. (Each node's SUBSCRIBE gets an ERROR and
    // the node reconnects at once, as against RabbitMQ: a small fleet keeps that cheap.)
    let mut wrong = s.clone();
    wrong.racks[0].nodes = 20;
    wrong.duration_s = 25.0;
    let exchange = |name: &str, kind| ExchangeConfig {
        name: name.to_owned(),
        kind,
    };
    wrong.brokers[0].core.vhosts = vec![VhostConfig {
        name: "/".to_owned(),
        convention: Convention::RabbitMq,
        exchanges: vec![
            exchange("other_broadcast", ExchangeType::Topic),
            exchange("other_directed", ExchangeType::Direct),
        ],
        queues: Vec::new(),
    }];
    wrong.brokers[0].core.default_vhost = Some("/".to_owned());
    wrong.expectations = Default::default();
    let (got, expected) = replies(&go(&wrong));
    assert!(expected > 0 && got == 0, "{got}/{expected}");
}

#[test]
fn a_redis_fleet_gets_every_reply_over_two_connections_per_node() {
    let o = go(&load("mcollective-1x800-redis.toml"));
    assert!(o.passed(), "{}", stampede_reports::summary_text(&o.report));
    let (got, expected) = replies(&o);
    assert!(expected >= 4 * 800 && got == expected, "{got}/{expected}");
    // A subscriber and a publisher per node and per mco client (STOMP needs one).
    assert_eq!(connections_opened(&o), 2 * 800 + 2);
}

#[test]
fn redis_refuses_queues_naming_the_key() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/mcollective-1x800-redis.toml"),
    )
    .unwrap();
    let with_queue = format!(
        "{text}\n[[workload.queues]]\nname = \"q\"\ndestination = \"/queue/work\"\n\
         producers = 1\nconsumers = 1\nrate_per_s = 1\nproducer_servers = [\"broker-1\"]\n\
         consumer_servers = [\"broker-1\"]\n"
    );
    let e = Scenario::parse(&with_queue, "redis.toml").unwrap_err();
    assert!(
        e.to_string().contains("workload.queues[0].destination") && e.message.contains("Redis"),
        "{e}"
    );
}
