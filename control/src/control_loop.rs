//! The control thread's loop while the workers run: API calls, signals, the subscriber file
//! watch, parent-node balancing, the metrics snapshot and status lines. Every step is bounded
//! and nothing here waits for a worker longer than [`APPLY_WAIT`].

use crate::api::{Access, Call, Reply, Shared};
use crate::config::{ConfigErrors, Settings, Takes, HANDOFF_RING_FRAMES};
use crate::handlers::{self, Asker, Context, Handled, Outcome, TopEntry, APPLY_WAIT};
use crate::live::{LiveShaping, Sent};
use crate::log;
use crate::metrics::{PortSample, Snapshot, SubscriberSample, WorkerSample, REFRESH};
use crate::nodes::{NodeBalancer, BALANCE_INTERVAL};
use crate::registry::Refusal;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use sheetcake_dataplane::dpdk::{Mempool, Port, PortStats, RingGauge};
use sheetcake_dataplane::shaping::Direction;
use sheetcake_dataplane::worker::{PublishedCounters, WorkerCounters};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Subscribers whose statistics SIGUSR1 prints: the busiest, so a box with a million
/// subscribers prints a screenful, not a million.
const REPORTED_SUBSCRIBERS: usize = 20;

/// How long the loop sleeps when nothing is due (API calls wake it at once).
const CONTROL_TICK: Duration = Duration::from_millis(50);

/// How long the loop sleeps while a change waits for its answer. The owner worker applies a
/// command within microseconds of its push; looking this often sends the answer within tens
/// of microseconds of the change being in force, instead of one balance interval later. The
/// control thread stays awake only while an answer is due.
const ANSWER_POLL: Duration = Duration::from_micros(20);

/// Entries kept for `/v1/top` (its largest `count`).
const TOP_KEPT: usize = 1000;

/// What the loop watches besides the workers.
pub struct Signals<'a> {
    /// Set by SIGINT/SIGTERM.
    pub stop: &'a AtomicBool,
    /// Set by SIGHUP: reload the configuration and the subscriber file.
    pub reload: &'a AtomicBool,
    /// Set by SIGUSR1: print the busiest subscribers' statistics.
    pub report: &'a AtomicBool,
}

/// Everything the loop works with.
pub struct ControlLoop<'a> {
    /// The configuration in force: what the box started with, and the keys a reload changed
    /// live.
    pub settings: Settings,
    /// The configuration file a reload re-reads (`None` for the embedded demo).
    pub config_path: Option<&'a std::path::Path>,
    pub ports: &'a [[Port; 2]],
    pub published: &'a [PublishedCounters],
    pub pool: &'a Mempool,
    pub hz: u64,
    pub signals: Signals<'a>,
    pub live: Option<&'a mut LiveShaping<Asker>>,
    pub balancer: Option<&'a mut NodeBalancer>,
    pub calls: Option<Receiver<Call>>,
    pub shared: Arc<Shared>,
    /// Per worker, the handoff rings toward it (empty without shaping): the metrics show
    /// what waits for each worker to take over.
    pub handoff_rings: Vec<Vec<RingGauge>>,
}

/// What the metrics refresh carries from one second to the next.
#[derive(Default)]
struct Sampling {
    /// Worker counters at the last refresh, for the busy ratio.
    last_workers: Vec<WorkerCounters>,
    /// Bytes arrived per instance at the last refresh, per worker.
    last_arrived: Vec<Vec<u64>>,
    /// The busiest subscribers over the last second.
    top: Vec<TopEntry>,
    /// The exported subscribers' latest reports.
    samples: HashMap<String, SubscriberSample>,
}

/// A change sent for an API call, waiting to be in force.
struct Pending {
    outcome: Outcome,
    reply: Sender<Reply>,
}

/// Modification time and size of each watched file.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[std::path::PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

impl ControlLoop<'_> {
    /// Runs until asked to stop.
    pub fn run(mut self) {
        let started = Instant::now();
        let mut last_status = Instant::now();
        let mut last_refresh = Instant::now() - REFRESH;
        let mut last_ports: Vec<PortStats> = vec![PortStats::default(); self.ports.len() * 2];
        let mut last_workers: Vec<WorkerCounters> =
            vec![WorkerCounters::default(); self.published.len()];
        let mut sampling = Sampling {
            last_workers: last_workers.clone(),
            ..Sampling::default()
        };
        let mut snapshot = Arc::new(Snapshot::default());
        let mut pending: Vec<Pending> = Vec::new();
        // Changes sent and not yet in force at every worker.
        let mut in_flight: Vec<Sent> = Vec::new();
        let mut watched = self.watched();
        let mut seen = stamp(&watched);
        let mut changed_at: Option<Stamp> = None;
        let mut last_watch = Instant::now();

        while !self.signals.stop.load(Ordering::Relaxed) {
            // First, so that no call is answered from the empty snapshot of before the first
            // refresh (`/v1/workers` would list no worker). Also at once when the last worker
            // starts forwarding, so /health turns "ok" then. A refresh takes milliseconds at a
            // million subscribers: not while an answer is due (one is, for at most
            // APPLY_WAIT), so it never delays a change's answer.
            let started_now = snapshot.workers_running < self.published.len()
                && self.published.iter().all(|p| p.running());
            if (last_refresh.elapsed() >= REFRESH && pending.is_empty()) || started_now {
                let secs = last_refresh.elapsed().as_secs_f64();
                last_refresh = Instant::now();
                let mut next = self.refresh(&mut sampling, started, secs);
                next.changes_in_flight = in_flight.len();
                next.refresh_seconds = last_refresh.elapsed().as_secs_f64();
                snapshot = Arc::new(next);
                *self.shared.snapshot.lock() = Arc::clone(&snapshot);
            }
            let nodes_active = self.balancer.as_deref().is_some_and(|b| !b.is_idle());
            let tick = if !pending.is_empty() {
                ANSWER_POLL
            } else if nodes_active {
                BALANCE_INTERVAL
            } else {
                CONTROL_TICK
            };
            let call = match &self.calls {
                Some(calls) => match calls.recv_timeout(tick) {
                    Ok(call) => Some(call),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.calls = None;
                        None
                    }
                },
                None => {
                    std::thread::sleep(tick);
                    None
                }
            };
            // Whether a reload ran in this pass (it may name other files for the watch).
            let mut reloaded = false;
            if let Some(call) = call {
                let mut cx = Context {
                    live: self.live.as_deref_mut(),
                    snapshot: &snapshot,
                    top: &sampling.top,
                };
                match handlers::handle(call.route, &call.reply, &mut cx) {
                    Handled::Reply(r) => {
                        let _ = call.reply.send(r);
                    }
                    Handled::Waiting => {}
                    Handled::Reload => {
                        reloaded = true;
                        if let Some(wait) = self.reload_asked(call.reply) {
                            in_flight.push(wait.outcome.sent.clone());
                            pending.push(wait);
                        }
                    }
                    Handled::Sent(outcome) => {
                        self.after_change(&outcome.sent);
                        in_flight.push(outcome.sent.clone());
                        pending.push(Pending {
                            outcome,
                            reply: call.reply,
                        });
                    }
                }
            }
            // A change is usually applied within microseconds: answer as soon as it is.
            self.answer_applied(&mut pending, false);
            self.log_applied(&mut in_flight);
            if let Some(balancer) = self.balancer.as_deref_mut() {
                balancer.step(Instant::now());
            }
            if let Some(live) = self.live.as_deref_mut() {
                for (asker, id, report) in live.collect_retired() {
                    match asker {
                        Asker::Api { reply, text, .. } => {
                            let worker = live.registry().get(&id).map(|e| e.owner.worker);
                            let _ = reply.send(handlers::stats_reply(&id, worker, &report, text));
                        }
                        Asker::Metrics => {
                            let sample = SubscriberSample {
                                id: id.clone(),
                                directions: report.directions,
                            };
                            sampling.samples.insert(id, sample);
                        }
                    }
                }
                let now = Instant::now();
                for asker in
                    live.expire(|a| matches!(a, Asker::Api { deadline, .. } if *deadline <= now))
                {
                    if let Asker::Api { reply, .. } = asker {
                        let _ = reply.send(Reply::message(
                            504,
                            "the owner worker did not report in time",
                        ));
                    }
                }
                if self.signals.report.swap(false, Ordering::Relaxed) {
                    let busiest: Vec<String> = sampling
                        .top
                        .iter()
                        .take(REPORTED_SUBSCRIBERS)
                        .map(|t| t.id.clone())
                        .collect();
                    let asked = live.request_signal_reports(&busiest);
                    log::debug("statistics: asked the workers for the busiest subscribers")
                        .field("subscribers", asked)
                        .emit();
                }
                if let Some(reports) = live.take_signal_reports() {
                    for (id, r) in &reports {
                        log::report(&crate::report::format(id, r));
                    }
                }
            }
            let mut reload = self.signals.reload.swap(false, Ordering::Relaxed);
            if !watched.is_empty() && last_watch.elapsed() >= Duration::from_secs(1) {
                last_watch = Instant::now();
                let now = stamp(&watched);
                // Reload once the files have stopped changing for a second, so a file being
                // written is not read half-way.
                if now != seen {
                    if changed_at.as_ref() == Some(&now) {
                        log::info("watch: the subscriber source changed; reloading").emit();
                        seen = now;
                        changed_at = None;
                        reload = true;
                    } else {
                        changed_at = Some(now);
                    }
                }
            }
            if reload {
                reloaded = true;
                if let Ok(Some(sent)) = self.reload() {
                    in_flight.push(sent);
                }
            }
            if reloaded {
                // A reload may have named other files, or turned the watch on or off.
                let now = self.watched();
                if now != watched {
                    watched = now;
                    seen = stamp(&watched);
                    changed_at = None;
                }
            }
            // Read each time: a reload may change it.
            let interval = Duration::from_secs_f64(self.settings.status_interval_seconds);
            if !interval.is_zero() && last_status.elapsed() >= interval {
                let secs = last_status.elapsed().as_secs_f64();
                last_status = Instant::now();
                self.status(started, secs, &mut last_ports, &mut last_workers);
            }
        }
        // Answer what is still waiting, so no API client hangs on a stopping box.
        self.answer_applied(&mut pending, true);
    }

    /// Re-shares parent nodes after a change that touched them.
    fn after_change(&mut self, sent: &Sent) {
        if !sent.nodes_changed {
            return;
        }
        if let (Some(balancer), Some(live)) = (self.balancer.as_deref_mut(), self.live.as_deref()) {
            let nodes = live.registry().node_list();
            balancer.rebuild(&nodes, live.registry().placed());
        }
    }

    /// Logs the changes that became in force at every worker: always for a reload, and for any
    /// change that took longer than [`APPLY_WAIT`] (its API answer said "accepted", so the
    /// operator learns here, and from `changes_in_flight` in `/health`, when it is done).
    fn log_applied(&self, in_flight: &mut Vec<Sent>) {
        let Some(live) = self.live.as_deref() else {
            in_flight.clear();
            return;
        };
        in_flight.retain(|sent| {
            if !live.is_applied(sent) {
                return true;
            }
            let took = sent.started.elapsed();
            // Only a reload reads and checks a source.
            let reload = !sent.checked_in.is_zero();
            if reload || took >= APPLY_WAIT {
                let s = sent.summary;
                log::info(format!(
                    "{}: in force at every worker {:.3} s after it was accepted",
                    if reload { "reload" } else { "change" },
                    took.as_secs_f64(),
                ))
                .field("added", s.added)
                .field("removed", s.removed)
                .field("changed", s.changed)
                .field("unchanged", s.unchanged)
                .field(
                    "checked_s",
                    format_args!("{:.3}", sent.checked_in.as_secs_f64()),
                )
                .field(
                    "planned_s",
                    format_args!("{:.3}", sent.planned_in.as_secs_f64()),
                )
                .field(
                    "sent_s",
                    format_args!(
                        "{:.3}",
                        (sent.took - sent.checked_in - sent.planned_in).as_secs_f64()
                    ),
                )
                .emit();
            }
            false
        });
    }

    /// Answers the changes now in force, and those that waited [`APPLY_WAIT`] (or all, when
    /// `all`) with "accepted".
    fn answer_applied(&mut self, pending: &mut Vec<Pending>, all: bool) {
        let Some(live) = self.live.as_deref() else {
            return;
        };
        pending.retain(|p| {
            let applied = live.is_applied(&p.outcome.sent);
            if applied || all || p.outcome.sent.started.elapsed() >= APPLY_WAIT {
                let _ = p.reply.send(handlers::change_reply(&p.outcome, applied));
                false
            } else {
                true
            }
        });
    }

    /// A reload asked through the API: answered at once when refused or without shaping;
    /// otherwise the answer waits for the workers (the returned [`Pending`]).
    fn reload_asked(&mut self, reply: Sender<Reply>) -> Option<Pending> {
        let answer = match self.reload() {
            Ok(Some(sent)) => {
                let outcome = Outcome {
                    sent,
                    created: false,
                };
                return Some(Pending { outcome, reply });
            }
            Ok(None) => Reply::json(
                200,
                &serde_json::json!({
                    "applied": true, "added": 0, "removed": 0, "changed": 0, "unchanged": 0,
                }),
            ),
            Err(ReloadRefused::Config(errors)) => Reply::error(
                422,
                "the configuration file is not valid; nothing changed",
                &errors.0,
            ),
            Err(ReloadRefused::Subscribers(r)) => handlers::refusal(r),
        };
        let _ = reply.send(answer);
        None
    }

    /// The subscriber files the watch follows now (none when it is off).
    fn watched(&self) -> Vec<std::path::PathBuf> {
        match &self.live {
            Some(live) if self.settings.shaping.watch => live
                .source()
                .map(|s| s.files().map(|p| p.to_path_buf()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// A reload (SIGHUP, `POST /v1/reload`, the watch): re-reads and validates the whole
    /// configuration file, then the subscriber source it names, and applies both or nothing.
    /// Keys that only the control thread reads change at once; the others keep their running
    /// values until a restart, and the log names them. Returns the change sent to the workers
    /// (`None` without shaping).
    fn reload(&mut self) -> Result<Option<Sent>, ReloadRefused> {
        let next = match self.config_path {
            Some(path) => match Settings::load(path) {
                Ok(next) => Some(next),
                Err(errors) => {
                    log::error("reload refused, nothing changed: the configuration is not valid")
                        .field("file", path.display())
                        .field("errors", errors.0.len())
                        .emit();
                    for e in &errors.0 {
                        log::error(e.to_string()).emit();
                    }
                    return Err(ReloadRefused::Config(errors));
                }
            },
            None => None,
        };
        let changed = next
            .as_ref()
            .map(|next| self.settings.changes_to(next))
            .unwrap_or_default();
        let running = match &next {
            Some(next) => self.settings.with_live_keys(next, &changed),
            None => self.settings.clone(),
        };
        let sent = match self.live.as_deref_mut() {
            Some(live) => match live.reload_from(
                running.shaping.source.clone(),
                running.shaping.defaults.clone(),
            ) {
                Ok(sent) => Some(sent),
                Err(refusal) => {
                    log_refusal(&refusal);
                    return Err(ReloadRefused::Subscribers(refusal));
                }
            },
            None => None,
        };
        self.settings = running;
        *self.shared.access.lock() = Access::of(&self.settings.api);
        let keys = |takes: Takes| {
            changed
                .iter()
                .filter(|c| c.takes == takes)
                .map(|c| c.key)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (live_keys, restart_keys) = (keys(Takes::Live), keys(Takes::Restart));
        if !live_keys.is_empty() {
            log::info("reload: configuration changes applied")
                .field("keys", live_keys)
                .emit();
        }
        if !restart_keys.is_empty() {
            log::warning(
                "reload: these configuration keys changed but need a restart; their running \
                 values stay until then",
            )
            .field("keys", restart_keys)
            .emit();
        }
        match &sent {
            Some(sent) => {
                let s = sent.summary;
                log::info(format!(
                    "reload: {} added, {} removed, {} changed, {} unchanged",
                    s.added, s.removed, s.changed, s.unchanged,
                ))
                .field(
                    "sent_ms",
                    format_args!("{:.1}", sent.took.as_secs_f64() * 1e3),
                )
                .emit();
                self.after_change(sent);
            }
            None => log::info("reload: no subscriber file to reload").emit(),
        }
        Ok(sent)
    }

    /// Samples everything for the next scrape, ranks the busiest subscribers, and asks their
    /// owners for the statistics the next refresh exports.
    fn refresh(&mut self, sampling: &mut Sampling, started: Instant, secs: f64) -> Snapshot {
        let Sampling {
            last_workers,
            last_arrived,
            top,
            samples,
        } = sampling;
        let mut snapshot = Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            ..Snapshot::default()
        };
        snapshot.uptime_seconds = started.elapsed().as_secs_f64();
        snapshot.mbufs_in_use = self.pool.in_use();
        snapshot.mbufs_capacity = self.pool.size();
        snapshot.ports = self
            .settings
            .pairs
            .iter()
            .zip(self.ports)
            .flat_map(|(pair, ports)| {
                ["core", "access"]
                    .into_iter()
                    .zip(ports)
                    .map(|(side, p)| PortSample {
                        pair: pair.name.clone(),
                        side,
                        device: p.device().to_owned(),
                        driver: p.driver(),
                        stats: p.stats(),
                    })
            })
            .collect();
        snapshot.shaping = self.live.is_some();
        if let Some(live) = self.live.as_deref() {
            let gauges = live.gauges();
            last_arrived.resize_with(gauges.len(), Vec::new);
            for (g, last) in gauges.iter().zip(last_arrived.iter_mut()) {
                last.resize(g.len(), 0);
            }
            // The gauges are dense arrays by instance: one sequential pass over them ranks
            // every subscriber, and only the kept ones are looked up by slot for their ID.
            let registry = live.registry();
            /// A subscriber's place in the ranking: busiest over the last second first, then
            /// over all time (an idle box keeps exporting the same subscribers instead of none,
            /// so their series do not break up between transfers).
            struct Ranked {
                /// Bytes per second, both directions; bytes since start.
                rate: f64,
                total: u64,
                worker: usize,
                local: usize,
                entry: TopEntry,
            }
            impl Ranked {
                fn busier_first(&self, other: &Ranked) -> std::cmp::Ordering {
                    other
                        .rate
                        .total_cmp(&self.rate)
                        .then_with(|| other.total.cmp(&self.total))
                        .then_with(|| (self.worker, self.local).cmp(&(other.worker, other.local)))
                }
            }
            impl PartialEq for Ranked {
                fn eq(&self, other: &Ranked) -> bool {
                    self.busier_first(other).is_eq()
                }
            }
            impl Eq for Ranked {}
            impl PartialOrd for Ranked {
                fn partial_cmp(&self, other: &Ranked) -> Option<std::cmp::Ordering> {
                    Some(self.cmp(other))
                }
            }
            impl Ord for Ranked {
                fn cmp(&self, other: &Ranked) -> std::cmp::Ordering {
                    self.busier_first(other)
                }
            }
            // Only the kept ones are held, the least busy of them on top to be replaced: a
            // vector of every subscriber would be 80 MB of fresh memory a second at a million.
            let kept = TOP_KEPT.max(self.settings.api.subscriber_series);
            let mut ranked: std::collections::BinaryHeap<Ranked> =
                std::collections::BinaryHeap::with_capacity(kept + 1);
            for (w, g) in gauges.iter().enumerate() {
                for (local, occupied) in registry.occupied(w).enumerate() {
                    let i = 2 * local;
                    let mut rates = [0.0; 2];
                    let mut backlog = [0; 2];
                    for d in 0..2 {
                        let now = g[i + d].arrived_bytes();
                        rates[d] = now.saturating_sub(last_arrived[w][i + d]) as f64 / secs;
                        last_arrived[w][i + d] = now;
                        backlog[d] = g[i + d].backlog_bytes();
                    }
                    if !occupied {
                        continue;
                    }
                    let r = Ranked {
                        rate: rates[0] + rates[1],
                        total: last_arrived[w][i] + last_arrived[w][i + 1],
                        worker: w,
                        local,
                        entry: TopEntry {
                            id: String::new(),
                            rates,
                            backlog,
                        },
                    };
                    if ranked.len() < kept {
                        ranked.push(r);
                    } else if let Some(mut least) = ranked.peek_mut() {
                        if r < *least {
                            *least = r;
                        }
                    }
                }
            }
            let ranked = ranked.into_sorted_vec();
            *top = ranked
                .into_iter()
                .filter_map(|r| {
                    let e = registry.at(r.worker, r.local)?;
                    Some(TopEntry {
                        id: e.subscriber.id.clone(),
                        ..r.entry
                    })
                })
                .collect();
            snapshot.subscribers = live.registry().len();
        }
        // Export what the owners reported for the subscribers asked last time; ask for this
        // time's.
        let mut wanted: Vec<String> = top
            .iter()
            .take(self.settings.api.subscriber_series)
            .map(|t| t.id.clone())
            .chain(self.settings.api.always_exported.iter().cloned())
            .collect();
        // An allow-listed subscriber may also be among the busiest.
        let mut unique = HashSet::new();
        wanted.retain(|id| unique.insert(id.clone()));
        snapshot.exported = wanted
            .iter()
            .filter_map(|id| samples.get(id).cloned())
            .collect();
        samples.retain(|id, _| unique.contains(id));
        if let Some(live) = self.live.as_deref_mut() {
            for id in &wanted {
                live.request_report(id, crate::live::Waiter::Caller(id.clone(), Asker::Metrics));
            }
        }
        snapshot.workers_running = self.published.iter().filter(|p| p.running()).count();
        snapshot.workers = self
            .published
            .iter()
            .enumerate()
            .map(|(w, counters)| {
                let now = counters.read();
                let prev = last_workers[w];
                let cycles = now.total_cycles.saturating_sub(prev.total_cycles).max(1);
                let busy = now.busy_cycles.saturating_sub(prev.busy_cycles);
                last_workers[w] = now;
                let rings = self.handoff_rings.get(w).map_or(&[][..], Vec::as_slice);
                WorkerSample {
                    worker: w,
                    core: self.settings.worker_cores[w],
                    counters: now,
                    busy_ratio: busy as f64 / cycles as f64,
                    hz: self.hz,
                    subscribers: self.live.as_deref().map_or(0, |l| l.registry().count_on(w)),
                    command_queue_depth: self
                        .live
                        .as_deref()
                        .map_or(0, |l| l.channels()[w].depth()),
                    queued_limit: if self.live.is_some() {
                        u64::from(self.settings.shaping.queued_per_worker)
                    } else {
                        0
                    },
                    handoff_waiting: rings.iter().map(RingGauge::len).sum(),
                    handoff_capacity: rings.len() * HANDOFF_RING_FRAMES as usize,
                }
            })
            .collect();
        snapshot
    }

    /// One line per port, per worker and per node.
    fn status(
        &self,
        started: Instant,
        secs: f64,
        last_ports: &mut [PortStats],
        last_workers: &mut [WorkerCounters],
    ) {
        let t = started.elapsed().as_secs_f64();
        for (i, (pair, port)) in self
            .settings
            .pairs
            .iter()
            .flat_map(|pair| [(pair, "core"), (pair, "access")])
            .zip(self.ports.iter().flat_map(|p| p.iter()))
            .enumerate()
        {
            let (pair, side) = pair;
            let now = port.stats();
            let prev = last_ports[i];
            log::info(format!(
                "[{t:8.1}s] port {}/{side:<6} rx {:>12} ({}, {})  tx {:>12} ({}, {})  missed {} rx-errors {} no-mbuf {}",
                pair.name,
                now.rx_packets,
                pps(now.rx_packets - prev.rx_packets, secs),
                bps(now.rx_bytes - prev.rx_bytes, secs),
                now.tx_packets,
                pps(now.tx_packets - prev.tx_packets, secs),
                bps(now.tx_bytes - prev.tx_bytes, secs),
                now.rx_missed,
                now.rx_errors,
                now.rx_no_mbuf,
            ))
            .emit();
            last_ports[i] = now;
        }
        for (w, counters) in self.published.iter().enumerate() {
            let now = counters.read();
            let prev = last_workers[w];
            let cycles = now.total_cycles.saturating_sub(prev.total_cycles).max(1);
            let busy = now.busy_cycles - prev.busy_cycles;
            let packets = now.rx_packets - prev.rx_packets;
            log::info(format!(
                "[{t:8.1}s] worker {w} core {:<3} rx {:>12} tx {:>12} shaped {:>12} unshaped {:>12} handed_off {:>10} taken_over {:>10} queued {:>6} flows {:>6} dropped {:>8}  busy {:5.1}%  {} cycles/packet",
                self.settings.worker_cores[w],
                now.rx_packets,
                now.tx_packets,
                now.shaped_packets,
                now.unshaped_packets,
                now.handed_off,
                now.taken_over,
                now.queued,
                now.flows_in_use,
                now.dropped_total(),
                100.0 * busy as f64 / cycles as f64,
                busy.checked_div(packets).map_or("-".into(), |c| c.to_string()),
            ))
            .emit();
            last_workers[w] = now;
        }
        if let Some(balancer) = self.balancer.as_deref() {
            for share in balancer.status() {
                log::info(format!(
                    "[{t:8.1}s] node {} {:<8} {} of {} arriving, {} of {} members limited, \
                     each at {:.0}% of its plan",
                    share.node,
                    match share.direction {
                        Direction::Download => "download",
                        Direction::Upload => "upload",
                    },
                    bps(share.arriving as u64, 1.0),
                    bps(share.capacity, 1.0),
                    share.limited,
                    share.members,
                    100.0 * share.level,
                ))
                .emit();
            }
        }
    }
}

/// Why a reload changed nothing.
enum ReloadRefused {
    /// The configuration file is not valid.
    Config(ConfigErrors),
    /// The subscriber source is not valid or does not fit.
    Subscribers(Refusal),
}

/// Logs a refused subscriber reload: a summary line, then one line per error.
fn log_refusal(refusal: &Refusal) {
    match refusal {
        Refusal::Invalid(errors) | Refusal::Conflict(errors) => {
            log::error("reload refused, nothing changed: the subscriber source is not valid")
                .field("errors", errors.len())
                .emit();
            for e in errors {
                log::error(e.to_string()).emit();
            }
        }
        Refusal::NotFound(m) | Refusal::Full(m) => {
            log::error(format!("reload refused, nothing changed: {m}")).emit();
        }
    }
}

fn pps(packets: u64, secs: f64) -> String {
    si(packets as f64 / secs, "pps")
}

fn bps(bytes: u64, secs: f64) -> String {
    si(bytes as f64 * 8.0 / secs, "bit/s")
}

fn si(value: f64, unit: &str) -> String {
    let (scaled, prefix) = if value >= 1e9 {
        (value / 1e9, "G")
    } else if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    format!("{scaled:.2} {prefix}{unit}")
}
