//! The run-to-completion worker loop.
//!
//! One worker runs on one core and owns one RX and one TX queue of every port. Its loop is the
//! whole packet path, in this order:
//!
//! 1. read the time (once);
//! 2. receive a burst from each port; classify each frame to (subscriber, direction) by its
//!    address beneath any VLAN tags or PPPoE header; frames of no subscriber (and non-IP or
//!    malformed frames) go straight to the other port of the pair; frames of a subscriber this
//!    worker owns go into that subscriber's CAKE; the others go to their owner's handoff ring;
//! 3. take in what other workers handed over;
//! 4. move instances whose shaper came due from the timer wheel to the ready queue, and
//!    dequeue from ready instances what the shaper allows;
//! 5. transmit, and every [`PUBLISH_INTERVAL_US`] publish the counters.
//!
//! It never blocks, never allocates and never takes a lock. Only instances with packets are
//! visited: the ready queue and the timer wheel hold them; idle subscribers cost nothing.
//!
//! Frames the TX queue refuses stay in a small per-port pending buffer and are retried; while a
//! port's pending buffer cannot take a full burst, the worker neither receives from the port
//! that feeds it nor dequeues shaped frames, so back-pressure ends in CAKE's queues (where the
//! AQM manages it) or in the NIC's RX ring (counted by the port as `rx_missed`), never in a
//! silent drop.

use crate::dpdk::{
    tsc, Mbuf, MbufBuffer, MbufQueue, Port, RingConsumer, RingProducer, RxQueue, TxQueue,
};
use crate::packet::PacketInfo;
use crate::prefetch::{prefetch, prefetch_bytes};
use crate::pressure::FattestInstance;
use crate::sched::TimerWheel;
use crate::shaping::{
    Command, ControlChannel, Direction, InstanceGauges, LocalSubscriber, ReadyQueue, Retired,
    SubscriberTables, COMMANDS_PER_LOOP,
};
use sheetcake_cake::tins::TIN_CLASSES;
use sheetcake_cake::{
    Cake, CakeConfig, Dequeued, DropReason as CakeDrop, FlowPool, InstanceSetup, NetworkKind,
    PacketMeta, Placing,
};
use sheetcake_parse::{parse_frame, Network};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Frames asked of an RX queue per call, as in DPDK's l2fwd and testpmd.
pub const BURST_SIZE: usize = 32;

/// Frames that may wait for one TX queue: two bursts, so a fresh RX burst still fits while the
/// NIC has taken only part of the previous one.
pub const TX_PENDING: usize = 2 * BURST_SIZE;

/// How often a worker copies its counters to where the control thread reads them, in
/// microseconds. Often enough for a live status line, rare enough to cost nothing.
pub const PUBLISH_INTERVAL_US: u64 = 1_000;

/// Ready instances whose state a service pass asks for at a time, before serving the first
/// of them: a burst's worth.
const SERVICE_STAGED: usize = BURST_SIZE;

/// Most packets one instance may send per service before the next ready instance gets its
/// turn: keeps one busy subscriber from delaying the others' due packets by more than a burst.
pub const SERVICE_QUANTUM: usize = 8;

/// How long an instance stays empty before it gives back the flow state it still holds, in
/// nanoseconds. Dequeue keeps the flows of an instance that just emptied, since most instances
/// empty between bursts and would otherwise place every flow anew; an instance quiet for a
/// second, longer than any round trip it shapes, is idle, and its flows go back to the
/// worker's pool for the subscribers that are busy.
pub const REST_AFTER_NS: u64 = 1_000_000_000;

/// Why a worker dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// The frame was still waiting for a TX queue when the worker stopped.
    Shutdown = 0,
    /// CAKE's AQM (COBALT) dropped it.
    Aqm = 1,
    /// The subscriber's CAKE was over its memory limit (the fattest flow's head).
    Overflow = 2,
    /// CAKE's ACK filter found it redundant.
    AckFilter = 3,
    /// The owner worker's handoff ring was full.
    HandoffFull = 4,
    /// The worker's budget of queued buffers was used up: the head of the fattest flow of the
    /// fattest instance made room for a new frame.
    Budget = 5,
    /// Still queued in CAKE when the worker stopped.
    Flushed = 6,
    /// A shaped frame found its port's TX backlog full (the worker checks for room before
    /// dequeueing, so this stays at zero unless that check is broken).
    TxFull = 7,
    /// Queued for a subscriber that was removed.
    Removed = 8,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 9] = [
        DropReason::Shutdown,
        DropReason::Aqm,
        DropReason::Overflow,
        DropReason::AckFilter,
        DropReason::HandoffFull,
        DropReason::Budget,
        DropReason::Flushed,
        DropReason::TxFull,
        DropReason::Removed,
    ];

    /// Stable lower-case name, for status lines and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Shutdown => "shutdown",
            DropReason::Aqm => "aqm",
            DropReason::Overflow => "overflow",
            DropReason::AckFilter => "ack_filter",
            DropReason::HandoffFull => "handoff_full",
            DropReason::Budget => "budget",
            DropReason::Flushed => "flushed",
            DropReason::TxFull => "tx_full",
            DropReason::Removed => "removed",
        }
    }

    fn from_cake(reason: CakeDrop) -> DropReason {
        match reason {
            CakeDrop::Aqm => DropReason::Aqm,
            CakeDrop::Overflow => DropReason::Overflow,
            CakeDrop::AckFilter => DropReason::AckFilter,
            CakeDrop::Flushed => DropReason::Flushed,
        }
    }
}

const DROP_REASONS: usize = DropReason::ALL.len();

/// A worker's counters at one moment. Plain numbers, monotonic since the worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Frames received from all ports.
    pub rx_packets: u64,
    /// Frames handed to TX queues.
    pub tx_packets: u64,
    /// Frames that went through a subscriber's CAKE (counted when enqueued).
    pub shaped_packets: u64,
    /// Frames that passed through unshaped (no subscriber, not IP, or malformed).
    pub unshaped_packets: u64,
    /// Frames handed to another worker, and received from other workers.
    pub handed_off: u64,
    pub taken_over: u64,
    /// Frames dropped, by [`DropReason`].
    pub dropped: [u64; DROP_REASONS],
    /// Frames queued in this worker's CAKE instances now.
    pub queued: u64,
    /// Frames waiting in this worker's TX backlogs (the port's TX queue would not take them
    /// yet) and in its outboxes to other workers, at the last publication.
    pub tx_waiting: u64,
    /// Flow entries of the worker's pool in use now (held by active and recently active
    /// instances; an instance idle for [`REST_AFTER_NS`] gives its back).
    pub flows_in_use: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// TSC cycles spent in iterations that moved at least one frame.
    pub busy_cycles: u64,
    /// TSC cycles since the worker started.
    pub total_cycles: u64,
    /// What CAKE sent and dropped, by direction (download, upload) and tin class
    /// ([`sheetcake_cake::tins::tin_class`]).
    pub tins: [[TinCounters; TIN_CLASSES]; 2],
}

/// The drop reasons counted per tin: CAKE's own verdicts and the worker's budget, which takes
/// queued frames as CAKE's memory limit does.
pub const TIN_DROP_REASONS: [DropReason; 4] = [
    DropReason::Aqm,
    DropReason::Overflow,
    DropReason::AckFilter,
    DropReason::Budget,
];

/// One tin class's traffic in one direction, summed over a worker's instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TinCounters {
    /// Frames and bytes CAKE let out.
    pub sent_packets: u64,
    pub sent_bytes: u64,
    /// Frames it marked CE on the way out.
    pub ecn_marked: u64,
    /// Frames it dropped, by [`TIN_DROP_REASONS`].
    pub dropped: [u64; TIN_DROP_REASONS.len()],
}

impl TinCounters {
    /// Fields in publication order.
    const WORDS: usize = 3 + TIN_DROP_REASONS.len();
}

impl WorkerCounters {
    /// Counts a frame CAKE let out.
    #[inline]
    fn count_sent(&mut self, m: &Mbuf) {
        let info = m.info();
        let tin = &mut self.tins[(info.instance & 1) as usize][usize::from(info.stamp.tin_class)];
        tin.sent_packets += 1;
        tin.sent_bytes += u64::from(info.stamp.frame_len);
        tin.ecn_marked += u64::from(info.stamp.marked);
    }

    /// Frees a frame that was queued in (or given to) a CAKE instance and counts why it went.
    #[inline]
    fn drop_queued(&mut self, m: Mbuf, reason: DropReason) {
        self.dropped[reason as usize] += 1;
        if let Some(k) = TIN_DROP_REASONS.iter().position(|&r| r == reason) {
            let info = m.info();
            self.tins[(info.instance & 1) as usize][usize::from(info.stamp.tin_class)].dropped
                [k] += 1;
        }
        drop(m);
    }

    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Frames dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Counters published before the drop reasons.
const PLAIN_COUNTERS: usize = 12;

/// Published words: the plain counters, the drop reasons, then the tins.
const COUNTER_WORDS: usize = PLAIN_COUNTERS + DROP_REASONS + 2 * TIN_CLASSES * TinCounters::WORDS;

impl WorkerCounters {
    /// Every counter as one word, in publication order.
    fn to_words(self) -> [u64; COUNTER_WORDS] {
        let plain = [
            self.rx_packets,
            self.tx_packets,
            self.shaped_packets,
            self.unshaped_packets,
            self.handed_off,
            self.taken_over,
            self.queued,
            self.flows_in_use,
            self.iterations,
            self.busy_cycles,
            self.total_cycles,
            self.tx_waiting,
        ];
        let tins = self.tins.iter().flatten().flat_map(|t| {
            [t.sent_packets, t.sent_bytes, t.ecn_marked]
                .into_iter()
                .chain(t.dropped)
        });
        let mut words = [0; COUNTER_WORDS];
        for (w, v) in words
            .iter_mut()
            .zip(plain.into_iter().chain(self.dropped).chain(tins))
        {
            *w = v;
        }
        words
    }

    /// The counters [`WorkerCounters::to_words`] gave.
    fn from_words(v: &[u64; COUNTER_WORDS]) -> WorkerCounters {
        let mut dropped = [0; DROP_REASONS];
        dropped.copy_from_slice(&v[PLAIN_COUNTERS..PLAIN_COUNTERS + DROP_REASONS]);
        let mut tins = [[TinCounters::default(); TIN_CLASSES]; 2];
        let words = v[PLAIN_COUNTERS + DROP_REASONS..].chunks_exact(TinCounters::WORDS);
        for (t, w) in tins.iter_mut().flatten().zip(words) {
            t.sent_packets = w[0];
            t.sent_bytes = w[1];
            t.ecn_marked = w[2];
            t.dropped.copy_from_slice(&w[3..]);
        }
        WorkerCounters {
            rx_packets: v[0],
            tx_packets: v[1],
            shaped_packets: v[2],
            unshaped_packets: v[3],
            handed_off: v[4],
            taken_over: v[5],
            queued: v[6],
            flows_in_use: v[7],
            iterations: v[8],
            busy_cycles: v[9],
            total_cycles: v[10],
            tx_waiting: v[11],
            dropped,
            tins,
        }
    }
}

/// Where a worker publishes its counters for the control thread: one writer, any number of
/// readers, no locks. Each field is updated with a relaxed store of the worker's own value, so
/// a reader may see fields from two neighbouring publications, never a torn number.
#[derive(Debug)]
#[repr(align(64))]
pub struct PublishedCounters {
    fields: [AtomicU64; COUNTER_WORDS],
    /// Set when the worker enters its loop: its subscriber slots are built (a million of them
    /// take seconds) and it forwards.
    running: std::sync::atomic::AtomicBool,
}

impl Default for PublishedCounters {
    fn default() -> Self {
        PublishedCounters {
            fields: std::array::from_fn(|_| AtomicU64::new(0)),
            running: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl PublishedCounters {
    fn publish(&self, c: &WorkerCounters) {
        for (slot, v) in self.fields.iter().zip(c.to_words()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// Whether the worker has entered its loop.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// The latest published counters.
    pub fn read(&self) -> WorkerCounters {
        WorkerCounters::from_words(&std::array::from_fn(|i| {
            self.fields[i].load(Ordering::Relaxed)
        }))
    }
}

/// One port as a worker sees it: its own RX and TX queue.
#[derive(Debug)]
pub struct PortQueues<'port> {
    /// The worker's RX queue on this port.
    pub rx: RxQueue<'port>,
    /// The worker's TX queue on this port.
    pub tx: TxQueue<'port>,
}

/// A bridged pair of ports as a worker sees it. Index 0 is the core-facing port, 1 the
/// access-facing port.
#[derive(Debug)]
pub struct PairQueues<'port> {
    /// `[core, access]`.
    pub ports: [PortQueues<'port>; 2],
}

impl<'port> PairQueues<'port> {
    /// The queues of a bridged pair of ports, one [`PairQueues`] per worker (queue `w` of
    /// both ports is worker `w`'s). `None` when either port's queues were handed out already.
    pub fn of(core: &'port Port, access: &'port Port) -> Option<Vec<PairQueues<'port>>> {
        let (crx, ctx) = core.take_queues()?;
        let (arx, atx) = access.take_queues()?;
        Some(
            crx.into_iter()
                .zip(ctx)
                .zip(arx.into_iter().zip(atx))
                .map(|((crx, ctx), (arx, atx))| PairQueues {
                    ports: [
                        PortQueues { rx: crx, tx: ctx },
                        PortQueues { rx: arx, tx: atx },
                    ],
                })
                .collect(),
        )
    }
}

/// The handoff rings of one worker: to each other worker, and from each.
pub struct Handoff {
    /// `to[w]` sends to worker `w` (`None` for this worker itself).
    pub to: Vec<Option<RingProducer>>,
    /// Rings other workers send to this one.
    pub from: Vec<RingConsumer>,
}

/// What a worker shapes with: the shared tables, its own subscribers, and its limits.
pub struct ShapingSetup {
    /// Address tables, shared by all workers.
    pub tables: Arc<SubscriberTables>,
    /// This worker's subscribers at start, by local index.
    pub subscribers: Vec<LocalSubscriber>,
    /// Subscriber slots the worker keeps, for subscribers added later (at least
    /// `subscribers.len()`).
    pub capacity: usize,
    /// Commands from the control thread, and what goes back.
    pub channel: Arc<ControlChannel>,
    /// This worker's number.
    pub worker: u16,
    /// Active flows the worker's pool holds (all its instances together).
    pub flows: usize,
    /// Frames the worker may hold queued in all its instances together.
    pub queued_budget: u64,
    /// Seed of the flow hashes.
    pub seed: u64,
    /// Where the worker shows each instance's load to the control thread (two per slot, and
    /// two for the default class: see [`crate::shaping::instance_gauges`]).
    pub gauges: InstanceGauges,
    /// The default class's CAKE for unicast IP traffic of no subscriber, per direction
    /// (download, upload); `None` passes that traffic through unshaped.
    pub default_class: [Option<CakeConfig>; 2],
    /// The configuration of the idle instances in unused slots (download, upload). A
    /// subscriber added with these tin modes is configured in place ([`Command::Configure`]):
    /// the appliance gives the default options, so most additions build nothing;
    /// [`placeholder_config`] is the smallest.
    pub idle: [CakeConfig; 2],
}

/// The shaping state of a worker.
struct Shaper {
    tables: Arc<SubscriberTables>,
    worker: u16,
    cakes: Vec<Cake>,
    /// Which local slots hold a subscriber (the others hold idle placeholders).
    present: Vec<bool>,
    channel: Arc<ControlChannel>,
    pool: FlowPool<Mbuf>,
    wheel: TimerWheel,
    ready: ReadyQueue,
    /// Instances that emptied, until they have rested [`REST_AFTER_NS`].
    resting: TimerWheel,
    /// Instances whose rest just ended (scratch, preallocated).
    rested: Vec<u32>,
    /// Instances by frames held, for the budget's victim.
    fattest: FattestInstance,
    handoff: Handoff,
    /// Frames waiting to be handed to each other worker (room for one burst from every port
    /// between two flushes).
    outbox: Vec<MbufBuffer<TX_PENDING>>,
    /// This burst's frames for the worker's own instances, waiting while the lines their
    /// enqueue reads are loading (see [`Shaper::enqueue_staged`]).
    staged: MbufBuffer<BURST_SIZE>,
    /// Where each staged frame goes in its instance, computed once for prefetch and enqueue.
    placings: [Option<Placing>; BURST_SIZE],
    queued_budget: u64,
    gauges: InstanceGauges,
    /// Whether unknown unicast traffic goes to the default class, per direction.
    default_class: [bool; 2],
    /// The local slot of the default class's instances (after the subscribers' slots).
    default_local: u32,
}

/// Nanoseconds from TSC cycles, in 32.32 fixed point so the loop converts with one multiply.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: u64,
    ns_per_cycle_q32: u128,
}

impl Clock {
    fn new(tsc_hz: u64) -> Clock {
        Clock {
            base: tsc(),
            ns_per_cycle_q32: (1_000_000_000u128 << 32) / u128::from(tsc_hz.max(1)),
        }
    }

    #[inline]
    fn ns(&self, cycles: u64) -> u64 {
        ((u128::from(cycles.wrapping_sub(self.base)) * self.ns_per_cycle_q32) >> 32) as u64
    }
}

/// A worker: its queues, its pending frames, its subscribers, its counters.
pub struct Worker<'port, 'shared> {
    /// Every port, flattened: pair `p` is ports `2p` (core) and `2p + 1` (access).
    ports: Vec<PortQueues<'port>>,
    pending: Vec<MbufBuffer<TX_PENDING>>,
    /// Frames just received, before classification.
    burst: MbufBuffer<BURST_SIZE>,
    shaper: Option<Shaper>,
    counters: WorkerCounters,
    published: &'shared PublishedCounters,
    publish_every_cycles: u64,
    clock: Clock,
}

impl<'port, 'shared> Worker<'port, 'shared> {
    /// A bridging worker over `pairs` (no shaping), publishing to `published`.
    pub fn new(
        pairs: Vec<PairQueues<'port>>,
        published: &'shared PublishedCounters,
        tsc_hz: u64,
    ) -> Self {
        let ports: Vec<PortQueues<'port>> = pairs.into_iter().flat_map(|p| p.ports).collect();
        let pending = ports.iter().map(|_| MbufBuffer::new()).collect();
        Worker {
            ports,
            pending,
            burst: MbufBuffer::new(),
            shaper: None,
            counters: WorkerCounters::default(),
            published,
            publish_every_cycles: (tsc_hz / 1_000_000).max(1) * PUBLISH_INTERVAL_US,
            clock: Clock::new(tsc_hz),
        }
    }

    /// Adds shaping: the worker's subscribers get their CAKE instances (two each), and every
    /// spare slot an idle placeholder, so subscribers added later cost the worker no allocation.
    pub fn with_shaping(mut self, setup: ShapingSetup, handoff: Handoff) -> Self {
        let now = self.clock.ns(tsc());
        let capacity = setup.capacity.max(setup.subscribers.len());
        // One slot more than the subscribers': the default class's.
        let default_local = capacity;
        let mut present = vec![false; capacity + 1];
        present[default_local] = true;
        let cakes: Vec<Cake> = (0..=capacity)
            .flat_map(|local| {
                let id = 2 * local as u32;
                let [down, up] = match setup.subscribers.get(local) {
                    Some(s) => {
                        present[local] = true;
                        [s.download, s.upload]
                    }
                    None if local == default_local => setup
                        .default_class
                        .map(|c| c.unwrap_or_else(placeholder_config)),
                    None => setup.idle,
                };
                [
                    Cake::new(down, InstanceSetup::new(id, setup.seed ^ u64::from(id))),
                    Cake::new(
                        up,
                        InstanceSetup::new(id + 1, setup.seed ^ u64::from(id + 1)),
                    ),
                ]
            })
            .collect();
        let instances = cakes.len();
        assert!(
            setup.gauges.len() >= instances,
            "the control thread gives every instance slot a gauge"
        );
        let outbox = handoff.to.iter().map(|_| MbufBuffer::new()).collect();
        self.shaper = Some(Shaper {
            tables: setup.tables,
            worker: setup.worker,
            cakes,
            present,
            channel: setup.channel,
            pool: FlowPool::new(setup.flows),
            wheel: TimerWheel::new(instances, now),
            ready: ReadyQueue::new(instances),
            resting: TimerWheel::new(instances, now),
            rested: Vec::with_capacity(instances),
            fattest: FattestInstance::new(instances, setup.queued_budget),
            handoff,
            outbox,
            staged: MbufBuffer::new(),
            placings: [None; BURST_SIZE],
            queued_budget: setup.queued_budget,
            gauges: setup.gauges,
            default_class: setup.default_class.map(|c| c.is_some()),
            default_local: default_local as u32,
        });
        self
    }

    /// Runs the loop until `stop` is set, then frees what is still pending or queued and
    /// publishes the counters. The worker keeps its queues and counters: it may be run again
    /// (the benchmark does, between reference runs).
    pub fn run(&mut self, stop: &AtomicBool) -> WorkerCounters {
        let started = tsc();
        let cycles_before = self.counters.total_cycles;
        let mut next_publish = started;
        let mut iteration_start = started;
        let mut previous_moved = false;
        self.published.running.store(true, Ordering::Release);
        while !stop.load(Ordering::Relaxed) {
            // The one clock read of the loop: it ends the previous iteration (whose cycles count
            // as busy if it moved frames) and starts this one.
            let cycles = tsc();
            if previous_moved {
                self.counters.busy_cycles += cycles - iteration_start;
            }
            iteration_start = cycles;
            if cycles >= next_publish {
                self.counters.total_cycles = cycles_before + (cycles - started);
                // What the worker holds between two loops, for the control thread's view of
                // where the buffers are: a few lengths read every publication, not per frame.
                let mut waiting: usize = self.pending.iter().map(MbufBuffer::len).sum();
                if let Some(shaper) = &self.shaper {
                    self.counters.flows_in_use = shaper.pool.in_use() as u64;
                    waiting += shaper.outbox.iter().map(MbufBuffer::len).sum::<usize>();
                }
                self.counters.tx_waiting = waiting as u64;
                self.published.publish(&self.counters);
                next_publish = cycles + self.publish_every_cycles;
            }
            previous_moved = self.poll_once(cycles) > 0;
            self.counters.iterations += 1;
        }
        self.shutdown();
        self.counters.total_cycles = cycles_before + (tsc() - started);
        self.published.publish(&self.counters);
        self.counters
    }

    fn shutdown(&mut self) {
        for buffer in &mut self.pending {
            while buffer.pop().is_some() {
                self.counters.dropped[DropReason::Shutdown as usize] += 1;
            }
        }
        // The outboxes are emptied just below.
        self.counters.tx_waiting = 0;
        if let Some(shaper) = &mut self.shaper {
            let dropped = &mut self.counters.dropped;
            for out in &mut shaper.outbox {
                while out.pop().is_some() {
                    dropped[DropReason::Shutdown as usize] += 1;
                }
            }
            let Shaper { cakes, pool, .. } = shaper;
            for cake in cakes.iter_mut() {
                cake.drain(pool, &mut |m, _| {
                    drop(m);
                    dropped[DropReason::Flushed as usize] += 1;
                });
            }
            self.counters.queued = 0;
            self.counters.flows_in_use = pool.in_use() as u64;
        }
    }

    /// After every worker has stopped (so nobody sends any more), counts what other workers
    /// handed over but this one never took in, frees it, and publishes the final counters.
    pub fn drain_handoffs(&mut self) -> WorkerCounters {
        if let Some(shaper) = &mut self.shaper {
            let mut taken: MbufBuffer<BURST_SIZE> = MbufBuffer::new();
            for ring in &mut shaper.handoff.from {
                while ring.receive(&mut taken, BURST_SIZE) > 0 {
                    while taken.pop().is_some() {
                        self.counters.taken_over += 1;
                        self.counters.dropped[DropReason::Shutdown as usize] += 1;
                    }
                }
            }
        }
        self.published.publish(&self.counters);
        self.counters
    }

    /// One pass: receive and classify, take handoffs, serve due instances, transmit. Returns
    /// the frames moved.
    #[inline]
    fn poll_once(&mut self, cycles: u64) -> usize {
        let mut moved = 0;
        let now = self.clock.ns(cycles);
        if let Some(shaper) = &mut self.shaper {
            shaper.apply_commands(&mut self.counters, now);
        }
        let bridging = self
            .shaper
            .as_ref()
            .is_none_or(|s| s.tables.is_empty() && s.default_class == [false; 2]);
        for from in 0..self.ports.len() {
            let to = from ^ 1;
            if self.pending[to].spare() >= BURST_SIZE {
                if bridging {
                    // Pure bridge: no parsing at all.
                    let n = self.ports[from]
                        .rx
                        .rx_burst(&mut self.pending[to], BURST_SIZE);
                    self.counters.rx_packets += n as u64;
                    self.counters.unshaped_packets += n as u64;
                    moved += n;
                } else {
                    let n = self.ports[from].rx.rx_burst(&mut self.burst, BURST_SIZE);
                    self.counters.rx_packets += n as u64;
                    moved += n;
                    // A received frame was written by another core (the NIC, or a peer): its
                    // header, private area and first data line are all misses. Ask for every
                    // frame's header and private line, then (once the headers are on their
                    // way) for every frame's data, so the burst's misses overlap instead of
                    // coming one after another in the loop below.
                    for m in self.burst.iter() {
                        m.prefetch_for_classify();
                    }
                    for m in self.burst.iter() {
                        m.prefetch_data();
                    }
                    while let Some(m) = self.burst.pop() {
                        self.classify(m, from, now);
                    }
                    if let Some(shaper) = &mut self.shaper {
                        shaper.enqueue_staged(&mut self.counters, now);
                        moved += shaper.hand_off(&mut self.counters);
                    }
                }
            }
            if bridging {
                // Send while the frames just received are still in cache.
                moved += self.transmit(to);
            }
        }
        if !bridging {
            if let Some(shaper) = &mut self.shaper {
                moved += shaper.exchange(&mut self.counters, now);
                moved += shaper.serve(&mut self.pending, &mut self.counters, now);
                shaper.release_rested(now);
            }
            for port in 0..self.ports.len() {
                moved += self.transmit(port);
            }
        }
        moved
    }

    /// Hands port `port`'s pending frames to its TX queue; returns how many it took.
    #[inline]
    fn transmit(&mut self, port: usize) -> usize {
        let out = &mut self.pending[port];
        if out.is_empty() {
            return 0;
        }
        let sent = self.ports[port].tx.tx_burst(out);
        self.counters.tx_packets += sent as u64;
        sent
    }

    /// Sends a received frame on its way: to a subscriber's CAKE, to its owner, or through.
    #[inline]
    fn classify(&mut self, mut m: Mbuf, from: usize, now: u64) {
        let to = from ^ 1;
        let shaper = self
            .shaper
            .as_mut()
            .expect("classify runs only when shaping");
        let direction = if from.is_multiple_of(2) {
            Direction::Download
        } else {
            Direction::Upload
        };
        let (meta, owner) = match subscriber_of(&shaper.tables, m.data(), direction) {
            Class::Subscriber(meta, owner) => (meta, owner),
            Class::UnknownUnicast(meta) if shaper.default_class[direction as usize] => (
                meta,
                crate::shaping::Owner {
                    worker: shaper.worker,
                    local: shaper.default_local,
                },
            ),
            _ => {
                self.counters.unshaped_packets += 1;
                // Room for a whole burst was checked before receiving.
                let _ = self.pending[to].push(m);
                return;
            }
        };
        *m.info_mut() = PacketInfo {
            stamp: Default::default(),
            instance: 2 * owner.local + direction as u32,
            egress: to as u16,
            meta,
        };
        self.counters.shaped_packets += 1;
        if owner.worker == shaper.worker {
            shaper.stage(m, &mut self.counters, now);
        } else {
            let w = owner.worker as usize;
            if let Err(m) = shaper.outbox[w].push(m) {
                drop(m);
                self.counters.dropped[DropReason::HandoffFull as usize] += 1;
            }
            self.counters.handed_off += 1;
        }
    }
}

/// What a received frame is to the shaper.
enum Class {
    /// IP traffic of a subscriber.
    Subscriber(PacketMeta, crate::shaping::Owner),
    /// Unicast IP traffic of no subscriber: the default class's, if there is one.
    UnknownUnicast(PacketMeta),
    /// Not IP, malformed, or multicast or broadcast IP of no subscriber: the network's own
    /// traffic (ARP, neighbour discovery, DHCP, routing and link protocols), always passed
    /// through unshaped so no queue ever delays or drops it.
    Network,
}

/// Finds the subscriber a frame belongs to: by destination address for downloads, by source
/// for uploads.
#[inline]
fn subscriber_of(tables: &SubscriberTables, frame: &[u8], direction: Direction) -> Class {
    let Some((meta, v4)) = meta_of(frame) else {
        return Class::Network;
    };
    let addr = match direction {
        Direction::Download => &meta.dst,
        Direction::Upload => &meta.src,
    };
    match tables.lookup(v4, addr) {
        Some(owner) => Class::Subscriber(meta, owner),
        None if is_unicast(v4, &meta.dst) => Class::UnknownUnicast(meta),
        None => Class::Network,
    }
}

/// True unless `dst` is an IPv4 multicast (224.0.0.0/4) or limited broadcast address, or an
/// IPv6 multicast address (ff00::/8).
#[inline]
fn is_unicast(v4: bool, dst: &[u8; 16]) -> bool {
    if v4 {
        dst[0] & 0xf0 != 0xe0 && dst[..4] != [255; 4]
    } else {
        dst[0] != 0xff
    }
}

/// What CAKE needs of an IP frame, and whether it is IPv4. `None` for non-IP and malformed
/// frames.
#[inline]
fn meta_of(frame: &[u8]) -> Option<(PacketMeta, bool)> {
    let parsed = parse_frame(frame).ok()?;
    let mut meta = PacketMeta {
        l3_offset: parsed.l3_offset,
        ..PacketMeta::default()
    };
    let v4 = match parsed.network {
        Network::Ipv4(h) => {
            meta.network = NetworkKind::Ipv4;
            meta.dscp = h.dscp;
            meta.ecn = h.ecn;
            meta.protocol = h.protocol;
            meta.src[..4].copy_from_slice(&h.src);
            meta.dst[..4].copy_from_slice(&h.dst);
            true
        }
        Network::Ipv6(h) => {
            meta.network = NetworkKind::Ipv6;
            meta.dscp = h.dscp;
            meta.ecn = h.ecn;
            meta.protocol = h.next_header;
            meta.src = h.src;
            meta.dst = h.dst;
            false
        }
        _ => return None,
    };
    if let Some(t) = parsed.l4 {
        // The transport found after any IPv6 extension headers, not the first next-header.
        meta.protocol = t.protocol;
        meta.l4_offset = t.offset;
        meta.src_port = t.src_port;
        meta.dst_port = t.dst_port;
    }
    Some((meta, v4))
}

/// The configuration of the idle instances in unused subscriber slots: one tin, no shaping,
/// the smallest an instance gets.
pub fn placeholder_config() -> CakeConfig {
    CakeConfig {
        tin_mode: sheetcake_cake::config::TinMode::Besteffort,
        ..CakeConfig::default()
    }
}

impl Shaper {
    /// Applies up to [`COMMANDS_PER_LOOP`] commands from the control thread.
    fn apply_commands(&mut self, counters: &mut WorkerCounters, now: u64) {
        for _ in 0..COMMANDS_PER_LOOP {
            // Every command retires one item: stop while the way back is full.
            if self.channel.retired.is_full() {
                return;
            }
            let Some(command) = self.channel.commands.pop() else {
                return;
            };
            let retired = match command {
                Command::Tables(tables) => {
                    Some(Retired::Tables(std::mem::replace(&mut self.tables, tables)))
                }
                Command::Report { local, mut report } => {
                    let id = 2 * local as usize;
                    if let Some(cakes) = self.cakes.get(id..id + 2) {
                        report.fill(cakes);
                    }
                    Some(Retired::Report(report))
                }
                Command::SetRate {
                    instance,
                    bandwidth,
                } => {
                    let id = instance as usize;
                    if id < self.cakes.len() && self.present[id / 2] {
                        let cake = &mut self.cakes[id];
                        let config = sheetcake_cake::CakeConfig {
                            bandwidth,
                            ..*cake.config()
                        };
                        // Same tins: never re-files, never allocates.
                        cake.set_config(&mut self.pool, config, now, &mut |m, r| {
                            counters.drop_queued(m, DropReason::from_cake(r));
                            counters.queued -= 1;
                        });
                        self.fattest.set(instance, cake.backlog_packets());
                        // A higher rate may allow the next frame earlier than the wheel has it.
                        if cake.backlog_packets() > 0 {
                            self.wheel.cancel(instance);
                            self.ready.push(instance);
                        }
                    }
                    None
                }
                Command::Upsert {
                    local,
                    mut instances,
                } => {
                    let local = local as usize;
                    for (dir, new) in instances.iter_mut().enumerate() {
                        let id = 2 * local + dir;
                        let current = &mut self.cakes[id];
                        if !self.present[local] {
                            std::mem::swap(current, new);
                        } else if current.config().tin_mode == new.config().tin_mode {
                            // Same tins: change rates and options in place, queues untouched.
                            current.set_config(&mut self.pool, *new.config(), now, &mut |m, r| {
                                counters.drop_queued(m, DropReason::from_cake(r));
                                counters.queued -= 1;
                            });
                        } else {
                            // New tins: the queued frames move to the new instance, in order.
                            let mut moving = MbufQueue::default();
                            current.drain(&mut self.pool, &mut |m, _| moving.push_back(m));
                            std::mem::swap(current, new);
                            while let Some(m) = moving.pop_front() {
                                let meta = m.info().meta;
                                counters.queued -= 1;
                                let before = current.backlog_packets();
                                current.enqueue(&mut self.pool, m, &meta, now, &mut |m, r| {
                                    counters.drop_queued(m, DropReason::from_cake(r));
                                });
                                counters.queued = (counters.queued
                                    + u64::from(current.backlog_packets()))
                                .saturating_sub(u64::from(before));
                            }
                        }
                        self.settle(id);
                    }
                    self.present[local] = true;
                    Some(Retired::Instances(instances))
                }
                Command::Configure { local, configs } => {
                    let local = local as usize;
                    for (dir, &config) in configs.iter().enumerate() {
                        let id = 2 * local + dir;
                        let Some(cake) = self.cakes.get_mut(id) else {
                            continue;
                        };
                        debug_assert_eq!(cake.config().tin_mode, config.tin_mode);
                        // Same tins: in place. (Were they not, set_config would re-file the
                        // queued frames into new tins: right, only not free of allocation.)
                        cake.set_config(&mut self.pool, config, now, &mut |m, r| {
                            counters.drop_queued(m, DropReason::from_cake(r));
                            counters.queued -= 1;
                        });
                        self.settle(id);
                    }
                    if let Some(p) = self.present.get_mut(local) {
                        *p = true;
                    }
                    Some(Retired::Configs(configs))
                }
                Command::Remove {
                    local,
                    mut placeholders,
                } => {
                    let local = local as usize;
                    for (dir, placeholder) in placeholders.iter_mut().enumerate() {
                        let id = 2 * local + dir;
                        self.cakes[id].drain(&mut self.pool, &mut |m, _| {
                            drop(m);
                            counters.dropped[DropReason::Removed as usize] += 1;
                            counters.queued -= 1;
                        });
                        self.wheel.cancel(id as u32);
                        self.gauges[id].set_backlog(0);
                        self.fattest.set(id as u32, 0);
                        self.resting.cancel(id as u32);
                        std::mem::swap(&mut self.cakes[id], placeholder);
                    }
                    self.present[local] = false;
                    Some(Retired::Instances(placeholders))
                }
            };
            // Cannot fail: checked for room above, and only this worker pushes.
            if let Some(Err(item)) = retired.map(|r| self.channel.retired.push(r)) {
                std::mem::forget(item);
            }
            self.channel.count_applied();
        }
    }

    /// After instance `id`'s configuration changed: its gauges follow, and it is served at
    /// once if it holds frames (a new rate may allow the next one earlier than the wheel has
    /// it).
    fn settle(&mut self, id: usize) {
        let cake = &self.cakes[id];
        self.gauges[id].set_backlog(cake.backlog_bytes());
        self.fattest.set(id as u32, cake.backlog_packets());
        if cake.backlog_packets() > 0 {
            self.wheel.cancel(id as u32);
            self.ready.push(id as u32);
        }
    }

    /// Holds a frame of the current burst for one of this worker's instances until
    /// [`Self::enqueue_staged`], and starts loading its instance and gauge meanwhile.
    #[inline]
    fn stage(&mut self, m: Mbuf, counters: &mut WorkerCounters, now: u64) {
        let id = m.info().instance as usize;
        if let Some(cake) = self.cakes.get(id) {
            prefetch(cake);
        }
        if id < self.gauges.len() {
            prefetch(&self.gauges[id]);
        }
        if self.staged.spare() == 0 {
            // Never with one burst staged at a time; if it were, arrival order still holds.
            self.enqueue_staged(counters, now);
        }
        // Room was made just above.
        let _ = self.staged.push(m);
    }

    /// Enqueues the staged frames in arrival order. First, with every frame's instance
    /// loaded or loading, it asks for what each enqueue reads next, one dependent step at a
    /// time for the whole burst (tin and flow and host sets; then the flow's state; then the
    /// frame at the flow's tail): a burst's frames then wait for memory together, not one
    /// after another. At a million subscribers, where each of those loads misses every cache,
    /// the first step took the worker from 0.43 to 0.57 Mpps to 0.70 to 2.05 in paired runs
    /// (BENCHMARKS.md).
    #[inline]
    fn enqueue_staged(&mut self, counters: &mut WorkerCounters, now: u64) {
        for (m, placing) in self.staged.iter().zip(self.placings.iter_mut()) {
            let info = m.info();
            *placing = self.cakes.get(info.instance as usize).map(|cake| {
                let at = cake.placing(&info.meta);
                cake.enqueue_footprint(&self.pool, &at, prefetch_bytes);
                at
            });
        }
        let placed = || {
            self.staged
                .iter()
                .zip(&self.placings)
                .filter_map(|(m, at)| {
                    Some((self.cakes.get(m.info().instance as usize)?, at.as_ref()?))
                })
        };
        for (cake, at) in placed() {
            cake.flow_footprint(&self.pool, at, prefetch_bytes);
        }
        for (cake, at) in placed() {
            cake.tail_footprint(&self.pool, at, prefetch_bytes);
        }
        for i in 0..self.staged.len() {
            let Some(m) = self.staged.pop() else { break };
            self.enqueue(m, self.placings[i], counters, now);
        }
    }

    /// Queues a frame in its instance (this worker owns it), at `placing` when the caller
    /// has computed it.
    #[inline]
    fn enqueue(
        &mut self,
        m: Mbuf,
        placing: Option<Placing>,
        counters: &mut WorkerCounters,
        now: u64,
    ) {
        let id = m.info().instance;
        let gauge = &self.gauges[id as usize];
        gauge.arrived(m.pkt_len());
        if counters.queued >= self.queued_budget {
            // The worker's share of the pool is used up. Room comes from the subscriber holding
            // the most, so every other subscriber keeps receiving and RX keeps refilling.
            if let Some(victim) = self.fattest.fattest() {
                let cake = &mut self.cakes[victim as usize];
                cake.drop_from_fattest(&mut self.pool, now, &mut |m, _| {
                    counters.drop_queued(m, DropReason::Budget);
                    counters.queued -= 1;
                });
                self.fattest.set(victim, cake.backlog_packets());
                self.gauges[victim as usize].set_backlog(cake.backlog_bytes());
                // The next frame over budget most likely takes from the same subscriber: its
                // next victim is a cold frame, asked for now.
                if let Some(next) = self.fattest.fattest() {
                    self.cakes[next as usize].victim_footprint(&self.pool, prefetch_bytes);
                }
            }
            if counters.queued >= self.queued_budget {
                // Nothing to take from (a budget smaller than one frame per instance).
                drop(m);
                counters.dropped[DropReason::Budget as usize] += 1;
                return;
            }
        }
        let meta = m.info().meta;
        let cake = &mut self.cakes[id as usize];
        let before = cake.backlog_packets();
        let placing = placing.unwrap_or_else(|| cake.placing(&meta));
        cake.enqueue_placed(&mut self.pool, m, &meta, placing, now, &mut |m, r| {
            counters.drop_queued(m, DropReason::from_cake(r));
        });
        let after = cake.backlog_packets();
        gauge.set_backlog(cake.backlog_bytes());
        self.fattest.set(id, after);
        counters.queued = counters.queued + u64::from(after) - u64::from(before);
        if before == 0 && after > 0 {
            // A subscriber whose queue was empty is served ahead of the backlogged ones, as
            // CAKE serves a new flow ahead of the bulk rotation: its first frame must not wait
            // for every due subscriber of the worker. It goes back to the tail after one
            // service, so the rest never wait more than a service per newly active one.
            self.wheel.cancel(id);
            self.ready.push_front(id);
        }
    }

    /// Gives back the flow state of instances that have been empty for [`REST_AFTER_NS`]; those
    /// still holding congestion state that has not decayed are looked at again later.
    #[inline]
    fn release_rested(&mut self, now: u64) {
        let rested = &mut self.rested;
        self.resting.advance(now, |id| rested.push(id));
        for &id in self.rested.iter() {
            let cake = &mut self.cakes[id as usize];
            // Busy again since it emptied: it rests when it empties next.
            if cake.backlog_packets() == 0 && cake.release_rested_flows(&mut self.pool, now) > 0 {
                self.resting.schedule(id, now + REST_AFTER_NS);
            }
        }
        self.rested.clear();
    }

    /// Sends what is bound for other workers. What a full ring refuses is dropped: the owner
    /// is overloaded, and waiting would stall this worker's own subscribers.
    #[inline]
    fn hand_off(&mut self, counters: &mut WorkerCounters) -> usize {
        let mut moved = 0;
        for (w, out) in self.outbox.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            if let Some(ring) = &mut self.handoff.to[w] {
                moved += ring.send(out);
            }
            while let Some(m) = out.pop() {
                drop(m);
                counters.dropped[DropReason::HandoffFull as usize] += 1;
            }
        }
        moved
    }

    /// Takes in what other workers handed over.
    #[inline]
    fn exchange(&mut self, counters: &mut WorkerCounters, now: u64) -> usize {
        let mut moved = 0;
        let mut taken: MbufBuffer<BURST_SIZE> = MbufBuffer::new();
        for r in 0..self.handoff.from.len() {
            let n = self.handoff.from[r].receive(&mut taken, BURST_SIZE);
            counters.taken_over += n as u64;
            moved += n;
            while let Some(m) = taken.pop() {
                self.enqueue(m, None, counters, now);
            }
        }
        moved
    }

    /// Asks for what serving the next [`SERVICE_STAGED`] ready instances reads, one dependent
    /// step at a time for all of them (the instances and their gauges; their tins; the flows
    /// they would serve first; those flows' head frames), so their misses overlap instead of
    /// coming one after another in the service loop.
    #[inline]
    fn stage_service(&self) {
        let next = || self.ready.oldest(SERVICE_STAGED);
        for id in next() {
            prefetch(&self.cakes[id as usize]);
            prefetch(&self.gauges[id as usize]);
        }
        for id in next() {
            self.cakes[id as usize].tins_footprint(prefetch_bytes);
        }
        for id in next() {
            self.cakes[id as usize].head_flow_footprint(&self.pool, prefetch_bytes);
        }
        for id in next() {
            self.cakes[id as usize].head_packet_footprint(&self.pool, prefetch_bytes);
        }
    }

    /// Dequeues from instances whose shaper allows it, while every port can take a frame.
    #[inline]
    fn serve(
        &mut self,
        pending: &mut [MbufBuffer<TX_PENDING>],
        counters: &mut WorkerCounters,
        now: u64,
    ) -> usize {
        let ready = &mut self.ready;
        self.wheel.advance(now, |id| ready.push(id));
        let mut sent = 0;
        for served in 0..self.ready.len() {
            if pending.iter().any(|p| p.spare() == 0) {
                break;
            }
            // A pass may serve thousands (every instance the wheel let go at once): each
            // group of the next SERVICE_STAGED is asked for as the pass reaches it.
            if served % SERVICE_STAGED == 0 {
                self.stage_service();
            }
            let Some(id) = self.ready.pop() else { break };
            let cake = &mut self.cakes[id as usize];
            let mut still_ready = true;
            for _ in 0..SERVICE_QUANTUM {
                // A dequeued frame cannot be put back: dequeue only while every port has room.
                if pending.iter().any(|p| p.spare() == 0) {
                    break;
                }
                let result = cake.dequeue(&mut self.pool, now, &mut |m, r| {
                    counters.drop_queued(m, DropReason::from_cake(r));
                    counters.queued -= 1;
                });
                match result {
                    Dequeued::Packet(m) => {
                        counters.queued -= 1;
                        counters.count_sent(&m);
                        let egress = m.info().egress as usize;
                        match pending[egress].push(m) {
                            Ok(()) => sent += 1,
                            Err(m) => {
                                drop(m);
                                counters.dropped[DropReason::TxFull as usize] += 1;
                            }
                        }
                    }
                    Dequeued::WaitUntil(t) => {
                        self.wheel.schedule(id, t);
                        still_ready = false;
                        break;
                    }
                    Dequeued::Empty => {
                        self.resting.schedule(id, now + REST_AFTER_NS);
                        still_ready = false;
                        break;
                    }
                }
            }
            self.gauges[id as usize].set_backlog(cake.backlog_bytes());
            self.fattest.set(id, cake.backlog_packets());
            if still_ready {
                self.ready.push(id);
            }
        }
        sent
    }
}
