//! Flow and host state, shared by all the instances of one worker (spec 3).
//!
//! The kernel gives every CAKE instance 8 tins x 1024 flow queues up front (about 0.85 MB).
//! A worker here owns up to a million instances, almost all idle, so flow state lives in one
//! pool per worker and an instance holds a flow only while the flow is active (queued, or
//! decaying). The set-associative table of spec 3 is kept as a map from (instance, tin, slot)
//! to pool entry: the placement rules, and the way hits, misses and collisions they produce,
//! are the kernel's, but empty slots cost nothing.
//!
//! Choice (the spec allows another count per instance): the number of flow queues per tin is
//! an instance parameter (default 1024, 8-way). Choice: when a flow goes idle its entry is
//! freed and its tag forgotten, so a flow returning after idling counts as a way miss where
//! the kernel, which keeps stale tags, may count an indirect hit. Placement is otherwise
//! identical.
//!
//! The pool also carries each instance's overflow heap (spec 5.4): parent and child links in
//! the flow entries, so an instance holds only its root and size (see [`OverflowHeap`]).
//!
//! Sizing: an active flow costs one flow entry, up to two host entries and three slot-map
//! cells ([`FlowPool::bytes_per_flow`]). A worker's pool must cover the flows of its busy
//! instances plus the ones decaying for about an interval after they empty; when it runs
//! out, the packet that needed a new flow is dropped (as an overflow), never another
//! instance's state.
//!
//! Nothing here allocates after construction: the pool, its free lists and the map are sized
//! once, for the worker's flow budget.

use crate::cobalt::Cobalt;
use crate::packet::{CakePacket, PacketQueue};

/// Ways per set of the set-associative flow and host tables.
pub const WAYS: u16 = 8;

/// No entry.
pub const NONE: u32 = u32::MAX;

/// Where a flow is in DRR++ (spec 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Placed but in no list yet (a fresh entry; idle flows are freed).
    Idle,
    /// In the new list: one quantum of service ahead of bulk flows.
    Sparse,
    /// Empty, moved to the old list for deficit accounting, still counted as sparse.
    SparseWait,
    /// In the old list.
    Bulk,
    /// Empty, AQM state not yet at rest.
    Decaying,
}

/// Which list of its tin a flow is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// New (sparse) flows.
    New,
    /// Old (bulk) flows.
    Old,
    /// Decaying flows.
    Decaying,
}

/// One active flow.
pub struct Flow<P: CakePacket> {
    /// Its packets.
    pub queue: P::Queue,
    /// Bytes queued (frame lengths).
    pub backlog: u32,
    /// Packets queued.
    pub packets: u32,
    /// DRR deficit, bytes.
    pub deficit: i32,
    /// The AQM.
    pub cobalt: Cobalt,
    /// DRR++ state.
    pub state: FlowState,
    /// Its list.
    pub list: ListKind,
    /// Next and previous flow in the same list.
    pub next: u32,
    pub prev: u32,
    /// Slot in the set-associative table.
    pub slot: u16,
    /// Source and destination host entries (NONE when host fairness is off).
    pub src_host: u32,
    pub dst_host: u32,
    /// Key under which the slot map holds this flow.
    pub key: u64,
    /// Links of the instance's overflow heap (see [`OverflowHeap`]); meaningful only while
    /// the heap is maintained.
    heap_parent: u32,
    heap_left: u32,
    heap_right: u32,
}

impl<P: CakePacket> Flow<P> {
    /// The internal index of the tin the flow belongs to.
    #[inline]
    pub fn tin(&self) -> usize {
        ((self.key >> TIN_SHIFT) & TIN_MASK) as usize
    }
}

/// One host slot: how many bulk flows it has, per direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    /// Bulk flows with this host as their source (or destination: each kind has its own map).
    pub bulk_flows: u16,
    /// Flows pointing at this entry; freed at 0.
    pub refs: u16,
    /// Key under which the slot map holds this host.
    pub key: u64,
}

/// What the placement found (spec 3 steps 1 to 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Step 1: the flow's own slot.
    Hit,
    /// Step 2: the flow's tag at another way of the set.
    IndirectHit,
    /// Step 3: an inactive way, newly taken.
    Miss,
    /// Step 4: the set is full; the flow at the original slot was taken over.
    Collision,
}

/// One cell of the slot map: a key, the pool index it maps to, and that flow's or host's tag.
/// The tag sits here rather than in the pool entry so that placing a flow reads the map alone:
/// a way miss costs no pool entry, and a set's eight ways are one block of the map.
#[derive(Clone, Copy)]
struct Cell {
    key: u64,
    value: u32,
    tag: u32,
}

const EMPTY: Cell = Cell {
    key: EMPTY_KEY,
    value: NONE,
    tag: 0,
};

/// The ways of one set, side by side on two cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(128))]
struct Block([Cell; WAYS as usize]);

/// How many low bits of a key are its way within the set (slots of a set are `base..base +
/// WAYS` with `base` a multiple of `WAYS`).
const WAY_BITS: u32 = WAYS.trailing_zeros();
const _: () = assert!(1 << WAY_BITS == WAYS, "WAYS must be a power of two");

/// A fixed-capacity open-addressing map from u64 keys to pool indices (linear probing,
/// backward-shift deletion: no tombstones, so lookups stay short however long it runs).
///
/// A key's home cell keeps its way bits and hashes the rest: the ways of one set start out
/// in the same block, so the up to eight lookups of a placement touch one block (two cache
/// lines) where independent homes would touch eight lines, and one prefetch of the block
/// covers a placement (see [`FlowPool::set_footprint`]).
struct SlotMap {
    blocks: Vec<Block>,
    mask: usize,
    len: usize,
}

const EMPTY_KEY: u64 = u64::MAX;

impl SlotMap {
    fn with_capacity(entries: usize) -> SlotMap {
        // At most half full: probes stay short.
        let size = (entries * 2).next_power_of_two().max(2 * WAYS as usize);
        SlotMap {
            blocks: vec![Block([EMPTY; WAYS as usize]); size / WAYS as usize],
            mask: size - 1,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        let set = (key >> WAY_BITS).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let way = key & (u64::from(WAYS) - 1);
        ((set << WAY_BITS) | way) as usize & self.mask
    }

    #[inline]
    fn cell(&self, i: usize) -> &Cell {
        &self.blocks[i >> WAY_BITS].0[i & (WAYS as usize - 1)]
    }

    #[inline]
    fn cell_mut(&mut self, i: usize) -> &mut Cell {
        &mut self.blocks[i >> WAY_BITS].0[i & (WAYS as usize - 1)]
    }

    /// The cell holding `key`, or the empty cell where it would go.
    #[inline]
    fn probe(&self, key: u64) -> usize {
        let mut i = self.home(key);
        loop {
            let k = self.cell(i).key;
            if k == key || k == EMPTY_KEY {
                return i;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The pool index and tag under `key`.
    #[inline]
    fn get(&self, key: u64) -> Option<(u32, u32)> {
        let cell = self.cell(self.probe(key));
        (cell.key == key).then_some((cell.value, cell.tag))
    }

    fn insert(&mut self, key: u64, value: u32, tag: u32) {
        debug_assert!(self.len < self.mask / 2 + 2);
        let i = self.probe(key);
        let cell = self.cell_mut(i);
        let new = cell.key == EMPTY_KEY;
        *cell = Cell { key, value, tag };
        self.len += usize::from(new);
    }

    /// Gives the entry under `key` (which must be present) a new tag.
    fn retag(&mut self, key: u64, tag: u32) {
        let i = self.probe(key);
        debug_assert_eq!(self.cell(i).key, key);
        self.cell_mut(i).tag = tag;
    }

    fn remove(&mut self, key: u64) {
        let i = self.probe(key);
        if self.cell(i).key == EMPTY_KEY {
            return;
        }
        self.len -= 1;
        // Backward shift: pull later entries of the probe run into the hole.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        while self.cell(j).key != EMPTY_KEY {
            let home = self.home(self.cell(j).key);
            let dist_j = j.wrapping_sub(home) & self.mask;
            let dist_hole = hole.wrapping_sub(home) & self.mask;
            if dist_hole < dist_j || home == hole {
                *self.cell_mut(hole) = *self.cell(j);
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        *self.cell_mut(hole) = EMPTY;
    }
}

/// Kinds of entries in the slot map.
const KIND_FLOW: u64 = 0;
const KIND_SRC_HOST: u64 = 1;
const KIND_DST_HOST: u64 = 2;

/// Where the tin sits in a slot-map key: instance (32 bits), kind (4), tin (12), slot (16).
const TIN_SHIFT: u32 = 16;
const TIN_MASK: u64 = 0xfff;

#[inline]
fn key(instance: u32, kind: u64, tin: usize, slot: u16) -> u64 {
    (u64::from(instance) << 32) | (kind << 28) | ((tin as u64) << TIN_SHIFT) | u64::from(slot)
}

/// The kind of a host entry: the source-host or the destination-host table.
#[inline]
fn host_kind(dst: bool) -> u64 {
    if dst {
        KIND_DST_HOST
    } else {
        KIND_SRC_HOST
    }
}

/// The slot a hash starts at among `queues`, and the first slot of its set.
#[inline]
fn start_slot(tag: u32, queues: u16) -> (u16, u16) {
    let start = (tag % u32::from(queues)) as u16;
    (start, start - start % WAYS)
}

/// The flow and host state of one worker's instances.
pub struct FlowPool<P: CakePacket> {
    flows: Vec<Flow<P>>,
    free_flows: Vec<u32>,
    hosts: Vec<Host>,
    free_hosts: Vec<u32>,
    map: SlotMap,
}

impl<P: CakePacket> FlowPool<P> {
    /// A pool for at most `flows` active flows (and as many host entries of each kind).
    pub fn new(flows: usize) -> Self {
        Self::with_queues(flows, P::Queue::default)
    }

    /// A pool whose flow queues are built by `queue` (to pre-size queues that can grow).
    pub fn with_queues(flows: usize, queue: impl Fn() -> P::Queue) -> Self {
        let flows = flows.clamp(1, NONE as usize - 1);
        FlowPool {
            flows: (0..flows)
                .map(|_| Flow {
                    queue: queue(),
                    backlog: 0,
                    packets: 0,
                    deficit: 0,
                    cobalt: Cobalt::default(),
                    state: FlowState::Idle,
                    list: ListKind::New,
                    next: NONE,
                    prev: NONE,
                    slot: 0,
                    src_host: NONE,
                    dst_host: NONE,
                    key: 0,
                    heap_parent: NONE,
                    heap_left: NONE,
                    heap_right: NONE,
                })
                .collect(),
            free_flows: (0..flows as u32).rev().collect(),
            hosts: vec![Host::default(); 2 * flows],
            free_hosts: (0..2 * flows as u32).rev().collect(),
            map: SlotMap::with_capacity(3 * flows),
        }
    }

    /// Active flows the pool can hold.
    pub fn capacity(&self) -> usize {
        self.flows.len()
    }

    /// Active flows now.
    pub fn in_use(&self) -> usize {
        self.flows.len() - self.free_flows.len()
    }

    /// Bytes the pool occupies per flow it can hold (flow, two host entries, map share).
    pub fn bytes_per_flow() -> usize {
        core::mem::size_of::<Flow<P>>()
            + 2 * core::mem::size_of::<Host>()
            + 3 * 2 * core::mem::size_of::<Cell>()
    }

    /// The flow at `index`.
    #[inline]
    pub fn flow(&self, index: u32) -> &Flow<P> {
        &self.flows[index as usize]
    }

    /// The flow at `index`, writable.
    #[inline]
    pub fn flow_mut(&mut self, index: u32) -> &mut Flow<P> {
        &mut self.flows[index as usize]
    }

    /// The host entry at `index`.
    #[inline]
    pub fn host(&self, index: u32) -> &Host {
        &self.hosts[index as usize]
    }

    /// The host entry at `index`, writable.
    #[inline]
    pub fn host_mut(&mut self, index: u32) -> &mut Host {
        &mut self.hosts[index as usize]
    }

    /// The map block where [`Self::place_flow`] (`host`: `None`) or [`Self::place_host`]
    /// (`Some(dst)`) will look for `tag` first, as an address and a length (see
    /// [`crate::Cake::enqueue_footprint`]).
    #[inline]
    pub fn set_footprint(
        &self,
        instance: u32,
        tin: usize,
        host: Option<bool>,
        tag: u32,
        queues: u16,
    ) -> (*const u8, usize) {
        let kind = host.map_or(KIND_FLOW, host_kind);
        let (start, _) = start_slot(tag, queues);
        let home = self.map.home(key(instance, kind, tin, start));
        let block: *const Block = &self.map.blocks[home >> WAY_BITS];
        (block.cast(), core::mem::size_of::<Block>())
    }

    /// The flow with hash `tag` of `instance`'s tin among `queues` slots, when the set holds
    /// it (spec 3 steps 1 and 2: a hit at the start slot or in another way). Changes nothing.
    pub fn find_flow(
        &self,
        instance: u32,
        tin: usize,
        tag: u32,
        queues: u16,
    ) -> Option<(u32, Placement)> {
        let (start, set_base) = start_slot(tag, queues);
        (0..WAYS).find_map(|k| {
            let slot = set_base + (start - set_base + k) % WAYS;
            match self.map.get(key(instance, KIND_FLOW, tin, slot)) {
                Some((idx, t)) if t == tag => Some((
                    idx,
                    if k == 0 {
                        Placement::Hit
                    } else {
                        Placement::IndirectHit
                    },
                )),
                _ => None,
            }
        })
    }

    /// Finds or places the flow with hash `tag` of `instance`'s tin among `queues` slots
    /// (spec 3 steps 1 to 4). Returns the flow index and what happened, or `None` when the
    /// pool is exhausted (the caller then drops the packet).
    pub fn place_flow(
        &mut self,
        instance: u32,
        tin: usize,
        tag: u32,
        queues: u16,
    ) -> Option<(u32, Placement)> {
        if let Some(found) = self.find_flow(instance, tin, tag, queues) {
            return Some(found);
        }
        let (start, set_base) = start_slot(tag, queues);
        let start_key = key(instance, KIND_FLOW, tin, start);
        let at_start = self.map.get(start_key);
        let first_free = (0..WAYS)
            .map(|k| set_base + (start - set_base + k) % WAYS)
            .find(|&slot| self.map.get(key(instance, KIND_FLOW, tin, slot)).is_none());
        match (first_free, at_start) {
            (Some(slot), _) => {
                let idx = self.free_flows.pop()?;
                let k = key(instance, KIND_FLOW, tin, slot);
                self.map.insert(k, idx, tag);
                let f = &mut self.flows[idx as usize];
                f.slot = slot;
                f.key = k;
                f.backlog = 0;
                f.packets = 0;
                f.deficit = 0;
                f.cobalt = Cobalt::default();
                f.state = FlowState::Idle;
                f.next = NONE;
                f.prev = NONE;
                f.src_host = NONE;
                f.dst_host = NONE;
                Some((idx, Placement::Miss))
            }
            // Every way busy (so the start slot holds a flow): that flow is taken over.
            (None, at_start) => {
                let (idx, _) = at_start?;
                self.map.retag(start_key, tag);
                Some((idx, Placement::Collision))
            }
        }
    }

    /// Finds or takes the host entry with hash `tag` (spec 3 step 5): the tag in the set, else
    /// the first way with no bulk flows, else the start way. `dst` picks the destination-host
    /// table. Returns `None` when the pool is exhausted.
    pub fn place_host(
        &mut self,
        instance: u32,
        tin: usize,
        dst: bool,
        tag: u32,
        queues: u16,
    ) -> Option<u32> {
        let kind = host_kind(dst);
        let (start, set_base) = start_slot(tag, queues);
        let mut first_idle: Option<(u16, u32)> = None;
        for k in 0..WAYS {
            let slot = set_base + (start - set_base + k) % WAYS;
            match self.map.get(key(instance, kind, tin, slot)) {
                None => {
                    first_idle.get_or_insert((slot, NONE));
                }
                Some((idx, t)) if t == tag => {
                    self.hosts[idx as usize].refs += 1;
                    return Some(idx);
                }
                Some((idx, _)) => {
                    if self.hosts[idx as usize].bulk_flows == 0 {
                        first_idle.get_or_insert((slot, idx));
                    }
                }
            }
        }
        let (slot, idx) = match first_idle {
            Some(found) => found,
            None => (
                start,
                self.map
                    .get(key(instance, kind, tin, start))
                    .map_or(NONE, |(idx, _)| idx),
            ),
        };
        let k = key(instance, kind, tin, slot);
        let idx = if idx == NONE {
            let idx = self.free_hosts.pop()?;
            self.map.insert(k, idx, tag);
            self.hosts[idx as usize] = Host {
                bulk_flows: 0,
                refs: 0,
                key: k,
            };
            idx
        } else {
            self.map.retag(k, tag);
            idx
        };
        self.hosts[idx as usize].refs += 1;
        Some(idx)
    }

    /// Drops one reference to a host entry, freeing it at zero.
    pub fn release_host(&mut self, index: u32) {
        if index == NONE {
            return;
        }
        let host = &mut self.hosts[index as usize];
        host.refs = host.refs.saturating_sub(1);
        if host.refs == 0 {
            let k = host.key;
            self.map.remove(k);
            self.free_hosts.push(index);
        }
    }

    /// Frees an idle flow: its slot, its host references, its entry.
    pub fn free_flow(&mut self, index: u32) {
        let f = &mut self.flows[index as usize];
        debug_assert!(f.queue.is_empty());
        let (k, src, dst) = (f.key, f.src_host, f.dst_host);
        f.src_host = NONE;
        f.dst_host = NONE;
        self.map.remove(k);
        self.release_host(src);
        self.release_host(dst);
        self.free_flows.push(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::TestPacket;

    #[test]
    fn slot_map_survives_random_inserts_and_removes() {
        let mut map = SlotMap::with_capacity(64);
        let mut reference = std::collections::HashMap::new();
        let mut x = 0x1234_5678_9abc_def0_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 200;
            if x.is_multiple_of(3) || reference.len() >= 60 {
                map.remove(k);
                reference.remove(&k);
            } else {
                let (value, tag) = ((x >> 32) as u32, x as u32);
                map.insert(k, value, tag);
                reference.insert(k, (value, tag));
            }
            for probe in 0..200 {
                assert_eq!(map.get(probe), reference.get(&probe).copied());
            }
            assert_eq!(map.len, reference.len());
        }
    }

    #[test]
    fn placement_counts_hits_misses_and_collisions_like_spec_3() {
        let mut pool: FlowPool<TestPacket> = FlowPool::new(64);
        // Tags 5, 13, 21, ... all start at slot 5 of 8 queues (one set).
        let (a, p) = pool.place_flow(1, 0, 5, 8).unwrap();
        assert_eq!(p, Placement::Miss);
        assert_eq!(pool.flow(a).slot, 5);
        assert_eq!(pool.place_flow(1, 0, 5, 8).unwrap(), (a, Placement::Hit));
        let (b, p) = pool.place_flow(1, 0, 13, 8).unwrap();
        assert_eq!(p, Placement::Miss);
        assert_eq!(pool.flow(b).slot, 6, "next way after the start, in order");
        assert_eq!(
            pool.place_flow(1, 0, 13, 8).unwrap(),
            (b, Placement::IndirectHit)
        );
        for i in 2..8 {
            let (_, p) = pool.place_flow(1, 0, 5 + 8 * i, 8).unwrap();
            assert_eq!(p, Placement::Miss);
        }
        // The set is full: the flow at the start slot (a) is taken over.
        assert_eq!(
            pool.place_flow(1, 0, 5 + 8 * 9, 8).unwrap(),
            (a, Placement::Collision)
        );
        // The new tag owns the slot now; the old one is gone from the set.
        assert_eq!(
            pool.place_flow(1, 0, 5 + 8 * 9, 8).unwrap(),
            (a, Placement::Hit)
        );
        assert_eq!(
            pool.place_flow(1, 0, 5, 8).unwrap(),
            (a, Placement::Collision)
        );
        // Another instance or tin has its own table.
        assert_eq!(pool.place_flow(2, 0, 5, 8).unwrap().1, Placement::Miss);
        assert_eq!(pool.place_flow(1, 1, 5, 8).unwrap().1, Placement::Miss);
    }

    #[test]
    fn the_ways_of_a_set_share_one_block_of_the_map() {
        // What lets one prefetch cover a placement: every way's home is in the block of the
        // set's first way, for any instance, kind, tin and set.
        let map = SlotMap::with_capacity(1 << 16);
        for (instance, kind, tin, set) in [(0, KIND_FLOW, 0, 0), (7, KIND_SRC_HOST, 3, 5)]
            .into_iter()
            .chain((0..500u32).map(|i| {
                (
                    i.wrapping_mul(2_654_435_761),
                    KIND_DST_HOST,
                    2,
                    (i % 128) as u16,
                )
            }))
        {
            let block = |way: u16| map.home(key(instance, kind, tin, set * WAYS + way)) >> WAY_BITS;
            let homes: Vec<usize> = (0..WAYS).map(block).collect();
            assert!(homes.iter().all(|&b| b == homes[0]), "{homes:?}");
        }
    }

    #[test]
    fn a_host_entry_taken_over_answers_to_its_new_tag_only() {
        let mut pool: FlowPool<TestPacket> = FlowPool::new(64);
        // Tags 3 and 11 both start at slot 3 of 8 queues. Host 3 has no bulk flows, so host 11
        // takes its way over (spec 3 step 5: the first way with no bulk flows).
        let e = pool.place_host(1, 0, true, 3, 8).unwrap();
        assert_eq!(pool.place_host(1, 0, true, 11, 8), Some(e));
        assert_eq!(pool.host(e).refs, 2);
        pool.host_mut(e).bulk_flows = 1;
        // Tag 11 finds its entry again by tag, busy or not.
        assert_eq!(pool.place_host(1, 0, true, 11, 8), Some(e));
        // Tag 3 no longer does: its old way is busy under tag 11, so it gets the next way.
        let other = pool.place_host(1, 0, true, 3, 8).unwrap();
        assert_ne!(other, e);
        assert_eq!(pool.host(other).refs, 1);
    }

    #[test]
    fn freed_flows_and_hosts_return_to_the_pool() {
        let mut pool: FlowPool<TestPacket> = FlowPool::new(4);
        let (f, _) = pool.place_flow(1, 0, 77, 1024).unwrap();
        let h = pool.place_host(1, 0, false, 9, 1024).unwrap();
        pool.flow_mut(f).src_host = h;
        assert_eq!(
            pool.place_host(1, 0, false, 9, 1024),
            Some(h),
            "same tag, same entry"
        );
        pool.release_host(h);
        assert_eq!(pool.in_use(), 1);
        pool.free_flow(f);
        assert_eq!(pool.in_use(), 0);
        // All four flows can be taken again, and a fifth cannot.
        for t in 0..4 {
            assert!(pool.place_flow(1, 0, t * 1000, 1024).is_some());
        }
        assert!(pool.place_flow(1, 0, 4242, 1024).is_none());
    }
}

/// A doubly-linked list of flows through the pool (new, old or decaying flows of a tin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowList {
    /// First flow, or NONE.
    pub head: u32,
    /// Last flow, or NONE.
    pub tail: u32,
}

impl Default for FlowList {
    fn default() -> Self {
        FlowList {
            head: NONE,
            tail: NONE,
        }
    }
}

impl FlowList {
    /// True when no flow is in the list.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head == NONE
    }

    /// Appends flow `index`.
    pub fn push_back<P: CakePacket>(&mut self, pool: &mut FlowPool<P>, index: u32, kind: ListKind) {
        let tail = self.tail;
        {
            let f = pool.flow_mut(index);
            f.prev = tail;
            f.next = NONE;
            f.list = kind;
        }
        if tail == NONE {
            self.head = index;
        } else {
            pool.flow_mut(tail).next = index;
        }
        self.tail = index;
    }

    /// Unlinks flow `index`, which must be in this list.
    pub fn remove<P: CakePacket>(&mut self, pool: &mut FlowPool<P>, index: u32) {
        let (prev, next) = {
            let f = pool.flow_mut(index);
            let links = (f.prev, f.next);
            f.prev = NONE;
            f.next = NONE;
            links
        };
        if prev == NONE {
            self.head = next;
        } else {
            pool.flow_mut(prev).next = next;
        }
        if next == NONE {
            self.tail = prev;
        } else {
            pool.flow_mut(next).prev = prev;
        }
    }
}

/// A max-heap of an instance's flows by byte backlog, to find the overflow victim (spec 5.4)
/// without scanning every flow. The tree lives in the flows themselves (parent and child links
/// in the pool entries, a complete binary tree addressed by position from the root), so an
/// instance carries only its root and size, and nothing is allocated.
///
/// Like the kernel's heap, it is maintained only while overflows are happening: built from the
/// instance's flows on the first overflow, kept up to date on every backlog change while it is
/// live, and abandoned after a quiet spell, so the common path pays nothing for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowHeap {
    /// The flow with the largest backlog, or NONE.
    pub root: u32,
    /// Flows in the heap.
    pub len: u32,
}

impl Default for OverflowHeap {
    fn default() -> Self {
        OverflowHeap { root: NONE, len: 0 }
    }
}

impl<P: CakePacket> FlowPool<P> {
    #[inline]
    fn heap_key(&self, f: u32) -> u32 {
        self.flows[f as usize].backlog
    }

    /// The flow at 1-based `position` of the complete tree: follow the position's bits below
    /// the top one from the root (0 left, 1 right).
    fn heap_node_at(&self, heap: &OverflowHeap, position: u32) -> u32 {
        let mut node = heap.root;
        let depth = 31 - position.leading_zeros();
        for bit in (0..depth).rev() {
            let f = &self.flows[node as usize];
            node = if position >> bit & 1 == 0 {
                f.heap_left
            } else {
                f.heap_right
            };
        }
        node
    }

    /// Points whatever pointed at `old` (its parent's child link, or the root) at `new`.
    fn heap_replace_in_parent(&mut self, heap: &mut OverflowHeap, parent: u32, old: u32, new: u32) {
        if parent == NONE {
            heap.root = new;
        } else {
            let p = &mut self.flows[parent as usize];
            if p.heap_left == old {
                p.heap_left = new;
            } else {
                p.heap_right = new;
            }
        }
    }

    /// Gives flow `n` the tree links `parent`, `left` and `right`, and points its children back
    /// at it (the parent's child link is the caller's: see `heap_replace_in_parent`).
    fn heap_link(&mut self, n: u32, parent: u32, left: u32, right: u32) {
        let f = &mut self.flows[n as usize];
        f.heap_parent = parent;
        f.heap_left = left;
        f.heap_right = right;
        for child in [left, right] {
            if child != NONE {
                self.flows[child as usize].heap_parent = n;
            }
        }
    }

    /// Exchanges flow `c` with its parent `p` in the tree.
    fn heap_swap_with_parent(&mut self, heap: &mut OverflowHeap, p: u32, c: u32) {
        let (pp, pl, pr) = {
            let f = &self.flows[p as usize];
            (f.heap_parent, f.heap_left, f.heap_right)
        };
        let (cl, cr) = {
            let f = &self.flows[c as usize];
            (f.heap_left, f.heap_right)
        };
        let sibling;
        {
            let f = &mut self.flows[c as usize];
            f.heap_parent = pp;
            if pl == c {
                f.heap_left = p;
                f.heap_right = pr;
                sibling = pr;
            } else {
                f.heap_left = pl;
                f.heap_right = p;
                sibling = pl;
            }
        }
        self.heap_link(p, c, cl, cr);
        if sibling != NONE {
            self.flows[sibling as usize].heap_parent = c;
        }
        self.heap_replace_in_parent(heap, pp, p, c);
    }

    fn heap_sift_up(&mut self, heap: &mut OverflowHeap, f: u32) {
        loop {
            let parent = self.flows[f as usize].heap_parent;
            if parent == NONE || self.heap_key(parent) >= self.heap_key(f) {
                return;
            }
            self.heap_swap_with_parent(heap, parent, f);
        }
    }

    fn heap_sift_down(&mut self, heap: &mut OverflowHeap, f: u32) {
        loop {
            let (l, r) = {
                let n = &self.flows[f as usize];
                (n.heap_left, n.heap_right)
            };
            let mut largest = f;
            for child in [l, r] {
                if child != NONE && self.heap_key(child) > self.heap_key(largest) {
                    largest = child;
                }
            }
            if largest == f {
                return;
            }
            self.heap_swap_with_parent(heap, f, largest);
        }
    }

    /// Adds flow `f` to the heap.
    pub(crate) fn heap_insert(&mut self, heap: &mut OverflowHeap, f: u32) {
        heap.len += 1;
        {
            let n = &mut self.flows[f as usize];
            n.heap_left = NONE;
            n.heap_right = NONE;
            n.heap_parent = NONE;
        }
        if heap.len == 1 {
            heap.root = f;
            return;
        }
        let parent = self.heap_node_at(heap, heap.len / 2);
        self.flows[f as usize].heap_parent = parent;
        if heap.len.is_multiple_of(2) {
            self.flows[parent as usize].heap_left = f;
        } else {
            self.flows[parent as usize].heap_right = f;
        }
        self.heap_sift_up(heap, f);
    }

    /// Removes flow `f` from the heap.
    pub(crate) fn heap_remove(&mut self, heap: &mut OverflowHeap, f: u32) {
        let last = self.heap_node_at(heap, heap.len);
        // Detach the last node from its place.
        let last_parent = self.flows[last as usize].heap_parent;
        self.heap_replace_in_parent(heap, last_parent, last, NONE);
        heap.len -= 1;
        if last == f {
            return;
        }
        // The last node takes `f`'s place.
        let (fp, fl, fr) = {
            let n = &self.flows[f as usize];
            (n.heap_parent, n.heap_left, n.heap_right)
        };
        self.heap_link(last, fp, fl, fr);
        self.heap_replace_in_parent(heap, fp, f, last);
        self.heap_sift_up(heap, last);
        self.heap_sift_down(heap, last);
    }

    /// Restores the heap order after flow `f`'s backlog changed.
    #[inline]
    pub(crate) fn heap_update(&mut self, heap: &mut OverflowHeap, f: u32) {
        self.heap_sift_up(heap, f);
        self.heap_sift_down(heap, f);
    }

    /// Checks the heap's structure and order, for tests: returns the flows in it.
    pub(crate) fn heap_check(&self, heap: &OverflowHeap) -> Vec<u32> {
        let mut seen = Vec::new();
        let mut stack = vec![(heap.root, NONE)];
        while let Some((f, parent)) = stack.pop() {
            if f == NONE {
                continue;
            }
            let n = &self.flows[f as usize];
            assert_eq!(n.heap_parent, parent, "parent link of flow {f}");
            if parent != NONE {
                assert!(self.heap_key(parent) >= self.heap_key(f), "heap order");
            }
            seen.push(f);
            stack.push((n.heap_left, f));
            stack.push((n.heap_right, f));
        }
        assert_eq!(seen.len(), heap.len as usize, "heap size");
        for position in 1..=heap.len {
            assert_ne!(self.heap_node_at(heap, position), NONE, "complete tree");
        }
        seen
    }
}

#[cfg(test)]
mod heap_tests {
    use super::*;
    use crate::sim::TestPacket;

    /// Random inserts, removes and key changes against a brute-force maximum.
    #[test]
    fn the_heap_root_is_always_the_largest_backlog() {
        let mut pool: FlowPool<TestPacket> = FlowPool::new(300);
        let mut heap = OverflowHeap::default();
        let mut members: Vec<u32> = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = (x % 300) as u32;
            let key = ((x >> 20) % 5000) as u32;
            if let Some(i) = members.iter().position(|&m| m == f) {
                if x >> 60 < 4 {
                    pool.heap_remove(&mut heap, f);
                    members.swap_remove(i);
                } else {
                    pool.flows[f as usize].backlog = key;
                    pool.heap_update(&mut heap, f);
                }
            } else {
                pool.flows[f as usize].backlog = key;
                pool.heap_insert(&mut heap, f);
                members.push(f);
            }
            let max = members
                .iter()
                .map(|&m| pool.flows[m as usize].backlog)
                .max();
            assert_eq!(max, (heap.root != NONE).then(|| pool.heap_key(heap.root)));
            if step % 97 == 0 {
                let mut seen = pool.heap_check(&heap);
                seen.sort_unstable();
                let mut expected = members.clone();
                expected.sort_unstable();
                assert_eq!(seen, expected);
            }
        }
    }
}
