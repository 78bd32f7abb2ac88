//! The control thread's master copy of who is shaped: every subscriber with its owner (worker
//! and local slot), its addresses, and the parent nodes.
//!
//! Changes arrive two ways. A whole new state (a file reload, an API bulk apply with
//! `replace`) is validated as a whole by [`SubscriberSet::from_records`] and
//! [`replaced`](Registry::replace) here. A few changes (an API call, a bulk apply that merges)
//! are checked against the current state only where they touch it: a new prefix is looked up
//! in the [`AddressSpace`] of everyone's prefixes, so one change costs the same with ten
//! subscribers or a million.
//!
//! Either way the registry says what the workers must do in a [`Plan`]: instances to build
//! for subscribers added or whose CAKE changed, subscribers to remove, and whether the address
//! tables changed. Subscribers the change does not touch are not in it, so their queues, flows
//! and counters stay.

use crate::address_space::AddressSpace;
use crate::config::ConfigError;
use crate::subscribers::{Node, Subscriber, SubscriberSet};
use sheetcake_cake::config::TinMode;
use sheetcake_cake::CakeConfig;
use sheetcake_dataplane::classify::{AddressTable, SubscriberSlot};
use sheetcake_dataplane::shaping::{owner_worker, Fnv1a, Owner, SubscriberTables};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasherDefault;

/// A subscriber and where it lives.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its configuration.
    pub subscriber: Subscriber,
    /// Its owner worker and slot there.
    pub owner: Owner,
    /// Its index in the address tables.
    slot: u32,
}

/// What one change did, for the operator.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// A slot's new CAKE configuration. Only the configurations: the rest is in the registry.
#[derive(Debug, Clone, Copy)]
pub struct Upsert {
    pub owner: Owner,
    /// Download, upload.
    pub configs: [CakeConfig; 2],
    /// The tin modes the slot's instances have now: the subscriber's before the change, or
    /// `None` for an empty slot (its idle instances), so the sender can tell whether the
    /// worker can apply the change in place.
    pub tins_before: Option<[TinMode; 2]>,
}

impl Upsert {
    fn new(owner: Owner, s: &Subscriber, before: Option<&Subscriber>) -> Upsert {
        Upsert {
            owner,
            configs: [s.download, s.upload],
            tins_before: before.map(|b| [b.download.tin_mode, b.upload.tin_mode]),
        }
    }
}

/// What the workers must do to put a change in force.
#[derive(Debug, Default)]
pub struct Plan {
    /// What changed.
    pub summary: Summary,
    /// Slots whose CAKE configuration is new: subscribers added, or whose CAKE changed.
    pub upserts: Vec<Upsert>,
    /// Subscribers removed.
    pub removes: Vec<Owner>,
    /// New address tables, when any address or owner changed.
    pub tables: Option<SubscriberTables>,
    /// Whether node membership, capacities or members' rates changed (the balancer must
    /// rebuild).
    pub nodes_changed: bool,
}

/// Why a change was refused: nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A value is not acceptable (bad rate, unknown node, ...).
    Invalid(Vec<ConfigError>),
    /// The change conflicts with the current state (addresses of another subscriber, a node
    /// that still has members).
    Conflict(Vec<ConfigError>),
    /// A subscriber or node to change or remove does not exist.
    NotFound(String),
    /// The workers have no room (subscriber slots).
    Full(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(e) | Refusal::Conflict(e) => {
                write!(f, "{}", crate::config::ConfigErrors(e.clone()))
            }
            Refusal::NotFound(m) | Refusal::Full(m) => write!(f, "{m}"),
        }
    }
}

/// One change of a merge.
#[derive(Debug, Clone)]
pub enum Change {
    /// Add or replace this subscriber (validated on its own already).
    Subscriber(Subscriber),
    /// Remove the subscriber with this ID.
    RemoveSubscriber(String),
    /// Add or replace this node.
    Node(Node),
    /// Remove the node with this ID.
    RemoveNode(String),
}

/// The master copy.
pub struct Registry {
    workers: usize,
    /// By ID, in ID order (the API lists them in pages).
    subscribers: BTreeMap<String, Entry>,
    nodes: BTreeMap<String, Node>,
    /// Every prefix, held by its subscriber's table slot.
    space: AddressSpace<u32>,
    /// The worker-side lookup table: prefix to slot.
    addresses: AddressTable,
    /// Owner by table slot (stale for free slots: no address leads there).
    owners: Vec<Owner>,
    /// Subscriber ID by table slot, for messages.
    slot_ids: Vec<Option<String>>,
    free_slots: Vec<u32>,
    /// Free local slots per worker, lowest last (popped first).
    free_locals: Vec<Vec<u32>>,
    /// Table slot by (worker, local slot), [`FREE`] where nobody is: how statistics that the
    /// workers keep by instance find their subscriber without a search.
    local_slots: Vec<Vec<u32>>,
}

/// A local slot that holds no subscriber.
const FREE: u32 = u32::MAX;

impl Registry {
    /// An empty registry for `workers` workers of `capacity` subscribers each.
    pub fn new(workers: usize, capacity: u32) -> Registry {
        Registry {
            workers,
            subscribers: BTreeMap::new(),
            nodes: BTreeMap::new(),
            space: AddressSpace::new(),
            addresses: AddressTable::new(),
            owners: Vec::new(),
            slot_ids: Vec::new(),
            free_slots: Vec::new(),
            free_locals: (0..workers)
                .map(|_| (0..capacity).rev().collect())
                .collect(),
            local_slots: vec![vec![FREE; capacity as usize]; workers],
        }
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// The subscriber in local slot `local` of worker `worker`, if any.
    pub fn at(&self, worker: usize, local: usize) -> Option<&Entry> {
        let slot = *self.local_slots.get(worker)?.get(local)?;
        let id = self.slot_ids.get(slot as usize)?.as_deref()?;
        self.subscribers.get(id)
    }

    /// Each worker's local slots: whether each holds a subscriber.
    pub fn occupied(&self, worker: usize) -> impl Iterator<Item = bool> + '_ {
        self.local_slots[worker].iter().map(|&s| s != FREE)
    }

    /// Subscribers on worker `w`.
    pub fn count_on(&self, w: usize) -> usize {
        self.local_slots[w].len() - self.free_locals[w].len()
    }

    /// A subscriber by ID.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.subscribers.get(id)
    }

    /// Every subscriber, in ID order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.subscribers.values()
    }

    /// Every subscriber with its owner, for the node balancer.
    pub fn placed(&self) -> impl Iterator<Item = (&Subscriber, Owner)> + '_ {
        self.subscribers.values().map(|e| (&e.subscriber, e.owner))
    }

    /// The parent nodes, by ID.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        self.nodes.values()
    }

    /// A node by ID.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// The parent nodes as a list.
    pub fn node_list(&self) -> Vec<Node> {
        self.nodes.values().cloned().collect()
    }

    /// The tables the workers look addresses up in.
    pub fn tables(&self) -> SubscriberTables {
        SubscriberTables {
            addresses: self.addresses.clone(),
            owners: self.owners.clone(),
        }
    }

    fn take_local(free: &mut [Vec<u32>], id: &str, workers: usize) -> Result<Owner, Refusal> {
        let w = owner_worker(id, workers);
        let local = free[w].pop().ok_or_else(|| {
            Refusal::Full(format!(
                "worker {w} has no free subscriber slot for {id:?}; raise [shaping] \
                 subscribers_per_worker (nothing was applied)"
            ))
        })?;
        Ok(Owner {
            worker: w as u16,
            local,
        })
    }

    /// Replaces everything with `set` (already validated as a whole). Subscribers present
    /// before and after keep their owner; only what differs is in the plan.
    pub fn replace(&mut self, set: SubscriberSet) -> Result<Plan, Refusal> {
        let mut plan = Plan::default();
        let mut free = self.free_locals.clone();
        let mut owners = Vec::with_capacity(set.subscribers.len());
        for s in &set.subscribers {
            match self.subscribers.get(&s.id) {
                Some(old) => {
                    let old_owner = old.owner;
                    owners.push(old_owner);
                    let old = &old.subscriber;
                    if old.download != s.download || old.upload != s.upload {
                        plan.summary.changed += 1;
                        plan.upserts.push(Upsert::new(old_owner, s, Some(old)));
                    } else if old.node != s.node || old.prefixes != s.prefixes {
                        plan.summary.changed += 1;
                    } else {
                        plan.summary.unchanged += 1;
                    }
                }
                None => {
                    let owner = Self::take_local(&mut free, &s.id, self.workers)?;
                    owners.push(owner);
                    plan.summary.added += 1;
                    plan.upserts.push(Upsert::new(owner, s, None));
                }
            }
        }
        let mut still: HashSet<&str, BuildHasherDefault<Fnv1a>> = HashSet::default();
        still.reserve(set.subscribers.len());
        still.extend(set.subscribers.iter().map(|s| s.id.as_str()));
        for (id, e) in &self.subscribers {
            if !still.contains(id.as_str()) {
                plan.removes.push(e.owner);
                free[e.owner.worker as usize].push(e.owner.local);
            }
        }
        plan.summary.removed = plan.removes.len();
        let new_nodes: BTreeMap<String, Node> =
            set.nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
        plan.nodes_changed = new_nodes != self.nodes
            || plan.summary.added + plan.summary.removed + plan.summary.changed > 0;

        // The tables are rebuilt with slot = index in the set.
        let mut subscribers = BTreeMap::new();
        let mut slot_ids = Vec::with_capacity(set.subscribers.len());
        for slots in &mut self.local_slots {
            slots.fill(FREE);
        }
        for (slot, (s, owner)) in set.subscribers.into_iter().zip(&owners).enumerate() {
            self.local_slots[owner.worker as usize][owner.local as usize] = slot as u32;
            slot_ids.push(Some(s.id.clone()));
            subscribers.insert(
                s.id.clone(),
                Entry {
                    subscriber: s,
                    owner: *owner,
                    slot: slot as u32,
                },
            );
        }
        self.subscribers = subscribers;
        self.nodes = new_nodes;
        self.space = set.space;
        self.addresses = set.addresses;
        self.owners = owners;
        self.slot_ids = slot_ids;
        self.free_slots.clear();
        self.free_locals = free;
        plan.tables = Some(self.tables());
        Ok(plan)
    }

    /// Applies `changes` together, or none of them. Each subscriber and node was validated on
    /// its own; here they are checked against each other and the current state: IDs to remove
    /// exist, addresses overlap no other subscriber's, nodes named exist (after the change),
    /// nodes removed have no members left. `file` names the source in errors.
    pub fn merge(&mut self, changes: Vec<Change>, file: &str) -> Result<Plan, Refusal> {
        // The final word per ID wins within one batch.
        let mut subs: BTreeMap<String, Option<Subscriber>> = BTreeMap::new();
        let mut nodes: BTreeMap<String, Option<Node>> = BTreeMap::new();
        for c in changes {
            match c {
                Change::Subscriber(s) => {
                    subs.insert(s.id.clone(), Some(s));
                }
                Change::RemoveSubscriber(id) => {
                    if !self.subscribers.contains_key(&id) {
                        return Err(Refusal::NotFound(format!(
                            "no subscriber has the ID {id:?}"
                        )));
                    }
                    subs.insert(id, None);
                }
                Change::Node(n) => {
                    nodes.insert(n.id.clone(), Some(n));
                }
                Change::RemoveNode(id) => {
                    if !self.nodes.contains_key(&id) {
                        return Err(Refusal::NotFound(format!("no node has the ID {id:?}")));
                    }
                    nodes.insert(id, None);
                }
            }
        }
        let error = |key: String, message: String| ConfigError {
            file: file.into(),
            line: None,
            key,
            message,
        };
        // Nodes named must exist once the batch is in force.
        let node_exists = |id: &str| match nodes.get(id) {
            Some(n) => n.is_some(),
            None => self.nodes.contains_key(id),
        };
        let mut invalid = Vec::new();
        for s in subs.values().flatten() {
            if let Some(n) = &s.node {
                if !node_exists(n) {
                    invalid.push(error(
                        format!("subscriber {:?}.node", s.id),
                        format!("no node has the ID {n:?}; create the node first or with it"),
                    ));
                }
            }
        }
        if !invalid.is_empty() {
            return Err(Refusal::Invalid(invalid));
        }
        let mut conflicts = Vec::new();
        for (id, n) in &nodes {
            if n.is_some() {
                continue;
            }
            let members = self
                .subscribers
                .values()
                .filter(|e| e.subscriber.node.as_deref() == Some(id.as_str()))
                .filter(|e| match subs.get(&e.subscriber.id) {
                    Some(Some(s)) => s.node.as_deref() == Some(id.as_str()),
                    Some(None) => false,
                    None => true,
                })
                .count();
            if members > 0 {
                conflicts.push(error(
                    format!("node {id:?}"),
                    format!(
                        "{members} subscriber(s) still sit behind it; move or remove them first"
                    ),
                ));
            }
        }
        // Addresses: against everyone the batch does not touch, and within the batch.
        let touched = |slot: u32| {
            self.slot_ids[slot as usize]
                .as_ref()
                .is_some_and(|id| subs.contains_key(id))
        };
        let mut batch: AddressSpace<&str> = AddressSpace::new();
        for s in subs.values().flatten() {
            for p in &s.prefixes {
                if let Some((q, slot)) = self.space.conflict(p, touched) {
                    let other = self.slot_ids[slot as usize].as_deref().unwrap_or("?");
                    conflicts.push(error(
                        format!("subscriber {:?}.addresses", s.id),
                        format!(
                            "{p} overlaps {q} of subscriber {other:?}; a frame must belong to \
                             one subscriber"
                        ),
                    ));
                } else if let Some((q, other)) = batch.conflict(p, |_| false) {
                    conflicts.push(error(
                        format!("subscriber {:?}.addresses", s.id),
                        if other == s.id {
                            format!("{p} overlaps {q}, another of its addresses; list each once")
                        } else {
                            format!(
                                "{p} overlaps {q} of subscriber {other:?} in the same change; a \
                                 frame must belong to one subscriber"
                            )
                        },
                    ));
                } else {
                    batch.insert(*p, s.id.as_str());
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(Refusal::Conflict(conflicts));
        }
        // Room on the workers, before anything changes.
        let mut free = self.free_locals.clone();
        let mut owners_new = HashMap::new();
        for s in subs.values().flatten() {
            if !self.subscribers.contains_key(&s.id) {
                owners_new.insert(
                    s.id.clone(),
                    Self::take_local(&mut free, &s.id, self.workers)?,
                );
            }
        }

        // Everything checked: apply.
        let mut plan = Plan::default();
        let mut tables_changed = false;
        for (id, n) in nodes {
            plan.nodes_changed = true;
            match n {
                Some(n) => self.nodes.insert(id, n),
                None => self.nodes.remove(&id),
            };
        }
        // Old addresses go first, so one subscriber can take over another's in the batch.
        for (id, s) in &subs {
            if let Some(old) = self.subscribers.get(id) {
                if s.as_ref().map(|s| &s.prefixes) != Some(&old.subscriber.prefixes) {
                    for p in &old.subscriber.prefixes {
                        self.space.remove(p);
                        self.addresses.remove(*p);
                    }
                    tables_changed = true;
                }
            }
        }
        for (id, s) in subs {
            match (self.subscribers.remove(&id), s) {
                (Some(old), None) => {
                    plan.summary.removed += 1;
                    plan.removes.push(old.owner);
                    self.slot_ids[old.slot as usize] = None;
                    self.local_slots[old.owner.worker as usize][old.owner.local as usize] = FREE;
                    self.free_slots.push(old.slot);
                    free[old.owner.worker as usize].push(old.owner.local);
                    plan.nodes_changed |= old.subscriber.node.is_some();
                }
                (Some(old), Some(s)) => {
                    let cake_changed =
                        old.subscriber.download != s.download || old.subscriber.upload != s.upload;
                    if s.prefixes != old.subscriber.prefixes {
                        for p in &s.prefixes {
                            self.space.insert(*p, old.slot);
                            self.addresses.insert(*p, SubscriberSlot(old.slot));
                        }
                    }
                    if cake_changed || s.node != old.subscriber.node {
                        plan.nodes_changed |= s.node.is_some() || old.subscriber.node.is_some();
                    }
                    if cake_changed {
                        plan.upserts
                            .push(Upsert::new(old.owner, &s, Some(&old.subscriber)));
                    }
                    if s == old.subscriber {
                        plan.summary.unchanged += 1;
                    } else {
                        plan.summary.changed += 1;
                    }
                    self.subscribers.insert(
                        id,
                        Entry {
                            subscriber: s,
                            ..old
                        },
                    );
                }
                (None, Some(s)) => {
                    let owner = owners_new[&id];
                    let slot = match self.free_slots.pop() {
                        Some(slot) => {
                            self.owners[slot as usize] = owner;
                            self.slot_ids[slot as usize] = Some(id.clone());
                            slot
                        }
                        None => {
                            self.owners.push(owner);
                            self.slot_ids.push(Some(id.clone()));
                            (self.owners.len() - 1) as u32
                        }
                    };
                    self.local_slots[owner.worker as usize][owner.local as usize] = slot;
                    for p in &s.prefixes {
                        self.space.insert(*p, slot);
                        self.addresses.insert(*p, SubscriberSlot(slot));
                    }
                    tables_changed = true;
                    plan.summary.added += 1;
                    plan.nodes_changed |= s.node.is_some();
                    plan.upserts.push(Upsert::new(owner, &s, None));
                    self.subscribers.insert(
                        id,
                        Entry {
                            subscriber: s,
                            owner,
                            slot,
                        },
                    );
                }
                (None, None) => unreachable!("removals of unknown IDs were refused above"),
            }
        }
        self.free_locals = free;
        if tables_changed {
            plan.tables = Some(self.tables());
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribers::test_defaults;
    use sheetcake_dataplane::classify::Prefix;

    fn set(text: &str) -> SubscriberSet {
        SubscriberSet::parse(text, "s.toml", &test_defaults()).unwrap()
    }

    fn subscriber(id: &str, address: &str, rate: u64) -> Subscriber {
        let mut config = sheetcake_cake::CakeConfig::parse("diffserv4").unwrap();
        config.bandwidth = Some(rate);
        Subscriber {
            id: id.into(),
            prefixes: vec![Prefix::parse(address).unwrap()],
            download: config,
            upload: config,
            node: None,
        }
    }

    const TWO: &str = r#"
[[subscriber]]
id = "alice"
addresses = ["100.64.0.7"]
download = "20mbit"
upload = "5mbit"

[[subscriber]]
id = "bob"
addresses = ["100.64.1.0/29"]
download = "100mbit"
upload = "20mbit"
"#;

    fn lookup(r: &Registry, a: [u8; 4]) -> Option<Owner> {
        let t = r.tables();
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&a);
        t.lookup(true, &addr)
    }

    #[test]
    fn a_replacement_plans_only_the_difference() {
        let mut r = Registry::new(2, 8);
        let first = r.replace(set(TWO)).unwrap();
        assert_eq!(first.summary.added, 2);
        assert_eq!(first.upserts.len(), 2);
        let alice = r.get("alice").unwrap().owner;
        let second = r
            .replace(set(&TWO.replace("100mbit", "50mbit").replace(
                "[[subscriber]]\nid = \"alice\"",
                "[[subscriber]]\nid = \"carol\"\naddresses = [\"100.64.2.1\"]\ndownload = \"1mbit\"\nupload = \"1mbit\"\n\n[[subscriber]]\nid = \"alice\"",
            )))
            .unwrap();
        assert_eq!(
            second.summary,
            Summary {
                added: 1,
                removed: 0,
                changed: 1,
                unchanged: 1
            }
        );
        // Only carol (new) and bob (rate) get instances; alice keeps her owner.
        let ids: Vec<&str> = second
            .upserts
            .iter()
            .map(|u| {
                r.at(u.owner.worker as usize, u.owner.local as usize)
                    .unwrap()
                    .subscriber
                    .id
                    .as_str()
            })
            .collect();
        assert_eq!(ids, ["carol", "bob"]);
        // A new subscriber's slot holds idle instances; bob's holds his old tins.
        let before: Vec<_> = second.upserts.iter().map(|u| u.tins_before).collect();
        let bob = r.get("bob").unwrap().subscriber.download.tin_mode;
        assert_eq!(before[0], None);
        assert_eq!(before[1].map(|t| t[0]), Some(bob));
        assert_eq!(r.get("alice").unwrap().owner, alice);
        let at = |o: Owner| {
            r.at(o.worker as usize, o.local as usize)
                .map(|e| e.subscriber.id.as_str())
        };
        assert_eq!(at(alice), Some("alice"));
        assert_eq!(r.count_on(0) + r.count_on(1), 3);
        assert_eq!(lookup(&r, [100, 64, 0, 7]), Some(alice));
    }

    #[test]
    fn a_merge_checks_addresses_against_the_others_only() {
        let mut r = Registry::new(1, 8);
        r.replace(set(TWO)).unwrap();
        // Overlapping bob's /29 from a new subscriber: refused, nothing changes.
        let refused = r
            .merge(
                vec![Change::Subscriber(subscriber(
                    "dave",
                    "100.64.1.4",
                    125_000,
                ))],
                "request body",
            )
            .unwrap_err();
        match refused {
            Refusal::Conflict(e) => {
                assert!(e[0]
                    .message
                    .contains("overlaps 100.64.1.0/29 of subscriber \"bob\""))
            }
            other => panic!("{other:?}"),
        }
        assert!(r.get("dave").is_none());
        // But bob may move inside his own range, and dave may take the old one in the same
        // batch.
        let plan = r
            .merge(
                vec![
                    Change::Subscriber(subscriber("bob", "100.64.1.0/30", 12_500_000)),
                    Change::Subscriber(subscriber("dave", "100.64.1.4", 125_000)),
                ],
                "request body",
            )
            .unwrap();
        assert_eq!(plan.summary.added, 1);
        assert_eq!(plan.summary.changed, 1);
        assert!(plan.tables.is_some());
        let dave = r.get("dave").unwrap().owner;
        assert_eq!(lookup(&r, [100, 64, 1, 4]), Some(dave));
        assert_eq!(
            lookup(&r, [100, 64, 1, 3]),
            Some(r.get("bob").unwrap().owner)
        );
        // Removing frees the address for someone else.
        let plan = r
            .merge(
                vec![Change::RemoveSubscriber("dave".into())],
                "request body",
            )
            .unwrap();
        assert_eq!(plan.removes, [dave]);
        assert!(r.at(0, dave.local as usize).is_none());
        assert_eq!(r.count_on(0), 2);
        assert_eq!(lookup(&r, [100, 64, 1, 4]), None);
        assert!(matches!(
            r.merge(vec![Change::RemoveSubscriber("dave".into())], "x"),
            Err(Refusal::NotFound(_))
        ));
    }

    #[test]
    fn a_rate_change_keeps_the_tables_and_the_owner() {
        let mut r = Registry::new(1, 8);
        r.replace(set(TWO)).unwrap();
        let before = r.get("alice").unwrap().owner;
        let plan = r
            .merge(
                vec![Change::Subscriber(subscriber(
                    "alice",
                    "100.64.0.7",
                    1_000_000,
                ))],
                "x",
            )
            .unwrap();
        assert!(plan.tables.is_none());
        assert_eq!(plan.upserts.len(), 1);
        assert_eq!(plan.upserts[0].owner, before);
    }

    #[test]
    fn nodes_with_members_stay_and_unknown_nodes_are_refused() {
        let mut r = Registry::new(1, 8);
        r.replace(set(&format!(
            "{TWO}\n[[node]]\nid = \"sg\"\ndownload = \"1gbit\"\nupload = \"1gbit\"\n"
        )
        .replace("upload = \"5mbit\"", "upload = \"5mbit\"\nnode = \"sg\"")))
            .unwrap();
        assert!(matches!(
            r.merge(vec![Change::RemoveNode("sg".into())], "x"),
            Err(Refusal::Conflict(_))
        ));
        let mut s = subscriber("erin", "100.64.3.1", 125_000);
        s.node = Some("nope".into());
        assert!(matches!(
            r.merge(vec![Change::Subscriber(s)], "x"),
            Err(Refusal::Invalid(_))
        ));
        // Removing the member and the node together is fine.
        let plan = r
            .merge(
                vec![
                    Change::RemoveSubscriber("alice".into()),
                    Change::RemoveNode("sg".into()),
                ],
                "x",
            )
            .unwrap();
        assert!(plan.nodes_changed);
        assert_eq!(r.nodes().count(), 0);
    }

    #[test]
    fn a_full_worker_refuses_the_whole_change() {
        let mut r = Registry::new(1, 2);
        r.replace(set(TWO)).unwrap();
        assert!(matches!(
            r.merge(
                vec![Change::Subscriber(subscriber("x", "10.0.0.1", 125_000))],
                "x"
            ),
            Err(Refusal::Full(_))
        ));
        assert_eq!(r.len(), 2);
    }
}
