//! Frames as CAKE sees them: an mbuf is a [`CakePacket`], queued through its private area.

use crate::dpdk::{Mbuf, MbufQueue};
use sheetcake_cake::{CakePacket, PacketMeta, PacketQueue, PacketStamp};

/// What travels with a frame in its mbuf's private area.
///
/// In this order on purpose: what a queued frame is asked for when it leaves (CAKE's stamp,
/// its instance and port) comes first, so with the queue link before it that is one cache
/// line (checked where the private area is laid out); the parser's findings, read only while
/// the frame is fresh (at enqueue, or at the owner after a handoff), come last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PacketInfo {
    /// CAKE's per-packet record.
    pub stamp: PacketStamp,
    /// The CAKE instance (worker-local) the frame belongs to.
    pub instance: u32,
    /// The port the frame leaves by (index into the worker's ports).
    pub egress: u16,
    /// What the parser found, for CAKE's classification (kept for the handoff to the owner).
    pub meta: PacketMeta,
}

impl PacketQueue<Mbuf> for MbufQueue {
    #[inline]
    fn push_back(&mut self, packet: Mbuf) {
        MbufQueue::push_back(self, packet)
    }
    #[inline]
    fn pop_front(&mut self) -> Option<Mbuf> {
        MbufQueue::pop_front(self)
    }
    #[inline]
    fn front(&self) -> Option<&Mbuf> {
        MbufQueue::front(self)
    }
    #[inline]
    fn back(&self) -> Option<&Mbuf> {
        MbufQueue::back(self)
    }
    #[inline]
    fn is_empty(&self) -> bool {
        MbufQueue::is_empty(self)
    }
    fn iter<'a>(&'a self) -> impl Iterator<Item = &'a Mbuf>
    where
        Mbuf: 'a,
    {
        MbufQueue::iter(self)
    }
    fn remove(&mut self, index: usize) -> Option<Mbuf> {
        MbufQueue::remove(self, index)
    }
}

impl CakePacket for Mbuf {
    type Queue = MbufQueue;
    #[inline]
    fn frame_len(&self) -> u32 {
        self.pkt_len()
    }
    #[inline]
    fn footprint(&self) -> u32 {
        Mbuf::footprint(self)
    }
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline]
    fn stamp(&self) -> &PacketStamp {
        &self.info().stamp
    }
    #[inline]
    fn stamp_mut(&mut self) -> &mut PacketStamp {
        &mut self.info_mut().stamp
    }
}
