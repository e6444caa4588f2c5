//! Reconnect policies driven through scripted broker outages, end to end from a URI or
//! an MCollective config to the sequence of attempts.

use std::collections::BTreeMap;
use std::time::Duration;

use stampede_broker::client::{
    ClientEvent, McoClientConfig, PolicyKind, ReconnectConfig, Reconnector, ServerAddr, ServerList,
    parse_uri,
};

/// When each broker is up: half-open `[from, to)` intervals in seconds.
struct Timeline(Vec<Vec<(f64, f64)>>);

impl Timeline {
    fn up(&self, server: usize, t: Duration) -> bool {
        let t = t.as_secs_f64();
        self.0[server].iter().any(|&(from, to)| from <= t && t < to)
    }
}

/// Runs one client from t = 0 until it connects or `horizon` passes. Connecting takes no
/// time. Returns the events and the connection time, if any.
fn run_until_connected(
    r: &mut Reconnector,
    timeline: &Timeline,
    horizon: Duration,
) -> (Vec<(Duration, ClientEvent)>, Option<Duration>) {
    let mut events = Vec::new();
    let mut t = Duration::ZERO;
    let mut attempt = r.first_attempt();
    loop {
        t += attempt.delay;
        if t > horizon {
            return (events, None);
        }
        events.push((t, ClientEvent::from(attempt)));
        if timeline.up(attempt.server, t) {
            let server = r.connected();
            events.push((t, ClientEvent::Connected { server }));
            return (events, Some(t));
        }
        attempt = match r.attempt_failed() {
            Ok(a) => a,
            Err(_) => return (events, None),
        };
    }
}

fn two_brokers() -> ServerList {
    ServerList::new(vec![
        ServerAddr::new("b1", 61613),
        ServerAddr::new("b2", 61613),
    ])
    .unwrap()
}

/// protocols.md §3.2: "with a 2-host pool at the 30 s cap each host is probed only every
/// 60 s; a broker that is up for < 60 s can be missed entirely (observed: broker up 45 s,
/// never contacted)". ActiveMQ tries every broker each pass and so cannot miss it.
#[test]
fn a_45s_window_is_missed_by_the_gem_but_not_by_activemq() {
    let mut gem = Reconnector::new(
        PolicyKind::StompGem,
        ReconnectConfig::stomp_gem(),
        two_brokers(),
        1,
    );
    // Find when the gem probes b1 once it is at the cap, with everything down.
    let (events, connected) = run_until_connected(
        &mut gem,
        &Timeline(vec![vec![], vec![]]),
        Duration::from_secs(400),
    );
    assert_eq!(connected, None);
    let b1_probes: Vec<f64> = events
        .iter()
        .filter(|(_, e)| matches!(e, ClientEvent::Attempt { server: 0, .. }))
        .map(|(t, _)| t.as_secs_f64())
        .collect();
    let late: Vec<f64> = b1_probes.into_iter().filter(|&t| t > 100.0).collect();
    assert!(
        late.windows(2).all(|w| (w[1] - w[0] - 60.0).abs() < 1e-6),
        "{late:?}"
    );
    // b1 comes up 5 s after one probe and goes down 45 s later, before the next.
    let from = late[0] + 5.0;
    let timeline = Timeline(vec![vec![(from, from + 45.0)], vec![]]);

    let (_, connected) = run_until_connected(&mut gem, &timeline, Duration::from_secs(400));
    assert_eq!(connected, None, "the gem never contacts b1 while it is up");

    let cfg = ReconnectConfig {
        randomize: false,
        ..ReconnectConfig::activemq()
    };
    let mut amq = Reconnector::new(PolicyKind::ActiveMq, cfg, two_brokers(), 1);
    let (_, connected) = run_until_connected(&mut amq, &timeline, Duration::from_secs(400));
    let at = connected
        .expect("ActiveMQ reaches b1 within the window")
        .as_secs_f64();
    assert!(at >= from && at < from + 45.0);
}

#[test]
fn failover_uri_drives_an_activemq_reconnector() {
    let uri = "failover:(tcp://b1:61613,tcp://b2:61613)?randomize=false&maxReconnectAttempts=3";
    let cfg = parse_uri(uri).unwrap();
    let mut r = Reconnector::new(PolicyKind::ActiveMq, cfg.reconnect, cfg.servers, 7);
    let (events, connected) = run_until_connected(
        &mut r,
        &Timeline(vec![vec![], vec![]]),
        Duration::from_secs(60),
    );
    assert_eq!(connected, None);
    let attempts: Vec<(u128, usize)> = events
        .iter()
        .filter_map(|(t, e)| match e {
            ClientEvent::Attempt { server, .. } => Some((t.as_millis(), *server)),
            _ => None,
        })
        .collect();
    // Three passes of two brokers, 10 ms and then 20 ms apart, then give up.
    assert_eq!(
        attempts,
        [(0, 0), (0, 1), (10, 0), (10, 1), (30, 0), (30, 1)]
    );
    let gave_up = r.attempt_failed().unwrap_err();
    assert_eq!(
        gave_up.to_string(),
        "gave up after 6 failed attempts (b1:61613 ×3, b2:61613 ×3)"
    );
}

#[test]
fn mcollective_config_drives_a_stomp_gem_reconnector() {
    let text = "\
connector = activemq
plugin.activemq.pool.size = 2
plugin.activemq.pool.1.host = b1
plugin.activemq.pool.2.host = b2
plugin.activemq.max_reconnect_attempts = 2
";
    let cfg = McoClientConfig::from_text(text, &BTreeMap::new()).unwrap();
    let mut r = Reconnector::new(cfg.policy, cfg.reconnect, cfg.servers, 1);
    // b2 comes up at 25 ms: attempts at 0 (b1), 10 ms (b2, down), 30 ms (b1, down) → give up
    // after 2 re-attempts.
    let timeline = Timeline(vec![vec![], vec![(0.025, 1000.0)]]);
    let (events, connected) = run_until_connected(&mut r, &timeline, Duration::from_secs(10));
    assert_eq!(connected, None);
    let times: Vec<u128> = events.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(times, [0, 10, 30]);
    let gave_up = r.attempt_failed().unwrap_err();
    assert_eq!(gave_up.total_attempts(), 3);

    // Up from the start: connected on the first attempt, then the broker drops and the gem
    // fails over to b2 at once.
    let mut r = Reconnector::new(
        PolicyKind::StompGem,
        ReconnectConfig::stomp_gem(),
        two_brokers(),
        1,
    );
    let timeline = Timeline(vec![vec![(0.0, 1000.0)], vec![(0.0, 1000.0)]]);
    let (_, connected) = run_until_connected(&mut r, &timeline, Duration::from_secs(1));
    assert_eq!(connected, Some(Duration::ZERO));
    let next = r.connection_lost(Duration::from_secs(100)).unwrap();
    assert_eq!(
        ClientEvent::from(next),
        ClientEvent::Attempt {
            server: 1,
            number: 1,
            delay: Duration::ZERO
        }
    );
}

/// 800 clients on b1 when it dies; b2 and b3 survive. How many CONNECTs hit one broker
/// within the same 10 ms?
#[test]
fn reconnect_storm_is_spread_only_by_the_jittered_policy() {
    let servers = ServerList::new(vec![
        ServerAddr::new("b1", 61613),
        ServerAddr::new("b2", 61613),
        ServerAddr::new("b3", 61613),
    ])
    .unwrap();
    let peak = |kind: PolicyKind| {
        let mut per_bucket: BTreeMap<(usize, u128), usize> = BTreeMap::new();
        for seed in 0..800 {
            let cfg = ReconnectConfig::defaults_for(kind);
            let mut r = Reconnector::new(kind, cfg, servers.clone(), seed);
            // Everyone starts on b1 (index 0): retry until b1 is the current server.
            let mut a = r.first_attempt();
            while a.server != 0 {
                a = r.attempt_failed().unwrap();
            }
            r.connected();
            let a = r.connection_lost(Duration::from_secs(3600)).unwrap();
            *per_bucket
                .entry((a.server, a.delay.as_millis() / 10))
                .or_default() += 1;
        }
        per_bucket.values().copied().max().unwrap_or(0)
    };
    assert_eq!(
        peak(PolicyKind::StompGem),
        800,
        "the gem sends all 800 to b2 at once"
    );
    let jittered = peak(PolicyKind::Jittered);
    assert!(
        jittered <= 20,
        "jittered peak {jittered} CONNECTs per broker per 10 ms"
    );
}
