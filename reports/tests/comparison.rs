//! `write_comparison`: compare.html and compare.csv.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use stampede_reports::compare::{COMPARE_CSV_HEADER, compare_csv};
use stampede_reports::{RunReport, write_comparison};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("comparison-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn runs() -> Vec<(String, RunReport)> {
    let whole = common::whole();
    let mut live = common::build(&|n| n % 2 == 0, true);
    live.target = Some("activemq tcp://127.0.0.1:61613".into());
    vec![
        ("sim".to_string(), whole),
        ("activemq, half".to_string(), live),
    ]
}

#[test]
fn compare_csv_has_one_row_per_run() {
    let runs = runs();
    let text = compare_csv(&runs);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        "label,target,attempted,delivered,lost,throughput_msg_s,latency_p50_us,latency_p99_us,\
         latency_p999_us,latency_max_us,send_delay_p99_us,failover_count,failover_p50_ms,\
         failover_p99_ms,mco_reply_ratio,mco_fault_reply_ratio,acknowledged,unexpected,\
         duplicated,recovered,reorders,scenario,seed,sim_seconds,passed"
    );
    assert_eq!(COMPARE_CSV_HEADER.join(","), lines[0]);

    let whole = &runs[0].1;
    let cols: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cols.len(), COMPARE_CSV_HEADER.len());
    assert_eq!(cols[0], "sim");
    assert_eq!(cols[1], "");
    assert_eq!(cols[2], whole.messages.attempted.to_string());
    assert_eq!(cols[3], whole.messages.delivered.to_string());
    assert_eq!(cols[4], whole.messages.lost.to_string());
    assert_eq!(
        cols[5],
        format!("{:.3}", whole.messages.delivered as f64 / whole.sim_seconds)
    );
    assert_eq!(
        cols[7],
        whole.latency_us.value_at_quantile(0.99).to_string()
    );
    assert_eq!(cols[9], whole.latency_us.max().to_string());
    assert_eq!(
        cols[10],
        whole.send_delay_us.value_at_quantile(0.99).to_string()
    );
    assert_eq!(cols[11], whole.failover_ms.len().to_string());
    assert_eq!(
        cols[12],
        whole.failover_ms.value_at_quantile(0.5).to_string()
    );
    assert_eq!(
        cols[13],
        whole.failover_ms.value_at_quantile(0.99).to_string()
    );
    let m = whole.mcollective.as_ref().unwrap();
    assert_eq!(
        cols[14],
        format!(
            "{:.4}",
            m.replies_received as f64 / m.replies_expected as f64
        )
    );
    // Requests sent while a fault window was open, counted by hand.
    let (mut expected, mut received) = (0, 0);
    for r in &m.per_request {
        if whole
            .faults
            .iter()
            .any(|f| r.sent_ms >= f.start_ms && f.end_ms.is_none_or(|e| r.sent_ms < e))
        {
            expected += r.expected;
            received += r.received;
        }
    }
    assert!(expected > 0 && received < expected, "{received}/{expected}");
    assert_eq!(
        cols[15],
        format!("{:.4}", received as f64 / expected as f64)
    );
    assert_eq!(cols[24], "false");
    // The label with a comma is quoted.
    assert!(lines[2].starts_with("\"activemq, half\",activemq tcp://127.0.0.1:61613,"));
}

#[test]
fn empty_runs_leave_percentile_cells_empty() {
    let text = compare_csv(&[("empty".to_string(), common::empty())]);
    let row = text.lines().nth(1).unwrap();
    assert_eq!(
        row,
        "empty,,0,0,0,0.000,,,,,,0,,,,,0,0,0,0,0,empty,0,0.000,true"
    );
}

#[test]
fn compare_html_has_one_series_per_run_and_ratios() {
    let runs = runs();
    let dir = scratch("html");
    let written = write_comparison(&runs, &dir).unwrap();
    assert_eq!(written, [dir.join("compare.html"), dir.join("compare.csv")]);
    let html = fs::read_to_string(dir.join("compare.html")).unwrap();
    let charts = html.matches("<figure class=\"chart\"").count();
    assert_eq!(
        charts, 5,
        "latency, throughput, connected, distribution, failover"
    );
    assert_eq!(html.matches("<svg").count(), charts);
    // Each run's label appears in the legends of every chart and in the tables.
    assert!(html.matches("activemq, half").count() >= 5 + 3);
    assert!(html.contains("sim p99"));
    assert!(html.contains("activemq tcp://127.0.0.1:61613"));
    // Half the fleet: half the attempts, as a ratio against the first run.
    assert!(html.contains("12000 <span class=\"ratio\">×0.50</span>"));
    assert!(html.contains("crash broker-2"));
    assert!(!html.contains("<script"));
    // The failover table: counts, percentiles and reply coverage during the faults.
    assert!(html.contains("<h2 id=\"failover\">Failover</h2>"));
    let reply = format!(
        "{:.2}%",
        runs[0].1.mco_reply_ratio_during_faults().unwrap() * 100.0
    );
    assert!(
        html.contains(&format!("<td class=\"num\">{reply}</td>")),
        "{reply}"
    );

    // Deterministic.
    let again = scratch("html-again");
    write_comparison(&runs, &again).unwrap();
    for f in ["compare.html", "compare.csv"] {
        assert!(
            fs::read(dir.join(f)).unwrap() == fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn fault_windows_of_only_some_runs_name_those_runs() {
    let mut runs = runs();
    runs[1].1.faults.truncate(1);
    let dir = scratch("bands");
    write_comparison(&runs, &dir).unwrap();
    let html = fs::read_to_string(dir.join("compare.html")).unwrap();
    assert!(html.contains("partition broker-1 | broker-3 [sim]"));
    assert!(!html.contains("crash broker-2 [sim]"));
}

#[test]
fn comparison_of_empty_reports_does_not_panic() {
    let dir = scratch("empty");
    write_comparison(
        &[
            ("a".to_string(), common::empty()),
            ("b".to_string(), common::empty()),
        ],
        &dir,
    )
    .unwrap();
    let html = fs::read_to_string(dir.join("compare.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
    write_comparison(&[], &scratch("none")).unwrap();
}
