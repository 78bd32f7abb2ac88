//! What a worker needs to shape: which subscriber an address belongs to, who owns it, and the
//! CAKE configuration of each of its own subscribers.
//!
//! The control thread builds [`ShapingPlan`]s; a worker only reads the tables. Subscribers are
//! sharded over workers by a hash of their ID: the owner alone touches their CAKE instances.

use crate::classify::{AddressTable, SubscriberSlot};
use crossbeam_queue::ArrayQueue;
use sheetcake_cake::{Cake, CakeConfig, InstanceStats, TinReport};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Which way a frame travels through the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// Core to access: the subscriber is the destination.
    Download = 0,
    /// Access to core: the subscriber is the source.
    Upload = 1,
}

/// A subscriber's place: its owner worker and its index among that worker's subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The worker.
    pub worker: u16,
    /// Index among the worker's subscribers: its instances are `2 * local` (download) and
    /// `2 * local + 1` (upload).
    pub local: u32,
}

/// The address tables every worker reads.
#[derive(Debug, Default)]
pub struct SubscriberTables {
    /// Address or prefix to subscriber slot.
    pub addresses: AddressTable,
    /// Slot to owner.
    pub owners: Vec<Owner>,
}

impl SubscriberTables {
    /// The owner of the subscriber `addr` belongs to (IPv4 when `v4`, else IPv6 bytes).
    #[inline]
    pub fn lookup(&self, v4: bool, addr: &[u8; 16]) -> Option<Owner> {
        let slot: SubscriberSlot = if v4 {
            self.addresses
                .lookup_v4([addr[0], addr[1], addr[2], addr[3]])?
        } else {
            self.addresses.lookup_v6(*addr)?
        };
        self.owners.get(slot.0 as usize).copied()
    }

    /// True when no subscriber is configured: every frame passes through unparsed.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// One subscriber as its owner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSubscriber {
    /// The operator's ID, for statistics.
    pub id: String,
    /// CAKE for the download direction.
    pub download: CakeConfig,
    /// CAKE for the upload direction.
    pub upload: CakeConfig,
}

/// A change the control thread asks a worker to make, at its next loop boundary.
///
/// Everything that needs memory is built on the control thread and moved in: the worker swaps
/// it into place and sends what it replaced back as [`Retired`], so it never allocates nor
/// frees heap memory on the packet path.
pub enum Command {
    /// New address tables for every lookup from now on.
    Tables(Arc<SubscriberTables>),
    /// Add subscriber `local`, or change its configuration: a subscriber already present keeps
    /// its queued frames and flow state (in place when the tin mode is unchanged; otherwise its
    /// frames move to the new instance).
    Upsert {
        /// The subscriber's local index.
        local: u32,
        /// Its instances, built with the new configuration (ids `2 * local` and `+ 1`).
        instances: Box<[Cake; 2]>,
    },
    /// Add subscriber `local`, or change its configuration, in place: the instances the slot
    /// holds (a subscriber's, or the idle ones of an empty slot, see
    /// [`crate::worker::ShapingSetup::idle`]) take `configs` (download, upload), keeping their
    /// queues and flows. The control thread sends it only when the tin modes are those the
    /// slot holds, so the worker needs no memory: the commonest changes (a subscriber added on
    /// the default options, a plan change) build no instance. The box comes back as
    /// [`Retired::Configs`] (boxed to keep every command small in the ring).
    Configure {
        /// The subscriber's local index.
        local: u32,
        /// The new configurations.
        configs: Box<[CakeConfig; 2]>,
    },
    /// Change the rate of one instance in place (`2 * local` download, `+ 1` upload), keeping
    /// its queues, flows and every other option: how the control thread shares a parent
    /// node's capacity. Ignored for a slot that holds no subscriber. Needs no memory, so
    /// nothing comes back.
    SetRate {
        /// The instance.
        instance: u32,
        /// The new rate, bytes per second (`None`: unlimited).
        bandwidth: Option<u64>,
    },
    /// Fill `report` with subscriber `local`'s statistics (both directions) and send it back
    /// as [`Retired::Report`]. The report's tin lists come with room for every tin, so the
    /// worker only copies numbers.
    Report {
        /// The subscriber's local index.
        local: u32,
        /// Where the statistics go.
        report: Box<SubscriberReport>,
    },
    /// Remove subscriber `local`: its queued frames are freed and counted, its instances
    /// replaced by the idle placeholders given.
    Remove {
        /// The subscriber's local index.
        local: u32,
        /// Idle instances to leave in the slot.
        placeholders: Box<[Cake; 2]>,
    },
}

/// What a worker hands back to the control thread to free.
pub enum Retired {
    /// Tables no longer in use.
    Tables(Arc<SubscriberTables>),
    /// Instances no longer in use.
    Instances(Box<[Cake; 2]>),
    /// A filled [`Command::Report`].
    Report(Box<SubscriberReport>),
    /// The configurations of an applied [`Command::Configure`].
    Configs(Box<[CakeConfig; 2]>),
}

/// One direction of a subscriber as `tc -s qdisc show` reports a cake qdisc: the instance's
/// configuration, counters, backlog and memory, and every tin in tin order.
#[derive(Debug, Clone, Default)]
pub struct DirectionReport {
    /// The configuration in force (a parent node's share included).
    pub config: CakeConfig,
    /// Instance counters.
    pub stats: InstanceStats,
    /// Bytes and packets queued.
    pub backlog_bytes: u64,
    pub backlog_packets: u32,
    /// Buffer memory: used now, peak, and the limit (bytes of buffer footprint).
    pub memory: (u64, u64, u64),
    /// Per tin, in tin order.
    pub tins: Vec<TinReport>,
}

/// Both directions of one subscriber, as its owner saw them.
#[derive(Debug, Clone, Default)]
pub struct SubscriberReport {
    /// The subscriber's local index on its owner.
    pub local: u32,
    /// Download, upload.
    pub directions: [DirectionReport; 2],
}

impl SubscriberReport {
    /// An empty report with room for every tin, to send in a [`Command::Report`].
    pub fn new(local: u32) -> Box<SubscriberReport> {
        let direction = || DirectionReport {
            tins: Vec::with_capacity(sheetcake_cake::tins::MAX_TINS),
            ..DirectionReport::default()
        };
        Box::new(SubscriberReport {
            local,
            directions: [direction(), direction()],
        })
    }

    /// Copies `cakes`' statistics in (the worker's side). Never allocates: the tin lists
    /// already have room for every tin.
    pub fn fill(&mut self, cakes: &[Cake]) {
        for (report, cake) in self.directions.iter_mut().zip(cakes) {
            report.config = *cake.config();
            report.stats = cake.stats();
            report.backlog_bytes = cake.backlog_bytes();
            report.backlog_packets = cake.backlog_packets();
            report.memory = cake.memory();
            report.tins.clear();
            report.tins.extend(cake.tin_reports());
        }
    }
}

/// The two queues between the control thread and one worker. Lock-free; a full command queue
/// makes the control thread wait, never the worker.
pub struct ControlChannel {
    /// Control to worker.
    pub commands: ArrayQueue<Command>,
    /// Worker to control.
    pub retired: ArrayQueue<Retired>,
    /// Commands the worker has applied since it started (it alone writes): how the control
    /// side knows a change is in force.
    applied: AtomicU64,
    /// Commands queued since the start (the control thread alone writes): with `applied`,
    /// the sequence number that says when one command is in force.
    queued: AtomicU64,
}

impl ControlChannel {
    /// Queues of `capacity` entries each.
    pub fn new(capacity: usize) -> Arc<ControlChannel> {
        Arc::new(ControlChannel {
            commands: ArrayQueue::new(capacity),
            retired: ArrayQueue::new(capacity),
            applied: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        })
    }

    /// Queues `command` for the worker, giving it back when the queue is full. The control
    /// side's only way in (one control thread: the count needs no read-modify-write). Returns
    /// the command's sequence number: it is in force once [`applied`](Self::applied) reaches
    /// it, because the worker applies commands in order.
    pub fn push(&self, command: Command) -> Result<u64, Command> {
        self.commands.push(command)?;
        let n = self.queued.load(Ordering::Relaxed) + 1;
        self.queued.store(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Commands queued and not yet applied.
    pub fn depth(&self) -> usize {
        self.commands.len()
    }

    /// Commands the worker has applied so far.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Counts one more command applied. The worker's side.
    #[inline]
    pub fn count_applied(&self) {
        let n = self.applied.load(Ordering::Relaxed) + 1;
        self.applied.store(n, Ordering::Release);
    }
}

/// What the control thread can see of one instance while the worker runs it: the bytes that
/// arrived for it (offered load, dropped frames included) and the bytes it holds queued. The
/// owner worker is the only writer and stores its own values (a plain store on x86), so the
/// packet path pays no atomic read-modify-write and never waits for a reader.
#[derive(Debug, Default)]
pub struct InstanceGauge {
    arrived_bytes: AtomicU64,
    backlog_bytes: AtomicU64,
}

impl InstanceGauge {
    /// Counts `len` more bytes arrived. Owner worker only.
    #[inline]
    pub fn arrived(&self, len: u32) {
        let total = self.arrived_bytes.load(Ordering::Relaxed) + u64::from(len);
        self.arrived_bytes.store(total, Ordering::Relaxed);
    }

    /// Records the backlog now. Owner worker only.
    #[inline]
    pub fn set_backlog(&self, bytes: u64) {
        self.backlog_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Bytes arrived since the worker started (monotonic).
    pub fn arrived_bytes(&self) -> u64 {
        self.arrived_bytes.load(Ordering::Relaxed)
    }

    /// Bytes queued at the last update.
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog_bytes.load(Ordering::Relaxed)
    }
}

/// The gauges of every instance slot of one worker, indexed by instance number. Built by the
/// control thread at start (two per subscriber slot), shared with the worker.
pub type InstanceGauges = Arc<[InstanceGauge]>;

/// Gauges for a worker with `slots` subscriber slots: two instances each, and two for the
/// default class (the slot after them).
pub fn instance_gauges(slots: usize) -> InstanceGauges {
    (0..2 * (slots + 1))
        .map(|_| InstanceGauge::default())
        .collect()
}

/// Most commands a worker applies per loop, so a large reload never delays packets by more
/// than a few microseconds at a time.
pub const COMMANDS_PER_LOOP: usize = 16;

/// A fixed-capacity FIFO of instance numbers waiting for service, each at most once.
#[derive(Debug)]
pub struct ReadyQueue {
    ring: Vec<u32>,
    queued: Vec<bool>,
    head: usize,
    len: usize,
}

impl ReadyQueue {
    /// A queue for instances `0..capacity`. Allocates once.
    pub fn new(capacity: usize) -> ReadyQueue {
        ReadyQueue {
            ring: vec![0; capacity.max(1)],
            queued: vec![false; capacity],
            head: 0,
            len: 0,
        }
    }

    /// Queues `id` unless it is already queued.
    #[inline]
    pub fn push(&mut self, id: u32) {
        if std::mem::replace(&mut self.queued[id as usize], true) {
            return;
        }
        let at = (self.head + self.len) % self.ring.len();
        self.ring[at] = id;
        self.len += 1;
    }

    /// Queues `id` ahead of every other unless it is already queued.
    #[inline]
    pub fn push_front(&mut self, id: u32) {
        if std::mem::replace(&mut self.queued[id as usize], true) {
            return;
        }
        self.head = (self.head + self.ring.len() - 1) % self.ring.len();
        self.ring[self.head] = id;
        self.len += 1;
    }

    /// Takes the oldest.
    #[inline]
    pub fn pop(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let id = self.ring[self.head];
        self.head = (self.head + 1) % self.ring.len();
        self.len -= 1;
        self.queued[id as usize] = false;
        Some(id)
    }

    /// The `n` oldest waiting (fewer when fewer wait), oldest first, left in the queue.
    #[inline]
    pub fn oldest(&self, n: usize) -> impl Iterator<Item = u32> + '_ {
        // The two runs of the ring, before and after its wrap: no division per entry.
        let n = n.min(self.len);
        let first = &self.ring[self.head..(self.head + n).min(self.ring.len())];
        let wrapped = &self.ring[..n - first.len()];
        first.iter().chain(wrapped).copied()
    }

    /// Instances waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when none waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The worker that owns subscriber `id`: FNV-1a (64 bit) of the ID modulo the workers. A
/// stable hash, so a subscriber keeps its worker across restarts and reloads; the control
/// thread places subscribers with it and the benchmark shards its subscribers the same way.
pub fn owner_worker(id: &str, workers: usize) -> usize {
    use std::hash::Hasher;
    let mut h = Fnv1a::default();
    h.write(id.as_bytes());
    (h.finish() % workers.max(1) as u64) as usize
}

/// FNV-1a, 64 bit: the owner rule's hash, and a fast hasher for maps keyed by operator IDs
/// (which come from the operator's own systems, not from the network, so an unkeyed hash is
/// safe where SipHash would cost twice as much over a million IDs).
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_fnv1a_and_spread() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the published test vector).
        assert_eq!(
            owner_worker("a", 3),
            (0xaf63_dc4c_8601_ec8c_u64 % 3) as usize
        );
        assert_eq!(owner_worker("alice", 1), 0);
        assert_eq!(owner_worker("alice", 0), 0, "no workers is treated as one");
        let counts = (0..1000).fold([0usize; 4], |mut c, i| {
            c[owner_worker(&format!("cust-{i}"), 4)] += 1;
            c
        });
        assert!(counts.iter().all(|&n| n > 200), "{counts:?}");
    }

    #[test]
    fn ready_queue_is_fifo_and_holds_each_instance_once() {
        let mut q = ReadyQueue::new(4);
        q.push(2);
        q.push(0);
        q.push(2);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(2));
        q.push(3);
        q.push(2);
        q.push(1);
        assert_eq!(
            std::iter::from_fn(|| q.pop()).collect::<Vec<_>>(),
            [0, 3, 2, 1]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn the_oldest_are_read_in_order_across_the_wrap_and_stay_queued() {
        let mut q = ReadyQueue::new(4);
        for id in [0, 1, 2] {
            q.push(id);
        }
        assert_eq!((q.pop(), q.pop()), (Some(0), Some(1)));
        // The ring now holds 2 at its third slot, 3 at its fourth and 0 at its first.
        q.push(3);
        q.push(0);
        assert_eq!(q.oldest(2).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(q.oldest(10).collect::<Vec<_>>(), [2, 3, 0]);
        assert_eq!(q.len(), 3);
        assert_eq!(
            std::iter::from_fn(|| q.pop()).collect::<Vec<_>>(),
            [2, 3, 0]
        );
        assert_eq!(q.oldest(4).count(), 0);
    }

    #[test]
    fn an_instance_pushed_to_the_front_is_served_first_and_still_once() {
        let mut q = ReadyQueue::new(4);
        q.push(1);
        q.push(2);
        q.push_front(3);
        q.push_front(2);
        q.push(3);
        assert_eq!(
            std::iter::from_fn(|| q.pop()).collect::<Vec<_>>(),
            [3, 1, 2]
        );
        q.push_front(0);
        q.push(1);
        assert_eq!(std::iter::from_fn(|| q.pop()).collect::<Vec<_>>(), [0, 1]);
    }
}
