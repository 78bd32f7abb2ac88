//! One CAKE instance: one subscriber, one direction.
//!
//! Enqueue classifies a packet into a tin and a flow, stamps it, queues it and enforces the
//! memory limit. Dequeue picks a tin (priority when shaped, weighted round robin when not),
//! a flow within it (DRR++), lets COBALT judge the head packet, and charges the shaper. When
//! the shaper says "not yet", dequeue says when: the worker files the instance in its timer
//! wheel for that time and does not look at it before.
//!
//! Over its memory limit an instance drops from the head of its fattest flow, found through
//! an overflow heap kept only while overflows happen ([`crate::flows::OverflowHeap`]). An
//! idle instance is never visited, so the worker asks it to give back its flow entries
//! ([`Cake::release_rested_flows`]) once it has been idle a while.

use crate::ack_filter::TcpAck;
use crate::autorate::Autorate;
use crate::cobalt::{CobaltParams, Verdict};
use crate::config::{AckFilter, CakeConfig, FlowMode};
use crate::flows::{Flow, FlowList, FlowPool, FlowState, ListKind, OverflowHeap, Placement, NONE};
use crate::overhead::adjusted_len;
use crate::packet::{CakePacket, DropReason, NetworkKind, PacketMeta, PacketQueue, PacketStamp};
use crate::tins::{
    tin_class, tin_count, tin_for_dscp, tin_order, tin_rates, tin_weights, TimePerByte, TinParams,
    DSCP_CS7, MTU_BYTES,
};

/// Default flow queues per tin, as in the kernel.
pub const DEFAULT_FLOW_QUEUES: u16 = 1024;

/// Memory limit bounds (spec 5.3): at least 4 MiB when shaped, at most 10240 MTUs.
const MIN_SHAPED_MEMLIMIT: u64 = 4 << 20;
const MAX_MEMLIMIT_MTUS: u64 = 10_240;

/// How many dequeues the overflow heap stays maintained after the last overflow (as in the
/// kernel): long enough to cover a flood's bursts, short enough that an instance which
/// overflowed once does not pay for the heap on every packet afterwards.
const OVERFLOW_HEAP_LIFETIME: u32 = 65_535;

/// EWMA shifts of the delay statistics (spec 7).
const EWMA_FAST: u32 = 2;
const EWMA_SLOW: u32 = 8;

/// How an instance is set up beyond its configuration.
#[derive(Debug, Clone, Copy)]
pub struct InstanceSetup {
    /// The instance's number in its worker's flow pool (unique per pool).
    pub id: u32,
    /// Flow queues per tin (a multiple of 8, at most 65528).
    pub flow_queues: u16,
    /// Seed of the flow hash, so tests are deterministic and deployments are not predictable.
    pub hash_seed: u64,
    /// Seed of the random numbers (quantum dither, BLUE).
    pub rng_seed: u64,
}

impl InstanceSetup {
    /// Defaults with `id` and the given seed for both the hash and the generator.
    pub fn new(id: u32, seed: u64) -> Self {
        InstanceSetup {
            id,
            flow_queues: DEFAULT_FLOW_QUEUES,
            hash_seed: seed,
            rng_seed: seed ^ 0x5851_f42d_4c95_7f2d,
        }
    }
}

/// What dequeue produced.
#[derive(Debug)]
pub enum Dequeued<P> {
    /// A packet to send now.
    Packet(P),
    /// Packets are queued, but the shaper allows the next one only at this time (ns).
    WaitUntil(u64),
    /// Nothing queued.
    Empty,
}

/// Per-tin statistics (spec 7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TinStats {
    /// Packets and bytes enqueued.
    pub packets: u64,
    pub bytes: u64,
    /// Peak, average and sparse (base) delay EWMAs, ns.
    pub peak_delay: u64,
    pub avg_delay: u64,
    pub sparse_delay: u64,
    /// Set-associative table outcomes.
    pub way_indirect_hits: u64,
    pub way_misses: u64,
    pub way_collisions: u64,
    /// AQM and overflow drops.
    pub drops: u64,
    /// ECN CE marks.
    pub ecn_marks: u64,
    /// ACKs removed by the ACK filter.
    pub ack_drops: u64,
    /// Largest frame enqueued.
    pub max_packet_len: u32,
}

/// A tin's state.
#[derive(Debug, Clone)]
struct Tin {
    params: TinParams,
    /// The tin's shaper clock, ns.
    next_time: u64,
    new_flows: FlowList,
    old_flows: FlowList,
    decaying_flows: FlowList,
    sparse_flows: u32,
    bulk_flows: u32,
    decaying_count: u32,
    unresponsive_flows: u32,
    backlog_bytes: u64,
    backlog_packets: u32,
    /// WRR deficit between tins when unlimited.
    wrr_deficit: i32,
    stats: TinStats,
}

/// A view of one tin for statistics, in tin order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinReport {
    /// Internal index.
    pub index: usize,
    /// Threshold rate, bytes/s (`None` unlimited).
    pub rate: Option<u64>,
    pub target: u64,
    pub interval: u64,
    pub flow_quantum: u32,
    pub backlog_bytes: u64,
    pub backlog_packets: u32,
    /// Sparse flows, decaying ones included.
    pub sparse_flows: u32,
    pub bulk_flows: u32,
    pub unresponsive_flows: u32,
    pub stats: TinStats,
}

/// One active flow, for the debug view (spec 7, per flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowReport {
    /// Internal tin index and slot in the set-associative table.
    pub tin: usize,
    pub slot: u16,
    pub state: FlowState,
    pub deficit: i32,
    /// COBALT: signal count, dropping state, next signal time, BLUE probability (Q0.32) and
    /// timer.
    pub count: u32,
    pub dropping: bool,
    pub drop_next: u64,
    pub p_drop: u32,
    pub blue_timer: u64,
    /// Queue length and backlog bytes.
    pub packets: u32,
    pub backlog: u32,
}

/// Instance statistics (spec 7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStats {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    /// AQM and overflow drops.
    pub drops: u64,
    pub overflow_drops: u64,
    pub ecn_marks: u64,
    pub ack_drops: u64,
    /// Times the shaper deferred a dequeue.
    pub overlimits: u64,
    pub min_network_len: u32,
    pub max_network_len: u32,
    pub min_adjusted_len: u32,
    pub max_adjusted_len: u32,
    /// EWMA of the network header offset (bytes of L2 headers).
    pub avg_network_offset: u32,
    /// `autorate-ingress`'s capacity estimate, bytes/s (0 when off).
    pub capacity_estimate: u64,
}

/// Where a packet goes in its instance (see [`Cake::placing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placing {
    /// The instance that computed it (its hash seed and tins made the rest).
    instance: u32,
    /// The internal index of its tin.
    tin: usize,
    /// Its flow's hash, and its source and destination hosts'.
    flow: u32,
    src: u32,
    dst: u32,
}

/// One CAKE instance.
pub struct Cake {
    id: u32,
    config: CakeConfig,
    flow_queues: u16,
    hash_seed: u64,
    rng: u64,
    tins: Vec<Tin>,
    time_per_byte: TimePerByte,
    time_next_packet: u64,
    failsafe_next_packet: u64,
    wrr_tin: usize,
    buffer_used: u64,
    buffer_peak: u64,
    buffer_limit: u64,
    backlog_bytes: u64,
    backlog_packets: u32,
    /// The overflow victim finder (spec 5.4), and the dequeues it stays maintained for (0: not
    /// maintained).
    overflow_heap: OverflowHeap,
    overflow_heap_life: u32,
    autorate: Autorate,
    stats: InstanceStats,
}

impl Cake {
    /// A new, empty instance. Allocates its tins (on the control path, never per packet).
    pub fn new(config: CakeConfig, setup: InstanceSetup) -> Cake {
        let flow_queues = (setup.flow_queues / 8).clamp(1, 8191) * 8;
        let mut cake = Cake {
            id: setup.id,
            config,
            flow_queues,
            hash_seed: setup.hash_seed,
            rng: setup.rng_seed | 1,
            tins: Vec::new(),
            time_per_byte: TimePerByte::default(),
            time_next_packet: 0,
            failsafe_next_packet: 0,
            wrr_tin: 0,
            buffer_used: 0,
            buffer_peak: 0,
            buffer_limit: 0,
            backlog_bytes: 0,
            backlog_packets: 0,
            overflow_heap: OverflowHeap::default(),
            overflow_heap_life: 0,
            autorate: Autorate::default(),
            stats: InstanceStats {
                min_network_len: u32::MAX,
                min_adjusted_len: u32::MAX,
                ..InstanceStats::default()
            },
        };
        cake.tins = (0..tin_count(config.tin_mode))
            .map(|_| Tin {
                params: TinParams::new(None, 0, 0, 0),
                next_time: 0,
                new_flows: FlowList::default(),
                old_flows: FlowList::default(),
                decaying_flows: FlowList::default(),
                sparse_flows: 0,
                bulk_flows: 0,
                decaying_count: 0,
                unresponsive_flows: 0,
                backlog_bytes: 0,
                backlog_packets: 0,
                wrr_deficit: 0,
                stats: TinStats::default(),
            })
            .collect();
        cake.apply_rates();
        cake
    }

    /// The configuration in force.
    pub fn config(&self) -> &CakeConfig {
        &self.config
    }

    /// The instance's id in its pool.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Applies a new configuration in place, keeping queued packets and flow state. A change
    /// of tin mode re-files queued packets by the new tins (their flows start afresh); any
    /// other change keeps every flow as it is.
    pub fn set_config<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        config: CakeConfig,
        now: u64,
        sink: &mut impl FnMut(P, DropReason),
    ) {
        if config.tin_mode == self.config.tin_mode {
            self.config = config;
            self.apply_rates();
            return;
        }
        // Take every queued packet out, rebuild the tins, and enqueue them again, flow by flow.
        // Re-filed packets are stamped anew: a tin-mode change is rare enough that the sojourn
        // they lose does not matter, and no packet is lost.
        let mut held: Vec<(P, PacketMeta)> = Vec::new();
        self.drain(pool, &mut |p, _| {
            let meta = meta_from_stamp(&p);
            held.push((p, meta));
        });
        let setup = InstanceSetup {
            id: self.id,
            flow_queues: self.flow_queues,
            hash_seed: self.hash_seed,
            rng_seed: self.rng,
        };
        let stats = self.stats;
        *self = Cake::new(config, setup);
        self.stats = stats;
        for (p, meta) in held {
            self.enqueue(pool, p, &meta, now, sink);
        }
    }

    fn apply_rates(&mut self) {
        let c = &self.config;
        self.time_per_byte = TimePerByte::at(c.bandwidth);
        let rates = tin_rates(c.tin_mode, c.bandwidth);
        let weights = tin_weights(c.tin_mode);
        for (i, tin) in self.tins.iter_mut().enumerate() {
            tin.params = TinParams::new(rates[i], weights[i], c.target_ns, c.interval_ns);
        }
        let mtu_limit = MAX_MEMLIMIT_MTUS * MTU_BYTES;
        self.buffer_limit = match (c.memlimit, c.bandwidth) {
            (Some(limit), _) => limit,
            (None, Some(rate)) => {
                let bdp4 =
                    (4 * u128::from(rate) * u128::from(c.interval_ns) / 1_000_000_000) as u64;
                bdp4.max(MIN_SHAPED_MEMLIMIT).min(mtu_limit)
            }
            (None, None) => mtu_limit,
        };
    }

    #[inline]
    fn random(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    fn hash(&self, words: &[u64]) -> u32 {
        let mut h = self.hash_seed ^ 0xcbf2_9ce4_8422_2325;
        for w in words {
            h = (h ^ w).wrapping_mul(0x0100_0000_01b3_0001);
            h ^= h >> 29;
        }
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as u32
    }

    fn address_words(addr: &[u8; 16]) -> [u64; 2] {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&addr[..8]);
        b.copy_from_slice(&addr[8..]);
        [u64::from_le_bytes(a), u64::from_le_bytes(b)]
    }

    /// Flow hash and host hashes for a packet, by isolation mode (spec 3).
    fn flow_hashes(&self, meta: &PacketMeta) -> (u32, u32, u32) {
        let [s0, s1] = Self::address_words(&meta.src);
        let [d0, d1] = Self::address_words(&meta.dst);
        let src_host = self.hash(&[s0, s1, 1]);
        let dst_host = self.hash(&[d0, d1, 2]);
        let ports = (u64::from(meta.src_port) << 16) | u64::from(meta.dst_port);
        let flow = match self.config.flow_mode {
            FlowMode::Flowblind => 0,
            FlowMode::Srchost => src_host,
            FlowMode::Dsthost => dst_host,
            FlowMode::Hosts => self.hash(&[s0, s1, d0, d1]),
            _ => self.hash(&[s0, s1, d0, d1, ports, u64::from(meta.protocol)]),
        };
        (flow, src_host, dst_host)
    }

    /// The internal tin for a packet: an operator mark if it selects one, else its DSCP.
    fn classify_tin(&self, meta: &PacketMeta) -> usize {
        let order = tin_order(self.config.tin_mode);
        if self.config.fwmark != 0 && meta.mark != 0 {
            let mask = self.config.fwmark;
            let mark = (u32::from(meta.mark) & mask) >> mask.trailing_zeros();
            if mark >= 1 && (mark as usize) <= order.len() {
                return order[mark as usize - 1];
            }
        }
        let dscp = match meta.network {
            NetworkKind::Ipv4 | NetworkKind::Ipv6 => meta.dscp,
            NetworkKind::Arp => DSCP_CS7,
            NetworkKind::Other => 0,
        };
        tin_for_dscp(self.config.tin_mode, dscp).min(self.tins.len() - 1)
    }

    /// The flow's DRR quantum, divided by its host load (spec 3), with dither.
    fn quantum<P: CakePacket>(&mut self, pool: &FlowPool<P>, tin: usize, flow: u32) -> i32 {
        let f = pool.flow(flow);
        let mode = self.config.flow_mode;
        let mut load = 1u32;
        if mode.src_host_fairness() && f.src_host != NONE {
            load = load.max(u32::from(pool.host(f.src_host).bulk_flows));
        }
        if mode.dst_host_fairness() && f.dst_host != NONE {
            load = load.max(u32::from(pool.host(f.dst_host).bulk_flows));
        }
        let load = load.clamp(1, u32::from(self.flow_queues));
        let dither = self.random() >> 16;
        let q = self.tins[tin].params.flow_quantum;
        ((q * (65_535 / load) + dither) >> 16) as i32
    }

    fn host_bulk<P: CakePacket>(&self, pool: &mut FlowPool<P>, flow: u32, up: bool) {
        let mode = self.config.flow_mode;
        let (src, dst) = {
            let f = pool.flow(flow);
            (f.src_host, f.dst_host)
        };
        for (enabled, host) in [
            (mode.src_host_fairness(), src),
            (mode.dst_host_fairness(), dst),
        ] {
            if enabled && host != NONE {
                let h = pool.host_mut(host);
                h.bulk_flows = if up {
                    h.bulk_flows.saturating_add(1).min(self.flow_queues)
                } else {
                    h.bulk_flows.saturating_sub(1)
                };
            }
        }
    }

    /// Where a packet with `meta` goes in this instance: its tin and its hashes.
    #[inline]
    pub fn placing(&self, meta: &PacketMeta) -> Placing {
        let (flow, src, dst) = self.flow_hashes(meta);
        Placing {
            instance: self.id,
            tin: self.classify_tin(meta),
            flow,
            src,
            dst,
        }
    }

    /// The memory [`Self::enqueue_placed`] of a packet placed at `placing` reads first beyond
    /// the instance itself (its tin, and the map blocks of its flow's and hosts' sets), as
    /// addresses and lengths handed to `touch`. A worker holding a burst asks the CPU to load
    /// these for every packet before enqueueing any, so their cache misses overlap instead of
    /// adding up.
    #[inline]
    pub fn enqueue_footprint<P: CakePacket>(
        &self,
        pool: &FlowPool<P>,
        placing: &Placing,
        mut touch: impl FnMut(*const u8, usize),
    ) {
        let t = placing.tin;
        if let Some(tin) = self.tins.get(t) {
            touch_value(tin, &mut touch);
        }
        let queues = self.flow_queues;
        let (p, len) = pool.set_footprint(self.id, t, None, placing.flow, queues);
        touch(p, len);
        if self.config.flow_mode.host_fairness() {
            for (dst, tag) in [(false, placing.src), (true, placing.dst)] {
                let (p, len) = pool.set_footprint(self.id, t, Some(dst), tag, queues);
                touch(p, len);
            }
        }
    }

    /// What enqueueing at `placing` reads once [`Self::enqueue_footprint`]'s lines have
    /// arrived: the state of its flow, when the flow is placed (its index is in the map block
    /// that step loaded).
    #[inline]
    pub fn flow_footprint<P: CakePacket>(
        &self,
        pool: &FlowPool<P>,
        placing: &Placing,
        mut touch: impl FnMut(*const u8, usize),
    ) {
        if let Some(flow) = self.placed_flow(pool, placing) {
            touch_value(flow, &mut touch);
        }
    }

    /// What enqueueing at `placing` reads once [`Self::flow_footprint`]'s lines have arrived:
    /// the stamp of the packet at its flow's tail, next to the link the enqueue writes.
    #[inline]
    pub fn tail_footprint<P: CakePacket>(
        &self,
        pool: &FlowPool<P>,
        placing: &Placing,
        mut touch: impl FnMut(*const u8, usize),
    ) {
        if let Some(tail) = self.placed_flow(pool, placing).and_then(|f| f.queue.back()) {
            touch_value(tail.stamp(), &mut touch);
        }
    }

    /// The flow a packet at `placing` joins, when it is already placed (a read-only lookup).
    fn placed_flow<'a, P: CakePacket>(
        &self,
        pool: &'a FlowPool<P>,
        placing: &Placing,
    ) -> Option<&'a Flow<P>> {
        pool.find_flow(self.id, placing.tin, placing.flow, self.flow_queues)
            .map(|(f, _)| pool.flow(f))
    }

    /// The first step of what [`Self::dequeue`] reads after the instance itself: the tins'
    /// backlogs, clocks and flow lists. With [`Self::head_flow_footprint`] and
    /// [`Self::head_packet_footprint`], each asked for once the step before has arrived, a
    /// worker about to serve many instances has their misses overlap.
    #[inline]
    pub fn tins_footprint(&self, mut touch: impl FnMut(*const u8, usize)) {
        for tin in &self.tins {
            touch_value(&tin.backlog_packets, &mut touch);
            touch_value(&tin.next_time, &mut touch);
            touch_value(&tin.new_flows, &mut touch);
            touch_value(&tin.old_flows, &mut touch);
        }
    }

    /// The state of the flow each backlogged tin would serve first.
    #[inline]
    pub fn head_flow_footprint<P: CakePacket>(
        &self,
        pool: &FlowPool<P>,
        mut touch: impl FnMut(*const u8, usize),
    ) {
        for f in self.head_flows() {
            touch_value(pool.flow(f), &mut touch);
        }
    }

    /// The stamp (and queue link) of the packet at the head of each of those flows.
    #[inline]
    pub fn head_packet_footprint<P: CakePacket>(
        &self,
        pool: &FlowPool<P>,
        mut touch: impl FnMut(*const u8, usize),
    ) {
        for f in self.head_flows() {
            if let Some(head) = pool.flow(f).queue.front() {
                touch_value(head.stamp(), &mut touch);
            }
        }
    }

    /// The stamp (and queue link) of the packet [`Self::drop_from_fattest`] would take next,
    /// as the overflow heap stands (only a hint: the heap is rebuilt after a quiet spell).
    #[inline]
    pub fn victim_footprint<P: CakePacket>(
        &self,
        pool: &FlowPool<P>,
        mut touch: impl FnMut(*const u8, usize),
    ) {
        let f = self.overflow_heap.root;
        if f != NONE {
            if let Some(head) = pool.flow(f).queue.front() {
                touch_value(head.stamp(), &mut touch);
            }
        }
    }

    /// The first flow of each backlogged tin's new list, else its old list.
    fn head_flows(&self) -> impl Iterator<Item = u32> + '_ {
        self.tins
            .iter()
            .filter(|tin| tin.backlog_packets > 0)
            .map(|tin| {
                if tin.new_flows.is_empty() {
                    tin.old_flows.head
                } else {
                    tin.new_flows.head
                }
            })
            .filter(|&f| f != NONE)
    }

    /// Queues a packet (spec 5.1). Packets dropped on the way (ACK filter, overflow, an
    /// exhausted flow pool) go to `sink`.
    pub fn enqueue<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        packet: P,
        meta: &PacketMeta,
        now: u64,
        sink: &mut impl FnMut(P, DropReason),
    ) {
        let placing = self.placing(meta);
        self.enqueue_placed(pool, packet, meta, placing, now, sink);
    }

    /// [`Self::enqueue`] of a packet whose [`Self::placing`] the caller already has (computed
    /// by this instance, with its configuration unchanged since).
    pub fn enqueue_placed<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        mut packet: P,
        meta: &PacketMeta,
        placing: Placing,
        now: u64,
        sink: &mut impl FnMut(P, DropReason),
    ) {
        debug_assert_eq!(placing.instance, self.id, "a placing of another instance");
        let t = placing.tin;
        {
            let stamp = packet.stamp_mut();
            stamp.tin_class = tin_class(self.config.tin_mode, t);
            stamp.marked = false;
        }
        let is_ip = matches!(meta.network, NetworkKind::Ipv4 | NetworkKind::Ipv6);
        if self.config.wash && is_ip && meta.dscp != 0 {
            wash_dscp(packet.data_mut(), meta.l3_offset, meta.network);
        }
        let Placing {
            flow: flow_hash,
            src: src_hash,
            dst: dst_hash,
            ..
        } = placing;
        let queues = self.flow_queues;
        let Some((f, placement)) = pool.place_flow(self.id, t, flow_hash, queues) else {
            self.stats.overflow_drops += 1;
            self.stats.drops += 1;
            self.tins[t].stats.drops += 1;
            sink(packet, DropReason::Overflow);
            return;
        };
        match placement {
            Placement::Hit => {}
            Placement::IndirectHit => self.tins[t].stats.way_indirect_hits += 1,
            Placement::Miss => self.tins[t].stats.way_misses += 1,
            Placement::Collision => self.tins[t].stats.way_collisions += 1,
        }
        let mode = self.config.flow_mode;
        if matches!(placement, Placement::Miss | Placement::Collision) && mode.host_fairness() {
            let was_bulk = pool.flow(f).state == FlowState::Bulk;
            if was_bulk {
                self.host_bulk(pool, f, false);
            }
            let (old_src, old_dst) = (pool.flow(f).src_host, pool.flow(f).dst_host);
            pool.release_host(old_src);
            pool.release_host(old_dst);
            let src = pool
                .place_host(self.id, t, false, src_hash, queues)
                .unwrap_or(NONE);
            let dst = pool
                .place_host(self.id, t, true, dst_hash, queues)
                .unwrap_or(NONE);
            let flow = pool.flow_mut(f);
            flow.src_host = src;
            flow.dst_host = dst;
            if was_bulk {
                self.host_bulk(pool, f, true);
            }
        }

        let len = packet.frame_len();
        let footprint = packet.footprint();
        if self.config.autorate_ingress {
            if let Some(rate) = self.autorate.on_arrival(len, now) {
                self.config.bandwidth = Some(rate.max(1));
                self.apply_rates();
            }
            self.stats.capacity_estimate = self.autorate.estimate();
        }
        let adjusted = adjusted_len(&self.config.overhead, len, meta.l3_offset);
        {
            let stamp = packet.stamp_mut();
            stamp.enqueued_at = now;
            stamp.adjusted_len = adjusted;
            stamp.frame_len = len;
            stamp.footprint = footprint;
            stamp.l3_offset = meta.l3_offset;
            stamp.l4_offset = meta.l4_offset;
            stamp.network = meta.network;
            stamp.protocol = meta.protocol;
            stamp.ecn = meta.ecn;
            stamp.dscp = meta.dscp;
            stamp.mark = meta.mark;
        }
        let network_len = len.saturating_sub(u32::from(meta.l3_offset));
        let s = &mut self.stats;
        s.min_network_len = s.min_network_len.min(network_len);
        s.max_network_len = s.max_network_len.max(network_len);
        s.min_adjusted_len = s.min_adjusted_len.min(adjusted);
        s.max_adjusted_len = s.max_adjusted_len.max(adjusted);
        s.avg_network_offset = ewma(
            u64::from(s.avg_network_offset),
            u64::from(meta.l3_offset),
            EWMA_SLOW,
        ) as u32;

        // No credit carries across idle periods (spec 4.4).
        if self.backlog_packets == 0 && self.time_next_packet < now {
            self.time_next_packet = now;
            self.failsafe_next_packet = now;
        }
        let tin = &mut self.tins[t];
        if tin.backlog_packets == 0 && tin.next_time < now {
            tin.next_time = now;
        }
        tin.backlog_bytes += u64::from(len);
        tin.backlog_packets += 1;
        tin.stats.packets += 1;
        tin.stats.bytes += u64::from(len);
        tin.stats.max_packet_len = tin.stats.max_packet_len.max(len);
        self.backlog_bytes += u64::from(len);
        self.backlog_packets += 1;
        self.buffer_used += u64::from(footprint);
        self.buffer_peak = self.buffer_peak.max(self.buffer_used);
        {
            let flow = pool.flow_mut(f);
            flow.queue.push_back(packet);
            flow.backlog += len;
            flow.packets += 1;
        }

        if self.config.ack_filter != AckFilter::Off && pool.flow(f).packets > 1 {
            self.filter_acks(pool, f, t, now, sink);
        }

        // Flow state (spec 4.2).
        let was_in_rotation = matches!(
            pool.flow(f).state,
            FlowState::Sparse | FlowState::SparseWait | FlowState::Bulk
        );
        match pool.flow(f).state {
            FlowState::Idle | FlowState::Decaying => {
                if pool.flow(f).state == FlowState::Decaying {
                    self.tins[t].decaying_flows.remove(pool, f);
                    self.tins[t].decaying_count -= 1;
                }
                self.tins[t].new_flows.push_back(pool, f, ListKind::New);
                self.tins[t].sparse_flows += 1;
                pool.flow_mut(f).state = FlowState::Sparse;
                let q = self.quantum(pool, t, f);
                pool.flow_mut(f).deficit = q;
            }
            FlowState::SparseWait => {
                pool.flow_mut(f).state = FlowState::Bulk;
                self.tins[t].sparse_flows -= 1;
                self.tins[t].bulk_flows += 1;
                self.host_bulk(pool, f, true);
            }
            FlowState::Sparse | FlowState::Bulk => {}
        }

        if self.overflow_heap_life > 0 {
            if was_in_rotation {
                pool.heap_update(&mut self.overflow_heap, f);
            } else {
                pool.heap_insert(&mut self.overflow_heap, f);
            }
        }

        while self.buffer_used > self.buffer_limit {
            if !self.drop_from_fattest(pool, now, sink) {
                break;
            }
        }
    }

    /// Removes at most one ACK made redundant by the one just appended to flow `f` (spec 5.2).
    fn filter_acks<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        f: u32,
        t: usize,
        now: u64,
        sink: &mut impl FnMut(P, DropReason),
    ) {
        let queue = &pool.flow(f).queue;
        let Some(trigger) = queue
            .iter()
            .last()
            .and_then(|p| TcpAck::parse(p.data(), p.stamp()))
            .filter(TcpAck::is_trigger)
        else {
            return;
        };
        let queued = pool.flow(f).packets as usize;
        let mut oldest = None;
        let mut found = 0;
        let mut just_before = false;
        for (i, p) in queue.iter().take(queued - 1).enumerate() {
            if TcpAck::parse(p.data(), p.stamp()).is_some_and(|c| c.made_redundant_by(&trigger)) {
                found += 1;
                oldest.get_or_insert(i);
                just_before = i == queued - 2;
            }
        }
        let victim = match (found, self.config.ack_filter) {
            (2.., _) => oldest,
            (1, AckFilter::Aggressive) if just_before => oldest,
            _ => None,
        };
        if let Some(i) = victim {
            if let Some(p) = pool.flow_mut(f).queue.remove(i) {
                self.account_removal(pool, f, t, &p);
                self.charge_ingress_drop(t, &p, now);
                self.tins[t].stats.ack_drops += 1;
                self.stats.ack_drops += 1;
                sink(p, DropReason::AckFilter);
            }
        }
    }

    /// Drops the head packet of the flow with the largest backlog in the whole instance (spec
    /// 5.4), running BLUE's overflow step on it. Returns false when nothing is queued. The
    /// worker also calls this when its own buffer budget runs out.
    pub fn drop_from_fattest<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        now: u64,
        sink: &mut impl FnMut(P, DropReason),
    ) -> bool {
        if self.overflow_heap_life == 0 {
            // The first overflow in a while: build the heap from the flows in rotation (the
            // only ones with packets).
            self.overflow_heap = OverflowHeap::default();
            for tin in &self.tins {
                for list in [tin.new_flows, tin.old_flows] {
                    let mut i = list.head;
                    while i != NONE {
                        let next = pool.flow(i).next;
                        pool.heap_insert(&mut self.overflow_heap, i);
                        i = next;
                    }
                }
            }
        }
        self.overflow_heap_life = OVERFLOW_HEAP_LIFETIME;
        let f = self.overflow_heap.root;
        if f == NONE || pool.flow(f).backlog == 0 {
            return false;
        }
        debug_assert_eq!(
            pool.flow(f).backlog,
            self.fattest_by_scan(pool),
            "the heap's root is the fattest flow"
        );
        let t = pool.flow(f).tin();
        let Some(packet) = pool.flow_mut(f).queue.pop_front() else {
            return false;
        };
        self.account_removal(pool, f, t, &packet);
        pool.heap_update(&mut self.overflow_heap, f);
        self.charge_ingress_drop(t, &packet, now);
        let params = self.cobalt_params(t);
        if pool.flow_mut(f).cobalt.overflowed(&params, now) {
            self.tins[t].unresponsive_flows += 1;
        }
        self.tins[t].stats.drops += 1;
        self.stats.drops += 1;
        self.stats.overflow_drops += 1;
        sink(packet, DropReason::Overflow);
        true
    }

    /// For tests: checks the overflow heap, while it is maintained, holds exactly the flows in
    /// rotation, in heap order.
    #[doc(hidden)]
    pub fn check_overflow_heap<P: CakePacket>(&self, pool: &FlowPool<P>) {
        if self.overflow_heap_life == 0 {
            return;
        }
        let mut in_heap = pool.heap_check(&self.overflow_heap);
        let mut in_rotation = Vec::new();
        for tin in &self.tins {
            for list in [tin.new_flows, tin.old_flows] {
                let mut i = list.head;
                while i != NONE {
                    in_rotation.push(i);
                    i = pool.flow(i).next;
                }
            }
        }
        in_heap.sort_unstable();
        in_rotation.sort_unstable();
        assert_eq!(
            in_heap, in_rotation,
            "the overflow heap holds the flows in rotation"
        );
    }

    /// The largest flow backlog, by looking at every flow: what the heap must agree with.
    fn fattest_by_scan<P: CakePacket>(&self, pool: &FlowPool<P>) -> u32 {
        let mut largest = 0;
        for tin in &self.tins {
            for list in [tin.new_flows, tin.old_flows] {
                let mut i = list.head;
                while i != NONE {
                    largest = largest.max(pool.flow(i).backlog);
                    i = pool.flow(i).next;
                }
            }
        }
        largest
    }

    /// In ingress mode a dropped packet has already crossed the bottleneck in front of us, so
    /// it still counts against the rate (spec 4.5): charged to the shaper, not the failsafe.
    fn charge_ingress_drop<P: CakePacket>(&mut self, t: usize, p: &P, now: u64) {
        if self.config.ingress {
            self.charge(t, p.stamp().adjusted_len, now, false);
        }
    }

    fn account_removal<P: CakePacket>(&mut self, pool: &mut FlowPool<P>, f: u32, t: usize, p: &P) {
        let PacketStamp {
            frame_len: len,
            footprint,
            ..
        } = *p.stamp();
        let flow = pool.flow_mut(f);
        flow.backlog -= len;
        flow.packets -= 1;
        let tin = &mut self.tins[t];
        tin.backlog_bytes -= u64::from(len);
        tin.backlog_packets -= 1;
        self.backlog_bytes -= u64::from(len);
        self.backlog_packets -= 1;
        self.buffer_used -= u64::from(footprint);
    }

    fn cobalt_params(&self, t: usize) -> CobaltParams {
        let p = &self.tins[t].params;
        CobaltParams {
            target: p.target,
            interval: p.interval,
            mtu_time: p.mtu_time,
        }
    }

    /// Picks the tin to serve (spec 4.1). Requires a backlog.
    fn choose_tin(&mut self, now: u64) -> usize {
        if self.config.bandwidth.is_none() {
            let n = self.tins.len();
            loop {
                let tin = &mut self.tins[self.wrr_tin];
                if tin.backlog_packets > 0 {
                    if tin.wrr_deficit > 0 {
                        return self.wrr_tin;
                    }
                    tin.wrr_deficit += i32::from(tin.params.weight);
                }
                self.wrr_tin = (self.wrr_tin + 1) % n;
            }
        }
        let mut earliest = (usize::MAX, u64::MAX);
        for (t, tin) in self.tins.iter().enumerate().rev() {
            if tin.backlog_packets == 0 {
                continue;
            }
            if tin.next_time <= now {
                return t;
            }
            if tin.next_time < earliest.1 {
                earliest = (t, tin.next_time);
            }
        }
        earliest.0
    }

    /// Takes the next packet the shaper allows (spec 4).
    pub fn dequeue<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        now: u64,
        sink: &mut impl FnMut(P, DropReason),
    ) -> Dequeued<P> {
        loop {
            if self.backlog_packets == 0 {
                return Dequeued::Empty;
            }
            if self.config.bandwidth.is_some()
                && self.time_next_packet > now
                && self.failsafe_next_packet > now
            {
                self.stats.overlimits += 1;
                return Dequeued::WaitUntil(self.time_next_packet.min(self.failsafe_next_packet));
            }
            let t = self.choose_tin(now);
            if let Some(packet) = self.dequeue_from_tin(pool, t, now, sink) {
                return Dequeued::Packet(packet);
            }
        }
    }

    /// DRR++ within one tin (spec 4.2 and 4.3). `None` when the tin had no packet to give
    /// after all, or (ingress) a packet was dropped and flow selection must start again.
    fn dequeue_from_tin<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        t: usize,
        now: u64,
        sink: &mut impl FnMut(P, DropReason),
    ) -> Option<P> {
        let params = self.cobalt_params(t);
        // Visit the oldest decaying flow once, so its AQM state relaxes toward rest.
        let head = self.tins[t].decaying_flows.head;
        if head != NONE {
            self.tins[t].decaying_flows.remove(pool, head);
            if pool.flow_mut(head).cobalt.relax(&params, now) {
                self.tins[t].unresponsive_flows -= 1;
            }
            if pool.flow(head).cobalt.is_active(now) {
                self.tins[t]
                    .decaying_flows
                    .push_back(pool, head, ListKind::Decaying);
            } else {
                self.tins[t].decaying_count -= 1;
                pool.free_flow(head);
            }
        }
        loop {
            let tin = &self.tins[t];
            let f = if !tin.new_flows.is_empty() {
                tin.new_flows.head
            } else if !tin.old_flows.is_empty() {
                tin.old_flows.head
            } else {
                return None;
            };
            let list = pool.flow(f).list;

            if pool.flow(f).deficit <= 0 {
                if pool.flow(f).state == FlowState::Sparse {
                    if pool.flow(f).packets > 0 {
                        pool.flow_mut(f).state = FlowState::Bulk;
                        self.tins[t].sparse_flows -= 1;
                        self.tins[t].bulk_flows += 1;
                        self.host_bulk(pool, f, true);
                    } else {
                        pool.flow_mut(f).state = FlowState::SparseWait;
                    }
                }
                let q = self.quantum(pool, t, f);
                pool.flow_mut(f).deficit += q;
                self.unlink(pool, t, f, list);
                self.tins[t].old_flows.push_back(pool, f, ListKind::Old);
                continue;
            }

            let Some(mut packet) = pool.flow_mut(f).queue.pop_front() else {
                self.retire_empty_flow(pool, t, f, list, now);
                continue;
            };
            self.account_removal(pool, f, t, &packet);
            if self.overflow_heap_life > 0 {
                self.overflow_heap_life -= 1;
                pool.heap_update(&mut self.overflow_heap, f);
            }
            let last = pool.flow(f).packets == 0;
            let sojourn = now.saturating_sub(packet.stamp().enqueued_at);
            let bulk = self.config.ingress.then_some(self.tins[t].bulk_flows);
            let ecn_capable = ecn_capable(&packet);
            let random = self.random();
            let verdict =
                pool.flow_mut(f)
                    .cobalt
                    .judge(&params, sojourn, now, bulk, ecn_capable, random);
            let adjusted = packet.stamp().adjusted_len;
            if verdict == Verdict::Drop && !last {
                self.tins[t].stats.drops += 1;
                self.stats.drops += 1;
                if self.config.ingress {
                    // The packet already crossed the bottleneck: charge it to the shaper (not
                    // the failsafe) and the flow, then choose again.
                    self.charge(t, adjusted, now, false);
                    pool.flow_mut(f).deficit -= adjusted as i32;
                    sink(packet, DropReason::Aqm);
                    return None;
                }
                sink(packet, DropReason::Aqm);
                continue;
            }
            if verdict == Verdict::Mark && set_ce(&mut packet) {
                packet.stamp_mut().marked = true;
                self.tins[t].stats.ecn_marks += 1;
                self.stats.ecn_marks += 1;
            }
            pool.flow_mut(f).deficit -= adjusted as i32;
            let unlimited = self.config.bandwidth.is_none();
            let tin = &mut self.tins[t];
            if unlimited {
                // The WRR between tins runs only when nothing is shaped (spec 4.1).
                tin.wrr_deficit -= adjusted as i32;
            }
            tin.stats.peak_delay = ewma(
                tin.stats.peak_delay,
                sojourn,
                if sojourn > tin.stats.peak_delay {
                    EWMA_FAST
                } else {
                    EWMA_SLOW
                },
            );
            tin.stats.avg_delay = ewma(tin.stats.avg_delay, sojourn, EWMA_SLOW);
            tin.stats.sparse_delay = ewma(
                tin.stats.sparse_delay,
                sojourn,
                if sojourn < tin.stats.sparse_delay {
                    EWMA_FAST
                } else {
                    EWMA_SLOW
                },
            );
            self.stats.sent_packets += 1;
            self.stats.sent_bytes += u64::from(packet.stamp().frame_len);
            self.charge(t, adjusted, now, true);
            return Some(packet);
        }
    }

    /// A flow of the new or old list was found empty: it leaves the rotation, to decay (its
    /// AQM state still active) or to rest (freed).
    fn retire_empty_flow<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        t: usize,
        f: u32,
        list: ListKind,
        now: u64,
    ) {
        let params = self.cobalt_params(t);
        if pool.flow_mut(f).cobalt.relax(&params, now) {
            self.tins[t].unresponsive_flows -= 1;
        }
        if self.overflow_heap_life > 0 {
            pool.heap_remove(&mut self.overflow_heap, f);
        }
        self.unlink(pool, t, f, list);
        match pool.flow(f).state {
            FlowState::Bulk => {
                self.tins[t].bulk_flows -= 1;
                self.host_bulk(pool, f, false);
            }
            FlowState::Sparse | FlowState::SparseWait => self.tins[t].sparse_flows -= 1,
            FlowState::Decaying | FlowState::Idle => {}
        }
        if pool.flow(f).cobalt.is_active(now) {
            pool.flow_mut(f).state = FlowState::Decaying;
            self.tins[t].decaying_count += 1;
            self.tins[t]
                .decaying_flows
                .push_back(pool, f, ListKind::Decaying);
        } else {
            pool.free_flow(f);
        }
    }

    fn unlink<P: CakePacket>(&mut self, pool: &mut FlowPool<P>, t: usize, f: u32, list: ListKind) {
        let tin = &mut self.tins[t];
        match list {
            ListKind::New => tin.new_flows.remove(pool, f),
            ListKind::Old => tin.old_flows.remove(pool, f),
            ListKind::Decaying => tin.decaying_flows.remove(pool, f),
        }
    }

    /// Advances the shaper clocks for a packet of `adjusted` bytes (spec 4.4).
    fn charge(&mut self, t: usize, adjusted: u32, now: u64, failsafe: bool) {
        if self.config.bandwidth.is_none() {
            return;
        }
        let d = self.time_per_byte.duration(adjusted);
        self.time_next_packet += d;
        if failsafe {
            self.failsafe_next_packet += d * 3 / 2;
        }
        let tin = &mut self.tins[t];
        let dt = tin.params.time_per_byte.duration(adjusted);
        if tin.next_time < now {
            tin.next_time += dt;
        } else if tin.next_time < now + dt {
            tin.next_time = now + dt;
        }
    }

    /// Gives flow entries back to the pool: when the instance is idle, its emptied flows leave
    /// the DRR rotation (as dequeue would when it next found them empty); then every decaying
    /// flow (empty, AQM not yet at rest) whose AQM state, brought forward to `now`
    /// ([`crate::cobalt::Cobalt::fast_forward`]), is at rest is freed. Returns how many flows
    /// the instance still holds in the pool (queued, in the rotation, or decaying).
    ///
    /// Why: flows are only visited by dequeue, which an idle instance never runs, so without
    /// this an idle subscriber keeps the flows it had when it went quiet (as the kernel does).
    /// Dequeue does not call it when the instance empties: most instances empty after every
    /// burst, and forgetting their flows each time would make every packet place a new flow
    /// (measured: 2 to 4 times the cost per packet). The worker calls it for instances that
    /// have stayed idle a while (a second, say): it frees the flows at rest (count 0, BLUE off:
    /// most of them) and returns how many are still held; those hold congestion state that
    /// decays within about 2 x interval x sqrt(count) (BLUE: 4096 x target from p = 1), so a
    /// later call frees them too. Safe at any time; never touches a queued packet.
    pub fn release_rested_flows<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        now: u64,
    ) -> usize {
        let mut held = 0;
        for t in 0..self.tins.len() {
            if self.backlog_packets == 0 {
                for list in [ListKind::New, ListKind::Old] {
                    loop {
                        let head = match list {
                            ListKind::New => self.tins[t].new_flows.head,
                            _ => self.tins[t].old_flows.head,
                        };
                        if head == NONE {
                            break;
                        }
                        self.retire_empty_flow(pool, t, head, list, now);
                    }
                }
            }
            let params = self.cobalt_params(t);
            let mut f = self.tins[t].decaying_flows.head;
            while f != NONE {
                let next = pool.flow(f).next;
                if pool.flow_mut(f).cobalt.fast_forward(&params, now) {
                    self.tins[t].unresponsive_flows -= 1;
                }
                if pool.flow(f).cobalt.is_at_rest() {
                    self.tins[t].decaying_flows.remove(pool, f);
                    self.tins[t].decaying_count -= 1;
                    pool.free_flow(f);
                } else {
                    held += 1;
                }
                f = next;
            }
            let tin = &self.tins[t];
            held += (tin.sparse_flows + tin.bulk_flows) as usize;
        }
        held
    }

    /// Removes every queued packet (subscriber removed), handing them to `sink`, and frees all
    /// flow state.
    pub fn drain<P: CakePacket>(
        &mut self,
        pool: &mut FlowPool<P>,
        sink: &mut impl FnMut(P, DropReason),
    ) {
        for t in 0..self.tins.len() {
            for kind in [ListKind::New, ListKind::Old, ListKind::Decaying] {
                loop {
                    let tin = &self.tins[t];
                    let head = match kind {
                        ListKind::New => tin.new_flows.head,
                        ListKind::Old => tin.old_flows.head,
                        ListKind::Decaying => tin.decaying_flows.head,
                    };
                    if head == NONE {
                        break;
                    }
                    while let Some(p) = pool.flow_mut(head).queue.pop_front() {
                        self.account_removal(pool, head, t, &p);
                        sink(p, DropReason::Flushed);
                    }
                    if pool.flow(head).state == FlowState::Bulk {
                        self.host_bulk(pool, head, false);
                    }
                    self.unlink(pool, t, head, kind);
                    pool.free_flow(head);
                }
            }
            self.overflow_heap = OverflowHeap::default();
            self.overflow_heap_life = 0;
            let tin = &mut self.tins[t];
            tin.sparse_flows = 0;
            tin.bulk_flows = 0;
            tin.decaying_count = 0;
            tin.unresponsive_flows = 0;
        }
    }

    /// Heap bytes the instance owns besides its own struct (its tins).
    pub fn heap_bytes(&self) -> usize {
        self.tins.capacity() * core::mem::size_of::<Tin>()
    }

    /// Bytes queued (frame lengths).
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog_bytes
    }

    /// Packets queued.
    pub fn backlog_packets(&self) -> u32 {
        self.backlog_packets
    }

    /// Memory counted against the limit: now, peak, and the limit.
    pub fn memory(&self) -> (u64, u64, u64) {
        (self.buffer_used, self.buffer_peak, self.buffer_limit)
    }

    /// Instance statistics.
    pub fn stats(&self) -> InstanceStats {
        self.stats
    }

    /// Every active flow (queued, or decaying), tin by tin.
    pub fn flow_reports<'a, P: CakePacket>(
        &'a self,
        pool: &'a FlowPool<P>,
    ) -> impl Iterator<Item = FlowReport> + 'a {
        self.tins.iter().enumerate().flat_map(move |(t, tin)| {
            [tin.new_flows, tin.old_flows, tin.decaying_flows]
                .into_iter()
                .flat_map(move |list| {
                    let mut next = list.head;
                    std::iter::from_fn(move || {
                        if next == NONE {
                            return None;
                        }
                        let f = pool.flow(next);
                        next = f.next;
                        Some(FlowReport {
                            tin: t,
                            slot: f.slot,
                            state: f.state,
                            deficit: f.deficit,
                            count: f.cobalt.count,
                            dropping: f.cobalt.dropping,
                            drop_next: f.cobalt.drop_next,
                            p_drop: f.cobalt.p_drop,
                            blue_timer: f.cobalt.blue_timer,
                            packets: f.packets,
                            backlog: f.backlog,
                        })
                    })
                })
        })
    }

    /// Per-tin statistics, in tin order (Bulk first in diffserv3/4).
    pub fn tin_reports(&self) -> impl Iterator<Item = TinReport> + '_ {
        tin_order(self.config.tin_mode).iter().map(move |&i| {
            let tin = &self.tins[i];
            TinReport {
                index: i,
                rate: tin.params.rate.map(core::num::NonZeroU64::get),
                target: tin.params.target,
                interval: tin.params.interval,
                flow_quantum: tin.params.flow_quantum,
                backlog_bytes: tin.backlog_bytes,
                backlog_packets: tin.backlog_packets,
                sparse_flows: tin.sparse_flows + tin.decaying_count,
                bulk_flows: tin.bulk_flows,
                unresponsive_flows: tin.unresponsive_flows,
                stats: tin.stats,
            }
        })
    }
}

/// Rebuilds the metadata CAKE needs to re-file a queued packet (tin-mode change): the stamp
/// keeps the classification inputs (DSCP before any wash, mark, protocol, offsets); addresses
/// and ports are read back from the frame at the offsets the dataplane's parser gave.
fn meta_from_stamp<P: CakePacket>(p: &P) -> PacketMeta {
    let stamp = p.stamp();
    let data = p.data();
    let l3 = usize::from(stamp.l3_offset);
    let mut meta = PacketMeta {
        l3_offset: stamp.l3_offset,
        network: stamp.network,
        dscp: stamp.dscp,
        protocol: stamp.protocol,
        mark: stamp.mark,
        ..PacketMeta::default()
    };
    match stamp.network {
        NetworkKind::Ipv4 => {
            if let Some(ip) = data.get(l3..l3 + 20) {
                meta.ecn = ip[1] & 3;
                meta.src[..4].copy_from_slice(&ip[12..16]);
                meta.dst[..4].copy_from_slice(&ip[16..20]);
            }
        }
        NetworkKind::Ipv6 => {
            if let Some(ip) = data.get(l3..l3 + 40) {
                meta.ecn = (ip[1] >> 4) & 3;
                meta.src.copy_from_slice(&ip[8..24]);
                meta.dst.copy_from_slice(&ip[24..40]);
            }
        }
        NetworkKind::Arp | NetworkKind::Other => {}
    }
    let l4 = usize::from(stamp.l4_offset);
    if let Some(ports) = data.get(l4..l4 + 4).filter(|_| l4 != 0) {
        meta.l4_offset = stamp.l4_offset;
        meta.src_port = u16::from_be_bytes([ports[0], ports[1]]);
        meta.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    }
    meta
}

#[inline]
fn ewma(avg: u64, sample: u64, shift: u32) -> u64 {
    avg - (avg >> shift) + (sample >> shift)
}

/// Hands `touch` the address and size of `value`: what a footprint reports.
#[inline]
fn touch_value<T>(value: &T, touch: &mut impl FnMut(*const u8, usize)) {
    touch((value as *const T).cast(), core::mem::size_of::<T>());
}

/// True when the packet's ECN field is ECT(0), ECT(1) or CE.
fn ecn_capable<P: CakePacket>(p: &P) -> bool {
    // From the stamp, not the frame: a frame that waited is cold, and only a mark (made after
    // this test) needs its bytes.
    let stamp = p.stamp();
    matches!(stamp.network, NetworkKind::Ipv4 | NetworkKind::Ipv6) && stamp.ecn != 0
}

/// Sets ECN CE in place (fixing the IPv4 header checksum). False if the packet is too short.
fn set_ce<P: CakePacket>(p: &mut P) -> bool {
    let (l3, network) = (usize::from(p.stamp().l3_offset), p.stamp().network);
    let data = p.data_mut();
    match network {
        NetworkKind::Ipv4 if data.len() >= l3 + 20 => {
            let old = u16::from_be_bytes([data[l3], data[l3 + 1]]);
            data[l3 + 1] |= 3;
            let new = u16::from_be_bytes([data[l3], data[l3 + 1]]);
            fix_checksum(&mut data[l3 + 10..l3 + 12], old, new);
            true
        }
        NetworkKind::Ipv6 if data.len() >= l3 + 2 => {
            data[l3 + 1] |= 0x30;
            true
        }
        _ => false,
    }
}

/// Clears DSCP, keeping ECN (spec 2, `wash`).
fn wash_dscp(data: &mut [u8], l3_offset: u16, network: NetworkKind) {
    let l3 = usize::from(l3_offset);
    match network {
        NetworkKind::Ipv4 if data.len() >= l3 + 20 => {
            let old = u16::from_be_bytes([data[l3], data[l3 + 1]]);
            data[l3 + 1] &= 3;
            let new = u16::from_be_bytes([data[l3], data[l3 + 1]]);
            fix_checksum(&mut data[l3 + 10..l3 + 12], old, new);
        }
        NetworkKind::Ipv6 if data.len() >= l3 + 2 => {
            data[l3] &= 0xf0;
            data[l3 + 1] &= 0x3f;
        }
        _ => {}
    }
}

/// RFC 1624 incremental update of a 16-bit checksum field for one changed word.
fn fix_checksum(field: &mut [u8], old: u16, new: u16) {
    let hc = u16::from_be_bytes([field[0], field[1]]);
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    field.copy_from_slice(&(!(sum as u16)).to_be_bytes());
}
