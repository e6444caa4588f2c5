//! Same scenario and seed: byte-identical report files (except `wall_seconds`). Another
//! seed: different ones.

use std::path::{Path, PathBuf};

use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;

fn report_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("stampede-determinism-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run_into(scenario: &Scenario, seed: u64, dir: &Path) {
    let outcome = run(scenario, seed, "test", &mut |_| {}).unwrap();
    stampede_reports::write_report(&outcome.report, dir).unwrap();
}

fn without_wall_seconds(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"wall_seconds\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that two report files hold the same text (apart from `wall_seconds`), naming
/// the file and the first line that differs (a byte dump of a whole report says nothing).
#[track_caller]
fn assert_same_file(a: &Path, b: &Path) {
    let (ta, tb) = (without_wall_seconds(a), without_wall_seconds(b));
    if ta == tb {
        return;
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (ta.lines().collect(), tb.lines().collect());
    let at = (0..la.len().max(lb.len()))
        .find(|&i| la.get(i) != lb.get(i))
        .unwrap_or(0);
    // Long lines (a chart) are shown around their first differing character.
    let (ca, cb) = (
        la.get(at).copied().unwrap_or(""),
        lb.get(at).copied().unwrap_or(""),
    );
    let from = ca
        .bytes()
        .zip(cb.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(0)
        .saturating_sub(200);
    let cut = |l: Option<&&str>| {
        l.map(|l| {
            l.bytes()
                .skip(from)
                .take(400)
                .map(char::from)
                .collect::<String>()
        })
    };
    panic!(
        "{} differs from {} at line {}:\n  {:?}\n  {:?}",
        a.display(),
        b.display(),
        at + 1,
        cut(la.get(at)),
        cut(lb.get(at)),
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/mcollective-3x800-failover.toml");
    let mut scenario = Scenario::load(&path).unwrap();
    // Shortened, and smaller racks, keeping the crash and its recovery.
    scenario.duration_s = 130.0;
    for r in &mut scenario.racks {
        r.nodes = 100;
    }
    scenario.expectations = Default::default();
    let (a, b, c) = (report_dir("a"), report_dir("b"), report_dir("c"));
    run_into(&scenario, 7, &a);
    run_into(&scenario, 7, &b);
    run_into(&scenario, 8, &c);
    let mut compared = 0;
    for entry in std::fs::read_dir(&a).unwrap() {
        let name = entry.unwrap().file_name();
        assert_same_file(&a.join(&name), &b.join(&name));
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} files");
    assert_ne!(
        std::fs::read(a.join("timeseries.csv")).unwrap(),
        std::fs::read(c.join("timeseries.csv")).unwrap(),
        "a different seed must change the run"
    );
    assert_ne!(
        without_wall_seconds(&a.join("summary.json")),
        without_wall_seconds(&c.join("summary.json"))
    );
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_broker_network_with_discovery_replays_byte_for_byte() {
    // Bridges found by multicast discovery, demand by advisories, two-hop forwarding:
    // everything the network adds must be as reproducible as the rest.
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/network-hub-and-spoke.toml");
    let mut scenario = Scenario::load(&path).unwrap();
    scenario.duration_s = 45.0;
    for r in &mut scenario.racks {
        r.nodes = 50;
    }
    let (a, b) = (report_dir("net-a"), report_dir("net-b"));
    run_into(&scenario, 3, &a);
    run_into(&scenario, 3, &b);
    let summary = without_wall_seconds(&a.join("summary.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    assert!(
        v["network"]["bridged_deliveries"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(v["network"]["max_hops"], 2, "{summary}");
    assert_eq!(summary, without_wall_seconds(&b.join("summary.json")));
    for name in ["timeseries.csv", "mcollective.csv"] {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs"
        );
    }
    for d in [a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_broker_store_on_the_simulated_disk_replays_byte_for_byte() {
    // The journal on turmoil's file system, a power loss, recovery: as reproducible as
    // the rest. `interval_ms` makes the loss depend on when the last sync ran.
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/broker-crash-persistent.toml");
    let mut scenario = Scenario::load(&path).unwrap();
    scenario.faults[0].kind = stampede_sim::scenario::FaultKind::PowerLoss;
    scenario.brokers[0].store.as_mut().unwrap().sync =
        stampede_broker::store::SyncPolicy::IntervalMs;
    scenario.expectations = Default::default();
    let (a, b) = (report_dir("store-a"), report_dir("store-b"));
    run_into(&scenario, 5, &a);
    run_into(&scenario, 5, &b);
    let summary = without_wall_seconds(&a.join("summary.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    assert!(v["messages"]["lost"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary, without_wall_seconds(&b.join("summary.json")));
    assert_eq!(
        std::fs::read(a.join("timeseries.csv")).unwrap(),
        std::fs::read(b.join("timeseries.csv")).unwrap()
    );
    for d in [a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_roboconf_deployment_with_a_run_time_reconfiguration_replays_byte_for_byte() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/roboconf-1x800.toml");
    let mut scenario = Scenario::load(&path).unwrap();
    for r in &mut scenario.racks {
        r.nodes = 120;
    }
    let (a, b) = (report_dir("roboconf-a"), report_dir("roboconf-b"));
    run_into(&scenario, 5, &a);
    run_into(&scenario, 5, &b);
    let summary = without_wall_seconds(&a.join("summary.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["roboconf"]["ready"], 120, "{summary}");
    assert_eq!(v["roboconf"]["reconfigured"], 121, "{summary}");
    assert_eq!(summary, without_wall_seconds(&b.join("summary.json")));
    assert_eq!(
        std::fs::read(a.join("timeseries.csv")).unwrap(),
        std::fs::read(b.join("timeseries.csv")).unwrap(),
    );
    for d in [a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn tasks_spawned_by_other_threads_do_not_change_a_run() {
    // tokio numbers tasks with one counter per process, and a runtime shuts its spawned
    // tasks down grouped by that number: when a crash drops a broker's connections, the
    // order of their closes (and of every random draw after them) must not depend on
    // what other threads (other tests, a sweep's other cells) spawn meanwhile.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/mcollective-3x800-failover.toml");
    let mut scenario = Scenario::load(&path).unwrap();
    scenario.duration_s = 115.0;
    for r in &mut scenario.racks {
        r.nodes = 40;
    }
    scenario.expectations = Default::default();
    let a = report_dir("tasks-a");
    run_into(&scenario, 11, &a);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        // The thread is the point: a neighbour outside the simulation.
        #[allow(clippy::disallowed_methods)]
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
            }
        })
    };
    for attempt in 0..3 {
        let b = report_dir(&format!("tasks-b{attempt}"));
        run_into(&scenario, 11, &b);
        for name in ["summary.json", "timeseries.csv", "mcollective.csv"] {
            assert_same_file(&a.join(name), &b.join(name));
        }
        let _ = std::fs::remove_dir_all(b);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spawner.join().unwrap();
    let _ = std::fs::remove_dir_all(a);
}
