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
use sheetcake_dataplane::shaping::{Command, ControlChannel, Owner, Retired, SubscriberTables};
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
    path: PathBuf,
    defaults: Defaults,
    /// Current subscribers by ID, with their owner.
    current: HashMap<String, (Subscriber, Owner)>,
    /// Parent nodes, as the file last gave them.
    nodes: Vec<Node>,
    /// Free local slots per worker.
    free: Vec<Vec<u32>>,
    channels: Vec<Arc<ControlChannel>>,
}

impl LiveShaping {
    /// The state after start-up: `placed` subscribers on their owners, `capacity` slots per
    /// worker.
    pub fn new(
        path: PathBuf,
        defaults: Defaults,
        placed: Vec<(Subscriber, Owner)>,
        nodes: Vec<Node>,
        capacity: u32,
        channels: Vec<Arc<ControlChannel>>,
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

    /// Frees what the workers handed back. Called every control tick.
    pub fn collect_retired(&self) {
        for channel in &self.channels {
            while let Some(item) = channel.retired.pop() {
                match item {
                    Retired::Tables(t) => drop(t),
                    Retired::Instances(i) => drop(i),
                }
            }
        }
    }

    fn send(&self, worker: usize, mut command: Command) {
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
        let set = SubscriberSet::load(&self.path, &self.defaults).map_err(|e| e.to_string())?;
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
