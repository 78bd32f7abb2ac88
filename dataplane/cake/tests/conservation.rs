//! Nothing is lost: over random sequences of operations every packet enqueued is delivered,
//! dropped (handed back with a reason) or still queued, exactly once, and the counters agree.
//! Plus the packet-path rules: the last packet of a flow is never AQM-dropped, and enqueue and
//! dequeue never allocate.

use sheetcake_cake::sim::{ipv4_frame, FrameSpec, TestPacket};
use sheetcake_cake::{Cake, CakeConfig, Dequeued, DropReason, FlowPool, InstanceSetup};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CONFIGS: [&str; 6] = [
    "bandwidth 5mbit diffserv4 triple-isolate",
    "bandwidth 1mbit besteffort flows memlimit 64kb",
    "unlimited diffserv8 dual-dsthost",
    "bandwidth 50mbit diffserv3 dual-srchost ingress docsis",
    "bandwidth 2mbit precedence hosts wash pppoe-llcsnap memlimit 100kb",
    "bandwidth 20mbit besteffort flowblind rtt 10ms",
];

#[test]
fn every_packet_is_delivered_dropped_or_queued_exactly_once() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    for round in 0..60 {
        let words = CONFIGS[round % CONFIGS.len()];
        let mut pool: FlowPool<TestPacket> = FlowPool::new(256);
        let mut cakes: Vec<Cake> = (0..3)
            .map(|i| {
                Cake::new(
                    CakeConfig::parse(words).unwrap(),
                    InstanceSetup::new(i, round as u64),
                )
            })
            .collect();
        let mut now = 1_000_000u64;
        let mut next_id = 0u32;
        let mut outstanding: HashSet<u32> = HashSet::new();
        let mut delivered = 0u64;
        let mut dropped = [0u64; 4];
        for _ in 0..3_000 {
            let c = rng.below(3) as usize;
            match rng.below(10) {
                0..=5 => {
                    let spec = FrameSpec {
                        src: [10, 0, 0, rng.below(6) as u8],
                        dst: [10, 1, 0, rng.below(6) as u8],
                        protocol: if rng.below(2) == 0 { 6 } else { 17 },
                        src_port: rng.below(20) as u16,
                        dst_port: 80,
                        dscp: [0, 8, 46, 34, 1][rng.below(5) as usize],
                        ecn: rng.below(4) as u8,
                        len: 60 + rng.below(1455) as usize,
                    };
                    let (mut p, meta) = ipv4_frame(&spec, next_id, now);
                    p.source = next_id;
                    outstanding.insert(next_id);
                    next_id += 1;
                    cakes[c].enqueue(&mut pool, p, &meta, now, &mut |p, r| {
                        assert!(outstanding.remove(&p.source), "dropped twice");
                        dropped[r as usize] += 1;
                    });
                }
                6..=8 => {
                    now += rng.below(3_000_000);
                    loop {
                        match cakes[c].dequeue(&mut pool, now, &mut |p, r| {
                            assert!(outstanding.remove(&p.source), "dropped twice");
                            dropped[r as usize] += 1;
                        }) {
                            Dequeued::Packet(p) => {
                                assert!(outstanding.remove(&p.source), "delivered twice");
                                delivered += 1;
                            }
                            Dequeued::WaitUntil(t) => {
                                assert!(t > now);
                                break;
                            }
                            Dequeued::Empty => break,
                        }
                        if rng.below(4) == 0 {
                            break;
                        }
                    }
                    if rng.below(4) == 0 {
                        // The worker's housekeeping of idle instances, at any moment.
                        cakes[c].release_rested_flows(&mut pool, now);
                    }
                }
                _ => {
                    // A live change of rate or options, sometimes of tin mode.
                    let mut config =
                        CakeConfig::parse(CONFIGS[rng.below(CONFIGS.len() as u64) as usize])
                            .unwrap();
                    if rng.below(2) == 0 {
                        config.tin_mode = cakes[c].config().tin_mode;
                    }
                    cakes[c].set_config(&mut pool, config, now, &mut |p, r| {
                        assert!(outstanding.remove(&p.source), "dropped twice");
                        dropped[r as usize] += 1;
                    });
                }
            }
            check_counters(&cakes, &pool);
            let queued: u64 = cakes.iter().map(|c| u64::from(c.backlog_packets())).sum();
            assert_eq!(
                queued,
                outstanding.len() as u64,
                "round {round} ({words}): queued count disagrees with the packets held"
            );
        }
        for cake in &mut cakes {
            let before = cake.stats();
            assert!(before.drops >= before.overflow_drops);
            cake.drain(&mut pool, &mut |p, r| {
                assert_eq!(r, DropReason::Flushed);
                assert!(outstanding.remove(&p.source), "drained twice");
                dropped[r as usize] += 1;
            });
            assert_eq!(cake.backlog_packets(), 0);
            assert_eq!(cake.backlog_bytes(), 0);
            assert_eq!(cake.memory().0, 0, "memory accounting returns to zero");
        }
        assert!(
            outstanding.is_empty(),
            "{} packets vanished",
            outstanding.len()
        );
        assert_eq!(pool.in_use(), 0, "flow entries leaked");
        let sent: u64 = cakes.iter().map(|c| c.stats().sent_packets).sum();
        assert_eq!(sent, delivered);
        let counted_drops: u64 = cakes.iter().map(|c| c.stats().drops).sum();
        assert_eq!(
            counted_drops,
            dropped[DropReason::Aqm as usize] + dropped[DropReason::Overflow as usize]
        );
        assert_eq!(u64::from(next_id), delivered + dropped.iter().sum::<u64>());
    }
}

/// The instance's counters agree with its flows: backlogs add up, the flow counts per tin
/// match the flows' states, and the pool holds exactly the instances' flows.
fn check_counters(cakes: &[Cake], pool: &FlowPool<TestPacket>) {
    use sheetcake_cake::FlowState;
    let mut held = 0;
    for cake in cakes {
        cake.check_overflow_heap(pool);
        let flows: Vec<_> = cake.flow_reports(pool).collect();
        held += flows.len();
        let packets: u64 = flows.iter().map(|f| u64::from(f.packets)).sum();
        let bytes: u64 = flows.iter().map(|f| u64::from(f.backlog)).sum();
        assert_eq!(packets, u64::from(cake.backlog_packets()));
        assert_eq!(bytes, cake.backlog_bytes());
        for tin in cake.tin_reports() {
            let mine = flows.iter().filter(|f| f.tin == tin.index);
            let (mut bulk, mut sparse, mut unresponsive) = (0, 0, 0);
            let (mut tin_packets, mut tin_bytes) = (0u32, 0u64);
            for f in mine {
                match f.state {
                    FlowState::Bulk => bulk += 1,
                    FlowState::Sparse | FlowState::SparseWait | FlowState::Decaying => sparse += 1,
                    FlowState::Idle => panic!("an idle flow in a list"),
                }
                unresponsive += u32::from(f.p_drop > 0);
                tin_packets += f.packets;
                tin_bytes += u64::from(f.backlog);
            }
            assert_eq!(tin.bulk_flows, bulk, "bulk flows of tin {}", tin.index);
            assert_eq!(
                tin.sparse_flows, sparse,
                "sparse flows of tin {}",
                tin.index
            );
            assert_eq!(tin.unresponsive_flows, unresponsive);
            assert_eq!(
                (tin.backlog_packets, tin.backlog_bytes),
                (tin_packets, tin_bytes)
            );
        }
    }
    assert_eq!(
        pool.in_use(),
        held,
        "pool entries not owned by any flow list"
    );
}

/// However long it waited, the last packet of a flow is delivered (spec 4.3).
#[test]
fn the_last_packet_of_a_flow_is_never_dropped_by_the_aqm() {
    let mut pool: FlowPool<TestPacket> = FlowPool::new(16);
    let mut cake = Cake::new(
        CakeConfig::parse("bandwidth 1mbit besteffort").unwrap(),
        InstanceSetup::new(0, 1),
    );
    let spec = FrameSpec::udp(1514, 0);
    let mut drops = 0;
    // 30 packets at once: at 1 Mbit/s the last waits 360 ms, far over target for 3 intervals.
    for i in 0..30 {
        let (p, meta) = ipv4_frame(&spec, i, 0);
        cake.enqueue(&mut pool, p, &meta, 0, &mut |_, _| {
            panic!("no overflow here")
        });
    }
    let mut now = 0;
    let mut delivered = Vec::new();
    loop {
        match cake.dequeue(&mut pool, now, &mut |_, _| drops += 1) {
            Dequeued::Packet(p) => delivered.push(p.source),
            Dequeued::WaitUntil(t) => now = t,
            Dequeued::Empty => break,
        }
    }
    assert!(
        drops > 0,
        "the AQM should have dropped some of this standing queue"
    );
    assert_eq!(delivered.last(), Some(&29), "the last packet was delivered");
}

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Enqueue and dequeue never allocate once the flow pool and queues are warm.
#[test]
fn the_packet_path_does_not_allocate() {
    // The test's own queue type is a VecDeque: sized once here, so that any allocation seen
    // below is CAKE's.
    let mut pool: FlowPool<TestPacket> =
        FlowPool::with_queues(1024, || sheetcake_cake::sim::TestQueue::with_capacity(256));
    let mut cake = Cake::new(
        CakeConfig::parse("bandwidth 100mbit diffserv4 triple-isolate").unwrap(),
        InstanceSetup::new(0, 3),
    );
    let mut packets: Vec<(TestPacket, sheetcake_cake::PacketMeta)> = (0..20_000u32)
        .map(|i| {
            let spec = FrameSpec {
                src: [10, 0, 0, (i % 7) as u8],
                dst: [10, 1, 0, (i % 5) as u8],
                protocol: 6,
                src_port: (i % 100) as u16,
                dst_port: 443,
                dscp: [0, 8, 46][(i % 3) as usize],
                ecn: 2,
                len: 64 + (i % 1400) as usize,
            };
            ipv4_frame(&spec, i, 0)
        })
        .collect();
    let mut run = |packets: &mut Vec<(TestPacket, sheetcake_cake::PacketMeta)>, counting: bool| {
        let mut now = 0;
        let mut out = Vec::with_capacity(packets.len());
        COUNTING.with(|c| c.set(counting));
        for (p, meta) in packets.drain(..) {
            now += 1_000;
            cake.enqueue(&mut pool, p, &meta, now, &mut |p, _| out.push(p));
            if let Dequeued::Packet(p) = cake.dequeue(&mut pool, now, &mut |p, _| out.push(p)) {
                out.push(p);
            }
        }
        while cake.backlog_packets() > 0 {
            now += 100_000;
            while let Dequeued::Packet(p) = cake.dequeue(&mut pool, now, &mut |p, _| out.push(p)) {
                out.push(p);
            }
        }
        COUNTING.with(|c| c.set(false));
        out
    };
    // Warm up: queues grow to their working size once.
    let back = run(&mut packets, false);
    let mut again: Vec<(TestPacket, sheetcake_cake::PacketMeta)> = back
        .into_iter()
        .map(|mut p| {
            p.stamp = Default::default();
            let spec = FrameSpec {
                src: [p.bytes[26], p.bytes[27], p.bytes[28], p.bytes[29]],
                dst: [p.bytes[30], p.bytes[31], p.bytes[32], p.bytes[33]],
                protocol: 6,
                src_port: u16::from_be_bytes([p.bytes[34], p.bytes[35]]),
                dst_port: 443,
                dscp: p.bytes[15] >> 2,
                ecn: 2,
                len: p.bytes.len(),
            };
            let meta = ipv4_frame(&spec, 0, 0).1;
            (p, meta)
        })
        .collect();
    again.sort_by_key(|(p, _)| p.source);
    let _ = run(&mut again, true);
    assert_eq!(
        ALLOCATIONS.with(|a| a.get()),
        0,
        "enqueue/dequeue allocated"
    );
}

/// An idle instance costs little: the struct and its tins, at most 2 KiB (issue 3) in every
/// tin mode; flow state is pooled.
#[test]
fn an_idle_instance_is_small() {
    for mode in ["besteffort", "diffserv3", "diffserv4", "diffserv8"] {
        let cake = Cake::new(
            CakeConfig::parse(&format!("bandwidth 20mbit {mode}")).unwrap(),
            InstanceSetup::new(0, 1),
        );
        let bytes = cake.heap_bytes() + std::mem::size_of::<Cake>();
        eprintln!("idle {mode} instance: {bytes} bytes");
        assert!(bytes <= 2048, "idle {mode} instance {bytes} bytes");
    }
    eprintln!(
        "pool bytes per active flow (test packet queue): {}",
        FlowPool::<TestPacket>::bytes_per_flow()
    );
}

/// Flow state is held only while flows are active: an instance that goes idle gives back
/// every flow whose AQM is at rest at once, and the congested ones once their state has
/// decayed (spec 4.3: count steps down per control-law interval), when the worker asks.
#[test]
fn an_idle_instance_gives_its_flows_back_to_the_pool() {
    let mut pool: FlowPool<TestPacket> = FlowPool::new(64);
    let mut cake = Cake::new(
        CakeConfig::parse("bandwidth 100mbit besteffort triple-isolate").unwrap(),
        InstanceSetup::new(0, 1),
    );
    let spec = |port: u16| FrameSpec {
        src_port: port,
        ..FrameSpec::udp(1514, 0)
    };
    let drain = |cake: &mut Cake, pool: &mut FlowPool<TestPacket>, mut now: u64| loop {
        match cake.dequeue(pool, now, &mut |_, _| {}) {
            Dequeued::Packet(_) => {}
            Dequeued::WaitUntil(t) => now = t,
            Dequeued::Empty => return now,
        }
    };
    // Ten light flows, three packets each: 30 packets of 121 µs at 100 Mbit/s stay under the
    // 5 ms target, so no flow gets any AQM state.
    for port in 0..10 {
        for _ in 0..3 {
            let (p, meta) = ipv4_frame(&spec(port), 0, 0);
            cake.enqueue(&mut pool, p, &meta, 0, &mut |_, _| panic!("no drop"));
        }
    }
    assert_eq!(pool.in_use(), 10);
    let now = drain(&mut cake, &mut pool, 0);
    assert_eq!(pool.in_use(), 10, "kept while the worker does not ask");
    assert_eq!(cake.release_rested_flows(&mut pool, now), 0);
    assert_eq!(pool.in_use(), 0, "at rest: every flow is back in the pool");
    // One flow with a standing queue of 1500 packets (182 ms at 100 Mbit/s): over target for
    // more than one interval, so COBALT signals.
    for _ in 0..1500 {
        let (p, meta) = ipv4_frame(&spec(77), 0, now);
        cake.enqueue(&mut pool, p, &meta, now, &mut |_, _| panic!("no overflow"));
    }
    let now = drain(&mut cake, &mut pool, now);
    assert!(cake.stats().drops > 0);
    assert_eq!(
        cake.release_rested_flows(&mut pool, now + 1_000_000),
        1,
        "the congested flow decays before it is forgotten"
    );
    // Its count (a few signals) decays within 2 x interval x sqrt(count): well under 10 s.
    assert_eq!(
        cake.release_rested_flows(&mut pool, now + 10_000_000_000),
        0
    );
    assert_eq!(pool.in_use(), 0);
}
