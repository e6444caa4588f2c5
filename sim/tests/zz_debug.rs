use stampede_sim::run::run;
use stampede_sim::scenario::Scenario;
use std::path::PathBuf;
#[test]
fn debug() {
    let f = std::env::var("SCEN").unwrap();
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(f);
    let s = Scenario::load(&path).unwrap();
    let o = run(&s, seed, "test", &mut |_| {}).unwrap();
    for (at, w) in &o.history.applied {
        eprintln!("{at} {w:.200}");
    }
    for i in &o.history.incarnations {
        eprintln!(
            "{} {} {:?} held {}",
            i.broker,
            i.started_us,
            i.crashed_us,
            i.held.len()
        );
    }
    eprintln!("lost {}", o.report.messages.lost);
}
