//! Shaping cases: sheetcake's worker with N subscribers, fed by the generator through ring
//! ports, on its own pinned core; the generator runs on the benchmark's core.
//!
//! - `cake_unlimited`: every subscriber's CAKE has no rate: every frame is classified, placed
//!   in its flow, enqueued and dequeued at once. CPU bound.
//! - `shaped`: every subscriber's rate is [`SHAPED_SHARE`] of its part of what the worker took
//!   in while shaping in a first, calibrating run of the same frames, so arrivals exceed every
//!   rate: every frame goes through enqueue, COBALT, the shaper and the timer wheel, and what
//!   exceeds the rates is dropped by the AQM, CAKE's memory limit or the worker's budget (the
//!   worst case: every subscriber saturated at once). The case warms up until its rates bind
//!   (every worker found its budget full, or [`BOUND_SHARE`] of its instances in the traffic's
//!   direction hold frames), for at most [`BIND_WARM_UP_MAX_SECONDS`], and reports whether
//!   they bound through the window ([`Binding`]).
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
    instance_gauges, ControlChannel, Direction, InstanceGauges, LocalSubscriber, Owner,
    SubscriberTables,
};
use sheetcake_dataplane::worker::{
    placeholder_config, DropReason, Handoff, PairQueues, PublishedCounters, ShapingSetup, Worker,
    WorkerCounters, PUBLISH_INTERVAL_US,
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

/// Warm-up of every case before its window, seconds.
pub const WARM_UP_SECONDS: f64 = 1.0;
/// Warm-up of a `shaped` case at most, seconds, waiting for its rates to bind. A subscriber's
/// first frame after a rest leaves at once (its shaper owes nothing yet), so a queue only
/// grows from its second frame on: at 1,000,000 subscribers of one flow each, a subscriber
/// receives one to a few frames a second, and the budget filled after 1 to 23 s in the runs
/// of 2026-12-02.
pub const BIND_WARM_UP_MAX_SECONDS: f64 = 30.0;
/// How often the warm-up checks whether the rates bind, TSC cycles per second divided by this.
const BIND_CHECKS_PER_SECOND: u64 = 100;
/// The share of its instances a worker must find backlogged, at the window's start and end,
/// to count as bound by them (see [`Binding`]). A saturated instance is empty for the moment
/// between its last frame leaving and the next arriving (CAKE never drops a flow's last
/// frame, but its shaper sends it), so at any instant a few are: a hundredth is the allowance.
pub const BOUND_SHARE: f64 = 0.99;
/// The share of the frames a worker received it must have dropped to count as bound by its
/// budget (see [`Binding`]): half the excess the `shaped` rates leave ([`SHAPED_SHARE`] of
/// the arrivals may leave), so a case whose arrivals barely exceed its rates does not count.
pub const BOUND_DROP_SHARE: f64 = (1.0 - SHAPED_SHARE) / 2.0;

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

/// Whether a case's rates bound: what a `shaped` case must show to be the case it claims,
/// every frame through enqueue, the AQM, the shaper and the timer wheel. A worker is bound
/// when [`BOUND_SHARE`] of the instances of its subscribers in the traffic's direction hold
/// frames at the window's start and at its end (each is served by its shaper's clock, not by
/// arrivals), or when it drops [`BOUND_DROP_SHARE`] of what it receives: queues are bounded,
/// so what arrives and does not leave is dropped, and drops of that size say the arrivals
/// exceed the rates and fill the budget (which then takes frames from the subscribers holding
/// the most: with more subscribers than the budget has frames, as at a million, most hold
/// none at any moment). The budget is full most of the time then, but not all: shapers of
/// subscribers whose first frames came together come due together, and their departures free
/// part of the budget at once.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Binding {
    /// Share of the window's milliseconds (one per published count) in which the worker
    /// found its budget full (it dropped for the budget); with several workers, the least.
    pub budget_full_share: f64,
    /// Share of the subscribers whose instance held frames, the smaller of the window's
    /// start and end; with several workers, the least of them.
    pub backlogged_share: f64,
    /// Share of the frames received that were dropped (any reason); with several workers,
    /// the least of them.
    pub dropped_share: f64,
    /// Frames queued in the workers, mean over the window's samples.
    pub queued_mean: f64,
    /// Seconds of warm-up before the window: [`WARM_UP_SECONDS`], or more until it bound.
    pub warm_up_seconds: f64,
}

impl Binding {
    /// Every worker bound through the window (see [`Binding`]).
    pub fn bound(workers: &[WorkerBinding]) -> bool {
        workers.iter().all(|w| {
            w.backlogged as f64 >= BOUND_SHARE * w.instances as f64
                || w.dropped as f64 >= BOUND_DROP_SHARE * w.received as f64
        })
    }
}

/// One worker's part of a [`Binding`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerBinding {
    /// The window's samples of its published counts, and those in which it found its budget
    /// full.
    samples: u64,
    full_samples: u64,
    /// Its instances of the case's traffic, and of them the fewest backlogged at the window's
    /// start or end.
    instances: usize,
    backlogged: usize,
    /// Frames it received for its own instances in the window (from its queues and other
    /// workers), and dropped.
    received: u64,
    dropped: u64,
}

/// The ring cases' mempool during the window: buffers out of it (queued in the workers, in
/// the rings and in the generator's hands), sampled every millisecond.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MempoolUse {
    pub mbufs: u32,
    pub in_use_mean: f64,
    pub in_use_peak: u32,
}

/// What the measuring thread watches of one worker: its instances' gauges and which of them
/// carry the case's frames.
struct Watch {
    gauges: InstanceGauges,
    instances: Vec<u32>,
}

impl Watch {
    /// Instances holding frames now.
    fn backlogged(&self) -> usize {
        self.instances
            .iter()
            .filter(|&&i| self.gauges[i as usize].backlog_bytes() > 0)
            .count()
    }

    /// Whether the worker binds now (see [`Binding`]), its counters having gone from `before`
    /// to `now`. A backlog is at least one frame, so a worker with more instances than its
    /// budget allows backlogged can bind only by its budget: its gauges are not read then.
    fn binds(&self, before: &WorkerCounters, now: &WorkerCounters) -> bool {
        let instances = self.instances.len() as f64;
        found_budget_full(before, now)
            || (instances * BOUND_SHARE <= QUEUED_BUDGET as f64
                && self.backlogged() as f64 >= instances * BOUND_SHARE)
    }
}

/// The worker found its budget full between `before` and `now`: it dropped for it.
fn found_budget_full(before: &WorkerCounters, now: &WorkerCounters) -> bool {
    now.dropped(DropReason::Budget) > before.dropped(DropReason::Budget)
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

/// Runs `case` for a warm-up (see [`WARM_UP_SECONDS`]) and `seconds` measured, with the
/// workers of `plan`.
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
    // The workers, the RX queue (worker) of each subscriber's frames, and what the measuring
    // thread watches of each worker.
    let (built, queue_of, watches): (Vec<Worker>, Vec<u16>, Vec<Watch>) =
        if case.shaping == Shaping::Off {
            // No owners: every worker bridges what its queue receives; the generator spreads
            // subscribers over the queues by address.
            let queue_of = (0..case.subscribers)
                .map(|s| (s as usize % workers) as u16)
                .collect();
            (bridges.collect(), queue_of, Vec::new())
        } else {
            // The probe's subscriber is one more, after the generated ones, with a rate ten
            // times its load: shaped like the others, never held back by its own shaper.
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
            // The instance of each generated subscriber in the traffic's direction.
            let direction = if case.traffic.upload() {
                Direction::Upload
            } else {
                Direction::Download
            };
            let mut instances: Vec<Vec<u32>> = (0..workers).map(|_| Vec::new()).collect();
            for owner in &tables.owners[..case.subscribers as usize] {
                instances[usize::from(owner.worker)].push(2 * owner.local + direction as u32);
            }
            let tables = Arc::new(tables);
            let (built, watches) = bridges
                .zip(locals)
                .zip(handoffs(eal, name, workers))
                .zip(instances)
                .enumerate()
                .map(|(w, (((worker, locals), handoff), instances))| {
                    let flow_pool = locals.len() * case.flows as usize + 4096;
                    let setup = setup_with(
                        w,
                        locals.len(),
                        Arc::clone(&tables),
                        locals,
                        flow_pool,
                        ControlChannel::new(16),
                    );
                    let watch = Watch {
                        gauges: Arc::clone(&setup.gauges),
                        instances,
                    };
                    (worker.with_shaping(setup, handoff), watch)
                })
                .unzip();
            (built, queue_of, watches)
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
    // Only an unpaced shaped case offers more than its rates: the others start at once.
    let must_bind = matches!(case.shaping, Shaping::Rate(_)) && case.offered.is_none();
    let mut probe_delays = Vec::new();
    let stop = AtomicBool::new(false);
    let read =
        || -> Vec<WorkerCounters> { published.iter().map(PublishedCounters::read).collect() };
    let backlogged = || -> Vec<usize> { watches.iter().map(Watch::backlogged).collect() };
    let window = std::thread::scope(|scope| {
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
        // Warm-up: at least WARM_UP_SECONDS, then, for a shaped case, until every worker binds
        // or the cap.
        let start = tsc();
        let earliest = start + (WARM_UP_SECONDS * hz as f64) as u64;
        let latest = start + (BIND_WARM_UP_MAX_SECONDS * hz as f64) as u64;
        let mut next_check = earliest;
        let mut checked = read();
        let bound_in_time = loop {
            generator.round(&mut ends.core, &mut ends.access);
            let now = tsc();
            if now < next_check {
                continue;
            }
            next_check = now + hz / BIND_CHECKS_PER_SECOND;
            let counters = read();
            let binds = watches
                .iter()
                .zip(checked.iter().zip(&counters))
                .all(|(w, (before, now))| w.binds(before, now));
            checked = counters;
            if !must_bind || binds {
                break true;
            }
            if now >= latest {
                break false;
            }
        };
        let warm_up_seconds = (tsc() - start) as f64 / hz as f64;
        let backlogged_at_start = backlogged();
        if !bound_in_time {
            let queued: u64 = checked.iter().map(|c| c.queued).sum();
            let instances: usize = watches.iter().map(|w| w.instances.len()).sum();
            println!(
                "  warning: {} subscribers x {} flows: the rates did not bind within {BIND_WARM_UP_MAX_SECONDS} s of warm-up \
                 ({queued} frames queued, a budget of {} per worker; {} of {instances} instances backlogged): measured anyway",
                case.subscribers,
                case.flows,
                QUEUED_BUDGET,
                backlogged_at_start.iter().sum::<usize>(),
            );
        }
        // The window: every published count sampled (budget, pool).
        let c0 = read();
        let mut sampled = c0.clone();
        let t0 = Instant::now();
        let window_start = tsc();
        let window_end = window_start + (seconds * hz as f64) as u64;
        let sample_every = (hz / 1_000_000).max(1) * PUBLISH_INTERVAL_US;
        let mut next_sample = window_start;
        let mut per_worker: Vec<WorkerBinding> = watches
            .iter()
            .map(|w| WorkerBinding {
                instances: w.instances.len(),
                ..WorkerBinding::default()
            })
            .collect();
        let (mut samples, mut queued_sum, mut in_use_sum, mut in_use_peak) =
            (0u64, 0u64, 0u64, 0u32);
        // Probes of the warm-up are not counted.
        generator.take_probe_delays();
        loop {
            generator.round(&mut ends.core, &mut ends.access);
            let now = tsc();
            if now >= next_sample {
                next_sample = now + sample_every;
                samples += 1;
                let in_use = pool.in_use();
                in_use_sum += u64::from(in_use);
                in_use_peak = in_use_peak.max(in_use);
                let counters = read();
                for ((w, before), now) in per_worker.iter_mut().zip(&mut sampled).zip(counters) {
                    // A count the worker has not published anew yet is not a sample.
                    if now.total_cycles != before.total_cycles {
                        w.samples += 1;
                        w.full_samples += u64::from(found_budget_full(before, &now));
                        queued_sum += now.queued;
                        *before = now;
                    }
                }
            }
            if now >= window_end {
                break;
            }
        }
        // Workers publish every millisecond: wait for one after the window.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c1 = read();
        let elapsed = t0.elapsed().as_secs_f64();
        for ((((w, start), end), a), b) in per_worker
            .iter_mut()
            .zip(backlogged_at_start)
            .zip(backlogged())
            .zip(&c0)
            .zip(&c1)
        {
            w.backlogged = start.min(end);
            w.received = (b.rx_packets - a.rx_packets) + (b.taken_over - a.taken_over)
                - (b.handed_off - a.handed_off);
            w.dropped = DropReason::ALL
                .iter()
                .map(|&r| b.dropped(r) - a.dropped(r))
                .sum();
        }
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
        let share = |part: u64, whole: u64| part as f64 / whole.max(1) as f64;
        Window {
            binding: (!watches.is_empty() && matches!(case.shaping, Shaping::Rate(_))).then(|| {
                (
                    Binding {
                        budget_full_share: per_worker
                            .iter()
                            .map(|w| share(w.full_samples, w.samples))
                            .fold(1.0, f64::min),
                        backlogged_share: per_worker
                            .iter()
                            .map(|w| share(w.backlogged as u64, w.instances as u64))
                            .fold(1.0, f64::min),
                        dropped_share: per_worker
                            .iter()
                            .map(|w| share(w.dropped, w.received))
                            .fold(1.0, f64::min),
                        queued_mean: queued_sum as f64
                            / per_worker
                                .iter()
                                .map(|w| w.samples)
                                .max()
                                .unwrap_or(0)
                                .max(1) as f64,
                        warm_up_seconds,
                    },
                    Binding::bound(&per_worker),
                )
            }),
            mempool: MempoolUse {
                mbufs: pool.size(),
                in_use_mean: in_use_sum as f64 / samples.max(1) as f64,
                in_use_peak,
            },
            c0,
            c1,
            elapsed,
        }
    });
    drop(generator);
    drop(ends);
    drop(rig);
    let mut m = measured(case, plan, &window, memory_bytes, setup_seconds);
    if case.probe {
        m.result.probe_latency_us = Some(Percentiles::of(&mut probe_delays, hz));
    }
    m
}

/// What the measuring thread saw of a case's window.
struct Window {
    c0: Vec<WorkerCounters>,
    c1: Vec<WorkerCounters>,
    elapsed: f64,
    /// Shaped cases: how their rates bound, and whether they did.
    binding: Option<(Binding, bool)>,
    mempool: MempoolUse,
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
    window: &Window,
    memory_bytes: u64,
    setup_seconds: f64,
) -> Measured {
    let (c0, c1, elapsed) = (&window.c0, &window.c1, window.elapsed);
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
            frames: Some(case.traffic),
            workers: plan.workers() as u64,
            worker_cores: plan.cores.clone(),
            shared_cores: plan.shared_cores,
            steering: (plan.workers() > 1).then_some(plan.steering),
            mpps: rx_mpps,
            gbps: rx_mpps * case.traffic.mean_len() * 8.0 / 1e3,
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
            ratio_to_bridge: None,
            ratio_to_rte_sched: None,
            rate_bytes_per_second: match case.shaping {
                Shaping::Rate(rate) => Some(rate),
                Shaping::Off | Shaping::Unlimited => None,
            },
            bound: window.binding.map(|(_, bound)| bound),
            binding: window.binding.map(|(binding, _)| binding),
            mempool: Some(window.mempool),
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

/// What one more active flow costs the process, measured from it.
pub struct ActiveFlows {
    pub bytes: f64,
    /// How: the two workers, the flows they held and what they grew.
    pub from: String,
}

/// How long the active-flow measurement feeds a worker at most, waiting for its flows to be
/// in use, seconds.
const ACTIVE_FLOWS_WAIT_MAX_SECONDS: f64 = 20.0;
/// The active-flow workers' rate, bytes per second: one 64-byte frame (50 bytes as CAKE
/// counts) every 10 s, so within the measurement a subscriber sends its first frame only and
/// every later one stays queued, keeping its flow active.
const ACTIVE_FLOWS_RATE: u64 = 5;
/// Data room of the active-flow measurement's buffers, headroom included: a 64-byte frame
/// after DPDK's 128 bytes of headroom. Its frames stay queued, one or more per flow, so the
/// pool holds as many as the flows.
const ACTIVE_FLOWS_DATA_ROOM: u16 = 256;
/// What one of those buffers takes in its pool, rounded up, for sizing the EAL's memory.
pub const ACTIVE_FLOWS_MBUF_BYTES: u64 = 768;

/// Buffers of the active-flow measurement's pool for `n` subscribers of `flows` flows: one
/// frame queued per flow, and the generator's and the rings' frames.
pub fn active_flows_mbufs(n: u32, flows: u32) -> u32 {
    n * flows + 4 * RING_FRAMES + 4096
}

/// Bytes per active flow: two workers for the same `n` subscribers, with one flow each and
/// `flows` each, each fed on `core` until every flow holds queued frames (shaped at
/// [`ACTIVE_FLOWS_RATE`], with a budget and a pool of a frame per flow; every flow but each
/// subscriber's first, whose first frame leaves at once) or for
/// [`ACTIVE_FLOWS_WAIT_MAX_SECONDS`]. The second is built while the first still holds its
/// memory, so neither can reuse what the other freed. The difference of their resident
/// growth, read while they forward, over the difference of the flow entries they hold. Each
/// worker's flow pool is sized for its flows, as the appliance sizes it, so a flow's entry is
/// in the growth. Run it first: memory freed before can be handed back by the allocator
/// without the process growing. `meanwhile` (the idle measurement) runs while both workers
/// still hold their memory, so it cannot reuse theirs either. Never 0 by accident: a figure
/// that is not positive, or flows that were not active, are an error that says so.
pub fn active_flow_memory<T>(
    eal: &'static Eal,
    hz: u64,
    core: usize,
    n: u32,
    flows: u32,
    meanwhile: impl FnOnce() -> T,
) -> (Result<ActiveFlows, String>, T) {
    // Before the first reading: the pool's memory is touched as it is built.
    let pool = Mempool::new(
        eal,
        &sheetcake_dataplane::dpdk::MempoolConfig {
            name: "bench_flow_mbufs".into(),
            mbufs: active_flows_mbufs(n, flows),
            cache: 256,
            data_room: ACTIVE_FLOWS_DATA_ROOM,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let counts = [1, flows];
    let mut rigs: Vec<(Rig, RigEnds)> = counts
        .iter()
        .map(|f| Rig::new(eal, &format!("flows{f}"), RING_FRAMES, 1, pool))
        .collect();
    let published: Vec<PublishedCounters> = counts
        .iter()
        .map(|_| PublishedCounters::default())
        .collect();
    // Dropped before the rigs and counters they borrow.
    let mut kept = Vec::new();
    // (flow entries in use, resident growth) of each worker.
    let mut seen = Vec::new();
    for ((&f, (rig, ends)), published) in counts.iter().zip(&mut rigs).zip(&published) {
        let rig: &Rig = rig;
        let before = resident_bytes();
        let (tables, mut locals) = subscribers(n, Shaping::Rate(ACTIVE_FLOWS_RATE), 1);
        let mut setup = setup_with(
            0,
            n as usize,
            Arc::new(tables),
            locals.remove(0),
            (n * f) as usize + 4096,
            ControlChannel::new(16),
        );
        setup.queued_budget = u64::from(n * f) + 4096;
        let mut worker = Worker::new(rig.pairs(), published, hz).with_shaping(setup, no_handoff());
        let mut generator = Generator::new(pool, n, f);
        let wanted = u64::from(n * (f - 1).max(1));
        let stop = AtomicBool::new(false);
        let (in_use, grown, worker) = std::thread::scope(|scope| {
            let runner = scope.spawn(|| {
                run_pinned(eal, core, || {
                    worker.run(&stop);
                    worker
                })
            });
            let latest = tsc() + (ACTIVE_FLOWS_WAIT_MAX_SECONDS * hz as f64) as u64;
            while published.read().flows_in_use < wanted && tsc() < latest {
                generator.round(&mut ends.core, &mut ends.access);
            }
            let in_use = published.read().flows_in_use;
            let grown = resident_bytes().saturating_sub(before);
            stop.store(true, Ordering::Relaxed);
            (in_use, grown, runner.join().expect("worker"))
        });
        kept.push(worker);
        seen.push((in_use, grown));
    }
    let other = meanwhile();
    drop(kept);
    (active_flows(n, flows, seen[0], seen[1]), other)
}

/// Bytes per active flow from the (flow entries in use, resident growth) of the workers with
/// one flow per subscriber and with `flows`.
fn active_flows(
    n: u32,
    flows: u32,
    (one_flows, one_grown): (u64, u64),
    (many_flows, many_grown): (u64, u64),
) -> Result<ActiveFlows, String> {
    let from = format!(
        "{n} subscribers x {flows} flows ({many_flows} flow entries in use, {:.1} MB \
         resident growth) against x 1 ({one_flows} entries, {:.1} MB)",
        many_grown as f64 / 1e6,
        one_grown as f64 / 1e6,
    );
    let more = many_flows.saturating_sub(one_flows);
    if many_flows < u64::from(n * (flows - 1)) || more == 0 {
        return Err(format!(
            "the flows were not all active within {ACTIVE_FLOWS_WAIT_MAX_SECONDS} s: {from}"
        ));
    }
    if many_grown <= one_grown {
        return Err(format!(
            "the process grew no more with {flows} flows per subscriber than with one: {from}"
        ));
    }
    Ok(ActiveFlows {
        bytes: (many_grown - one_grown) as f64 / more as f64,
        from,
    })
}

/// Flow entries of the worker built for the idle measurement: the smallest pool, so the figure
/// is the subscribers' alone.
const IDLE_FLOW_POOL: usize = 1;

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

    fn worker(instances: usize, backlogged: usize, received: u64, dropped: u64) -> WorkerBinding {
        WorkerBinding {
            instances,
            backlogged,
            received,
            dropped,
            ..WorkerBinding::default()
        }
    }

    #[test]
    fn a_worker_binds_by_its_backlogged_instances_or_by_what_it_drops() {
        // 990 of 1,000 instances backlogged is the 99 % allowed; 989 is not, unless a tenth
        // of the frames were dropped.
        assert!(Binding::bound(&[worker(1_000, 990, 100, 0)]));
        assert!(!Binding::bound(&[worker(1_000, 989, 100, 9)]));
        assert!(Binding::bound(&[worker(1_000_000, 20_000, 100, 10)]));
        // Every worker must bind.
        assert!(!Binding::bound(&[
            worker(1_000, 1_000, 100, 0),
            worker(1_000, 0, 100, 0)
        ]));
    }

    #[test]
    fn bytes_per_active_flow_are_never_zero_by_accident() {
        // 63 more flows for each of 10 subscribers, 63,000 bytes more: 100 bytes each.
        let a = active_flows(10, 64, (10, 1_000), (640, 64_000)).unwrap();
        assert_eq!(a.bytes, 100.0);
        // Flows that were not all active, or no growth, give no figure.
        assert!(active_flows(10, 64, (10, 1_000), (100, 64_000)).is_err());
        assert!(active_flows(10, 64, (10, 64_000), (640, 64_000)).is_err());
    }

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
