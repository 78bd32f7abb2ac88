//! Owned packet buffers and fixed-size bursts of them.

use super::Mempool;
use crate::packet::PacketInfo;
use std::ptr::NonNull;

/// What sheetcake keeps in every mbuf's private area (after the `rte_mbuf` header): the link
/// of the per-flow queue the mbuf waits in, and what classification and CAKE recorded.
///
/// Every field is valid when all bytes are zero, which is how `rte_pktmbuf_init` leaves the
/// private area when the pool is created, and only valid values are ever written to it.
#[repr(C)]
struct MbufPrivate {
    /// The next mbuf of the queue this one is in (owned through this link).
    next: Option<Mbuf>,
    /// Classification and CAKE's stamp.
    info: PacketInfo,
}

/// A queued frame is linked, accounted, counted and sent from the link, CAKE's stamp, its
/// instance and its port: together they fit the private area's first cache line (which starts
/// on a line, right after the 128-byte header), so a frame that went cold while it waited
/// costs one miss when it leaves, not three.
const _: () =
    assert!(std::mem::offset_of!(MbufPrivate, info) + std::mem::offset_of!(PacketInfo, meta) <= 64);

/// Bytes of private area every sheetcake mempool reserves per mbuf: whole cache lines (DPDK
/// requires a multiple of 8), so the data room, which follows it, starts on a line and a
/// frame's Ethernet, IP and port fields sit in its first line.
pub const MBUF_PRIVATE_BYTES: u16 =
    (std::mem::size_of::<MbufPrivate>() as u16).next_multiple_of(64);

/// One packet buffer, owned. Dropping it returns it to its pool; moving it moves the ownership.
/// There is no `Clone`: two owners of one mbuf cannot exist in safe code.
///
/// `repr(transparent)` over a non-null pointer: an `Option<Mbuf>` is one nullable pointer, which
/// is what lets the queue links in the private area be owning `Option<Mbuf>` values.
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an mbuf is plain memory owned by whoever holds the pointer; freeing it from another
// lcore than the one that allocated it is allowed by DPDK.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Allocates an empty mbuf, or `None` when the pool is exhausted.
    pub fn alloc(pool: Mempool) -> Option<Mbuf> {
        // SAFETY: the pool is valid for the process lifetime.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(raw).map(|raw| Mbuf { raw })
    }

    /// Allocates an mbuf holding a copy of `bytes`. `None` when the pool is exhausted or the
    /// bytes do not fit in one buffer's data room.
    pub fn from_bytes(pool: Mempool, bytes: &[u8]) -> Option<Mbuf> {
        let mbuf = Mbuf::alloc(pool)?;
        let len = u16::try_from(bytes.len()).ok()?;
        // SAFETY: the mbuf is ours and freshly allocated; rte_pktmbuf_append returns null when
        // the tailroom is too small, else a pointer to `len` writable bytes.
        unsafe {
            let dst = dpdk_sys::rte_pktmbuf_append(mbuf.raw.as_ptr(), len);
            if dst.is_null() {
                return None;
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.cast::<u8>(), bytes.len());
        }
        Some(mbuf)
    }

    /// The frame's bytes in the first segment (all of it unless the frame is chained).
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: we own the mbuf; data_off and data_len describe initialised bytes inside the
        // buffer, and the borrow of self keeps them alive and unaliased.
        unsafe {
            let m = self.raw.as_ptr();
            let start = (*m).buf_addr.cast::<u8>().add((*m).data_off as usize);
            std::slice::from_raw_parts(start, (*m).data_len as usize)
        }
    }

    /// Mutable access to the bytes of the first segment (to mark ECN or wash DSCP in place).
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and &mut self guarantees exclusive access. Mbufs are never
        // shared (refcount 1) in sheetcake, so writing does not affect another packet.
        unsafe {
            let m = self.raw.as_ptr();
            let start = (*m).buf_addr.cast::<u8>().add((*m).data_off as usize);
            std::slice::from_raw_parts_mut(start, (*m).data_len as usize)
        }
    }

    /// Sets the length of a single-segment frame, within its buffer's room (the bytes are what
    /// the buffer held). Returns false, changing nothing, when it does not fit or the frame is
    /// chained.
    pub fn set_len(&mut self, len: u16) -> bool {
        // SAFETY: we own a valid mbuf; the new length is checked against the room after
        // data_off, so data() stays inside the buffer.
        unsafe {
            let m = self.raw.as_ptr();
            if (*m).nb_segs != 1
                || u32::from((*m).data_off) + u32::from(len) > u32::from((*m).buf_len)
            {
                return false;
            }
            (*m).data_len = len;
            (*m).pkt_len = u32::from(len);
        }
        true
    }

    /// Length of the whole frame, all segments.
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: we own a valid mbuf.
        unsafe { (*self.raw.as_ptr()).pkt_len }
    }

    /// Number of segments in the frame.
    #[inline]
    pub fn segments(&self) -> u16 {
        // SAFETY: we own a valid mbuf.
        unsafe { (*self.raw.as_ptr()).nb_segs }
    }

    #[inline]
    fn private(&self) -> *mut MbufPrivate {
        // SAFETY: every pool sheetcake creates reserves MBUF_PRIVATE_BYTES of private area right
        // after the rte_mbuf header (see Mempool::new); the pointer stays inside the object.
        unsafe {
            debug_assert!((*self.raw.as_ptr()).priv_size >= MBUF_PRIVATE_BYTES);
            self.raw
                .as_ptr()
                .cast::<u8>()
                .add(std::mem::size_of::<dpdk_sys::rte_mbuf>())
                .cast()
        }
    }

    /// Starts loading what classifying a just-received frame reads and writes first: the
    /// header's first line (data offset and length) and the private area's first line.
    #[inline]
    pub fn prefetch_for_classify(&self) {
        crate::prefetch::prefetch_bytes(self.raw.as_ptr().cast(), 1);
        crate::prefetch::prefetch_bytes(self.private().cast(), 1);
    }

    /// Starts loading the frame's first 64 bytes (the Ethernet and IP headers and the ports of
    /// an untagged frame). Reads the header's first line to find them: ask for that first
    /// ([`Mbuf::prefetch_for_classify`]).
    #[inline]
    pub fn prefetch_data(&self) {
        // SAFETY: we own a valid mbuf; the address is only a hint to the CPU.
        let start = unsafe {
            let m = self.raw.as_ptr();
            (*m).buf_addr.cast::<u8>().add((*m).data_off as usize)
        };
        crate::prefetch::prefetch_bytes(start, 64);
    }

    /// What classification and CAKE recorded for this frame.
    #[inline]
    pub fn info(&self) -> &PacketInfo {
        // SAFETY: the private area always holds a valid PacketInfo (zeroed at pool creation,
        // then only written with valid values); &self keeps it unaliased for writes.
        unsafe { &(*self.private()).info }
    }

    /// Writable access to [`Mbuf::info`].
    #[inline]
    pub fn info_mut(&mut self) -> &mut PacketInfo {
        // SAFETY: as in `info`, with &mut self for exclusivity.
        unsafe { &mut (*self.private()).info }
    }

    /// Bytes this buffer occupies in the pool: header, private area and data room. The private
    /// area is [`MBUF_PRIVATE_BYTES`] in every pool sheetcake makes, so only the header's first
    /// line is read (its `priv_size` sits in the second, which nothing else on the packet path
    /// needs).
    #[inline]
    pub fn footprint(&self) -> u32 {
        // SAFETY: we own a valid mbuf.
        let buf_len = unsafe {
            let m = self.raw.as_ptr();
            debug_assert_eq!((*m).priv_size, MBUF_PRIVATE_BYTES);
            (*m).buf_len
        };
        std::mem::size_of::<dpdk_sys::rte_mbuf>() as u32
            + u32::from(MBUF_PRIVATE_BYTES)
            + u32::from(buf_len)
    }

    /// The raw pointer, for a DPDK call that reads or writes the mbuf while we keep it.
    #[inline]
    pub(crate) fn as_raw(&mut self) -> *mut dpdk_sys::rte_mbuf {
        self.raw.as_ptr()
    }

    /// Gives up ownership without freeing; the caller must hand the pointer to DPDK or rebuild
    /// the `Mbuf` with [`Mbuf::from_raw`].
    #[inline]
    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid, non-null mbuf that nobody else owns or will free.
    #[inline]
    pub(crate) unsafe fn from_raw(raw: *mut dpdk_sys::rte_mbuf) -> Mbuf {
        Mbuf {
            raw: NonNull::new_unchecked(raw),
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we are the only owner; after this the pointer is never used again.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// A fixed-capacity FIFO of owned mbufs, laid out as the pointer array DPDK's burst functions
/// take. RX bursts append at the tail, TX bursts consume from the head; whatever the NIC did not
/// take stays here for the next try. Dropping the buffer frees what it still holds.
pub struct MbufBuffer<const N: usize> {
    slots: [*mut dpdk_sys::rte_mbuf; N],
    head: usize,
    tail: usize,
}

// SAFETY: the buffer owns its mbufs exactly as a Vec<Mbuf> would.
unsafe impl<const N: usize> Send for MbufBuffer<N> {}

impl<const N: usize> Default for MbufBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for MbufBuffer<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbufBuffer")
            .field("len", &self.len())
            .field("capacity", &N)
            .finish()
    }
}

impl<const N: usize> MbufBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        MbufBuffer {
            slots: [std::ptr::null_mut(); N],
            head: 0,
            tail: 0,
        }
    }

    /// Mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    /// True when the buffer holds nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// How many more mbufs fit.
    #[inline]
    pub fn spare(&self) -> usize {
        N - self.len()
    }

    /// Appends an mbuf, or gives it back when the buffer is full.
    #[inline]
    pub fn push(&mut self, mbuf: Mbuf) -> Result<(), Mbuf> {
        if self.spare() == 0 {
            return Err(mbuf);
        }
        self.make_tail_room();
        self.slots[self.tail] = mbuf.into_raw();
        self.tail += 1;
        Ok(())
    }

    /// Removes and returns the oldest mbuf.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.is_empty() {
            return None;
        }
        let raw = self.slots[self.head];
        self.head += 1;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        // SAFETY: slots[head..tail] hold owned, valid mbufs; this one leaves the buffer.
        Some(unsafe { Mbuf::from_raw(raw) })
    }

    /// The held mbufs, oldest first, to look at.
    pub fn iter(&self) -> impl Iterator<Item = &Mbuf> + '_ {
        // SAFETY: slots[head..tail] hold owned, valid mbufs; `Mbuf` is a transparent wrapper
        // of the pointer, and the borrow of self keeps them in the buffer meanwhile.
        self.slots[self.head..self.tail]
            .iter()
            .map(|raw| unsafe { &*(raw as *const *mut dpdk_sys::rte_mbuf).cast::<Mbuf>() })
    }

    /// Moves the held mbufs to the start of the array so `spare()` slots follow them.
    #[inline]
    fn make_tail_room(&mut self) {
        if self.head > 0 {
            self.slots.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
    }

    /// The free tail of the array, for a burst function to fill. Call [`Self::filled`] with the
    /// number it wrote.
    #[inline]
    pub(crate) fn tail_slots(&mut self) -> &mut [*mut dpdk_sys::rte_mbuf] {
        self.make_tail_room();
        &mut self.slots[self.tail..]
    }

    /// Records that a burst function stored `n` owned mbufs in [`Self::tail_slots`].
    ///
    /// # Safety
    /// The first `n` tail slots must now hold valid mbufs owned by nobody else.
    #[inline]
    pub(crate) unsafe fn filled(&mut self, n: usize) {
        debug_assert!(n <= N - self.tail);
        self.tail += n;
    }

    /// The held mbufs, oldest first, for a burst function to consume. Call [`Self::consumed`]
    /// with the number it took.
    #[inline]
    pub(crate) fn held_slots(&mut self) -> &mut [*mut dpdk_sys::rte_mbuf] {
        &mut self.slots[self.head..self.tail]
    }

    /// Records that a burst function took ownership of the first `n` held mbufs.
    ///
    /// # Safety
    /// Ownership of those `n` mbufs must really have passed elsewhere.
    #[inline]
    pub(crate) unsafe fn consumed(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }
}

impl<const N: usize> Drop for MbufBuffer<N> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

/// A FIFO of owned mbufs linked through their private areas: no allocation, O(1) at both ends.
/// Dropping the queue frees what it holds.
pub struct MbufQueue {
    head: Option<Mbuf>,
    /// Last mbuf of the chain (null when empty); owned through the chain, not through this.
    tail: *mut dpdk_sys::rte_mbuf,
}

// SAFETY: the queue owns its mbufs as a Vec<Mbuf> would; the tail pointer points into the
// chain the queue owns.
unsafe impl Send for MbufQueue {}

impl Default for MbufQueue {
    fn default() -> Self {
        MbufQueue {
            head: None,
            tail: std::ptr::null_mut(),
        }
    }
}

impl MbufQueue {
    /// Appends `mbuf`.
    #[inline]
    pub fn push_back(&mut self, mbuf: Mbuf) {
        let raw = mbuf.raw.as_ptr();
        // SAFETY: the link of an mbuf not in a queue may hold a stale value from an earlier
        // life; overwrite it without reading or dropping it.
        unsafe { std::ptr::write(&mut (*mbuf.private()).next, None) };
        if self.tail.is_null() {
            self.head = Some(mbuf);
        } else {
            // SAFETY: tail is the last mbuf of our chain, alive and owned by it; its link is
            // None (written when it was pushed).
            unsafe {
                let tail = std::mem::ManuallyDrop::new(Mbuf::from_raw(self.tail));
                std::ptr::write(&mut (*tail.private()).next, Some(mbuf));
            }
        }
        self.tail = raw;
    }

    /// Takes the head.
    #[inline]
    pub fn pop_front(&mut self) -> Option<Mbuf> {
        let head = self.head.take()?;
        // SAFETY: head was pushed, so its link holds a valid Option<Mbuf>; taking it leaves
        // None behind.
        self.head = unsafe { (*head.private()).next.take() };
        if self.head.is_none() {
            self.tail = std::ptr::null_mut();
        }
        Some(head)
    }

    /// The head.
    #[inline]
    pub fn front(&self) -> Option<&Mbuf> {
        self.head.as_ref()
    }

    /// The tail.
    #[inline]
    pub fn back(&self) -> Option<&Mbuf> {
        if self.tail.is_null() {
            return None;
        }
        // SAFETY: a non-null tail is the last mbuf of the chain this queue owns; `Mbuf` is a
        // transparent wrapper of its pointer, and the borrow of self keeps it in the chain.
        Some(unsafe { &*(&self.tail as *const *mut dpdk_sys::rte_mbuf).cast::<Mbuf>() })
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// The mbufs from head to tail.
    pub fn iter(&self) -> impl Iterator<Item = &Mbuf> + '_ {
        let mut cur = self.head.as_ref();
        std::iter::from_fn(move || {
            let m = cur?;
            // SAFETY: m is in our chain; its link is a valid Option<Mbuf> owned by the chain,
            // borrowed for as long as &self.
            cur = unsafe { (*m.private()).next.as_ref() };
            Some(m)
        })
    }

    /// Removes the mbuf at `index` from the head.
    pub fn remove(&mut self, index: usize) -> Option<Mbuf> {
        if index == 0 {
            return self.pop_front();
        }
        // Find the mbuf before it.
        let mut prev = self.head.as_ref()?.raw.as_ptr();
        for _ in 1..index {
            // SAFETY: prev is in our chain.
            let next = unsafe {
                let m = std::mem::ManuallyDrop::new(Mbuf::from_raw(prev));
                (*m.private()).next.as_ref().map(|n| n.raw.as_ptr())
            };
            prev = next?;
        }
        // SAFETY: prev is in our chain; we unlink its successor and splice the rest back.
        unsafe {
            let p = std::mem::ManuallyDrop::new(Mbuf::from_raw(prev));
            let victim = (*p.private()).next.take()?;
            let rest = (*victim.private()).next.take();
            if rest.is_none() {
                self.tail = prev;
            }
            (*p.private()).next = rest;
            Some(victim)
        }
    }
}

impl Drop for MbufQueue {
    fn drop(&mut self) {
        while self.pop_front().is_some() {}
    }
}
