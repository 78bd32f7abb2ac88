//! Shaping cases: sheetcake's worker with N subscribers, fed by the generator through ring
//! ports, on its own pinned core; the generator runs on the benchmark's core.
//!
//! - `cake_unlimited`: every subscriber's CAKE has no rate: every frame is classified, placed
//!   in its flow, enqueued and dequeued at once. CPU bound.
//! - `shaped`: every subscriber's rate is [`SHAPED_SHARE`] of its part of what the worker took
//!   in while shaping in a first, calibrating run, so arrivals exceed every rate and every
//!   queue stays non-empty: every frame goes through enqueue, COBALT, the shaper and the
//!   timer wheel, and what exceeds the rates is dropped by the AQM, CAKE's memory limit or
//!   the worker's budget (the worst case: every subscriber saturated at once). The drops per
//!   second printed with the case show that the rates bound.
//! - `shaped_paced`: the `shaped` rates with the load offered at a set rate below what the
//!   worker can take (half), and a sparse probe flow whose one-way delay through the worker
//!   is reported as percentiles.
//! - `bridge_ring`: the same worker and ring ports with no subscriber (forwarding only), to
//!   show what the generator can feed.

use crate::generator::{subscriber_address, subscriber_prefix_v6, Generator, Traffic};
use crate::run_pinned;
use crate::CaseResult;
use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::classify::{AddressTable, Prefix, SubscriberSlot};
use sheetcake_dataplane::dpdk::{tsc, Eal, Mempool, PortConfig, RingPort, RingPortEnds};
use sheetcake_dataplane::shaping::{
    instance_gauges, ControlChannel, LocalSubscriber, Owner, SubscriberTables,
};
use sheetcake_dataplane::worker::{
    DropReason, Handoff, PairQueues, PortQueues, PublishedCounters, ShapingSetup, Worker,
    WorkerCounters,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Frames each ring port's rings hold.
pub const RING_FRAMES: u32 = 2048;
/// Frames the worker may hold queued in all its instances.
pub const QUEUED_BUDGET: u64 = 32_768;
/// The share of its part of the calibrated shaping throughput each subscriber is shaped to in
/// the `shaped` case: a fifth more arrives than leaves.
pub const SHAPED_SHARE: f64 = 0.8;

/// How the subscribers of a case are shaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shaping {
    /// No subscribers: the worker bridges.
    Off,
    /// Subscribers without a rate.
    Unlimited,
    /// Every subscriber at this rate, bytes per second.
    Rate(u64),
}

/// One case's setup.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub subscribers: u32,
    pub flows: u32,
    pub shaping: Shaping,
    /// Adds a sparse probe flow (one 64-byte frame every [`PROBE_INTERVAL_US`]) to a
    /// subscriber of its own, and reports its one-way delay through the loaded worker.
    pub probe: bool,
    /// Frames per second offered; `None` offers as many as the worker takes.
    pub offered: Option<f64>,
    /// What the frames look like.
    pub traffic: Traffic,
}

/// Time between two probe frames, microseconds.
pub const PROBE_INTERVAL_US: u64 = 100;
/// The probe's load at most: one frame per interval, of at most 1,518 bytes.
const PROBE_BYTES_PER_SECOND: u64 = 1518 * 1_000_000 / PROBE_INTERVAL_US;

/// What a case measured beyond the common result.
#[derive(Debug, Clone)]
pub struct Measured {
    /// With `tx_mpps` and `drops_mpps` filled in.
    pub result: CaseResult,
    /// Resident memory the worker's shaping state added, bytes.
    pub memory_bytes: u64,
    /// Seconds to build the worker's shaping state.
    pub setup_seconds: f64,
}

/// The process's resident memory, bytes.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn subscriber_config(shaping: Shaping) -> CakeConfig {
    CakeConfig {
        bandwidth: match shaping {
            Shaping::Rate(r) => Some(r),
            _ => None,
        },
        ..CakeConfig::default()
    }
}

/// The address tables and local subscribers for `n` subscribers, all on worker 0.
pub fn subscribers(n: u32, shaping: Shaping) -> (SubscriberTables, Vec<LocalSubscriber>) {
    let mut addresses = AddressTable::new();
    let mut owners = Vec::with_capacity(n as usize);
    let mut locals = Vec::with_capacity(n as usize);
    let config = subscriber_config(shaping);
    for s in 0..n {
        // An IPv4 address and an IPv6 /64, as a dual-stack subscriber has.
        let prefix = Prefix::V4(Ipv4Addr::from(subscriber_address(s)), 32);
        addresses.insert(prefix, SubscriberSlot(s));
        let prefix = Prefix::V6(Ipv6Addr::from(subscriber_prefix_v6(s)), 64);
        addresses.insert(prefix, SubscriberSlot(s));
        owners.push(Owner {
            worker: 0,
            local: s,
        });
        locals.push(LocalSubscriber {
            id: format!("bench-{s}"),
            download: config,
            upload: config,
        });
    }
    (SubscriberTables { addresses, owners }, locals)
}

/// A worker's two ring ports.
pub struct Rig {
    pub core: RingPort,
    pub access: RingPort,
}

/// The generator's ends of a [`Rig`]'s rings.
pub struct RigEnds {
    pub core: RingPortEnds,
    pub access: RingPortEnds,
}

impl Rig {
    /// Ring ports `{name}c` and `{name}a` of `frames` frames per ring.
    pub fn new(eal: &Eal, name: &str, frames: u32, pool: Mempool) -> (Rig, RigEnds) {
        let config = PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: frames as u16,
            tx_descriptors: frames as u16,
            mtu: 1500,
            rss_hash: 0,
        };
        let start = |side: &str| {
            RingPort::start(eal, &format!("{name}{side}"), frames, &config, pool)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (core, core_ends) = start("c");
        let (access, access_ends) = start("a");
        (
            Rig { core, access },
            RigEnds {
                core: core_ends,
                access: access_ends,
            },
        )
    }

    /// The worker's queues: one pair, its single queue of each port.
    pub fn pairs(&self) -> Vec<PairQueues<'_>> {
        let (mut crx, mut ctx) = self.core.port().take_queues().expect("fresh port");
        let (mut arx, mut atx) = self.access.port().take_queues().expect("fresh port");
        vec![PairQueues {
            ports: [
                PortQueues {
                    rx: crx.remove(0),
                    tx: ctx.remove(0),
                },
                PortQueues {
                    rx: arx.remove(0),
                    tx: atx.remove(0),
                },
            ],
        }]
    }
}

/// A worker's only handoff: none (one worker).
pub fn no_handoff() -> Handoff {
    Handoff {
        to: vec![None],
        from: Vec::new(),
    }
}

/// Runs `case` for a warm-up second and `seconds` measured, the worker on `worker_core`.
pub fn run(
    eal: &'static Eal,
    hz: u64,
    pool: Mempool,
    name: &str,
    case: Case,
    worker_core: usize,
    seconds: f64,
) -> Measured {
    let (rig, mut ends) = Rig::new(eal, name, RING_FRAMES, pool);
    let pairs = rig.pairs();
    let published = PublishedCounters::default();
    let memory_before = resident_bytes();
    let setup_started = Instant::now();
    let mut worker = Worker::new(pairs, &published, hz);
    if case.shaping != Shaping::Off {
        let flow_pool = case.subscribers as usize * case.flows as usize + 4096;
        // The probe's subscriber is one more, after the generated ones, with a rate ten times
        // its load: shaped like the others, never held back by its own shaper.
        let mut setup = setup(
            case.subscribers + u32::from(case.probe),
            case.shaping,
            flow_pool,
        );
        if case.probe {
            let probe = setup
                .subscribers
                .last_mut()
                .expect("the probe's subscriber");
            probe.download.bandwidth = Some(10 * PROBE_BYTES_PER_SECOND);
        }
        worker = worker.with_shaping(setup, no_handoff());
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    let memory_bytes = resident_bytes().saturating_sub(memory_before);

    // The traffic first: the probe's address depends on it.
    let mut generator =
        Generator::new(pool, case.subscribers, case.flows).with_traffic(case.traffic);
    if let Some(fps) = case.offered {
        generator = generator.paced(fps, hz);
    }
    if case.probe {
        generator = generator.with_probe(case.subscribers, hz * PROBE_INTERVAL_US / 1_000_000);
    }
    let mut probe_delays = Vec::new();
    let stop = AtomicBool::new(false);
    let (c0, c1, elapsed) = std::thread::scope(|scope| {
        let runner = scope.spawn(|| run_pinned(eal, worker_core, || worker.run(&stop)));
        let start = tsc();
        let window_start = start + hz;
        let window_end = window_start + (seconds * hz as f64) as u64;
        let mut c0 = None;
        let mut t0 = Instant::now();
        loop {
            generator.round(&mut ends.core, &mut ends.access);
            let now = tsc();
            if c0.is_none() && now >= window_start {
                c0 = Some(published.read());
                t0 = Instant::now();
                // Probes of the warm-up are not counted.
                generator.take_probe_delays();
            }
            if now >= window_end {
                break;
            }
        }
        // The worker publishes every millisecond: wait for one after the window.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c1 = published.read();
        let elapsed = t0.elapsed().as_secs_f64();
        probe_delays = generator.take_probe_delays();
        stop.store(true, Ordering::Relaxed);
        runner.join().expect("worker");
        (c0.expect("the window started"), c1, elapsed)
    });
    drop(worker);
    drop(ends);
    drop(rig);
    let mut m = measured(case, c0, c1, elapsed, memory_bytes, setup_seconds);
    if case.probe {
        m.result.probe_latency_us = Some(Percentiles::of(&mut probe_delays, hz));
    }
    m
}

fn measured(
    case: Case,
    c0: WorkerCounters,
    c1: WorkerCounters,
    elapsed: f64,
    memory_bytes: u64,
    setup_seconds: f64,
) -> Measured {
    let rx = c1.rx_packets - c0.rx_packets;
    let tx = c1.tx_packets - c0.tx_packets;
    let mpps = rx as f64 / elapsed / 1e6;
    let name = match (case.shaping, case.offered) {
        (Shaping::Off, _) => "bridge_ring",
        (Shaping::Unlimited, _) => "cake_unlimited",
        (Shaping::Rate(_), None) => "shaped",
        (Shaping::Rate(_), Some(_)) => "shaped_paced",
    };
    let drops = DropReason::ALL
        .iter()
        .map(|&r| {
            (
                r.name(),
                (c1.dropped(r) - c0.dropped(r)) as f64 / elapsed / 1e6,
            )
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    Measured {
        result: CaseResult {
            case: name,
            subscribers: u64::from(if case.shaping == Shaping::Off {
                0
            } else {
                case.subscribers
            }),
            flows_per_subscriber: u64::from(case.flows),
            packet_size: crate::PacketSize::of(case.traffic.sizes),
            traffic: case.traffic.name(),
            workers: 1,
            mpps,
            gbps: mpps * case.traffic.sizes.mean() * 8.0 / 1e3,
            cycles_per_packet: Some((c1.busy_cycles - c0.busy_cycles) as f64 / rx.max(1) as f64),
            seconds: elapsed,
            tx_mpps: Some(tx as f64 / elapsed / 1e6),
            drops_mpps: drops,
            probe_latency_us: None,
        },
        memory_bytes,
        setup_seconds,
    }
}

/// Resident memory `n` idle subscribers add to a worker: both CAKE instances, address-table
/// entries, gauges, timer-wheel and ready-queue slots, owners. Run before any other case, so
/// the allocator has no freed memory to hand back without growing the process.
pub fn idle_memory(eal: &'static Eal, hz: u64, pool: Mempool, n: u32) -> u64 {
    let (rig, _ends) = Rig::new(eal, "idle", 64, pool);
    let pairs = rig.pairs();
    let published = PublishedCounters::default();
    let before = resident_bytes();
    let worker = Worker::new(pairs, &published, hz)
        .with_shaping(setup(n, Shaping::Unlimited, IDLE_FLOW_POOL), no_handoff());
    let grown = resident_bytes().saturating_sub(before);
    drop(worker);
    grown
}

/// Flow entries of the worker built for the idle measurement: the smallest pool, so the figure
/// is the subscribers' alone.
const IDLE_FLOW_POOL: usize = 1;

/// Resident memory of a worker's flow pool, per flow it can hold: preallocated, so an active
/// flow costs nothing more.
pub fn bytes_per_flow() -> f64 {
    const FLOWS: usize = 1 << 20;
    let before = resident_bytes();
    let pool = sheetcake_cake::FlowPool::<sheetcake_dataplane::dpdk::Mbuf>::new(FLOWS);
    let grown = resident_bytes().saturating_sub(before);
    drop(pool);
    grown as f64 / FLOWS as f64
}

/// The shaping setup of `n` subscribers, all on worker 0, with a pool of `flow_pool` flows.
pub fn setup(n: u32, shaping: Shaping, flow_pool: usize) -> ShapingSetup {
    let (tables, locals) = subscribers(n, shaping);
    setup_with(
        n as usize,
        tables,
        locals,
        flow_pool,
        ControlChannel::new(16),
    )
}

/// The setup of worker 0 with `slots` subscriber slots, the subscribers and tables given,
/// `flow_pool` flows and its command channel: what every case's worker is built from.
pub fn setup_with(
    slots: usize,
    tables: SubscriberTables,
    subscribers: Vec<LocalSubscriber>,
    flow_pool: usize,
    channel: Arc<ControlChannel>,
) -> ShapingSetup {
    ShapingSetup {
        tables: Arc::new(tables),
        subscribers,
        capacity: slots,
        channel,
        worker: 0,
        flows: flow_pool,
        queued_budget: QUEUED_BUDGET,
        seed: 1,
        gauges: instance_gauges(slots),
        default_class: [None, None],
    }
}

/// Percentiles of the probe's one-way delay through the worker, microseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From delays in TSC cycles at `hz`.
    fn of(delays: &mut [u64], hz: u64) -> Percentiles {
        delays.sort_unstable();
        let us = |c: u64| c as f64 * 1e6 / hz as f64;
        let at = |p: f64| {
            delays
                .get(((delays.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(f64::NAN, |&c| us(c))
        };
        Percentiles {
            samples: delays.len(),
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: delays.last().map_or(f64::NAN, |&c| us(c)),
        }
    }
}
