//! The CSV files: `timeseries.csv`, `mcollective.csv` and `compare.csv`, written and read
//! with the `csv` crate through serde records.
//!
//! All three are RFC 4180: comma-separated, `\n` line ends, a field is quoted with `"`
//! (and inner quotes doubled) only when it holds a comma, a quote or a line break. The
//! first line is the header, written even when there are no rows. [`read_timeseries`] and
//! [`read_mcollective`] let [`crate::read_report`] rebuild a report.

use serde::{Deserialize, Serialize};

use crate::model::{Failover, McoRequest, RunReport, SecondSample};
use crate::stats::HistogramStats;

/// A line number (1-based) and what is wrong there.
pub(crate) type ReadError = (usize, String);

/// Writes `header` and then every record of `rows`, one line each, and returns the text.
pub(crate) fn write_rows<H, R>(header: &[H], rows: impl IntoIterator<Item = R>) -> String
where
    H: AsRef<str>,
    R: Serialize,
{
    let mut out = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let written = out
        .write_record(header.iter().map(AsRef::as_ref))
        .and_then(|()| rows.into_iter().try_for_each(|row| out.serialize(row)));
    // Writing to memory fails only when a record cannot be serialized, which the record
    // types of this module rule out.
    written.expect("CSV records serialize");
    let bytes = out.into_inner().expect("writing to memory cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

/// The records of `text` after checking its header with `check_header`; the header's own
/// line is the first.
fn records(
    text: &str,
    check_header: impl FnOnce(&csv::StringRecord) -> Result<(), String>,
) -> Result<Vec<csv::StringRecord>, ReadError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut all = reader.records();
    match all.next() {
        Some(Ok(header)) => check_header(&header).map_err(|m| (line_of(&header), m))?,
        Some(Err(e)) => return Err(error_at(&e)),
        None => return Err((1, "missing header".into())),
    }
    all.map(|r| r.map_err(|e| error_at(&e))).collect()
}

/// The line `record` starts on.
fn line_of(record: &csv::StringRecord) -> usize {
    record.position().map_or(0, |p| p.line() as usize)
}

/// A reader error with its line.
fn error_at(e: &csv::Error) -> ReadError {
    let line = e.position().map_or(0, |p| p.line() as usize);
    (line, e.to_string())
}

/// Deserializes `record`, whose columns are named by `header`, checking its width first.
fn deserialize<'r, T: Deserialize<'r>>(
    record: &'r csv::StringRecord,
    header: &[String],
) -> Result<T, ReadError> {
    let line = line_of(record);
    if record.len() != header.len() {
        return Err((
            line,
            format!("{} fields, expected {}", record.len(), header.len()),
        ));
    }
    record.deserialize(None).map_err(|e| {
        let message = match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => {
                let i = err.field().map_or(0, |i| i as usize);
                let column = header.get(i).map_or("?", String::as_str);
                let cell = record.get(i).unwrap_or("");
                format!("column {column}: {}: {cell:?}", err.kind())
            }
            _ => e.to_string(),
        };
        (line, message)
    })
}

/// Parses rows of a file whose header must be exactly `header`, each as a `T`.
fn read_fixed<T: serde::de::DeserializeOwned>(
    text: &str,
    header: &[&str],
) -> Result<Vec<T>, ReadError> {
    let names: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let records = records(text, |found| {
        if found.iter().eq(header.iter().copied()) {
            Ok(())
        } else {
            let found: Vec<&str> = found.iter().collect();
            Err(format!("unexpected header {found:?}"))
        }
    })?;
    records.iter().map(|r| deserialize(r, &names)).collect()
}

/// Columns of `timeseries.csv` before the per-broker ones.
pub(crate) const TIMESERIES_LEADING: [&str; 8] = [
    "t_s",
    "attempted",
    "delivered",
    "lost",
    "latency_p50_us",
    "latency_p99_us",
    "latency_max_us",
    "mco_replies",
];

/// The last column of `timeseries.csv`.
pub(crate) const TIMESERIES_TRAILING: &str = "in_fault";

/// The header of `timeseries.csv` for these brokers.
pub(crate) fn timeseries_header(brokers: &[String]) -> Vec<String> {
    let mut h: Vec<String> = TIMESERIES_LEADING.iter().map(|s| s.to_string()).collect();
    h.extend(brokers.iter().map(|b| format!("connected_{b}")));
    h.push(TIMESERIES_TRAILING.to_string());
    h
}

/// The rows of `report.seconds` in increasing `t_s` (ties keep their order).
pub(crate) fn seconds_in_order(report: &RunReport) -> Vec<&SecondSample> {
    let mut rows: Vec<&SecondSample> = report.seconds.iter().collect();
    rows.sort_by_key(|s| s.t_s);
    rows
}

/// Labels of the fault windows active during second `t_s`, in `report.faults` order,
/// without repeats.
pub(crate) fn faults_in_second(report: &RunReport, t_s: u64) -> Vec<&str> {
    let from = t_s.saturating_mul(1000);
    let to = from.saturating_add(1000);
    let mut labels: Vec<&str> = Vec::new();
    for f in &report.faults {
        if f.overlaps(from, to) && !labels.contains(&f.label.as_str()) {
            labels.push(&f.label);
        }
    }
    labels
}

/// One row of `timeseries.csv` as written; the `connected` values are one column each.
#[derive(Serialize)]
struct TimeseriesRecord {
    t_s: u64,
    attempted: u64,
    delivered: u64,
    lost: u64,
    latency_p50_us: Option<u64>,
    latency_p99_us: Option<u64>,
    latency_max_us: Option<u64>,
    mco_replies: u64,
    connected: Vec<Option<u64>>,
    in_fault: String,
}

/// `timeseries.csv`: one row per second. Latency cells are empty in seconds without
/// deliveries; a `connected_*` cell is empty when the sample has fewer values than there
/// are brokers (extra values are not written).
pub(crate) fn timeseries(report: &RunReport) -> String {
    let rows = seconds_in_order(report).into_iter().map(|s| {
        let latency = (!s.latency.is_empty()).then(|| HistogramStats::of(&s.latency));
        TimeseriesRecord {
            t_s: s.t_s,
            attempted: s.attempted,
            delivered: s.delivered,
            lost: s.lost,
            latency_p50_us: latency.as_ref().map(|st| st.p50),
            latency_p99_us: latency.as_ref().map(|st| st.p99),
            latency_max_us: latency.as_ref().map(|st| st.max),
            mco_replies: s.mco_replies,
            connected: (0..report.brokers.len())
                .map(|i| s.connected.get(i).copied())
                .collect(),
            in_fault: faults_in_second(report, s.t_s).join(";"),
        }
    });
    write_rows(&timeseries_header(&report.brokers), rows)
}

/// One row of `timeseries.csv` as read: latency comes from `histograms.json` instead,
/// and `rest` holds the `connected_*` cells and then `in_fault`.
#[derive(Deserialize)]
struct TimeseriesInput {
    t_s: u64,
    attempted: u64,
    delivered: u64,
    lost: u64,
    _latency_p50_us: serde::de::IgnoredAny,
    _latency_p99_us: serde::de::IgnoredAny,
    _latency_max_us: serde::de::IgnoredAny,
    mco_replies: u64,
    rest: Vec<String>,
}

/// One parsed `timeseries.csv` row; the latency histogram comes from `histograms.json`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimeseriesRow {
    pub(crate) t_s: u64,
    pub(crate) attempted: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) mco_replies: u64,
    pub(crate) connected: Vec<u64>,
}

/// Parses `timeseries.csv` written for `brokers`.
pub(crate) fn read_timeseries(
    text: &str,
    brokers: &[String],
) -> Result<Vec<TimeseriesRow>, ReadError> {
    let expected = timeseries_header(brokers);
    let records = records(text, |header| {
        if header.iter().eq(expected.iter().map(String::as_str)) {
            Ok(())
        } else {
            let header: Vec<&str> = header.iter().collect();
            Err(format!(
                "header {header:?} does not match the brokers in summary.json: expected {expected:?}"
            ))
        }
    })?;
    let mut rows = Vec::with_capacity(records.len());
    for record in &records {
        let row: TimeseriesInput = deserialize(record, &expected)?;
        let mut connected = Vec::new();
        for (i, cell) in row.rest.iter().take(brokers.len()).enumerate() {
            if cell.is_empty() {
                break;
            }
            let column = &expected[TIMESERIES_LEADING.len() + i];
            let value = cell
                .parse::<u64>()
                .map_err(|e| (line_of(record), format!("column {column}: {e}: {cell:?}")))?;
            connected.push(value);
        }
        rows.push(TimeseriesRow {
            t_s: row.t_s,
            attempted: row.attempted,
            delivered: row.delivered,
            lost: row.lost,
            mco_replies: row.mco_replies,
            connected,
        });
    }
    Ok(rows)
}

/// Columns of `failovers.csv`.
pub(crate) const FAILOVERS_HEADER: [&str; 11] = [
    "client",
    "from",
    "to",
    "down_ms",
    "connected_ms",
    "up_ms",
    "failover_ms",
    "attempts",
    "failed",
    "waited_ms",
    "first_failure",
];

/// One row of `failovers.csv`; `failover_ms` is derived (`up_ms - down_ms`) and not read
/// back.
#[derive(Serialize, Deserialize)]
struct FailoverRecord {
    client: String,
    from: String,
    to: String,
    down_ms: u64,
    connected_ms: Option<u64>,
    up_ms: Option<u64>,
    failover_ms: Option<u64>,
    attempts: u32,
    failed: u32,
    waited_ms: u64,
    first_failure: String,
}

/// `failovers.csv`: one row per failover, in the report's order.
pub(crate) fn failovers(rows: &[Failover]) -> String {
    let records = rows.iter().map(|f| FailoverRecord {
        client: f.client.clone(),
        from: f.from.clone(),
        to: f.to.clone(),
        down_ms: f.down_ms,
        connected_ms: f.connected_ms,
        up_ms: f.up_ms,
        failover_ms: f.up_ms.map(|up| up.saturating_sub(f.down_ms)),
        attempts: f.attempts,
        failed: f.failed,
        waited_ms: f.waited_ms,
        first_failure: f.first_failure.clone(),
    });
    write_rows(&FAILOVERS_HEADER, records)
}

/// Parses `failovers.csv`.
pub(crate) fn read_failovers(text: &str) -> Result<Vec<Failover>, ReadError> {
    let rows: Vec<FailoverRecord> = read_fixed(text, &FAILOVERS_HEADER)?;
    Ok(rows
        .into_iter()
        .map(|r| Failover {
            client: r.client,
            from: r.from,
            to: r.to,
            down_ms: r.down_ms,
            connected_ms: r.connected_ms,
            up_ms: r.up_ms,
            attempts: r.attempts,
            failed: r.failed,
            waited_ms: r.waited_ms,
            first_failure: r.first_failure,
        })
        .collect())
}

/// Columns of `mcollective.csv`.
pub(crate) const MCO_HEADER: [&str; 6] = [
    "request_id",
    "sent_ms",
    "expected",
    "received",
    "first_reply_ms",
    "last_reply_ms",
];

/// One row of `mcollective.csv`; reply times are empty when no reply came.
#[derive(Serialize, Deserialize)]
struct McoRecord {
    request_id: String,
    sent_ms: u64,
    expected: u64,
    received: u64,
    first_reply_ms: Option<u64>,
    last_reply_ms: Option<u64>,
}

/// `mcollective.csv`: one row per request in `per_request` order; reply times are empty
/// when no reply came.
pub(crate) fn mcollective(rows: &[McoRequest]) -> String {
    let records = rows.iter().map(|r| McoRecord {
        request_id: r.request_id.clone(),
        sent_ms: r.sent_ms,
        expected: r.expected,
        received: r.received,
        first_reply_ms: r.first_reply_ms,
        last_reply_ms: r.last_reply_ms,
    });
    write_rows(&MCO_HEADER, records)
}

/// Parses `mcollective.csv`.
pub(crate) fn read_mcollective(text: &str) -> Result<Vec<McoRequest>, ReadError> {
    let rows: Vec<McoRecord> = read_fixed(text, &MCO_HEADER)?;
    Ok(rows
        .into_iter()
        .map(|r| McoRequest {
            request_id: r.request_id,
            sent_ms: r.sent_ms,
            expected: r.expected,
            received: r.received,
            first_reply_ms: r.first_reply_ms,
            last_reply_ms: r.last_reply_ms,
        })
        .collect())
}

/// `broker_cpu.csv`: one row per second, `t_s` then the CPU time (µs) of each broker of
/// [`RunReport::broker_cpu`] in that second.
pub(crate) fn broker_cpu(report: &RunReport) -> String {
    let mut header = vec!["t_s".to_string()];
    header.extend(
        report
            .broker_cpu
            .iter()
            .map(|c| format!("cpu_us_{}", c.broker)),
    );
    let seconds = report
        .broker_cpu
        .iter()
        .map(|c| c.per_second_us.len())
        .max()
        .unwrap_or(0);
    let rows = (0..seconds).map(|t| {
        let mut row = vec![t as u64];
        row.extend(
            report
                .broker_cpu
                .iter()
                .map(|c| c.per_second_us.get(t).copied().unwrap_or(0)),
        );
        row
    });
    write_rows(&header, rows)
}

/// Parses `broker_cpu.csv` into each broker's per-second CPU time (µs), in the order of
/// `brokers`; a header that names other brokers is an error.
pub(crate) fn read_broker_cpu(
    text: &str,
    brokers: &[String],
) -> Result<Vec<Vec<u64>>, (usize, String)> {
    let mut expected = vec!["t_s".to_string()];
    expected.extend(brokers.iter().map(|b| format!("cpu_us_{b}")));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    if !header
        .iter()
        .copied()
        .eq(expected.iter().map(String::as_str))
    {
        return Err((
            1,
            format!("header {header:?} does not match: expected {expected:?}"),
        ));
    }
    let mut out = vec![Vec::new(); brokers.len()];
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != expected.len() {
            return Err((
                n + 2,
                format!("{} cells, expected {}", cells.len(), expected.len()),
            ));
        }
        for (i, cell) in cells.iter().skip(1).enumerate() {
            let v = cell
                .parse::<u64>()
                .map_err(|e| (n + 2, format!("column {}: {e}: {cell:?}", expected[i + 1])))?;
            out[i].push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Cells<'a>(&'a str, &'a str, &'a str, &'a str, &'a str);

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let text = write_rows(
            &["a", "b", "c", "d", "e"],
            [Cells("plain", "a,b", "say \"hi\"", "two\nlines", "")],
        );
        assert_eq!(
            text,
            "a,b,c,d,e\nplain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\n"
        );
        let read = records(&text, |_| Ok(())).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(line_of(&read[0]), 2);
        let cells: Vec<&str> = read[0].iter().collect();
        assert_eq!(cells, ["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
    }

    #[test]
    fn a_header_without_rows_is_written() {
        assert_eq!(mcollective(&[]), format!("{}\n", MCO_HEADER.join(",")));
        assert_eq!(read_mcollective(&mcollective(&[])).unwrap(), vec![]);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line_and_column() {
        let header = MCO_HEADER.join(",");
        let text = format!("{header}\nr1,1,2,2,,\nr2,x,2,2,,\n");
        let (line, message) = read_mcollective(&text).unwrap_err();
        assert_eq!(line, 3);
        assert!(message.starts_with("column sent_ms: "), "{message}");
        let text = format!("{header}\nr1,1,2\n");
        assert_eq!(
            read_mcollective(&text).unwrap_err(),
            (2, "3 fields, expected 6".to_string())
        );
        assert_eq!(read_mcollective("").unwrap_err().0, 1);
        assert_eq!(read_mcollective("a,b\n").unwrap_err().0, 1);
    }

    #[test]
    fn failovers_round_trip_with_the_derived_duration() {
        let rows = vec![
            Failover {
                client: "rack-1/node-3".into(),
                from: "broker-2".into(),
                to: "broker-3".into(),
                down_ms: 100_000,
                connected_ms: Some(100_140),
                up_ms: Some(100_150),
                attempts: 4,
                failed: 3,
                waited_ms: 70,
                first_failure: "connect failed: refused, try again".into(),
            },
            Failover {
                client: "mco-2".into(),
                from: "broker-2".into(),
                down_ms: 100_001,
                attempts: 9,
                failed: 9,
                ..Failover::default()
            },
        ];
        let text = failovers(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], FAILOVERS_HEADER.join(","));
        assert_eq!(
            lines[1],
            "rack-1/node-3,broker-2,broker-3,100000,100140,100150,150,4,3,70,\"connect failed: refused, try again\""
        );
        assert_eq!(lines[2], "mco-2,broker-2,,100001,,,,9,9,0,");
        assert_eq!(read_failovers(&text).unwrap(), rows);
        let (line, _) = read_failovers("client,from\n").unwrap_err();
        assert_eq!(line, 1);
    }

    #[test]
    fn mcollective_round_trips() {
        let rows = vec![
            McoRequest {
                request_id: "req,1".into(),
                sent_ms: 10,
                expected: 3,
                received: 2,
                first_reply_ms: Some(12),
                last_reply_ms: Some(40),
            },
            McoRequest {
                request_id: "req-2".into(),
                sent_ms: 20,
                expected: 3,
                received: 0,
                first_reply_ms: None,
                last_reply_ms: None,
            },
        ];
        let text = mcollective(&rows);
        assert!(
            text.starts_with("request_id,sent_ms,expected,received,first_reply_ms,last_reply_ms\n")
        );
        assert!(text.contains("\"req,1\",10,3,2,12,40\n"));
        assert!(text.contains("req-2,20,3,0,,\n"));
        assert_eq!(read_mcollective(&text).unwrap(), rows);
    }
}
