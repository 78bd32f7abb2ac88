//! Live changes: how a change of subscribers (a reload, an API call) becomes commands to the
//! workers, and how the control thread learns it is in force.
//!
//! The [`Registry`] validates a change and says what must happen ([`Plan`]); nothing is sent
//! unless all of it was accepted. Then, per worker and in this order: for subscribers added
//! or whose CAKE changed, the new configuration, applied in place by the worker when the slot
//! already holds the tins it needs (an empty slot holds idle instances with the defaults'
//! tins, so a subscriber added on the default options, or a plan change, builds nothing),
//! else new instances built here (a subscriber already present keeps its queued frames and
//! flows either way), then the new address
//! tables if any address moved, and removals (their queued frames are freed). Unchanged
//! subscribers are not touched at all. Every command has a sequence number on its worker's
//! channel; the change is in force when each worker involved has applied up to its last one.

use crate::registry::{Change, Plan, Refusal, Registry, Summary};
use crate::subscribers::{Defaults, SubscriberSet, SubscriberSource};
use sheetcake_cake::{Cake, CakeConfig, InstanceSetup};
use sheetcake_dataplane::shaping::{
    Command, ControlChannel, InstanceGauges, Retired, SubscriberReport,
};
use sheetcake_dataplane::worker::placeholder_config;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The seed of worker `w`'s flow hashes (instances on one worker share it, mixed with their id).
pub fn worker_seed(w: usize) -> u64 {
    0x5eed_0000 + w as u64
}

/// Builds the two instances (download, upload) of local subscriber `local` on worker `w`.
fn built(configs: [CakeConfig; 2], w: usize, local: u32) -> Box<[Cake; 2]> {
    let id = 2 * local;
    let seed = worker_seed(w);
    Box::new([
        Cake::new(configs[0], InstanceSetup::new(id, seed ^ u64::from(id))),
        Cake::new(
            configs[1],
            InstanceSetup::new(id + 1, seed ^ u64::from(id + 1)),
        ),
    ])
}

/// The configuration of the idle instances in empty slots: the defaults' tin modes (and the
/// rest of their words), so a subscriber added on the defaults is configured in place.
pub fn idle_configs(defaults: &Defaults) -> [CakeConfig; 2] {
    // The defaults were validated with the configuration.
    [&defaults.download, &defaults.upload]
        .map(|words| CakeConfig::parse(words).unwrap_or_else(|_| placeholder_config()))
}

/// A change sent to the workers.
#[derive(Debug, Clone)]
pub struct Sent {
    /// What it changed.
    pub summary: Summary,
    /// Whether parent nodes must be re-shared.
    pub nodes_changed: bool,
    /// Per worker, the sequence number of the last command of the change (0: none sent).
    pub last: Vec<u64>,
    /// When it was accepted.
    pub started: Instant,
    /// How long validating and sending took.
    pub took: Duration,
    /// Of which: reading and checking the source (reloads; zero otherwise), and working out
    /// the difference to the running state.
    pub checked_in: Duration,
    pub planned_in: Duration,
}

/// Who asked for a subscriber's statistics.
pub enum Waiter<R> {
    /// SIGUSR1: print them, in this rank among the busiest.
    Signal(String, usize),
    /// Someone else (an API request, the metrics refresh), with their token.
    Caller(String, R),
}

/// The shaping state the control thread keeps. `R` is what a caller waiting for statistics
/// is answered with (the API's reply handle).
pub struct LiveShaping<R> {
    /// The subscriber source to reload (`None` for the embedded demo).
    source: Option<SubscriberSource>,
    defaults: Defaults,
    registry: Registry,
    channels: Vec<Arc<ControlChannel>>,
    /// Each worker's instance gauges, to find the busiest subscribers.
    gauges: Vec<InstanceGauges>,
    /// Statistics asked of the workers and not back yet, by (worker, local).
    waiting: HashMap<(u16, u32), Vec<Waiter<R>>>,
    /// Statistics back for callers, not yet handed over.
    answered: Vec<(R, String, Box<SubscriberReport>)>,
    /// Statistics back for SIGUSR1, with their rank (the ones still out are in `waiting`).
    signal_reports: Vec<(usize, String, Box<SubscriberReport>)>,
    /// What the idle instances of empty slots are built with (the workers' too).
    idle: [CakeConfig; 2],
}

impl<R> LiveShaping<R> {
    /// The state after start-up.
    pub fn new(
        source: Option<SubscriberSource>,
        defaults: Defaults,
        registry: Registry,
        channels: Vec<Arc<ControlChannel>>,
        gauges: Vec<InstanceGauges>,
    ) -> LiveShaping<R> {
        let idle = idle_configs(&defaults);
        LiveShaping {
            source,
            defaults,
            registry,
            channels,
            gauges,
            waiting: HashMap::new(),
            answered: Vec::new(),
            signal_reports: Vec::new(),
            idle,
        }
    }

    /// Who is shaped now.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The defaults new subscribers start from.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// The workers' channels.
    pub fn channels(&self) -> &[Arc<ControlChannel>] {
        &self.channels
    }

    /// The workers' instance gauges.
    pub fn gauges(&self) -> &[InstanceGauges] {
        &self.gauges
    }

    /// Frees what the workers handed back, and returns the statistics that callers were
    /// waiting for. Called every control tick.
    pub fn collect_retired(&mut self) -> Vec<(R, String, Box<SubscriberReport>)> {
        self.drain_retired();
        std::mem::take(&mut self.answered)
    }

    /// Frees what the workers handed back and keeps the statistics for their callers.
    fn drain_retired(&mut self) {
        for (w, channel) in self.channels.iter().enumerate() {
            while let Some(item) = channel.retired.pop() {
                match item {
                    Retired::Tables(t) => drop(t),
                    Retired::Instances(i) => drop(i),
                    Retired::Configs(c) => drop(c),
                    Retired::Report(r) => {
                        // A subscriber removed meanwhile has nobody waiting.
                        let Some(waiters) = self.waiting.remove(&(w as u16, r.local)) else {
                            continue;
                        };
                        for waiter in waiters {
                            match waiter {
                                Waiter::Signal(id, rank) => {
                                    self.signal_reports.push((rank, id, r.clone()));
                                }
                                Waiter::Caller(id, token) => {
                                    self.answered.push((token, id, r.clone()));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Removes the callers `expired` says have waited too long, and returns them (their
    /// reports, when they come, are for nobody).
    pub fn expire(&mut self, expired: impl Fn(&R) -> bool) -> Vec<R> {
        let mut gone = Vec::new();
        self.waiting.retain(|_, waiters| {
            let mut i = 0;
            while i < waiters.len() {
                match &waiters[i] {
                    Waiter::Caller(_, r) if expired(r) => match waiters.swap_remove(i) {
                        Waiter::Caller(_, r) => gone.push(r),
                        Waiter::Signal(..) => unreachable!("matched a caller"),
                    },
                    _ => i += 1,
                }
            }
            !waiters.is_empty()
        });
        gone
    }

    /// Asks the owner of `id` for its statistics on behalf of `waiter`. False if there is no
    /// such subscriber or its worker's queue is full (a worker busy with a large reload is
    /// skipped, not waited for).
    pub fn request_report(&mut self, id: &str, waiter: Waiter<R>) -> bool {
        let Some(entry) = self.registry.get(id) else {
            return false;
        };
        let owner = entry.owner;
        let key = (owner.worker, owner.local);
        if let Some(waiters) = self.waiting.get_mut(&key) {
            // One report answers everyone waiting for it.
            waiters.push(waiter);
            return true;
        }
        let command = Command::Report {
            local: owner.local,
            report: SubscriberReport::new(owner.local),
        };
        if self.channels[owner.worker as usize].push(command).is_err() {
            return false;
        }
        self.waiting.insert(key, vec![waiter]);
        true
    }

    /// Asks for the statistics of `ids` (the busiest first), for SIGUSR1;
    /// [`take_signal_reports`](Self::take_signal_reports) hands them over once all are back.
    /// Returns how many were asked for.
    pub fn request_signal_reports(&mut self, ids: &[String]) -> usize {
        let mut asked = 0;
        for (rank, id) in ids.iter().enumerate() {
            if self.request_report(id, Waiter::Signal(id.clone(), rank)) {
                asked += 1;
            }
        }
        asked
    }

    /// The SIGUSR1 statistics, busiest first, once every owner has answered.
    pub fn take_signal_reports(&mut self) -> Option<Vec<(String, Box<SubscriberReport>)>> {
        // Still out: a report asked for and not back (one removed meanwhile is not waited for:
        // its waiters went with it).
        let out = self
            .waiting
            .values()
            .flatten()
            .any(|w| matches!(w, Waiter::Signal(..)));
        if out || self.signal_reports.is_empty() {
            return None;
        }
        let mut reports = std::mem::take(&mut self.signal_reports);
        reports.sort_by_key(|(rank, ..)| *rank);
        Some(reports.into_iter().map(|(_, id, r)| (id, r)).collect())
    }

    /// Queues `command` for worker `w`, waiting for room rather than dropping it (the worker
    /// applies a few commands per loop). Returns its sequence number.
    fn send(&mut self, w: usize, mut command: Command) -> u64 {
        loop {
            match self.channels[w].push(command) {
                Ok(seq) => return seq,
                Err(back) => {
                    command = back;
                    // Retired items must keep flowing, or the worker cannot hand back; reports
                    // that come back meanwhile are kept for the next collect.
                    self.drain_retired();
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }

    fn execute(&mut self, plan: Plan, started: Instant, checked_in: Duration) -> Sent {
        let planned_in = started.elapsed().saturating_sub(checked_in);
        let mut last = vec![0; self.channels.len()];
        // Instances first, so frames classified by the new tables find them.
        let idle_tins = self.idle.map(|c| c.tin_mode);
        for u in &plan.upserts {
            let (owner, configs) = (u.owner, u.configs);
            let w = owner.worker as usize;
            let command = if configs.map(|c| c.tin_mode) == u.tins_before.unwrap_or(idle_tins) {
                Command::Configure {
                    local: owner.local,
                    configs: Box::new(configs),
                }
            } else {
                Command::Upsert {
                    local: owner.local,
                    instances: built(configs, w, owner.local),
                }
            };
            last[w] = self.send(w, command);
        }
        if let Some(tables) = plan.tables {
            let tables = Arc::new(tables);
            for (w, seq) in last.iter_mut().enumerate() {
                *seq = self.send(w, Command::Tables(Arc::clone(&tables)));
            }
        }
        for owner in &plan.removes {
            let w = owner.worker as usize;
            let command = Command::Remove {
                local: owner.local,
                placeholders: built(self.idle, w, owner.local),
            };
            last[w] = self.send(w, command);
            // Statistics asked for and not back are for nobody now.
            self.waiting.remove(&(owner.worker, owner.local));
        }
        Sent {
            summary: plan.summary,
            nodes_changed: plan.nodes_changed,
            last,
            started,
            took: started.elapsed(),
            checked_in,
            planned_in,
        }
    }

    /// Whether every command of `sent` is in force.
    pub fn is_applied(&self, sent: &Sent) -> bool {
        sent.last
            .iter()
            .zip(&self.channels)
            .all(|(&seq, c)| c.applied() >= seq)
    }

    /// Replaces every subscriber and node with `set` (validated as a whole already).
    pub fn replace(&mut self, set: SubscriberSet) -> Result<Sent, Refusal> {
        let started = Instant::now();
        let plan = self.registry.replace(set)?;
        Ok(self.execute(plan, started, Duration::ZERO))
    }

    /// Applies `changes` together, or none of them; `file` names their source in errors.
    pub fn merge(&mut self, changes: Vec<Change>, file: &str) -> Result<Sent, Refusal> {
        let started = Instant::now();
        let plan = self.registry.merge(changes, file)?;
        Ok(self.execute(plan, started, Duration::ZERO))
    }

    /// Reads `source` with `defaults` (a reload's, which may name another file or other
    /// defaults than the running ones) and applies the difference; from then on they are
    /// the source and defaults. Nothing is applied, and the running source and defaults stay,
    /// when it is invalid or does not fit the workers' slots.
    pub fn reload_from(
        &mut self,
        source: Option<SubscriberSource>,
        defaults: Defaults,
    ) -> Result<Sent, Refusal> {
        let Some(file) = &source else {
            return Err(Refusal::NotFound(
                "the embedded demo has no subscriber file to reload".into(),
            ));
        };
        let started = Instant::now();
        let set = file.load(&defaults).map_err(|e| Refusal::Invalid(e.0))?;
        let checked_in = started.elapsed();
        let plan = self.registry.replace(set)?;
        // The idle instances stay as the workers built them: `idle` describes what the empty
        // slots hold, not the new defaults.
        self.source = source;
        self.defaults = defaults;
        Ok(self.execute(plan, started, checked_in))
    }

    /// The subscriber source, if there is one to reload.
    pub fn source(&self) -> Option<&SubscriberSource> {
        self.source.as_ref()
    }
}
