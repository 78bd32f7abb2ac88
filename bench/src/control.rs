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
//! - metrics refresh: what the once-a-second refresh behind `/metrics` costs a worker
//!   forwarding 100,000 subscribers (it reads every instance gauge the worker writes and asks
//!   the owner for the busiest subscribers' statistics), at its real rate and ten times it:
//!   one-second windows with it alternate with one-second windows of forwarding alone, and
//!   each window with it is compared with its two neighbours.

use crate::generator::Generator;
use crate::paired::Paired;
use crate::run_pinned;
use crate::shaped::{no_handoff, setup_with, subscribers, Rig, Shaping, RING_FRAMES};
use serde::Serialize;
use sheetcake_cake::{Cake, CakeConfig, InstanceSetup};
use sheetcake_dataplane::dpdk::{tsc, Eal, Mempool};
use sheetcake_dataplane::shaping::{
    Command, ControlChannel, InstanceGauges, Retired, SubscriberReport, SubscriberTables,
};
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
            Retired::Configs(c) => drop(c),
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

/// Runs the generator until the TSC reaches the first argument, calling the second after
/// every round with the TSC.
type Feed<'a> = &'a mut dyn FnMut(u64, &mut dyn FnMut(u64));

/// A worker forwarding `n` shaped subscribers at load, for a phase to run against.
struct Loaded<'a> {
    channel: &'a ControlChannel,
    published: &'a PublishedCounters,
    gauges: &'a InstanceGauges,
    hz: u64,
    /// Cycles per measured window.
    window: u64,
    feed_until: Feed<'a>,
}

impl Loaded<'_> {
    fn ns(&self, cycles: u64) -> f64 {
        cycles as f64 * 1e9 / self.hz as f64
    }

    /// The worker's receive rate over one window while `each_round` runs, Mpps.
    fn mpps(&mut self, each_round: &mut dyn FnMut(u64)) -> f64 {
        let (c0, t0) = (self.published.read(), tsc());
        (self.feed_until)(t0 + self.window, each_round);
        let (c1, t1) = (self.published.read(), tsc());
        (c1.rx_packets - c0.rx_packets) as f64 / (self.ns(t1 - t0) / 1e9) / 1e6
    }
}

/// Where a loaded worker runs: the EAL, its TSC rate, the pool, the worker's core.
struct WorkerAt {
    eal: &'static Eal,
    hz: u64,
    pool: Mempool,
    worker_core: usize,
}

/// Runs `phases` against a worker forwarding `n` subscribers at load, windows of `seconds`
/// after a second of warm-up.
fn with_loaded_worker<T>(
    name: &str,
    at: WorkerAt,
    n: u32,
    seconds: f64,
    phases: impl FnOnce(&mut Loaded) -> T,
) -> T {
    let WorkerAt {
        eal,
        hz,
        pool,
        worker_core,
    } = at;
    let (rig, mut ends) = Rig::new(eal, name, RING_FRAMES, 1, pool);
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
    let gauges = Arc::clone(&setup.gauges);
    let mut worker = Worker::new(rig.pairs(), &published, hz).with_shaping(setup, no_handoff());
    let mut generator = Generator::new(pool, n, 1);
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let runner = scope.spawn(|| run_pinned(eal, worker_core, || worker.run(&stop)));
        let mut feed_until = |until: u64, each_round: &mut dyn FnMut(u64)| {
            while tsc() < until {
                generator.round(&mut ends.core, &mut ends.access);
                each_round(tsc());
            }
        };
        feed_until(tsc() + hz, &mut |_| {});
        let mut loaded = Loaded {
            channel: &channel,
            published: &published,
            gauges: &gauges,
            hz,
            window: (seconds * hz as f64) as u64,
            feed_until: &mut feed_until,
        };
        let result = phases(&mut loaded);
        stop.store(true, Ordering::Relaxed);
        runner.join().expect("worker");
        drain_retired(&channel);
        result
    });
    drop(worker);
    drop(ends);
    drop(rig);
    result
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
    let at = WorkerAt {
        eal,
        hz,
        pool,
        worker_core,
    };
    with_loaded_worker("chg", at, n, seconds, |l| {
        let mpps_before = l.mpps(&mut |_| {});
        let channel = l.channel;

        // One change at a time, every CHANGE_SPACING_US.
        let spacing = l.hz * CHANGE_SPACING_US / 1_000_000;
        let hz = l.hz;
        let mut latencies: Vec<f64> = Vec::new();
        let mut pending: Option<(u64, u64)> = None; // (applied count to reach, pushed at)
        let mut next_push = tsc();
        let mut k = 0u64;
        let until = tsc() + l.window;
        (l.feed_until)(until, &mut |now| {
            if let Some((target, pushed)) = pending {
                if channel.applied() >= target {
                    latencies.push((now - pushed) as f64 * 1e6 / hz as f64);
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
        });
        // As many changes as the ring takes.
        let (a0, t0) = (channel.applied(), tsc());
        let mut j = 0u64;
        let mpps_during = l.mpps(&mut |_| {
            for _ in 0..64 {
                j += 1;
                if channel.push(rate_change(j, n)).is_err() {
                    break;
                }
            }
        });
        let secs = l.ns(tsc() - t0) / 1e9;
        let changes_per_second = (channel.applied() - a0) as f64 / secs;
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
            changes_per_second,
            mpps_before,
            mpps_during,
        }
    })
}

/// Subscribers whose statistics the refresh asks for: the default cardinality guard.
const REFRESH_REPORTS: usize = 100;

/// Subscribers whose gauges [`refresh_cost`] reads between two generator rounds.
const REFRESH_SLICE: usize = 512;

/// What the metrics refresh costs a forwarding worker. The control side does the refresh's
/// worker-facing work `per_second` times a second (read every instance gauge, ask the owner
/// for the busiest subscribers' statistics and take the reports back) in one-second windows
/// that alternate with one-second windows of forwarding alone, `pairs` of them, with a window
/// alone at the end. Each window with the refresh is compared with the mean of the two
/// windows alone beside it: on this class of host the rate drifts by a fifth over seconds,
/// far more than a refresh costs, and neighbours cancel the drift that three long windows
/// (alone, with, alone) did not. The appliance refreshes once a second; a scrape itself
/// encodes the last snapshot on an API thread and reaches no worker, so this is all a
/// Prometheus server costs the workers.
pub fn refresh_cost(
    eal: &'static Eal,
    hz: u64,
    pool: Mempool,
    worker_core: usize,
    n: u32,
    per_second: u64,
    pairs: usize,
) -> RefreshCost {
    let name = format!("rf{per_second}");
    let at = WorkerAt {
        eal,
        hz,
        pool,
        worker_core,
    };
    // At least one window with the refresh, so there is a ratio to take.
    let pairs = pairs.max(1);
    with_loaded_worker(&name, at, n, 1.0, |l| {
        let (channel, gauges) = (l.channel, l.gauges);
        let every = l.hz / per_second.max(1);
        let mut refreshes = 0u64;
        let mut reports = 0usize;
        let mut busiest: Vec<(u64, u32)> = Vec::with_capacity(gauges.len() / 2);
        let mut alone = vec![l.mpps(&mut |_| {})];
        let mut with = Vec::with_capacity(pairs);
        for _ in 0..pairs {
            // Exactly `per_second` refreshes a window, the first at once, then one every
            // 1/per_second of it. The appliance refreshes on its own control thread; here the
            // generator's thread does it, in slices between rounds, so the worker's RX ring
            // never runs dry meanwhile and what is measured is the worker's cost alone (its
            // gauge lines read, reports filled).
            let mut next = tsc();
            let mut started = 0;
            let mut cursor: Option<usize> = None;
            with.push(l.mpps(&mut |now| {
                while let Some(item) = channel.retired.pop() {
                    reports += usize::from(matches!(item, Retired::Report(_)));
                }
                let Some(from) = cursor else {
                    if now >= next && started < per_second {
                        next += every;
                        started += 1;
                        refreshes += 1;
                        busiest.clear();
                        cursor = Some(0);
                    }
                    return;
                };
                let subscribers = gauges.len() / 2;
                let to = (from + REFRESH_SLICE).min(subscribers);
                busiest.extend((from..to).map(|local| {
                    let (d, u) = (&gauges[2 * local], &gauges[2 * local + 1]);
                    let bytes = d.arrived_bytes() + u.arrived_bytes();
                    (bytes + d.backlog_bytes() + u.backlog_bytes(), local as u32)
                }));
                if to < subscribers {
                    cursor = Some(to);
                    return;
                }
                cursor = None;
                let keep = REFRESH_REPORTS.min(busiest.len());
                if keep > 0 {
                    busiest.select_nth_unstable_by(keep - 1, |a, b| b.0.cmp(&a.0));
                }
                for &(_, local) in &busiest[..keep] {
                    let report = SubscriberReport::new(local);
                    let _ = channel.push(Command::Report { local, report });
                }
            }));
            alone.push(l.mpps(&mut |_| {}));
        }
        // Reports the worker filled after the last window with the refresh.
        while let Some(item) = channel.retired.pop() {
            reports += usize::from(matches!(item, Retired::Report(_)));
        }
        RefreshCost::from_windows(per_second, &alone, &with, refreshes, reports)
    })
}

/// What [`refresh_cost`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RefreshCost {
    /// Refreshes a second in the windows with the refresh.
    pub per_second: u64,
    /// The receive rate in the windows alone and in the windows with the refresh, means over
    /// all of them, Mpps.
    pub mpps_alone: f64,
    pub mpps_with_refresh: f64,
    /// Each window with the refresh over the mean of its two neighbours alone.
    pub ratio: Paired,
    /// Refreshes done and reports the worker filled meanwhile.
    pub refreshes: u64,
    pub reports: usize,
}

impl RefreshCost {
    /// From the windows alone (one more than `with`: one before each window with the refresh
    /// and one after the last) and the windows with it, at least one, in the order they ran.
    fn from_windows(
        per_second: u64,
        alone: &[f64],
        with: &[f64],
        refreshes: u64,
        reports: usize,
    ) -> Self {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        RefreshCost {
            per_second,
            mpps_alone: mean(alone),
            mpps_with_refresh: mean(with),
            ratio: Paired::new(alone, with).expect("refresh_cost runs a window with it"),
            refreshes,
            reports,
        }
    }

    /// The median ratio this measured, scaled to one refresh a second: what each refresh
    /// costs is the same however many come in a second (each reads the same gauges and asks
    /// for the same reports, 100 ms apart at the most), so a tenth of the loss at ten a
    /// second is the loss at one, and measured at ten, ten times above this host's noise.
    pub fn scaled_to_once_a_second(&self) -> f64 {
        1.0 - (1.0 - self.ratio.median) / self.per_second.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::RefreshCost;

    #[test]
    fn the_means_and_the_paired_ratio_come_from_the_windows() {
        let r = RefreshCost::from_windows(1, &[10.0, 9.0, 8.0], &[0.9 * 9.5, 0.9 * 8.5], 2, 200);
        assert!((r.ratio.median - 0.9).abs() < 1e-12, "{r:?}");
        assert!((r.mpps_alone - 9.0).abs() < 1e-12);
        assert!((r.mpps_with_refresh - 0.9 * 9.0).abs() < 1e-12);
    }

    #[test]
    fn a_loss_at_ten_a_second_is_ten_times_the_loss_at_one() {
        let r = RefreshCost::from_windows(10, &[5.0; 4], &[4.5; 3], 30, 3000);
        assert!((r.scaled_to_once_a_second() - 0.99).abs() < 1e-12, "{r:?}");
        let once = RefreshCost::from_windows(1, &[5.0; 4], &[4.5; 3], 3, 300);
        assert!(
            (once.scaled_to_once_a_second() - 0.9).abs() < 1e-12,
            "{once:?}"
        );
    }
}
