//! The default class: unicast IP traffic of no subscriber shaped by the worker's own CAKE,
//! while the network's own traffic (non-IP frames such as ARP, multicast and broadcast IP)
//! still passes unshaped, immediately, never queued.

use sheetcake_cake::tins::tin_class_name;
use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::dpdk::{Mbuf, MbufBuffer};
use sheetcake_dataplane::shaping::{instance_gauges, ControlChannel, Owner};
use sheetcake_dataplane::worker::{
    placeholder_config, Handoff, PublishedCounters, ShapingSetup, TinCounters, Worker,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{frame, tables, worker_pairs, Rig};

const RATE_BYTES_PER_SECOND: u64 = 10_000_000 / 8;
/// A burst the class drains in 80 ms: less than COBALT's 100 ms interval above target, so the
/// AQM lets every frame through and the test sees the rate alone.
const UNICAST_FRAMES: usize = 100;
const FRAME_BYTES: usize = 1000;

/// An ARP request: not IP at all.
fn arp() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f
}

#[test]
fn unknown_unicast_is_shaped_by_the_default_class_and_network_traffic_is_not() {
    let Rig {
        eal,
        hz,
        pool,
        core,
        mut core_ends,
        access,
        mut access_ends,
    } = Rig::new("dc", "0", 4095, 1);
    // One subscriber exists, so the worker classifies; the frames below are nobody's.
    let tables = Arc::new(tables(&[(
        [10, 97, 0, 1],
        Owner {
            worker: 0,
            local: 0,
        },
    )]));
    let class = CakeConfig {
        bandwidth: Some(RATE_BYTES_PER_SECOND),
        ..CakeConfig::default()
    };
    let setup = ShapingSetup {
        tables,
        subscribers: Vec::new(),
        capacity: 1,
        channel: ControlChannel::new(16),
        worker: 0,
        flows: 1024,
        queued_budget: 2048,
        seed: 3,
        gauges: instance_gauges(1),
        default_class: [Some(class), None],
        idle: [placeholder_config(); 2],
    };
    let published = PublishedCounters::default();
    let stop = AtomicBool::new(false);
    let mut pairs = worker_pairs(&core, &access);
    let pair = pairs.remove(0);
    let (unicast_span, network_frames, counters) = std::thread::scope(|scope| {
        let (published, stop) = (&published, &stop);
        let worker = scope.spawn(move || {
            assert!(
                core_affinity::set_for_current(core_affinity::CoreId { id: 1 }),
                "the test needs a second core"
            );
            let _lcore = eal.register_thread().expect("lcore");
            let mut worker = Worker::new(vec![pair], published, hz).with_shaping(
                setup,
                Handoff {
                    to: vec![None],
                    from: Vec::new(),
                },
            );
            worker.run(stop);
        });
        // Everything at once, faster than the class's rate by far.
        let mut frames: Vec<Vec<u8>> = (0..UNICAST_FRAMES)
            .map(|_| frame([198, 51, 100, 7], FRAME_BYTES, &[]))
            .collect();
        frames.extend((0..20).map(|_| frame([224, 0, 0, 251], 100, &[])));
        frames.extend((0..20).map(|_| frame([255, 255, 255, 255], 100, &[])));
        frames.extend((0..20).map(|_| arp()));
        // The clock starts before the first unicast frame is offered: no frame can leave
        // before it arrives, so this bound holds however late the collector first looks. (A
        // span measured from the first frame collected shrinks by however long this thread
        // took to offer the rest, which on a loaded host was more than the 1 % tolerance.)
        let offered = Instant::now();
        for f in &frames {
            let mut one: MbufBuffer<1> = MbufBuffer::new();
            one.push(Mbuf::from_bytes(pool, f).unwrap()).unwrap();
            while core_ends.inject[0].send(&mut one) == 0 {
                std::thread::yield_now();
            }
        }
        let mut unicast_times = Vec::new();
        let mut network = 0;
        let mut back: MbufBuffer<64> = MbufBuffer::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while unicast_times.len() + network < frames.len() && Instant::now() < deadline {
            access_ends.collect[0].receive(&mut back, 64);
            while let Some(m) = back.pop() {
                if m.pkt_len() as usize == FRAME_BYTES {
                    unicast_times.push(Instant::now());
                } else {
                    network += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("worker");
        let span = unicast_times
            .last()
            .map_or(Duration::ZERO, |last| last.duration_since(offered));
        ((unicast_times.len(), span), network, published.read())
    });
    assert_eq!(
        network_frames, 60,
        "multicast, broadcast and ARP all passed"
    );
    assert_eq!(unicast_span.0, UNICAST_FRAMES, "{counters:?}");
    // The class let the frames out at its rate: the last left no sooner than the time its
    // predecessors take at 10 Mbit/s after the first was offered (the first leaves at once).
    let at_rate = Duration::from_secs_f64(
        ((UNICAST_FRAMES - 1) * FRAME_BYTES) as f64 / RATE_BYTES_PER_SECOND as f64,
    );
    assert!(
        unicast_span.1 >= at_rate.mul_f64(0.99),
        "unknown unicast left within {:?} of being offered, faster than the class's rate \
         allows ({at_rate:?})",
        unicast_span.1
    );
    assert_eq!(counters.shaped_packets, UNICAST_FRAMES as u64);
    // Counted in the tin DSCP 0 goes to (Best Effort), download, and nowhere else.
    for (direction, tins) in counters.tins.iter().enumerate() {
        for (class, tin) in tins.iter().enumerate() {
            let expected = if (direction, tin_class_name(class)) == (0, "Best Effort") {
                TinCounters {
                    sent_packets: UNICAST_FRAMES as u64,
                    sent_bytes: (UNICAST_FRAMES * FRAME_BYTES) as u64,
                    ..TinCounters::default()
                }
            } else {
                TinCounters::default()
            };
            assert_eq!(
                *tin,
                expected,
                "direction {direction}, {}",
                tin_class_name(class)
            );
        }
    }
    assert_eq!(counters.unshaped_packets, 60);
    drop(core_ends);
    drop(access_ends);
    drop(core);
    drop(access);
    assert_eq!(pool.in_use(), 0, "every buffer went back to the pool");
}
