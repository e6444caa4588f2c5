//! The files `write_report` writes: determinism, shapes, and reading them back.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use stampede_reports::{
    FaultWindow, RunReport, SecondSample, hgrm, latency_histogram, read_report, write_report,
};

/// A fresh, empty directory under cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report_files-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The keys of a pretty-printed JSON object at `indent` spaces, in file order.
fn keys_at(text: &str, indent: usize) -> Vec<String> {
    let prefix = format!("{}\"", " ".repeat(indent));
    text.lines()
        .filter(|l| l.starts_with(&prefix) && !l[indent + 1..].starts_with(' '))
        .filter_map(|l| l[indent + 1..].split('"').next().map(str::to_string))
        .collect()
}

#[test]
fn identical_input_writes_identical_bytes() {
    let report = common::whole();
    let a = scratch("det-a");
    let b = scratch("det-b");
    let written_a = write_report(&report, &a).unwrap();
    let written_b = write_report(&report.clone(), &b).unwrap();
    assert_eq!(
        names(&written_a),
        [
            "summary.json",
            "timeseries.csv",
            "histograms.json",
            "latency_us.hgrm",
            "send_delay_us.hgrm",
            "failover_ms.hgrm",
            "failovers.csv",
            "mcollective.csv",
            "report.html",
        ]
    );
    assert_eq!(names(&written_a), names(&written_b));
    for name in names(&written_a) {
        let x = fs::read(a.join(&name)).unwrap();
        let y = fs::read(b.join(&name)).unwrap();
        assert!(!x.is_empty(), "{name} is empty");
        assert!(
            x == y,
            "{name} differs between two writes of the same report"
        );
    }
}

#[test]
fn only_wall_seconds_differs_between_runs_of_one_seed() {
    let mut first = common::whole();
    first.wall_seconds = 1.25;
    let mut second = first.clone();
    second.wall_seconds = 9876.5;
    let a = scratch("wall-a");
    let b = scratch("wall-b");
    write_report(&first, &a).unwrap();
    write_report(&second, &b).unwrap();
    for name in names(&write_report(&first, &a).unwrap()) {
        let x = fs::read_to_string(a.join(&name)).unwrap();
        let y = fs::read_to_string(b.join(&name)).unwrap();
        if name == "summary.json" {
            let diff: Vec<(&str, &str)> =
                x.lines().zip(y.lines()).filter(|(p, q)| p != q).collect();
            assert_eq!(
                diff,
                [("  \"wall_seconds\": 1.25", "  \"wall_seconds\": 9876.5")]
            );
            // The differing line is the last field, just before the closing brace.
            assert_eq!(x.lines().rev().nth(1), Some("  \"wall_seconds\": 1.25"));
        } else {
            assert_eq!(x, y, "{name} depends on wall_seconds");
        }
    }
    let html = fs::read_to_string(b.join("report.html")).unwrap();
    assert!(!html.contains("9876"), "report.html shows wall_seconds");
}

#[test]
fn summary_json_has_the_documented_shape() {
    let report = common::whole();
    let dir = scratch("shape");
    write_report(&report, &dir).unwrap();
    let text = fs::read_to_string(dir.join("summary.json")).unwrap();
    assert_eq!(
        keys_at(&text, 2),
        [
            "schema",
            "scenario",
            "seed",
            "target",
            "passed",
            "sim_seconds",
            "brokers",
            "messages",
            "reorders",
            "throughput_msg_s",
            "latency_us",
            "send_delay_us",
            "failover_ms",
            "mcollective",
            "network",
            "expectations",
            "faults",
            "losses_by_fault",
            "losses_by_cause",
            "unexplained_lost",
            "unexplained_losses",
            "failovers_unfinished",
            "replay_command",
            "broker_cpu",
            "wall_seconds",
        ]
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], "stampede-report/1");
    assert_eq!(v["scenario"], "mco-failover");
    assert_eq!(v["seed"], 42);
    assert_eq!(v["target"], Value::Null);
    assert_eq!(v["passed"], false);
    assert_eq!(
        v["brokers"],
        serde_json::json!(["broker-1", "broker-2", "broker-3"])
    );

    let m = &v["messages"];
    assert_eq!(
        keys_at(&text[text.find("\"messages\"").unwrap()..], 4)[..7],
        [
            "attempted",
            "acknowledged",
            "delivered",
            "lost",
            "unexpected",
            "duplicated",
            "recovered"
        ]
    );
    assert_eq!(m.as_object().unwrap().len(), 7);
    assert_eq!(m["attempted"], report.messages.attempted);
    assert_eq!(m["acknowledged"], report.messages.acknowledged);
    assert_eq!(m["delivered"], report.messages.delivered);
    assert_eq!(m["lost"], report.messages.lost);
    assert_eq!(m["unexpected"], 0);
    assert_eq!(m["duplicated"], report.messages.duplicated);
    assert_eq!(m["recovered"], report.messages.recovered);
    assert!(report.messages.lost > 0 && report.messages.recovered > 0);

    for h in ["latency_us", "send_delay_us", "failover_ms"] {
        assert_eq!(
            keys_at(&text[text.find(&format!("\"{h}\"")).unwrap()..], 4)[..9],
            [
                "count", "min", "mean", "p50", "p90", "p99", "p999", "p9999", "max"
            ],
            "{h}"
        );
        assert_eq!(v[h].as_object().unwrap().len(), 9, "{h}");
    }
    assert_eq!(v["latency_us"]["count"], report.latency_us.len());
    assert_eq!(
        v["latency_us"]["p99"],
        report.latency_us.value_at_quantile(0.99)
    );
    assert_eq!(v["latency_us"]["max"], report.latency_us.max());
    assert_eq!(v["failover_ms"]["count"], report.failover_ms.len());

    let mco = &v["mcollective"];
    assert_eq!(mco["requests"], 24);
    assert_eq!(mco["replies_expected"], 24 * common::NODES);
    assert_eq!(
        mco["replies_received"],
        report.mcollective.as_ref().unwrap().replies_received
    );

    let exps = v["expectations"].as_array().unwrap();
    assert_eq!(exps.len(), 3);
    assert_eq!(exps[0]["name"], "no acknowledged message lost");
    assert_eq!(exps[0]["ok"], false);
    assert_eq!(
        exps[0]["detail"],
        format!("lost = {} (limit 0)", report.messages.lost)
    );

    let faults = v["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 3);
    assert_eq!(
        faults[0],
        serde_json::json!({"kind": "crash", "label": "crash broker-2", "start_ms": 30000, "end_ms": 45000})
    );
    assert_eq!(faults[2]["end_ms"], Value::Null);
    let losses = v["losses_by_fault"].as_array().unwrap();
    assert_eq!(losses.len(), 4);
    assert_eq!(losses[3]["label"], "none");
    let lost_sum: u64 = losses.iter().map(|l| l["lost"].as_u64().unwrap()).sum();
    assert_eq!(lost_sum, report.messages.lost);
    assert_eq!(v["reorders"], report.reorders);
    assert_eq!(
        v["replay_command"],
        "stampede run scenarios/mco-failover.toml --seed 42"
    );
    assert_eq!(v["wall_seconds"], 2.5);
}

#[test]
fn percentiles_of_a_known_histogram_reach_the_summary() {
    let mut r = RunReport::new("known", 1);
    for v in 1..=1000u64 {
        r.latency_us.record(v).unwrap();
    }
    r.send_delay_us.record_n(250, 10).unwrap();
    let dir = scratch("known");
    write_report(&r, &dir).unwrap();
    let v: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let l = &v["latency_us"];
    assert_eq!(
        (l["count"].as_u64(), l["min"].as_u64(), l["p50"].as_u64()),
        (Some(1000), Some(1), Some(500))
    );
    assert_eq!(
        (
            l["p90"].as_u64(),
            l["p99"].as_u64(),
            l["p999"].as_u64(),
            l["max"].as_u64()
        ),
        (Some(900), Some(990), Some(999), Some(1000))
    );
    assert_eq!(l["mean"].as_f64(), Some(500.5));
    assert_eq!(v["send_delay_us"]["p99"], 250);
    assert_eq!(v["failover_ms"]["count"], 0);
    assert_eq!(v["failover_ms"]["p99"], 0);
    assert_eq!(v["mcollective"], Value::Null);
    assert_eq!(v["passed"], true);
}

/// A small report with 3 brokers and overlapping faults, one label needing quotes.
fn small_report() -> RunReport {
    let mut r = RunReport::new("small", 7);
    r.brokers = vec!["b1".into(), "b2".into(), "b,3".into()];
    r.sim_seconds = 4.0;
    r.faults = vec![
        FaultWindow {
            kind: "crash".into(),
            label: "crash b2".into(),
            start_ms: 1_500,
            end_ms: Some(2_000),
        },
        FaultWindow {
            kind: "partition".into(),
            label: "partition b1,b3".into(),
            start_ms: 1_900,
            end_ms: None,
        },
    ];
    for t in 0..4u64 {
        let mut s = SecondSample::new(t, 3);
        s.attempted = 10 + t;
        s.delivered = 9 + t;
        s.lost = u64::from(t == 1);
        if t != 2 {
            for v in [100, 200, 300, 4_000 * (t + 1)] {
                s.latency.record(v).unwrap();
            }
        }
        s.connected = vec![5, 5 - t, 5 + t];
        s.mco_replies = t * 3;
        r.seconds.push(s);
    }
    r
}

#[test]
fn timeseries_csv_has_one_row_per_second_with_active_faults() {
    let dir = scratch("csv");
    write_report(&small_report(), &dir).unwrap();
    let text = fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "t_s,attempted,delivered,lost,latency_p50_us,latency_p99_us,latency_max_us,mco_replies,connected_b1,connected_b2,\"connected_b,3\",in_fault",
            "0,10,9,0,200,4001,4001,0,5,5,5,",
            "1,11,10,1,200,8003,8003,3,5,4,6,\"crash b2;partition b1,b3\"",
            "2,12,11,0,,,,6,5,3,7,\"partition b1,b3\"",
            "3,13,12,0,200,16007,16007,9,5,2,8,\"partition b1,b3\"",
        ]
    );
    assert!(text.ends_with('\n'));
}

#[test]
fn hgrm_files_are_parseable_percentile_distributions() {
    let report = common::whole();
    let dir = scratch("hgrm");
    write_report(&report, &dir).unwrap();
    for (file, h) in [
        ("latency_us.hgrm", &report.latency_us),
        ("send_delay_us.hgrm", &report.send_delay_us),
        ("failover_ms.hgrm", &report.failover_ms),
    ] {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"),
            "{file}"
        );
        let lines = hgrm::parse(&text).unwrap_or_else(|| panic!("{file} does not parse"));
        let first = lines.first().unwrap();
        let last = lines.last().unwrap();
        assert_eq!(first.quantile, 0.0, "{file}");
        assert_eq!(last.quantile, 1.0, "{file}");
        assert_eq!(last.total_count, h.len(), "{file}");
        assert_eq!(last.value as u64, h.max(), "{file}");
        let median = lines.iter().find(|l| l.quantile >= 0.5).unwrap();
        assert_eq!(median.value as u64, h.value_at_quantile(0.5), "{file}");
        assert!(
            text.contains(&format!("Total count    = {:>12}]", h.len())),
            "{file}"
        );
    }
}

#[test]
fn read_report_gives_back_what_was_written() {
    let report = common::whole();
    let dir = scratch("roundtrip");
    write_report(&report, &dir).unwrap();
    let back = read_report(&dir).unwrap();
    assert_eq!(back, report);

    let small = small_report();
    let dir = scratch("roundtrip-small");
    write_report(&small, &dir).unwrap();
    assert_eq!(read_report(&dir).unwrap(), small);
    assert!(!dir.join("broker_cpu.csv").exists());

    // With broker CPU (a cost model): per second in broker_cpu.csv, totals in summary.json.
    let mut cpu = small_report();
    cpu.broker_cpu = vec![stampede_reports::BrokerCpu {
        broker: "broker-1".into(),
        busy_us: 1_250_000,
        per_second_us: vec![250_000, 1_000_000],
    }];
    let dir = scratch("roundtrip-cpu");
    write_report(&cpu, &dir).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("broker_cpu.csv")).unwrap(),
        "t_s,cpu_us_broker-1\n0,250000\n1,1000000\n"
    );
    assert_eq!(read_report(&dir).unwrap(), cpu);
    let summary = fs::read_to_string(dir.join("summary.json")).unwrap();
    assert!(summary.contains("\"peak_second\": 1.0"), "{summary}");
    assert!(!summary.contains("clients_cpu"), "{summary}");

    // With the simulated clients' CPU: in summary.json, and read back.
    cpu.clients_cpu = Some(stampede_reports::ClientsCpu {
        busy_us: 3_000_000,
        cores: 2,
    });
    let dir = scratch("roundtrip-clients-cpu");
    write_report(&cpu, &dir).unwrap();
    assert_eq!(read_report(&dir).unwrap(), cpu);
    let summary: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let seconds = cpu.sim_seconds;
    assert_eq!(summary["clients_cpu"]["busy_us"], 3_000_000);
    assert_eq!(summary["clients_cpu"]["cores"], 2);
    assert_eq!(
        summary["clients_cpu"]["cores_used"].as_f64(),
        Some((3.0 / seconds * 1000.0).round() / 1000.0)
    );
}

#[test]
fn read_report_names_the_broken_file() {
    let dir = scratch("broken");
    write_report(&small_report(), &dir).unwrap();
    let csv = fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    fs::write(
        dir.join("timeseries.csv"),
        csv.replace("1,11,10,1", "1,eleven,10,1"),
    )
    .unwrap();
    let err = read_report(&dir).unwrap_err().to_string();
    assert!(err.contains("timeseries.csv:3"), "{err}");
    assert!(err.contains("attempted"), "{err}");

    fs::remove_file(dir.join("histograms.json")).unwrap();
    let err = read_report(&dir).unwrap_err();
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn report_html_is_self_contained_with_one_svg_per_chart() {
    let report = common::whole();
    let dir = scratch("html");
    write_report(&report, &dir).unwrap();
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    let charts = html.matches("<figure class=\"chart\"").count();
    for name in [
        "latency",
        "throughput",
        "connected",
        "distribution",
        "failover",
        "mco-requests",
    ] {
        assert!(html.contains(&format!("data-chart=\"{name}\"")), "{name}");
    }
    assert_eq!(charts, 6);
    assert_eq!(html.matches("<svg").count(), charts);
    for label in [
        "crash broker-2",
        "partition broker-1 | broker-3",
        "pause broker-3",
    ] {
        // In the fault table and in every time chart's bands.
        assert!(html.matches(label).count() >= 4, "{label}");
    }
    assert!(html.contains("FAIL"));
    assert!(html.contains("no acknowledged message lost"));
    assert!(html.contains("stampede run scenarios/mco-failover.toml --seed 42"));
    assert!(html.contains("<td>lost</td>"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("<link"));
    assert!(!html.contains("src="));
    let external = html
        .match_indices("http")
        .filter(|(i, _)| !html[*i..].starts_with("http://www.w3.org/2000/svg"))
        .count();
    assert_eq!(external, 0, "the page refers to the network");
}

#[test]
fn empty_report_writes_valid_files() {
    let report = common::empty();
    let dir = scratch("empty");
    let written = write_report(&report, &dir).unwrap();
    assert_eq!(written.len(), 8, "no mcollective.csv without MCollective");
    assert!(!dir.join("mcollective.csv").exists());

    let v: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["messages"]["attempted"], 0);
    assert_eq!(v["latency_us"]["p99"], 0);
    assert_eq!(v["throughput_msg_s"], 0.0);
    assert_eq!(v["expectations"], serde_json::json!([]));
    assert_eq!(
        fs::read_to_string(dir.join("timeseries.csv")).unwrap(),
        "t_s,attempted,delivered,lost,latency_p50_us,latency_p99_us,latency_max_us,mco_replies,in_fault\n"
    );
    for f in ["latency_us.hgrm", "send_delay_us.hgrm", "failover_ms.hgrm"] {
        let text = fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(hgrm::parse(&text), Some(vec![]), "{f}");
    }
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    let charts = html.matches("<figure class=\"chart\"").count();
    assert_eq!(charts, 4);
    assert_eq!(html.matches("<svg").count(), charts);
    assert!(html.contains("no deliveries"));
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(read_report(&dir).unwrap(), report);
}

#[test]
fn stale_mcollective_csv_is_removed() {
    let dir = scratch("stale");
    write_report(&common::whole(), &dir).unwrap();
    assert!(dir.join("mcollective.csv").exists());
    write_report(&common::empty(), &dir).unwrap();
    assert!(!dir.join("mcollective.csv").exists());
}

#[test]
fn non_finite_durations_do_not_break_the_files() {
    let mut r = RunReport::new("nan", 3);
    r.sim_seconds = f64::NAN;
    r.wall_seconds = f64::INFINITY;
    r.latency_us = latency_histogram();
    let dir = scratch("nan");
    write_report(&r, &dir).unwrap();
    let text = fs::read_to_string(dir.join("summary.json")).unwrap();
    assert!(text.contains("\"sim_seconds\": null"));
    let back = read_report(&dir).unwrap();
    assert!(back.sim_seconds.is_nan() && back.wall_seconds.is_nan());
}

#[test]
fn unexplained_losses_and_unfinished_failovers_reach_every_file() {
    use stampede_reports::{FaultLoss, UnexplainedLoss, UnfinishedFailover};
    let mut report = small_report();
    report.messages.lost = 3;
    report.losses_by_cause = vec![
        FaultLoss {
            label: "crash".into(),
            lost: 2,
        },
        FaultLoss {
            label: "unexplained".into(),
            lost: 1,
        },
    ];
    report.unexplained_lost = 1;
    report.unexplained_losses = vec![UnexplainedLoss {
        id: "message 4242 (producer-0 #7)".into(),
        sent_ms: 12_345,
        path: "written at 12.345 s by producer-0 on broker-1".into(),
    }];
    report.failovers_unfinished = vec![UnfinishedFailover {
        client: "rack-1-node-0007".into(),
        since_ms: 61_000,
    }];
    let dir = scratch("unexplained");
    write_report(&report, &dir).unwrap();
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Unexplained losses (1)"), "{html}");
    assert!(html.contains("message 4242 (producer-0 #7)"));
    assert!(html.contains("rack-1-node-0007"));
    let v: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["unexplained_lost"], 1);
    assert_eq!(v["unexplained_losses"][0]["sent_ms"], 12_345);
    assert_eq!(v["losses_by_cause"][1]["label"], "unexplained");
    assert_eq!(v["failovers_unfinished"][0]["since_ms"], 61_000);
    let text = stampede_reports::summary_text(&report);
    assert!(text.contains("losses     2 crash, 1 unexplained"), "{text}");
    assert!(text.contains("unexplained loss: message 4242"), "{text}");
    assert!(
        text.contains("failover unfinished: rack-1-node-0007"),
        "{text}"
    );
    assert_eq!(read_report(&dir).unwrap(), report);
}
