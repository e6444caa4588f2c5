//! The broker's side of a live run: stampede-broker's Prometheus endpoint (`[metrics]
//! listen`), read before and after the run (`stampede load --metrics HOST:PORT`), so the
//! report sets the broker's own counts beside what the clients saw. Blocking std I/O: it
//! runs outside the load's runtime, before it starts and after it ends.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use anyhow::Context;
use stampede_reports::BrokerCounter;

/// How long one scrape may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics` from `addr` (`host:port`): the exposition text.
pub fn get(addr: &str) -> anyhow::Result<String> {
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("--metrics {addr}: not host:port"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--metrics {addr}: no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, TIMEOUT)
        .with_context(|| format!("cannot connect to the metrics endpoint {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .with_context(|| format!("writing to the metrics endpoint {addr}"))?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)
        .with_context(|| format!("reading the metrics endpoint {addr}"))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    anyhow::ensure!(
        text.starts_with("HTTP/1.") && text.contains(" 200 "),
        "{addr}/metrics answered {}",
        text.lines().next().unwrap_or("nothing")
    );
    Ok(text)
}

/// Every `stampede_*` sample of an exposition, by series: the name without `stampede_`,
/// and its labels other than `broker` (`queue_messages{destination="/queue/a"}`).
/// Samples of several brokers with one series are summed.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("stampede_") else {
            continue;
        };
        let Some((series, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let series = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or(labels);
                let kept: Vec<&str> = split_labels(labels)
                    .into_iter()
                    .filter(|l| !l.starts_with("broker="))
                    .collect();
                if kept.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}{{{}}}", kept.join(","))
                }
            }
            None => series.to_owned(),
        };
        *out.entry(series).or_insert(0.0) += value;
    }
    out
}

/// Splits `a="x",b="y,z"` at the commas between labels (not those inside quotes).
fn split_labels(labels: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        parts.push(&labels[start..]);
    }
    parts
}

/// Every series seen in either reading, in series order; one absent from a reading counts
/// as 0 there (a queue created or deleted during the run).
pub fn counters(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> Vec<BrokerCounter> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|series| BrokerCounter {
            series: series.clone(),
            before: before.get(series).copied().unwrap_or(0.0),
            after: after.get(series).copied().unwrap_or(0.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP stampede_messages_received_total SENDs.\n\
        # TYPE stampede_messages_received_total counter\n\
        stampede_messages_received_total{broker=\"b-1\"} 7\n\
        stampede_connections{broker=\"b-1\"} 3\n\
        stampede_queue_messages{broker=\"b-1\",destination=\"/queue/a,b\"} 5\n\
        other_metric 9\n";

    #[test]
    fn series_lose_the_prefix_and_the_broker_label_and_keep_the_others() {
        let m = parse(TEXT);
        assert_eq!(m.get("messages_received_total"), Some(&7.0));
        assert_eq!(m.get("connections"), Some(&3.0));
        assert_eq!(
            m.get("queue_messages{destination=\"/queue/a,b\"}"),
            Some(&5.0)
        );
        assert_eq!(m.len(), 3, "{m:?}");
    }

    #[test]
    fn counters_pair_the_readings_and_count_absent_series_as_zero() {
        let before = parse(TEXT);
        let after = parse(
            "stampede_messages_received_total{broker=\"b-1\"} 107\nstampede_connections{broker=\"b-1\"} 1\n",
        );
        let c = counters(&before, &after);
        let received = c
            .iter()
            .find(|c| c.series == "messages_received_total")
            .unwrap();
        assert_eq!(received.delta(), 100.0);
        assert!(received.is_counter());
        let conns = c.iter().find(|c| c.series == "connections").unwrap();
        assert!(!conns.is_counter());
        assert_eq!(conns.after, 1.0);
        let queue = c
            .iter()
            .find(|c| c.series.starts_with("queue_messages"))
            .unwrap();
        assert_eq!((queue.before, queue.after), (5.0, 0.0));
    }
}
