//! Two workers on a real EAL, each with its own queue of both ports (ring ports with two queue
//! pairs, as RSS would give on a NIC). A frame reaching the worker that owns its subscriber is
//! shaped there; one reaching the other worker is handed over through the SPSC handoff ring
//! and shaped by the owner, leaving by the owner's TX queue. Both paths are checked frame by
//! frame, with order kept per path, and every buffer comes back.

use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::dpdk::{mbuf_ring, Mbuf, MbufBuffer};
use sheetcake_dataplane::shaping::{instance_gauges, ControlChannel, LocalSubscriber, Owner};
use sheetcake_dataplane::worker::{
    placeholder_config, Handoff, PublishedCounters, ShapingSetup, Worker, WorkerCounters,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{frame, tables, worker_pairs, Rig};

/// Owned by worker 1.
const OF_WORKER_1: [u8; 4] = [10, 98, 0, 1];
/// Owned by worker 0.
const OF_WORKER_0: [u8; 4] = [10, 98, 0, 2];
/// Nobody's: passes through unshaped, by the worker that received it.
const NOBODY: [u8; 4] = [10, 98, 0, 3];
/// Frames injected per (queue, address).
const FRAMES: u32 = 200;

#[test]
fn frames_reach_their_owner_directly_or_through_the_handoff_ring_and_leave_by_its_queue() {
    // Both threads of workers and this one may use both cores.
    let Rig {
        eal,
        hz,
        pool,
        core,
        mut core_ends,
        access,
        mut access_ends,
    } = Rig::new("ho", "0,1", 8191, 2);
    let owners = [
        (
            OF_WORKER_1,
            Owner {
                worker: 1,
                local: 0,
            },
        ),
        (
            OF_WORKER_0,
            Owner {
                worker: 0,
                local: 0,
            },
        ),
    ];
    let tables = Arc::new(tables(&owners));
    // Fast enough that no frame waits long or is dropped: the test is about where frames go.
    let plan = CakeConfig {
        bandwidth: Some(1_000_000_000),
        ..CakeConfig::default()
    };
    let subscriber = |id: &str| LocalSubscriber {
        id: id.into(),
        download: plan,
        upload: plan,
    };
    let (to_1, from_0) = mbuf_ring(eal, "ho_0_1", 256).unwrap();
    let (to_0, from_1) = mbuf_ring(eal, "ho_1_0", 256).unwrap();
    let setups = [
        (
            vec![subscriber("of-worker-0")],
            Handoff {
                to: vec![None, Some(to_1)],
                from: vec![from_1],
            },
        ),
        (
            vec![subscriber("of-worker-1")],
            Handoff {
                to: vec![Some(to_0), None],
                from: vec![from_0],
            },
        ),
    ];
    let published = [PublishedCounters::default(), PublishedCounters::default()];
    let stop = AtomicBool::new(false);
    let pairs = worker_pairs(&core, &access);

    // (queue, address, sequence) of every frame, in injection order.
    let mut sent = Vec::new();
    let finals: Vec<WorkerCounters> = std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .into_iter()
            .zip(setups)
            .enumerate()
            .map(|(w, (pair, (subscribers, handoff)))| {
                let (published, stop, tables) = (&published[w], &stop, Arc::clone(&tables));
                scope.spawn(move || {
                    let _lcore = eal.register_thread().expect("lcore");
                    let setup = ShapingSetup {
                        tables,
                        subscribers,
                        capacity: 2,
                        channel: ControlChannel::new(16),
                        worker: w as u16,
                        flows: 1024,
                        queued_budget: 4096,
                        seed: w as u64,
                        gauges: instance_gauges(2),
                        default_class: [None, None],
                        idle: [placeholder_config(); 2],
                    };
                    let mut worker =
                        Worker::new(vec![pair], published, hz).with_shaping(setup, handoff);
                    worker.run(stop);
                    worker
                })
            })
            .collect();

        for seq in 0..FRAMES {
            for queue in 0..2usize {
                for address in [OF_WORKER_1, OF_WORKER_0, NOBODY] {
                    let payload = [queue as u8, (seq >> 8) as u8, seq as u8];
                    let m = Mbuf::from_bytes(pool, &frame(address, 100, &payload)).unwrap();
                    let mut one: MbufBuffer<1> = MbufBuffer::new();
                    one.push(m).unwrap();
                    while core_ends.inject[queue].send(&mut one) == 0 {
                        std::thread::yield_now();
                    }
                    sent.push((queue, address, seq));
                }
            }
        }
        // Collect from both TX queues of the access port until all is back or time is up.
        let mut got: [Vec<(u8, [u8; 4], u32)>; 2] = [Vec::new(), Vec::new()];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut back: MbufBuffer<64> = MbufBuffer::new();
        while got[0].len() + got[1].len() < sent.len() && Instant::now() < deadline {
            for (queue, list) in got.iter_mut().enumerate() {
                access_ends.collect[queue].receive(&mut back, 64);
                while let Some(m) = back.pop() {
                    let d = m.data();
                    let seq = (u32::from(d[43]) << 8) | u32::from(d[44]);
                    list.push((d[42], d[30..34].try_into().unwrap(), seq));
                }
            }
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        let mut workers: Vec<Worker> = workers
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect();
        // Every worker has stopped: what is left in a handoff ring is counted by its receiver.
        let finals = workers.iter_mut().map(Worker::drain_handoffs).collect();

        // Worker 1's TX queue carries everything of its subscriber, from both RX queues, and
        // the unknown frames worker 1 received itself; worker 0's the rest.
        for (queue, expected) in [
            (0usize, [(0u8, OF_WORKER_0), (1, OF_WORKER_0), (0, NOBODY)]),
            (1, [(0, OF_WORKER_1), (1, OF_WORKER_1), (1, NOBODY)]),
        ] {
            for (from, address) in expected {
                let seqs: Vec<u32> = got[queue]
                    .iter()
                    .filter(|(f, a, _)| *f == from && *a == address)
                    .map(|(_, _, s)| *s)
                    .collect();
                assert_eq!(
                    seqs,
                    (0..FRAMES).collect::<Vec<_>>(),
                    "TX queue {queue}: frames to {address:?} received on RX queue {from}"
                );
            }
            assert_eq!(got[queue].len() as u32, 3 * FRAMES, "TX queue {queue}");
        }
        finals
    });
    // Worker 0 handed over what it received for worker 1's subscriber, and the reverse.
    assert_eq!(finals[0].handed_off, u64::from(FRAMES));
    assert_eq!(finals[1].taken_over, u64::from(FRAMES));
    assert_eq!(finals[1].handed_off, u64::from(FRAMES));
    assert_eq!(finals[0].taken_over, u64::from(FRAMES));
    for (w, f) in finals.iter().enumerate() {
        assert_eq!(f.dropped_total(), 0, "worker {w} dropped: {f:?}");
        assert_eq!(f.shaped_packets, 2 * u64::from(FRAMES), "worker {w}");
        assert_eq!(f.unshaped_packets, u64::from(FRAMES), "worker {w}");
    }
    drop(core_ends);
    drop(access_ends);
    drop(core);
    drop(access);
    assert_eq!(pool.in_use(), 0, "every buffer went back to the pool");
}
