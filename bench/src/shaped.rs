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
//!
//! With several workers ([`WorkerPlan`]), each runs on its own core and owns the subscribers
//! the appliance's rule gives it; the ring ports have one queue pair per worker, the
//! generator puts each frame on the queue its steering picks, and a worker hands what it
//! receives for another worker's subscriber over that worker's SPSC handoff ring, as in the
//! appliance.

use crate::generator::{subscriber_address, subscriber_prefix_v6, Generator, Traffic};
use crate::run_pinned;
use crate::workers::WorkerPlan;
use crate::{CaseResult, WorkerRow};
use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::classify::{AddressTable, Prefix, SubscriberSlot};
use sheetcake_dataplane::dpdk::{mbuf_ring, tsc, Eal, Mempool, PortConfig, RingPort, RingPortEnds};
use sheetcake_dataplane::shaping::owner_worker;
use sheetcake_dataplane::shaping::{
    instance_gauges, ControlChannel, LocalSubscriber, Owner, SubscriberTables,
};
use sheetcake_dataplane::worker::{
    placeholder_config, DropReason, Handoff, PairQueues, PublishedCounters, ShapingSetup, Worker,
    WorkerCounters,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Frames each ring port's rings hold.
pub const RING_FRAMES: u32 = 2048;
/// Frames a worker may hold queued in all its instances.
pub const QUEUED_BUDGET: u64 = 32_768;
/// Frames each handoff ring between two workers holds: the appliance's
/// (`HANDOFF_RING_FRAMES` in `control/src/config.rs`).
pub const HANDOFF_RING_FRAMES: u32 = 256;
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

/// The address tables for `n` subscribers sharded over `workers`, and each worker's local
/// subscribers (`locals[w]`). Subscriber `s` is `bench-{s}`, owned by the worker the
/// appliance's rule gives that ID.
pub fn subscribers(
    n: u32,
    shaping: Shaping,
    workers: usize,
) -> (SubscriberTables, Vec<Vec<LocalSubscriber>>) {
    let mut addresses = AddressTable::new();
    let mut owners = Vec::with_capacity(n as usize);
    let mut locals: Vec<Vec<LocalSubscriber>> = (0..workers.max(1)).map(|_| Vec::new()).collect();
    let config = subscriber_config(shaping);
    for s in 0..n {
        // An IPv4 address and an IPv6 /64, as a dual-stack subscriber has.
        let prefix = Prefix::V4(Ipv4Addr::from(subscriber_address(s)), 32);
        addresses.insert(prefix, SubscriberSlot(s));
        let prefix = Prefix::V6(Ipv6Addr::from(subscriber_prefix_v6(s)), 64);
        addresses.insert(prefix, SubscriberSlot(s));
        let id = format!("bench-{s}");
        let worker = owner_worker(&id, locals.len());
        owners.push(Owner {
            worker: worker as u16,
            local: locals[worker].len() as u32,
        });
        locals[worker].push(LocalSubscriber {
            id,
            download: config,
            upload: config,
        });
    }
    (SubscriberTables { addresses, owners }, locals)
}

/// The two ring ports of a case, with one queue pair per worker.
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
    /// Ring ports `{name}c` and `{name}a` with `queues` queue pairs of `frames` frames per
    /// ring.
    pub fn new(eal: &Eal, name: &str, frames: u32, queues: u16, pool: Mempool) -> (Rig, RigEnds) {
        let config = PortConfig {
            rx_queues: queues,
            tx_queues: queues,
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

    /// The workers' queues: `pairs()[w]` is queue `w` of both ports, worker `w`'s (so a
    /// single worker's whole list).
    pub fn pairs(&self) -> Vec<PairQueues<'_>> {
        PairQueues::of(self.core.port(), self.access.port()).expect("fresh ports")
    }
}

/// A worker's only handoff: none (one worker).
pub fn no_handoff() -> Handoff {
    Handoff {
        to: vec![None],
        from: Vec::new(),
    }
}

/// The handoff rings of `workers` workers, one for every ordered pair, as the appliance
/// builds them: `handoffs[w]` is worker `w`'s.
fn handoffs(eal: &Eal, name: &str, workers: usize) -> Vec<Handoff> {
    let mut all: Vec<Handoff> = (0..workers)
        .map(|_| Handoff {
            to: (0..workers).map(|_| None).collect(),
            from: Vec::new(),
        })
        .collect();
    for a in 0..workers {
        for b in (0..workers).filter(|&b| b != a) {
            let (producer, consumer) =
                mbuf_ring(eal, &format!("{name}_ho_{a}_{b}"), HANDOFF_RING_FRAMES)
                    .unwrap_or_else(|e| panic!("{e}"));
            all[a].to[b] = Some(producer);
            all[b].from.push(consumer);
        }
    }
    all
}

/// Runs `case` for a warm-up second and `seconds` measured, with the workers of `plan`.
pub fn run(
    eal: &'static Eal,
    hz: u64,
    pool: Mempool,
    name: &str,
    case: Case,
    plan: &WorkerPlan,
    seconds: f64,
) -> Measured {
    let workers = plan.workers();
    let (rig, mut ends) = Rig::new(eal, name, RING_FRAMES, workers as u16, pool);
    let published: Vec<PublishedCounters> =
        (0..workers).map(|_| PublishedCounters::default()).collect();
    let memory_before = resident_bytes();
    let setup_started = Instant::now();
    let bridges = rig
        .pairs()
        .into_iter()
        .zip(&published)
        .map(|(pair, published)| Worker::new(vec![pair], published, hz));
    // The workers, and the RX queue (worker) of each subscriber's frames.
    let (built, queue_of): (Vec<Worker>, Vec<u16>) = if case.shaping == Shaping::Off {
        // No owners: every worker bridges what its queue receives; the generator spreads
        // subscribers over the queues by address.
        let queue_of = (0..case.subscribers)
            .map(|s| (s as usize % workers) as u16)
            .collect();
        (bridges.collect(), queue_of)
    } else {
        // The probe's subscriber is one more, after the generated ones, with a rate ten times
        // its load: shaped like the others, never held back by its own shaper.
        let (tables, mut locals) = subscribers(
            case.subscribers + u32::from(case.probe),
            case.shaping,
            workers,
        );
        if case.probe {
            let owner = tables.owners[case.subscribers as usize];
            locals[usize::from(owner.worker)][owner.local as usize]
                .download
                .bandwidth = Some(10 * PROBE_BYTES_PER_SECOND);
        }
        let queue_of = tables
            .owners
            .iter()
            .enumerate()
            .map(|(s, owner)| plan.queue_of(s as u32, owner.worker))
            .collect();
        let tables = Arc::new(tables);
        let built = bridges
            .zip(locals)
            .zip(handoffs(eal, name, workers))
            .enumerate()
            .map(|(w, ((worker, locals), handoff))| {
                let flow_pool = locals.len() * case.flows as usize + 4096;
                let setup = setup_with(
                    w,
                    locals.len(),
                    Arc::clone(&tables),
                    locals,
                    flow_pool,
                    ControlChannel::new(16),
                );
                worker.with_shaping(setup, handoff)
            })
            .collect();
        (built, queue_of)
    };
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    let memory_bytes = resident_bytes().saturating_sub(memory_before);

    // The traffic first: the probe's address depends on it.
    let mut generator = Generator::new(pool, case.subscribers, case.flows)
        .with_traffic(case.traffic)
        .steered(workers, queue_of);
    if let Some(fps) = case.offered {
        generator = generator.paced(fps, hz);
    }
    if case.probe {
        generator = generator.with_probe(case.subscribers, hz * PROBE_INTERVAL_US / 1_000_000);
    }
    let mut probe_delays = Vec::new();
    let stop = AtomicBool::new(false);
    let read = || published.iter().map(PublishedCounters::read).collect();
    let (c0, c1, elapsed): (Vec<WorkerCounters>, Vec<WorkerCounters>, f64) =
        std::thread::scope(|scope| {
            let runners: Vec<_> = built
                .into_iter()
                .zip(&plan.cores)
                .map(|(mut worker, &core)| {
                    let stop = &stop;
                    scope.spawn(move || {
                        run_pinned(eal, core, || {
                            worker.run(stop);
                            worker
                        })
                    })
                })
                .collect();
            let start = tsc();
            let window_start = start + hz;
            let window_end = window_start + (seconds * hz as f64) as u64;
            let mut c0 = None;
            let mut t0 = Instant::now();
            loop {
                generator.round(&mut ends.core, &mut ends.access);
                let now = tsc();
                if c0.is_none() && now >= window_start {
                    c0 = Some(read());
                    t0 = Instant::now();
                    // Probes of the warm-up are not counted.
                    generator.take_probe_delays();
                }
                if now >= window_end {
                    break;
                }
            }
            // Workers publish every millisecond: wait for one after the window.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let c1 = read();
            let elapsed = t0.elapsed().as_secs_f64();
            probe_delays = generator.take_probe_delays();
            stop.store(true, Ordering::Relaxed);
            let mut stopped: Vec<Worker> = runners
                .into_iter()
                .map(|r| r.join().expect("worker"))
                .collect();
            // Every worker has stopped sending: what is left in a handoff ring goes back to
            // the pool, counted by its receiver.
            for worker in &mut stopped {
                worker.drain_handoffs();
            }
            (c0.expect("the window started"), c1, elapsed)
        });
    drop(generator);
    drop(ends);
    drop(rig);
    let mut m = measured(case, plan, &c0, &c1, elapsed, memory_bytes, setup_seconds);
    if case.probe {
        m.result.probe_latency_us = Some(Percentiles::of(&mut probe_delays, hz));
    }
    m
}

/// Frames dropped per second by reason between `c0` and `c1`, millions (reasons that
/// happened).
fn drops_mpps(
    c0: &WorkerCounters,
    c1: &WorkerCounters,
    elapsed: f64,
) -> std::collections::BTreeMap<&'static str, f64> {
    DropReason::ALL
        .iter()
        .map(|&r| {
            (
                r.name(),
                (c1.dropped(r) - c0.dropped(r)) as f64 / elapsed / 1e6,
            )
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// The counters of all `workers` together (those a case reports).
fn all_workers(workers: &[WorkerCounters]) -> WorkerCounters {
    let mut sum = WorkerCounters::default();
    for c in workers {
        sum.rx_packets += c.rx_packets;
        sum.tx_packets += c.tx_packets;
        sum.busy_cycles += c.busy_cycles;
        sum.handed_off += c.handed_off;
        sum.taken_over += c.taken_over;
        for (total, d) in sum.dropped.iter_mut().zip(c.dropped) {
            *total += d;
        }
    }
    sum
}

fn measured(
    case: Case,
    plan: &WorkerPlan,
    c0: &[WorkerCounters],
    c1: &[WorkerCounters],
    elapsed: f64,
    memory_bytes: u64,
    setup_seconds: f64,
) -> Measured {
    let mpps = |count: &dyn Fn(&WorkerCounters) -> u64, a: &WorkerCounters, b: &WorkerCounters| {
        (count(b) - count(a)) as f64 / elapsed / 1e6
    };
    // Busy cycles over the frames a worker received itself: a frame handed over costs
    // cycles on both workers but is received once, so the total is per frame of the case.
    let cycles = |a: &WorkerCounters, b: &WorkerCounters| {
        (b.busy_cycles - a.busy_cycles) as f64 / (b.rx_packets - a.rx_packets).max(1) as f64
    };
    let per_worker: Vec<WorkerRow> = c0
        .iter()
        .zip(c1)
        .zip(&plan.cores)
        .enumerate()
        .map(|(worker, ((a, b), &core))| WorkerRow {
            worker,
            core,
            rx_mpps: mpps(&|c| c.rx_packets, a, b),
            tx_mpps: mpps(&|c| c.tx_packets, a, b),
            cycles_per_packet: cycles(a, b),
            handed_off_mpps: mpps(&|c| c.handed_off, a, b),
            taken_over_mpps: mpps(&|c| c.taken_over, a, b),
            drops_mpps: drops_mpps(a, b, elapsed),
        })
        .collect();
    let (t0, t1) = (all_workers(c0), all_workers(c1));
    let rx_mpps = mpps(&|c| c.rx_packets, &t0, &t1);
    let name = match (case.shaping, case.offered) {
        (Shaping::Off, _) => "bridge_ring",
        (Shaping::Unlimited, _) => "cake_unlimited",
        (Shaping::Rate(_), None) => "shaped",
        (Shaping::Rate(_), Some(_)) => "shaped_paced",
    };
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
            workers: plan.workers() as u64,
            worker_cores: plan.cores.clone(),
            shared_cores: plan.shared_cores,
            steering: (plan.workers() > 1).then_some(plan.steering),
            mpps: rx_mpps,
            gbps: rx_mpps * case.traffic.sizes.mean() * 8.0 / 1e3,
            cycles_per_packet: Some(cycles(&t0, &t1)),
            seconds: elapsed,
            tx_mpps: Some(mpps(&|c| c.tx_packets, &t0, &t1)),
            drops_mpps: drops_mpps(&t0, &t1, elapsed),
            probe_latency_us: None,
            per_worker: if plan.workers() > 1 {
                per_worker
            } else {
                Vec::new()
            },
        },
        memory_bytes,
        setup_seconds,
    }
}

/// Resident memory `n` idle subscribers add to a worker: both CAKE instances, address-table
/// entries, gauges, timer-wheel and ready-queue slots, owners. Run before any other case, so
/// the allocator has no freed memory to hand back without growing the process.
pub fn idle_memory(eal: &'static Eal, hz: u64, pool: Mempool, n: u32) -> u64 {
    let (rig, _ends) = Rig::new(eal, "idle", 64, 1, pool);
    let pairs = rig.pairs();
    let published = PublishedCounters::default();
    let before = resident_bytes();
    let (tables, mut locals) = subscribers(n, Shaping::Unlimited, 1);
    let setup = setup_with(
        0,
        n as usize,
        Arc::new(tables),
        locals.remove(0),
        IDLE_FLOW_POOL,
        ControlChannel::new(16),
    );
    let worker = Worker::new(pairs, &published, hz).with_shaping(setup, no_handoff());
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

/// The setup of worker `worker` with `slots` subscriber slots, its subscribers and the shared
/// tables, `flow_pool` flows and its command channel: what every case's worker is built from.
pub fn setup_with(
    worker: usize,
    slots: usize,
    tables: Arc<SubscriberTables>,
    subscribers: Vec<LocalSubscriber>,
    flow_pool: usize,
    channel: Arc<ControlChannel>,
) -> ShapingSetup {
    ShapingSetup {
        tables,
        subscribers,
        capacity: slots,
        channel,
        worker: worker as u16,
        flows: flow_pool,
        queued_budget: QUEUED_BUDGET,
        seed: 1 + worker as u64,
        gauges: instance_gauges(slots),
        default_class: [None, None],
        idle: [placeholder_config(); 2],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::Steering;
    use sheetcake_dataplane::dpdk::{tsc_hz, MempoolConfig};

    /// The one test of this binary that starts an EAL (a process has one).
    #[test]
    fn two_workers_shape_their_shards_hand_off_the_rest_and_return_every_buffer() {
        let args: Vec<String> = [
            "--lcores=0@(0-1)",
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--file-prefix=sc-bench-test",
        ]
        .map(str::to_owned)
        .into();
        let eal = Eal::init(&args).expect("EAL starts with --no-huge");
        let hz = tsc_hz(eal);
        // Fewer buffers than the workers' budgets: the generator runs short before a worker's
        // budget binds, which this test does not need to reach.
        let pool = Mempool::new(
            eal,
            &MempoolConfig {
                name: "test_ring_mbufs".into(),
                mbufs: 16_383,
                cache: 256,
                data_room: 2176,
            },
        )
        .expect("pool");
        // Both workers on the last core this machine has: a smoke test fits on two cores.
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        let core = *available.last().expect("a core");
        let case = Case {
            subscribers: 1_000,
            flows: 1,
            shaping: Shaping::Unlimited,
            probe: false,
            offered: None,
            traffic: Traffic::MIN_IPV4,
        };
        for (name, steering) in [("t_addr", Steering::Address), ("t_owner", Steering::Owner)] {
            let plan = WorkerPlan::new(2, Some(&[core, core]), steering, &available).unwrap();
            let m = run(eal, hz, pool, name, case, &plan, 0.3);
            assert_eq!(m.result.workers, 2);
            assert_eq!(m.result.per_worker.len(), 2, "{steering:?}");
            for w in &m.result.per_worker {
                assert!(w.rx_mpps > 0.0 && w.tx_mpps > 0.0, "{steering:?}: {w:?}");
                match steering {
                    // Half the frames of each queue are the other worker's subscribers'.
                    Steering::Address => assert!(
                        w.handed_off_mpps > 0.0 && w.taken_over_mpps > 0.0,
                        "{steering:?}: {w:?}"
                    ),
                    Steering::Owner => {
                        assert_eq!((w.handed_off_mpps, w.taken_over_mpps), (0.0, 0.0), "{w:?}")
                    }
                }
            }
            // Frames dropped (a handoff ring full while its reader waited for the shared
            // core), frames still queued at the end and frames left in the handoff rings all
            // went back to the pool.
            assert_eq!(pool.in_use(), 0, "{steering:?}: every buffer came back");
        }
    }
}
