//! Producers and consumers in stomp-benchmark's terms: N producers on an open-loop
//! schedule (each message has an intended send time; latency is measured from it, so a
//! stalled producer cannot hide latency), M consumers with an ack mode, optional receipts.
//!
//! Each message carries `x-sim-id` (unique) and `x-sim-seq` (per producer) headers so the
//! checker can find losses, duplicates and reorders. In live runs it also carries
//! `x-sim-run` (the run's tag): a consumer ignores messages with another tag, which an
//! earlier run left in a durable queue, and counts them as stale.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stampede_broker::client::{SendOutcome as Outcome, SubscribeSpec};
use stampede_broker::proto::Headers;
use tokio::sync::Semaphore;

use super::{ClientSpec, Env, Host, client_config, record_path, start_client};
use stampede_broker::client::ClientConfig;

use crate::history::{ClientId, DeliveryRecord, Recorder, Role, SendOutcome, SendRecord};
use crate::scenario::{AckMode, QueueSpec};
use crate::seed;

/// Receipted SENDs one producer may have outstanding before its schedule slips.
const INFLIGHT_SENDS_MAX: usize = 1024;
/// SENDs a producer queues at once when their times have come (without receipts they
/// share the client's writes, and each is settled when written).
const SEND_BATCH_MAX: usize = 64;

pub(super) fn build(
    workload: u16,
    spec: &QueueSpec,
    seed: u64,
    recorder: &Recorder,
    duration: Duration,
    env: &Env,
    hosts: &mut Vec<Host>,
) -> anyhow::Result<()> {
    let topic = spec.destination.starts_with("/topic/");
    if let Some(why) = env
        .dialect
        .queue_unsupported(&spec.destination, spec.ack == AckMode::Auto)
    {
        anyhow::bail!("workload '{}': {why}", spec.name);
    }
    // One client per producer and consumer, each with its own seed stream.
    let client =
        |role: Role, name: String, pool: &[String]| -> anyhow::Result<(ClientId, ClientConfig)> {
            let id = recorder.register(name.clone(), role, pool.to_vec());
            let config = client_config(
                env,
                ClientSpec {
                    pool,
                    policy: spec.policy,
                    reconnect: &spec.reconnect,
                    heartbeat_s: spec.heartbeat_s,
                    heartbeat_read_timeout: true,
                    seed: seed::derive(seed, &format!("queue/{name}")),
                },
            )?;
            Ok((id, config))
        };
    let mut consumers = Vec::new();
    for i in 0..spec.consumers {
        let name = format!("{}-consumer-{i}", spec.name);
        let (id, config) = client(Role::Consumer, name, &spec.consumer_servers)?;
        recorder
            .lock()
            .consumers_by_workload
            .entry(workload)
            .or_default()
            .push(id);
        consumers.push((id, config));
    }
    let mut producers = Vec::new();
    for i in 0..spec.producers {
        let name = format!("{}-producer-{i}", spec.name);
        let (id, config) = client(Role::Producer, name, &spec.producer_servers)?;
        producers.push((i, id, config));
    }
    let spec = Arc::new(spec.clone());
    let recorder = recorder.clone();
    let stop = spec
        .stop_s
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| duration.saturating_sub(Duration::from_secs(10)));
    let host = spec.name.clone();
    let net = env.net.clone();
    let dialect = env.dialect;
    let run_tag: Option<Arc<str>> = env.run_tag.as_deref().map(Arc::from);
    let timebase = recorder.timebase();
    let consumer_start = Duration::from_secs_f64(spec.consumer_start_s);
    hosts.push(Host::new(host, async move {
        // Consumers subscribe at once, or from their own task at `consumer_start_s`
        // (producers start on their own schedule either way).
        let start_consumers = {
            let (net, recorder, spec, run_tag) =
                (net.clone(), recorder.clone(), spec.clone(), run_tag.clone());
            async move {
                for (id, config) in consumers {
                    let (client, mut messages) = start_client(dialect, &net, config, &recorder, id);
                    let ack = spec.ack;
                    let sub = SubscribeSpec::new(spec.destination.clone())
                        .id("0")
                        .ack(ack);
                    let _ = client.subscribe(sub).await;
                    let recorder = recorder.clone();
                    let run_tag = run_tag.clone();
                    stampede_broker::task::spawn(async move {
                        while let Some(msg) = messages.recv().await {
                            record_path(&recorder, id, &client, &msg);
                            let stale = match (&run_tag, msg.header("x-sim-run")) {
                                (Some(ours), theirs) => theirs != Some(&**ours),
                                (None, _) => false,
                            };
                            let id_header =
                                msg.header("x-sim-id").and_then(|v| v.parse::<u64>().ok());
                            if stale {
                                recorder.lock().stale += 1;
                            } else if let Some(mid) = id_header {
                                recorder.lock().deliveries.push(DeliveryRecord {
                                    id: mid,
                                    consumer: id,
                                    at_us: timebase.now_us(),
                                    redelivered: msg.header("redelivered") == Some("true"),
                                });
                            }
                            if ack != AckMode::Auto {
                                let _ = client.ack(&msg).await;
                            }
                        }
                    });
                }
            }
        };
        if consumer_start.is_zero() {
            start_consumers.await;
        } else {
            stampede_broker::task::spawn(async move {
                timebase.sleep_until(consumer_start).await;
                start_consumers.await;
            });
        }
        for (index, id, config) in producers {
            let (client, _messages) = start_client(dialect, &net, config, &recorder, id);
            let spec = spec.clone();
            let recorder = recorder.clone();
            let run_tag = run_tag.clone();
            stampede_broker::task::spawn(async move {
                let interval = Duration::from_secs_f64(1.0 / spec.rate_per_s);
                let start = Duration::from_secs_f64(spec.start_s);
                let inflight = Arc::new(Semaphore::new(INFLIGHT_SENDS_MAX));
                let payload = Bytes::from(vec![b'x'; spec.message_bytes]);
                let mut seq = 0u64;
                let mut batch = Vec::with_capacity(SEND_BATCH_MAX);
                'schedule: loop {
                    let intended = start + interval.mul_f64(seq as f64);
                    if intended >= stop {
                        break;
                    }
                    timebase.sleep_until(intended).await;
                    // Every message whose time has come goes now: SENDs queued together
                    // leave in one write, as a real producer's timer tick would send them.
                    let now = Duration::from_micros(timebase.now_us());
                    for taken in 0..SEND_BATCH_MAX {
                        let intended = start + interval.mul_f64(seq as f64);
                        if intended >= stop || (taken > 0 && intended > now) {
                            break;
                        }
                        // Unique in the run: workload, producer, sequence number.
                        let mid = (u64::from(workload) << 48) | (u64::from(index) << 32) | seq;
                        let mut headers = Headers::new();
                        headers.push("x-sim-id", mid.to_string());
                        headers.push("x-sim-seq", seq.to_string());
                        if let Some(tag) = &run_tag {
                            headers.push("x-sim-run", tag.to_string());
                        }
                        if spec.persistent {
                            headers.push("persistent", "true");
                        }
                        let record_index = {
                            let mut h = recorder.lock();
                            h.sends.push(SendRecord {
                                id: mid,
                                producer: id,
                                seq,
                                intended_us: intended.as_micros() as u64,
                                sent_us: None,
                                settled_us: None,
                                outcome: SendOutcome::Pending,
                                topic,
                                workload,
                            });
                            h.sends.len() - 1
                        };
                        seq += 1;
                        if spec.receipts {
                            let Ok(permit) = inflight.clone().acquire_owned().await else {
                                break 'schedule;
                            };
                            let client = client.clone();
                            let recorder = recorder.clone();
                            let dest = spec.destination.clone();
                            let payload = payload.clone();
                            stampede_broker::task::spawn(async move {
                                let sent_at = timebase.now_us();
                                let outcome =
                                    client.send_with_receipt(&dest, headers, payload).await;
                                let settled = timebase.now_us();
                                let mut h = recorder.lock();
                                let r = &mut h.sends[record_index];
                                r.sent_us = Some(sent_at);
                                r.settled_us = Some(settled);
                                r.outcome = match outcome {
                                    Outcome::Confirmed => SendOutcome::Confirmed,
                                    Outcome::Failed(_) => SendOutcome::Failed,
                                    Outcome::Indeterminate => SendOutcome::Indeterminate,
                                };
                                drop(permit);
                            });
                        } else {
                            let pending = client
                                .send_queued(&spec.destination, headers, payload.clone())
                                .await;
                            batch.push((record_index, pending));
                        }
                    }
                    // Then each SEND of the batch is settled once written (or failed).
                    for (record_index, pending) in batch.drain(..) {
                        let result = pending.written().await;
                        let mut h = recorder.lock();
                        let r = &mut h.sends[record_index];
                        r.sent_us = Some(timebase.now_us());
                        r.outcome = if result.is_ok() {
                            SendOutcome::Written
                        } else {
                            SendOutcome::Failed
                        };
                    }
                }
            });
        }
        timebase.sleep_until(duration).await;
    }));
    Ok(())
}
