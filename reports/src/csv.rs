//! The CSV files: `timeseries.csv`, `mcollective.csv` and `compare.csv`.
//!
//! All three are RFC 4180: comma-separated, `\n` line ends, a field is quoted with `"`
//! (and inner quotes doubled) only when it holds a comma, a quote or a line break. The
//! first line is the header. A small reader for the first two lets
//! [`crate::read_report`] rebuild a report.

use std::borrow::Cow;

use crate::model::{McoRequest, RunReport, SecondSample};
use crate::stats::HistogramStats;

/// Quotes `s` if a CSV reader would otherwise split or misread it.
pub(crate) fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// Appends one CSV line made of `fields` to `out`.
pub(crate) fn push_row<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field(f.as_ref()));
    }
    out.push('\n');
}

/// A CSV record and the 1-based line it starts on.
pub(crate) type Record = (usize, Vec<String>);

/// Splits CSV text into records. Quoted fields may hold commas, doubled quotes and line
/// breaks. Returns the line and a message on malformed quoting.
pub(crate) fn parse(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut line = 1;
    let mut record_line = 1;
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    // Whether the current field was quoted, so that a quote may only close it.
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cur.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    cur.push(c);
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            '"' if cur.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            '"' => return Err((line, "stray quote inside an unquoted field".into())),
            ',' => {
                fields.push(std::mem::take(&mut cur));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut cur));
                quoted = false;
                records.push((record_line, std::mem::take(&mut fields)));
                line += 1;
                record_line = line;
            }
            _ if quoted => return Err((line, "text after a closing quote".into())),
            _ => cur.push(c),
        }
    }
    if in_quotes {
        return Err((line, "unterminated quoted field".into()));
    }
    if !cur.is_empty() || quoted || !fields.is_empty() {
        fields.push(cur);
        records.push((record_line, fields));
    }
    Ok(records)
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

/// `timeseries.csv`: one row per second. Latency cells are empty in seconds without
/// deliveries; a `connected_*` cell is empty when the sample has fewer values than there
/// are brokers (extra values are not written).
pub(crate) fn timeseries(report: &RunReport) -> String {
    let mut out = String::new();
    push_row(&mut out, &timeseries_header(&report.brokers));
    for s in seconds_in_order(report) {
        let mut row: Vec<String> = vec![
            s.t_s.to_string(),
            s.attempted.to_string(),
            s.delivered.to_string(),
            s.lost.to_string(),
        ];
        if s.latency.is_empty() {
            row.extend(["".to_string(), "".to_string(), "".to_string()]);
        } else {
            let st = HistogramStats::of(&s.latency);
            row.extend([st.p50.to_string(), st.p99.to_string(), st.max.to_string()]);
        }
        row.push(s.mco_replies.to_string());
        for i in 0..report.brokers.len() {
            row.push(s.connected.get(i).map(u64::to_string).unwrap_or_default());
        }
        row.push(faults_in_second(report, s.t_s).join(";"));
        push_row(&mut out, &row);
    }
    out
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
) -> Result<Vec<TimeseriesRow>, (usize, String)> {
    let records = parse(text)?;
    let mut it = records.into_iter();
    let expected = timeseries_header(brokers);
    match it.next() {
        Some((_, header)) if header == expected => {}
        Some((line, header)) => {
            return Err((
                line,
                format!(
                    "header {header:?} does not match the brokers in summary.json: expected {expected:?}"
                ),
            ));
        }
        None => return Err((1, "missing header".into())),
    }
    let mut rows = Vec::new();
    for (line, rec) in it {
        if rec.len() != expected.len() {
            return Err((
                line,
                format!("{} fields, expected {}", rec.len(), expected.len()),
            ));
        }
        let num = |i: usize| -> Result<u64, (usize, String)> {
            rec[i]
                .parse::<u64>()
                .map_err(|e| (line, format!("column {}: {e}: {:?}", expected[i], rec[i])))
        };
        let mut connected = Vec::new();
        for i in 0..brokers.len() {
            let col = TIMESERIES_LEADING.len() + i;
            if rec[col].is_empty() {
                break;
            }
            connected.push(num(col)?);
        }
        rows.push(TimeseriesRow {
            t_s: num(0)?,
            attempted: num(1)?,
            delivered: num(2)?,
            lost: num(3)?,
            mco_replies: num(7)?,
            connected,
        });
    }
    Ok(rows)
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

/// `mcollective.csv`: one row per request in `per_request` order; reply times are empty
/// when no reply came.
pub(crate) fn mcollective(rows: &[McoRequest]) -> String {
    let mut out = String::new();
    push_row(&mut out, &MCO_HEADER);
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        push_row(
            &mut out,
            &[
                r.request_id.clone(),
                r.sent_ms.to_string(),
                r.expected.to_string(),
                r.received.to_string(),
                opt(r.first_reply_ms),
                opt(r.last_reply_ms),
            ],
        );
    }
    out
}

/// Parses `mcollective.csv`.
pub(crate) fn read_mcollective(text: &str) -> Result<Vec<McoRequest>, (usize, String)> {
    let records = parse(text)?;
    let mut it = records.into_iter();
    match it.next() {
        Some((_, header)) if header == MCO_HEADER => {}
        Some((line, header)) => return Err((line, format!("unexpected header {header:?}"))),
        None => return Err((1, "missing header".into())),
    }
    let mut rows = Vec::new();
    for (line, rec) in it {
        if rec.len() != MCO_HEADER.len() {
            return Err((
                line,
                format!("{} fields, expected {}", rec.len(), MCO_HEADER.len()),
            ));
        }
        let num = |i: usize| -> Result<u64, (usize, String)> {
            rec[i]
                .parse::<u64>()
                .map_err(|e| (line, format!("column {}: {e}: {:?}", MCO_HEADER[i], rec[i])))
        };
        let opt = |i: usize| -> Result<Option<u64>, (usize, String)> {
            if rec[i].is_empty() {
                Ok(None)
            } else {
                num(i).map(Some)
            }
        };
        rows.push(McoRequest {
            request_id: rec[0].clone(),
            sent_ms: num(1)?,
            expected: num(2)?,
            received: num(3)?,
            first_reply_ms: opt(4)?,
            last_reply_ms: opt(5)?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        let fields = ["plain", "a,b", "say \"hi\"", "two\nlines", ""];
        let mut out = String::new();
        push_row(&mut out, &fields);
        push_row(&mut out, &["x"]);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\nx\n");
        let parsed = parse(&out).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].1, fields);
        assert_eq!(parsed[1], (3, vec!["x".to_string()]));
    }

    #[test]
    fn malformed_quotes_are_reported_with_their_line() {
        assert_eq!(parse("a,b\nc\"d\n").unwrap_err().0, 2);
        assert!(parse("\"open\n").is_err());
        assert!(parse("\"a\"b\n").is_err());
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
        assert!(text.contains("req-2,20,3,0,,\n"));
        assert_eq!(read_mcollective(&text).unwrap(), rows);
    }
}
