//! Codec throughput by frame size: decoding SEND frames and encoding MESSAGE frames.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stampede_benches::mcollective_send;
use stampede_broker::proto::{Decoder, FrameLimits, Item, Version, encode};

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_send");
    for size in [20usize, 400, 1024, 64 * 1024, 1024 * 1024] {
        let mut wire = BytesMut::new();
        encode(
            &mcollective_send("/queue/bench", size),
            Version::V1_2,
            &mut wire,
        );
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            let mut decoder = Decoder::new(FrameLimits::default());
            decoder.set_version(Version::V1_2);
            b.iter(|| {
                let mut buf = BytesMut::from(&wire[..]);
                match decoder.decode(&mut buf) {
                    Ok(Some(Item::Frame(f))) => black_box(f),
                    other => panic!("unexpected {other:?}"),
                }
            })
        });
    }
    group.finish();
}

fn encode_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_send");
    for size in [20usize, 400, 1024, 64 * 1024, 1024 * 1024] {
        let frame = mcollective_send("/queue/bench", size);
        let mut buf = BytesMut::with_capacity(size + 1024);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                buf.clear();
                encode(black_box(&frame), Version::V1_2, &mut buf);
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode_frames);
criterion_main!(benches);
