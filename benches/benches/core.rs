//! Core routing cost, sans-IO: frames in, outputs drained (and optionally encoded).
//!
//! - `topic_fanout/800`: one MCollective-sized broadcast to 800 subscribers, each on its
//!   own connection, as `mcollectived` nodes subscribe to `/topic/mcollective.*.agent`.
//! - `selector_queue/N`: one directed request to `/queue/mcollective.nodes` with N
//!   consumers each selecting `mc_identity = 'node-i'`; the equality index should make
//!   N = 800 cost about the same as N = 1.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stampede_benches::mcollective_send;
use stampede_broker::core::{Broker, ConnId, CoreConfig, OutFrame, Output};
use stampede_broker::proto::{Command, Frame, encode};
use stampede_broker::security::Security;

const T0: u64 = 1_795_437_413_000;

fn connect(broker: &mut Broker, id: u64) -> ConnId {
    let c = ConnId(id);
    broker.handle_open(T0, c, "bench");
    broker.handle_frame(
        T0,
        c,
        Frame::new(Command::Connect).header("host", "mcollective"),
    );
    drain(broker, None);
    c
}

/// Drains outputs, reports them flushed (so flow control never blocks), and encodes
/// them into `buf` when given. Returns the number of frames.
fn drain(broker: &mut Broker, mut buf: Option<&mut BytesMut>) -> usize {
    let mut n = 0;
    let mut flushed: Vec<ConnId> = Vec::new();
    while let Some(out) = broker.poll_output() {
        if let Output::Send {
            conn,
            version,
            frame,
        } = out
        {
            n += 1;
            if let Some(buf) = buf.as_deref_mut() {
                match &frame {
                    OutFrame::Message(d) => d.encode(version, buf),
                    OutFrame::Control(f) => encode(f, version, buf),
                    OutFrame::HeartBeat => buf.extend_from_slice(b"\n"),
                }
            }
            flushed.push(conn);
        }
    }
    for c in flushed {
        broker.handle_flushed(T0, c, 1);
    }
    n
}

fn topic_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_fanout");
    for subscribers in [1u64, 100, 800] {
        let mut broker = Broker::new(CoreConfig::default(), Security::open(), T0);
        for i in 0..subscribers {
            let conn = connect(&mut broker, i + 1);
            broker.handle_frame(
                T0,
                conn,
                Frame::new(Command::Subscribe)
                    .header("destination", "/topic/mcollective.discovery.agent"),
            );
        }
        let producer = connect(&mut broker, 1_000_000);
        let frame = mcollective_send("/topic/mcollective.discovery.agent", 335);
        group.throughput(Throughput::Elements(subscribers));
        group.bench_function(BenchmarkId::new("route", subscribers), |b| {
            b.iter(|| {
                broker.handle_frame(T0, producer, black_box(frame.clone()));
                black_box(drain(&mut broker, None))
            })
        });
        let mut buf = BytesMut::with_capacity(1 << 20);
        group.bench_function(BenchmarkId::new("route_and_encode", subscribers), |b| {
            b.iter(|| {
                buf.clear();
                broker.handle_frame(T0, producer, black_box(frame.clone()));
                black_box(drain(&mut broker, Some(&mut buf)))
            })
        });
    }
    group.finish();
}

fn selector_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("selector_queue");
    for consumers in [1u64, 100, 800] {
        let mut broker = Broker::new(CoreConfig::default(), Security::open(), T0);
        for i in 0..consumers {
            let conn = connect(&mut broker, i + 1);
            let selector = format!("mc_identity = 'node-{i}'");
            broker.handle_frame(
                T0,
                conn,
                Frame::new(Command::Subscribe)
                    .header("destination", "/queue/mcollective.nodes")
                    .header("selector", selector.as_str()),
            );
        }
        let producer = connect(&mut broker, 1_000_000);
        let frames: Vec<Frame> = (0..consumers)
            .map(|i| {
                let mut f = mcollective_send("/queue/mcollective.nodes", 412);
                f.headers.push("mc_identity", format!("node-{i}"));
                f
            })
            .collect();
        let mut next = 0usize;
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("directed_request", consumers), |b| {
            b.iter(|| {
                let f = frames[next % frames.len()].clone();
                next += 1;
                broker.handle_frame(T0, producer, black_box(f));
                let n = drain(&mut broker, None);
                assert_eq!(n, 1, "exactly the one selected node gets it");
                n
            })
        });
    }
    group.finish();
}

criterion_group!(benches, topic_fanout, selector_queue);
criterion_main!(benches);
