//! The cost model in the simulator: a broker with a cost profile spends simulated CPU on
//! the work its core does, so it saturates at the load its profile predicts, and latency
//! grows past that knee; a broker without one is as fast as ever.

use stampede_reports::RunReport;
use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;

/// One producer and one consumer on a queue at `rate` messages per second for 20 s
/// (sending from 2 s to 12 s), and the broker's cost section (TOML lines, may be empty).
fn queue_scenario(rate: u32, cost: &str) -> Scenario {
    let text = format!(
        r#"
name = "cost-model"
seed = 7
duration_s = 20

[network]
latency_ms = 1
jitter_ms = 0

[[brokers]]
name = "broker-1"
{cost}

[[workload.queues]]
name = "q"
destination = "/queue/cost"
producers = 1
consumers = 1
rate_per_s = {rate}
message_bytes = 100
ack = "auto"
producer_servers = ["broker-1"]
consumer_servers = ["broker-1"]
start_s = 2
stop_s = 12
"#
    );
    Scenario::parse(&text, "cost-model.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// 1 ms of CPU per delivery: this broker's core can deliver 1,000 messages a second.
const ONE_MS_PER_DELIVERY: &str = "[brokers.cost]\ndeliveries_ns = 1000000.0\n";

fn simulate(scenario: &Scenario) -> RunReport {
    run(scenario, scenario.seed, "test", &mut |_| {})
        .expect("the simulation ran")
        .report
}

fn p99_ms(r: &RunReport) -> f64 {
    r.latency_us.value_at_quantile(0.99) as f64 / 1000.0
}

/// Delivered messages per second over the seconds in which the producer sent.
fn delivered_while_sending(r: &RunReport) -> f64 {
    let delivered: u64 = r
        .seconds
        .iter()
        .filter(|s| (3..12).contains(&s.t_s))
        .map(|s| s.delivered)
        .sum();
    delivered as f64 / 9.0
}

#[test]
fn below_the_knee_the_cpu_follows_the_load_and_latency_stays_low() {
    let r = simulate(&queue_scenario(500, ONE_MS_PER_DELIVERY));
    assert_eq!(r.messages.lost, 0, "{}", stampede_reports::summary_text(&r));
    let cpu = &r.broker_cpu[0];
    // 5,000 deliveries at 1 ms each over 20 s, plus nothing else priced.
    assert_eq!(cpu.busy_us, 5_000_000, "{cpu:?}");
    let busiest = cpu.peak_second();
    assert!(
        (0.45..=0.55).contains(&busiest),
        "half the capacity offered, busiest second {busiest}"
    );
    assert!(p99_ms(&r) < 20.0, "p99 {} ms below the knee", p99_ms(&r));
}

#[test]
fn past_the_knee_the_broker_saturates_and_latency_grows() {
    let r = simulate(&queue_scenario(1500, ONE_MS_PER_DELIVERY));
    let cpu = &r.broker_cpu[0];
    assert!(
        cpu.peak_second() > 0.95,
        "1.5x the capacity offered, busiest second {}",
        cpu.peak_second()
    );
    // Throughput is capped at the profile's 1,000 deliveries a second ...
    let rate = delivered_while_sending(&r);
    assert!(
        (900.0..=1050.0).contains(&rate),
        "delivered {rate}/s, the profile allows 1,000/s"
    );
    // ... and the backlog grows by 500 messages a second for 10 s: the last messages
    // wait about 5 s.
    assert!(p99_ms(&r) > 3000.0, "p99 {} ms past the knee", p99_ms(&r));
    assert_eq!(r.messages.lost, 0, "saturation delays, it does not lose");
}

#[test]
fn without_a_profile_the_broker_is_infinitely_fast() {
    let r = simulate(&queue_scenario(1500, ""));
    assert!(r.broker_cpu.is_empty());
    assert_eq!(r.clients_cpu, None);
    assert!(
        p99_ms(&r) < 20.0,
        "p99 {} ms without a cost model",
        p99_ms(&r)
    );
    assert!(delivered_while_sending(&r) > 1400.0);
}

#[test]
fn profile_files_are_read_relative_to_the_scenario_and_errors_are_located() {
    let dir = std::env::temp_dir().join(format!("stampede-cost-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("profiles")).unwrap();
    std::fs::write(
        dir.join("profiles/p.toml"),
        "description = \"test\"\ndeliveries_ns = 2000.0\n",
    )
    .unwrap();
    let body = |extra: &str| {
        format!("name = \"x\"\nduration_s = 5\n\n[[brokers]]\nname = \"broker-1\"\n{extra}")
    };
    let file = dir.join("s.toml");
    std::fs::write(&file, body("profile = \"profiles/p.toml\"\n")).unwrap();
    let s = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.brokers[0].cost_profile.as_ref().unwrap().deliveries_ns,
        2000.0
    );

    // A missing file: the scenario's file, line and key.
    std::fs::write(&file, body("profile = \"profiles/none.toml\"\n")).unwrap();
    let e = Scenario::load(&file).unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (6, "brokers[0].profile"), "{e}");
    assert!(e.to_string().contains("no profile file"), "{e}");

    // A bad profile: its own file, line and key appear in the message.
    std::fs::write(dir.join("profiles/p.toml"), "deliveries_ns = -1.0\n").unwrap();
    std::fs::write(&file, body("profile = \"profiles/p.toml\"\n")).unwrap();
    let e = Scenario::load(&file).unwrap_err().to_string();
    assert!(e.contains("p.toml:1: deliveries_ns"), "{e}");

    // Both a file and an inline profile, and a bad inline cost.
    let e = Scenario::parse(
        &body("profile = \"p.toml\"\n[brokers.cost]\nacks_ns = 1.0\n"),
        "t.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    let e = Scenario::parse(&body("[brokers.cost]\nacks_ns = -5.0\n"), "t.toml").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_str()),
        (7, "brokers[0].cost.acks_ns"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_with_a_cost_model_is_deterministic() {
    let s = queue_scenario(1500, ONE_MS_PER_DELIVERY);
    let a = simulate(&s);
    let b = simulate(&s);
    assert_eq!(a.broker_cpu, b.broker_cpu);
    assert_eq!(a.latency_us, b.latency_us);
    assert_eq!(a.seconds, b.seconds);
}

/// The clients' CPU (`[clients]`): 1 ms per MESSAGE a client reads, on `cores` cores.
fn clients_at_one_ms_per_message(cores: u32) -> String {
    format!("[clients]\ncores = {cores}\n[clients.cost]\ndeliveries_ns = 1000000.0\n")
}

#[test]
fn clients_that_cost_saturate_their_cores_and_more_cores_carry_more() {
    // One core of clients reads 1,000 messages a second at most: 1,500 offered back up.
    let one = simulate(&queue_scenario(1500, &clients_at_one_ms_per_message(1)));
    let rate = delivered_while_sending(&one);
    assert!(
        (900.0..=1050.0).contains(&rate),
        "delivered {rate}/s, one client core reads 1,000/s"
    );
    assert!(
        p99_ms(&one) > 3000.0,
        "p99 {} ms past the knee",
        p99_ms(&one)
    );
    assert_eq!(one.messages.lost, 0, "saturation delays, it does not lose");
    // The broker is free: only the clients cost.
    assert!(one.broker_cpu.is_empty());
    // The report says what the clients spent: 1 ms per message they read, every message
    // read by the end, on the one core they had.
    let spent = one
        .clients_cpu
        .expect("clients with a cost profile report their CPU");
    assert_eq!(spent.cores, 1);
    assert_eq!(spent.busy_us, one.messages.delivered * 1000);
    assert!(spent.cores_used(one.sim_seconds) > 0.5, "{spent:?}");

    // Two cores carry it (one consumer connection uses one at a time, but its reads and
    // the producer's writes do not wait for each other); the wait is the nearest tick.
    let two = simulate(&queue_scenario(500, &clients_at_one_ms_per_message(2)));
    assert!(delivered_while_sending(&two) > 480.0);
    assert!(
        p99_ms(&two) < 20.0,
        "p99 {} ms below the knee",
        p99_ms(&two)
    );

    // And the same scenario twice gives the same run.
    let again = simulate(&queue_scenario(1500, &clients_at_one_ms_per_message(1)));
    assert_eq!(one.latency_us, again.latency_us);
    assert_eq!(one.seconds, again.seconds);
}

#[test]
fn a_clients_section_needs_one_profile_and_a_core() {
    let body = |extra: &str| {
        format!("name = \"x\"\nduration_s = 5\n\n[[brokers]]\nname = \"broker-1\"\n\n{extra}")
    };
    let e = Scenario::parse(&body("[clients]\ncores = 2\n"), "t.toml").unwrap_err();
    assert!(e.to_string().contains("give a `profile`"), "{e}");
    let e = Scenario::parse(
        &body("[clients]\ncores = 0\n[clients.cost]\nframes_in_ns = 1.0\n"),
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(e.key, "clients.cores", "{e}");
    let e =
        Scenario::parse(&body("[clients]\nprofile = \"nowhere.toml\"\n"), "t.toml").unwrap_err();
    assert!(e.to_string().contains("no profile file"), "{e}");
    assert_eq!(e.key, "clients.profile", "{e}");
    // Inline costs are checked as a profile file's are.
    let e = Scenario::parse(
        &body(
            "[clients]
cores = 1
[clients.cost]
frames_in_ns = -1.0
",
        ),
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(e.key, "clients.cost.frames_in_ns", "{e}");
    // The service order is one of two words.
    let e = Scenario::parse(
        &body("[clients]\norder = \"lifo\"\n[clients.cost]\nframes_in_ns = 1.0\n"),
        "t.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("order"), "{e}");
    // Brokers share the clients' cores only first come first served.
    let e = Scenario::parse(
        &body("[clients]\norder = \"random\"\nshare_with_brokers = true\n[clients.cost]\nframes_in_ns = 1.0\n"),
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(e.key, "clients.share_with_brokers", "{e}");
}

#[test]
fn a_broker_sharing_the_clients_cores_leaves_them_what_it_does_not_use() {
    // 0.6 ms of broker CPU per delivery and 0.6 ms of client CPU per message read, at
    // 1,000 messages a second: 0.6 of a core each.
    let scenario = |cores: u32, share: bool| {
        let cost = format!(
            "[brokers.cost]\ndeliveries_ns = 600000.0\n\n[clients]\ncores = {cores}\nshare_with_brokers = {share}\n[clients.cost]\ndeliveries_ns = 600000.0\n"
        );
        simulate(&queue_scenario(1000, &cost))
    };
    // Apart (the broker on a core of its own beside the clients' one), both keep up.
    let apart = scenario(1, false);
    assert!(delivered_while_sending(&apart) > 980.0);
    assert!(p99_ms(&apart) < 20.0, "p99 {} ms apart", p99_ms(&apart));
    // On one shared core they need 1.2 cores. The broker goes first and keeps up (0.6 of
    // the core); the clients read with what is left, 0.4 of it: about 670 a second, and
    // the backlog grows.
    let one = scenario(1, true);
    let rate = delivered_while_sending(&one);
    assert!(
        (620.0..=720.0).contains(&rate),
        "delivered {rate}/s on one shared core (0.4 / 0.6 ms = 667/s)"
    );
    assert!(p99_ms(&one) > 1000.0, "p99 {} ms on one core", p99_ms(&one));
    assert_eq!(one.messages.lost, 0, "saturation delays, it does not lose");
    // The broker's charged CPU is its own, shared or not.
    assert!(one.broker_cpu[0].busy_us > 0);
    // Two shared cores carry it again.
    let two = scenario(2, true);
    assert!(delivered_while_sending(&two) > 980.0);
    assert!(p99_ms(&two) < 20.0, "p99 {} ms on two cores", p99_ms(&two));
}

#[test]
fn clients_served_in_random_order_spread_a_failover_storm_and_repeat_per_seed() {
    // 200 nodes lose their broker at once; every connection closed or opened costs the
    // clients' single core 0.2 ms. First come first served handles every close before any
    // reopening, so every node is back late; random order brings some back at once and
    // keeps others to the storm's end, from the same work.
    let storm = |order: &str| {
        let text = std::fs::read_to_string("../scenarios/broker-crash-failover.toml")
            .expect("the catalog scenario");
        let text = format!(
            "{text}\n[clients]\ncores = 1\norder = \"{order}\"\n[clients.cost]\nconnections_ns = 200000.0\n"
        );
        let mut s =
            Scenario::parse(&text, "broker-crash-failover.toml").unwrap_or_else(|e| panic!("{e}"));
        s.duration_s = 40.0;
        simulate(&s)
    };
    let fifo = storm("fifo");
    let random = storm("random");
    assert_eq!(fifo.failover_ms.len(), random.failover_ms.len());
    assert!(fifo.failover_ms.len() >= 200);
    let q = |run: &RunReport, q: f64| run.failover_ms.value_at_quantile(q);
    assert!(
        q(&random, 0.1) * 2 < q(&fifo, 0.1),
        "p10 {} ms random, {} ms fifo",
        q(&random, 0.1),
        q(&fifo, 0.1)
    );
    // The same work: the last node cannot be back before all of it is done (random order
    // can leave an unlucky node behind the storm's end, as live runs sometimes do).
    let (f, r) = (q(&fifo, 1.0), q(&random, 1.0));
    assert!(
        r * 10 >= f * 9 && r <= 3 * f,
        "max {r} ms random, {f} ms fifo"
    );
    // And the same seed gives the same run.
    assert_eq!(storm("random").failover_ms, random.failover_ms);
}

#[test]
fn a_broadcast_leaves_as_the_broker_writes_it_not_all_at_once() {
    // 20 us per frame written: a broadcast to 800 nodes takes the broker 16 ms. Its
    // deliveries leave one after another over those 16 ms, so half of them are out by
    // about 8 ms; released together at the end, every one would wait the whole 16 ms.
    let text = std::fs::read_to_string("../scenarios/bench-fanout-800.toml")
        .expect("the catalog scenario");
    let text = text.replace(
        "[[brokers]]\nname = \"broker-1\"\n",
        "[[brokers]]\nname = \"broker-1\"\n[brokers.cost]\nframes_out_ns = 20000.0\n",
    );
    let mut s = Scenario::parse(&text, "bench-fanout-800.toml").unwrap_or_else(|e| panic!("{e}"));
    s.duration_s = 12.0;
    let r = simulate(&s);
    let q = |q: f64| r.latency_us.value_at_quantile(q) as f64 / 1000.0;
    assert!(
        q(0.99) >= 14.0,
        "p99 {} ms: the last delivery waits for the whole write",
        q(0.99)
    );
    assert!(
        q(0.5) <= 11.0,
        "p50 {} ms: half the deliveries leave by mid-broadcast",
        q(0.5)
    );
}
