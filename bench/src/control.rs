//! The control plane: how long a running worker takes to take in N subscribers, and how soon
//! a single change is in force while the worker forwards at load.
//!
//! These measure the mechanism every subscriber source uses (commands over the worker's ring,
//! instances built on the control side, the address tables swapped at a loop boundary), from
//! validated subscribers: reading and checking a subscriber file, or an HTTP request, comes
//! on top.
//! - load: the worker runs with N empty slots; the clock starts when the control side begins
//!   building tables and instances and stops when the worker has applied the last command.
//! - apply latency: a rate change (the most common change: a plan upgrade, a parent node's
//!   share) is pushed every [`CHANGE_SPACING_US`] while the generator keeps the worker busy;
//!   the latency is from the push to the worker's applied counter moving, seen by the same
//!   thread (to within one generator round, about a microsecond).
//! - sustained: changes pushed as fast as the ring takes them, with the forwarding rate
//!   meanwhile against the rate without changes.

use crate::generator::Generator;
use crate::run_pinned;
use crate::shaped::{no_handoff, setup_with, subscribers, Rig, Shaping, RING_FRAMES};
use sheetcake_cake::{Cake, CakeConfig, InstanceSetup};
use sheetcake_dataplane::dpdk::{tsc, Eal, Mempool};
use sheetcake_dataplane::shaping::{Command, ControlChannel, Retired, SubscriberTables};
use sheetcake_dataplane::worker::{PublishedCounters, Worker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Time between two single changes in the latency phase, microseconds: far enough apart that
/// each is applied alone.
pub const CHANGE_SPACING_US: u64 = 200;

/// The rate of every subscriber in the change phases, and the one changes toggle to.
const RATE: u64 = 10_000_000 / 8;
const OTHER_RATE: u64 = 12_000_000 / 8;

/// Flow entries beyond one per subscriber.
const FLOW_SLACK: usize = 4096;

/// Commands the control ring holds, as in the appliance.
const COMMAND_RING: usize = 4096;

/// What the change phases measured.
#[derive(Debug, Clone, Copy)]
pub struct Changes {
    pub apply_p50_us: f64,
    pub apply_p99_us: f64,
    pub apply_max_us: f64,
    pub samples: usize,
    pub changes_per_second: f64,
    /// The worker's receive rate without changes, and while changes stream in, Mpps.
    pub mpps_before: f64,
    pub mpps_during: f64,
}

/// The `k`th rate change: a download instance of one of `n` subscribers (spread by a prime
/// stride), toggled between two rates.
fn rate_change(k: u64, n: u32) -> Command {
    Command::SetRate {
        instance: 2 * ((k * 7919) % u64::from(n)) as u32,
        bandwidth: Some(if k.is_multiple_of(2) {
            RATE
        } else {
            OTHER_RATE
        }),
    }
}

/// Frees what the worker handed back.
fn drain_retired(channel: &ControlChannel) {
    while let Some(item) = channel.retired.pop() {
        match item {
            Retired::Tables(t) => drop(t),
            Retired::Instances(i) => drop(i),
            Retired::Report(r) => drop(r),
        }
    }
}

/// Seconds for a running worker to take in `n` subscribers.
pub fn load_seconds(eal: &'static Eal, hz: u64, pool: Mempool, worker_core: usize, n: u32) -> f64 {
    let (rig, _ends) = Rig::new(eal, &format!("ld{n}"), 64, 1, pool);
    let channel = ControlChannel::new(COMMAND_RING);
    let published = PublishedCounters::default();
    let setup = setup_with(
        0,
        n as usize,
        Arc::new(SubscriberTables::default()),
        Vec::new(),
        n as usize + FLOW_SLACK,
        Arc::clone(&channel),
    );
    let mut worker = Worker::new(rig.pairs(), &published, hz).with_shaping(setup, no_handoff());
    let stop = AtomicBool::new(false);
    let seconds = std::thread::scope(|scope| {
        let runner = scope.spawn(|| run_pinned(eal, worker_core, || worker.run(&stop)));
        let started = Instant::now();
        let config = CakeConfig {
            bandwidth: Some(RATE),
            ..CakeConfig::default()
        };
        let (tables, _) = subscribers(n, Shaping::Rate(RATE), 1);
        let before = channel.applied();
        let send = |mut command: Command| loop {
            match channel.push(command) {
                Ok(_) => return,
                Err(back) => {
                    command = back;
                    drain_retired(&channel);
                    std::hint::spin_loop();
                }
            }
        };
        for local in 0..n {
            let id = 2 * local;
            send(Command::Upsert {
                local,
                instances: Box::new([
                    Cake::new(config, InstanceSetup::new(id, u64::from(id))),
                    Cake::new(config, InstanceSetup::new(id + 1, u64::from(id + 1))),
                ]),
            });
        }
        send(Command::Tables(Arc::new(tables)));
        while channel.applied() < before + u64::from(n) + 1 {
            drain_retired(&channel);
            std::hint::spin_loop();
        }
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        runner.join().expect("worker");
        drain_retired(&channel);
        seconds
    });
    drop(worker);
    seconds
}

/// Single-change latency and sustained changes, with `n` subscribers forwarding at load,
/// `seconds` per phase after a second of warm-up.
pub fn changes(
    eal: &'static Eal,
    hz: u64,
    pool: Mempool,
    worker_core: usize,
    n: u32,
    seconds: f64,
) -> Changes {
    let (rig, mut ends) = Rig::new(eal, "chg", RING_FRAMES, 1, pool);
    let channel = ControlChannel::new(COMMAND_RING);
    let published = PublishedCounters::default();
    let (tables, mut locals) = subscribers(n, Shaping::Rate(RATE), 1);
    let setup = setup_with(
        0,
        n as usize,
        Arc::new(tables),
        locals.remove(0),
        n as usize + FLOW_SLACK,
        Arc::clone(&channel),
    );
    let mut worker = Worker::new(rig.pairs(), &published, hz).with_shaping(setup, no_handoff());
    let mut generator = Generator::new(pool, n, 1);
    let stop = AtomicBool::new(false);
    let window = (seconds * hz as f64) as u64;
    let result = std::thread::scope(|scope| {
        let runner = scope.spawn(|| run_pinned(eal, worker_core, || worker.run(&stop)));
        let mut feed_until = |until: u64, mut each_round: Box<dyn FnMut(u64) + '_>| {
            while tsc() < until {
                generator.round(&mut ends.core, &mut ends.access);
                each_round(tsc());
            }
        };
        let ns = |cycles: u64| cycles as f64 * 1e9 / hz as f64;
        // Warm-up, then forwarding alone.
        feed_until(tsc() + hz, Box::new(|_| {}));
        let (c0, t0) = (published.read(), tsc());
        feed_until(t0 + window, Box::new(|_| {}));
        let (c1, t1) = (published.read(), tsc());
        let mpps_before = (c1.rx_packets - c0.rx_packets) as f64 / (ns(t1 - t0) / 1e9) / 1e6;

        // One change at a time, every CHANGE_SPACING_US.
        let spacing = hz * CHANGE_SPACING_US / 1_000_000;
        let mut latencies: Vec<f64> = Vec::new();
        let mut pending: Option<(u64, u64)> = None; // (applied count to reach, pushed at)
        let mut next_push = tsc();
        let mut k = 0u64;
        feed_until(
            tsc() + window,
            Box::new(|now| {
                if let Some((target, pushed)) = pending {
                    if channel.applied() >= target {
                        latencies.push(ns(now - pushed) / 1e3);
                        pending = None;
                    }
                } else if now >= next_push {
                    k += 1;
                    let command = rate_change(k, n);
                    let target = channel.applied() + 1;
                    if channel.push(command).is_ok() {
                        pending = Some((target, tsc()));
                        next_push = now + spacing;
                    }
                }
            }),
        );
        // As many changes as the ring takes.
        let (a0, c2, t2) = (channel.applied(), published.read(), tsc());
        let mut j = 0u64;
        feed_until(
            t2 + window,
            Box::new(|_| {
                for _ in 0..64 {
                    j += 1;
                    let command = rate_change(j, n);
                    if channel.push(command).is_err() {
                        break;
                    }
                }
            }),
        );
        let (a1, c3, t3) = (channel.applied(), published.read(), tsc());
        stop.store(true, Ordering::Relaxed);
        runner.join().expect("worker");
        let secs = ns(t3 - t2) / 1e9;
        latencies.sort_by(f64::total_cmp);
        let at = |p: f64| {
            latencies
                .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Changes {
            apply_p50_us: at(0.5),
            apply_p99_us: at(0.99),
            apply_max_us: latencies.last().copied().unwrap_or(f64::NAN),
            samples: latencies.len(),
            changes_per_second: (a1 - a0) as f64 / secs,
            mpps_before,
            mpps_during: (c3.rx_packets - c2.rx_packets) as f64 / secs / 1e6,
        }
    });
    drop(worker);
    drop(ends);
    drop(rig);
    result
}
