//! Enqueue plus dequeue of 64-byte packets: ns per packet at 1, 100 and 1000 active flows,
//! in one instance and spread over 10,000 instances. `cargo bench -p sheetcake-cake`.
//!
//! The instances are unlimited here so that every dequeue returns a packet: what is measured
//! is the per-packet work (classification, flow placement, DRR++, COBALT, accounting), not
//! the shaper's waiting.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sheetcake_cake::sim::{ipv4_frame, FrameSpec, TestPacket, TestQueue};
use sheetcake_cake::{Cake, CakeConfig, Dequeued, FlowPool, InstanceSetup, PacketMeta};
use std::hint::black_box;

fn packets(flows: u32, count: usize) -> Vec<(TestPacket, PacketMeta)> {
    (0..count)
        .map(|i| {
            let f = i as u32 % flows;
            let spec = FrameSpec {
                src: [198, 18, (f >> 8) as u8, f as u8],
                dst: [100, 64, 0, 1],
                protocol: 17,
                src_port: 1000 + (f % 50_000) as u16,
                dst_port: 4500,
                dscp: 0,
                ecn: 0,
                len: 60,
            };
            ipv4_frame(&spec, i as u32, 0)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue+dequeue 64B");
    const BATCH: usize = 4096;
    for &(instances, flows) in &[
        (1u32, 1u32),
        (1, 100),
        (1, 1000),
        (10_000, 1),
        (10_000, 100),
        (10_000, 1000),
    ] {
        let mut pool: FlowPool<TestPacket> =
            FlowPool::with_queues(16_384, || TestQueue::with_capacity(64));
        let config = CakeConfig::parse("unlimited besteffort triple-isolate").unwrap();
        let mut cakes: Vec<Cake> = (0..instances)
            .map(|i| Cake::new(config, InstanceSetup::new(i, 7)))
            .collect();
        let generated = packets(flows, BATCH);
        // Metadata stays with its packet's index (`source`) so recycling costs nothing.
        let metas: Vec<PacketMeta> = generated.iter().map(|(_, m)| *m).collect();
        let mut batch: Vec<TestPacket> = generated.into_iter().map(|(p, _)| p).collect();
        let mut out: Vec<TestPacket> = Vec::with_capacity(BATCH);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(
            BenchmarkId::new(format!("{instances} instances"), format!("{flows} flows")),
            |b| {
                let mut now = 0u64;
                b.iter(|| {
                    // A burst arrives: every packet to its flow's instance...
                    for p in batch.drain(..) {
                        now += 10;
                        let i = p.source as usize;
                        let c = &mut cakes[(i / flows as usize + i) % instances as usize];
                        c.enqueue(&mut pool, p, &metas[i], now, &mut |p, _| out.push(p));
                    }
                    // ...and is sent: flows stay active for most of it, the common path.
                    for c in cakes.iter_mut() {
                        while let Dequeued::Packet(p) =
                            c.dequeue(&mut pool, now, &mut |p, _| out.push(p))
                        {
                            out.push(black_box(p));
                        }
                    }
                    batch.append(&mut out);
                });
            },
        );
    }
    group.finish();
}

/// A flood at the memory limit: every enqueue overflows and drops from the fattest flow
/// (spec 5.4), found through the overflow heap rather than a scan of every flow.
fn flood(c: &mut Criterion) {
    let mut group = c.benchmark_group("flood at memlimit 64B");
    const BATCH: usize = 4096;
    for flows in [1u32, 100, 1000] {
        let mut pool: FlowPool<TestPacket> =
            FlowPool::with_queues(4096, || TestQueue::with_capacity(64));
        let config = CakeConfig::parse("bandwidth 10mbit besteffort flows memlimit 1mb").unwrap();
        let mut cake = Cake::new(config, InstanceSetup::new(0, 7));
        let generated = packets(flows, BATCH);
        let metas: Vec<PacketMeta> = generated.iter().map(|(_, m)| *m).collect();
        let mut batch: Vec<TestPacket> = generated.into_iter().map(|(p, _)| p).collect();
        let mut out: Vec<TestPacket> = Vec::with_capacity(BATCH);
        // Fill to the limit first.
        for _ in 0..4 {
            for p in batch.drain(..) {
                let i = p.source as usize;
                cake.enqueue(&mut pool, p, &metas[i], 0, &mut |p, _| out.push(p));
            }
            batch.append(&mut out);
        }
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(
            BenchmarkId::new("1 instance", format!("{flows} flows")),
            |b| {
                b.iter(|| {
                    for p in batch.drain(..) {
                        let i = p.source as usize;
                        cake.enqueue(&mut pool, p, &metas[i], 0, &mut |p, _| out.push(p));
                    }
                    batch.append(&mut out);
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench, flood);
criterion_main!(benches);
