//! Merging the reports of shards gives the report of the whole run.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use stampede_reports::{
    ExpectationResult, HistogramStats, RunReport, SecondSample, merge, read_report, write_report,
};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("merge_shards-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn two_halves_merge_into_the_whole() {
    let whole = common::build(&|_| true, false);
    let even = common::build(&|n| n % 2 == 0, false);
    let odd = common::build(&|n| n % 2 == 1, false);
    // The halves really are different parts of the run.
    assert!(even.messages.attempted > 0 && odd.messages.attempted > 0);
    assert_ne!(even.latency_us, odd.latency_us);
    assert_ne!(even.seconds, odd.seconds);

    let merged = merge(&[even.clone(), odd.clone()]);
    assert_eq!(merged.messages, whole.messages);
    assert_eq!(merged.latency_us, whole.latency_us);
    assert_eq!(merged.send_delay_us, whole.send_delay_us);
    assert_eq!(merged.failover_ms, whole.failover_ms);
    assert_eq!(merged.seconds, whole.seconds);
    assert_eq!(merged.mcollective, whole.mcollective);
    assert_eq!(merged.losses_by_fault, whole.losses_by_fault);
    assert_eq!(
        merged.faults, whole.faults,
        "shared fault windows are not repeated"
    );
    assert_eq!(merged, whole);

    // The merged percentiles are those of all values, not an average of the halves'.
    let p99 = |r: &RunReport| HistogramStats::of(&r.latency_us).p99;
    assert_eq!(p99(&merged), p99(&whole));
    assert_ne!(p99(&merged), (p99(&even) + p99(&odd)) / 2);

    // Order does not matter.
    assert_eq!(merge(&[odd, even]), whole);
}

#[test]
fn shards_read_back_from_disk_merge_into_the_whole() {
    let whole = common::build(&|_| true, false);
    let dirs: Vec<PathBuf> = (0..3u64)
        .map(|i| {
            let dir = scratch(&format!("shard-{i}"));
            write_report(&common::build(&move |n| n % 3 == i, false), &dir).unwrap();
            dir
        })
        .collect();
    let shards: Vec<RunReport> = dirs.iter().map(|d| read_report(d).unwrap()).collect();
    let merged = merge(&shards);
    assert_eq!(merged, whole);

    // And the merged report writes the same files as the whole one.
    let a = scratch("merged");
    let b = scratch("whole");
    write_report(&whole, &b).unwrap();
    for path in write_report(&merged, &a).unwrap() {
        let name = path.file_name().unwrap();
        assert!(
            fs::read(&path).unwrap() == fs::read(b.join(name)).unwrap(),
            "{} differs",
            name.to_string_lossy()
        );
    }
}

#[test]
fn merge_combines_rows_by_second_and_brokers_by_name() {
    let mut a = RunReport::new("s", 1);
    a.brokers = vec!["b1".into(), "b2".into()];
    let mut s = SecondSample::new(3, 2);
    s.delivered = 4;
    s.connected = vec![10, 20];
    s.latency.record(500).unwrap();
    a.seconds.push(s);

    let mut b = RunReport::new("s", 1);
    b.brokers = vec!["b2".into(), "b3".into()];
    let mut s = SecondSample::new(3, 2);
    s.delivered = 1;
    s.connected = vec![1, 2];
    s.latency.record(7_000).unwrap();
    b.seconds.push(s);
    b.seconds.push(SecondSample::new(1, 2));

    let m = merge(&[a, b]);
    assert_eq!(m.brokers, ["b1", "b2", "b3"]);
    assert_eq!(m.seconds.iter().map(|s| s.t_s).collect::<Vec<_>>(), [1, 3]);
    let row = &m.seconds[1];
    assert_eq!(row.delivered, 5);
    assert_eq!(row.connected, [10, 21, 2]);
    assert_eq!(row.latency.len(), 2);
    assert_eq!(row.latency.max(), 7_003);
}

#[test]
fn merge_keeps_the_largest_durations_and_grows_histograms() {
    let mut a = RunReport::new("s", 9);
    a.sim_seconds = 60.0;
    a.wall_seconds = 3.0;
    let mut b = RunReport::new("s", 9);
    b.sim_seconds = 58.0;
    b.wall_seconds = 4.0;
    // A histogram with a wider range than the first shard's.
    b.latency_us = stampede_reports::Histogram::new_with_bounds(1, u64::MAX / 4, 3).unwrap();
    b.latency_us.record(10 * 3_600_000_000).unwrap();
    let m = merge(&[a, b]);
    assert_eq!((m.sim_seconds, m.wall_seconds), (60.0, 4.0));
    assert_eq!(m.latency_us.len(), 1);
    assert!(m.latency_us.max() >= 10 * 3_600_000_000);
}

#[test]
fn merge_of_expectations_fails_if_any_shard_failed() {
    let exp = |ok: bool, detail: &str| ExpectationResult {
        name: "no loss".into(),
        ok,
        detail: detail.into(),
        check: None,
    };
    let mut a = RunReport::new("s", 1);
    a.expectations = vec![exp(true, "lost = 0 (limit 0)")];
    a.replay_command = None;
    let mut b = a.clone();
    b.expectations = vec![exp(false, "lost = 2 (limit 0)")];
    b.replay_command = Some("stampede run s --seed 1 --shard 2/2".into());

    let m = merge(&[a.clone(), b]);
    assert_eq!(m.expectations.len(), 1);
    assert!(!m.expectations[0].ok);
    assert_eq!(
        m.expectations[0].detail,
        "shard 0: lost = 0 (limit 0); shard 1: lost = 2 (limit 0)"
    );
    assert_eq!(
        m.replay_command.as_deref(),
        Some("stampede run s --seed 1 --shard 2/2")
    );

    let same = merge(&[a.clone(), a]);
    assert_eq!(same.expectations, vec![exp(true, "lost = 0 (limit 0)")]);
}

#[test]
fn merge_of_nothing_is_an_empty_report() {
    let m = merge(&[]);
    assert_eq!(m, RunReport::default());
    let one = common::whole();
    assert_eq!(merge(std::slice::from_ref(&one)), one);
}

#[test]
fn merge_judges_expectations_again_on_the_merged_counts_and_histograms() {
    use stampede_reports::{Check, HistogramName, Measure};
    let judged = |r: &RunReport, name: &str, measure: Measure, at_most: bool, limit: f64| {
        let check = Check {
            measure,
            at_most,
            limit,
            allow_no_data: false,
            what: "replies".into(),
        };
        ExpectationResult::judge(name, check, r)
    };
    let shard = |lost: u64, failover_ms: u64, replies: (u64, u64)| {
        let mut r = RunReport::new("s", 1);
        r.messages.lost = lost;
        r.failover_ms.record(failover_ms).unwrap();
        r.expectations = vec![
            judged(&r, "lost_max", Measure::Count(lost), true, 1.0),
            judged(
                &r,
                "failover_p99_ms_max",
                Measure::Quantile {
                    histogram: HistogramName::FailoverMs,
                    quantile: 0.99,
                },
                true,
                5_000.0,
            ),
            judged(
                &r,
                "mco_reply_ratio_min",
                Measure::Ratio {
                    num: replies.0,
                    den: replies.1,
                },
                false,
                0.9,
            ),
        ];
        r
    };
    // Each shard lost one message (at most 1 holds), the whole run lost two.
    let a = shard(1, 1_000, (10, 10));
    let b = shard(1, 9_000, (0, 0));
    assert!(a.expectations[0].ok && b.expectations[0].ok);
    // Shard b's failover breaks its own p99; its reply ratio has no data and fails.
    assert!(!b.expectations[1].ok && !b.expectations[2].ok);
    let m = merge(&[a, b]);
    let by = |name: &str| m.expectations.iter().find(|e| e.name == name).unwrap();
    assert!(!by("lost_max").ok, "{:?}", by("lost_max"));
    assert_eq!(by("lost_max").detail, "2 (at most 1)");
    // The merged p99 reads the merged histogram (1 s and 9 s: p99 is 9 s).
    assert!(!by("failover_p99_ms_max").ok);
    // 10 of 10 replies over both shards: the merged ratio holds.
    assert!(
        by("mco_reply_ratio_min").ok,
        "{:?}",
        by("mco_reply_ratio_min")
    );

    // The checks survive summary.json: merging what was written judges the same.
    let dir = scratch("rejudge");
    let (a, b) = (shard(1, 1_000, (10, 10)), shard(1, 2_000, (5, 10)));
    write_report(&a, &dir.join("a")).unwrap();
    write_report(&b, &dir.join("b")).unwrap();
    let read = [
        read_report(&dir.join("a")).unwrap(),
        read_report(&dir.join("b")).unwrap(),
    ];
    let m = merge(&read);
    let by = |name: &str| m.expectations.iter().find(|e| e.name == name).unwrap();
    assert_eq!(by("lost_max").detail, "2 (at most 1)");
    assert_eq!(
        by("mco_reply_ratio_min").detail,
        "0.7500 = 15/20 replies (at least 0.9)"
    );
    assert!(!by("mco_reply_ratio_min").ok);
}
