//! The Prometheus endpoint: `GET /metrics` on `[metrics] listen`, in the text exposition
//! format (version 0.0.4), over the same [`Net`](crate::net::Net) seam as STOMP.
//!
//! Counters and gauges come from the core's [`Stats`] as the core task last published
//! them (at most `STATS_PERIOD` old), bytes from the connection tasks' [`Traffic`], and
//! the depth of every queue from the core task on request. The endpoint is a minimal
//! HTTP/1.1 server: one request per connection, bounded in size and time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Event, StatsHandle};
use crate::core::{QueueDepth, Stats};
use crate::net::{BoxStream, Listener};

/// Bytes of an HTTP request the endpoint reads before it gives up on it.
const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long a scraper may take to send its request and read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes answered at once; more wait for their turn.
const SCRAPES_CONCURRENT_MAX: usize = 4;

/// Bytes read from and written to STOMP connections, counted by their tasks.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
}

impl Traffic {
    pub(super) fn read(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn wrote(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What the endpoint needs from the rest of the server.
pub(super) struct Sources {
    pub(super) stats: StatsHandle,
    pub(super) traffic: Arc<Traffic>,
    pub(super) inbox: mpsc::Sender<Event>,
    pub(super) broker_name: String,
}

/// Serves scrapes until the listener fails for good or the task is aborted.
pub(super) async fn serve(mut listener: Box<dyn Listener>, sources: Arc<Sources>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(SCRAPES_CONCURRENT_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let sources = sources.clone();
        crate::task::spawn(async move {
            let answered = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &sources)).await;
            if !matches!(answered, Ok(Ok(()))) {
                tracing::debug!(%peer, "metrics request failed or timed out");
            }
            drop(permit);
        });
    }
}

/// Reads one request and answers it.
async fn answer(mut stream: BoxStream, sources: &Sources) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        if request.len() > REQUEST_BYTES_MAX {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            let depths = queue_depths(&sources.inbox).await;
            let body = render(
                &sources.broker_name,
                &sources.stats.get(),
                &sources.traffic,
                depths.as_deref(),
            );
            respond(&mut stream, "200 OK", &body).await
        }
        ("GET", _) => respond(&mut stream, "404 Not Found", "try /metrics\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "GET only\n").await,
    }
}

/// Asks the core task for every queue's depth; `None` when it is busy or stopping.
async fn queue_depths(inbox: &mpsc::Sender<Event>) -> Option<Vec<QueueDepth>> {
    let (reply, answer) = oneshot::channel();
    inbox.try_send(Event::QueueDepths { reply }).ok()?;
    tokio::time::timeout(Duration::from_secs(2), answer)
        .await
        .ok()?
        .ok()
}

async fn respond(stream: &mut BoxStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The exposition text. Every family has HELP and TYPE lines and the `broker` label.
pub(super) fn render(
    broker: &str,
    stats: &Stats,
    traffic: &Traffic,
    depths: Option<&[QueueDepth]>,
) -> String {
    let broker = escape_label(broker);
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP stampede_{name} {help}");
        let _ = writeln!(out, "# TYPE stampede_{name} {kind}");
        let _ = writeln!(out, "stampede_{name}{{broker=\"{broker}\"}} {value}");
    };
    let s = stats;
    let counters: [(&str, &str, u64); 20] = [
        (
            "connections_opened_total",
            "Connections accepted.",
            s.connections_opened,
        ),
        (
            "connections_refused_total",
            "Connections refused by connections_max or the unauthenticated caps.",
            s.connections_refused,
        ),
        (
            "sessions_connected_total",
            "Sessions that completed CONNECT.",
            s.sessions_connected,
        ),
        (
            "messages_received_total",
            "SEND frames accepted (transactional ones when committed).",
            s.messages_received,
        ),
        (
            "messages_delivered_total",
            "MESSAGE frames emitted.",
            s.messages_delivered,
        ),
        (
            "messages_expired_total",
            "Messages dropped because they expired.",
            s.messages_expired,
        ),
        (
            "messages_redelivered_total",
            "Deliveries that were redeliveries.",
            s.messages_redelivered,
        ),
        (
            "messages_dead_lettered_total",
            "Messages moved to the dead-letter queue.",
            s.messages_dead_lettered,
        ),
        (
            "messages_discarded_total",
            "Messages dropped as RabbitMQ drops them (refused, or sent to a missing queue).",
            s.messages_discarded,
        ),
        (
            "messages_dropped_slow_total",
            "Topic messages dropped for slow consumers.",
            s.messages_dropped_slow,
        ),
        (
            "slow_consumer_disconnects_total",
            "Connections closed by the slow-consumer policy.",
            s.slow_consumer_disconnects,
        ),
        (
            "sends_refused_total",
            "SENDs refused (authorization, full queue).",
            s.sends_refused,
        ),
        (
            "sends_blocked_total",
            "SENDs that waited for room (producer flow control).",
            s.sends_blocked,
        ),
        ("errors_sent_total", "ERROR frames sent.", s.errors_sent),
        (
            "security_reloads_total",
            "Users, groups and authorization reloaded (SIGHUP).",
            s.security_reloads,
        ),
        (
            "vhost_reloads_total",
            "Virtual hosts, exchanges and queues reloaded (SIGHUP).",
            s.vhost_reloads,
        ),
        (
            "heartbeat_timeouts_total",
            "Connections closed for missing heart-beats.",
            s.heartbeat_timeouts,
        ),
        (
            "messages_forwarded_total",
            "Messages emitted to network (demand) subscriptions.",
            s.messages_forwarded,
        ),
        (
            "network_duplicates_dropped_total",
            "Messages from bridges dropped as duplicates.",
            s.network_duplicates_dropped,
        ),
        (
            "bytes_received_total",
            "Bytes read from STOMP connections.",
            traffic.bytes_in.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        family(name, "counter", help, value);
    }
    family(
        "bytes_sent_total",
        "counter",
        "Bytes written to STOMP connections.",
        traffic.bytes_out.load(Ordering::Relaxed),
    );
    let gauges: [(&str, &str, u64); 8] = [
        (
            "memory_used_bytes",
            "Bytes held in messages and partial frames (limit: limits.memory_bytes_max).",
            s.memory_used_bytes,
        ),
        (
            "producers_blocked",
            "Connections whose SEND waits for room now.",
            s.producers_blocked_current,
        ),
        ("connections", "Connections open.", s.connections_current),
        (
            "connections_unauthenticated",
            "Connections open that have not completed CONNECT.",
            s.connections_unauthenticated,
        ),
        (
            "subscriptions",
            "Subscriptions open, network subscriptions included.",
            s.subscriptions_current,
        ),
        (
            "network_subscriptions",
            "Network (demand) subscriptions open.",
            s.network_subscriptions_current,
        ),
        ("queues", "Queues that exist.", s.queues_current),
        (
            "queued_messages",
            "Messages waiting in queues.",
            s.queued_current,
        ),
    ];
    for (name, help, value) in gauges {
        family(name, "gauge", help, value);
    }
    for (kind, value) in s.work.counts() {
        let _ = writeln!(
            out,
            "# HELP stampede_work_{kind}_total Core work: {kind} (the cost model's operations)."
        );
        let _ = writeln!(out, "# TYPE stampede_work_{kind}_total counter");
        let _ = writeln!(
            out,
            "stampede_work_{kind}_total{{broker=\"{broker}\"}} {value}"
        );
    }
    if let Some(depths) = depths {
        let _ = writeln!(
            out,
            "# HELP stampede_queue_messages Messages waiting in one queue."
        );
        let _ = writeln!(out, "# TYPE stampede_queue_messages gauge");
        for d in depths {
            let dest = escape_label(&d.destination);
            let _ = writeln!(
                out,
                "stampede_queue_messages{{broker=\"{broker}\",destination=\"{dest}\"}} {}",
                d.messages
            );
        }
        let _ = writeln!(
            out,
            "# HELP stampede_queue_consumers Consumers of one queue."
        );
        let _ = writeln!(out, "# TYPE stampede_queue_consumers gauge");
        for d in depths {
            let dest = escape_label(&d.destination);
            let _ = writeln!(
                out,
                "stampede_queue_consumers{{broker=\"{broker}\",destination=\"{dest}\"}} {}",
                d.consumers
            );
        }
    }
    out
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_and_escaped_labels() {
        let stats = Stats {
            messages_received: 7,
            connections_current: 3,
            ..Stats::default()
        };
        let traffic = Traffic::default();
        traffic.read(100);
        traffic.wrote(250);
        let depths = [QueueDepth {
            destination: "/queue/a\"b\\c".to_owned(),
            messages: 5,
            consumers: 2,
        }];
        let text = render("b-1", &stats, &traffic, Some(&depths));
        assert!(text.contains("# TYPE stampede_messages_received_total counter\n"));
        assert!(text.contains("stampede_messages_received_total{broker=\"b-1\"} 7\n"));
        assert!(text.contains("stampede_connections{broker=\"b-1\"} 3\n"));
        assert!(text.contains("stampede_bytes_received_total{broker=\"b-1\"} 100\n"));
        assert!(text.contains("stampede_bytes_sent_total{broker=\"b-1\"} 250\n"));
        assert!(text.contains(
            "stampede_queue_messages{broker=\"b-1\",destination=\"/queue/a\\\"b\\\\c\"} 5\n"
        ));
        assert!(text.contains(
            "stampede_queue_consumers{broker=\"b-1\",destination=\"/queue/a\\\"b\\\\c\"} 2\n"
        ));
        // Every sample line belongs to a family announced with HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
            assert!(text.contains(&format!("# HELP {name} ")), "{line}");
        }
    }
}
