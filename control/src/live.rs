//! Live changes: the control thread's view of who is shaped where, and how a reload of the
//! subscriber file becomes commands to the workers.
//!
//! A reload is validated as a whole first (nothing is applied if any record is bad), then only
//! the difference is sent: subscribers added get instances on their owner; subscribers whose
//! rates or options changed get them applied in place (their queued frames and flows stay);
//! removed subscribers have their queues freed; the address tables are swapped when any
//! address moved. Unchanged subscribers are not touched at all.

use crate::subscribers::{owner_worker, Defaults, Node, Subscriber, SubscriberSet};
use sheetcake_cake::{Cake, InstanceSetup};
use sheetcake_dataplane::shaping::{
    Command, ControlChannel, InstanceGauges, Owner, Retired, SubscriberReport, SubscriberTables,
};
use sheetcake_dataplane::worker::placeholder_config;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The seed of worker `w`'s flow hashes (instances on one worker share it, mixed with their id).
pub fn worker_seed(w: usize) -> u64 {
    0x5eed_0000 + w as u64
}

/// Builds the two instances of local subscriber `local` on worker `w`.
pub fn instances(s: &Subscriber, w: usize, local: u32) -> Box<[Cake; 2]> {
    let id = 2 * local;
    let seed = worker_seed(w);
    Box::new([
        Cake::new(s.download, InstanceSetup::new(id, seed ^ u64::from(id))),
        Cake::new(
            s.upload,
            InstanceSetup::new(id + 1, seed ^ u64::from(id + 1)),
        ),
    ])
}

fn placeholders(w: usize, local: u32) -> Box<[Cake; 2]> {
    let id = 2 * local;
    let seed = worker_seed(w);
    Box::new([
        Cake::new(
            placeholder_config(),
            InstanceSetup::new(id, seed ^ u64::from(id)),
        ),
        Cake::new(
            placeholder_config(),
            InstanceSetup::new(id + 1, seed ^ u64::from(id + 1)),
        ),
    ])
}

/// What a reload changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// The shaping state the control thread keeps.
pub struct LiveShaping {
    /// The subscriber file (`None` for the embedded demo, which has nothing to reload).
    path: Option<PathBuf>,
    defaults: Defaults,
    /// Current subscribers by ID, with their owner.
    current: HashMap<String, (Subscriber, Owner)>,
    /// Parent nodes, as the file last gave them.
    nodes: Vec<Node>,
    /// Free local slots per worker.
    free: Vec<Vec<u32>>,
    channels: Vec<Arc<ControlChannel>>,
    /// Each worker's instance gauges, to find the busiest subscribers.
    gauges: Vec<InstanceGauges>,
    /// Statistics asked of the workers and not back yet: (worker, local) to subscriber ID.
    reports_pending: HashMap<(u16, u32), String>,
    /// Statistics back from the workers, by subscriber ID.
    reports: Vec<(String, Box<SubscriberReport>)>,
}

impl LiveShaping {
    /// The state after start-up: `placed` subscribers on their owners, `capacity` slots per
    /// worker.
    pub fn new(
        path: Option<PathBuf>,
        defaults: Defaults,
        placed: Vec<(Subscriber, Owner)>,
        nodes: Vec<Node>,
        capacity: u32,
        channels: Vec<Arc<ControlChannel>>,
        gauges: Vec<InstanceGauges>,
    ) -> LiveShaping {
        let mut used: Vec<Vec<bool>> = channels
            .iter()
            .map(|_| vec![false; capacity as usize])
            .collect();
        let mut current = HashMap::new();
        for (s, owner) in placed {
            used[owner.worker as usize][owner.local as usize] = true;
            current.insert(s.id.clone(), (s, owner));
        }
        let free = used
            .iter()
            .map(|u| {
                (0..u.len() as u32)
                    .rev()
                    .filter(|&l| !u[l as usize])
                    .collect()
            })
            .collect();
        LiveShaping {
            path,
            defaults,
            current,
            nodes,
            free,
            channels,
            gauges,
            reports_pending: HashMap::new(),
            reports: Vec::new(),
        }
    }

    /// The parent nodes in force.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every subscriber with its owner.
    pub fn placed(&self) -> impl Iterator<Item = (&Subscriber, Owner)> + '_ {
        self.current.values().map(|(s, owner)| (s, *owner))
    }

    /// Frees what the workers handed back, and keeps the statistics they reported. Called
    /// every control tick.
    pub fn collect_retired(&mut self) {
        for (w, channel) in self.channels.iter().enumerate() {
            while let Some(item) = channel.retired.pop() {
                match item {
                    Retired::Tables(t) => drop(t),
                    Retired::Instances(i) => drop(i),
                    Retired::Report(r) => {
                        // A subscriber removed meanwhile has no ID to report under.
                        if let Some(id) = self.reports_pending.remove(&(w as u16, r.local)) {
                            self.reports.push((id, r));
                        }
                    }
                }
            }
        }
    }

    /// Asks the owners for the statistics of the `count` subscribers that received the most
    /// bytes (both directions) since start; [`take_reports`](Self::take_reports) hands them
    /// over once all are back. Returns how many were asked for.
    pub fn request_reports(&mut self, count: usize) -> usize {
        let arrived = |owner: &Owner| {
            let g = &self.gauges[owner.worker as usize];
            let i = 2 * owner.local as usize;
            g[i].arrived_bytes() + g[i + 1].arrived_bytes()
        };
        let mut ranked: Vec<(u64, &String, Owner)> = self
            .current
            .iter()
            .map(|(id, (_, owner))| (arrived(owner), id, *owner))
            .collect();
        ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        ranked.truncate(count);
        let mut asked = 0;
        for (_, id, owner) in ranked {
            let command = Command::Report {
                local: owner.local,
                report: SubscriberReport::new(owner.local),
            };
            // A worker busy with a large reload is skipped, not waited for.
            if self.channels[owner.worker as usize]
                .commands
                .push(command)
                .is_ok()
            {
                self.reports_pending
                    .insert((owner.worker, owner.local), id.clone());
                asked += 1;
            }
        }
        asked
    }

    /// The statistics asked for, busiest first, once every owner has answered.
    pub fn take_reports(&mut self) -> Option<Vec<(String, Box<SubscriberReport>)>> {
        if !self.reports_pending.is_empty() || self.reports.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.reports))
    }

    fn send(&mut self, worker: usize, mut command: Command) {
        // The worker applies a few commands per loop; wait for room rather than drop one.
        loop {
            match self.channels[worker].commands.push(command) {
                Ok(()) => return,
                Err(back) => {
                    command = back;
                    self.collect_retired();
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
    }

    /// Re-reads the subscriber file and applies the difference. Nothing is applied when the
    /// file is invalid or does not fit the workers' slots.
    pub fn reload(&mut self) -> Result<(ReloadSummary, Duration), String> {
        let started = Instant::now();
        let Some(path) = &self.path else {
            return Err("the embedded demo has no subscriber file to reload".into());
        };
        let set = SubscriberSet::load(path, &self.defaults).map_err(|e| e.to_string())?;
        let workers = self.channels.len();
        let mut summary = ReloadSummary::default();
        // Plan first: owners for everyone, and whether it all fits.
        let mut free = self.free.clone();
        let mut owners = Vec::with_capacity(set.subscribers.len());
        let mut upserts: Vec<(usize, u32, usize)> = Vec::new(); // (worker, local, index in set)
        for (i, s) in set.subscribers.iter().enumerate() {
            match self.current.get(&s.id) {
                Some((old, owner)) => {
                    owners.push(*owner);
                    if old.download != s.download || old.upload != s.upload {
                        summary.changed += 1;
                        upserts.push((owner.worker as usize, owner.local, i));
                    } else if old.node != s.node {
                        // Only the node's balancer changes: the instances stay as they are.
                        summary.changed += 1;
                    } else {
                        summary.unchanged += 1;
                    }
                }
                None => {
                    let w = owner_worker(&s.id, workers);
                    let local = free[w].pop().ok_or_else(|| {
                        format!(
                            "worker {w} has no free subscriber slot for {:?}; raise \
                             [shaping] subscribers_per_worker (nothing was applied)",
                            s.id
                        )
                    })?;
                    owners.push(Owner {
                        worker: w as u16,
                        local,
                    });
                    summary.added += 1;
                    upserts.push((w, local, i));
                }
            }
        }
        let still: std::collections::HashSet<&str> =
            set.subscribers.iter().map(|s| s.id.as_str()).collect();
        let removed: Vec<(String, Owner)> = self
            .current
            .iter()
            .filter(|(id, _)| !still.contains(id.as_str()))
            .map(|(id, (_, owner))| (id.clone(), *owner))
            .collect();
        summary.removed = removed.len();

        // Instances first, so frames classified by the new tables find them.
        for &(w, local, i) in &upserts {
            self.send(
                w,
                Command::Upsert {
                    local,
                    instances: instances(&set.subscribers[i], w, local),
                },
            );
        }
        let tables = Arc::new(SubscriberTables {
            addresses: set.addresses,
            owners: owners.clone(),
        });
        for w in 0..workers {
            self.send(w, Command::Tables(Arc::clone(&tables)));
        }
        for (id, owner) in &removed {
            let w = owner.worker as usize;
            self.send(
                w,
                Command::Remove {
                    local: owner.local,
                    placeholders: placeholders(w, owner.local),
                },
            );
            free[w].push(owner.local);
            self.current.remove(id);
        }
        for (s, owner) in set.subscribers.into_iter().zip(owners) {
            self.current.insert(s.id.clone(), (s, owner));
        }
        self.free = free;
        self.nodes = set.nodes;
        Ok((summary, started.elapsed()))
    }
}
