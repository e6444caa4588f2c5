//! `stampede calibrate` against a real stampede-broker (the binary of this build), cut
//! to the warm-up and the four queue workloads at a small scale so that it stays fast:
//! the broker's process is found from its port, and the fitted profile has costs and
//! parses with `CostProfile::parse`.

mod common;
use common::broker_bin;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stampede_broker::server::cost::CostProfile;
use stampede_sim::calibrate::{self, CalibrateOptions, CpuSource, WorkSource};
use stampede_sim::live::target::{TargetKind, TargetUri};

/// The broker; killed when dropped.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn calibrating_a_real_stampede_broker_gives_a_profile_that_parses() {
    let dir = std::env::temp_dir().join(format!("stampede-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let broker = Broker(
        Command::new(broker_bin())
            .args(["--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut addr = String::new();
    for _ in 0..200 {
        if let Ok(t) = std::fs::read_to_string(&ready)
            && let Some(line) = t.lines().next()
        {
            addr = line.trim().to_owned();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !addr.is_empty(),
        "the broker never wrote {}",
        ready.display()
    );
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // The process is found from its port, as `stampede calibrate` does without --pid.
    let pid = calibrate::pid_listening_on(port).unwrap();
    assert_eq!(pid, broker.0.id());

    let opts = CalibrateOptions {
        target: TargetUri::parse(&format!("tcp://{addr}")).unwrap(),
        kind: Some(TargetKind::Stampede),
        cpu: CpuSource::Pid(pid),
        metrics: None,
        duration_s: 1.0,
        scale: 0.5,
        credentials: None,
        threads: 2,
        baseline_s: 0.5,
        workloads_max: Some(5),
        skip: Vec::new(),
        weighting: Default::default(),
    };
    let c = calibrate::calibrate(&opts, &|line| eprintln!("{line}")).unwrap();
    assert_eq!(c.work_source, WorkSource::Client);
    assert_eq!(c.samples.len(), 4, "the warm-up is not fitted");
    for s in &c.samples {
        // Every queue message was seen going in and coming out.
        assert!(s.work.frames_in > 400 && s.work.deliveries > 400, "{s:?}");
        assert!(s.raw_cpu_s > 0.0, "the broker used no CPU in {}", s.name);
        assert!(
            s.generator_cpu_s > 0.0,
            "the generator used no CPU in {}",
            s.name
        );
    }
    // The clients' profile: the generator's CPU on what its connections carried.
    assert!(
        c.clients_fit.ns[1] > 0.0 || c.clients_fit.ns[11] > 0.0,
        "{:?}",
        c.clients_fit
    );
    assert_eq!(
        c.clients_fit.ns[1], c.clients_fit.ns[3],
        "frames either way cost the same"
    );
    assert!(c.fit.ns.iter().any(|ns| *ns > 0.0), "{:?}", c.fit);
    let text = calibrate::profile_text(&c.fit, "test", &["a test".into()]).unwrap();
    let p = CostProfile::parse(&text, "calibrated.toml").unwrap();
    assert!(p.ns_array().iter().any(|ns| *ns > 0.0), "{text}");
    assert_eq!(p.fit_poor, c.fit.poor());
    let _ = std::fs::remove_dir_all(&dir);
}
